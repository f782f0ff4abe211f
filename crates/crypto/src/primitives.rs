//! The only module that touches the primitive backend (aws-lc-rs).
//!
//! Everything else in the crate goes through these functions and the key types
//! in [`crate::keys`], so the backend can change without touching protocol code.

use aws_lc_rs::{aead, digest, hkdf};

use crate::keys::SecretBytes;

/// The backend reported a failure that well-formed inputs cannot cause
/// (e.g. an AEAD tag mismatch is reported separately by the callers).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) struct BackendFailure;

pub(crate) const AEAD_TAG_LEN: usize = 16;
pub(crate) const AEAD_NONCE_LEN: usize = 12;

/// AES-256-GCM in place: encrypts `in_out` and returns the tag.
pub(crate) fn aes256gcm_seal(
    key: &[u8; 32],
    nonce: [u8; AEAD_NONCE_LEN],
    aad: &[u8],
    in_out: &mut [u8],
) -> Result<[u8; AEAD_TAG_LEN], BackendFailure> {
    let key = aead_key(key)?;
    seal_with(&key, nonce, aad, in_out)
}

/// AES-256-GCM in place: decrypts `in_out` if `tag` authenticates it.
pub(crate) fn aes256gcm_open(
    key: &[u8; 32],
    nonce: [u8; AEAD_NONCE_LEN],
    aad: &[u8],
    in_out: &mut [u8],
    tag: &[u8; AEAD_TAG_LEN],
) -> Result<(), BackendFailure> {
    let key = aead_key(key)?;
    open_with(&key, nonce, aad, in_out, tag)
}

/// A prepared AES-256-GCM key, for streams that use one key many times.
pub(crate) struct AeadKey(aead::LessSafeKey);

pub(crate) fn aead_key(key: &[u8; 32]) -> Result<AeadKey, BackendFailure> {
    let unbound = aead::UnboundKey::new(&aead::AES_256_GCM, key).map_err(|_| BackendFailure)?;
    Ok(AeadKey(aead::LessSafeKey::new(unbound)))
}

pub(crate) fn seal_with(
    key: &AeadKey,
    nonce: [u8; AEAD_NONCE_LEN],
    aad: &[u8],
    in_out: &mut [u8],
) -> Result<[u8; AEAD_TAG_LEN], BackendFailure> {
    let tag = key
        .0
        .seal_in_place_separate_tag(aead::Nonce::assume_unique_for_key(nonce), aead::Aad::from(aad), in_out)
        .map_err(|_| BackendFailure)?;
    let mut out = [0u8; AEAD_TAG_LEN];
    out.copy_from_slice(tag.as_ref());
    Ok(out)
}

pub(crate) fn open_with(
    key: &AeadKey,
    nonce: [u8; AEAD_NONCE_LEN],
    aad: &[u8],
    in_out: &mut [u8],
    tag: &[u8; AEAD_TAG_LEN],
) -> Result<(), BackendFailure> {
    key.0
        .open_in_place_separate_tag(aead::Nonce::assume_unique_for_key(nonce), aead::Aad::from(aad), tag, in_out)
        .map(|_| ())
        .map_err(|_| BackendFailure)
}

/// HKDF-SHA256 with the given salt, input keying material and info pieces
/// (concatenated), filling `out`.
pub(crate) fn hkdf_sha256(salt: &[u8], ikm: &[u8], info: &[&[u8]], out: &mut [u8]) -> Result<(), BackendFailure> {
    struct Len(usize);
    impl hkdf::KeyType for Len {
        fn len(&self) -> usize {
            self.0
        }
    }
    let prk = hkdf::Salt::new(hkdf::HKDF_SHA256, salt).extract(ikm);
    prk.expand(info, Len(out.len())).and_then(|okm| okm.fill(out)).map_err(|_| BackendFailure)
}

/// HKDF-SHA256 into a fresh 32-byte secret.
pub(crate) fn hkdf_sha256_key(salt: &[u8], ikm: &[u8], info: &[&[u8]]) -> Result<SecretBytes<32>, BackendFailure> {
    let mut out = SecretBytes::zero();
    hkdf_sha256(salt, ikm, info, out.as_mut())?;
    Ok(out)
}

/// SHA-256 over the concatenation of `parts`.
pub(crate) fn sha256(parts: &[&[u8]]) -> [u8; 32] {
    let mut ctx = digest::Context::new(&digest::SHA256);
    for p in parts {
        ctx.update(p);
    }
    let mut out = [0u8; 32];
    out.copy_from_slice(ctx.finish().as_ref());
    out
}

/// Incremental SHA-256, for hashing streams.
pub(crate) struct Sha256(digest::Context);

impl Sha256 {
    pub(crate) fn new() -> Self {
        Self(digest::Context::new(&digest::SHA256))
    }
    pub(crate) fn update(&mut self, data: &[u8]) {
        self.0.update(data);
    }
    pub(crate) fn finish(self) -> [u8; 32] {
        let mut out = [0u8; 32];
        out.copy_from_slice(self.0.finish().as_ref());
        out
    }
}

/// SHA-512 over the concatenation of `parts`.
pub(crate) fn sha512(parts: &[&[u8]]) -> [u8; 64] {
    let mut ctx = digest::Context::new(&digest::SHA512);
    for p in parts {
        ctx.update(p);
    }
    let mut out = [0u8; 64];
    out.copy_from_slice(ctx.finish().as_ref());
    out
}
