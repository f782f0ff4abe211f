//! Envelope seal/open end to end, in memory, and every way it must fail.
#![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic, clippy::indexing_slicing)]

mod common;

use common::*;
use strongroom_crypto::certs::{CertError, DeviceEntry, PreKeyKind, PreKeyRef};
use strongroom_crypto::content::Content;
use strongroom_crypto::envelope::*;
use strongroom_crypto::ids::*;
use strongroom_crypto::suite::VersionError;

fn text(s: &str) -> Content {
    Content::Text(s.into())
}

fn open_as(w: &World, env: &Envelope, sender_user: usize, u: usize, d: usize) -> Result<Opened, EnvelopeError> {
    let delivered =
        env.for_device(w.net, w.users[u].id, w.users[u].devices[d].id).ok_or(EnvelopeError::NotForThisDevice)?;
    let wire = delivered.encode();
    DeliveredEnvelope::decode(&wire)?.open(
        &w.me(u, d),
        &w.users[u].devices[d].prekeys,
        &w.verified_list(sender_user),
        &mut MemoryReplayGuard::default(),
        NOW + 10,
    )
}

#[test]
fn one_to_one_reaches_peer_and_own_other_device() {
    let w = World::new(1, &[2, 1], false);
    let meta = w.meta();
    let env = seal(&w.sender(0, 0), &meta, &text("hello Bob"), &w.recipients(&[0, 1]), &mut w.rng.clone()).unwrap();
    assert_eq!(env.wraps().len(), 3);
    let opened = open_as(&w, &env, 0, 1, 0).unwrap();
    assert_eq!(opened.content, text("hello Bob"));
    assert_eq!(opened.header.message_id, meta.message_id);
    assert_eq!(opened.prekey, MEDIUM);
    assert_eq!(open_as(&w, &env, 0, 0, 1).unwrap().content, text("hello Bob"));
    // The full form round-trips and opens directly too.
    let full = Envelope::decode(&env.encode()).unwrap();
    assert_eq!(full, env);
    let o = full
        .open(&w.me(1, 0), &w.users[1].devices[0].prekeys, &w.verified_list(0), &mut MemoryReplayGuard::default(), NOW)
        .unwrap();
    assert_eq!(o.content, text("hello Bob"));
}

#[test]
fn group_with_retention_every_device_opens() {
    let w = World::new(2, &[2, 1, 1, 1], true);
    let meta = w.meta();
    let env =
        seal(&w.sender(0, 0), &meta, &text("quarterly numbers"), &w.recipients(&[0, 1, 2, 3]), &mut w.rng.clone())
            .unwrap();
    assert_eq!(env.wraps().len(), 6);
    for (u, d) in [(0, 0), (0, 1), (1, 0), (2, 0), (3, 0)] {
        assert_eq!(open_as(&w, &env, 0, u, d).unwrap().content, text("quarterly numbers"), "user {u} device {d}");
    }
    let r = w.retention.as_ref().unwrap();
    let delivered = env.for_device(w.net, UserId::RETENTION, r.device.device_id).unwrap();
    let o = delivered
        .open(&w.retention_me(), &r.keys, &w.verified_list(0), &mut MemoryReplayGuard::default(), NOW)
        .unwrap();
    assert_eq!(o.content, text("quarterly numbers"));
    assert_eq!(o.prekey.kind, PreKeyKind::Retention);
    // Stored split: prefix | tail | signature is each device's delivery.
    let parts = env.delivery_parts();
    assert_eq!(parts.tails.len(), 6);
    for (n, u, dev, tail) in &parts.tails {
        let joined = DeliveryParts::join(&parts.prefix, tail, &parts.signature);
        assert_eq!(joined, env.for_device(*n, *u, *dev).unwrap().encode());
    }
    // deliveries() builds the same per-device envelopes as for_device().
    for d in env.deliveries() {
        let (n, u, dev) = d.wrap().recipient();
        assert_eq!(Some(d), env.for_device(n, u, dev));
    }
}

