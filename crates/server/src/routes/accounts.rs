use std::net::SocketAddr;

use axum::extract::{ConnectInfo, State};
use axum::extract::{Path, Query};
use axum::http::StatusCode;
use axum::Json;
use rand_core::{OsRng, RngCore};
use strongroom_wire::{
    ChangePassword, Invite, Login, NetworkId, NetworkInfo, Register, Registered, Session, UserId, UserInfo, B64,
};

use crate::auth::{check_password_length, hash_password, secret_hash, Caller};
use crate::error::{parse_id, ApiError, ApiResult};
use crate::service::sessions::{self, Binding};
use crate::state::AppState;
use crate::store::{now_ms, LoginOutcome};

fn check_username(name: &str) -> ApiResult<()> {
    let ok = (1..=64).contains(&name.len())
        && name.bytes().all(|b| b.is_ascii_lowercase() || b.is_ascii_digit() || matches!(b, b'.' | b'_' | b'-'));
    if ok {
        Ok(())
    } else {
        Err(ApiError::bad_request("bad_username", "usernames are 1 to 64 characters of a-z, 0-9, '.', '_' and '-'"))
    }
}

pub(super) fn limit(state: &AppState, addr: SocketAddr) -> ApiResult<()> {
    if state.auth_limiter.allow(&crate::connections::source_key(addr.ip())) {
        Ok(())
    } else {
        Err(ApiError::too_many("too many login or registration attempts from this address; wait a minute"))
    }
}

pub(super) async fn register(
    State(state): State<AppState>,
    ConnectInfo(addr): ConnectInfo<SocketAddr>,
    Json(req): Json<Register>,
) -> ApiResult<(StatusCode, Json<Registered>)> {
    limit(&state, addr)?;
    check_username(&req.username)?;
    let invite = Invite::parse(&req.invite).map_err(|e| ApiError::bad_request("bad_invite", e))?;
    let rules = state.settings_for_network(&invite.network_id).await?;
    check_password_length(&req.password, rules.password_min_length)?;
    let hash = hash_password(req.password).await?;
    let mut user = [0u8; 16];
    OsRng.fill_bytes(&mut user);
    match state.store.register(&secret_hash(&invite.secret), &user, &req.username, &hash, now_ms()).await? {
        LoginOutcome::Registered(network) => {
            crate::service::guests::enrolled(&state, &user, addr.ip()).await;
            Ok((
                StatusCode::CREATED,
                Json(Registered { user_id: UserId::from_bytes(user), network_id: NetworkId::from_bytes(network) }),
            ))
        }
        LoginOutcome::Reenrolled(network, existing) => Ok((
            StatusCode::CREATED,
            Json(Registered { user_id: UserId::from_bytes(existing), network_id: NetworkId::from_bytes(network) }),
        )),
        LoginOutcome::WrongUser => Err(ApiError::forbidden(
            "invalid_invite",
            "this invite re-enrols another account: use the username your administrator reset",
        )),
        LoginOutcome::BadInvite => Err(ApiError::forbidden(
            "invalid_invite",
            "the invite is unknown, already used, revoked or expired; ask an administrator for a new one",
        )),
        LoginOutcome::UsernameTaken => {
            Err(ApiError::conflict("username_taken", "that username is taken in this network"))
        }
    }
}

pub(super) async fn login(
    State(state): State<AppState>,
    ConnectInfo(addr): ConnectInfo<SocketAddr>,
    Json(req): Json<Login>,
) -> ApiResult<Json<Session>> {
    limit(&state, addr)?;
    let network = *req.network_id.as_bytes();
    let device = *req.device_id.as_bytes();
    let made =
        sessions::password_login(&state, &network, &req.username, req.password, Binding::Device(device), addr.ip())
            .await?;
    Ok(Json(Session {
        token: made.token,
        user_id: UserId::from_bytes(made.session.user_id),
        admin: made.session.admin,
    }))
}

pub(super) async fn logout(State(state): State<AppState>, caller: Caller) -> ApiResult<StatusCode> {
    sessions::logout(&state, &caller).await?;
    Ok(StatusCode::NO_CONTENT)
}

pub(super) async fn change_password(
    State(state): State<AppState>,
    caller: Caller,
    Json(req): Json<ChangePassword>,
) -> ApiResult<StatusCode> {
    sessions::change_password(&state, &caller, req.old_password, req.new_password).await?;
    Ok(StatusCode::NO_CONTENT)
}

/// Public: a network's name and key (clients check the key against the
/// fingerprint in their invite before trusting it).
pub(super) async fn network_info(
    State(state): State<AppState>,
    Path(id): Path<String>,
) -> ApiResult<Json<NetworkInfo>> {
    let id = parse_id(&id, "network id")?;
    let (name, public) = state
        .store
        .network_info(&id)
        .await?
        .ok_or_else(|| ApiError::not_found("unknown_network", "no such network"))?;
    Ok(Json(NetworkInfo { network_id: NetworkId::from_bytes(id), name, network_public: B64(public) }))
}

#[derive(serde::Deserialize)]
pub(super) struct UserQuery {
    username: Option<String>,
    id: Option<String>,
}

/// A user of the caller's network, by username or id.
pub(super) async fn find_user(
    State(state): State<AppState>,
    caller: Caller,
    Query(q): Query<UserQuery>,
) -> ApiResult<Json<UserInfo>> {
    let id = q.id.as_deref().map(|i| parse_id(i, "id")).transpose()?;
    if id.is_none() && q.username.is_none() {
        return Err(ApiError::bad_request("bad_query", "give ?username= or ?id="));
    }
    let unknown = || ApiError::not_found("unknown_user", "no such user in your network");
    let found = state.store.find_user(&caller.session.network_id, id.as_ref(), q.username.as_deref()).await?;
    // A guest sees only the people they share a conversation with.
    if !crate::service::guests::may_see(&state, &caller, found.as_ref().map(|u| u.user_id.as_bytes())).await? {
        return Err(unknown());
    }
    found.map(Json).ok_or_else(unknown)
}

/// Redeems an administrator's reset code: the user chooses a new password,
/// then logs in again on each device.
pub(super) async fn redeem_reset(
    State(state): State<AppState>,
    ConnectInfo(addr): ConnectInfo<SocketAddr>,
    Json(req): Json<strongroom_wire::RedeemReset>,
) -> ApiResult<StatusCode> {
    limit(&state, addr)?;
    let network = *req.network_id.as_bytes();
    sessions::redeem_reset(&state, &network, &req.username, &req.code, req.new_password, addr.ip()).await?;
    Ok(StatusCode::NO_CONTENT)
}
