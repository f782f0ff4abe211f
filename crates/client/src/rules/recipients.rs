//! Who a message is sealed for: every active device of every member, less
//! the sending device and any device an administrator revoked or wiped
//! (whatever the signed list says); and which of them get a one-time
//! pre-key claimed (PROTOCOL.md §3.1).

use std::collections::BTreeMap;

use strongroom_crypto::certs::{SignedPreKey, VerifiedDevice, VerifiedDeviceList, VerifiedPreKey};
use strongroom_crypto::ids::{DeviceId, UserId};
use strongroom_wire::DeviceAddress;

use super::prekeys::wants_one_time;

/// The devices to seal for, from each member's verified list and the
/// devices the relay reports revoked for that member.
pub fn targets(members: &[(VerifiedDeviceList, Vec<DeviceId>)], me: (UserId, DeviceId)) -> Vec<VerifiedDevice> {
    members
        .iter()
        .flat_map(|(list, revoked)| {
            list.active_devices()
                .filter(move |d| (d.user_id(), d.device_id()) != me && !revoked.contains(&d.device_id()))
        })
        .collect()
}

/// The key under which [`ClaimPlan`] remembers one-time use per device.
pub fn device_key(d: &VerifiedDevice) -> DeviceAddress {
    DeviceAddress { user: d.user_id(), device: d.device_id() }
}

/// A pre-key claim: every target, and those for which only the
/// medium-term key is wanted (a one-time key was spent on them this period).
#[derive(Debug, PartialEq, Eq)]
pub struct ClaimPlan {
    /// `user:device` of every target, in order.
    pub devices: Vec<DeviceAddress>,
    /// The subset that gets the medium-term key.
    pub medium_term: Vec<DeviceAddress>,
}

/// Plans the claim for `targets` given when this device last sealed to a
/// one-time key of each (`user:device` → ms).
pub fn claim_plan(targets: &[VerifiedDevice], one_time_used: &BTreeMap<DeviceAddress, u64>, now: u64) -> ClaimPlan {
    let devices: Vec<DeviceAddress> = targets.iter().map(device_key).collect();
    let medium_term =
        devices.iter().filter(|k| !wants_one_time(one_time_used.get(*k).copied(), now)).copied().collect();
    ClaimPlan { devices, medium_term }
}

/// Checks the pre-keys a relay answered a claim with, in order, against the
/// devices they were claimed for: each must be signed by that device's key
/// from its verified list, and current. A missing or extra answer, or any
/// that does not verify, refuses the lot (the relay may not choose keys).
pub fn verify_claimed(
    devices: &[VerifiedDevice],
    claimed: &[Vec<u8>],
    now: u64,
) -> Result<Vec<VerifiedPreKey>, String> {
    if devices.len() != claimed.len() {
        return Err(format!(
            "the relay answered a claim for {} devices with {} pre-keys",
            devices.len(),
            claimed.len()
        ));
    }
    devices
        .iter()
        .zip(claimed)
        .map(|(d, raw)| {
            SignedPreKey::decode(raw)
                .and_then(|k| k.verify(d, now))
                .map_err(|e| format!("pre-key of device {}: {e}", d.device_id()))
        })
        .collect()
}

/// Users the relay says a message must also reach (`user:device` hex pairs
/// from its refusal) who are not in the member set members signed: the
/// relay added them. Retention devices are not members and are left out.
pub fn unsigned_members(missing: &[DeviceAddress], signed: &std::collections::BTreeSet<UserId>) -> Vec<UserId> {
    let mut ghosts: Vec<UserId> =
        missing.iter().map(|a| a.user).filter(|u| *u != UserId::RETENTION && !signed.contains(u)).collect();
    ghosts.sort();
    ghosts.dedup();
    ghosts
}

#[cfg(test)]
mod tests {
    #![allow(clippy::unwrap_used, clippy::indexing_slicing)]
    use super::*;
    use rand_core::OsRng;
    use strongroom_crypto::certs::{DeviceEntry, DeviceList, DeviceListExpectation};
    use strongroom_crypto::ids::NetworkId;
    use strongroom_crypto::keys::SigningKey;

    const NET: NetworkId = NetworkId::from_bytes([1; 16]);

    fn list(user: u8, devices: &[(u8, bool)]) -> VerifiedDeviceList {
        let identity = SigningKey::generate(&mut OsRng);
        let entries = devices
            .iter()
            .map(|(d, revoked)| {
                let key = SigningKey::generate(&mut OsRng).verifying_key();
                DeviceEntry {
                    revoked: *revoked,
                    ..super::super::keys::device_entry(DeviceId::from_bytes([*d; 16]), key, "d", 0)
                }
            })
            .collect();
        let user = UserId::from_bytes([user; 16]);
        let signed = DeviceList::first(&identity, NET, user, 0, entries).unwrap();
        signed
            .verify(&DeviceListExpectation { network_id: NET, user_id: user, pinned_identity: None, seen: None })
            .unwrap()
    }

