//! Retention devices log in with their policy-certified signing key: no
//! account or password, and only while the network policy names them.

use std::net::SocketAddr;

use axum::extract::{ConnectInfo, State};
use axum::Json;
use strongroom_crypto::certs::{NetworkPolicy, RetentionLogin};
use strongroom_crypto::ids::{DeviceId, NetworkId};
use strongroom_crypto::keys::Signature;
use strongroom_wire::{RetentionLoginRequest, Session};

use crate::auth::new_token;
use crate::error::{hex, parse_id, ApiError, ApiResult};
use crate::state::AppState;
use crate::store::{now_ms, StoreError};

/// Clock skew accepted on a login's timestamp.
const SKEW_MS: i64 = 5 * 60_000;
/// Retention sessions last a day; the service logs in again by itself.
const SESSION_MS: i64 = 86_400_000;

pub(super) async fn login(
    State(state): State<AppState>,
    ConnectInfo(addr): ConnectInfo<SocketAddr>,
    Json(req): Json<RetentionLoginRequest>,
) -> ApiResult<Json<Session>> {
    super::accounts::limit(&state, addr)?;
    let network = parse_id(&req.network_id, "network id")?;
    let device = parse_id(&req.device_id, "device id")?;
    let nonce: [u8; 16] = parse_id(&req.nonce, "nonce")?;
    let signature: [u8; 64] = req
        .signature
        .0
        .as_slice()
        .try_into()
        .map_err(|_| ApiError::bad_request("bad_signature", "the signature must be 64 bytes"))?;
    let now = now_ms();
    let skew = i64::try_from(req.timestamp).unwrap_or(i64::MAX).saturating_sub(now);
    if skew.abs() > SKEW_MS {
        return Err(ApiError::unauthorized(
            "the login's timestamp is more than 5 minutes from the server's clock; check the clock",
        ));
    }
    let refused = || ApiError::unauthorized("this retention device is not in the network's current policy");
    let (_, body) = state.store.current_policy(&network).await?.ok_or_else(refused)?;
    let policy = NetworkPolicy::decode(&body).map_err(|_| ApiError::from(StoreError::Corrupt("policy")))?;
    let named = policy.retention.iter().find(|d| d.device_id.as_bytes() == &device).ok_or_else(refused)?;
    let statement = RetentionLogin {
        network_id: NetworkId::from_bytes(network),
        device_id: DeviceId::from_bytes(device),
        timestamp: req.timestamp,
        nonce,
    };
    statement
        .verify(&named.signing_key, &Signature::from_bytes(signature))
        .map_err(|_| ApiError::unauthorized("the retention login signature does not verify"))?;
    let (token, hash) = new_token();
    if !state.store.retention_login(&nonce, &network, &device, &hash, now, now + SESSION_MS).await? {
        return Err(ApiError::unauthorized("this login was already used (replayed); make a new one"));
    }
    Ok(Json(Session { token, user_id: hex(&[0xff; 16]), admin: false }))
}

/// `GET /v1/retention/periods`: the network's retention period and the
/// security groups' (by user), for the retention service's purge.
pub(super) async fn periods(
    State(state): State<AppState>,
    caller: crate::auth::Caller,
) -> ApiResult<Json<strongroom_wire::RetentionPeriods>> {
    if !caller.is_retention() && !caller.session.admin && !caller.session.auditor {
        return Err(ApiError::forbidden("not_admin", "only the retention service and administrators can see this"));
    }
    let network = caller.session.network_id;
    let default_days = state.settings_for_network(&network).await?.retention_days;
    let users = state.store.retention_periods(&network).await?.into_iter().map(|(u, d)| (hex(&u), d)).collect();
    Ok(Json(strongroom_wire::RetentionPeriods { network_days: default_days, users }))
}

/// `POST /v1/retention/checkpoint`: only signed checkpoints of a device the
/// current policy names are kept.
pub(super) async fn checkpoint(
    State(state): State<AppState>,
    caller: crate::auth::Caller,
    Json(req): Json<strongroom_wire::CheckpointReport>,
) -> ApiResult<axum::http::StatusCode> {
    if !caller.is_retention() {
        return Err(ApiError::forbidden("not_retention", "only retention devices report checkpoints"));
    }
    let network = caller.session.network_id;
    let (_, body) =
        state.store.current_policy(&network).await?.ok_or_else(|| ApiError::forbidden("no_policy", "no policy"))?;
    let policy = NetworkPolicy::decode(&body).map_err(|_| ApiError::from(StoreError::Corrupt("policy")))?;
    let device = policy
        .retention
        .iter()
        .find(|d| d.device_id.as_bytes() == &caller.session.device_id)
        .ok_or_else(|| ApiError::unauthorized("this retention device is not in the network policy"))?;
    let root: [u8; 32] = (0..32)
        .map(|i| req.root.get(2 * i..2 * i + 2).and_then(|h| u8::from_str_radix(h, 16).ok()))
        .collect::<Option<Vec<u8>>>()
        .and_then(|v| v.try_into().ok())
        .ok_or_else(|| ApiError::bad_request("bad_root", "root must be 64 hex digits"))?;
    let sig: [u8; 64] = req
        .signature
        .0
        .as_slice()
        .try_into()
        .map_err(|_| ApiError::bad_request("bad_signature", "the signature must be 64 bytes"))?;
    let statement = strongroom_crypto::certs::ArchiveCheckpoint {
        network_id: NetworkId::from_bytes(network),
        device_id: DeviceId::from_bytes(caller.session.device_id),
        tree_size: req.tree_size,
        root,
        timestamp: req.timestamp,
    };
    statement
        .verify(&device.signing_key, &Signature::from_bytes(sig))
        .map_err(|_| ApiError::bad_request("bad_signature", "the checkpoint signature does not verify"))?;
    state
        .store
        .put_retention_checkpoint(
            &network,
            &caller.session.device_id,
            i64::try_from(req.tree_size).unwrap_or(i64::MAX),
            &root,
            i64::try_from(req.timestamp).unwrap_or(i64::MAX),
            now_ms(),
        )
        .await?;
    Ok(axum::http::StatusCode::NO_CONTENT)
}
