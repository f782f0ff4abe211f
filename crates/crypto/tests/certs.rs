//! Trust chain checks: pre-keys, device lists, network policies.
#![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic, clippy::indexing_slicing)]

mod common;

use common::*;
use strongroom_crypto::certs::*;
use strongroom_crypto::envelope::MembershipCommitment;
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
    let swapped = list.next(&other, NOW, list.devices.clone()).unwrap();
    assert_eq!(swapped.verify(&w.expectation(0)), Err(CertError::IdentityChanged { user: w.users[0].id }));
    // Trust on first use accepts it when nothing is pinned.
    let mut tofu = w.expectation(0);
    tofu.pinned_identity = None;
    swapped.verify(&tofu).unwrap();

    let mut newer = w.expectation(0);
    newer.seen = Some((5, [0; 32]));
    assert_eq!(list.verify(&newer), Err(CertError::DeviceListRollback { seen: 5, got: 1 }));
    // The same list again is fine; another list under the same version is
    // the relay showing two views.
    let mut same = w.expectation(0);
    same.seen = Some((list.version, list.digest()));
    list.verify(&same).unwrap();
    let fork = DeviceList::sign(
        &w.users[0].identity,
        w.net,
        w.users[0].id,
        list.version,
        list.previous,
        NOW + 1,
        list.devices.clone(),
    )
    .unwrap();
    assert_eq!(fork.verify(&same), Err(CertError::DeviceListConflict { version: list.version }));
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
    assert!(matches!(list.next(&w.users[0].identity, NOW, dup), Err(CertError::DuplicateDevice(_))));
    let mut long = list.devices.clone();
    long[0].name = "x".repeat(65);
    assert!(list.next(&w.users[0].identity, NOW, long).is_err());
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
}

/// Policy v2 is a list of typed entries; every kind round-trips, a draining
/// retention device is not wrapped to, and an unknown entry type is refused
/// rather than skipped (it might widen who can read).
#[test]
fn policy_entries_round_trip_and_unknown_types_are_refused() {
    let w = World::new(24, &[1], true);
    let mut retention = w.policy.retention.clone();
    let mut draining = retention[0].clone();
    draining.device_id = DeviceId::from_bytes([0xee; 16]);
    draining.state = RetentionState::Draining;
    retention.push(draining);
    let partner = FederationPartner {
        network_id: NetworkId::from_bytes([5; 16]),
        key_fingerprint: [6; 32],
        relay_url: "https://relay.partner.example".into(),
        relay_key: w.users[0].identity.verifying_key(),
        features: partner_features::MESSAGES | partner_features::FILES,
    };
    let entries = PolicyEntries { retention, partners: vec![partner.clone()], retention_floor_days: Some(7 * 365) };
    let p = NetworkPolicy::sign_entries(&w.network_key, w.net, 5, NOW, entries).unwrap();
    let decoded = NetworkPolicy::decode(&p.encode()).unwrap();
    assert_eq!(decoded, p);
    assert_eq!(decoded.partners, vec![partner.clone()]);
    assert_eq!(decoded.retention_floor_days, Some(2555));
    let verified = PolicyTracker::new(w.network_key.verifying_key(), w.net).verify(&decoded).unwrap();
    let wrapped: Vec<_> = verified.retention_recipients().iter().map(|r| r.address().2).collect();
    assert_eq!(wrapped, vec![w.policy.retention[0].device_id], "only the active device is wrapped to");

    // An entry of type 9, appended (type order holds), signed by the real key.
    let mut bytes = p.encode();
    bytes.truncate(bytes.len() - 64);
    let count_at = 1 + 2 + 16 + 8 + 8;
    let count = u16::from_be_bytes([bytes[count_at], bytes[count_at + 1]]) + 1;
    bytes[count_at..count_at + 2].copy_from_slice(&count.to_be_bytes());
    bytes.extend_from_slice(&[9, 0, 1, 0xaa]);
    let mut signed_input = b"strongroom/v2/network-policy\0".to_vec();
    signed_input.extend_from_slice(&bytes);
    bytes.extend_from_slice(w.network_key.sign(&signed_input).as_bytes());
    assert_eq!(NetworkPolicy::decode(&bytes), Err(CertError::UnknownPolicyEntry(9)));

    // Out-of-range fields are refused when signing (and so when decoding).
    let bad = |e: PolicyEntries| NetworkPolicy::sign_entries(&w.network_key, w.net, 6, NOW, e).is_err();
    assert!(bad(PolicyEntries { retention_floor_days: Some(0), ..PolicyEntries::default() }));
    let mut http = partner.clone();
    http.relay_url = "http://relay.partner.example".into();
    assert!(bad(PolicyEntries { partners: vec![http], ..PolicyEntries::default() }));
    let mut undefined = partner.clone();
    undefined.features = 1 << 9;
    assert!(bad(PolicyEntries { partners: vec![undefined], ..PolicyEntries::default() }));
    let mut itself = partner;
    itself.network_id = w.net;
    assert!(bad(PolicyEntries { partners: vec![itself], ..PolicyEntries::default() }));
}

