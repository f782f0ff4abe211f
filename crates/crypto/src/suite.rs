//! Protocol version, cipher suites and the domain-separation labels.

use thiserror::Error;

/// The format version this crate writes (PROTOCOL.md §1.1).
pub const PROTOCOL_VERSION: u8 = 2;

/// The oldest version this crate accepts. Version 1 (no key commitment, no
/// network scoping) and version 0 (the seed's unsigned format) are refused as
/// downgrades.
pub const MIN_PROTOCOL_VERSION: u8 = 2;

/// The versions this crate can open, as a device advertises them in its
/// signed device list: bit v set = version v supported.
pub const SUPPORTED_VERSIONS: u32 = 1 << PROTOCOL_VERSION;

/// A cipher suite: the set of primitives an object was made with.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
#[non_exhaustive]
pub enum Suite {
    /// X25519, Ed25519, HKDF-SHA256, AES-256-GCM.
    Curve25519Aes256Gcm,
}

impl Suite {
    /// The suite number on the wire.
    pub const fn id(self) -> u16 {
        match self {
            Suite::Curve25519Aes256Gcm => 1,
        }
    }

    /// Suite 2 is reserved for P-384/ECDSA/HKDF-SHA384/AES-256-GCM (FIPS).
    pub fn from_id(id: u16) -> Result<Self, VersionError> {
        match id {
            1 => Ok(Suite::Curve25519Aes256Gcm),
            other => Err(VersionError::UnsupportedSuite(other)),
        }
    }
}

/// Why a version or suite number was refused.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Error)]
#[non_exhaustive]
pub enum VersionError {
    /// A version newer than this software understands: upgrade the client.
    #[error("protocol version {0} is newer than this software supports; upgrade Strongroom")]
    UnknownVersion(u8),
    /// A version older than the minimum: a downgrade attempt or a legacy peer.
    #[error("protocol version {0} is below the minimum accepted version {MIN_PROTOCOL_VERSION} (downgrade refused)")]
    Downgrade(u8),
    /// A suite this software does not implement.
    #[error("cipher suite {0} is not supported")]
    UnsupportedSuite(u16),
}

/// Checks a version byte read from the wire.
pub fn check_version(v: u8) -> Result<(), VersionError> {
    if v < MIN_PROTOCOL_VERSION {
        Err(VersionError::Downgrade(v))
    } else if v > PROTOCOL_VERSION {
        Err(VersionError::UnknownVersion(v))
    } else {
        Ok(())
    }
}

/// Domain-separation labels. Each is followed by a zero byte wherever it is
/// used, and no label is a prefix of another.
pub(crate) mod label {
    pub const PREKEY: &[u8] = b"strongroom/v2/prekey";
    pub const DEVICE_LIST: &[u8] = b"strongroom/v2/device-list";
    pub const MEMBERSHIP: &[u8] = b"strongroom/v2/membership";
    pub const CONVERSATION_ID: &[u8] = b"strongroom/v2/conversation-id";
    pub const NETWORK_POLICY: &[u8] = b"strongroom/v2/network-policy";
    pub const ENVELOPE: &[u8] = b"strongroom/v2/envelope";
    pub const KEY_COMMITMENT: &[u8] = b"strongroom/v2/key-commitment";
    pub const KEK: &[u8] = b"strongroom/v2/kek";
    pub const ATTACHMENT: &[u8] = b"strongroom/v2/attachment";
    pub const NETWORK_FINGERPRINT: &[u8] = b"strongroom/v2/network-fingerprint";
    pub const SAFETY_NUMBER: &[u8] = b"strongroom/v2/safety-number";
    pub const LINK_CODE: &[u8] = b"strongroom/v2/link-code";
    pub const LINK: &[u8] = b"strongroom/v2/link-transfer";
    pub const RETENTION_LOGIN: &[u8] = b"strongroom/v2/retention-login";
    pub const ARCHIVE_CHECKPOINT: &[u8] = b"strongroom/v2/archive-checkpoint";
    pub const ARCHIVE_SEGMENT: &[u8] = b"strongroom/v2/archive-segment";
    pub const EXPORT_MANIFEST: &[u8] = b"strongroom/v2/export-manifest";
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn versions() {
        assert_eq!(check_version(2), Ok(()));
        assert_eq!(check_version(1), Err(VersionError::Downgrade(1)));
        assert_eq!(check_version(0), Err(VersionError::Downgrade(0)));
        assert_eq!(check_version(3), Err(VersionError::UnknownVersion(3)));
        assert_eq!(Suite::from_id(1), Ok(Suite::Curve25519Aes256Gcm));
        assert_eq!(Suite::from_id(2), Err(VersionError::UnsupportedSuite(2)));
    }
}
