//! Signed envelopes with a fresh key per message.
//!
//! ```text
//! K  ← random 256 bits              e ← fresh X25519 key per message
//! ciphertext = AES-256-GCM(K, nonce 0, aad = header, pad(content))
//! for each recipient device d:  wrap_d = AES-256-GCM(HKDF(X25519(e, P_d), info_d), K)
//! signature = Ed25519(sender device, header | H(ciphertext) | n | MerkleRoot(wraps))
//! ```
//!
//! Because the signature covers a Merkle root of the wraps, the relay can hand
//! each device only its own wrap plus an inclusion proof ([`DeliveredEnvelope`]).
//! See `docs/PROTOCOL.md` for every byte.

mod encoding;
mod header;
mod open;
mod replay;
mod seal;
mod wrap;

pub use encoding::{DeliveredEnvelope, DeliveryParts, Envelope, MAX_CIPHERTEXT, MAX_RECIPIENTS};
pub use header::{Header, HeaderError, MembershipCommitment, HEADER_LEN};
pub use open::{Opened, PreKeySecrets, RecipientDevice};
pub use replay::{MemoryReplayGuard, ReplayGuard, DEFAULT_REPLAY_WINDOW_MS, MAX_SKEW_MS};
pub use seal::{seal, seal_with, MessageMeta, SealRandomness, Sender};
pub use wrap::{Recipient, Wrap, WRAP_LEN};

use thiserror::Error;

use crate::certs::{CertError, PreKeyRef};
use crate::codec::DecodeError;
use crate::content::ContentError;
use crate::ids::{DeviceId, MessageId, UserId};
use crate::suite::VersionError;

/// Why an envelope could not be sealed.
#[derive(Debug, Clone, PartialEq, Eq, Error)]
#[non_exhaustive]
pub enum SealError {
    /// No recipient devices.
    #[error("an envelope needs at least one recipient device")]
    NoRecipients,
    /// More recipients than an envelope may carry.
    #[error("{0} recipient devices; the limit is {MAX_RECIPIENTS}")]
    TooManyRecipients(usize),
    /// The same device twice.
    #[error("device {device} of user {user} is listed twice as a recipient")]
    DuplicateRecipient {
        /// User.
        user: UserId,
        /// Device.
        device: DeviceId,
    },
    /// A recipient key is a low-order point.
    #[error("the pre-key of device {0} is invalid (low-order point); refetch its keys")]
    BadRecipientKey(DeviceId),
    /// A recipient's signed statement does not list the version this
    /// software sends: it must upgrade before it can be sent to.
    #[error("device {device} of user {user} does not support protocol version {version}; it must upgrade Strongroom")]
    UnsupportedVersion {
        /// User.
        user: UserId,
        /// Device.
        device: DeviceId,
        /// The version that would have been sent.
        version: u8,
    },
    /// The content could not be encoded.
    #[error("{0}")]
    Content(#[from] ContentError),
    /// The backend failed.
    #[error("cryptographic backend failure")]
    Backend,
}

/// Why an envelope was refused. Every failure of decoding or opening maps to
/// exactly one of these; none of them panics.
#[derive(Debug, Clone, PartialEq, Eq, Error)]
#[non_exhaustive]
pub enum EnvelopeError {
    /// Malformed bytes.
    #[error("malformed envelope: {0}")]
    Decode(#[from] DecodeError),
    /// Unknown or downgraded version, or unknown suite.
    #[error("{0}")]
    Version(#[from] VersionError),
    /// A full envelope given where a delivered one was expected, or the reverse.
    #[error("envelope is in the other wire form (full vs delivered)")]
    WrongForm,
    /// An envelope with no wraps.
    #[error("envelope names no recipients")]
    NoRecipients,
    /// The sender device could not be trusted (unknown, revoked, wrong user…).
    #[error("sender not trusted: {0}")]
    Sender(CertError),
    /// The signature does not verify: header, ciphertext, wraps or proof altered.
    #[error("envelope signature does not verify: it was altered in transit")]
    BadSignature,
    /// The wrap is addressed to another device.
    #[error("envelope is not addressed to this device")]
    NotForThisDevice,
    /// The message id was already accepted.
    #[error("message {0} was already received (replay)")]
    Replay(MessageId),
    /// The message is older than the replay window and cannot be checked.
    #[error("message is older than the replay window ({age_ms} ms old)")]
    Stale {
        /// Age by the sender's timestamp.
        age_ms: u64,
    },
    /// The timestamp is further ahead of this device's clock than
    /// `MAX_SKEW_MS`: the sender's clock (or this one) is wrong.
    #[error(
        "message is dated {ahead_ms} ms in the future (more than the 5-minute clock skew allowed); check the clocks"
    )]
    FutureTimestamp {
        /// How far ahead of our clock.
        ahead_ms: u64,
    },
    /// The device no longer has the private pre-key the message was sealed to.
    #[error("pre-key {0:?} is not available on this device (used or rotated away)")]
    MissingPreKey(PreKeyRef),
    /// The ephemeral key is a low-order point.
    #[error("envelope ephemeral key is invalid")]
    BadEphemeralKey,
    /// The wrap did not authenticate under the derived KEK.
    #[error("message key wrap does not authenticate: wrong recipient key or altered wrap")]
    BadWrap,
    /// The unwrapped key is not the one the signed header commits to: the
    /// sender gave recipients different keys.
    #[error("message key does not match the signed key commitment: the sender gave recipients different keys")]
    KeyCommitment,
    /// The content did not authenticate under the message key and header.
    #[error("message content does not authenticate: header or ciphertext altered")]
    BadCiphertext,
    /// The decrypted padding is malformed.
    #[error("message padding is malformed")]
    BadPadding,
    /// The decrypted content is malformed.
    #[error("{0}")]
    Content(#[from] ContentError),
    /// The backend failed.
    #[error("cryptographic backend failure")]
    Backend,
}

impl From<HeaderError> for EnvelopeError {
    fn from(e: HeaderError) -> Self {
        match e {
            HeaderError::Decode(d) => EnvelopeError::Decode(d),
            HeaderError::Version(v) => EnvelopeError::Version(v),
            HeaderError::EphemeralKey(_) => EnvelopeError::BadEphemeralKey,
        }
    }
}