#[test]
fn padding_hides_exact_length() {
    let w = World::new(3, &[1, 1], false);
    let r = w.recipients(&[1]);
    let a = seal(&w.sender(0, 0), &w.meta(), &text("a"), &r, &mut w.rng.clone()).unwrap();
    let b = seal(&w.sender(0, 0), &w.meta(), &text(&"b".repeat(200)), &r, &mut w.rng.clone()).unwrap();
    assert_eq!(a.encode().len(), b.encode().len());
}

#[test]
fn wrong_recipient_replay_and_missing_prekey() {
    let w = World::new(4, &[1, 1, 1], false);
    let env = seal(&w.sender(0, 0), &w.meta(), &text("for Bob"), &w.recipients(&[1]), &mut w.rng.clone()).unwrap();
    let bobs = env.for_device(w.net, w.users[1].id, w.users[1].devices[0].id).unwrap();
    // Carol holds Bob's delivery.
    let err = bobs
        .open(&w.me(2, 0), &w.users[2].devices[0].prekeys, &w.verified_list(0), &mut MemoryReplayGuard::default(), NOW)
        .unwrap_err();
    assert_eq!(err, EnvelopeError::NotForThisDevice);
    assert!(env.for_device(w.net, w.users[2].id, w.users[2].devices[0].id).is_none());
    // Replay.
    let mut guard = MemoryReplayGuard::default();
    let keys = &w.users[1].devices[0].prekeys;
    bobs.open(&w.me(1, 0), keys, &w.verified_list(0), &mut guard, NOW).unwrap();
    let err = bobs.open(&w.me(1, 0), keys, &w.verified_list(0), &mut guard, NOW).unwrap_err();
    assert_eq!(err, EnvelopeError::Replay(env.header().message_id));
    // Pre-key deleted (rotated away).
    let empty: &[(PreKeyRef, strongroom_crypto::keys::AgreementSecret)] = &[];
    let err = bobs.open(&w.me(1, 0), empty, &w.verified_list(0), &mut MemoryReplayGuard::default(), NOW).unwrap_err();
    assert_eq!(err, EnvelopeError::MissingPreKey(MEDIUM));
    // A failed open records nothing: the genuine message still opens after.
    let mut guard = MemoryReplayGuard::default();
    let _ = bobs.open(&w.me(1, 0), empty, &w.verified_list(0), &mut guard, NOW);
    assert!(guard.is_empty());
}

#[test]
fn sender_must_be_in_signed_list_and_not_revoked() {
    let w = World::new(5, &[2, 1], false);
    let env = seal(&w.sender(0, 1), &w.meta(), &text("x"), &w.recipients(&[1]), &mut w.rng.clone()).unwrap();
    let d = env.for_device(w.net, w.users[1].id, w.users[1].devices[0].id).unwrap();
    let keys = &w.users[1].devices[0].prekeys;
    // Alice's list with device 1 revoked.
    let mut entries = w.users[0].list.devices.clone();
    for e in &mut entries {
        if e.device_id == w.users[0].devices[1].id {
            e.revoked = true;
        }
    }
    let revoked = w.users[0].list.next(&w.users[0].identity, NOW, entries.clone()).unwrap();
    let list = revoked.verify(&w.expectation(0)).unwrap();
    let err = d.open(&w.me(1, 0), keys, &list, &mut MemoryReplayGuard::default(), NOW).unwrap_err();
    assert!(matches!(err, EnvelopeError::Sender(CertError::RevokedDevice { .. })), "{err:?}");
    // Alice's list without device 1.
    let fewer: Vec<DeviceEntry> = entries.into_iter().filter(|e| e.device_id != w.users[0].devices[1].id).collect();
    let list = revoked.next(&w.users[0].identity, NOW, fewer).unwrap().verify(&w.expectation(0)).unwrap();
    let err = d.open(&w.me(1, 0), keys, &list, &mut MemoryReplayGuard::default(), NOW).unwrap_err();
    assert!(matches!(err, EnvelopeError::Sender(CertError::UnknownDevice { .. })), "{err:?}");
    // Another user's list.
    let err = d.open(&w.me(1, 0), keys, &w.verified_list(1), &mut MemoryReplayGuard::default(), NOW).unwrap_err();
    assert!(matches!(err, EnvelopeError::Sender(CertError::WrongUser { .. })), "{err:?}");
}

