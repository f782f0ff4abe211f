//! Administration of one network: invites, users, devices, security groups,
//! settings and the audit log. Administrators may change everything in
//! their own network and nothing in another (every user, device and group a
//! request names is looked up within the caller's network, and is "not
//! found" otherwise); auditors may only read. Every change is written to
//! the network's hash-chained audit log with who, what and from where.

use rand_core::{OsRng, RngCore};
use strongroom_crypto::certs::NetworkFingerprint;
use strongroom_crypto::keys::VerifyingKey;
use strongroom_wire::{
    verify_audit_chain, AdminUser, AuditEntry, GroupRequest, GroupSettings, Invite, InviteCreated, ResetCode,
    SecurityGroup,
};

use super::Actor;
use crate::auth::{secret_hash, Caller};
use crate::error::{hex, ApiError, ApiResult};
use crate::state::AppState;
use crate::store::{now_ms, AuditQuery, StoreError};

/// How long an invite lasts unless the administrator says otherwise.
pub const DEFAULT_INVITE_SECS: u64 = 7 * 24 * 3600;
const MAX_INVITE_SECS: u64 = 90 * 24 * 3600;

/// Administrators only.
pub fn require_admin(caller: &Caller) -> ApiResult<()> {
    if caller.session.admin {
        Ok(())
    } else {
        Err(ApiError::forbidden("not_admin", "only network administrators can do this"))
    }
}

/// Administrators and auditors (read-only).
pub fn require_reader(caller: &Caller) -> ApiResult<()> {
    if caller.session.admin || caller.session.auditor {
        Ok(())
    } else {
        Err(ApiError::forbidden("not_admin", "only network administrators and auditors can see this"))
    }
}

/// Writes an audit entry for an action in the actor's network.
pub async fn audit(
    state: &AppState,
    actor: &Actor,
    action: &str,
    target: &str,
    details: serde_json::Value,
) -> ApiResult<()> {
    let s = actor.caller.session;
    let name = state.store.live_user(&s.user_id).await?.map(|(_, n)| n).unwrap_or_else(|| hex(&s.user_id));
    state
        .store
        .audit(&s.network_id, &name, action, target, &actor.source.to_string(), &details.to_string(), now_ms())
        .await?;
    Ok(())
}

/// A live user of the caller's network (404 otherwise, so other networks'
/// users are invisible): (id, username).
async fn user_here(state: &AppState, caller: &Caller, user: &[u8; 16]) -> ApiResult<([u8; 16], String)> {
    match state.store.live_user(user).await? {
        Some((network, name)) if network == caller.session.network_id => Ok((*user, name)),
        _ => Err(ApiError::not_found("unknown_user", "no such user in your network")),
    }
}

/// An administrator acting on a user of their own network.
async fn admin_on_user(state: &AppState, actor: &Actor, user: &[u8; 16]) -> ApiResult<([u8; 16], String)> {
    require_admin(&actor.caller)?;
    user_here(state, &actor.caller, user).await
}

/// An invite for `network`; bound to `for_user`, it re-enrols that existing account.
pub(crate) async fn issue_invite(
    state: &AppState,
    network: &[u8; 16],
    admin: bool,
    ttl_secs: u64,
    for_user: Option<&[u8; 16]>,
) -> ApiResult<InviteCreated> {
    let (secret, expires_at) = new_invite_secret(ttl_secs);
    state.store.create_invite(&secret_hash(&secret), network, admin, expires_at, now_ms()).await?;
    if let Some(user) = for_user {
        state.store.bind_invite_user(&secret_hash(&secret), user).await?;
    }
    invite_code(state, network, secret, expires_at).await
}

/// A fresh invite secret and when an invite made now for `ttl_secs`
/// (at most 90 days) expires (ms).
pub(crate) fn new_invite_secret(ttl_secs: u64) -> ([u8; 32], i64) {
    let mut secret = [0u8; 32];
    OsRng.fill_bytes(&mut secret);
    let expires_at = now_ms() + i64::try_from(ttl_secs.min(MAX_INVITE_SECS) * 1000).unwrap_or(i64::MAX);
    (secret, expires_at)
}

/// The code a stored invite secret is passed on as: the relay's address,
/// the network and its key's fingerprint, and the secret.
pub(crate) async fn invite_code(
    state: &AppState,
    network: &[u8; 16],
    secret: [u8; 32],
    expires_at: i64,
) -> ApiResult<InviteCreated> {
    let public = state
        .store
        .network_public(network)
        .await?
        .ok_or_else(|| ApiError::not_found("unknown_network", "no such network"))?;
    let invite = Invite {
        server_url: state.public_url.to_string(),
        network_id: *network,
        network_fingerprint: *NetworkFingerprint::of(
            &VerifyingKey::from_bytes(public).map_err(|_| ApiError::from(StoreError::Corrupt("network key")))?,
        )
        .as_bytes(),
        secret,
    };
    Ok(InviteCreated { invite: invite.encode(), expires_at: u64::try_from(expires_at).unwrap_or(0) })
}

