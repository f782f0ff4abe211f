//! Property tests: round trips, canonical encodings, tamper-anywhere, and
//! decoders that never panic on arbitrary input.
#![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic, clippy::indexing_slicing)]

mod common;

use std::sync::OnceLock;

use common::*;
use proptest::prelude::*;
use strongroom_crypto::attachment;
use strongroom_crypto::content::*;
use strongroom_crypto::envelope::*;
use strongroom_crypto::fuzz_checks;
use strongroom_crypto::ids::*;
use strongroom_crypto::keys::SecretBytes;

fn id16() -> impl Strategy<Value = [u8; 16]> {
    any::<[u8; 16]>()
}

fn content() -> impl Strategy<Value = Content> {
    let text = ".{0,200}";
    prop_oneof![
        text.prop_map(Content::Text),
        (id16(), text).prop_map(|(m, t)| Content::Reply { in_reply_to: MessageId::from_bytes(m), text: t }),
        (id16(), text).prop_map(|(m, t)| Content::Edit { target: MessageId::from_bytes(m), text: t }),
        id16().prop_map(|m| Content::Recall { target: MessageId::from_bytes(m) }),
        (id16(), ".{1,8}", any::<bool>()).prop_map(|(m, e, r)| Content::Reaction {
            target: MessageId::from_bytes(m),
            emoji: e,
            remove: r
        }),
        (any::<bool>(), any::<u64>(), prop::collection::vec(id16(), 0..20)).prop_map(|(read, at, ids)| {
            Content::Receipt {
                kind: if read { ReceiptKind::Read } else { ReceiptKind::Delivered },
                at,
                message_ids: ids.into_iter().map(MessageId::from_bytes).collect(),
            }
        }),
        (id16(), any::<[u8; 32]>(), any::<[u8; 32]>(), any::<u64>(), "[a-z]{1,10}/[a-z]{1,10}", ".{0,40}").prop_map(
            |(b, k, h, size, media_type, name)| Content::File(FileRef {
                blob_id: BlobId::from_bytes(b),
                file_key: SecretBytes::new(k),
                ciphertext_sha256: h,
                size,
                media_type,
                name
            })
        ),
        (-90.0f64..=90.0, -180.0f64..=180.0, 0.0f32..1e6, prop::option::of(1u64..)).prop_map(|(la, lo, acc, live)| {
            Content::Location(Location { latitude: la, longitude: lo, accuracy_m: acc, live_until: live })
        }),
        prop::collection::vec(id16(), 1..10)
            .prop_map(|u| Content::Control(Control::MembersAdded(u.into_iter().map(UserId::from_bytes).collect()))),
        ".{0,50}".prop_map(|n| Content::Control(Control::Renamed(n))),
        (10u16.., prop::collection::vec(any::<u8>(), 0..100))
            .prop_map(|(t, b)| Content::Unknown { type_id: t, body: b }),
    ]
}

/// One group envelope (3 recipients + retention), built once.
fn fixture() -> &'static (World, Vec<u8>, Vec<u8>) {
    static F: OnceLock<(World, Vec<u8>, Vec<u8>)> = OnceLock::new();
    F.get_or_init(|| {
        let w = World::new(77, &[1, 2, 1], true);
        let env =
            seal(&w.sender(0, 0), &w.meta(), &Content::Text("prop".into()), &w.recipients(&[1, 2]), &mut w.rng.clone())
                .unwrap();
        let full = env.encode();
        let delivered = env.for_device(w.net, w.users[1].id, w.users[1].devices[1].id).unwrap().encode();
        (w, full, delivered)
    })
}

fn open_full(w: &World, bytes: &[u8]) -> Result<Opened, EnvelopeError> {
    Envelope::decode(bytes)?.open(
        &w.me(1, 1),
        &w.users[1].devices[1].prekeys,
        &w.verified_list(0),
        &mut MemoryReplayGuard::default(),
        NOW,
    )
}

proptest! {
    #![proptest_config(ProptestConfig { cases: 256, .. ProptestConfig::default() })]

    #[test]
    fn content_round_trips(c in content()) {
        let bytes = c.encode().unwrap();
        prop_assert_eq!(Content::decode(&bytes).unwrap(), c);
    }

    #[test]
    fn sealed_content_round_trips(c in content()) {
        let w = &fixture().0;
        let env = seal(&w.sender(0, 0), &w.meta(), &c, &w.recipients(&[1]), &mut w.rng.clone()).unwrap();
        let opened = env.open(&w.me(1, 0), &w.users[1].devices[0].prekeys, &w.verified_list(0), &mut MemoryReplayGuard::default(), NOW).unwrap();
        prop_assert_eq!(opened.content, c);
    }

    #[test]
    fn tampering_anywhere_in_a_full_envelope_is_an_error(pos in any::<prop::sample::Index>(), xor in 1u8..) {
        let (w, full, _) = fixture();
        let mut bad = full.clone();
        let i = pos.index(bad.len());
        bad[i] ^= xor;
        prop_assert!(open_full(w, &bad).is_err(), "byte {} xor {:#x} accepted", i, xor);
    }

    #[test]
    fn tampering_several_bytes_of_a_delivery_is_an_error(edits in prop::collection::vec((any::<prop::sample::Index>(), 1u8..), 1..5)) {
        let (w, _, delivered) = fixture();
        let mut bad = delivered.clone();
        for (pos, xor) in edits {
            let i = pos.index(bad.len());
            bad[i] ^= xor;
        }
        if bad != *delivered {
            let r = DeliveredEnvelope::decode(&bad).and_then(|d| {
                d.open(&w.me(1, 1), &w.users[1].devices[1].prekeys, &w.verified_list(0), &mut MemoryReplayGuard::default(), NOW)
            });
            prop_assert!(r.is_err());
        }
    }

    #[test]
    fn decoders_never_panic(data in prop::collection::vec(any::<u8>(), 0..600)) {
        fuzz_checks::envelope(&data);
        fuzz_checks::policy(&data);
        fuzz_checks::device_list(&data);
        fuzz_checks::prekey(&data);
        fuzz_checks::content(&data);
        fuzz_checks::attachment_stream(&data);
    }

    #[test]
    fn decoders_never_panic_on_near_valid_input(pos in any::<prop::sample::Index>(), val in any::<u8>(), cut in any::<prop::sample::Index>()) {
        let (_, full, delivered) = fixture();
        for base in [full, delivered] {
            let mut d = base.clone();
            let i = pos.index(d.len());
            d[i] = val;
            d.truncate(cut.index(d.len() + 1));
            fuzz_checks::envelope(&d);
        }
    }

    #[test]
    fn attachments_round_trip_and_detect_flips(len in 0usize..5000, flip in any::<prop::sample::Index>(), xor in 1u8..) {
        let key = SecretBytes::new([3u8; 32]);
        let plain: Vec<u8> = (0..len).map(|i| (i % 253) as u8).collect();
        let mut blob = Vec::new();
        attachment::encrypt(&key, [9; 16], 1024, &plain[..], &mut blob).unwrap();
        let mut back = Vec::new();
        attachment::decrypt(&key, &blob[..], &mut back).unwrap();
        prop_assert_eq!(&back, &plain);
        let i = flip.index(blob.len());
        blob[i] ^= xor;
        prop_assert!(attachment::decrypt(&key, &blob[..], std::io::sink()).is_err());
    }
}
