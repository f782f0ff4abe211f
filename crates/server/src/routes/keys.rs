//! `/v1/keys/…`: the key directory (rules in `service/keys.rs`).

use axum::body::Bytes;
use axum::extract::{Path, Query, State};
use axum::http::StatusCode;
use axum::Json;
use strongroom_wire::{ClaimPreKeys, ClaimedPreKeys, DeviceListHistory, UploadPreKeys, UserKeys};

use crate::auth::Caller;
use crate::error::{parse_id, ApiError, ApiResult};
use crate::service::keys;
use crate::state::AppState;

pub(super) async fn put_device_list(
    State(state): State<AppState>,
    caller: Caller,
    body: Bytes,
) -> ApiResult<StatusCode> {
    keys::put_device_list(&state, &caller, &body).await?;
    Ok(StatusCode::NO_CONTENT)
}

pub(super) async fn put_prekeys(
    State(state): State<AppState>,
    caller: Caller,
    Json(req): Json<UploadPreKeys>,
) -> ApiResult<StatusCode> {
    keys::put_prekeys(&state, &caller, &req.prekeys).await?;
    Ok(StatusCode::NO_CONTENT)
}

pub(super) async fn user_keys(
    State(state): State<AppState>,
    caller: Caller,
    Path(user): Path<String>,
) -> ApiResult<Json<UserKeys>> {
    Ok(Json(keys::user_keys(&state, &caller, &parse_id(&user, "user id")?).await?))
}

#[derive(serde::Deserialize)]
pub(super) struct HistoryQuery {
    after: u64,
}

pub(super) async fn list_history(
    State(state): State<AppState>,
    caller: Caller,
    Path(user): Path<String>,
    Query(q): Query<HistoryQuery>,
) -> ApiResult<Json<DeviceListHistory>> {
    Ok(Json(keys::list_history(&state, &caller, &parse_id(&user, "user id")?, q.after).await?))
}

pub(super) async fn claim(
    State(state): State<AppState>,
    caller: Caller,
    Json(req): Json<ClaimPreKeys>,
) -> ApiResult<Json<ClaimedPreKeys>> {
    if req.devices.len() > keys::MAX_CLAIMS {
        return Err(ApiError::bad_request("bad_claim", "claim pre-keys for 1 to 2000 devices at a time"));
    }
    let pairs = req
        .devices
        .iter()
        .map(|a| (*a.user.as_bytes(), *a.device.as_bytes(), !req.medium_term.contains(a)))
        .collect::<Vec<_>>();
    if req.medium_term.len() > req.devices.len() {
        return Err(ApiError::bad_request("bad_claim", "medium_term may only name devices the claim lists"));
    }
    Ok(Json(ClaimedPreKeys { prekeys: keys::claim(&state, &caller, &pairs).await? }))
}
