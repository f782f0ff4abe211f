//! Password logins, for devices (the API) and for the web console, with one
//! set of rules: equal work and equal answers for unknown users, failed
//! logins throttled per (account, source) with a doubling wait rather than a
//! lock anyone could trigger, suspension, and the device id claimed for the
//! account (see [`super::devices`]).

use std::net::IpAddr;

use crate::auth::{check_password_length, hash_password, new_token, secret_hash, verify_password, Caller};
use crate::error::{ApiError, ApiResult};
use crate::state::AppState;
use crate::store::{now_ms, DeviceRef, SessionDevice, SessionRow};

/// A password hash to verify against when the user does not exist, so the
/// response time does not reveal which usernames exist.
const DUMMY_HASH: &str =
    "$argon2id$v=19$m=19456,t=2,p=1$c29tZXNhbHRzb21lc2FsdA$ZWqPk0xBTzEb8zjLKPcTRCovQ5qR2lBwSI71AQoEcUg";

/// Web console sessions end after this long without a request.
pub const CONSOLE_IDLE_MS: i64 = 15 * 60_000;

/// What a login is for.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Binding {
    /// A device of the account, by the id it made for itself.
    Device([u8; 16]),
    /// The web console (administrators and auditors only).
    Console,
}

/// A new session.
#[derive(Debug)]
pub struct NewSession {
    /// The bearer token (or cookie value); only its hash is stored.
    pub token: String,
    /// The session as requests will see it.
    pub session: SessionRow,
}

/// Checks a password and makes a session bound to `binding`.
pub async fn password_login(
    state: &AppState,
    network: &[u8; 16],
    username: &str,
    password: String,
    binding: Binding,
    source: IpAddr,
) -> ApiResult<NewSession> {
    let wrong = || ApiError::unauthorized("wrong username or password");
    // Every username, existing or not, is throttled the same way and by one
    // rule for the whole network: the answers and their timing never say
    // whether, or in which group, an account exists.
    let from = crate::connections::source_key(source).to_string();
    let plausible = username.len() <= 64;
    // One attempt at a time per (account, source): parallel guesses wait
    // for the previous one's failure to be counted.
    let _turn = match plausible {
        true => Some(state.login_locks.lock((*network, username.to_owned(), from.clone())).await),
        false => None,
    };
    let now = now_ms();
    if plausible {
        let wait = state.store.login_wait(network, username, &from, now).await?;
        if wait > 0 {
            return Err(ApiError::too_many(format!(
                "too many failed logins for this account from your address; try again in {} seconds",
                (wait + 999) / 1000
            )));
        }
    }
    let user = state.store.user_by_name(network, username).await?;
    let matched = match &user {
        Some(u) => verify_password(u.password_hash.clone(), password).await,
        None => {
            verify_password(DUMMY_HASH.to_owned(), password).await;
            false
        }
    };
    let Some(user) = user.filter(|_| matched) else {
        if plausible {
            let threshold = strictest_lockout(state, network).await?;
            let max_wait = i64::try_from(state.config.limits.lockout_secs.saturating_mul(1000)).unwrap_or(i64::MAX);
            state.store.login_failure(network, username, &from, now, threshold, max_wait).await?;
        }
        return Err(wrong());
    };
    state.store.clear_login_failures(network, username, Some(&from)).await?;
    if state.store.find_user(network, Some(&user.id), None).await?.is_some_and(|u| u.expired) {
        return Err(crate::service::guests::expired());
    }
    if state.store.is_suspended(&user.id).await? {
        return Err(ApiError::forbidden(
            "account_suspended",
            "this account is suspended; ask your network administrator",
        ));
    }
    let (token, hash) = new_token();
    let (device, expires_at) = match binding {
        Binding::Device(device) => (
            SessionDevice::Device(DeviceRef { network: *network, user: user.id, device }),
            now.saturating_add(i64::try_from(state.config.session_days * 86_400_000).unwrap_or(i64::MAX)),
        ),
        Binding::Console => (SessionDevice::Console { user: user.id }, now + CONSOLE_IDLE_MS),
    };
    super::devices::login_claim(state.store.login_succeeded(&hash, device, now, expires_at).await?)?;
    let session = state.store.session(&hash, now).await?.ok_or_else(|| {
        ApiError::unauthorized("the session ended at once (suspended or wiped meanwhile); log in again")
    })?;
    if binding == Binding::Console {
        if !(session.admin || session.auditor) {
            state.store.logout(&hash).await?;
            return Err(ApiError::forbidden(
                "not_admin",
                "only network administrators and auditors can use the console",
            ));
        }
        state.store.audit(network, username, "console.login", username, &source.to_string(), "{}", now).await?;
    }
    Ok(NewSession { token, session })
}

/// The failed-login threshold for every username of a network: the
/// strictest any of its security groups (or its defaults) sets; 0 = never.
async fn strictest_lockout(state: &AppState, network: &[u8; 16]) -> ApiResult<u32> {
    let mut thresholds = vec![state.settings_for_network(network).await?.lockout_threshold];
    thresholds.extend(state.store.groups(network).await?.iter().map(|g| g.settings.lockout_threshold));
    Ok(thresholds.into_iter().filter(|t| *t > 0).min().unwrap_or(0))
}

/// Ends the caller's session and closes its device's sockets.
pub async fn logout(state: &AppState, caller: &Caller) -> ApiResult<()> {
    state.store.logout(&caller.token_hash).await?;
    // Its sockets close (those opened with another of its tokens reconnect).
    state.hub.disconnect(&caller.session.device_id);
    Ok(())
}

/// Changes the caller's password after checking the current one; the
/// account's other sessions end.
pub async fn change_password(state: &AppState, caller: &Caller, old: String, new: String) -> ApiResult<()> {
    let user = caller.session.user_id;
    if !state.password_limiter.allow(&user) {
        return Err(ApiError::too_many("too many password checks for this account; wait a minute"));
    }
    let rules = state.settings_for_user(&user).await?;
    check_password_length(&new, rules.password_min_length)?;
    let current = state.store.password_hash(&user).await?.ok_or_else(|| ApiError::unauthorized("account not found"))?;
    if !verify_password(current, old).await {
        return Err(ApiError::forbidden("wrong_password", "the current password is wrong"));
    }
    let hash = hash_password(new).await?;
    state.store.set_password(&user, &hash, &caller.token_hash).await?;
    if let Some((network, name)) = state.store.live_user(&user).await? {
        state.store.clear_login_failures(&network, &name, None).await?;
    }
    Ok(())
}

/// Redeems an administrator's reset code: the user chooses a new password,
/// then logs in again on each device.
pub async fn redeem_reset(
    state: &AppState,
    network: &[u8; 16],
    username: &str,
    code: &str,
    new_password: String,
    source: IpAddr,
) -> ApiResult<()> {
    let rules = state.settings_for_network(network).await?;
    check_password_length(&new_password, rules.password_min_length)?;
    let hash = hash_password(new_password).await?;
    if !state.store.redeem_reset(network, username, &secret_hash(code.trim().as_bytes()), &hash, now_ms()).await? {
        return Err(ApiError::forbidden(
            "invalid_code",
            "the reset code is unknown, used, expired or for another user; ask an administrator for a new one",
        ));
    }
    state.store.clear_login_failures(network, username, None).await?;
    state
        .store
        .audit(network, username, "user.password_reset_redeemed", username, &source.to_string(), "{}", now_ms())
        .await?;
    Ok(())
}