/// One invite to the actor's network.
pub async fn create_invite(
    state: &AppState,
    actor: &Actor,
    admin: bool,
    ttl_secs: Option<u64>,
) -> ApiResult<InviteCreated> {
    if !actor.caller.session.admin {
        return Err(ApiError::forbidden("not_admin", "only network administrators can invite"));
    }
    let network = actor.caller.session.network_id;
    let invite = issue_invite(state, &network, admin, ttl_secs.unwrap_or(DEFAULT_INVITE_SECS), None).await?;
    audit(state, actor, "invite.create", "1 invite", serde_json::json!({"admin": admin})).await?;
    Ok(invite)
}

/// One invite per label (e.g. the names from a CSV file); at most 1000.
pub async fn bulk_invite(
    state: &AppState,
    actor: &Actor,
    labels: Vec<String>,
    admin: bool,
    ttl_secs: Option<u64>,
) -> ApiResult<Vec<(String, InviteCreated)>> {
    require_admin(&actor.caller)?;
    if labels.is_empty() || labels.len() > 1000 {
        return Err(ApiError::bad_request("bad_invites", "give 1 to 1000 labels (one invite each)"));
    }
    if labels.iter().any(|l| l.len() > 200 || l.chars().any(char::is_control)) {
        return Err(ApiError::bad_request("bad_invites", "labels are up to 200 printable characters"));
    }
    let network = actor.caller.session.network_id;
    let mut out = Vec::with_capacity(labels.len());
    for label in labels {
        out.push((label, issue_invite(state, &network, admin, ttl_secs.unwrap_or(DEFAULT_INVITE_SECS), None).await?));
    }
    let names: Vec<&str> = out.iter().map(|(l, _)| l.as_str()).collect();
    audit(
        state,
        actor,
        "invite.create",
        &format!("{} invites", out.len()),
        serde_json::json!({"labels": names, "admin": admin}),
    )
    .await?;
    Ok(out)
}

/// Revokes an unused invite of the actor's network.
pub async fn revoke_invite(state: &AppState, actor: &Actor, invite: &str) -> ApiResult<()> {
    if !actor.caller.session.admin {
        return Err(ApiError::forbidden("not_admin", "only network administrators can revoke invites"));
    }
    let invite = Invite::parse(invite).map_err(|e| ApiError::bad_request("bad_invite", e))?;
    if !state.store.revoke_invite(&secret_hash(&invite.secret), &actor.caller.session.network_id).await? {
        return Err(ApiError::not_found("unknown_invite", "no unused invite with that code in your network"));
    }
    audit(state, actor, "invite.revoke", "invite", serde_json::json!({})).await
}

/// Reinvite: the old invite is revoked and a new one issued.
pub async fn reissue_invite(state: &AppState, actor: &Actor, invite: &str) -> ApiResult<InviteCreated> {
    require_admin(&actor.caller)?;
    let old = Invite::parse(invite).map_err(|e| ApiError::bad_request("bad_invite", e))?;
    let network = actor.caller.session.network_id;
    if state.store.invite_is_guest(&secret_hash(&old.secret), &network).await? == Some(true) {
        return Err(ApiError::bad_request(
            "guest_invite",
            "a guest invite is not reissued (it would become a member's); revoke it, and the member who invited makes a new one",
        ));
    }
    if !state.store.revoke_invite(&secret_hash(&old.secret), &network).await? {
        return Err(ApiError::not_found("unknown_invite", "no unused invite with that code in your network"));
    }
    let invite = issue_invite(state, &network, false, DEFAULT_INVITE_SECS, None).await?;
    audit(state, actor, "invite.reissue", "invite", serde_json::json!({})).await?;
    Ok(invite)
}

/// The network's users (administrators and auditors).
pub async fn list_users(state: &AppState, caller: &Caller, search: Option<&str>) -> ApiResult<Vec<AdminUser>> {
    require_reader(caller)?;
    Ok(state.store.admin_users(&caller.session.network_id, search, false).await?)
}

/// The network's guests, with who invited each (administrators and auditors).
pub async fn list_guests(state: &AppState, caller: &Caller) -> ApiResult<Vec<AdminUser>> {
    require_reader(caller)?;
    Ok(state.store.admin_users(&caller.session.network_id, None, true).await?)
}

