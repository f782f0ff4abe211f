//! Gap detection on the relay's per-conversation numbering.
//!
//! The relay numbers every message of a conversation 1, 2, 3…; each device
//! receives every number from the moment it joined. Messages arrive out of
//! order in normal use (this device's own send takes #5 while #4 waits in
//! its queue), so order is not checked. A *gap* is a number that never
//! arrived once the queue was drained: the relay withheld or lost it.

/// A run of sequence numbers that never arrived: `first..=last`.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Gap {
    /// First missing number.
    pub first: u64,
    /// Last missing number.
    pub last: u64,
}

/// Checks the numbers seen since `checked_to` (sorted, deduplicated, all
/// above it) once the relay has nothing more queued. Returns the new mark
/// and the gaps. `checked_to == 0` means the conversation is new to this
/// device: what came before its first number is not its to have.
pub fn check(checked_to: u64, seen: &[u64]) -> (u64, Vec<Gap>) {
    let mut gaps = Vec::new();
    let mut mark = match (checked_to, seen.first()) {
        (0, Some(first)) => first.saturating_sub(1),
        _ => checked_to,
    };
    for &s in seen {
        if s <= mark {
            continue;
        }
        if s > mark + 1 {
            gaps.push(Gap { first: mark + 1, last: s - 1 });
        }
        mark = s;
    }
    (mark, gaps)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn contiguous_numbers_have_no_gap_whatever_order_they_came_in() {
        // Stored as a set: arrival order (own #5 before queued #4) is gone.
        assert_eq!(check(3, &[4, 5, 6]), (6, vec![]));
    }

    #[test]
    fn a_new_conversation_starts_where_this_device_joined() {
        assert_eq!(check(0, &[7, 8]), (8, vec![]));
        assert_eq!(check(0, &[]), (0, vec![]));
    }

    #[test]
    fn a_missing_number_is_a_gap_reported_once() {
        let (mark, gaps) = check(2, &[3, 6, 7, 10]);
        assert_eq!(mark, 10);
        assert_eq!(gaps, vec![Gap { first: 4, last: 5 }, Gap { first: 8, last: 9 }]);
        // The mark moved past it: the next check does not repeat it.
        assert_eq!(check(mark, &[11]), (11, vec![]));
    }

    #[test]
    fn nothing_new_leaves_the_mark() {
        assert_eq!(check(9, &[]), (9, vec![]));
        assert_eq!(check(9, &[3, 9]), (9, vec![]));
    }

    #[test]
    fn hostile_numbers_do_not_overflow() {
        let (mark, gaps) = check(u64::MAX - 1, &[u64::MAX]);
        assert_eq!((mark, gaps.len()), (u64::MAX, 0));
        let (mark, gaps) = check(1, &[u64::MAX]);
        assert_eq!(mark, u64::MAX);
        assert_eq!(gaps, vec![Gap { first: 2, last: u64::MAX - 1 }]);
    }
}
