//! Trust in other people's keys: trust on first use, what a newer device
//! list changes, and the "verified" mark a person sets after comparing
//! safety numbers (cleared by any identity change).
//!
//! Signature, rollback and equivocation checks on the lists themselves are
//! in `strongroom_crypto::certs`; these are the decisions around them.

use strongroom_crypto::certs::{CertError, DeviceList, DeviceListExpectation, VerifiedDeviceList};

/// The highest device list seen for a user: (version, SHA-256 of the list).
pub type Seen = Option<(u64, [u8; 32])>;

/// Most lists followed in one step from the list seen to the current one.
pub const MAX_CHAIN: usize = 4096;

/// Follows a user's list chain from what was seen (`expect.seen`, and the
/// list itself when known) through `chain`, ascending and consecutive, to
/// its last list. Starting from the known list means a device revoked there
/// must stay revoked; without it the first list is checked against the
/// version and digest seen.
pub fn follow(
    expect: &DeviceListExpectation,
    known: Option<&DeviceList>,
    chain: &[DeviceList],
) -> Result<VerifiedDeviceList, CertError> {
    let (first, rest) = chain.split_first().ok_or(CertError::Invalid("no device list to check"))?;
    let start = match (known, expect.seen) {
        (Some(k), Some((v, d))) if k.version == v && k.digest() == d && first.version == v.saturating_add(1) => {
            k.verify(&DeviceListExpectation { seen: None, ..*expect })?.successor(first)?
        }
        _ => first.verify(expect)?,
    };
    rest.iter().try_fold(start, |prev, next| prev.successor(next))
}

/// What a person is told when a contact's verified list changed under the
/// same identity key: devices added and removed. Their verified mark holds
/// (it is on the identity key, which did not change).
pub fn device_notices(who: &str, before: &DeviceList, after: &VerifiedDeviceList) -> Vec<String> {
    let (added, removed) = after.changes_since(before);
    let added = added.into_iter().map(|d| format!("{who} added a device \"{}\" ({})", d.name, d.device_id));
    let removed = removed.into_iter().map(|d| format!("{who} removed a device \"{}\" ({})", d.name, d.device_id));
    added.chain(removed).collect()
}

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
    use rand_core::OsRng;
    use strongroom_crypto::certs::DeviceEntry;
    use strongroom_crypto::ids::{DeviceId, NetworkId, UserId};
    use strongroom_crypto::keys::SigningKey;

    const NET: NetworkId = NetworkId::from_bytes([7; 16]);
    const USER: UserId = UserId::from_bytes([1; 16]);

    fn entries(devices: &[(u8, bool)]) -> Vec<DeviceEntry> {
        devices
            .iter()
            .map(|(d, revoked)| DeviceEntry {
                device_id: DeviceId::from_bytes([*d; 16]),
                signing_key: SigningKey::from_seed(strongroom_crypto::keys::SecretBytes::new([*d; 32]))
                    .unwrap()
                    .verifying_key(),
                created_at: 0,
                revoked: *revoked,
                versions: strongroom_crypto::suite::SUPPORTED_VERSIONS,
                name: format!("d{d}"),
            })
            .collect()
    }

    fn expect(identity: &SigningKey, seen: &DeviceList) -> DeviceListExpectation {
        DeviceListExpectation {
            network_id: NET,
            user_id: USER,
            pinned_identity: Some(identity.verifying_key()),
            seen: Some((seen.version, seen.digest())),
        }
    }

    #[test]
    fn a_chain_is_followed_and_a_revoked_device_cannot_return() {
        let id = SigningKey::generate(&mut OsRng);
        let v1 = DeviceList::first(&id, NET, USER, 0, entries(&[(1, false), (2, false)])).unwrap();
        let v2 = v1.next(&id, 1, entries(&[(1, false), (2, true)])).unwrap();
        let v3 = v2.next(&id, 2, entries(&[(1, false), (2, true), (3, false)])).unwrap();
        // Two versions ahead: the list in between is needed.
        assert_eq!(
            follow(&expect(&id, &v1), Some(&v1), std::slice::from_ref(&v3)),
            Err(CertError::DeviceListGap { seen: 1, got: 3 })
        );
        let got = follow(&expect(&id, &v1), Some(&v1), &[v2.clone(), v3.clone()]).unwrap();
        assert_eq!(got.list(), &v3);
        assert_eq!(
            device_notices("alice", &v1, &got),
            vec![
                "alice added a device \"d3\" (03030303030303030303030303030303)",
                "alice removed a device \"d2\" (02020202020202020202020202020202)"
            ]
        );
        // The holder of the identity key lists device 2 as active again: refused.
        let revived = v2.next(&id, 3, entries(&[(1, false), (2, false)])).unwrap();
        assert_eq!(
            follow(&expect(&id, &v2), Some(&v2), std::slice::from_ref(&revived)),
            Err(CertError::DeviceRevived { user: USER, device: DeviceId::from_bytes([2; 16]) })
        );
        // Dropping it from the list is no way around that either.
        let dropped = v2.next(&id, 3, entries(&[(1, false)])).unwrap();
        assert!(matches!(follow(&expect(&id, &v2), Some(&v2), &[dropped]), Err(CertError::DeviceRevived { .. })));
        // A list at the highest version follows nothing seen.
        let max = DeviceList::sign(&id, NET, USER, u64::MAX, v2.digest(), 4, entries(&[(1, false)])).unwrap();
        assert_eq!(
            follow(&expect(&id, &v2), Some(&v2), &[max]),
            Err(CertError::DeviceListGap { seen: 2, got: u64::MAX })
        );
        // A fork: the next version chained to another list.
        let other = DeviceList::sign(&id, NET, USER, 3, [9; 32], 4, entries(&[(1, false), (2, true)])).unwrap();
        assert_eq!(follow(&expect(&id, &v2), Some(&v2), &[other]), Err(CertError::DeviceListFork { version: 3 }));
        // The chain must be consecutive throughout.
        assert!(follow(&expect(&id, &v1), Some(&v1), &[v2.clone(), v2.clone()]).is_err());
        assert!(follow(&expect(&id, &v1), None, &[]).is_err());
        // The same list again is no change.
        assert_eq!(follow(&expect(&id, &v3), Some(&v3), std::slice::from_ref(&v3)).unwrap().list(), &v3);
    }

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
