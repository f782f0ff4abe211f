//! HTTP and WebSocket routes. Every API route is listed in `openapi.json`;
//! the web console (`/admin`, HTML) is separate.

mod accounts;
mod admin;
mod blobs;
pub(crate) use blobs::remove_expired as remove_expired_blobs;
mod console;
mod conversations;
mod devices;
mod keys;
mod manage;
mod messages;
mod ops;
mod retention;
mod ws;

use std::time::Instant;

use axum::extract::{DefaultBodyLimit, MatchedPath, Request, State};
use axum::middleware::{self, Next};
use axum::response::Response;
use axum::routing::{delete, get, post, put, MethodRouter};
use axum::Extension;
use axum::Router;

use crate::auth::Access;
use crate::state::AppState;

/// Every route, once: the router is built from this table and the OpenAPI
/// document is checked against it. Who may call a route is metadata here:
/// [`retention`] marks what a retention device's receive-only session may
/// use (everything else refuses it), [`while_wiping`] what a device with a
/// pending wipe order may still do.
fn table(state: &AppState) -> Vec<(&'static str, MethodRouter<AppState>)> {
    let envelope_limit = state.config.limits.max_envelope_bytes;
    vec![
        ("/healthz", get(ops::healthz)),
        ("/metrics", get(ops::metrics)),
        ("/api/openapi.json", get(ops::openapi)),
        ("/v1/admin/networks", post(admin::create_network)),
        ("/v1/networks/{id}", get(accounts::network_info)),
        ("/v1/users", retention(get(accounts::find_user))),
        ("/v1/invites", post(admin::create_invite)),
        ("/v1/invites/revoke", post(admin::revoke_invite)),
        ("/v1/guests/invites", post(manage::guest_invite)),
        ("/v1/policy", retention(get(admin::get_policy)).put(admin::put_policy)),
        ("/v1/register", post(accounts::register)),
        ("/v1/login", post(accounts::login)),
        ("/v1/logout", post(accounts::logout)),
        ("/v1/password", post(accounts::change_password)),
        ("/v1/keys/device-list", put(keys::put_device_list)),
        ("/v1/devices/link", post(devices::request).get(devices::pending)),
        ("/v1/devices/link/approve", post(devices::approve)),
        ("/v1/devices/link/result", get(devices::result)),
        ("/v1/keys/prekeys", put(keys::put_prekeys)),
        ("/v1/keys/claim", post(keys::claim)),
        ("/v1/keys/{user}", retention(get(keys::user_keys))),
        ("/v1/keys/{user}/history", retention(get(keys::list_history))),
        ("/v1/conversations", post(conversations::create).get(conversations::list)),
        ("/v1/conversations/{id}", retention(get(conversations::get_one))),
        ("/v1/conversations/{id}/members", post(conversations::change_members)),
        (
            "/v1/conversations/{id}/membership",
            retention(get(conversations::statements)).post(conversations::post_statement),
        ),
        (
            "/v1/messages",
            post(messages::send).merge(retention(get(messages::fetch))).layer(DefaultBodyLimit::max(envelope_limit)),
        ),
        ("/v1/messages/ack", retention(post(messages::ack))),
        ("/v1/ws", retention(get(ws::connect))),
        ("/v1/blobs", post(blobs::upload).layer(DefaultBodyLimit::disable())),
        ("/v1/blobs/{id}", retention(get(blobs::download))),
        ("/v1/retention/session", post(retention::login)),
        ("/v1/retention/periods", retention(get(retention::periods))),
        ("/v1/retention/checkpoint", retention(post(retention::checkpoint))),
        ("/v1/retention/coverage", retention(get(retention::coverage))),
        ("/v1/me/policy", get(manage::my_policy)),
        ("/v1/password/reset", post(accounts::redeem_reset)),
        ("/v1/devices/wipe/confirm", while_wiping(post(devices::confirm_wipe))),
        ("/v1/admin/users", get(manage::list_users)),
        ("/v1/admin/guests", get(manage::list_guests)),
        ("/v1/admin/users/{id}", delete(manage::delete_user)),
        ("/v1/admin/users/{id}/suspend", post(manage::suspend)),
        ("/v1/admin/users/{id}/unsuspend", post(manage::unsuspend)),
        ("/v1/admin/users/{id}/reset-password", post(manage::reset_password)),
        ("/v1/admin/users/{id}/role", post(manage::set_role)),
        ("/v1/admin/users/{id}/group", post(manage::set_group)),
        ("/v1/admin/users/{id}/devices/reset", post(manage::reset_devices)),
        ("/v1/admin/users/{id}/devices/{device}/wipe", post(manage::wipe_device)),
        ("/v1/admin/invites", post(manage::bulk_invite)),
        ("/v1/admin/invites/reissue", post(manage::reissue_invite)),
        ("/v1/admin/groups", get(manage::list_groups).post(manage::create_group)),
        ("/v1/admin/groups/{id}", put(manage::update_group).delete(manage::delete_group)),
        ("/v1/admin/settings", get(manage::get_settings).put(manage::put_settings)),
        ("/v1/admin/audit", get(manage::audit_log)),
        ("/v1/admin/audit/verify", get(manage::audit_verify)),
        ("/v1/admin/retention/backlog", get(retention::backlog)),
    ]
}