#[test]
fn forged_signature_from_a_listed_device_is_refused() {
    // Device 1 of Alice signs an envelope whose header claims device 0.
    let w = World::new(6, &[2, 1], false);
    let mut s = w.sender(0, 1);
    s.device_id = w.users[0].devices[0].id;
    let env = seal(&s, &w.meta(), &text("x"), &w.recipients(&[1]), &mut w.rng.clone()).unwrap();
    assert_eq!(open_as(&w, &env, 0, 1, 0).unwrap_err(), EnvelopeError::BadSignature);
}

#[test]
fn every_tampered_region_is_caught() {
    let w = World::new(7, &[1, 3], true);
    let env = seal(&w.sender(0, 0), &w.meta(), &text("tamper me"), &w.recipients(&[1]), &mut w.rng.clone()).unwrap();
    let wire = env.for_device(w.net, w.users[1].id, w.users[1].devices[1].id).unwrap().encode();
    for i in 0..wire.len() {
        for bit in [0x01u8, 0x80] {
            let mut bad = wire.clone();
            bad[i] ^= bit;
            let result = DeliveredEnvelope::decode(&bad).and_then(|d| {
                d.open(
                    &w.me(1, 1),
                    &w.users[1].devices[1].prekeys,
                    &w.verified_list(0),
                    &mut MemoryReplayGuard::default(),
                    NOW,
                )
            });
            assert!(result.is_err(), "flipping bit {bit:#x} of byte {i} was not detected");
        }
    }
    // Truncation at every length.
    for len in 0..wire.len() {
        assert!(DeliveredEnvelope::decode(&wire[..len]).is_err(), "truncated to {len}");
    }
    // Trailing bytes.
    let mut long = wire.clone();
    long.push(0);
    assert!(matches!(DeliveredEnvelope::decode(&long), Err(EnvelopeError::Decode(_))));
}

#[test]
fn versions_forms_and_networks() {
    let w = World::new(8, &[1, 1], false);
    let env = seal(&w.sender(0, 0), &w.meta(), &text("v"), &w.recipients(&[1]), &mut w.rng.clone()).unwrap();
    let wire = env.encode();
    for old in [0, 1] {
        let mut v = wire.clone();
        v[0] = old;
        assert_eq!(Envelope::decode(&v), Err(EnvelopeError::Version(VersionError::Downgrade(old))));
    }
    let mut v3 = wire.clone();
    v3[0] = 3;
    assert_eq!(Envelope::decode(&v3), Err(EnvelopeError::Version(VersionError::UnknownVersion(3))));
    let mut s2 = wire.clone();
    s2[2] = 2;
    assert_eq!(Envelope::decode(&s2), Err(EnvelopeError::Version(VersionError::UnsupportedSuite(2))));
    assert_eq!(DeliveredEnvelope::decode(&wire), Err(EnvelopeError::WrongForm));
    let delivered = env.for_device(w.net, w.users[1].id, w.users[1].devices[0].id).unwrap();
    assert_eq!(Envelope::decode(&delivered.encode()), Err(EnvelopeError::WrongForm));
    assert_eq!(Header::peek(&wire).unwrap(), *env.header());
    // The same user and device ids in another network are another device:
    // wraps name (network, user, device).
    let mut me = w.me(1, 0);
    me.network_id = NetworkId::from_bytes([9; 16]);
    let err = delivered
        .open(&me, &w.users[1].devices[0].prekeys, &w.verified_list(0), &mut MemoryReplayGuard::default(), NOW)
        .unwrap_err();
    assert_eq!(err, EnvelopeError::NotForThisDevice);
}

