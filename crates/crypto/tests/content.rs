//! Content types: round trips, unknown types surfaced, limits enforced.
#![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic, clippy::indexing_slicing)]

use strongroom_crypto::content::*;
use strongroom_crypto::ids::*;
use strongroom_crypto::keys::SecretBytes;

pub fn samples() -> Vec<Content> {
    let m = MessageId::from_bytes([1; 16]);
    let u = UserId::from_bytes([2; 16]);
    vec![
        Content::Text("héllo 👋".into()),
        Content::Text(String::new()),
        Content::Reply { in_reply_to: m, text: "yes".into() },
        Content::Edit { target: m, text: "fixed typo".into() },
        Content::Recall { target: m },
        Content::Reaction { target: m, emoji: "👍".into(), remove: false },
        Content::Reaction { target: m, emoji: "👍".into(), remove: true },
        Content::Receipt { kind: ReceiptKind::Read, at: 5, message_ids: vec![m, MessageId::from_bytes([9; 16])] },
        Content::Receipt { kind: ReceiptKind::Delivered, at: 6, message_ids: vec![] },
        Content::File(FileRef {
            blob_id: BlobId::from_bytes([3; 16]),
            file_key: SecretBytes::new([4; 32]),
            ciphertext_sha256: [5; 32],
            size: 1 << 33,
            media_type: "application/pdf".into(),
            name: "Q3 report.pdf".into(),
        }),
        Content::Location(Location { latitude: 51.5, longitude: -0.12, accuracy_m: 12.5, live_until: None }),
        Content::Location(Location { latitude: -90.0, longitude: 180.0, accuracy_m: 0.0, live_until: Some(99) }),
        Content::Control(Control::MembersAdded(vec![u])),
        Content::Control(Control::MembersRemoved(vec![u, UserId::from_bytes([7; 16])])),
        Content::Control(Control::Left),
        Content::Control(Control::ModeratorsAdded(vec![u])),
        Content::Control(Control::ModeratorsRemoved(vec![u])),
        Content::Control(Control::Renamed("Deal room".into())),
        Content::Control(Control::DefaultTimers { ttl_secs: 3600, burn_on_read_secs: 30 }),
        Content::Control(Control::IdentityVerified { user: u, safety_number: "12345 67890 ".repeat(5) }),
        Content::Control(Control::Unknown { action: 200, body: vec![1, 2] }),
        Content::Forwarded { origin: origin(), content: Box::new(Content::Text("as forwarded".into())) },
        Content::Forwarded {
            origin: origin(),
            content: Box::new(Content::Location(Location {
                latitude: 1.0,
                longitude: 2.0,
                accuracy_m: 3.0,
                live_until: None,
            })),
        },
        Content::Unknown { type_id: 0x7fff, body: vec![9, 9, 9] },
    ]
}

fn origin() -> ForwardOrigin {
    ForwardOrigin {
        conversation: ConversationId::from_bytes([3; 16]),
        message: MessageId::from_bytes([4; 16]),
        sender: UserId::from_bytes([5; 16]),
        sent_at: 1_700_000_000_000,
    }
}

#[test]
fn every_type_round_trips() {
    for c in samples() {
        let bytes = c.encode().unwrap();
        assert_eq!(Content::decode(&bytes).unwrap(), c, "{c:?}");
    }
}

#[test]
fn unknown_types_are_surfaced_with_their_bytes() {
    let bytes = [1, 0x12, 0x34, 0, 0, 0, 2, 0xaa, 0xbb];
    assert_eq!(Content::decode(&bytes).unwrap(), Content::Unknown { type_id: 0x1234, body: vec![0xaa, 0xbb] });
}

#[test]
fn bad_content_is_refused() {
    assert_eq!(Content::decode(&[2, 0, 1, 0, 0, 0, 0]), Err(ContentError::UnsupportedVersion(2)));
    let m = MessageId::from_bytes([1; 16]);
    for bad in [
        Content::Location(Location { latitude: 91.0, longitude: 0.0, accuracy_m: 1.0, live_until: None }),
        Content::Location(Location { latitude: f64::NAN, longitude: 0.0, accuracy_m: 1.0, live_until: None }),
        Content::Location(Location { latitude: 0.0, longitude: 181.0, accuracy_m: 1.0, live_until: None }),
        Content::Location(Location { latitude: 0.0, longitude: 0.0, accuracy_m: -1.0, live_until: None }),
        Content::Reaction { target: m, emoji: String::new(), remove: false },
        Content::Reaction { target: m, emoji: "x".repeat(65), remove: false },
        Content::Text("x".repeat(MAX_TEXT + 1)),
        Content::Control(Control::MembersAdded(vec![])),
        Content::Control(Control::Unknown { action: 3, body: vec![] }),
        Content::Control(Control::Unknown { action: 8, body: vec![] }),
        Content::Control(Control::IdentityVerified { user: UserId::from_bytes([1; 16]), safety_number: String::new() }),
        Content::Control(Control::IdentityVerified {
            user: UserId::from_bytes([1; 16]),
            safety_number: "1".repeat(129),
        }),
        Content::Control(Control::IdentityVerified { user: UserId::from_bytes([1; 16]), safety_number: "12ab".into() }),
        Content::Receipt { kind: ReceiptKind::Read, at: 0, message_ids: vec![m; MAX_RECEIPT_IDS + 1] },
        // Only text, files and locations are forwarded, and never a forward.
        Content::Forwarded { origin: origin(), content: Box::new(Content::Recall { target: m }) },
        Content::Forwarded {
            origin: origin(),
            content: Box::new(Content::Forwarded { origin: origin(), content: Box::new(Content::Text("x".into())) }),
        },
        Content::Forwarded { origin: origin(), content: Box::new(Content::Text("x".repeat(MAX_TEXT + 1))) },
    ] {
        assert!(bad.encode().is_err(), "{bad:?} encoded");
    }
    // A forward nested in a forward, built by hand: refused.
    let inner = Content::Forwarded { origin: origin(), content: Box::new(Content::Text("x".into())) }.encode().unwrap();
    let mut body = Vec::new();
    body.extend_from_slice(&[3; 16]);
    body.extend_from_slice(&[4; 16]);
    body.extend_from_slice(&[5; 16]);
    body.extend_from_slice(&1u64.to_be_bytes());
    body.extend_from_slice(&(inner.len() as u32).to_be_bytes());
    body.extend_from_slice(&inner);
    let mut nested = vec![1, 0, 10];
    nested.extend_from_slice(&(body.len() as u32).to_be_bytes());
    nested.extend_from_slice(&body);
    assert!(matches!(Content::decode(&nested), Err(ContentError::Invalid(_))), "{:?}", Content::decode(&nested));
    // Invalid UTF-8 text, a bad receipt kind, trailing bytes, truncation.
    assert!(Content::decode(&[1, 0, 1, 0, 0, 0, 5, 0, 0, 0, 1, 0xff]).is_err());
    assert!(Content::decode(&[1, 0, 6, 0, 0, 0, 11, 9, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0]).is_err());
    let mut t = Content::Text("a".into()).encode().unwrap();
    t.push(0);
    assert!(Content::decode(&t).is_err());
    for s in samples() {
        let b = s.encode().unwrap();
        for len in 0..b.len() {
            assert!(Content::decode(&b[..len]).is_err(), "{s:?} truncated to {len}");
        }
    }
}

#[test]
fn debug_hides_user_content() {
    for c in samples() {
        let shown = format!("{c:?}");
        for secret in ["héllo", "fixed typo", "Q3 report", "51.5", "Deal room"] {
            assert!(!shown.contains(secret), "{shown}");
        }
    }
}