fn disconnect_all(state: &AppState, devices: &[[u8; 16]]) {
    for d in devices {
        state.hub.disconnect(d);
    }
}

/// Suspending ends every session and closes open WebSockets at once.
pub async fn set_suspended(state: &AppState, actor: &Actor, user: &[u8; 16], on: bool) -> ApiResult<()> {
    let (user, name) = admin_on_user(state, actor, user).await?;
    if on && user == actor.caller.session.user_id {
        return Err(ApiError::bad_request("self", "you cannot suspend yourself"));
    }
    state.store.set_suspended(&user, on).await?;
    if on {
        disconnect_all(state, &state.store.user_devices(&user).await?);
    }
    let action = if on { "user.suspend" } else { "user.unsuspend" };
    audit(state, actor, action, &name, serde_json::json!({"user_id": hex(&user)})).await
}

/// Deletes a user: queues purged, devices revoked, sessions ended.
pub async fn delete_user(state: &AppState, actor: &Actor, user: &[u8; 16]) -> ApiResult<()> {
    let (user, name) = admin_on_user(state, actor, user).await?;
    if user == actor.caller.session.user_id {
        return Err(ApiError::bad_request("self", "you cannot delete yourself"));
    }
    let devices = state.store.user_devices(&user).await?;
    state.store.delete_user(&user).await?;
    disconnect_all(state, &devices);
    audit(state, actor, "user.delete", &name, serde_json::json!({"user_id": hex(&user)})).await
}

/// A one-time reset code for a user; their sessions end.
pub async fn reset_password(state: &AppState, actor: &Actor, user: &[u8; 16]) -> ApiResult<ResetCode> {
    let (user, name) = admin_on_user(state, actor, user).await?;
    let mut raw = [0u8; 16];
    OsRng.fill_bytes(&mut raw);
    let code = hex(&raw);
    let expires_at = now_ms() + 86_400_000;
    state.store.create_reset(&user, &secret_hash(code.as_bytes()), expires_at).await?;
    disconnect_all(state, &state.store.user_devices(&user).await?);
    audit(state, actor, "user.reset_password", &name, serde_json::json!({"user_id": hex(&user)})).await?;
    Ok(ResetCode { code, expires_at: u64::try_from(expires_at).unwrap_or(0) })
}

/// Sets a user's role: `user`, `admin` or `auditor`.
pub async fn set_role(state: &AppState, actor: &Actor, user: &[u8; 16], role: &str) -> ApiResult<()> {
    require_admin(&actor.caller)?;
    if !["user", "admin", "auditor"].contains(&role) {
        return Err(ApiError::bad_request("bad_role", "a role is user, admin or auditor"));
    }
    let (user, name) = user_here(state, &actor.caller, user).await?;
    if !state.store.guests_among(&[user]).await?.is_empty() {
        return Err(ApiError::bad_request(
            "guest_role",
            "a guest keeps the guest role; remove the guest and invite them as a member instead",
        ));
    }
    if user == actor.caller.session.user_id && role != "admin" {
        return Err(ApiError::bad_request("self", "you cannot take your own administrator role"));
    }
    state.store.set_role(&user, role).await?;
    audit(state, actor, "user.role", &name, serde_json::json!({"user_id": hex(&user), "role": role})).await
}

/// Puts a user in a security group of the same network (or none).
pub async fn set_group(state: &AppState, actor: &Actor, user: &[u8; 16], group: Option<&[u8; 16]>) -> ApiResult<()> {
    let (user, name) = admin_on_user(state, actor, user).await?;
    if !state.store.assign_group(&actor.caller.session.network_id, &user, group).await? {
        return Err(ApiError::not_found("unknown_group", "no such security group in your network"));
    }
    let group = group.map(|g| hex(g));
    audit(state, actor, "user.group", &name, serde_json::json!({"user_id": hex(&user), "group_id": group})).await
}

/// Revokes every device of a user; returns the re-enrolment invite (same account, new identity).
pub async fn reset_devices(state: &AppState, actor: &Actor, user: &[u8; 16]) -> ApiResult<InviteCreated> {
    let (user, name) = admin_on_user(state, actor, user).await?;
    let devices = state.store.user_devices(&user).await?;
    state.store.reset_devices(&user).await?;
    disconnect_all(state, &devices);
    let network = actor.caller.session.network_id;
    let invite = issue_invite(state, &network, false, DEFAULT_INVITE_SECS, Some(&user)).await?;
    audit(
        state,
        actor,
        "device.reset_all",
        &name,
        serde_json::json!({"user_id": hex(&user), "devices": devices.len()}),
    )
    .await?;
    Ok(invite)
}

