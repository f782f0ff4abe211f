//! The retention device's side of the relay. It logs in with its
//! policy-certified signing key (no account, no password), only while the
//! current policy names it, and its device id is reserved for its network's
//! retention service (`service/policy.rs`). Its session is receive-only:
//! only routes marked for retention in `routes/mod.rs` accept it.

use strongroom_crypto::certs::{ArchiveCheckpoint, RetentionLogin, RetentionState};
use strongroom_crypto::ids::{DeviceId, NetworkId};
use strongroom_crypto::keys::Signature;
use strongroom_wire::{ConversationCoverage, ConversationId, RetentionCoverage, RetentionPeriods, Session, UserId};

use crate::auth::{new_token, Caller};
use crate::error::{ApiError, ApiResult};
use crate::state::AppState;
use crate::store::{now_ms, RetentionLoginOutcome, RETENTION_OWNER};

/// Clock skew accepted on a login's timestamp.
const SKEW_MS: i64 = 5 * 60_000;
/// Retention sessions last a day; the service logs in again by itself.
const SESSION_MS: i64 = 86_400_000;

/// A retention device's signed login.
pub struct Login {
    /// The network.
    pub network: [u8; 16],
    /// The retention device.
    pub device: [u8; 16],
    /// When it was signed (ms).
    pub timestamp: u64,
    /// Single use.
    pub nonce: [u8; 16],
    /// By the device's key, as the policy certifies it.
    pub signature: [u8; 64],
}

/// Messages still queued for a retention device of `network`.
async fn queued_for(state: &AppState, network: [u8; 16], device: [u8; 16]) -> ApiResult<u64> {
    let owner = crate::store::DeviceRef { network, user: RETENTION_OWNER, device };
    Ok(state.store.retention_coverage(&owner).await?.iter().map(|r| r.queued).sum())
}

/// Each retention device of the caller's network's current policy and what
/// waits for it (administrators before disabling or rotating a device;
/// auditors read it too). Only the caller's own network.
pub async fn backlog(state: &AppState, caller: &Caller) -> ApiResult<Vec<strongroom_wire::RetentionBacklog>> {
    super::admin::require_reader(caller)?;
    let network = caller.session.network_id;
    let Some(policy) = super::policy::current(state, &network).await? else { return Ok(Vec::new()) };
    let mut out = Vec::with_capacity(policy.retention.len());
    for d in &policy.retention {
        out.push(strongroom_wire::RetentionBacklog {
            device_id: d.device_id,
            name: d.name.clone(),
            state: if d.state == RetentionState::Active { "active" } else { "draining" }.into(),
            queued: queued_for(state, network, *d.device_id.as_bytes()).await?,
        });
    }
    Ok(out)
}

/// Checks the statement against the current policy and makes a session.
pub async fn login(state: &AppState, req: &Login) -> ApiResult<Session> {
    let now = now_ms();
    let skew = i64::try_from(req.timestamp).unwrap_or(i64::MAX).saturating_sub(now);
    if skew.abs() > SKEW_MS {
        return Err(ApiError::unauthorized(
            "the login's timestamp is more than 5 minutes from the server's clock; check the clock",
        ));
    }
    let refused = || ApiError::unauthorized("this retention device is not in the network's current policy");
    let policy = super::policy::current(state, &req.network).await?.ok_or_else(refused)?;
    let named = policy.retention.iter().find(|d| d.device_id.as_bytes() == &req.device).ok_or_else(refused)?;
    let statement = RetentionLogin {
        network_id: NetworkId::from_bytes(req.network),
        device_id: DeviceId::from_bytes(req.device),
        timestamp: req.timestamp,
        nonce: req.nonce,
    };
    statement
        .verify(&named.signing_key, &Signature::from_bytes(req.signature))
        .map_err(|_| ApiError::unauthorized("the retention login signature does not verify"))?;
    // A replaced device logs in only while something still waits for it.
    if named.state == RetentionState::Draining && queued_for(state, req.network, req.device).await? == 0 {
        return Err(ApiError::forbidden(
            "retention_drained",
            "this retention device was replaced and everything queued for it is archived: it may no longer log in (its archive stays readable with `retention verify`, `search` and `export`)",
        ));
    }
    let (token, hash) = new_token();
    match state.store.retention_login(&req.nonce, &req.network, &req.device, &hash, now, now + SESSION_MS).await? {
        RetentionLoginOutcome::Session => {
            Ok(Session { token, user_id: UserId::from_bytes(RETENTION_OWNER), admin: false })
        }
        RetentionLoginOutcome::Replayed => {
            Err(ApiError::unauthorized("this login was already used (replayed); make a new one"))
        }
        RetentionLoginOutcome::NotOwned => Err(ApiError::forbidden(
            "device_id_taken",
            "this retention device id belongs to another device; make a new retention device",
        )),
    }
}

