//! `/v1/admin/…`: the administration API (rules in `service/admin.rs`; the
//! web console calls the same services).

use std::net::SocketAddr;

use axum::extract::{ConnectInfo, Path, Query, State};
use axum::http::{header, StatusCode};
use axum::response::IntoResponse;
use axum::Json;
use serde::Deserialize;
use strongroom_wire::{
    AdminUser, GroupRequest, GroupSettings, InviteCreated, ResetCode, SecurityGroup, SetGroup, SetRole,
};

use crate::auth::Caller;
use crate::error::{parse_id, ApiError, ApiResult};
use crate::service::{admin, Actor};
use crate::state::AppState;
use crate::store::AuditQuery;

fn actor(caller: Caller, addr: SocketAddr) -> Actor {
    Actor { caller, source: addr.ip() }
}

fn user_id(id: &str) -> ApiResult<[u8; 16]> {
    parse_id(id, "user id")
}

#[derive(Deserialize)]
pub(super) struct UserSearch {
    search: Option<String>,
}

pub(super) async fn list_users(
    State(state): State<AppState>,
    caller: Caller,
    Query(q): Query<UserSearch>,
) -> ApiResult<Json<Vec<AdminUser>>> {
    Ok(Json(admin::list_users(&state, &caller, q.search.as_deref()).await?))
}

/// The network's guests and who invited each.
pub(super) async fn list_guests(State(state): State<AppState>, caller: Caller) -> ApiResult<Json<Vec<AdminUser>>> {
    Ok(Json(admin::list_guests(&state, &caller).await?))
}

/// A guest invite from a member whose security group allows guests.
pub(super) async fn guest_invite(
    State(state): State<AppState>,
    caller: Caller,
    ConnectInfo(addr): ConnectInfo<SocketAddr>,
    Json(req): Json<strongroom_wire::CreateGuestInvite>,
) -> ApiResult<(StatusCode, Json<InviteCreated>)> {
    let made = crate::service::guests::invite(&state, &actor(caller, addr), req.ttl_secs).await?;
    Ok((StatusCode::CREATED, Json(made)))
}

pub(super) async fn bulk_invite(
    State(state): State<AppState>,
    caller: Caller,
    ConnectInfo(addr): ConnectInfo<SocketAddr>,
    Json(req): Json<strongroom_wire::BulkInvite>,
) -> ApiResult<(StatusCode, Json<Vec<strongroom_wire::LabelledInvite>>)> {
    let made = admin::bulk_invite(&state, &actor(caller, addr), req.labels, req.admin, req.ttl_secs).await?;
    let out = made.into_iter().map(|(label, invite)| strongroom_wire::LabelledInvite { label, invite }).collect();
    Ok((StatusCode::CREATED, Json(out)))
}

/// Reinvite: the old invite is revoked and a new one issued.
pub(super) async fn reissue_invite(
    State(state): State<AppState>,
    caller: Caller,
    ConnectInfo(addr): ConnectInfo<SocketAddr>,
    Json(req): Json<strongroom_wire::InviteCode>,
) -> ApiResult<(StatusCode, Json<InviteCreated>)> {
    Ok((StatusCode::CREATED, Json(admin::reissue_invite(&state, &actor(caller, addr), &req.invite).await?)))
}

pub(super) async fn suspend(
    State(state): State<AppState>,
    caller: Caller,
    ConnectInfo(addr): ConnectInfo<SocketAddr>,
    Path(id): Path<String>,
) -> ApiResult<StatusCode> {
    admin::set_suspended(&state, &actor(caller, addr), &user_id(&id)?, true).await?;
    Ok(StatusCode::NO_CONTENT)
}

pub(super) async fn unsuspend(
    State(state): State<AppState>,
    caller: Caller,
    ConnectInfo(addr): ConnectInfo<SocketAddr>,
    Path(id): Path<String>,
) -> ApiResult<StatusCode> {
    admin::set_suspended(&state, &actor(caller, addr), &user_id(&id)?, false).await?;
    Ok(StatusCode::NO_CONTENT)
}

pub(super) async fn delete_user(
    State(state): State<AppState>,
    caller: Caller,
    ConnectInfo(addr): ConnectInfo<SocketAddr>,
    Path(id): Path<String>,
) -> ApiResult<StatusCode> {
    admin::delete_user(&state, &actor(caller, addr), &user_id(&id)?).await?;
    Ok(StatusCode::NO_CONTENT)
}

pub(super) async fn reset_password(
    State(state): State<AppState>,
    caller: Caller,
    ConnectInfo(addr): ConnectInfo<SocketAddr>,
    Path(id): Path<String>,
) -> ApiResult<(StatusCode, Json<ResetCode>)> {
    Ok((StatusCode::CREATED, Json(admin::reset_password(&state, &actor(caller, addr), &user_id(&id)?).await?)))
}

pub(super) async fn set_role(
    State(state): State<AppState>,
    caller: Caller,
    ConnectInfo(addr): ConnectInfo<SocketAddr>,
    Path(id): Path<String>,
    Json(req): Json<SetRole>,
) -> ApiResult<StatusCode> {
    admin::set_role(&state, &actor(caller, addr), &user_id(&id)?, &req.role).await?;
    Ok(StatusCode::NO_CONTENT)
}

