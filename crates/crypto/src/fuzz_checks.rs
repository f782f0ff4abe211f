//! Checks shared by the cargo-fuzz targets (`fuzz/`) and the corpus replay
//! test: decoding arbitrary bytes must not panic, and anything that decodes
//! must re-encode to exactly the same bytes (the encoding is canonical, which
//! signatures over encodings rely on). A mismatch is a bug, so these assert.
#![doc(hidden)]

use crate::attachment;
use crate::certs::{DeviceList, MembershipStatement, NetworkPolicy, SignedPreKey};
use crate::content::Content;
use crate::envelope::{DeliveredEnvelope, Envelope};
use crate::keys::SecretBytes;

/// Full and delivered envelopes.
pub fn envelope(data: &[u8]) {
    if let Ok(e) = Envelope::decode(data) {
        assert_eq!(e.encode(), data, "full envelope does not re-encode canonically");
        for d in e.deliveries() {
            let wire = d.encode();
            assert_eq!(DeliveredEnvelope::decode(&wire).ok().as_ref(), Some(&d), "delivery does not round-trip");
        }
    }
    if let Ok(d) = DeliveredEnvelope::decode(data) {
        assert_eq!(d.encode(), data, "delivered envelope does not re-encode canonically");
    }
}

/// Network policy documents.
pub fn policy(data: &[u8]) {
    if let Ok(p) = NetworkPolicy::decode(data) {
        assert_eq!(p.encode(), data, "policy does not re-encode canonically");
    }
}

/// Device lists.
pub fn device_list(data: &[u8]) {
    if let Ok(l) = DeviceList::decode(data) {
        assert_eq!(l.encode(), data, "device list does not re-encode canonically");
    }
}

/// Membership statements.
pub fn membership(data: &[u8]) {
    if let Ok(s) = MembershipStatement::decode(data) {
        assert_eq!(s.encode(), data, "membership statement does not re-encode canonically");
    }
}

/// Signed pre-keys.
pub fn prekey(data: &[u8]) {
    if let Ok(k) = SignedPreKey::decode(data) {
        assert_eq!(k.encode(), data, "pre-key does not re-encode canonically");
    }
}

/// Message content.
pub fn content(data: &[u8]) {
    if let Ok(c) = Content::decode(data) {
        assert_eq!(c.encode().ok().as_deref(), Some(data), "content does not re-encode canonically");
    }
}

/// Attachment streams, under a fixed key: arbitrary bytes must be refused
/// with an error (they cannot authenticate), never a panic.
pub fn attachment_stream(data: &[u8]) {
    let key = SecretBytes::new([0x11; 32]);
    let _ = attachment::decrypt(&key, data, std::io::sink());
}

/// Sealed link transfers (device linking): arbitrary bytes under a fixed link
/// key are refused with an error, never a panic.
pub fn link(data: &[u8]) {
    use crate::ids::{DeviceId, NetworkId, UserId};
    use crate::keys::AgreementSecret;
    use crate::link::{open_transfer, LinkCode, LinkTarget};
    let target = LinkTarget {
        network_id: NetworkId::from_bytes([1; 16]),
        user_id: UserId::from_bytes([2; 16]),
        device_id: DeviceId::from_bytes([3; 16]),
    };
    let keys = (
        AgreementSecret::from_bytes(SecretBytes::new([0x22; 32])),
        crate::keys::SigningKey::from_seed(SecretBytes::new([0x44; 32])),
    );
    if let (Ok(secret), Ok(signing)) = keys {
        let code = LinkCode::with_secret([0x33; 10], &target, &signing.verifying_key(), &secret.public());
        let _ = open_transfer(data, &target, &secret, &code);
    }
}
