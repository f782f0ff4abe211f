//! Signed statements that make up the trust chain:
//!
//! ```text
//! network key ──signs──▶ network policy ──names──▶ retention devices
//! identity key ──signs──▶ device list ──names──▶ device signing keys
//! device key ──signs──▶ pre-keys (medium-term and one-time)
//! device key ──signs──▶ membership statements ──fold to──▶ a conversation's members
//! ```
//!
//! Each statement has a structural `decode` (never panics) and a `verify`
//! that checks it against what the caller already trusts and returns a
//! `Verified…` type. Only verified types can be turned into recipients.

mod device_list;
mod fingerprint;
mod membership;
mod policy;
mod prekey;
mod retention;

pub use device_list::{DeviceEntry, DeviceList, DeviceListExpectation, VerifiedDevice, VerifiedDeviceList};
pub use fingerprint::NetworkFingerprint;
pub use membership::{ConversationKind, MembershipAction, MembershipState, MembershipStatement, MAX_STATEMENT_USERS};
pub use policy::{
    partner_features, FederationPartner, NetworkPolicy, PolicyEntries, PolicyTracker, RetentionDevice, RetentionState,
    VerifiedPolicy, MAX_PARTNERS, MAX_RETENTION_DEVICES, MAX_RETENTION_NAME,
};
pub use prekey::{PreKeyKind, PreKeyRef, SignedPreKey, VerifiedPreKey};
pub use retention::{ArchiveCheckpoint, ArchiveSegment, ExportManifest, RetentionLogin};

use thiserror::Error;

use crate::codec::DecodeError;
use crate::ids::{DeviceId, NetworkId, UserId};
use crate::keys::{AgreementPublic, KeyError, VerifyingKey};
use crate::suite::VersionError;

