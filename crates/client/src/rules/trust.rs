//! Trust in other people's keys: trust on first use, what a newer device
//! list changes, and the "verified" mark a person sets after comparing
//! safety numbers (cleared by any identity change).
//!
//! Signature, rollback and equivocation checks on the lists themselves are
//! in `strongroom_crypto::certs`; these are the decisions around them.

/// The highest device list seen for a user: (version, SHA-256 of the list).
pub type Seen = Option<(u64, [u8; 32])>;

/// What to remember after a list with `version` and `digest` verified
/// against `seen` (older and conflicting lists were already refused).
pub fn seen_after(seen: Seen, version: u64, digest: [u8; 32]) -> Seen {
    match seen {
        Some((v, _)) if v >= version => seen,
        _ => Some((version, digest)),
    }
}

/// Whether a person's identity key is verified.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Verification {
    /// Never compared.
    Unverified,
    /// The safety number was compared for the key pinned now.
    Verified,
    /// It was verified, but for a key that has since changed: compare again.
    ChangedSinceVerified,
}

/// The verification state from the pinned key and the key marked verified.
pub fn verification(pinned: Option<&[u8; 32]>, verified: Option<&[u8; 32]>) -> Verification {
    match (pinned, verified) {
        (_, None) => Verification::Unverified,
        (Some(p), Some(v)) if bool::from(subtle::ConstantTimeEq::ct_eq(&p[..], &v[..])) => Verification::Verified,
        (_, Some(_)) => Verification::ChangedSinceVerified,
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn only_a_newer_list_moves_what_was_seen() {
        assert_eq!(seen_after(None, 1, [1; 32]), Some((1, [1; 32])));
        assert_eq!(seen_after(Some((3, [3; 32])), 4, [4; 32]), Some((4, [4; 32])));
        assert_eq!(seen_after(Some((3, [3; 32])), 3, [3; 32]), Some((3, [3; 32])));
        assert_eq!(seen_after(Some((3, [3; 32])), 2, [2; 32]), Some((3, [3; 32])));
    }

    #[test]
    fn a_changed_key_is_no_longer_verified() {
        let (a, b) = ([1u8; 32], [2u8; 32]);
        assert_eq!(verification(Some(&a), None), Verification::Unverified);
        assert_eq!(verification(Some(&a), Some(&a)), Verification::Verified);
        assert_eq!(verification(Some(&b), Some(&a)), Verification::ChangedSinceVerified);
        assert_eq!(verification(None, Some(&a)), Verification::ChangedSinceVerified);
    }
}
