use axum::extract::State;
use axum::http::header;
use axum::response::IntoResponse;

use crate::error::ApiResult;
use crate::state::AppState;

pub(super) async fn healthz(State(state): State<AppState>) -> ApiResult<&'static str> {
    state.store.queue_depth().await?;
    Ok("ok\n")
}

pub(super) async fn metrics(State(state): State<AppState>) -> ApiResult<impl IntoResponse> {
    let depth = state.store.queue_depth().await?;
    let envelopes = state.store.envelope_count().await?;
    let body = state.metrics.render(state.hub.connections(), depth, envelopes);
    Ok(([(header::CONTENT_TYPE, "text/plain; version=0.0.4")], body))
}

pub(super) async fn openapi() -> impl IntoResponse {
    ([(header::CONTENT_TYPE, "application/json")], crate::OPENAPI)
}