/// Why a certificate, device list or policy was refused.
#[derive(Debug, Clone, PartialEq, Eq, Error)]
#[non_exhaustive]
pub enum CertError {
    /// The bytes are not a well-formed statement.
    #[error("malformed {what}: {source}")]
    Decode {
        /// Which statement.
        what: &'static str,
        /// The decoding failure.
        source: DecodeError,
    },
    /// Unknown version or suite.
    #[error("{0}")]
    Version(#[from] VersionError),
    /// The signature does not verify under the expected key.
    #[error("{what} signature does not verify: it was altered or signed by another key")]
    BadSignature {
        /// Which statement.
        what: &'static str,
    },
    /// A pre-key past its expiry.
    #[error("{what} expired at {expired_at} ms (now {now} ms); fetch fresh keys")]
    Expired {
        /// Which statement.
        what: &'static str,
        /// Expiry time (ms since the Unix epoch).
        expired_at: u64,
        /// The caller's clock.
        now: u64,
    },
    /// A policy older than one already seen: the server is replaying an old one.
    #[error("network policy version {got} is older than version {seen} already seen (rollback refused)")]
    PolicyRollback {
        /// Highest version seen.
        seen: u64,
        /// Version offered.
        got: u64,
    },
    /// Two different policies with the same version: the server is forking views.
    #[error("two different network policies both claim version {version} (equivocation)")]
    PolicyConflict {
        /// The contested version.
        version: u64,
    },
    /// A device list older than one already seen.
    #[error("device list version {got} is older than version {seen} already seen (rollback refused)")]
    DeviceListRollback {
        /// Highest version seen.
        seen: u64,
        /// Version offered.
        got: u64,
    },
    /// Two different device lists both claim the same version: the server
    /// is showing different views.
    #[error("two different device lists both claim version {version} (equivocation)")]
    DeviceListConflict {
        /// The contested version.
        version: u64,
    },
    /// The list names a previous list other than the one already seen: the
    /// relay is showing a fork of the user's list chain.
    #[error("device list version {version} does not follow the list already seen (fork in the list chain)")]
    DeviceListFork {
        /// The list offered.
        version: u64,
    },
    /// The list skips versions past the one already seen: only the lists in
    /// between can show it follows (a list at a huge version never can).
    #[error("device list version {got} does not follow version {seen} already seen; lists cannot skip versions (fetch the lists between)")]
    DeviceListGap {
        /// Highest version seen.
        seen: u64,
        /// Version offered.
        got: u64,
    },
    /// A list brings back (or drops) a device an earlier list revoked.
    #[error("device {device} of user {user} was revoked and cannot return")]
    DeviceRevived {
        /// The user.
        user: UserId,
        /// The device.
        device: DeviceId,
    },
    /// A membership statement that does not follow the last one applied.
    #[error("membership statement {got} does not follow: statement {expected} was expected next")]
    MembershipGap {
        /// The sequence number expected.
        expected: u64,
        /// The one offered.
        got: u64,
    },
    /// A membership statement chained to another statement than the one
    /// applied: the relay is showing a fork of the conversation's history.
    #[error("membership statement {sequence} follows another history than the one seen (fork)")]
    MembershipFork {
        /// The statement offered.
        sequence: u64,
    },
    /// A membership change its author may not make.
    #[error("membership change refused: {0}")]
    MembershipRefused(&'static str),
    /// The statement belongs to another network.
    #[error("statement is for network {got}, expected {expected}")]
    WrongNetwork {
        /// Network the caller is in.
        expected: NetworkId,
        /// Network named in the statement.
        got: NetworkId,
    },
    /// The statement names another user.
    #[error("statement is for user {got}, expected {expected}")]
    WrongUser {
        /// User asked for.
        expected: UserId,
        /// User named in the statement.
        got: UserId,
    },
    /// The statement names another device.
    #[error("statement is for device {got}, expected {expected}")]
    WrongDevice {
        /// Device asked for.
        expected: DeviceId,
        /// Device named in the statement.
        got: DeviceId,
    },
    /// The device list is signed by an identity key other than the pinned one.
    #[error("identity key of user {user} changed; verify their safety number before trusting it")]
    IdentityChanged {
        /// Whose identity changed.
        user: UserId,
    },
    /// The device is not in the user's signed device list.
    #[error("device {device} is not in the signed device list of user {user}")]
    UnknownDevice {
        /// The user.
        user: UserId,
        /// The device.
        device: DeviceId,
    },
    /// The device was revoked by its user.
    #[error("device {device} of user {user} has been revoked")]
    RevokedDevice {
        /// The user.
        user: UserId,
        /// The device.
        device: DeviceId,
    },
    /// The same device id appears twice.
    #[error("device {0} is listed twice")]
    DuplicateDevice(DeviceId),
    /// A field is out of its allowed range (too many devices, name too long…).
    #[error("{0}")]
    Invalid(&'static str),
    /// A public key in the statement is small-order or non-canonical.
    #[error("{0}")]
    Key(KeyError),
    /// A policy entry of a type this software does not know. Refused, never
    /// skipped: an entry may widen who can read.
    #[error("network policy has an entry of unknown type {0}; upgrade Strongroom")]
    UnknownPolicyEntry(u8),
}

/// Entries must be in strictly ascending device id order: one encoding per
/// list, and no device listed twice.
pub(crate) fn check_ascending<T>(
    items: &[T],
    id: impl Fn(&T) -> DeviceId,
    unordered: &'static str,
) -> Result<(), CertError> {
    for pair in items.windows(2) {
        if let [a, b] = pair {
            if id(a) == id(b) {
                return Err(CertError::DuplicateDevice(id(a)));
            }
            if id(a) > id(b) {
                return Err(CertError::Invalid(unordered));
            }
        }
    }
    Ok(())
}

/// A version set as devices advertise it: bit 0 is never a version, and a
/// device must open at least one.
pub(crate) fn check_versions(versions: u32) -> Result<(), CertError> {
    if versions & 1 != 0 || versions == 0 {
        return Err(CertError::Invalid("protocol versions must name at least one version, and bit 0 is reserved"));
    }
    Ok(())
}

/// An Ed25519 key read from a statement (PROTOCOL.md §2.1).
pub(crate) fn key(bytes: [u8; 32]) -> Result<VerifyingKey, CertError> {
    VerifyingKey::from_bytes(bytes).map_err(CertError::Key)
}

/// An X25519 key read from a statement.
pub(crate) fn agreement_key(bytes: [u8; 32]) -> Result<AgreementPublic, CertError> {
    AgreementPublic::from_bytes(bytes).map_err(CertError::Key)
}

impl CertError {
    pub(crate) fn decode(what: &'static str) -> impl Fn(DecodeError) -> CertError {
        move |source| CertError::Decode { what, source }
    }
}
