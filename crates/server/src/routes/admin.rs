//! Networks, invites and the network policy (rules in `service/policy.rs`
//! and `service/admin.rs`).

use std::net::SocketAddr;

use axum::body::Bytes;
use axum::extract::{ConnectInfo, State};
use axum::http::{header, HeaderMap, StatusCode};
use axum::response::IntoResponse;
use axum::Json;
use strongroom_wire::{CreateInvite, CreateNetwork, InviteCreated};

use crate::auth::Caller;
use crate::error::{ApiError, ApiResult};
use crate::service::{admin, policy, Actor};
use crate::state::AppState;

/// Creates a network. Authorised by the operator's bootstrap secret
/// (`Authorization: Bootstrap <secret>`), printed at first start and kept in
/// the data directory.
pub(super) async fn create_network(
    State(state): State<AppState>,
    headers: HeaderMap,
    Json(req): Json<CreateNetwork>,
) -> ApiResult<(StatusCode, Json<InviteCreated>)> {
    let given = headers
        .get(header::AUTHORIZATION)
        .and_then(|v| v.to_str().ok())
        .and_then(|v| v.strip_prefix("Bootstrap "))
        .ok_or_else(|| {
            ApiError::unauthorized(
                "creating a network needs Authorization: Bootstrap <secret> (see the server's data directory)",
            )
        })?;
    let public: [u8; 32] = req
        .network_public
        .0
        .as_slice()
        .try_into()
        .map_err(|_| ApiError::bad_request("bad_key", "network_public must be a 32-byte Ed25519 key"))?;
    let new = policy::NewNetwork { id: *req.network_id.as_bytes(), name: &req.name, public, policy: &req.policy.0 };
    Ok((StatusCode::CREATED, Json(policy::create_network(&state, given, new).await?)))
}

pub(super) async fn create_invite(
    State(state): State<AppState>,
    caller: Caller,
    ConnectInfo(addr): ConnectInfo<SocketAddr>,
    Json(req): Json<CreateInvite>,
) -> ApiResult<(StatusCode, Json<InviteCreated>)> {
    let actor = Actor { caller, source: addr.ip() };
    Ok((StatusCode::CREATED, Json(admin::create_invite(&state, &actor, req.admin, req.ttl_secs).await?)))
}

pub(super) async fn revoke_invite(
    State(state): State<AppState>,
    caller: Caller,
    ConnectInfo(addr): ConnectInfo<SocketAddr>,
    Json(req): Json<strongroom_wire::InviteCode>,
) -> ApiResult<StatusCode> {
    admin::revoke_invite(&state, &Actor { caller, source: addr.ip() }, &req.invite).await?;
    Ok(StatusCode::NO_CONTENT)
}

pub(super) async fn get_policy(State(state): State<AppState>, caller: Caller) -> ApiResult<impl IntoResponse> {
    let (_, body) = state
        .store
        .current_policy(&caller.session.network_id)
        .await?
        .ok_or_else(|| ApiError::not_found("no_policy", "the network has no policy"))?;
    Ok(([(header::CONTENT_TYPE, "application/octet-stream")], body.to_vec()))
}

/// Stores a newer policy signed by the network key (administrators sign it
/// offline with the network key file; the server only checks and serves it).
pub(super) async fn put_policy(
    State(state): State<AppState>,
    caller: Caller,
    ConnectInfo(addr): ConnectInfo<SocketAddr>,
    body: Bytes,
) -> ApiResult<StatusCode> {
    policy::publish(&state, &Actor { caller, source: addr.ip() }, &body).await?;
    Ok(StatusCode::NO_CONTENT)
}
