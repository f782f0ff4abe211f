//! Pre-key upkeep rules (PROTOCOL.md §3.1): when to make a new medium-term
//! key, when an old one's private half goes, and when a sender spends a
//! recipient's one-time key.

use std::collections::BTreeMap;

/// A new medium-term pre-key is made when the newest is this old (7 days).
pub const ROTATE_AFTER_MS: u64 = 7 * 86_400_000;
/// Older medium-term private keys are deleted this long after a newer one
/// replaced them (31 days): the relay keeps undelivered messages 30 days, plus
/// a day of clock skew, so a device that was offline still opens what was
/// sealed to the old key. Forward secrecy for a message sealed to a
/// medium-term key begins when this deletes it.
pub const GRACE_MS: u64 = 31 * 86_400_000;
/// One-time pre-keys kept on the relay; topped up below [`LOW_WATER`].
pub const ONE_TIME_BATCH: u32 = 50;
/// Fewer one-time keys than this on the relay: upload a batch.
pub const LOW_WATER: u64 = 20;

/// What key upkeep has to do as of a moment.
#[derive(Debug, Default, PartialEq, Eq)]
pub struct Upkeep {
    /// Make and publish a new medium-term key.
    pub rotate: bool,
    /// Medium-term keys (ids) whose private half must be deleted.
    pub stale: Vec<u32>,
}

/// Upkeep for medium-term keys made at the given times (id → ms).
pub fn upkeep(medium_created: &BTreeMap<u32, u64>, now: u64) -> Upkeep {
    let rotate = medium_created.values().max().is_none_or(|t| now.saturating_sub(*t) >= ROTATE_AFTER_MS);
    // A key was replaced when the next newer one was made; its private half
    // goes once that is GRACE_MS ago.
    let mut keys: Vec<(u32, u64)> = medium_created.iter().map(|(id, t)| (*id, *t)).collect();
    keys.sort_by_key(|(id, t)| (*t, *id));
    let stale = keys
        .windows(2)
        .filter_map(|w| match w {
            [(old, _), (_, replaced_at)] if now.saturating_sub(*replaced_at) >= GRACE_MS => Some(*old),
            _ => None,
        })
        .collect();
    Upkeep { rotate, stale }
}

/// Whether the relay should hand out a one-time key of a device this device
/// last sealed to one-time at `last_one_time` (first message, then once per
/// medium-term period; the medium-term key in between).
pub fn wants_one_time(last_one_time: Option<u64>, now: u64) -> bool {
    last_one_time.is_none_or(|at| now.saturating_sub(at) >= ROTATE_AFTER_MS)
}

/// Whether a recipient's medium-term key claimed (or made) at `since` may
/// be sealed to again at `now` without a new claim: within one rotation
/// period of both. The recipient replaces a key a period after making it and
/// keeps the old private half [`GRACE_MS`] after that, so what is sealed to
/// it within the period still opens after the relay's 30 days.
pub fn still_current(since: u64, now: u64) -> bool {
    since <= now && now - since < ROTATE_AFTER_MS
}

/// Whether to upload a batch of one-time keys, with `left` on the relay.
pub fn needs_top_up(left: u64) -> bool {
    left < LOW_WATER
}

#[cfg(test)]
mod tests {
    use super::*;

    const DAY: u64 = 86_400_000;

    #[test]
    fn a_device_with_no_medium_term_key_makes_one() {
        assert_eq!(upkeep(&BTreeMap::new(), 0), Upkeep { rotate: true, stale: vec![] });
    }

    #[test]
    fn rotation_is_due_after_seven_days_not_before() {
        let keys = BTreeMap::from([(1, 10 * DAY)]);
        assert!(!upkeep(&keys, 17 * DAY - 1).rotate);
        assert!(upkeep(&keys, 17 * DAY).rotate);
    }

    #[test]
    fn a_replaced_key_lives_31_days_after_its_replacement() {
        let keys = BTreeMap::from([(1, 0), (2, 7 * DAY), (3, 14 * DAY)]);
        assert_eq!(upkeep(&keys, 38 * DAY - 1).stale, Vec::<u32>::new());
        assert_eq!(upkeep(&keys, 38 * DAY).stale, vec![1]);
        assert_eq!(upkeep(&keys, 45 * DAY).stale, vec![1, 2]);
        // The newest key is never stale, however old.
        assert!(!upkeep(&keys, 1000 * DAY).stale.contains(&3));
    }

    #[test]
    fn a_clock_that_went_backwards_deletes_nothing_and_rotates_nothing() {
        let keys = BTreeMap::from([(1, 0), (2, 50 * DAY)]);
        assert_eq!(upkeep(&keys, 40 * DAY), Upkeep { rotate: false, stale: vec![] });
    }

    #[test]
    fn one_time_keys_are_spent_once_per_period() {
        assert!(wants_one_time(None, 5));
        assert!(!wants_one_time(Some(DAY), 8 * DAY - 1));
        assert!(wants_one_time(Some(DAY), 8 * DAY));
    }

    #[test]
    fn a_claimed_medium_term_key_is_reused_for_one_period_only() {
        assert!(still_current(DAY, DAY));
        assert!(still_current(DAY, 8 * DAY - 1));
        assert!(!still_current(DAY, 8 * DAY));
        assert!(!still_current(2 * DAY, DAY), "claimed in the future: the clock went back");
    }

    #[test]
    fn top_up_below_the_low_water_mark() {
        assert!(needs_top_up(0));
        assert!(needs_top_up(LOW_WATER - 1));
        assert!(!needs_top_up(LOW_WATER));
    }
}
