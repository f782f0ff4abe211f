//! Secrets sealed under a passphrase: Argon2id (64 MiB, t=3) then
//! AES-256-GCM, with the file's purpose as associated data.

use argon2::{Algorithm, Argon2, Params, Version};
use aws_lc_rs::aead::{Aad, LessSafeKey, Nonce, UnboundKey, AES_256_GCM};
use base64::engine::general_purpose::STANDARD;
use base64::Engine as _;
use rand_core::{OsRng, RngCore};
use serde::{Deserialize, Serialize};
use zeroize::Zeroizing;

use crate::RetentionError;

/// The sealed form, stored as JSON.
#[derive(Serialize, Deserialize)]
pub(crate) struct PassBox {
    kdf: String,
    m_kib: u32,
    t: u32,
    p: u32,
    salt: String,
    nonce: String,
    sealed: String,
}

const M_KIB: u32 = 64 * 1024;

fn key(passphrase: &str, salt: &[u8], m: u32, t: u32, p: u32) -> Result<LessSafeKey, RetentionError> {
    let params = Params::new(m, t, p, Some(32)).map_err(|_| RetentionError::Corrupt("key file parameters".into()))?;
    let mut k = Zeroizing::new([0u8; 32]);
    Argon2::new(Algorithm::Argon2id, Version::V0x13, params)
        .hash_password_into(passphrase.as_bytes(), salt, k.as_mut())
        .map_err(|_| RetentionError::Corrupt("key derivation".into()))?;
    Ok(LessSafeKey::new(
        UnboundKey::new(&AES_256_GCM, k.as_ref()).map_err(|_| RetentionError::Corrupt("key setup".into()))?,
    ))
}

impl PassBox {
    pub(crate) fn seal(passphrase: &str, purpose: &str, plain: &[u8]) -> Result<Self, RetentionError> {
        if passphrase.chars().count() < 12 {
            return Err(RetentionError::Usage("the retention key passphrase must be at least 12 characters".into()));
        }
        let (mut salt, mut nonce) = ([0u8; 16], [0u8; 12]);
        OsRng.fill_bytes(&mut salt);
        OsRng.fill_bytes(&mut nonce);
        let mut buf = Zeroizing::new(plain.to_vec());
        key(passphrase, &salt, M_KIB, 3, 1)?
            .seal_in_place_append_tag(Nonce::assume_unique_for_key(nonce), Aad::from(purpose.as_bytes()), &mut *buf)
            .map_err(|_| RetentionError::Corrupt("sealing".into()))?;
        Ok(Self {
            kdf: "argon2id".into(),
            m_kib: M_KIB,
            t: 3,
            p: 1,
            salt: STANDARD.encode(salt),
            nonce: STANDARD.encode(nonce),
            sealed: STANDARD.encode(&*buf),
        })
    }

    pub(crate) fn open(
        &self,
        passphrase: &str,
        purpose: &str,
        what: &str,
    ) -> Result<Zeroizing<Vec<u8>>, RetentionError> {
        let bad = || RetentionError::Corrupt(format!("{what} is malformed"));
        if self.kdf != "argon2id" || self.m_kib > 4 * 1024 * 1024 || self.t > 64 || self.p > 64 {
            return Err(bad());
        }
        let salt = STANDARD.decode(&self.salt).map_err(|_| bad())?;
        let nonce: [u8; 12] = STANDARD.decode(&self.nonce).map_err(|_| bad())?.try_into().map_err(|_| bad())?;
        let mut buf = Zeroizing::new(STANDARD.decode(&self.sealed).map_err(|_| bad())?);
        let plain = key(passphrase, &salt, self.m_kib, self.t, self.p)?
            .open_in_place(Nonce::assume_unique_for_key(nonce), Aad::from(purpose.as_bytes()), &mut buf)
            .map_err(|_| RetentionError::Unlock(what.into()))?
            .to_vec();
        Ok(Zeroizing::new(plain))
    }
}
