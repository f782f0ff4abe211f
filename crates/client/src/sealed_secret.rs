//! Secrets sealed under a passphrase: Argon2id derives a key from the
//! passphrase, AES-256-GCM seals with the secret's purpose as associated
//! data (so a sealed secret cannot be passed off as another kind). One
//! helper for the profile store (`vault.rs`), the network key file (the
//! CLI) and the retention device's keys; it reads the files each wrote.

use aws_lc_rs::aead::{Aad, LessSafeKey, Nonce, UnboundKey, AES_256_GCM};
use base64::engine::general_purpose::STANDARD;
use base64::Engine as _;
use rand_core::{OsRng, RngCore};
use serde::{Deserialize, Serialize};
use zeroize::Zeroizing;

/// Argon2id cost: memory (KiB), passes, lanes.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct KdfParams {
    /// Memory, KiB.
    pub m_kib: u32,
    /// Passes.
    pub t: u32,
    /// Lanes.
    pub p: u32,
}

impl KdfParams {
    /// What new secrets use: 64 MiB, 3 passes, 1 lane.
    pub const STANDARD: KdfParams = KdfParams { m_kib: 64 * 1024, t: 3, p: 1 };

    /// Parameters read from a file are bounded: a file cannot make opening
    /// it take gigabytes or minutes.
    fn bounded(self) -> Result<Self, SecretError> {
        if self.m_kib > 4 * 1024 * 1024 || self.t > 64 || self.p > 64 {
            return Err(SecretError::Malformed("its key-derivation parameters are out of range".into()));
        }
        Ok(self)
    }
}

/// Why a sealed secret could not be made or opened.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum SecretError {
    /// The file or record is not a sealed secret of a known form.
    #[error("{0}")]
    Malformed(String),
    /// The passphrase is wrong, or the sealed bytes or their purpose were altered.
    #[error("wrong passphrase, or it was altered")]
    Unlock,
    /// A new passphrase is too short.
    #[error("the passphrase must be at least {0} characters")]
    TooShort(usize),
}

/// A key derived from a passphrase (wiped when dropped by aws-lc).
pub struct PassphraseKey {
    key: LessSafeKey,
}

impl std::fmt::Debug for PassphraseKey {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("PassphraseKey(redacted)")
    }
}

impl PassphraseKey {
    /// Argon2id over `passphrase` with `salt`.
    pub fn derive(passphrase: &str, salt: &[u8], params: KdfParams) -> Result<Self, SecretError> {
        let params = params.bounded()?;
        let argon = argon2::Params::new(params.m_kib, params.t, params.p, Some(32))
            .map_err(|e| SecretError::Malformed(format!("its key-derivation parameters are invalid: {e}")))?;
        let mut k = Zeroizing::new([0u8; 32]);
        argon2::Argon2::new(argon2::Algorithm::Argon2id, argon2::Version::V0x13, argon)
            .hash_password_into(passphrase.as_bytes(), salt, k.as_mut())
            .map_err(|e| SecretError::Malformed(format!("key derivation failed: {e}")))?;
        let key =
            UnboundKey::new(&AES_256_GCM, k.as_ref()).map_err(|_| SecretError::Malformed("key setup failed".into()))?;
        Ok(Self { key: LessSafeKey::new(key) })
    }

    /// Seals `plain` for `purpose` under a fresh random nonce: (nonce,
    /// ciphertext with tag).
    pub fn seal(&self, purpose: &[u8], plain: &[u8]) -> ([u8; 12], Vec<u8>) {
        let mut nonce = [0u8; 12];
        OsRng.fill_bytes(&mut nonce);
        // Room for the tag up front: growing the buffer would leave a copy
        // of the plaintext behind in freed memory.
        let mut buf = Zeroizing::new(Vec::with_capacity(plain.len() + AES_256_GCM.tag_len()));
        buf.extend_from_slice(plain);
        // Sealing fails only for inputs over 64 GiB.
        let _ = self.key.seal_in_place_append_tag(Nonce::assume_unique_for_key(nonce), Aad::from(purpose), &mut *buf);
        (nonce, buf.to_vec())
    }

    /// Opens what [`PassphraseKey::seal`] made for `purpose`.
    pub fn open(&self, purpose: &[u8], nonce: [u8; 12], sealed: &[u8]) -> Result<Zeroizing<Vec<u8>>, SecretError> {
        let mut buf = Zeroizing::new(sealed.to_vec());
        let n = self
            .key
            .open_in_place(Nonce::assume_unique_for_key(nonce), Aad::from(purpose), &mut buf)
            .map_err(|_| SecretError::Unlock)?
            .len();
        buf.truncate(n);
        Ok(buf)
    }
}

/// One secret sealed under a passphrase, as stored in JSON files (base64
/// fields). Network key files name the sealed bytes `sealed_seed`.
#[derive(Debug, Clone, Serialize, Deserialize, PartialEq, Eq)]
pub struct SealedSecret {
    /// Always `argon2id`.
    pub kdf: String,
    /// Argon2id memory, KiB.
    pub m_kib: u32,
    /// Argon2id passes.
    pub t: u32,
    /// Argon2id lanes.
    pub p: u32,
    /// Salt (base64).
    pub salt: String,
    /// AES-GCM nonce (base64).
    pub nonce: String,
    /// Ciphertext and tag (base64).
    #[serde(alias = "sealed_seed")]
    pub sealed: String,
}

