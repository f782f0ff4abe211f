//! Device ownership, the rule everything keyed by a device id stands on.
//!
//! A device makes a random 128-bit id at enrolment and logs in with it; the
//! first login claims the id for that account of that network, for good
//! (`store/devices.rs`). From then on:
//! - a login with an id that another account, another network or a
//!   retention service owns is refused (`device_taken`), and so is one with
//!   an id its own account revoked (`device_revoked`) unless a wipe order
//!   for it is pending (the device must still hear the order);
//! - a session is valid only while its device is its account's;
//! - a signed device list may name only the account's own ids;
//! - a wipe order names a device of a user of the administrator's own
//!   network, and only that device confirms it;
//! - a link request, its approval and its result stay within one account.

use strongroom_wire::{DeviceId, LinkApproval, LinkRequest, B64};

use super::Actor;
use crate::auth::Caller;
use crate::error::{hex, ApiError, ApiResult};
use crate::state::AppState;
use crate::store::{now_ms, DeviceClaim, DeviceRef};

/// Turns the outcome of a login's device claim into an answer.
pub(super) fn login_claim(claim: DeviceClaim) -> ApiResult<()> {
    match claim {
        DeviceClaim::Claimed | DeviceClaim::Owned => Ok(()),
        DeviceClaim::Revoked => Err(ApiError::forbidden(
            "device_revoked",
            "this device was removed from your account (revoked, reset or wiped); enrol it again with a new invite",
        )),
        DeviceClaim::Taken => Err(ApiError::forbidden(
            "device_taken",
            "this device id belongs to another device; a device makes its own random id when it enrols",
        )),
    }
}

/// An administrator's order to wipe a device of `user` (a user of the
/// administrator's network, checked by the caller): revoked and its queue
/// dropped at once; the device erases itself when it next connects.
pub async fn order_wipe(state: &AppState, actor: &Actor, user: &[u8; 16], device: &[u8; 16]) -> ApiResult<()> {
    let target = DeviceRef { network: actor.caller.session.network_id, user: *user, device: *device };
    if !state.store.wipe_device(&target, now_ms()).await? {
        return Err(ApiError::not_found("unknown_device", "that user has no such device"));
    }
    // Its socket closes now: it reconnects, hears the order and erases itself.
    state.hub.disconnect(device);
    Ok(())
}

/// The device itself confirms it erased its profile; its sessions end.
pub async fn confirm_wipe(state: &AppState, caller: &Caller) -> ApiResult<()> {
    let me = caller.session.device_ref();
    if !state.store.confirm_wipe(&me, now_ms()).await? {
        return Err(ApiError::bad_request("no_wipe", "no wipe was ordered for this device"));
    }
    let actor = state.store.live_user(&me.user).await?.map(|(_, n)| n).unwrap_or_default();
    state
        .store
        .audit(
            &me.network,
            &actor,
            "device.wipe_confirmed",
            &actor,
            "device",
            &serde_json::json!({"device_id": hex(&me.device)}).to_string(),
            now_ms(),
        )
        .await?;
    Ok(())
}

/// Whether the caller's device is in its account's signed device list.
async fn listed(state: &AppState, caller: &Caller) -> ApiResult<bool> {
    let s = caller.session;
    Ok(state.store.device_active(&s.user_id, &s.device_id).await?)
}

fn only_listed() -> ApiError {
    ApiError::forbidden("device_not_listed", "only a device in your signed device list can approve new devices")
}

/// A new device (logged in, not yet listed) asks to be linked.
pub async fn request_link(state: &AppState, caller: &Caller, signing_key: &[u8], link_key: &[u8]) -> ApiResult<()> {
    if listed(state, caller).await? {
        return Err(ApiError::conflict("already_linked", "this device is already in your device list"));
    }
    if signing_key.len() != 32 || link_key.len() != 32 {
        return Err(ApiError::bad_request("bad_key", "signing_key and link_key are 32 bytes each"));
    }
    let s = caller.session;
    Ok(state.store.request_link(&s.user_id, &s.device_id, signing_key, link_key, now_ms()).await?)
}

/// The account's link requests not yet approved (for a listed device).
pub async fn pending_links(state: &AppState, caller: &Caller) -> ApiResult<Vec<LinkRequest>> {
    if !listed(state, caller).await? {
        return Err(only_listed());
    }
    let rows = state.store.links(&caller.session.user_id, now_ms()).await?;
    Ok(rows
        .into_iter()
        .filter(|(_, _, _, sealed)| sealed.is_none())
        .map(|(d, sk, lk, _)| LinkRequest {
            device_id: Some(DeviceId::from_bytes(d)),
            signing_key: B64(sk),
            link_key: B64(lk),
        })
        .collect())
}

/// A listed device approves the account's own pending request from `device`.
pub async fn approve_link(state: &AppState, caller: &Caller, device: &[u8; 16], sealed: &[u8]) -> ApiResult<()> {
    if !listed(state, caller).await? {
        return Err(only_listed());
    }
    if sealed.len() != strongroom_crypto::link::SEALED_TRANSFER_LEN {
        return Err(ApiError::bad_request("bad_sealed_transfer", "the sealed link transfer has the wrong length"));
    }
    if state.store.approve_link(&caller.session.user_id, device, sealed, now_ms()).await? {
        Ok(())
    } else {
        Err(ApiError::not_found(
            "unknown_link",
            "no pending link request from that device (requests expire after an hour)",
        ))
    }
}

/// The sealed link transfer for the caller's own device, once approved.
pub async fn link_result(state: &AppState, caller: &Caller) -> ApiResult<LinkApproval> {
    let s = caller.session;
    let rows = state.store.links(&s.user_id, now_ms()).await?;
    let sealed =
        rows.into_iter().find(|(d, ..)| *d == s.device_id).and_then(|(_, _, _, sealed)| sealed).ok_or_else(|| {
            ApiError::not_found(
                "not_approved_yet",
                "not approved yet: run `strongroom link approve CODE` on one of your devices",
            )
        })?;
    Ok(LinkApproval { device_id: DeviceId::from_bytes(s.device_id), sealed_transfer: B64(sealed) })
}
