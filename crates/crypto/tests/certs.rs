//! Trust chain checks: pre-keys, device lists, network policies.
#![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic, clippy::indexing_slicing)]

mod common;

use common::*;
use strongroom_crypto::certs::*;
use strongroom_crypto::ids::*;
use strongroom_crypto::keys::*;

#[test]
fn prekey_verifies_and_fails_precisely() {
    let w = World::new(20, &[2], false);
    let list = w.verified_list(0);
    let dev0 = list.device(w.users[0].devices[0].id).unwrap();
    let dev1 = list.device(w.users[0].devices[1].id).unwrap();
    let pk = &w.users[0].devices[0].signed[0];
    assert_eq!(SignedPreKey::decode(&pk.encode()).unwrap(), *pk);
    pk.verify(&dev0, NOW).unwrap();
    assert!(matches!(pk.verify(&dev0, NOW + YEAR_MS), Err(CertError::Expired { .. })));
    assert!(matches!(pk.verify(&dev1, NOW), Err(CertError::WrongDevice { .. })));
    // Signed by another device's key but claiming device 0.
    let forged = SignedPreKey::sign(
        &w.users[0].devices[1].key,
        w.net,
        w.users[0].id,
        w.users[0].devices[0].id,
        MEDIUM,
        pk.public,
        NOW,
        NOW + 1000,
    )
    .unwrap();
    assert_eq!(forged.verify(&dev0, NOW), Err(CertError::BadSignature { what: "pre-key" }));
    let mut bytes = pk.encode();
    bytes[60] ^= 1;
    assert_eq!(
        SignedPreKey::decode(&bytes).unwrap().verify(&dev0, NOW),
        Err(CertError::BadSignature { what: "pre-key" })
    );
    let retention = PreKeyRef { kind: PreKeyKind::Retention, id: 1 };
    assert!(SignedPreKey::sign(
        &w.users[0].devices[0].key,
        w.net,
        w.users[0].id,
        dev0.device_id(),
        retention,
        pk.public,
        0,
        1
    )
    .is_err());
    for len in 0..bytes.len() {
        assert!(SignedPreKey::decode(&bytes[..len]).is_err());
    }
}

#[test]
fn device_list_pinning_rollback_and_lookup() {
    let w = World::new(21, &[2, 1], false);
    let list = &w.users[0].list;
    assert_eq!(DeviceList::decode(&list.encode()).unwrap(), *list);
    let v = w.verified_list(0);
    assert_eq!(v.active_devices().count(), 2);
    assert!(matches!(v.device(DeviceId::from_bytes([0; 16])), Err(CertError::UnknownDevice { .. })));

    // Identity changed: a list signed by another key.
    let other = SigningKey::generate(&mut w.rng.clone());
    let swapped = DeviceList::sign(&other, w.net, w.users[0].id, 2, NOW, list.devices.clone()).unwrap();
    assert_eq!(swapped.verify(&w.expectation(0)), Err(CertError::IdentityChanged { user: w.users[0].id }));
    // Trust on first use accepts it when nothing is pinned.
    let mut tofu = w.expectation(0);
    tofu.pinned_identity = None;
    swapped.verify(&tofu).unwrap();

    let mut newer = w.expectation(0);
    newer.min_version = Some(5);
    assert_eq!(list.verify(&newer), Err(CertError::DeviceListRollback { seen: 5, got: 1 }));
    assert!(matches!(list.verify(&w.expectation(1)), Err(CertError::WrongUser { .. })));
    let mut other_net = w.expectation(0);
    other_net.network_id = NetworkId::from_bytes([1; 16]);
    assert!(matches!(list.verify(&other_net), Err(CertError::WrongNetwork { .. })));

    let mut bytes = list.encode();
    let last = bytes.len() - 1;
    bytes[last] ^= 1;
    assert_eq!(
        DeviceList::decode(&bytes).unwrap().verify(&w.expectation(0)),
        Err(CertError::BadSignature { what: "device list" })
    );

    // Duplicates and oversize names are refused at signing and decoding.
    let mut dup = list.devices.clone();
    dup.push(dup[0].clone());
    assert!(matches!(
        DeviceList::sign(&w.users[0].identity, w.net, w.users[0].id, 2, NOW, dup),
        Err(CertError::DuplicateDevice(_))
    ));
    let mut long = list.devices.clone();
    long[0].name = "x".repeat(65);
    assert!(DeviceList::sign(&w.users[0].identity, w.net, w.users[0].id, 2, NOW, long).is_err());
}

#[test]
fn policy_tracker_refuses_rollback_equivocation_and_forgery() {
    let w = World::new(22, &[1], true);
    let nk = w.network_key.verifying_key();
    let mut t = PolicyTracker::new(nk, w.net);
    let v1 = t.verify(&w.policy).unwrap();
    assert!(v1.retention_enabled());
    assert_eq!(v1.retention_recipients().len(), 1);
    assert_eq!(NetworkPolicy::decode(&w.policy.encode()).unwrap(), w.policy);
    // The same policy again is fine.
    t.verify(&w.policy).unwrap();

    let off = NetworkPolicy::sign(&w.network_key, w.net, 2, NOW, vec![]).unwrap();
    assert!(!t.verify(&off).unwrap().retention_enabled());
    assert_eq!(t.verify(&w.policy), Err(CertError::PolicyRollback { seen: 2, got: 1 }));
    let fork = NetworkPolicy::sign(&w.network_key, w.net, 2, NOW + 1, vec![]).unwrap();
    assert_eq!(t.verify(&fork), Err(CertError::PolicyConflict { version: 2 }));

    // A server that invents a retention device cannot sign for the network key.
    let server_key = SigningKey::generate(&mut w.rng.clone());
    let evil = NetworkPolicy::sign(&server_key, w.net, 3, NOW, w.policy.retention.clone()).unwrap();
    assert_eq!(t.verify(&evil), Err(CertError::BadSignature { what: "network policy" }));
    let other_net = NetworkPolicy::sign(&w.network_key, NetworkId::from_bytes([3; 16]), 3, NOW, vec![]).unwrap();
    assert!(matches!(t.verify(&other_net), Err(CertError::WrongNetwork { .. })));

    // A resumed tracker remembers.
    let (ver, digest) = t.highest().unwrap();
    let mut resumed = PolicyTracker::resume(nk, w.net, ver, digest);
    assert_eq!(resumed.verify(&w.policy), Err(CertError::PolicyRollback { seen: 2, got: 1 }));

    // Tampered policy bytes.
    let mut bytes = w.policy.encode();
    bytes[40] ^= 0x10;
    let r = NetworkPolicy::decode(&bytes).map(|p| PolicyTracker::new(nk, w.net).verify(&p));
    assert!(matches!(r, Ok(Err(CertError::BadSignature { .. })) | Err(_)));
    // Non-zero flags are refused.
    let mut flags = w.policy.encode();
    flags[1 + 2 + 16 + 8 + 8 + 3] = 1;
    assert!(matches!(NetworkPolicy::decode(&flags), Err(CertError::Invalid(_))));
}

#[test]
fn network_fingerprint_pins_the_key() {
    let w = World::new(23, &[1], false);
    let fp = NetworkFingerprint::of(&w.network_key.verifying_key());
    assert!(fp.matches(&w.network_key.verifying_key()));
    assert!(!fp.matches(&w.users[0].identity.verifying_key()));
    assert_eq!(NetworkFingerprint::parse(&fp.to_string()), Some(fp));
}
