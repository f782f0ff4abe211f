//! Linking a new device: the new device asks, an existing active device of
//! the same user approves (after matching the link code), the new device
//! collects the sealed identity key. The server only relays public keys and
//! a sealed blob.

use axum::extract::State;
use axum::http::StatusCode;
use axum::Json;
use strongroom_wire::{LinkApproval, LinkRequest, B64};

use crate::auth::Caller;
use crate::error::{hex, parse_id, ApiError, ApiResult};
use crate::state::AppState;
use crate::store::now_ms;

pub(super) async fn request(
    State(state): State<AppState>,
    caller: Caller,
    Json(req): Json<LinkRequest>,
) -> ApiResult<StatusCode> {
    let s = caller.session;
    if state.store.device_active(&s.user_id, &s.device_id).await? {
        return Err(ApiError::conflict("already_linked", "this device is already in your device list"));
    }
    if req.signing_key.0.len() != 32 || req.link_key.0.len() != 32 {
        return Err(ApiError::bad_request("bad_key", "signing_key and link_key are 32 bytes each"));
    }
    state.store.request_link(&s.user_id, &s.device_id, &req.signing_key.0, &req.link_key.0, now_ms()).await?;
    Ok(StatusCode::ACCEPTED)
}

pub(super) async fn pending(State(state): State<AppState>, caller: Caller) -> ApiResult<Json<Vec<LinkRequest>>> {
    let s = caller.session;
    if !state.store.device_active(&s.user_id, &s.device_id).await? {
        return Err(ApiError::forbidden(
            "device_not_listed",
            "only a device in your signed device list can approve new devices",
        ));
    }
    let rows = state.store.links(&s.user_id, now_ms()).await?;
    Ok(Json(
        rows.into_iter()
            .filter(|(_, _, _, sealed)| sealed.is_none())
            .map(|(d, sk, lk, _)| LinkRequest { device_id: hex(&d), signing_key: B64(sk), link_key: B64(lk) })
            .collect(),
    ))
}

pub(super) async fn approve(
    State(state): State<AppState>,
    caller: Caller,
    Json(req): Json<LinkApproval>,
) -> ApiResult<StatusCode> {
    let s = caller.session;
    if !state.store.device_active(&s.user_id, &s.device_id).await? {
        return Err(ApiError::forbidden(
            "device_not_listed",
            "only a device in your signed device list can approve new devices",
        ));
    }
    if req.sealed_identity.0.len() != strongroom_crypto::link::SEALED_IDENTITY_LEN {
        return Err(ApiError::bad_request("bad_sealed_identity", "the sealed identity key has the wrong length"));
    }
    let device = parse_id(&req.device_id, "device_id")?;
    if state.store.approve_link(&s.user_id, &device, &req.sealed_identity.0, now_ms()).await? {
        Ok(StatusCode::NO_CONTENT)
    } else {
        Err(ApiError::not_found(
            "unknown_link",
            "no pending link request from that device (requests expire after an hour)",
        ))
    }
}

pub(super) async fn result(State(state): State<AppState>, caller: Caller) -> ApiResult<Json<LinkApproval>> {
    let s = caller.session;
    let rows = state.store.links(&s.user_id, now_ms()).await?;
    let sealed =
        rows.into_iter().find(|(d, ..)| *d == s.device_id).and_then(|(_, _, _, sealed)| sealed).ok_or_else(|| {
            ApiError::not_found(
                "not_approved_yet",
                "not approved yet: run `strongroom link approve CODE` on one of your devices",
            )
        })?;
    Ok(Json(LinkApproval { device_id: hex(&s.device_id), sealed_identity: B64(sealed) }))
}