pub(super) async fn set_group(
    State(state): State<AppState>,
    caller: Caller,
    ConnectInfo(addr): ConnectInfo<SocketAddr>,
    Path(id): Path<String>,
    Json(req): Json<SetGroup>,
) -> ApiResult<StatusCode> {
    let group = req.group_id.as_deref().map(|g| parse_id(g, "group id")).transpose()?;
    admin::set_group(&state, &actor(caller, addr), &user_id(&id)?, group.as_ref()).await?;
    Ok(StatusCode::NO_CONTENT)
}

pub(super) async fn reset_devices(
    State(state): State<AppState>,
    caller: Caller,
    ConnectInfo(addr): ConnectInfo<SocketAddr>,
    Path(id): Path<String>,
) -> ApiResult<(StatusCode, Json<InviteCreated>)> {
    Ok((StatusCode::CREATED, Json(admin::reset_devices(&state, &actor(caller, addr), &user_id(&id)?).await?)))
}

pub(super) async fn wipe_device(
    State(state): State<AppState>,
    caller: Caller,
    ConnectInfo(addr): ConnectInfo<SocketAddr>,
    Path((id, device)): Path<(String, String)>,
) -> ApiResult<StatusCode> {
    let device = parse_id(&device, "device id")?;
    admin::wipe_device(&state, &actor(caller, addr), &user_id(&id)?, &device).await?;
    Ok(StatusCode::ACCEPTED)
}

pub(super) async fn list_groups(State(state): State<AppState>, caller: Caller) -> ApiResult<Json<Vec<SecurityGroup>>> {
    Ok(Json(admin::list_groups(&state, &caller).await?))
}

pub(super) async fn create_group(
    State(state): State<AppState>,
    caller: Caller,
    ConnectInfo(addr): ConnectInfo<SocketAddr>,
    Json(req): Json<GroupRequest>,
) -> ApiResult<(StatusCode, Json<SecurityGroup>)> {
    Ok((StatusCode::CREATED, Json(admin::create_group(&state, &actor(caller, addr), req).await?)))
}

pub(super) async fn update_group(
    State(state): State<AppState>,
    caller: Caller,
    ConnectInfo(addr): ConnectInfo<SocketAddr>,
    Path(id): Path<String>,
    Json(req): Json<GroupRequest>,
) -> ApiResult<StatusCode> {
    admin::update_group(&state, &actor(caller, addr), &parse_id(&id, "group id")?, req).await?;
    Ok(StatusCode::NO_CONTENT)
}

pub(super) async fn delete_group(
    State(state): State<AppState>,
    caller: Caller,
    ConnectInfo(addr): ConnectInfo<SocketAddr>,
    Path(id): Path<String>,
) -> ApiResult<StatusCode> {
    admin::delete_group(&state, &actor(caller, addr), &parse_id(&id, "group id")?).await?;
    Ok(StatusCode::NO_CONTENT)
}

pub(super) async fn get_settings(State(state): State<AppState>, caller: Caller) -> ApiResult<Json<GroupSettings>> {
    Ok(Json(admin::settings(&state, &caller).await?))
}

pub(super) async fn put_settings(
    State(state): State<AppState>,
    caller: Caller,
    ConnectInfo(addr): ConnectInfo<SocketAddr>,
    Json(s): Json<GroupSettings>,
) -> ApiResult<StatusCode> {
    admin::put_settings(&state, &actor(caller, addr), s).await?;
    Ok(StatusCode::NO_CONTENT)
}

/// What applies to the caller (clients honour it; the server enforces what it can see).
/// The answer names the settings' tag (`strongroom-settings-tag`), which a
/// client repeats when it sends.
pub(super) async fn my_policy(
    State(state): State<AppState>,
    caller: Caller,
) -> ApiResult<([(&'static str, String); 1], Json<GroupSettings>)> {
    let settings = state.settings_for_user(&caller.session.user_id).await?;
    let tag = crate::state::settings_tag(&settings);
    Ok(([(strongroom_wire::SETTINGS_TAG_HEADER, tag)], Json(settings)))
}

#[derive(Deserialize)]
pub(super) struct AuditParams {
    from: Option<i64>,
    until: Option<i64>,
    actor: Option<String>,
    action: Option<String>,
    format: Option<String>,
}

pub(super) async fn audit_log(
    State(state): State<AppState>,
    caller: Caller,
    Query(p): Query<AuditParams>,
) -> ApiResult<axum::response::Response> {
    admin::require_reader(&caller)?;
    let q = AuditQuery { from: p.from, until: p.until, actor: p.actor, action: p.action };
    let as_jsonl = match p.format.as_deref() {
        None | Some("json") => false,
        Some("jsonl") => true,
        Some(_) => return Err(ApiError::bad_request("bad_format", "format is json or jsonl")),
    };
    let entries = admin::audit_log(&state, &caller, &q).await?;
    if !as_jsonl {
        return Ok(Json(entries).into_response());
    }
    let mut body = String::new();
    for e in &entries {
        body.push_str(&serde_json::to_string(e).unwrap_or_default());
        body.push('\n');
    }
    Ok(([(header::CONTENT_TYPE, "application/x-ndjson")], body).into_response())
}

/// Recomputes the whole chain on the server (clients can do the same on an export).
pub(super) async fn audit_verify(State(state): State<AppState>, caller: Caller) -> ApiResult<Json<serde_json::Value>> {
    Ok(Json(admin::audit_verify(&state, &caller).await?))
}
