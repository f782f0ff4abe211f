//! Statements a retention device signs: its login to the relay, and the
//! checkpoints of its archive log.

use crate::codec::Writer;
use crate::ids::{DeviceId, NetworkId};
use crate::keys::{signing_input, Signature, SigningKey, VerifyingKey};
use crate::suite::label;

use super::CertError;

/// A retention device proving to the relay that it holds the signing key the
/// network policy names: `network 16 | device 16 | timestamp u64 | nonce 16`
/// under the label `strongroom/v2/retention-login`.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct RetentionLogin {
    /// The network.
    pub network_id: NetworkId,
    /// The retention device.
    pub device_id: DeviceId,
    /// When it was made (ms); the relay accepts a few minutes of skew.
    pub timestamp: u64,
    /// Random; the relay refuses a login it has seen.
    pub nonce: [u8; 16],
}

impl RetentionLogin {
    /// The bytes the signature covers: label, zero byte, statement.
    pub fn signed_bytes(&self) -> Vec<u8> {
        self.body()
    }

    fn body(&self) -> Vec<u8> {
        let mut w = Writer::with_capacity(56);
        w.raw(self.network_id.as_bytes()).raw(self.device_id.as_bytes()).u64(self.timestamp).raw(&self.nonce);
        signing_input(label::RETENTION_LOGIN, &w.finish())
    }

    /// Signs with the retention device's key.
    pub fn sign(&self, key: &SigningKey) -> Signature {
        key.sign(&self.body())
    }

    /// Checks the signature under the key the policy names.
    pub fn verify(&self, key: &VerifyingKey, signature: &Signature) -> Result<(), CertError> {
        key.verify(&self.body(), signature).map_err(|_| CertError::BadSignature { what: "retention login" })
    }
}

/// A signed statement of an archive log's size and Merkle root:
/// `network 16 | device 16 | tree size u64 | root 32 | timestamp u64` under
/// the label `strongroom/v2/archive-checkpoint`.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct ArchiveCheckpoint {
    /// The network.
    pub network_id: NetworkId,
    /// The retention device that keeps the archive.
    pub device_id: DeviceId,
    /// Number of leaves.
    pub tree_size: u64,
    /// RFC 6962 root over those leaves.
    pub root: [u8; 32],
    /// When it was signed (ms).
    pub timestamp: u64,
}

impl ArchiveCheckpoint {
    /// The bytes the signature covers: label, zero byte, statement.
    pub fn signed_bytes(&self) -> Vec<u8> {
        self.body()
    }

    fn body(&self) -> Vec<u8> {
        let mut w = Writer::with_capacity(104);
        w.raw(self.network_id.as_bytes())
            .raw(self.device_id.as_bytes())
            .u64(self.tree_size)
            .raw(&self.root)
            .u64(self.timestamp);
        signing_input(label::ARCHIVE_CHECKPOINT, &w.finish())
    }

    /// Signs with the retention device's key.
    pub fn sign(&self, key: &SigningKey) -> Signature {
        key.sign(&self.body())
    }

    /// Checks the signature.
    pub fn verify(&self, key: &VerifyingKey, signature: &Signature) -> Result<(), CertError> {
        key.verify(&self.body(), signature).map_err(|_| CertError::BadSignature { what: "archive checkpoint" })
    }
}

/// A signed archive segment: `network 16 | device 16 | first index u64 |
/// SHA-256 of the segment's entries 32` under the label
/// `strongroom/v2/archive-segment`. Only the retention device can add a
/// segment: a holder of the archive key alone (a reader) can seal records
/// but not sign them.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct ArchiveSegment {
    /// The network.
    pub network_id: NetworkId,
    /// The retention device that keeps the archive.
    pub device_id: DeviceId,
    /// The segment's first leaf index.
    pub first: u64,
    /// SHA-256 of its entries as stored (before the signature).
    pub digest: [u8; 32],
}

impl ArchiveSegment {
    fn body(&self) -> Vec<u8> {
        let mut w = Writer::with_capacity(72);
        w.raw(self.network_id.as_bytes()).raw(self.device_id.as_bytes()).u64(self.first).raw(&self.digest);
        signing_input(label::ARCHIVE_SEGMENT, &w.finish())
    }

    /// Signs with the retention device's key.
    pub fn sign(&self, key: &SigningKey) -> Signature {
        key.sign(&self.body())
    }

    /// Checks the signature.
    pub fn verify(&self, key: &VerifyingKey, signature: &Signature) -> Result<(), CertError> {
        key.verify(&self.body(), signature).map_err(|_| CertError::BadSignature { what: "archive segment" })
    }
}

/// A signed export manifest: `network 16 | device 16 | SHA-256 of
/// manifest.json 32` under the label `strongroom/v2/export-manifest`.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct ExportManifest {
    /// The network.
    pub network_id: NetworkId,
    /// The retention device whose archive was exported.
    pub device_id: DeviceId,
    /// SHA-256 of `manifest.json` as written.
    pub digest: [u8; 32],
}

impl ExportManifest {
    fn body(&self) -> Vec<u8> {
        let mut w = Writer::with_capacity(64);
        w.raw(self.network_id.as_bytes()).raw(self.device_id.as_bytes()).raw(&self.digest);
        signing_input(label::EXPORT_MANIFEST, &w.finish())
    }

    /// Signs with the retention device's key.
    pub fn sign(&self, key: &SigningKey) -> Signature {
        key.sign(&self.body())
    }

    /// Checks the signature.
    pub fn verify(&self, key: &VerifyingKey, signature: &Signature) -> Result<(), CertError> {
        key.verify(&self.body(), signature).map_err(|_| CertError::BadSignature { what: "export manifest" })
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use rand_core::OsRng;

    #[test]
    fn login_and_checkpoint_signatures_bind_every_field() {
        let key = SigningKey::generate(&mut OsRng);
        let other = SigningKey::generate(&mut OsRng);
        let login = RetentionLogin {
            network_id: NetworkId::from_bytes([1; 16]),
            device_id: DeviceId::from_bytes([2; 16]),
            timestamp: 5,
            nonce: [3; 16],
        };
        let sig = login.sign(&key);
        assert!(login.verify(&key.verifying_key(), &sig).is_ok());
        assert!(login.verify(&other.verifying_key(), &sig).is_err());
        assert!(RetentionLogin { timestamp: 6, ..login }.verify(&key.verifying_key(), &sig).is_err());
        assert!(RetentionLogin { nonce: [4; 16], ..login }.verify(&key.verifying_key(), &sig).is_err());

        let cp = ArchiveCheckpoint {
            network_id: login.network_id,
            device_id: login.device_id,
            tree_size: 10,
            root: [9; 32],
            timestamp: 7,
        };
        let sig = cp.sign(&key);
        assert!(cp.verify(&key.verifying_key(), &sig).is_ok());
        assert!(ArchiveCheckpoint { tree_size: 11, ..cp }.verify(&key.verifying_key(), &sig).is_err());
        assert!(ArchiveCheckpoint { root: [8; 32], ..cp }.verify(&key.verifying_key(), &sig).is_err());
        // A login signature never verifies as a checkpoint (distinct labels).
        assert!(cp.verify(&key.verifying_key(), &login.sign(&key)).is_err());
    }
}
