//! Network policies: signed by the network key (offline, by its
//! administrators), checked here against the stored network key and the
//! current version, and stored. The retention devices a policy names are
//! reserved for that network's retention service at the same moment (see
//! [`super::devices`]): a policy naming an id that an account or another
//! network owns is refused, so no account can ever log in as, or drain the
//! queue of, a retention device.

use strongroom_crypto::certs::{CertError, NetworkPolicy, PolicyTracker};
use strongroom_crypto::ids::NetworkId;
use strongroom_crypto::keys::VerifyingKey;
use strongroom_wire::InviteCreated;
use subtle::ConstantTimeEq;

use super::Actor;
use crate::auth::secret_hash;
use crate::error::{hex, ApiError, ApiResult};
use crate::state::AppState;
use crate::store::{now_ms, PolicyOutcome, PolicyRow, StoreError};

/// The network's current policy, decoded (`None` before the first).
pub async fn current(state: &AppState, network: &[u8; 16]) -> ApiResult<Option<NetworkPolicy>> {
    let Some((_, body)) = state.store.current_policy(network).await? else { return Ok(None) };
    Ok(Some(NetworkPolicy::decode(&body).map_err(|_| ApiError::from(StoreError::Corrupt("policy")))?))
}

/// Whether the network's current policy names `device` as a retention device.
pub async fn names_retention_device(state: &AppState, network: &[u8; 16], device: &[u8; 16]) -> ApiResult<bool> {
    Ok(current(state, network).await?.is_some_and(|p| p.retention.iter().any(|d| d.device_id.as_bytes() == device)))
}

fn retention_ids(policy: &NetworkPolicy) -> Vec<[u8; 16]> {
    policy.retention.iter().map(|d| *d.device_id.as_bytes()).collect()
}

fn taken(device: &[u8; 16]) -> ApiError {
    ApiError::conflict(
        "device_id_taken",
        format!(
            "retention device {} is already another device's; run `strongroom retention init` again to make a new one",
            hex(device)
        ),
    )
}

/// What a network needs to be created.
pub struct NewNetwork<'a> {
    /// Its id.
    pub id: [u8; 16],
    /// Its name.
    pub name: &'a str,
    /// The network key's public half.
    pub public: [u8; 32],
    /// The first policy, signed by the network key.
    pub policy: &'a [u8],
}

/// Creates a network, authorised by the operator's bootstrap secret;
/// returns the first administrator's invite.
pub async fn create_network(state: &AppState, bootstrap_secret: &str, new: NewNetwork<'_>) -> ApiResult<InviteCreated> {
    let stored = state.store.bootstrap_hash().await?.unwrap_or_default();
    if stored.len() != 32 || !bool::from(secret_hash(bootstrap_secret.trim().as_bytes()).ct_eq(stored.as_slice())) {
        return Err(ApiError::forbidden("bad_bootstrap_secret", "the bootstrap secret is wrong"));
    }
    let name = new.name.trim();
    if name.is_empty() || name.len() > 128 {
        return Err(ApiError::bad_request("bad_name", "a network name is 1 to 128 bytes"));
    }
    let policy = NetworkPolicy::decode(new.policy).map_err(|e| ApiError::bad_request("bad_policy", e.to_string()))?;
    let network_key = VerifyingKey::from_bytes(new.public)
        .map_err(|e| ApiError::bad_request("bad_network_key", format!("the network public key is unusable: {e}")))?;
    PolicyTracker::new(network_key, NetworkId::from_bytes(new.id))
        .verify(&policy)
        .map_err(|e| ApiError::bad_request("bad_policy", e.to_string()))?;
    let retention = retention_ids(&policy);
    let row = PolicyRow { version: policy.version, body: new.policy, retention: &retention };
    retire_bootstrap_secret(state, &stored).await?;
    let created = state.store.create_network(&new.id, name, &new.public, &row, now_ms()).await?;
    if !created {
        return Err(ApiError::conflict(
            "network_exists",
            "a network with this id exists, or its policy names a retention device id already in use",
        ));
    }
    tracing::info!("network created");
    let invite = super::admin::issue_invite(state, &new.id, true, super::admin::DEFAULT_INVITE_SECS, None).await?;
    state.store.audit(&new.id, "bootstrap", "network.create", name, "operator", "{}", now_ms()).await?;
    Ok(invite)
}

