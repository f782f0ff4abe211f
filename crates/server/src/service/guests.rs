//! Guests: people outside the organisation, on the host network with a
//! limited account. A member whose security group allows guests invites
//! one; the guest gets the inviter's security group. The relay enforces
//! every limit: a guest starts no conversation, changes no membership but
//! their own leaving, is never a moderator, sees only the people they share
//! a conversation with, and expires after the group's inactivity period
//! (devices revoked; members remove them with a signed statement).

use strongroom_wire::InviteCreated;

use super::admin::{invite_code, new_invite_secret, DEFAULT_INVITE_SECS};
use super::Actor;
use crate::auth::{secret_hash, Caller};
use crate::error::{hex, ApiError, ApiResult};
use crate::state::AppState;
use crate::store::{now_ms, StoreError};

/// Most guest invites one member may have outstanding (unused, unexpired).
const MAX_OPEN_INVITES: i64 = 100;

/// Refuses a guest what only members may do.
pub fn refuse_guest(caller: &Caller, what: &str) -> ApiResult<()> {
    if caller.session.guest {
        return Err(ApiError::forbidden(
            "guest_limited",
            format!("guests cannot {what}; a member of the host network can do it for you"),
        ));
    }
    Ok(())
}

/// A guest invite from a member whose security group allows guests.
pub async fn invite(state: &AppState, actor: &Actor, ttl_secs: Option<u64>) -> ApiResult<InviteCreated> {
    let caller = &actor.caller;
    refuse_guest(caller, "invite guests")?;
    let me = caller.session.user_id;
    if !state.settings_for_user(&me).await?.guests_enabled {
        return Err(ApiError::forbidden(
            "guests_disabled",
            "your security group does not allow guests; ask an administrator to turn guests_enabled on",
        ));
    }
    if state.store.open_guest_invites(&me, now_ms()).await? >= MAX_OPEN_INVITES {
        return Err(ApiError::too_many(
            "you have 100 guest invites nobody has used yet; wait for them to be used or expire, or ask an administrator to revoke some",
        ));
    }
    let network = caller.session.network_id;
    let group = state.store.user_group(&me).await?;
    let (secret, expires_at) = new_invite_secret(ttl_secs.unwrap_or(DEFAULT_INVITE_SECS));
    state.store.create_guest_invite(&secret_hash(&secret), &network, &me, group.as_ref(), expires_at, now_ms()).await?;
    let created = invite_code(state, &network, secret, expires_at).await?;
    let details = serde_json::json!({"invited_by": hex(&me), "group_id": group.map(|g| hex(&g))});
    super::admin::audit(state, actor, "guest.invite", "guest invite", details).await?;
    Ok(created)
}

/// Members who add `added` (and make `moderators` moderators): guests only
/// where the adder's security group allows them, and never as moderators.
pub async fn check_added(
    state: &AppState,
    caller: &Caller,
    added: &[[u8; 16]],
    moderators: &[[u8; 16]],
) -> ApiResult<()> {
    if !state.store.guests_among(moderators).await?.is_empty() {
        return Err(ApiError::forbidden("guest_limited", "a guest cannot be a moderator"));
    }
    if state.store.guests_among(added).await?.is_empty() {
        return Ok(());
    }
    if !state.settings_for_user(&caller.session.user_id).await?.guests_enabled {
        return Err(ApiError::forbidden(
            "guests_disabled",
            "your security group does not allow guests in conversations; ask an administrator",
        ));
    }
    Ok(())
}

/// Whether the caller may look `user` up: members see their network's
/// directory, a guest only the people they share a conversation with.
pub async fn may_see(state: &AppState, caller: &Caller, user: Option<&[u8; 16]>) -> ApiResult<bool> {
    if !caller.session.guest {
        return Ok(user.is_some());
    }
    // Asked even for nobody, so the answer's timing does not tell whether a name exists.
    let shared = state.store.share_conversation(&caller.session.user_id, user.unwrap_or(&[0; 16])).await?;
    Ok(shared && user.is_some())
}

/// Records a guest's enrolment in the audit log (with who invited them).
pub async fn enrolled(state: &AppState, user: &[u8; 16], source: std::net::IpAddr) {
    let written = async {
        let Some(inviter) = state.store.guest_inviter(user).await? else { return Ok(()) };
        let Some((network, name)) = state.store.live_user(user).await? else { return Ok(()) };
        let details = serde_json::json!({"user_id": hex(user), "invited_by": inviter}).to_string();
        state.store.audit(&network, &name, "guest.enrol", &name, &source.to_string(), &details, now_ms()).await
    };
    // The account exists: failing the enrolment now would strand it.
    if let Err(e) = written.await {
        tracing::error!(error = %e, "a guest enrolled but the audit entry failed");
    }
}

/// Notes a guest's activity (the inactivity clock restarts); refuses a
/// guest whose access expired meanwhile. Written at most once a minute, or
/// every half expiry period if that is shorter, so activity always counts.
pub async fn touch(state: &AppState, caller: &Caller) -> ApiResult<()> {
    if !caller.session.guest {
        return Ok(());
    }
    let user = &caller.session.user_id;
    let limit_ms = i64::from(state.settings_for_user(user).await?.guest_expiry_secs) * 1000;
    let every = if limit_ms > 0 { (limit_ms / 2).min(60_000) } else { 60_000 };
    match state.store.touch_guest(user, now_ms(), every).await {
        Ok(true) => Ok(()),
        Ok(false) => Err(expired()),
        Err(e) => {
            // The next request writes it; the expiry pass checks activity
            // again in its own transaction.
            tracing::warn!(error = %e, "noting a guest's activity failed");
            Ok(())
        }
    }
}

/// What an expired guest is told.
pub fn expired() -> ApiError {
    ApiError::forbidden(
        "guest_expired",
        "your guest access expired after a period of inactivity; ask the member who invited you for a new invite",
    )
}

/// Expires every guest inactive longer than their security group allows;
/// returns how many. Each is written to their network's audit log.
pub async fn expire_inactive(state: &AppState, now: i64) -> Result<u64, StoreError> {
    let mut n = 0;
    for g in state.store.live_guests().await? {
        let limit = state.settings_for_user(&g.user).await?.guest_expiry_secs;
        if limit == 0 {
            continue;
        }
        let since = now - i64::from(limit) * 1000;
        if g.last_active_at >= since || !state.store.expire_guest(&g.user, since, now).await? {
            continue;
        }
        n += 1;
        // Expired is committed: what follows is logged, never undone.
        if let Err(e) = after_expiry(state, &g, limit, now).await {
            tracing::error!(error = %e, "a guest expired but closing their connections or the audit entry failed");
        }
    }
    Ok(n)
}

async fn after_expiry(state: &AppState, g: &crate::store::GuestRow, limit: u32, now: i64) -> Result<(), StoreError> {
    for d in &state.store.user_devices(&g.user).await? {
        state.hub.disconnect(d);
    }
    let name = state.store.find_user(&g.network, Some(&g.user), None).await?.map(|u| u.username);
    let name = name.unwrap_or_else(|| hex(&g.user));
    let details = serde_json::json!({"user_id": hex(&g.user), "inactive_secs": limit}).to_string();
    state.store.audit(&g.network, "relay", "guest.expire", &name, "relay", &details, now).await
}