fn only_retention(caller: &Caller) -> ApiResult<()> {
    if caller.is_retention() {
        Ok(())
    } else {
        Err(ApiError::forbidden("not_retention", "only retention devices can do this"))
    }
}

/// The network's retention period and the security groups' (by user), for
/// the retention service's purge and the network's readers.
pub async fn periods(state: &AppState, caller: &Caller) -> ApiResult<RetentionPeriods> {
    if !caller.is_retention() && !caller.session.admin && !caller.session.auditor {
        return Err(ApiError::forbidden("not_admin", "only the retention service and administrators can see this"));
    }
    let network = caller.session.network_id;
    let default_days = state.settings_for_network(&network).await?.retention_days;
    let users =
        state.store.retention_periods(&network).await?.into_iter().map(|(u, d)| (UserId::from_bytes(u), d)).collect();
    Ok(RetentionPeriods { network_days: default_days, users })
}

/// A signed archive checkpoint from a retention device the current policy names.
pub async fn checkpoint(
    state: &AppState,
    caller: &Caller,
    tree_size: u64,
    root: [u8; 32],
    timestamp: u64,
    signature: [u8; 64],
) -> ApiResult<()> {
    only_retention(caller)?;
    let network = caller.session.network_id;
    let policy =
        super::policy::current(state, &network).await?.ok_or_else(|| ApiError::forbidden("no_policy", "no policy"))?;
    let device = policy
        .retention
        .iter()
        .find(|d| d.device_id.as_bytes() == &caller.session.device_id)
        .ok_or_else(|| ApiError::unauthorized("this retention device is not in the network policy"))?;
    let statement = ArchiveCheckpoint {
        network_id: NetworkId::from_bytes(network),
        device_id: DeviceId::from_bytes(caller.session.device_id),
        tree_size,
        root,
        timestamp,
    };
    statement
        .verify(&device.signing_key, &Signature::from_bytes(signature))
        .map_err(|_| ApiError::bad_request("bad_signature", "the checkpoint signature does not verify"))?;
    state
        .store
        .put_retention_checkpoint(
            &network,
            &caller.session.device_id,
            i64::try_from(tree_size).unwrap_or(i64::MAX),
            &root,
            i64::try_from(timestamp).unwrap_or(i64::MAX),
            now_ms(),
        )
        .await?;
    Ok(())
}

/// What the relay queued for the calling retention device, per
/// conversation, and how much of it still waits: `retention verify`
/// compares its archive with this.
pub async fn coverage(state: &AppState, caller: &Caller) -> ApiResult<RetentionCoverage> {
    only_retention(caller)?;
    let rows = state.store.retention_coverage(&caller.session.device_ref()).await?;
    Ok(RetentionCoverage {
        conversations: rows
            .into_iter()
            .map(|r| ConversationCoverage {
                conversation_id: ConversationId::from_bytes(r.conversation_id),
                first_seq: r.first_seq,
                last_seq: r.last_seq,
                count: r.count,
                queued: r.queued,
            })
            .collect(),
    })
}