/// Orders one device of a user of the actor's network wiped.
pub async fn wipe_device(state: &AppState, actor: &Actor, user: &[u8; 16], device: &[u8; 16]) -> ApiResult<()> {
    let (user, name) = admin_on_user(state, actor, user).await?;
    super::devices::order_wipe(state, actor, &user, device).await?;
    audit(state, actor, "device.wipe", &name, serde_json::json!({"user_id": hex(&user), "device_id": hex(device)}))
        .await
}

/// The network's security groups.
pub async fn list_groups(state: &AppState, caller: &Caller) -> ApiResult<Vec<SecurityGroup>> {
    require_reader(caller)?;
    Ok(state.store.groups(&caller.session.network_id).await?)
}

fn check_group(req: &GroupRequest) -> ApiResult<()> {
    let name = req.name.trim();
    if name.is_empty() || name.len() > 100 || name.chars().any(char::is_control) {
        return Err(ApiError::bad_request("bad_group", "a group name is 1 to 100 printable characters"));
    }
    req.settings.validate().map_err(|e| ApiError::bad_request("bad_settings", e))
}

/// Creates a security group.
pub async fn create_group(state: &AppState, actor: &Actor, req: GroupRequest) -> ApiResult<SecurityGroup> {
    require_admin(&actor.caller)?;
    check_group(&req)?;
    let mut id = [0u8; 16];
    OsRng.fill_bytes(&mut id);
    let name = req.name.trim();
    if !state.store.create_group(&actor.caller.session.network_id, &id, name, &req.settings, now_ms()).await? {
        return Err(ApiError::conflict("group_exists", "a security group with that name exists"));
    }
    audit(state, actor, "group.create", name, serde_json::to_value(&req.settings).unwrap_or_default()).await?;
    Ok(SecurityGroup { id: hex(&id), name: name.into(), settings: req.settings, members: 0 })
}

/// Renames a group or changes its settings.
pub async fn update_group(state: &AppState, actor: &Actor, group: &[u8; 16], req: GroupRequest) -> ApiResult<()> {
    require_admin(&actor.caller)?;
    check_group(&req)?;
    let name = req.name.trim();
    if !state.store.update_group(&actor.caller.session.network_id, group, name, &req.settings).await? {
        return Err(ApiError::not_found(
            "unknown_group",
            "no such security group in your network (or the name is taken)",
        ));
    }
    audit(state, actor, "group.update", name, serde_json::to_value(&req.settings).unwrap_or_default()).await
}

/// Deletes a group (its members fall back to the network's settings).
pub async fn delete_group(state: &AppState, actor: &Actor, group: &[u8; 16]) -> ApiResult<()> {
    require_admin(&actor.caller)?;
    if !state.store.delete_group(&actor.caller.session.network_id, group).await? {
        return Err(ApiError::not_found("unknown_group", "no such security group in your network"));
    }
    audit(state, actor, "group.delete", &hex(group), serde_json::json!({})).await
}

/// The network's default settings.
pub async fn settings(state: &AppState, caller: &Caller) -> ApiResult<GroupSettings> {
    require_reader(caller)?;
    Ok(state.settings_for_network(&caller.session.network_id).await?)
}

/// Sets the network's default settings.
pub async fn put_settings(state: &AppState, actor: &Actor, s: GroupSettings) -> ApiResult<()> {
    require_admin(&actor.caller)?;
    s.validate().map_err(|e| ApiError::bad_request("bad_settings", e))?;
    state.store.set_network_settings(&actor.caller.session.network_id, &s).await?;
    audit(state, actor, "network.settings", "network", serde_json::to_value(&s).unwrap_or_default()).await
}

/// The audit log of the caller's network, filtered.
pub async fn audit_log(state: &AppState, caller: &Caller, q: &AuditQuery) -> ApiResult<Vec<AuditEntry>> {
    require_reader(caller)?;
    Ok(state.store.audit_entries(&caller.session.network_id, q).await?)
}

/// The whole chain recomputed: (entries, the first problem if any, head hash).
pub async fn audit_verify(state: &AppState, caller: &Caller) -> ApiResult<serde_json::Value> {
    let entries = audit_log(state, caller, &AuditQuery::default()).await?;
    let result = verify_audit_chain(&entries);
    Ok(serde_json::json!({
        "entries": entries.len(),
        "ok": result.is_ok(),
        "problem": result.err(),
        "head": entries.last().map(|e| e.hash.clone()),
    }))
}
