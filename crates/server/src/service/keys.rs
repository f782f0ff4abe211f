//! The key directory: signed device lists (which may name only the
//! account's own device ids, see [`super::devices`]), signed pre-keys of the
//! caller's own listed device, and pre-key claims for active devices of the
//! caller's network.

use strongroom_crypto::certs::{CertError, DeviceList, DeviceListExpectation, PreKeyKind, SignedPreKey};
use strongroom_crypto::ids::{DeviceId, NetworkId, UserId};
use strongroom_crypto::keys::VerifyingKey;
use strongroom_wire::{DeviceCount, DeviceListHistory, UserKeys, B64, MAX_LIST_HISTORY};

use crate::auth::Caller;
use crate::error::{hex, ApiError, ApiResult};
use crate::state::AppState;
use crate::store::{now_ms, DeviceListRefusal, DeviceRef, StoreError};

/// Most pre-keys in one upload.
pub const MAX_PREKEYS_PER_UPLOAD: usize = 200;
/// A device is told its one-time pre-keys run low at this many or fewer.
pub const PREKEYS_LOW: u64 = 10;
/// Most devices in one claim.
pub const MAX_CLAIMS: usize = 2000;

fn pinned(bytes: Option<Vec<u8>>) -> Option<VerifyingKey> {
    bytes.and_then(|b| <[u8; 32]>::try_from(b).ok()).and_then(|b| VerifyingKey::from_bytes(b).ok())
}

/// Publishes the caller's account's signed device list.
pub async fn put_device_list(state: &AppState, caller: &Caller, body: &[u8]) -> ApiResult<()> {
    let s = caller.session;
    let list = DeviceList::decode(body).map_err(|e| ApiError::bad_request("bad_device_list", e.to_string()))?;
    let expect = DeviceListExpectation {
        network_id: NetworkId::from_bytes(s.network_id),
        user_id: UserId::from_bytes(s.user_id),
        pinned_identity: pinned(state.store.identity_key(&s.user_id).await?),
        seen: None,
    };
    list.verify(&expect).map_err(|e| match e {
        CertError::WrongNetwork { .. } | CertError::WrongUser { .. } => ApiError::forbidden("not_your_list", e.to_string()),
        CertError::IdentityChanged { .. } => ApiError::conflict(
            "identity_changed",
            "this device list is signed by a different identity key than the account's; an administrator must reset the account",
        ),
        other => ApiError::bad_request("bad_device_list", other.to_string()),
    })?;
    let devices: Vec<([u8; 16], bool)> = list.devices.iter().map(|d| (*d.device_id.as_bytes(), d.revoked)).collect();
    let stored = state
        .store
        .put_device_list(
            &s.network_id,
            &s.user_id,
            list.identity_key.as_bytes(),
            list.version,
            &list.previous,
            body,
            &devices,
        )
        .await?;
    match stored {
        Ok(()) => {
            // Revoked devices' sockets close now, not at their next session check.
            for (device, _) in devices.iter().filter(|(_, revoked)| *revoked) {
                state.hub.disconnect(device);
            }
            Ok(())
        }
        Err(DeviceListRefusal::IdentityMismatch) => {
            Err(ApiError::conflict("identity_changed", "the device list is signed by a different identity key"))
        }
        Err(DeviceListRefusal::NotNext { current }) => Err(ApiError::conflict(
            "stale_device_list",
            format!(
                "the stored device list has version {current}; the next list must be version {} (lists cannot skip versions)",
                current.saturating_add(1)
            ),
        )),
        Err(DeviceListRefusal::Revived(device)) => Err(ApiError::conflict(
            "device_revived",
            format!("device {} was revoked and cannot return: a revoked device stays listed and revoked", hex(&device)),
        )),
        Err(DeviceListRefusal::WrongPrevious) => Err(ApiError::conflict(
            "stale_device_list",
            "the device list does not name the stored list as its previous one; fetch the current list and sign its successor",
        )),
        Err(DeviceListRefusal::NotOwned(device)) => Err(ApiError::forbidden(
            "device_not_yours",
            format!(
                "device {} is not one of your devices: a device list may name only devices that logged in to this account",
                hex(&device)
            ),
        )),
    }
}

/// The caller's own verified device, from its stored device list.
pub(crate) async fn own_device(
    state: &AppState,
    caller: &Caller,
) -> ApiResult<strongroom_crypto::certs::VerifiedDevice> {
    let s = caller.session;
    let body = state
        .store
        .device_list(&s.user_id)
        .await?
        .ok_or_else(|| ApiError::forbidden("no_device_list", "publish your signed device list first"))?;
    let list = DeviceList::decode(&body).map_err(|_| ApiError::from(StoreError::Corrupt("device list")))?;
    let expect = DeviceListExpectation {
        network_id: NetworkId::from_bytes(s.network_id),
        user_id: UserId::from_bytes(s.user_id),
        pinned_identity: None,
        seen: None,
    };
    let verified = list.verify(&expect).map_err(|_| ApiError::from(StoreError::Corrupt("device list")))?;
    verified.device(DeviceId::from_bytes(s.device_id)).map_err(|e| {
        ApiError::forbidden("device_not_listed", format!("{e}; add this device to your signed device list"))
    })
}

