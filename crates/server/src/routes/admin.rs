use std::net::SocketAddr;

use axum::body::Bytes;
use axum::extract::{ConnectInfo, State};
use axum::http::{header, HeaderMap, StatusCode};
use axum::response::IntoResponse;
use axum::Json;
use rand_core::{OsRng, RngCore};
use strongroom_crypto::certs::{NetworkFingerprint, NetworkPolicy, PolicyTracker};
use strongroom_crypto::ids::NetworkId;
use strongroom_crypto::keys::VerifyingKey;
use strongroom_wire::{CreateInvite, CreateNetwork, Invite, InviteCreated};
use subtle::ConstantTimeEq;

use crate::auth::{secret_hash, Caller};
use crate::error::{parse_id, ApiError, ApiResult};
use crate::state::AppState;
use crate::store::now_ms;

pub(super) const DEFAULT_INVITE_SECS: u64 = 7 * 24 * 3600;
const MAX_INVITE_SECS: u64 = 90 * 24 * 3600;

/// Creates an invite for `network` and returns its code.
pub(crate) async fn issue_invite(
    state: &AppState,
    network: &[u8; 16],
    admin: bool,
    ttl_secs: u64,
) -> ApiResult<InviteCreated> {
    issue_invite_for(state, network, admin, ttl_secs, None).await
}

/// An invite; bound to `for_user`, it re-enrols that existing account.
pub(crate) async fn issue_invite_for(
    state: &AppState,
    network: &[u8; 16],
    admin: bool,
    ttl_secs: u64,
    for_user: Option<&[u8; 16]>,
) -> ApiResult<InviteCreated> {
    let public = state
        .store
        .network_public(network)
        .await?
        .ok_or_else(|| ApiError::not_found("unknown_network", "no such network"))?;
    let mut secret = [0u8; 32];
    OsRng.fill_bytes(&mut secret);
    let now = now_ms();
    let expires_at = now + i64::try_from(ttl_secs.min(MAX_INVITE_SECS) * 1000).unwrap_or(i64::MAX);
    state.store.create_invite(&secret_hash(&secret), network, admin, expires_at, now).await?;
    if let Some(user) = for_user {
        state.store.bind_invite_user(&secret_hash(&secret), user).await?;
    }
    let invite = Invite {
        server_url: state.public_url.to_string(),
        network_id: *network,
        network_fingerprint: *NetworkFingerprint::of(&VerifyingKey::from_bytes(public)).as_bytes(),
        secret,
    };
    Ok(InviteCreated { invite: invite.encode(), expires_at: u64::try_from(expires_at).unwrap_or(0) })
}

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
    let stored = state.store.bootstrap_hash().await?.unwrap_or_default();
    if stored.len() != 32 || !bool::from(secret_hash(given.trim().as_bytes()).ct_eq(stored.as_slice())) {
        return Err(ApiError::forbidden("bad_bootstrap_secret", "the bootstrap secret is wrong"));
    }
    let name = req.name.trim();
    if name.is_empty() || name.len() > 128 {
        return Err(ApiError::bad_request("bad_name", "a network name is 1 to 128 bytes"));
    }
    let id = parse_id(&req.network_id, "network_id")?;
    let public: [u8; 32] = req
        .network_public
        .0
        .as_slice()
        .try_into()
        .map_err(|_| ApiError::bad_request("bad_key", "network_public must be a 32-byte Ed25519 key"))?;
    let policy =
        NetworkPolicy::decode(&req.policy.0).map_err(|e| ApiError::bad_request("bad_policy", e.to_string()))?;
    PolicyTracker::new(VerifyingKey::from_bytes(public), NetworkId::from_bytes(id))
        .verify(&policy)
        .map_err(|e| ApiError::bad_request("bad_policy", e.to_string()))?;
    if !state.store.create_network(&id, name, &public, policy.version, &req.policy.0, now_ms()).await? {
        return Err(ApiError::conflict("network_exists", "a network with this id exists"));
    }
    tracing::info!("network created");
    let invite = issue_invite(&state, &id, true, DEFAULT_INVITE_SECS).await?;
    state.store.audit(&id, "bootstrap", "network.create", name, "operator", "{}", now_ms()).await?;
    Ok((StatusCode::CREATED, Json(invite)))
}

