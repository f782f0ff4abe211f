use axum::extract::State;
use axum::http::{header, HeaderMap};
use axum::response::IntoResponse;
use subtle::ConstantTimeEq;

use crate::auth::secret_hash;
use crate::config::MetricsToken;
use crate::error::{ApiError, ApiResult};
use crate::state::AppState;

pub(super) async fn healthz(State(state): State<AppState>) -> ApiResult<&'static str> {
    state.store.queue_depth().await?;
    Ok("ok\n")
}

/// Operators' counters, across networks: for loopback clients, or anyone
/// with the configured token.
pub(super) async fn metrics(
    State(state): State<AppState>,
    peer: Option<axum::Extension<crate::connections::Peer>>,
    headers: HeaderMap,
) -> ApiResult<impl IntoResponse> {
    let given =
        headers.get(header::AUTHORIZATION).and_then(|v| v.to_str().ok()).and_then(|v| v.strip_prefix("Bearer "));
    // The raw TCP peer, not a forwarded address; and a request through a
    // proxy (even one on this host) is not a local client: it needs the token.
    let local = peer.is_some_and(|axum::Extension(p)| p.addr.ip().to_canonical().is_loopback() && !p.trusted_proxy);
    let allowed = metrics_allowed(state.config.metrics_token.as_ref(), given, local);
    if !allowed {
        return Err(ApiError::forbidden(
            "metrics_forbidden",
            "/metrics answers loopback clients, or scrapers sending the configured metrics_token as a Bearer token",
        ));
    }
    let depth = state.store.queue_depth().await?;
    let envelopes = state.store.envelope_count().await?;
    let body = state.metrics.render(state.hub.connections(), depth, envelopes, state.store.write_timings());
    Ok(([(header::CONTENT_TYPE, "text/plain; version=0.0.4")], body))
}

pub(super) async fn openapi() -> impl IntoResponse {
    ([(header::CONTENT_TYPE, "application/json")], crate::OPENAPI)
}

/// A given token must be the configured one; without one, only local
/// clients (a scraper on the same host, not through a proxy) are answered.
fn metrics_allowed(token: Option<&MetricsToken>, given: Option<&str>, local: bool) -> bool {
    match (token, given) {
        (Some(token), Some(given)) => {
            bool::from(secret_hash(token.0.as_bytes()).ct_eq(&secret_hash(given.trim().as_bytes())))
        }
        (_, _) => local && given.is_none(),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn metrics_answer_loopback_or_the_token_only() {
        let (local, remote) = (true, false);
        let token = MetricsToken("s3cret-metrics".into());
        assert!(metrics_allowed(None, None, local));
        assert!(!metrics_allowed(None, None, remote), "no token configured: remote scrapers are refused");
        assert!(!metrics_allowed(None, Some("anything"), remote));
        assert!(metrics_allowed(Some(&token), Some("s3cret-metrics"), remote));
        assert!(!metrics_allowed(Some(&token), Some("s3cret-metric"), remote));
        assert!(!metrics_allowed(Some(&token), Some("wrong"), local), "a wrong token is refused even locally");
        assert!(!metrics_allowed(Some(&token), None, remote));
        assert!(metrics_allowed(Some(&token), None, local));
    }
}