/// Adds signed pre-keys of the caller's own (listed) device.
pub async fn put_prekeys(state: &AppState, caller: &Caller, prekeys: &[B64]) -> ApiResult<()> {
    if prekeys.is_empty() || prekeys.len() > MAX_PREKEYS_PER_UPLOAD {
        return Err(ApiError::bad_request("bad_prekeys", "upload 1 to 200 pre-keys at a time"));
    }
    let device = own_device(state, caller).await?;
    let now = now_ms();
    let mut rows = Vec::with_capacity(prekeys.len());
    for (i, raw) in prekeys.iter().enumerate() {
        let pk = SignedPreKey::decode(&raw.0)
            .map_err(|e| ApiError::bad_request("bad_prekey", format!("pre-key {i}: {e}")))?;
        pk.verify(&device, u64::try_from(now).unwrap_or(0))
            .map_err(|e| ApiError::bad_request("bad_prekey", format!("pre-key {i}: {e}")))?;
        let kind = match pk.key_ref.kind {
            PreKeyKind::OneTime => 1,
            _ => 0,
        };
        rows.push((kind, pk.key_ref.id, i64::try_from(pk.expires_at).unwrap_or(i64::MAX), raw.0.clone()));
    }
    Ok(state.store.put_prekeys(&caller.session.device_ref(), &rows).await?)
}

/// A user's keys; only within the caller's network (404 otherwise).
pub async fn user_keys(state: &AppState, caller: &Caller, user: &[u8; 16]) -> ApiResult<UserKeys> {
    let not_found = || ApiError::not_found("unknown_user", "no such user in your network, or no keys published yet");
    let visible = super::guests::may_see(state, caller, Some(user)).await?;
    if state.store.user_network(user).await? != Some(caller.session.network_id) || !visible {
        return Err(not_found());
    }
    let list = state.store.device_list(user).await?.ok_or_else(not_found)?;
    let counts = state.store.one_time_counts(user).await?;
    Ok(UserKeys {
        user_id: UserId::from_bytes(*user),
        device_list: B64(list),
        one_time_remaining: counts
            .into_iter()
            .map(|(d, count)| DeviceCount { device_id: DeviceId::from_bytes(d), count })
            .collect(),
        revoked_devices: state.store.revoked_devices(user).await?.into_iter().map(DeviceId::from_bytes).collect(),
    })
}

/// A user's device lists after version `after` (within the caller's network).
pub async fn list_history(
    state: &AppState,
    caller: &Caller,
    user: &[u8; 16],
    after: u64,
) -> ApiResult<DeviceListHistory> {
    let visible = super::guests::may_see(state, caller, Some(user)).await?;
    if state.store.user_network(user).await? != Some(caller.session.network_id) || !visible {
        return Err(ApiError::not_found("unknown_user", "no such user in your network, or no keys published yet"));
    }
    let lists = state.store.device_list_history(user, after, MAX_LIST_HISTORY).await?;
    Ok(DeviceListHistory { lists: lists.into_iter().map(B64).collect() })
}

/// Claims one pre-key for each (user, device): active devices of users of
/// the caller's network only.
/// Claims a pre-key per device `(user, device, one-time wanted)`.
pub async fn claim(state: &AppState, caller: &Caller, devices: &[([u8; 16], [u8; 16], bool)]) -> ApiResult<Vec<B64>> {
    if devices.is_empty() || devices.len() > MAX_CLAIMS {
        return Err(ApiError::bad_request("bad_claim", "claim pre-keys for 1 to 2000 devices at a time"));
    }
    let mut distinct: Vec<_> = devices.iter().map(|(u, d, _)| (*u, *d)).collect();
    distinct.sort_unstable();
    distinct.dedup();
    if distinct.len() != devices.len() {
        // One claim listing a device many times would empty its pool.
        return Err(ApiError::bad_request("duplicate_device", "each device may appear once in a claim"));
    }
    let now = now_ms();
    let mut out = Vec::with_capacity(devices.len());
    for (user, device, wants_one_time) in devices {
        let pair = format!("{}:{}", hex(user), hex(device));
        let target = DeviceRef { network: caller.session.network_id, user: *user, device: *device };
        let unknown = || ApiError::not_found("unknown_device", format!("no active device {pair} in your network"));
        if state.store.user_network(user).await? != Some(target.network)
            || !state.store.device_active(user, device).await?
            || !super::guests::may_see(state, caller, Some(user)).await?
        {
            return Err(unknown());
        }
        // Past its allowance for this device, the claimer gets the medium-term key.
        let one_time = *wants_one_time && state.claim_limiter.allow(&(caller.session.user_id, *device));
        let key = match state.store.claim_prekey(&target, now, one_time).await {
            Ok(key) => key,
            Err(StoreError::NotOwned) => return Err(unknown()),
            Err(e) => return Err(e.into()),
        }
        .ok_or_else(|| {
            ApiError::not_found("no_prekey", format!("device {pair} has no unexpired pre-key; it must come online"))
        })?;
        if let Some(remaining) = key.one_time_left.filter(|n| *n <= PREKEYS_LOW) {
            state.hub.notice(device, strongroom_wire::WsFrame::PrekeysLow { remaining });
        }
        let key = key.body;
        out.push(B64(key));
    }
    Ok(out)
}
