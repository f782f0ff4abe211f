//! `/v1/messages`: send, fetch and acknowledge (rules in `service/delivery.rs`).

use axum::body::Bytes;
use axum::extract::{Query, State};
use axum::http::StatusCode;
use axum::Json;
use strongroom_wire::{Accepted, Ack, Deliveries, MessageId};

use crate::auth::Caller;
use crate::error::{ApiError, ApiResult};
use crate::service::delivery;
use crate::state::AppState;

/// Accepts an envelope (raw full-form bytes). A `strongroom-settings-tag`
/// header names the settings the sender applied.
pub(super) async fn send(
    State(state): State<AppState>,
    caller: Caller,
    headers: axum::http::HeaderMap,
    body: Bytes,
) -> ApiResult<Json<Accepted>> {
    let tag = headers.get(strongroom_wire::SETTINGS_TAG_HEADER).map(|v| v.to_str().unwrap_or("(not text)"));
    Ok(Json(delivery::send(&state, &caller, &body, tag).await?))
}

#[derive(serde::Deserialize)]
pub(super) struct FetchQuery {
    limit: Option<i64>,
}

/// The oldest unacknowledged messages for the caller's device.
pub(super) async fn fetch(
    State(state): State<AppState>,
    caller: Caller,
    Query(q): Query<FetchQuery>,
) -> ApiResult<Json<Deliveries>> {
    Ok(Json(Deliveries { messages: delivery::fetch(&state, &caller, q.limit.unwrap_or(100)).await? }))
}

pub(crate) fn parse_ack(ids: &[MessageId]) -> ApiResult<Vec<[u8; 16]>> {
    if ids.len() > delivery::MAX_ACK {
        return Err(ApiError::bad_request("too_many_ids", "acknowledge at most 1000 messages at a time"));
    }
    // Each id once: a socket counts the ids against its push window.
    let mut ids: Vec<[u8; 16]> = ids.iter().map(|m| *m.as_bytes()).collect();
    ids.sort_unstable();
    ids.dedup();
    Ok(ids)
}

/// Acknowledges messages the device has durably stored; they leave its queue.
pub(super) async fn ack(State(state): State<AppState>, caller: Caller, Json(req): Json<Ack>) -> ApiResult<StatusCode> {
    delivery::ack(&state, &caller, &parse_ack(&req.message_ids)?).await?;
    Ok(StatusCode::NO_CONTENT)
}
