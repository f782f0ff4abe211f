//! The administration API: users, devices, security groups, network
//! settings and the audit log. Administrators may do everything in their own
//! network; auditors may only read. Every change is written to the audit log.

use std::net::SocketAddr;

use axum::extract::{ConnectInfo, Path, Query, State};
use axum::http::{header, StatusCode};
use axum::response::IntoResponse;
use axum::Json;
use rand_core::{OsRng, RngCore};
use serde::Deserialize;
use strongroom_wire::{
    verify_audit_chain, AdminUser, GroupRequest, GroupSettings, InviteCreated, ResetCode, SecurityGroup, SetGroup,
    SetRole,
};

use super::admin::{issue_invite, issue_invite_for, DEFAULT_INVITE_SECS};
use crate::auth::{secret_hash, Caller};
use crate::error::{hex, parse_id, ApiError, ApiResult};
use crate::state::AppState;
use crate::store::{now_ms, AuditQuery};

/// Administrators only.
pub(crate) fn require_admin(caller: &Caller) -> ApiResult<()> {
    if caller.session.admin {
        Ok(())
    } else {
        Err(ApiError::forbidden("not_admin", "only network administrators can do this"))
    }
}

/// Administrators and auditors (read-only).
pub(crate) fn require_reader(caller: &Caller) -> ApiResult<()> {
    if caller.session.admin || caller.session.auditor {
        Ok(())
    } else {
        Err(ApiError::forbidden("not_admin", "only network administrators and auditors can see this"))
    }
}

/// Writes an audit entry for an administrator's action.
pub(crate) async fn audit(
    state: &AppState,
    caller: &Caller,
    addr: SocketAddr,
    action: &str,
    target: &str,
    details: serde_json::Value,
) -> ApiResult<()> {
    let actor = state
        .store
        .live_user(&caller.session.user_id)
        .await?
        .map(|(_, n)| n)
        .unwrap_or_else(|| hex(&caller.session.user_id));
    state
        .store
        .audit(
            &caller.session.network_id,
            &actor,
            action,
            target,
            &addr.ip().to_string(),
            &details.to_string(),
            now_ms(),
        )
        .await?;
    Ok(())
}

/// A user of the caller's network (404 otherwise, so other networks' users are invisible).
async fn user_here(state: &AppState, caller: &Caller, id: &str) -> ApiResult<([u8; 16], String)> {
    let user = parse_id(id, "user id")?;
    match state.store.live_user(&user).await? {
        Some((network, name)) if network == caller.session.network_id => Ok((user, name)),
        _ => Err(ApiError::not_found("unknown_user", "no such user in your network")),
    }
}

/// An administrator acting on a user of their own network.
async fn admin_on_user(state: &AppState, caller: &Caller, id: &str) -> ApiResult<([u8; 16], String)> {
    require_admin(caller)?;
    user_here(state, caller, id).await
}

#[derive(Deserialize)]
pub(super) struct UserSearch {
    pub(super) search: Option<String>,
}

