use subtle::ConstantTimeEq;

use crate::keys::VerifyingKey;
use crate::primitives::sha256;
use crate::suite::label;

/// The fingerprint of a network key, carried in invites so a client can pin
/// the right key even though it fetches the key itself from the server.
///
/// `SHA-256("strongroom/v2/network-fingerprint" || 0x00 || public key)`.
#[derive(Clone, Copy)]
pub struct NetworkFingerprint([u8; 32]);

impl NetworkFingerprint {
    /// Fingerprint of `key`.
    pub fn of(key: &VerifyingKey) -> Self {
        Self(sha256(&[label::NETWORK_FINGERPRINT, &[0], key.as_bytes()]))
    }

    /// Parses the 64-hex-digit form (spaces allowed between groups).
    pub fn parse(s: &str) -> Option<Self> {
        let compact: String = s.chars().filter(|c| !c.is_whitespace()).collect();
        crate::hex::decode_array(&compact).map(Self)
    }

    /// Whether `key` has this fingerprint (constant time).
    pub fn matches(&self, key: &VerifyingKey) -> bool {
        bool::from(Self::of(key).0.ct_eq(&self.0))
    }

    /// The raw 32 bytes.
    pub fn as_bytes(&self) -> &[u8; 32] {
        &self.0
    }
}

impl PartialEq for NetworkFingerprint {
    fn eq(&self, other: &Self) -> bool {
        bool::from(self.0.ct_eq(&other.0))
    }
}

impl Eq for NetworkFingerprint {}

impl std::fmt::Display for NetworkFingerprint {
    /// Sixteen groups of four hex digits.
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        let hex = crate::hex::encode(&self.0);
        for (i, group) in hex.as_bytes().chunks(4).enumerate() {
            if i > 0 {
                f.write_str(" ")?;
            }
            f.write_str(std::str::from_utf8(group).map_err(|_| std::fmt::Error)?)?;
        }
        Ok(())
    }
}

impl std::fmt::Debug for NetworkFingerprint {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "NetworkFingerprint({self})")
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn display_parse_and_match() {
        let key = crate::keys::SigningKey::from_seed(crate::keys::SecretBytes::new([3u8; 32])).unwrap().verifying_key();
        let fp = NetworkFingerprint::of(&key);
        let shown = fp.to_string();
        assert_eq!(shown.len(), 64 + 15);
        assert_eq!(NetworkFingerprint::parse(&shown), Some(fp));
        assert!(fp.matches(&key));
        let other =
            crate::keys::SigningKey::from_seed(crate::keys::SecretBytes::new([4u8; 32])).unwrap().verifying_key();
        assert!(!fp.matches(&other));
        assert_eq!(NetworkFingerprint::parse("abcd"), None);
    }
}
