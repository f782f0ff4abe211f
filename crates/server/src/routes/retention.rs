//! `/v1/retention/…`: the retention device's login, periods, checkpoints
//! and coverage (rules in `service/retention.rs`).

use std::net::SocketAddr;

use axum::extract::{ConnectInfo, State};
use axum::http::StatusCode;
use axum::Json;
use strongroom_wire::{CheckpointReport, RetentionCoverage, RetentionLoginRequest, RetentionPeriods, Session};

use crate::auth::Caller;
use crate::error::{parse_id, ApiError, ApiResult};
use crate::service::retention;
use crate::state::AppState;

fn signature(bytes: &[u8]) -> ApiResult<[u8; 64]> {
    bytes.try_into().map_err(|_| ApiError::bad_request("bad_signature", "the signature must be 64 bytes"))
}

pub(super) async fn login(
    State(state): State<AppState>,
    ConnectInfo(addr): ConnectInfo<SocketAddr>,
    Json(req): Json<RetentionLoginRequest>,
) -> ApiResult<Json<Session>> {
    super::accounts::limit(&state, addr)?;
    let login = retention::Login {
        network: *req.network_id.as_bytes(),
        device: *req.device_id.as_bytes(),
        nonce: parse_id(&req.nonce, "nonce")?,
        signature: signature(&req.signature.0)?,
        timestamp: req.timestamp,
    };
    Ok(Json(retention::login(&state, &login).await?))
}

pub(super) async fn periods(State(state): State<AppState>, caller: Caller) -> ApiResult<Json<RetentionPeriods>> {
    Ok(Json(retention::periods(&state, &caller).await?))
}

pub(super) async fn checkpoint(
    State(state): State<AppState>,
    caller: Caller,
    Json(req): Json<CheckpointReport>,
) -> ApiResult<StatusCode> {
    let root: [u8; 32] = (0..32)
        .map(|i| req.root.get(2 * i..2 * i + 2).and_then(|h| u8::from_str_radix(h, 16).ok()))
        .collect::<Option<Vec<u8>>>()
        .and_then(|v| v.try_into().ok())
        .filter(|_| req.root.len() == 64)
        .ok_or_else(|| ApiError::bad_request("bad_root", "root must be 64 hex digits"))?;
    let sig = signature(&req.signature.0)?;
    retention::checkpoint(&state, &caller, req.tree_size, root, req.timestamp, sig).await?;
    Ok(StatusCode::NO_CONTENT)
}

pub(super) async fn backlog(
    State(state): State<AppState>,
    caller: Caller,
) -> ApiResult<Json<Vec<strongroom_wire::RetentionBacklog>>> {
    Ok(Json(retention::backlog(&state, &caller).await?))
}

pub(super) async fn coverage(State(state): State<AppState>, caller: Caller) -> ApiResult<Json<RetentionCoverage>> {
    Ok(Json(retention::coverage(&state, &caller).await?))
}
