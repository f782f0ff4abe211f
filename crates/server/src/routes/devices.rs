//! Linking a new device and confirming a wipe (rules in `service/devices.rs`):
//! the new device asks, an existing active device of the same user approves
//! (after matching the link code), the new device collects the sealed
//! identity key. The server only relays public keys and a sealed blob.

use axum::extract::State;
use axum::http::StatusCode;
use axum::Json;
use strongroom_wire::{LinkApproval, LinkRequest};

use crate::auth::Caller;
use crate::error::ApiResult;
use crate::service::devices;
use crate::state::AppState;

pub(super) async fn request(
    State(state): State<AppState>,
    caller: Caller,
    Json(req): Json<LinkRequest>,
) -> ApiResult<StatusCode> {
    devices::request_link(&state, &caller, &req.signing_key.0, &req.link_key.0).await?;
    Ok(StatusCode::ACCEPTED)
}

pub(super) async fn pending(State(state): State<AppState>, caller: Caller) -> ApiResult<Json<Vec<LinkRequest>>> {
    Ok(Json(devices::pending_links(&state, &caller).await?))
}

pub(super) async fn approve(
    State(state): State<AppState>,
    caller: Caller,
    Json(req): Json<LinkApproval>,
) -> ApiResult<StatusCode> {
    let device = *req.device_id.as_bytes();
    devices::approve_link(&state, &caller, &device, &req.sealed_transfer.0).await?;
    Ok(StatusCode::NO_CONTENT)
}

pub(super) async fn result(State(state): State<AppState>, caller: Caller) -> ApiResult<Json<LinkApproval>> {
    Ok(Json(devices::link_result(&state, &caller).await?))
}

/// The device confirms it has erased its profile.
pub(super) async fn confirm_wipe(State(state): State<AppState>, caller: Caller) -> ApiResult<StatusCode> {
    devices::confirm_wipe(&state, &caller).await?;
    Ok(StatusCode::NO_CONTENT)
}