/// Keys of small order or with a second spelling are refused wherever a
/// statement carries one.
#[test]
fn statements_with_weak_keys_are_refused() {
    let w = World::new(25, &[1], true);
    // The Ed25519 identity point as a device key in a device list.
    let list = w.users[0].list.encode();
    let key_at = 1 + 2 + 16 + 16 + 32 + 8 + 32 + 8 + 2 + 16;
    let mut weak = list.clone();
    weak[key_at..key_at + 32].copy_from_slice(&{
        let mut identity = [0u8; 32];
        identity[0] = 1;
        identity
    });
    assert!(matches!(DeviceList::decode(&weak), Err(CertError::Key(_))));
    // The all-zero X25519 key in a signed pre-key.
    let pk = w.users[0].devices[0].signed[0].encode();
    let mut zero = pk.clone();
    let x_at = 1 + 2 + 16 * 3 + 1 + 4;
    zero[x_at..x_at + 32].fill(0);
    assert!(matches!(SignedPreKey::decode(&zero), Err(CertError::Key(_))));
}

#[test]
fn network_fingerprint_pins_the_key() {
    let w = World::new(23, &[1], false);
    let fp = NetworkFingerprint::of(&w.network_key.verifying_key());
    assert!(fp.matches(&w.network_key.verifying_key()));
    assert!(!fp.matches(&w.users[0].identity.verifying_key()));
    assert_eq!(NetworkFingerprint::parse(&fp.to_string()), Some(fp));
}