#[test]
fn seal_refuses_bad_recipient_sets() {
    let w = World::new(9, &[1, 1], false);
    let meta = w.meta();
    let s = w.sender(0, 0);
    assert_eq!(seal(&s, &meta, &text("x"), &[], &mut w.rng.clone()).unwrap_err(), SealError::NoRecipients);
    let mut r = w.recipients(&[1]);
    r.push(r[0].clone());
    assert!(matches!(seal(&s, &meta, &text("x"), &r, &mut w.rng.clone()), Err(SealError::DuplicateRecipient { .. })));
    let big = Content::Text("x".repeat(strongroom_crypto::content::MAX_TEXT + 1));
    assert!(matches!(seal(&s, &meta, &big, &w.recipients(&[1]), &mut w.rng.clone()), Err(SealError::Content(_))));
}

#[test]
fn stale_messages_are_refused() {
    let w = World::new(10, &[1, 1], false);
    let env = seal(&w.sender(0, 0), &w.meta(), &text("old"), &w.recipients(&[1]), &mut w.rng.clone()).unwrap();
    let err = env
        .open(
            &w.me(1, 0),
            &w.users[1].devices[0].prekeys,
            &w.verified_list(0),
            &mut MemoryReplayGuard::new(1000),
            NOW + 5000,
        )
        .unwrap_err();
    assert_eq!(err, EnvelopeError::Stale { age_ms: 5000 });
}

#[test]
fn errors_never_print_secrets() {
    let w = World::new(11, &[1], false);
    let k = &w.users[0].devices[0].key;
    let shown = format!("{k:?}");
    let seed_hex: String = k.expose_seed().expose().iter().map(|b| format!("{b:02x}")).collect();
    assert!(!shown.contains(&seed_hex));
    let secret = w.users[0].devices[0].prekeys.get(&MEDIUM).unwrap();
    let secret_hex: String = secret.expose_bytes().expose().iter().map(|b| format!("{b:02x}")).collect();
    assert!(!format!("{secret:?}").contains(&secret_hex));
    assert_eq!(format!("{:?}", Content::Text("top secret".into())), "Text(10 bytes)");
}

/// A hostile sender gives different recipients different message keys (the
/// first step of an "invisible salamanders" attack on AES-GCM, which is not
/// key-committing: the archive would read an innocent text while the
/// members read another). It signs the result with its own valid key. Every
/// recipient whose key is not the one the signed header commits to refuses,
/// before the ciphertext is even tried.
#[test]
fn recipients_given_different_keys_refuse() {
    use strongroom_crypto::keys::SecretBytes;
    let w = World::new(12, &[1, 1, 1], true);
    let meta = w.meta();
    let recipients = w.recipients(&[1, 2]);
    let ephemeral = [0x33u8; 32];
    let seal_k = |k: u8| {
        seal_with(
            &w.sender(0, 0),
            &meta,
            &text("the real instructions"),
            &recipients,
            SealRandomness { message_key: SecretBytes::new([k; 32]), ephemeral: SecretBytes::new(ephemeral) },
        )
        .unwrap()
    };
    let (k1, k2) = (seal_k(1), seal_k(2));
    // Same ephemeral key, message id, sender and recipients: the KEKs are
    // the same, so k2's wraps carry K2 under the KEKs k1's header implies.
    let wire1 = k1.encode();
    let wire2 = k2.encode();
    let n = k1.wraps().len();
    let wraps_at = wraps_offset(&wire1);
    let mut forged = wire1.clone();
    // Member user 1 keeps K1; user 2 and the archive get K2.
    let members = |i: usize| k1.wraps()[i].user_id == w.users[1].id;
    for i in 0..n {
        if !members(i) {
            let at = wraps_at + i * WRAP_LEN;
            forged[at..at + WRAP_LEN].copy_from_slice(&wire2[at..at + WRAP_LEN]);
        }
    }
    let forged = resign(&forged, n, &w.users[0].devices[0].key);
    let env = Envelope::decode(&forged).unwrap();
    // The signature is valid (the sender really signed it) and user 1 opens.
    assert_eq!(open_as(&w, &env, 0, 1, 0).unwrap().content, text("the real instructions"));
    assert_eq!(open_as(&w, &env, 0, 2, 0).unwrap_err(), EnvelopeError::KeyCommitment);
    let r = w.retention.as_ref().unwrap();
    let err = env
        .for_device(w.net, UserId::RETENTION, r.device.device_id)
        .unwrap()
        .open(&w.retention_me(), &r.keys, &w.verified_list(0), &mut MemoryReplayGuard::default(), NOW)
        .unwrap_err();
    assert_eq!(err, EnvelopeError::KeyCommitment);
}

