//! Key material: Ed25519 signing keys, X25519 agreement keys and the
//! [`SecretBytes`] container every secret lives in.

mod agreement;
mod point;
mod secret;
mod signing;

pub use agreement::{AgreementPublic, AgreementSecret};
pub use secret::SecretBytes;
pub(crate) use signing::signing_input;
pub use signing::{Signature, SigningKey, VerifyingKey};

use thiserror::Error;

/// Why a key or signature was refused.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Error)]
#[non_exhaustive]
pub enum KeyError {
    /// The backend refused the key bytes.
    #[error("key bytes are not a valid {0} key")]
    InvalidKey(&'static str),
    /// The signature does not verify under the given key.
    #[error("signature does not verify")]
    BadSignature,
    /// The peer's public key is a low-order point: the shared secret would be
    /// all zeros and must not be used.
    #[error("key agreement produced an all-zero secret (low-order peer key)")]
    WeakAgreement,
    /// A public key of small order (e.g. the Ed25519 identity point): refused
    /// wherever a key is decoded, because signatures or key agreement with it
    /// prove nothing.
    #[error("{0} public key has small order; it is not a real key")]
    SmallOrderKey(&'static str),
    /// A public key spelled non-canonically (a coordinate ≥ 2^255 − 19, or a
    /// sign bit where none is allowed): every key has exactly one encoding.
    #[error("{0} public key is not canonically encoded")]
    NonCanonicalKey(&'static str),
}