/// PROTOCOL.md §3.2: lists form a hash chain. The next version must name the
/// digest of the list seen, a later one needs the lists between, a list at
/// the highest version cannot follow anything, and a revoked device stays
/// revoked in every list after.
#[test]
fn device_lists_form_a_chain_that_cannot_skip_or_revive() {
    let w = World::new(26, &[2], false);
    let u = &w.users[0];
    let v1 = u.list.clone();
    let mut revoked = v1.devices.clone();
    revoked[1].revoked = true;
    let v2 = v1.next(&u.identity, NOW, revoked.clone()).unwrap();
    let seen_v1 = DeviceListExpectation { seen: Some((1, v1.digest())), ..w.expectation(0) };
    let verified_v2 = v2.verify(&seen_v1).unwrap();
    assert_eq!(verified_v2.active_devices().count(), 1);
    assert_eq!(w.verified_list(0).successor(&v2).unwrap(), verified_v2);

    // Version 3 seen from version 1: the relay must show version 2 first.
    let v3 = v2.next(&u.identity, NOW, revoked.clone()).unwrap();
    assert_eq!(v3.verify(&seen_v1), Err(CertError::DeviceListGap { seen: 1, got: 3 }));
    // The highest version, properly signed, still follows nothing seen.
    let max = DeviceList::sign(&u.identity, w.net, u.id, u64::MAX, v1.digest(), NOW, revoked.clone()).unwrap();
    assert_eq!(max.verify(&seen_v1), Err(CertError::DeviceListGap { seen: 1, got: u64::MAX }));
    assert!(matches!(verified_v2.successor(&max), Err(CertError::DeviceListGap { .. })));
    assert_eq!(
        max.next(&u.identity, NOW, revoked.clone()).err(),
        Some(CertError::Invalid("device list version exhausted"))
    );
    // A second version 2 chained to another list: a fork.
    let other = DeviceList::sign(&u.identity, w.net, u.id, 2, [3; 32], NOW, revoked.clone()).unwrap();
    assert_eq!(other.verify(&seen_v1), Err(CertError::DeviceListFork { version: 2 }));
    // Un-revoking, even signed by the identity key, is refused.
    let revived = v2.next(&u.identity, NOW, v1.devices.clone()).unwrap();
    assert!(matches!(verified_v2.successor(&revived), Err(CertError::DeviceRevived { .. })));
    // An older list is a rollback; another identity key is a change.
    assert!(matches!(verified_v2.successor(&v1), Err(CertError::DeviceListRollback { .. })));
    let stranger = SigningKey::generate(&mut w.rng.clone());
    let foreign = v2.next(&stranger, NOW, revoked).unwrap();
    assert!(matches!(verified_v2.successor(&foreign), Err(CertError::IdentityChanged { .. })));
    // Chain starts: version 0 does not exist, 1 names nothing, 2+ name something.
    assert!(DeviceList::sign(&u.identity, w.net, u.id, 0, [0; 32], NOW, vec![]).is_err());
    assert!(DeviceList::sign(&u.identity, w.net, u.id, 1, [1; 32], NOW, vec![]).is_err());
    assert!(DeviceList::sign(&u.identity, w.net, u.id, 2, [0; 32], NOW, vec![]).is_err());
}