    fn ids(v: &[VerifiedDevice]) -> Vec<(u8, u8)> {
        v.iter().map(|d| (d.user_id().as_bytes()[0], d.device_id().as_bytes()[0])).collect()
    }

    #[test]
    fn a_member_the_relay_names_but_no_member_signed_is_a_ghost() {
        let (a, b, m) = (UserId::from_bytes([1; 16]), UserId::from_bytes([2; 16]), UserId::from_bytes([9; 16]));
        let signed = [a, b].into();
        let pair = |u: UserId, d: u8| DeviceAddress { user: u, device: DeviceId::from_bytes([d; 16]) };
        let missing = vec![pair(b, 1), pair(m, 2), pair(m, 3), pair(UserId::RETENTION, 4)];
        assert_eq!(unsigned_members(&missing, &signed), vec![m]);
        assert!(unsigned_members(&[pair(b, 1)], &signed).is_empty(), "a signed member's new device is no ghost");
    }

    #[test]
    fn every_member_device_but_mine_and_the_revoked_ones() {
        let me = (UserId::from_bytes([1; 16]), DeviceId::from_bytes([10; 16]));
        let members = vec![
            // My other device gets it; this one does not.
            (list(1, &[(10, false), (11, false)]), vec![]),
            // A device revoked in the signed list, and one the relay says an administrator wiped.
            (list(2, &[(20, false), (21, true), (22, false)]), vec![DeviceId::from_bytes([22; 16])]),
        ];
        assert_eq!(ids(&targets(&members, me)), vec![(1, 11), (2, 20)]);
    }

    #[test]
    fn claimed_keys_must_match_the_devices_asked_for() {
        use strongroom_crypto::certs::PreKeyKind;
        let me = (UserId::from_bytes([1; 16]), DeviceId::from_bytes([10; 16]));
        let identity = SigningKey::generate(&mut OsRng);
        let keys: Vec<SigningKey> = (0..2).map(|_| SigningKey::generate(&mut OsRng)).collect();
        let user = UserId::from_bytes([2; 16]);
        let entries = keys
            .iter()
            .enumerate()
            .map(|(i, k)| {
                super::super::keys::device_entry(DeviceId::from_bytes([20 + i as u8; 16]), k.verifying_key(), "d", 0)
            })
            .collect();
        let list = DeviceList::first(&identity, NET, user, 0, entries)
            .unwrap()
            .verify(&DeviceListExpectation { network_id: NET, user_id: user, pinned_identity: None, seen: None })
            .unwrap();
        let devices = targets(&[(list, vec![])], me);
        let signed: Vec<Vec<u8>> = devices
            .iter()
            .zip(&keys)
            .map(|(d, k)| {
                let who = (NET, d.user_id(), d.device_id());
                super::super::keys::new_prekeys(k, who, &[PreKeyKind::MediumTerm], 0, 1_000, &mut OsRng).unwrap()[0]
                    .signed
                    .encode()
            })
            .collect();
        assert_eq!(verify_claimed(&devices, &signed, 2_000).unwrap().len(), 2);
        // Too few, too many, swapped between devices, garbage, expired.
        assert!(verify_claimed(&devices, &signed[..1], 2_000).is_err());
        assert!(verify_claimed(&devices[..1], &signed, 2_000).is_err());
        let swapped = vec![signed[1].clone(), signed[0].clone()];
        assert!(verify_claimed(&devices, &swapped, 2_000).unwrap_err().contains("pre-key of device"));
        assert!(verify_claimed(&devices, &[vec![0xff; 7], signed[1].clone()], 2_000).is_err());
        assert!(verify_claimed(&devices, &signed, u64::MAX).is_err());
    }

    #[test]
    fn a_one_time_key_once_per_device_per_period() {
        let members = vec![(list(2, &[(20, false), (21, false)]), vec![])];
        let t = targets(&members, (UserId::from_bytes([1; 16]), DeviceId::from_bytes([10; 16])));
        let used = BTreeMap::from([(device_key(&t[0]), 1_000)]);
        let plan = claim_plan(&t, &used, 2_000);
        assert_eq!(plan.devices.len(), 2);
        assert_eq!(plan.medium_term, vec![device_key(&t[0])]);
        let later = claim_plan(&t, &used, 1_000 + super::super::prekeys::ROTATE_AFTER_MS);
        assert!(later.medium_term.is_empty());
    }
}
