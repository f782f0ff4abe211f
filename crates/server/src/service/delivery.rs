//! Delivery rules. An envelope is accepted only from the session's own user
//! and device, a member of its conversation in the session's network, within
//! the sender's security-group timers, and wrapped for exactly the
//! conversation's current devices (but the sending one) plus every
//! retention device of the current policy: a missing retention wrap is
//! refused with the device named. Fetches and acks touch only the caller's
//! own queue, and only retention sessions read or remove retention rows.

use std::collections::BTreeSet;

use strongroom_crypto::certs::NetworkPolicy;
use strongroom_crypto::envelope::{Envelope, DEFAULT_REPLAY_WINDOW_MS, MAX_SKEW_MS};
use strongroom_crypto::ids::UserId;
use strongroom_wire::{Accepted, ConversationId, Delivery, DeviceAddress, DeviceId, MessageId, B64};

use crate::auth::Caller;
use crate::error::{ApiError, ApiResult};
use crate::state::AppState;
use crate::store::{now_ms, QueuedRow, StoreError, StoreOutcome, StoredEnvelope};

/// Most deliveries one fetch returns.
pub const MAX_FETCH: i64 = 500;
/// Most message ids one ack names.
pub const MAX_ACK: usize = 1000;

/// Accepts an envelope (raw full-form bytes); answers only after the
/// envelope and every device's queue entry are committed. `settings_tag`
/// is the tag of the settings the sender applied, if it named one: another
/// tag is refused (`settings_changed`) so the sender applies the new rules.
pub async fn send(state: &AppState, caller: &Caller, body: &[u8], settings_tag: Option<&str>) -> ApiResult<Accepted> {
    let s = caller.session;
    if !state.send_limiter.allow(&s.device_id) {
        return Err(ApiError::too_many("this device is sending too fast; slow down"));
    }
    let env = Envelope::decode(body).map_err(|e| ApiError::bad_request("malformed_envelope", e.to_string()))?;
    let h = env.header();
    if h.sender_network_id.as_bytes() != &s.network_id {
        return Err(ApiError::forbidden(
            "wrong_network",
            "the envelope's sender network is not this session's network",
        ));
    }
    if h.host_network_id.as_bytes() != &s.network_id {
        return Err(ApiError::forbidden(
            "wrong_network",
            "the envelope names a conversation hosted by another network; federation is not enabled on this relay",
        ));
    }
    if h.sender_user_id.as_bytes() != &s.user_id || h.sender_device_id.as_bytes() != &s.device_id {
        return Err(ApiError::forbidden(
            "sender_mismatch",
            "the envelope's sender is not this session's user and device",
        ));
    }
    let conversation = *h.conversation_id.as_bytes();
    match state.store.membership(&conversation, &s.user_id).await? {
        Some((network, true)) if network == s.network_id => {}
        Some((network, false)) if network == s.network_id => {
            return Err(ApiError::forbidden("not_member", "you are not a member of this conversation"))
        }
        _ => return Err(ApiError::not_found("unknown_conversation", "no such conversation")),
    }
    check_timestamp(h.timestamp, u64::try_from(now_ms()).unwrap_or(0))?;
    let policy = state.settings_for_user(&s.user_id).await?;
    if let Some(tag) = settings_tag {
        if tag != crate::state::settings_tag(&policy) {
            return Err(ApiError::conflict(
                "settings_changed",
                "your security group's settings changed since this device read them; fetch /v1/me/policy and seal again",
            ));
        }
    }
    if policy.max_ttl_secs > 0 && (h.ttl_secs == 0 || h.ttl_secs > policy.max_ttl_secs) {
        return Err(ApiError::forbidden(
            "timer_too_long",
            format!("your security group requires messages to expire within {} seconds", policy.max_ttl_secs),
        ));
    }
    if policy.max_bor_secs > 0 && h.burn_on_read_secs > policy.max_bor_secs {
        return Err(ApiError::forbidden(
            "timer_too_long",
            format!("your security group allows burn-on-read timers up to {} seconds", policy.max_bor_secs),
        ));
    }

    // Exactly the current member devices (but the sending device itself)
    // plus the policy's retention devices.
    // Every recipient is addressed by (network, user, device); until
    // federation, all of them are in the sender's network.
    let mut expected: BTreeSet<([u8; 16], [u8; 16])> =
        state.store.member_devices(&conversation).await?.iter().copied().collect();
    // The sender's own device must be one of them: active in its signed list.
    if !expected.remove(&(s.user_id, s.device_id)) {
        return Err(ApiError::forbidden("device_not_listed", "this device is not in your signed device list"));
    }
    if let Some((_, policy)) = state.store.current_policy(&s.network_id).await? {
        let policy = NetworkPolicy::decode(&policy).map_err(|_| ApiError::from(StoreError::Corrupt("policy")))?;
        // Draining retention devices only empty their queues.
        expected.extend(policy.active_retention().map(|d| (*UserId::RETENTION.as_bytes(), *d.device_id.as_bytes())));
    }
    if let Some(w) = env.wraps().iter().find(|w| w.network_id.as_bytes() != &s.network_id) {
        return Err(ApiError::forbidden(
            "wrong_network",
            format!("a wrap is addressed to network {}; federation is not enabled on this relay", w.network_id),
        ));
    }
    let got: BTreeSet<([u8; 16], [u8; 16])> =
        env.wraps().iter().map(|w| (*w.user_id.as_bytes(), *w.device_id.as_bytes())).collect();
    if got != expected {
        let fmt = |(u, d): &([u8; 16], [u8; 16])| DeviceAddress {
            user: UserId::from_bytes(*u),
            device: DeviceId::from_bytes(*d),
        };
        return Err(ApiError::recipient_mismatch(
            expected.difference(&got).map(fmt).collect(),
            got.difference(&expected).map(fmt).collect(),
        ));
    }

    let parts = env.delivery_parts();
    let tails: Vec<([u8; 16], Vec<u8>, bool)> =
        parts.tails.into_iter().map(|(_, u, d, t)| (*d.as_bytes(), t, u == UserId::RETENTION)).collect();
    let stored = StoredEnvelope {
        message_id: *h.message_id.as_bytes(),
        network_id: s.network_id,
        conversation_id: conversation,
        sender_device: s.device_id,
        prefix: parts.prefix,
        signature: parts.signature.to_vec(),
        expires_at: h.expires_at().map(|t| i64::try_from(t).unwrap_or(i64::MAX)),
    };
    let message_id = h.message_id;
    match state.store.store_envelope(stored, tails, now_ms()).await? {
        StoreOutcome::Stored(seq) => {
            // The committer has handed the rows to the sockets (`Store::deliver_to`).
            state.metrics.messages_in.fetch_add(1, std::sync::atomic::Ordering::Relaxed);
            Ok(Accepted { message_id, seq, duplicate: false, queued: false })
        }
        StoreOutcome::Duplicate(seq) => Ok(Accepted { message_id, seq, duplicate: true, queued: false }),
        StoreOutcome::IdConflict => {
            Err(ApiError::conflict("message_id_conflict", "this message id is already used; pick a fresh random id"))
        }
    }
}