pub(super) async fn create_invite(
    State(state): State<AppState>,
    caller: Caller,
    ConnectInfo(addr): ConnectInfo<SocketAddr>,
    Json(req): Json<CreateInvite>,
) -> ApiResult<(StatusCode, Json<InviteCreated>)> {
    if !caller.session.admin {
        return Err(ApiError::forbidden("not_admin", "only network administrators can invite"));
    }
    let invite =
        issue_invite(&state, &caller.session.network_id, req.admin, req.ttl_secs.unwrap_or(DEFAULT_INVITE_SECS))
            .await?;
    super::manage::audit(&state, &caller, addr, "invite.create", "1 invite", serde_json::json!({"admin": req.admin}))
        .await?;
    Ok((StatusCode::CREATED, Json(invite)))
}

#[derive(serde::Deserialize)]
pub(super) struct RevokeInvite {
    invite: String,
}

pub(super) async fn revoke_invite(
    State(state): State<AppState>,
    caller: Caller,
    ConnectInfo(addr): ConnectInfo<SocketAddr>,
    Json(req): Json<RevokeInvite>,
) -> ApiResult<StatusCode> {
    if !caller.session.admin {
        return Err(ApiError::forbidden("not_admin", "only network administrators can revoke invites"));
    }
    let invite = Invite::parse(&req.invite).map_err(|e| ApiError::bad_request("bad_invite", e))?;
    if state.store.revoke_invite(&secret_hash(&invite.secret), &caller.session.network_id).await? {
        super::manage::audit(&state, &caller, addr, "invite.revoke", "invite", serde_json::json!({})).await?;
        Ok(StatusCode::NO_CONTENT)
    } else {
        Err(ApiError::not_found("unknown_invite", "no unused invite with that code in your network"))
    }
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
    if !caller.session.admin {
        return Err(ApiError::forbidden("not_admin", "only network administrators can publish a policy"));
    }
    let network = caller.session.network_id;
    let public = state
        .store
        .network_public(&network)
        .await?
        .ok_or_else(|| ApiError::not_found("unknown_network", "no such network"))?;
    let policy = NetworkPolicy::decode(&body).map_err(|e| ApiError::bad_request("bad_policy", e.to_string()))?;
    let mut tracker = PolicyTracker::new(VerifyingKey::from_bytes(public), NetworkId::from_bytes(network));
    if let Some((_, current)) = state.store.current_policy(&network).await? {
        let current =
            NetworkPolicy::decode(&current).map_err(|_| ApiError::from(crate::store::StoreError::Corrupt("policy")))?;
        tracker = PolicyTracker::resume(
            VerifyingKey::from_bytes(public),
            NetworkId::from_bytes(network),
            current.version,
            current.digest(),
        );
    }
    tracker.verify(&policy).map_err(|e| match e {
        strongroom_crypto::certs::CertError::PolicyRollback { .. }
        | strongroom_crypto::certs::CertError::PolicyConflict { .. } => {
            ApiError::conflict("stale_policy", e.to_string())
        }
        other => ApiError::bad_request("bad_policy", other.to_string()),
    })?;
    if !state.store.put_policy(&network, policy.version, &body).await? {
        return Err(ApiError::conflict("stale_policy", "a policy with this or a newer version exists"));
    }
    let names: Vec<&str> = policy.retention.iter().map(|d| d.name.as_str()).collect();
    let action = if policy.retention.is_empty() { "policy.retention_off" } else { "policy.retention_on" };
    super::manage::audit(
        &state,
        &caller,
        addr,
        action,
        &format!("policy v{}", policy.version),
        serde_json::json!({"retention_devices": names}),
    )
    .await?;
    Ok(StatusCode::NO_CONTENT)
}