/// Each bootstrap secret works once: a used one (seen in a terminal, a shell
/// history, a ticket) creates nothing more. Its successor goes to
/// `data_dir/bootstrap-secret` (owner-only), where the operator's
/// `strongroom admin network create --data-dir` reads it.
async fn retire_bootstrap_secret(state: &AppState, used: &[u8]) -> ApiResult<()> {
    use rand_core::RngCore;
    let mut raw = [0u8; 32];
    rand_core::OsRng.fill_bytes(&mut raw);
    let next = crate::error::hex(&raw);
    // One rotation at a time in this process, each with its own staging file.
    static ROTATING: tokio::sync::Mutex<()> = tokio::sync::Mutex::const_new(());
    let _one = ROTATING.lock().await;
    let dir = &state.config.data_dir;
    let mut nonce = [0u8; 8];
    rand_core::OsRng.fill_bytes(&mut nonce);
    let staged = dir.join(format!("bootstrap-secret.{}", crate::error::hex(&nonce)));
    let failed = |e: std::io::Error| {
        tracing::error!(error = %e, "cannot write the next bootstrap secret");
        ApiError::new(
            axum::http::StatusCode::INTERNAL_SERVER_ERROR,
            "internal",
            "cannot write the next bootstrap secret into the data directory; check its permissions",
        )
    };
    crate::write_private(&staged, next.as_bytes()).map_err(failed)?;
    if !state.store.rotate_bootstrap_hash(used, &secret_hash(next.as_bytes())).await? {
        let _ = std::fs::remove_file(&staged);
        return Err(ApiError::forbidden("bad_bootstrap_secret", "the bootstrap secret is wrong"));
    }
    // The hash is rotated: if the rename fails, the secret is still in the staging file.
    std::fs::rename(&staged, dir.join("bootstrap-secret")).map_err(|e| {
        tracing::error!(error = %e, staged = %staged.display(), "the next bootstrap secret is in the staging file");
        failed(e)
    })
}

/// Stores a newer policy signed by the network key, from an administrator
/// of that network.
pub async fn publish(state: &AppState, actor: &Actor, body: &[u8]) -> ApiResult<()> {
    super::admin::require_admin(&actor.caller)?;
    let network = actor.caller.session.network_id;
    let public = state
        .store
        .network_public(&network)
        .await?
        .ok_or_else(|| ApiError::not_found("unknown_network", "no such network"))?;
    let policy = NetworkPolicy::decode(body).map_err(|e| ApiError::bad_request("bad_policy", e.to_string()))?;
    let network_key =
        VerifyingKey::from_bytes(public).map_err(|_| ApiError::from(StoreError::Corrupt("network key")))?;
    let mut tracker = PolicyTracker::new(network_key, NetworkId::from_bytes(network));
    if let Some(current) = current(state, &network).await? {
        tracker = PolicyTracker::resume(network_key, NetworkId::from_bytes(network), current.version, current.digest());
    }
    tracker.verify(&policy).map_err(|e| match e {
        CertError::PolicyRollback { .. } | CertError::PolicyConflict { .. } => {
            ApiError::conflict("stale_policy", e.to_string())
        }
        other => ApiError::bad_request("bad_policy", other.to_string()),
    })?;
    let retention = retention_ids(&policy);
    match state.store.put_policy(&network, &PolicyRow { version: policy.version, body, retention: &retention }).await? {
        PolicyOutcome::Stored => {}
        PolicyOutcome::Stale => {
            return Err(ApiError::conflict("stale_policy", "a policy with this or a newer version exists"))
        }
        PolicyOutcome::DeviceTaken(device) => return Err(taken(&device)),
    }
    // Retention is on while an active device receives new messages; a
    // draining one only empties its queue.
    let names: Vec<&str> = policy.active_retention().map(|d| d.name.as_str()).collect();
    let action = if names.is_empty() { "policy.retention_off" } else { "policy.retention_on" };
    super::admin::audit(
        state,
        actor,
        action,
        &format!("policy v{}", policy.version),
        serde_json::json!({"retention_devices": names}),
    )
    .await
}