/// A queued row as the API delivers it.
pub fn delivery(row: QueuedRow) -> Delivery {
    Delivery {
        message_id: MessageId::from_bytes(row.message_id),
        conversation_id: ConversationId::from_bytes(row.conversation_id),
        seq: row.seq,
        received_at: row.received_at,
        envelope: B64(row.envelope),
    }
}

/// The oldest unacknowledged messages for the caller's own device.
pub async fn fetch(state: &AppState, caller: &Caller, limit: i64) -> ApiResult<Vec<Delivery>> {
    let me = caller.session.device_ref();
    let _one = state.fetching.enter(me.device).ok_or_else(|| {
        ApiError::too_many("a fetch for this device is already running; wait for it, or use the WebSocket")
    })?;
    let max_bytes = state.config.limits.max_fetch_bytes;
    let rows = state.store.queued(&me, 0, limit.clamp(1, MAX_FETCH), max_bytes).await?;
    state.metrics.deliveries_out.fetch_add(rows.len() as u64, std::sync::atomic::Ordering::Relaxed);
    Ok(rows.into_iter().map(delivery).collect())
}

/// Removes messages the caller's device has durably stored from its own queue.
pub async fn ack(state: &AppState, caller: &Caller, ids: &[[u8; 16]]) -> ApiResult<()> {
    if ids.len() > MAX_ACK {
        return Err(ApiError::bad_request("too_many_ids", "acknowledge at most 1000 messages at a time"));
    }
    state.store.ack(&caller.session.device_ref(), ids).await?;
    if caller.is_retention() && !ids.is_empty() {
        let now = u64::try_from(now_ms()).unwrap_or(0);
        state.metrics.retention_last_ack.store(now, std::sync::atomic::Ordering::Relaxed);
    }
    Ok(())
}

/// A header timestamp ahead of the relay's clock by more than
/// [`MAX_SKEW_MS`] would stretch expiry (timestamp + TTL) past the group's
/// timer limit; one older than the replay window could no longer be checked
/// for replay (by the relay's spent ids or a device's guard).
fn check_timestamp(timestamp: u64, now: u64) -> ApiResult<()> {
    if timestamp > now.saturating_add(MAX_SKEW_MS) {
        return Err(ApiError::bad_request(
            "clock_skew",
            format!(
                "the message is dated {} s ahead of the relay's clock (at most {} s allowed); set this device's clock right and send again",
                (timestamp - now) / 1000,
                MAX_SKEW_MS / 1000
            ),
        ));
    }
    if timestamp.saturating_add(DEFAULT_REPLAY_WINDOW_MS) < now {
        return Err(ApiError::bad_request(
            "stale_message",
            format!(
                "the message is dated more than {} days ago; seal it again with the current time",
                DEFAULT_REPLAY_WINDOW_MS / 86_400_000
            ),
        ));
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn timestamps_are_bounded_both_ways() {
        let now = 1_800_000_000_000;
        assert!(check_timestamp(now, now).is_ok());
        assert!(check_timestamp(now + MAX_SKEW_MS, now).is_ok());
        assert!(check_timestamp(now + MAX_SKEW_MS + 1, now).is_err());
        assert!(check_timestamp(now + 10 * 365 * 86_400_000, now).is_err(), "ten years ahead");
        assert!(check_timestamp(now - DEFAULT_REPLAY_WINDOW_MS, now).is_ok());
        assert!(check_timestamp(now - DEFAULT_REPLAY_WINDOW_MS - 1, now).is_err());
        assert!(check_timestamp(0, now).is_err());
        assert!(check_timestamp(u64::MAX, now).is_err());
    }
}
