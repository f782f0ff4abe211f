//! `/v1/conversations…` (rules in `service/conversations.rs`).

use axum::body::Bytes;
use axum::extract::{Path, Query, State};
use axum::http::StatusCode;
use axum::Json;
use strongroom_wire::{ChangeMembers, Conversation, CreateConversation, MembershipHistory, UserId, B64};

use crate::auth::Caller;
use crate::error::{parse_id, ApiError, ApiResult};
use crate::service::conversations::{self, MemberChange, MAX_MEMBERS};
use crate::state::AppState;
use crate::store::Kind;

/// User ids, sorted and deduplicated.
fn parse_users(list: &[UserId]) -> ApiResult<Vec<[u8; 16]>> {
    if list.len() > MAX_MEMBERS {
        return Err(ApiError::bad_request("too_many_members", "at most 4096 users per request"));
    }
    let mut v: Vec<[u8; 16]> = list.iter().map(|u| *u.as_bytes()).collect();
    v.sort_unstable();
    v.dedup();
    Ok(v)
}

pub(super) async fn create(
    State(state): State<AppState>,
    caller: Caller,
    Json(req): Json<CreateConversation>,
) -> ApiResult<(StatusCode, Json<Conversation>)> {
    let kind = Some(req.kind)
        .filter(|k| *k != Kind::Unknown)
        .ok_or_else(|| ApiError::bad_request("bad_kind", "kind is direct, group, room or notes"))?;
    let others = parse_users(&req.members)?;
    Ok((StatusCode::CREATED, Json(conversations::create(&state, &caller, kind, others).await?)))
}

pub(super) async fn list(State(state): State<AppState>, caller: Caller) -> ApiResult<Json<Vec<Conversation>>> {
    Ok(Json(conversations::list(&state, &caller).await?))
}

pub(super) async fn get_one(
    State(state): State<AppState>,
    caller: Caller,
    Path(id): Path<String>,
) -> ApiResult<Json<Conversation>> {
    let c = conversations::member_of(&state, &caller, &parse_id(&id, "conversation id")?).await?;
    Ok(Json(conversations::view(&c)))
}

pub(super) async fn change_members(
    State(state): State<AppState>,
    caller: Caller,
    Path(id): Path<String>,
    Json(req): Json<ChangeMembers>,
) -> ApiResult<Json<Conversation>> {
    let id = parse_id(&id, "conversation id")?;
    let change = MemberChange {
        add: parse_users(&req.add)?,
        remove: parse_users(&req.remove)?,
        promote: parse_users(&req.promote)?,
        demote: parse_users(&req.demote)?,
    };
    Ok(Json(conversations::change_members(&state, &caller, &id, change).await?))
}

#[derive(serde::Deserialize)]
pub(super) struct AfterQuery {
    #[serde(default)]
    after: u64,
}

pub(super) async fn statements(
    State(state): State<AppState>,
    caller: Caller,
    Path(id): Path<String>,
    Query(q): Query<AfterQuery>,
) -> ApiResult<Json<MembershipHistory>> {
    let list = conversations::statements(&state, &caller, &parse_id(&id, "conversation id")?, q.after).await?;
    Ok(Json(MembershipHistory { statements: list.into_iter().map(B64).collect() }))
}

pub(super) async fn post_statement(
    State(state): State<AppState>,
    caller: Caller,
    Path(id): Path<String>,
    body: Bytes,
) -> ApiResult<Json<Conversation>> {
    Ok(Json(conversations::post_statement(&state, &caller, &parse_id(&id, "conversation id")?, &body).await?))
}
