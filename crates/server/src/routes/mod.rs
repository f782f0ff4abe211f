//! HTTP and WebSocket routes. Every route is listed in `openapi.json`.

mod accounts;
mod admin;
mod blobs;
mod conversations;
mod keys;
mod messages;
mod ops;
mod ws;

use std::time::Instant;

use axum::extract::{DefaultBodyLimit, MatchedPath, Request, State};
use axum::middleware::{self, Next};
use axum::response::Response;
use axum::routing::{get, post, put};
use axum::Router;

use crate::state::AppState;

/// The complete API.
pub fn router(state: AppState) -> Router {
    let json_limit = state.config.limits.max_json_bytes;
    let envelope_limit = state.config.limits.max_envelope_bytes;
    Router::new()
        .route("/healthz", get(ops::healthz))
        .route("/metrics", get(ops::metrics))
        .route("/api/openapi.json", get(ops::openapi))
        .route("/v1/admin/networks", post(admin::create_network))
        .route("/v1/invites", post(admin::create_invite))
        .route("/v1/invites/revoke", post(admin::revoke_invite))
        .route("/v1/policy", get(admin::get_policy).put(admin::put_policy))
        .route("/v1/register", post(accounts::register))
        .route("/v1/login", post(accounts::login))
        .route("/v1/logout", post(accounts::logout))
        .route("/v1/password", post(accounts::change_password))
        .route("/v1/keys/device-list", put(keys::put_device_list))
        .route("/v1/keys/prekeys", put(keys::put_prekeys))
        .route("/v1/keys/claim", post(keys::claim))
        .route("/v1/keys/{user}", get(keys::user_keys))
        .route("/v1/conversations", post(conversations::create).get(conversations::list))
        .route("/v1/conversations/{id}", get(conversations::get_one))
        .route("/v1/conversations/{id}/members", post(conversations::change_members))
        .route("/v1/messages", post(messages::send).get(messages::fetch).layer(DefaultBodyLimit::max(envelope_limit)))
        .route("/v1/messages/ack", post(messages::ack))
        .route("/v1/ws", get(ws::connect))
        .route("/v1/blobs", post(blobs::upload).layer(DefaultBodyLimit::disable()))
        .route("/v1/blobs/{id}", get(blobs::download))
        .layer(DefaultBodyLimit::max(json_limit))
        .layer(middleware::from_fn_with_state(state.clone(), observe))
        .with_state(state)
}

/// Latency and status metrics, and a log line with the route template only
/// (never ids from the path, tokens or bodies).
async fn observe(State(state): State<AppState>, req: Request, next: Next) -> Response {
    let start = Instant::now();
    let route =
        req.extensions().get::<MatchedPath>().map(|p| p.as_str().to_owned()).unwrap_or_else(|| "unmatched".into());
    let method = req.method().clone();
    let res = next.run(req).await;
    let elapsed = start.elapsed();
    state.metrics.observe(res.status().as_u16(), elapsed);
    tracing::debug!(%method, route, status = res.status().as_u16(), micros = elapsed.as_micros() as u64, "request");
    res
}