/// Where the wraps start in a full-form envelope.
fn wraps_offset(wire: &[u8]) -> usize {
    let ct_len = u32::from_be_bytes(wire[HEADER_LEN + 1..HEADER_LEN + 5].try_into().unwrap()) as usize;
    HEADER_LEN + 5 + ct_len + 4
}

/// Re-signs a full-form envelope after its wraps were changed, exactly as
/// PROTOCOL.md §4.3 says a sender signs.
fn resign(wire: &[u8], n: usize, key: &strongroom_crypto::keys::SigningKey) -> Vec<u8> {
    use strongroom_crypto::merkle::{leaf_hash, Tree};
    let wraps_at = wraps_offset(wire);
    let ct = &wire[HEADER_LEN + 5..wraps_at - 4];
    let leaves = (0..n).map(|i| leaf_hash(&wire[wraps_at + i * WRAP_LEN..wraps_at + (i + 1) * WRAP_LEN])).collect();
    let root = Tree::new(leaves).unwrap().root();
    let mut signed = b"strongroom/v2/envelope\0".to_vec();
    signed.extend_from_slice(&wire[..HEADER_LEN]);
    signed.extend_from_slice(aws_lc_rs::digest::digest(&aws_lc_rs::digest::SHA256, ct).as_ref());
    signed.extend_from_slice(&(n as u32).to_be_bytes());
    signed.extend_from_slice(&root);
    let mut out = wire[..wire.len() - 64].to_vec();
    out.extend_from_slice(key.sign(&signed).as_bytes());
    out
}

#[test]
fn future_dated_messages_are_refused_and_replays_stay_refused() {
    let w = World::new(13, &[1, 1], false);
    let mut meta = w.meta();
    meta.timestamp = NOW + MAX_SKEW_MS + 1;
    let env = seal(&w.sender(0, 0), &meta, &text("from the future"), &w.recipients(&[1]), &mut w.rng.clone()).unwrap();
    let open_at = |guard: &mut MemoryReplayGuard, now: u64| {
        env.open(&w.me(1, 0), &w.users[1].devices[0].prekeys, &w.verified_list(0), guard, now)
    };
    let mut guard = MemoryReplayGuard::new(60_000);
    assert_eq!(open_at(&mut guard, NOW).unwrap_err(), EnvelopeError::FutureTimestamp { ahead_ms: MAX_SKEW_MS + 1 });
    // Within the skew it opens; the guard keeps the id until the message's
    // own timestamp leaves the window, and from then on it is stale: a
    // future-dated message can never be replayed after eviction.
    open_at(&mut guard, NOW + 1).unwrap();
    assert_eq!(open_at(&mut guard, NOW + 2).unwrap_err(), EnvelopeError::Replay(meta.message_id));
    for i in 0..3000u32 {
        let mut b = [0u8; 16];
        b[..4].copy_from_slice(&i.to_be_bytes());
        guard.record(MessageId::from_bytes(b), NOW + 1_000_000, NOW + 1_000_000);
    }
    let later = meta.timestamp + 60_001;
    assert!(matches!(open_at(&mut guard, later).unwrap_err(), EnvelopeError::Stale { .. }));
}

#[test]
fn a_device_is_never_sent_a_version_it_does_not_list() {
    let mut w = World::new(14, &[1, 1], false);
    // User 1 re-signs its list claiming only a future version 3.
    let u = &mut w.users[1];
    let mut entries = u.list.devices.clone();
    entries[0].versions = 1 << 3;
    u.list = u.list.next(&u.identity, NOW, entries).unwrap();
    let err = seal(&w.sender(0, 0), &w.meta(), &text("x"), &w.recipients(&[1]), &mut w.rng.clone()).unwrap_err();
    assert!(matches!(err, SealError::UnsupportedVersion { version: 2, .. }), "{err:?}");
}