/// Marks the methods a retention device's session may call.
fn retention(methods: MethodRouter<AppState>) -> MethodRouter<AppState> {
    methods.layer(Extension(Access::RetentionReceives))
}

/// Marks the methods a device with a pending wipe order may still call.
fn while_wiping(methods: MethodRouter<AppState>) -> MethodRouter<AppState> {
    methods.layer(Extension(Access::WhileWiping))
}

/// The complete API.
pub fn router(state: AppState) -> Router {
    let json_limit = state.config.limits.max_json_bytes;
    let mut router = Router::new();
    for (path, methods) in table(&state) {
        router = router.route(path, methods);
    }
    router
        .fallback(|| async {
            crate::error::ApiError::not_found("not_found", "no such path in the API; see /api/openapi.json")
        })
        .layer(middleware::from_fn(json_errors))
        .merge(console::router())
        .layer(DefaultBodyLimit::max(json_limit))
        .layer(middleware::from_fn_with_state(state.clone(), observe))
        .with_state(state)
}

/// The routed paths (for checking the OpenAPI document).
pub fn paths(state: &AppState) -> Vec<&'static str> {
    table(state).into_iter().map(|(p, _)| p).collect()
}

/// The API answers every error with a JSON [`strongroom_wire::ErrorBody`]:
/// axum's own refusals of a body, path or query it cannot read (a malformed
/// id, a missing field, the wrong content type) are plain text, so they are
/// wrapped here with a code for their status and axum's explanation, which
/// names the field and what was wrong with it.
async fn json_errors(req: Request, next: Next) -> Response {
    use axum::http::{header, StatusCode};
    use axum::response::IntoResponse;
    let res = next.run(req).await;
    // Plain text, or no body type at all (an unknown path, a wrong method).
    let plain = res
        .headers()
        .get(header::CONTENT_TYPE)
        .and_then(|v| v.to_str().ok())
        .is_none_or(|v| v.starts_with("text/plain"));
    if !res.status().is_client_error() || !plain {
        return res;
    }
    let status = res.status();
    let headers = res.headers().clone();
    let code = match status {
        StatusCode::PAYLOAD_TOO_LARGE => "too_large",
        StatusCode::UNSUPPORTED_MEDIA_TYPE => "bad_content_type",
        StatusCode::UNPROCESSABLE_ENTITY => "bad_json",
        StatusCode::METHOD_NOT_ALLOWED => "method_not_allowed",
        StatusCode::NOT_FOUND => "not_found",
        _ => "bad_request",
    };
    // Rejection texts are short; anything longer is cut, never buffered whole.
    let text = match axum::body::to_bytes(res.into_body(), 4096).await {
        Ok(b) => String::from_utf8_lossy(&b).into_owned(),
        Err(_) => String::new(),
    };
    let message = if text.is_empty() { status.canonical_reason().unwrap_or("bad request").to_owned() } else { text };
    let mut wrapped = crate::error::ApiError::new(status, code, message).into_response();
    // What else the refusal said stays (a 405's Allow, for one).
    for (name, value) in &headers {
        if name != header::CONTENT_TYPE && name != header::CONTENT_LENGTH {
            wrapped.headers_mut().insert(name.clone(), value.clone());
        }
    }
    wrapped
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
