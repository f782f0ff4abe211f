//! Opening a delivery: what an id already in the store means, and which
//! failures may be acknowledged.
//!
//! A device acknowledges a delivery only once it is durably stored, or once
//! it was refused for a reason no retry can change (a verification failure
//! or a definite 4xx), with the refusal itself stored as evidence. Anything
//! a retry could fix (the relay or key directory failing or overloaded, the
//! network, the local store) stops the pass before the acknowledgement.

/// What the local store knows of a delivered message id.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Known {
    /// Never seen: open it.
    New,
    /// Stored but never acknowledged (the device stopped in between): an
    /// honest re-delivery; acknowledge it, store nothing.
    StoredUnacknowledged,
    /// Stored and acknowledged: the relay is replaying it.
    Replayed,
}

/// From the store's `seen` record: `None`, or whether it was acknowledged.
pub fn known(seen: Option<bool>) -> Known {
    match seen {
        None => Known::New,
        Some(false) => Known::StoredUnacknowledged,
        Some(true) => Known::Replayed,
    }
}

/// What to do with a delivery that failed to open.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum OnFailure {
    /// Keep the evidence, warn, acknowledge.
    Refuse,
    /// Acknowledge nothing from here on; the next pass retries.
    Retry,
}

/// The rule: transient failures are retried, everything else refused.
pub fn on_failure(transient: bool) -> OnFailure {
    if transient {
        OnFailure::Retry
    } else {
        OnFailure::Refuse
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_stored_but_unacknowledged_message_is_not_a_replay() {
        assert_eq!(known(None), Known::New);
        assert_eq!(known(Some(false)), Known::StoredUnacknowledged);
        assert_eq!(known(Some(true)), Known::Replayed);
    }

    #[test]
    fn only_final_failures_are_acknowledged() {
        assert_eq!(on_failure(true), OnFailure::Retry);
        assert_eq!(on_failure(false), OnFailure::Refuse);
    }
}