impl SealedSecret {
    /// Seals `plain` for `purpose` under `passphrase` (at least
    /// `min_chars` characters).
    pub fn seal(passphrase: &str, min_chars: usize, purpose: &[u8], plain: &[u8]) -> Result<Self, SecretError> {
        if passphrase.chars().count() < min_chars {
            return Err(SecretError::TooShort(min_chars));
        }
        let mut salt = [0u8; 16];
        OsRng.fill_bytes(&mut salt);
        let params = KdfParams::STANDARD;
        let (nonce, sealed) = PassphraseKey::derive(passphrase, &salt, params)?.seal(purpose, plain);
        Ok(Self {
            kdf: "argon2id".into(),
            m_kib: params.m_kib,
            t: params.t,
            p: params.p,
            salt: STANDARD.encode(salt),
            nonce: STANDARD.encode(nonce),
            sealed: STANDARD.encode(sealed),
        })
    }

    /// Opens it for `purpose` with `passphrase`.
    pub fn open(&self, passphrase: &str, purpose: &[u8]) -> Result<Zeroizing<Vec<u8>>, SecretError> {
        let bad = |what: &str| SecretError::Malformed(format!("its {what} is damaged"));
        if self.kdf != "argon2id" {
            return Err(SecretError::Malformed(format!("it uses an unknown key derivation ({})", self.kdf)));
        }
        let params = KdfParams { m_kib: self.m_kib, t: self.t, p: self.p }.bounded()?;
        let salt = STANDARD.decode(&self.salt).map_err(|_| bad("salt"))?;
        let nonce: [u8; 12] =
            STANDARD.decode(&self.nonce).ok().and_then(|n| n.try_into().ok()).ok_or_else(|| bad("nonce"))?;
        let sealed = Zeroizing::new(STANDARD.decode(&self.sealed).map_err(|_| bad("sealed part"))?);
        PassphraseKey::derive(passphrase, &salt, params)?.open(purpose, nonce, &sealed)
    }
}

#[cfg(test)]
mod tests {
    #![allow(clippy::unwrap_used)]
    use super::*;

    /// Cheap parameters: these tests check the format, not the cost.
    fn quick(passphrase: &str, purpose: &[u8], plain: &[u8]) -> SealedSecret {
        let salt = [7u8; 16];
        let key = PassphraseKey::derive(passphrase, &salt, KdfParams { m_kib: 64, t: 1, p: 1 }).unwrap();
        let (nonce, sealed) = key.seal(purpose, plain);
        SealedSecret {
            kdf: "argon2id".into(),
            m_kib: 64,
            t: 1,
            p: 1,
            salt: STANDARD.encode(salt),
            nonce: STANDARD.encode(nonce),
            sealed: STANDARD.encode(sealed),
        }
    }

    #[test]
    fn sealed_for_one_purpose_opens_only_for_it_and_only_with_the_passphrase() {
        let s = quick("a long passphrase", b"purpose-a", b"the secret");
        assert_eq!(s.open("a long passphrase", b"purpose-a").unwrap().as_slice(), b"the secret");
        assert!(matches!(s.open("a long passphrase", b"purpose-b"), Err(SecretError::Unlock)));
        assert!(matches!(s.open("the wrong one!!", b"purpose-a"), Err(SecretError::Unlock)));
        let json = serde_json::to_string(&s).unwrap();
        assert!(!json.contains("the secret"));
        // The network key file's field name is read too.
        let renamed = json.replace("\"sealed\"", "\"sealed_seed\"");
        let again: SealedSecret = serde_json::from_str(&renamed).unwrap();
        assert_eq!(again.open("a long passphrase", b"purpose-a").unwrap().as_slice(), b"the secret");
    }

    #[test]
    fn damaged_or_hostile_files_are_refused_without_work() {
        let s = quick("a long passphrase", b"p", b"x");
        let costly = SealedSecret { m_kib: u32::MAX, ..s.clone() };
        assert!(matches!(costly.open("a long passphrase", b"p"), Err(SecretError::Malformed(_))));
        let slow = SealedSecret { t: 1000, ..s.clone() };
        assert!(matches!(slow.open("a long passphrase", b"p"), Err(SecretError::Malformed(_))));
        for bad in [
            SealedSecret { kdf: "scrypt".into(), ..s.clone() },
            SealedSecret { nonce: STANDARD.encode([0u8; 5]), ..s.clone() },
            SealedSecret { salt: "not base64!".into(), ..s.clone() },
            SealedSecret { sealed: "%%%".into(), ..s.clone() },
            SealedSecret { m_kib: 0, ..s.clone() },
        ] {
            assert!(matches!(bad.open("a long passphrase", b"p"), Err(SecretError::Malformed(_))), "{bad:?}");
        }
        let mut flipped = STANDARD.decode(&s.sealed).unwrap();
        flipped[0] ^= 1;
        let flipped = SealedSecret { sealed: STANDARD.encode(flipped), ..s };
        assert!(matches!(flipped.open("a long passphrase", b"p"), Err(SecretError::Unlock)));
        assert!(matches!(SealedSecret::seal("short", 12, b"p", b"x"), Err(SecretError::TooShort(12))));
    }
}