/// PROTOCOL.md §3.4: a conversation's members are what its members signed,
/// statement by statement; the relay can neither add a member, skip or fork
/// the history, nor let a member do what its role does not allow.
#[test]
fn membership_is_folded_from_signed_statements() {
    let w = World::new(27, &[1, 1, 1, 1], false);
    let dev = |u: usize| w.verified_list(u).device(w.users[u].devices[0].id).unwrap();
    let author = |u: usize| (w.users[u].id, w.users[u].devices[0].id);
    let sign = |u: usize, after: Option<&MembershipState>, action, users: Vec<UserId>| {
        let conv = match (after, action) {
            (Some(s), _) => s.conversation_id,
            (None, MembershipAction::Create(kind)) => {
                MembershipStatement::creation_id(w.net, author(u), NOW, kind, users.clone())
            }
            (None, _) => ConversationId::from_bytes([5; 16]),
        };
        MembershipStatement::sign(
            &w.users[u].devices[0].key,
            w.net,
            conv,
            after.map(|s| &s.commitment),
            author(u),
            NOW,
            action,
            users,
        )
        .unwrap()
    };
    let (a, b, c, m) = (w.users[0].id, w.users[1].id, w.users[2].id, w.users[3].id);

    // Alice makes a room with Bob.
    let create = sign(0, None, MembershipAction::Create(ConversationKind::Room), vec![a, b]);
    let create = MembershipStatement::decode(&create.encode()).unwrap();
    create.verify(&dev(0)).unwrap();
    assert!(matches!(create.verify(&dev(1)), Err(CertError::WrongUser { .. })), "signed by alice, not bob");
    let mut state = MembershipState::create(&create).unwrap();
    assert_eq!(state.members, [a, b].into());
    assert_eq!(state.moderators, [a].into());
    assert_eq!(state.commitment.version, 1);

    // Bob is no moderator: he cannot add Mallory.
    let by_bob = sign(1, Some(&state), MembershipAction::Add, vec![m]);
    assert_eq!(state.clone().apply(&by_bob), Err(CertError::MembershipRefused("only a room's moderators add members")));
    // Mallory is no member: nothing she signs counts.
    let by_mallory = sign(3, Some(&state), MembershipAction::Add, vec![m]);
    assert_eq!(state.clone().apply(&by_mallory), Err(CertError::MembershipRefused("the author is not a member")));
    // Alice adds Carol and promotes Bob.
    let add = sign(0, Some(&state), MembershipAction::Add, vec![c]);
    state.apply(&add).unwrap();
    let promote = sign(0, Some(&state), MembershipAction::Promote, vec![b]);
    let before_promote = state.clone();
    state.apply(&promote).unwrap();
    assert_eq!(state.members, [a, b, c].into());
    assert_eq!(state.moderators, [a, b].into());
    assert_eq!(state.commitment, MembershipCommitment { version: 3, hash: promote.digest() });

    // The same statement again, a skipped one, and a fork.
    assert!(matches!(state.clone().apply(&promote), Err(CertError::MembershipGap { expected: 4, got: 3 })));
    let mut skipped = state.clone();
    skipped.commitment.version += 1;
    let far = sign(0, Some(&skipped), MembershipAction::Remove, vec![c]);
    assert!(matches!(state.clone().apply(&far), Err(CertError::MembershipGap { expected: 4, got: 5 })));
    let other_history = sign(0, Some(&before_promote), MembershipAction::Remove, vec![c]);
    let mut forked = state.clone();
    forked.commitment.version = 2;
    forked.commitment.hash = [9; 32];
    assert_eq!(forked.apply(&other_history), Err(CertError::MembershipFork { sequence: 3 }));

    // Carol leaves; Bob (now a moderator) removes Alice.
    let leave = sign(2, Some(&state), MembershipAction::Leave, vec![]);
    state.apply(&leave).unwrap();
    let remove = sign(1, Some(&state), MembershipAction::Remove, vec![a]);
    state.apply(&remove).unwrap();
    assert_eq!(state.members, [b].into());
    assert_eq!(state.moderators, [b].into());

    // A creation under an id it does not derive (say, an existing
    // conversation's) is refused when signed and when folded.
    let taken = state.conversation_id;
    assert!(MembershipStatement::sign(
        &w.users[3].devices[0].key,
        w.net,
        taken,
        None,
        author(3),
        NOW,
        MembershipAction::Create(ConversationKind::Group),
        vec![a, m],
    )
    .is_err());
    let mut hijack = sign(3, None, MembershipAction::Create(ConversationKind::Group), vec![a, m]).encode();
    hijack[1 + 2 + 16..1 + 2 + 32].copy_from_slice(taken.as_bytes());
    let hijack = MembershipStatement::decode(&hijack).unwrap();
    assert_eq!(
        MembershipState::create(&hijack),
        Err(CertError::MembershipRefused("the conversation id is not the one its creation derives"))
    );

    // Direct conversations and notes never change; creations are checked.
    let direct = sign(0, None, MembershipAction::Create(ConversationKind::Direct), vec![a, b]);
    let mut d = MembershipState::create(&direct).unwrap();
    assert!(d.apply(&sign(0, Some(&d.clone()), MembershipAction::Add, vec![c])).is_err());
    assert!(
        MembershipState::create(&sign(0, None, MembershipAction::Create(ConversationKind::Direct), vec![a])).is_err()
    );
    assert!(
        MembershipState::create(&sign(0, None, MembershipAction::Create(ConversationKind::Notes), vec![a, b])).is_err()
    );
    assert!(
        MembershipState::create(&sign(0, None, MembershipAction::Create(ConversationKind::Group), vec![b])).is_err()
    );

    // Decoding refuses what the format forbids.
    let bytes = add.encode();
    assert!(MembershipStatement::decode(&bytes[..bytes.len() - 1]).is_err());
    let mut unknown = bytes.clone();
    unknown[1 + 2 + 16 + 16 + 8 + 32 + 16 + 16 + 8] = 9;
    assert!(matches!(MembershipStatement::decode(&unknown), Err(CertError::Invalid(_))));
    let mut tampered = bytes.clone();
    tampered[bytes.len() - 70] ^= 1;
    let tampered = MembershipStatement::decode(&tampered).unwrap();
    assert_eq!(tampered.verify(&dev(0)), Err(CertError::BadSignature { what: "membership statement" }));
}