pub(super) async fn list_users(
    State(state): State<AppState>,
    caller: Caller,
    Query(q): Query<UserSearch>,
) -> ApiResult<Json<Vec<AdminUser>>> {
    require_reader(&caller)?;
    Ok(Json(state.store.admin_users(&caller.session.network_id, q.search.as_deref()).await?))
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
pub(super) struct BulkInvite {
    /// One invite per label (e.g. the names from a CSV file); at most 1000.
    pub(super) labels: Vec<String>,
    #[serde(default)]
    pub(super) admin: bool,
    pub(super) ttl_secs: Option<u64>,
}

#[derive(serde::Serialize)]
pub(super) struct LabelledInvite {
    pub(super) label: String,
    #[serde(flatten)]
    pub(super) invite: InviteCreated,
}

pub(super) async fn bulk_invite(
    State(state): State<AppState>,
    caller: Caller,
    ConnectInfo(addr): ConnectInfo<SocketAddr>,
    Json(req): Json<BulkInvite>,
) -> ApiResult<(StatusCode, Json<Vec<LabelledInvite>>)> {
    require_admin(&caller)?;
    if req.labels.is_empty() || req.labels.len() > 1000 {
        return Err(ApiError::bad_request("bad_invites", "give 1 to 1000 labels (one invite each)"));
    }
    if req.labels.iter().any(|l| l.len() > 200 || l.chars().any(char::is_control)) {
        return Err(ApiError::bad_request("bad_invites", "labels are up to 200 printable characters"));
    }
    let mut out = Vec::with_capacity(req.labels.len());
    for label in req.labels {
        let invite =
            issue_invite(&state, &caller.session.network_id, req.admin, req.ttl_secs.unwrap_or(DEFAULT_INVITE_SECS))
                .await?;
        out.push(LabelledInvite { label, invite });
    }
    let labels: Vec<&str> = out.iter().map(|l| l.label.as_str()).collect();
    audit(
        &state,
        &caller,
        addr,
        "invite.create",
        &format!("{} invites", out.len()),
        serde_json::json!({"labels": labels, "admin": req.admin}),
    )
    .await?;
    Ok((StatusCode::CREATED, Json(out)))
}

#[derive(Deserialize)]
pub(super) struct Reissue {
    invite: String,
}

/// Reinvite: the old invite is revoked and a new one issued.
pub(super) async fn reissue_invite(
    State(state): State<AppState>,
    caller: Caller,
    ConnectInfo(addr): ConnectInfo<SocketAddr>,
    Json(req): Json<Reissue>,
) -> ApiResult<(StatusCode, Json<InviteCreated>)> {
    require_admin(&caller)?;
    let old = strongroom_wire::Invite::parse(&req.invite).map_err(|e| ApiError::bad_request("bad_invite", e))?;
    if !state.store.revoke_invite(&secret_hash(&old.secret), &caller.session.network_id).await? {
        return Err(ApiError::not_found("unknown_invite", "no unused invite with that code in your network"));
    }
    let invite = issue_invite(&state, &caller.session.network_id, false, DEFAULT_INVITE_SECS).await?;
    audit(&state, &caller, addr, "invite.reissue", "invite", serde_json::json!({})).await?;
    Ok((StatusCode::CREATED, Json(invite)))
}

fn disconnect_all(state: &AppState, devices: &[[u8; 16]]) {
    for d in devices {
        state.hub.disconnect(d);
    }
}

pub(super) async fn suspend(
    State(state): State<AppState>,
    caller: Caller,
    ConnectInfo(addr): ConnectInfo<SocketAddr>,
    Path(id): Path<String>,
) -> ApiResult<StatusCode> {
    suspension(&state, &caller, addr, &id, true).await
}

pub(super) async fn unsuspend(
    State(state): State<AppState>,
    caller: Caller,
    ConnectInfo(addr): ConnectInfo<SocketAddr>,
    Path(id): Path<String>,
) -> ApiResult<StatusCode> {
    suspension(&state, &caller, addr, &id, false).await
}

/// Suspending ends every session and closes open WebSockets at once.
async fn suspension(state: &AppState, caller: &Caller, addr: SocketAddr, id: &str, on: bool) -> ApiResult<StatusCode> {
    let (user, name) = admin_on_user(state, caller, id).await?;
    if on && user == caller.session.user_id {
        return Err(ApiError::bad_request("self", "you cannot suspend yourself"));
    }
    state.store.set_suspended(&user, on).await?;
    if on {
        disconnect_all(state, &state.store.user_devices(&user).await?);
    }
    let action = if on { "user.suspend" } else { "user.unsuspend" };
    audit(state, caller, addr, action, &name, serde_json::json!({"user_id": id})).await?;
    Ok(StatusCode::NO_CONTENT)
}

pub(super) async fn delete_user(
    State(state): State<AppState>,
    caller: Caller,
    ConnectInfo(addr): ConnectInfo<SocketAddr>,
    Path(id): Path<String>,
) -> ApiResult<StatusCode> {
    let (user, name) = admin_on_user(&state, &caller, &id).await?;
    if user == caller.session.user_id {
        return Err(ApiError::bad_request("self", "you cannot delete yourself"));
    }
    let devices = state.store.user_devices(&user).await?;
    state.store.delete_user(&user).await?;
    disconnect_all(&state, &devices);
    audit(&state, &caller, addr, "user.delete", &name, serde_json::json!({"user_id": id})).await?;
    Ok(StatusCode::NO_CONTENT)
}

pub(super) async fn reset_password(
    State(state): State<AppState>,
    caller: Caller,
    ConnectInfo(addr): ConnectInfo<SocketAddr>,
    Path(id): Path<String>,
) -> ApiResult<(StatusCode, Json<ResetCode>)> {
    let (user, name) = admin_on_user(&state, &caller, &id).await?;
    let mut raw = [0u8; 16];
    OsRng.fill_bytes(&mut raw);
    let code = hex(&raw);
    let expires_at = now_ms() + 86_400_000;
    state.store.create_reset(&user, &secret_hash(code.as_bytes()), expires_at).await?;
    disconnect_all(&state, &state.store.user_devices(&user).await?);
    audit(&state, &caller, addr, "user.reset_password", &name, serde_json::json!({"user_id": id})).await?;
    Ok((StatusCode::CREATED, Json(ResetCode { code, expires_at: u64::try_from(expires_at).unwrap_or(0) })))
}

pub(super) async fn set_role(
    State(state): State<AppState>,
    caller: Caller,
    ConnectInfo(addr): ConnectInfo<SocketAddr>,
    Path(id): Path<String>,
    Json(req): Json<SetRole>,
) -> ApiResult<StatusCode> {
    require_admin(&caller)?;
    if !["user", "admin", "auditor"].contains(&req.role.as_str()) {
        return Err(ApiError::bad_request("bad_role", "a role is user, admin or auditor"));
    }
    let (user, name) = user_here(&state, &caller, &id).await?;
    if user == caller.session.user_id && req.role != "admin" {
        return Err(ApiError::bad_request("self", "you cannot take your own administrator role"));
    }
    state.store.set_role(&user, &req.role).await?;
    audit(&state, &caller, addr, "user.role", &name, serde_json::json!({"user_id": id, "role": req.role})).await?;
    Ok(StatusCode::NO_CONTENT)
}

pub(super) async fn set_group(
    State(state): State<AppState>,
    caller: Caller,
    ConnectInfo(addr): ConnectInfo<SocketAddr>,
    Path(id): Path<String>,
    Json(req): Json<SetGroup>,
) -> ApiResult<StatusCode> {
    let (user, name) = admin_on_user(&state, &caller, &id).await?;
    let group = req.group_id.as_deref().map(|g| parse_id(g, "group id")).transpose()?;
    if !state.store.assign_group(&caller.session.network_id, &user, group.as_ref()).await? {
        return Err(ApiError::not_found("unknown_group", "no such security group in your network"));
    }
    audit(&state, &caller, addr, "user.group", &name, serde_json::json!({"user_id": id, "group_id": req.group_id}))
        .await?;
    Ok(StatusCode::NO_CONTENT)
}

pub(super) async fn reset_devices(
    State(state): State<AppState>,
    caller: Caller,
    ConnectInfo(addr): ConnectInfo<SocketAddr>,
    Path(id): Path<String>,
) -> ApiResult<(StatusCode, Json<InviteCreated>)> {
    let (user, name) = admin_on_user(&state, &caller, &id).await?;
    let devices = state.store.user_devices(&user).await?;
    state.store.reset_devices(&user).await?;
    disconnect_all(&state, &devices);
    // The user enrols again (a new identity) with this invite, keeping their account.
    let invite = issue_invite_for(&state, &caller.session.network_id, false, DEFAULT_INVITE_SECS, Some(&user)).await?;
    audit(
        &state,
        &caller,
        addr,
        "device.reset_all",
        &name,
        serde_json::json!({"user_id": id, "devices": devices.len()}),
    )
    .await?;
    Ok((StatusCode::CREATED, Json(invite)))
}

pub(super) async fn wipe_device(
    State(state): State<AppState>,
    caller: Caller,
    ConnectInfo(addr): ConnectInfo<SocketAddr>,
    Path((id, device)): Path<(String, String)>,
) -> ApiResult<StatusCode> {
    let (user, name) = admin_on_user(&state, &caller, &id).await?;
    let device_id = parse_id(&device, "device id")?;
    if !state.store.wipe_device(&user, &device_id, now_ms()).await? {
        return Err(ApiError::not_found("unknown_device", "that user has no such device"));
    }
    audit(&state, &caller, addr, "device.wipe", &name, serde_json::json!({"user_id": id, "device_id": device})).await?;
    Ok(StatusCode::ACCEPTED)
}

/// The device confirms it has erased its profile.
pub(super) async fn confirm_wipe(State(state): State<AppState>, caller: Caller) -> ApiResult<StatusCode> {
    if !state.store.wipe_pending(&caller.session.device_id).await? {
        return Err(ApiError::bad_request("no_wipe", "no wipe was ordered for this device"));
    }
    state.store.confirm_wipe(&caller.session.device_id, now_ms()).await?;
    let actor = state.store.live_user(&caller.session.user_id).await?.map(|(_, n)| n).unwrap_or_default();
    state
        .store
        .audit(
            &caller.session.network_id,
            &actor,
            "device.wipe_confirmed",
            &actor,
            "device",
            &serde_json::json!({"device_id": hex(&caller.session.device_id)}).to_string(),
            now_ms(),
        )
        .await?;
    Ok(StatusCode::NO_CONTENT)
}

pub(super) async fn list_groups(State(state): State<AppState>, caller: Caller) -> ApiResult<Json<Vec<SecurityGroup>>> {
    require_reader(&caller)?;
    Ok(Json(state.store.groups(&caller.session.network_id).await?))
}

fn check_group(req: &GroupRequest) -> ApiResult<()> {
    let name = req.name.trim();
    if name.is_empty() || name.len() > 100 || name.chars().any(char::is_control) {
        return Err(ApiError::bad_request("bad_group", "a group name is 1 to 100 printable characters"));
    }
    req.settings.validate().map_err(|e| ApiError::bad_request("bad_settings", e))
}

pub(super) async fn create_group(
    State(state): State<AppState>,
    caller: Caller,
    ConnectInfo(addr): ConnectInfo<SocketAddr>,
    Json(req): Json<GroupRequest>,
) -> ApiResult<(StatusCode, Json<SecurityGroup>)> {
    require_admin(&caller)?;
    check_group(&req)?;
    let mut id = [0u8; 16];
    OsRng.fill_bytes(&mut id);
    if !state.store.create_group(&caller.session.network_id, &id, req.name.trim(), &req.settings, now_ms()).await? {
        return Err(ApiError::conflict("group_exists", "a security group with that name exists"));
    }
    audit(
        &state,
        &caller,
        addr,
        "group.create",
        req.name.trim(),
        serde_json::to_value(&req.settings).unwrap_or_default(),
    )
    .await?;
    Ok((
        StatusCode::CREATED,
        Json(SecurityGroup { id: hex(&id), name: req.name.trim().into(), settings: req.settings, members: 0 }),
    ))
}

pub(super) async fn update_group(
    State(state): State<AppState>,
    caller: Caller,
    ConnectInfo(addr): ConnectInfo<SocketAddr>,
    Path(id): Path<String>,
    Json(req): Json<GroupRequest>,
) -> ApiResult<StatusCode> {
    require_admin(&caller)?;
    check_group(&req)?;
    let gid = parse_id(&id, "group id")?;
    if !state.store.update_group(&caller.session.network_id, &gid, req.name.trim(), &req.settings).await? {
        return Err(ApiError::not_found(
            "unknown_group",
            "no such security group in your network (or the name is taken)",
        ));
    }
    audit(
        &state,
        &caller,
        addr,
        "group.update",
        req.name.trim(),
        serde_json::to_value(&req.settings).unwrap_or_default(),
    )
    .await?;
    Ok(StatusCode::NO_CONTENT)
}

pub(super) async fn delete_group(
    State(state): State<AppState>,
    caller: Caller,
    ConnectInfo(addr): ConnectInfo<SocketAddr>,
    Path(id): Path<String>,
) -> ApiResult<StatusCode> {
    require_admin(&caller)?;
    let gid = parse_id(&id, "group id")?;
    if !state.store.delete_group(&caller.session.network_id, &gid).await? {
        return Err(ApiError::not_found("unknown_group", "no such security group in your network"));
    }
    audit(&state, &caller, addr, "group.delete", &id, serde_json::json!({})).await?;
    Ok(StatusCode::NO_CONTENT)
}

pub(super) async fn get_settings(State(state): State<AppState>, caller: Caller) -> ApiResult<Json<GroupSettings>> {
    require_reader(&caller)?;
    Ok(Json(state.settings_for_network(&caller.session.network_id).await?))
}

pub(super) async fn put_settings(
    State(state): State<AppState>,
    caller: Caller,
    ConnectInfo(addr): ConnectInfo<SocketAddr>,
    Json(s): Json<GroupSettings>,
) -> ApiResult<StatusCode> {
    require_admin(&caller)?;
    s.validate().map_err(|e| ApiError::bad_request("bad_settings", e))?;
    state.store.set_network_settings(&caller.session.network_id, &s).await?;
    audit(&state, &caller, addr, "network.settings", "network", serde_json::to_value(&s).unwrap_or_default()).await?;
    Ok(StatusCode::NO_CONTENT)
}

/// What applies to the caller (clients honour it; the server enforces what it can see).
pub(super) async fn my_policy(State(state): State<AppState>, caller: Caller) -> ApiResult<Json<GroupSettings>> {
    Ok(Json(state.settings_for_user(&caller.session.user_id).await?))
}

#[derive(Deserialize)]
pub(super) struct AuditParams {
    pub(super) from: Option<i64>,
    pub(super) until: Option<i64>,
    pub(super) actor: Option<String>,
    pub(super) action: Option<String>,
    pub(super) format: Option<String>,
}

pub(super) async fn audit_log(
    State(state): State<AppState>,
    caller: Caller,
    Query(p): Query<AuditParams>,
) -> ApiResult<axum::response::Response> {
    require_reader(&caller)?;
    let q = AuditQuery { from: p.from, until: p.until, actor: p.actor, action: p.action };
    let entries = state.store.audit_entries(&caller.session.network_id, &q).await?;
    match p.format.as_deref() {
        None | Some("json") => Ok(Json(entries).into_response()),
        Some("jsonl") => {
            let mut body = String::new();
            for e in &entries {
                body.push_str(&serde_json::to_string(e).unwrap_or_default());
                body.push('\n');
            }
            Ok(([(header::CONTENT_TYPE, "application/x-ndjson")], body).into_response())
        }
        Some(_) => Err(ApiError::bad_request("bad_format", "format is json or jsonl")),
    }
}

/// Recomputes the whole chain on the server (clients can do the same on an export).
pub(super) async fn audit_verify(State(state): State<AppState>, caller: Caller) -> ApiResult<Json<serde_json::Value>> {
    require_reader(&caller)?;
    let entries = state.store.audit_entries(&caller.session.network_id, &AuditQuery::default()).await?;
    let result = verify_audit_chain(&entries);
    Ok(Json(serde_json::json!({
        "entries": entries.len(),
        "ok": result.is_ok(),
        "problem": result.err(),
        "head": entries.last().map(|e| e.hash.clone()),
    })))
}
