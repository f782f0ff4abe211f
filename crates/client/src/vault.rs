//! The profile key: Argon2id over the passphrase, and AES-256-GCM sealing of
//! every stored record with the record's name as associated data (so a
//! record cannot be moved to another place in the store undetected).

use std::path::Path;

use base64::engine::general_purpose::STANDARD;
use base64::Engine as _;
use rand_core::{OsRng, RngCore};
use serde::{Deserialize, Serialize};
use zeroize::Zeroizing;

use crate::error::ClientError;
use crate::sealed_secret::{KdfParams, PassphraseKey};

const FORMAT: &str = "strongroom-profile-v1";
const CHECK: &[u8] = b"strongroom profile key check";

/// `profile.json`: the key-derivation parameters and a check value; no secrets.
#[derive(Serialize, Deserialize)]
struct Header {
    format: String,
    m_kib: u32,
    t: u32,
    p: u32,
    salt: String,
    check: String,
    /// Failed unlocks before the profile erases itself (0 = never), from the
    /// security group; kept in the clear because it must work while locked.
    #[serde(default)]
    lockout: u32,
    /// Failed unlocks since the last success.
    #[serde(default)]
    failures: u32,
}

fn write_header(path: &Path, h: &Header) -> Result<(), ClientError> {
    use std::io::Write as _;
    let json = serde_json::to_vec_pretty(h).map_err(|_| ClientError::Corrupt("profile header"))?;
    // A name of its own: an administration command and the owning process
    // may both write the header (failed-unlock count, lockout).
    let mut unique = [0u8; 8];
    OsRng.fill_bytes(&mut unique);
    let tmp = path.with_extension(format!("json.{}.tmp", crate::store::hex(&unique)));
    let mut f = std::fs::File::create(&tmp).map_err(io(&tmp))?;
    f.write_all(&json).and_then(|()| f.sync_all()).map_err(io(&tmp))?;
    std::fs::rename(&tmp, path).map_err(io(path))
}

/// The header of a profile being made, written last.
pub struct NewHeader(Header);

impl NewHeader {
    /// Writes `dir/profile.json` (atomically): from here on the profile exists.
    pub fn commit(self, dir: &Path) -> Result<(), ClientError> {
        write_header(&dir.join("profile.json"), &self.0)
    }
}

/// The unlocked profile key.
pub struct Vault {
    key: PassphraseKey,
}

fn derive(passphrase: &str, salt: &[u8], m_kib: u32, t: u32, p: u32) -> Result<Vault, ClientError> {
    let key = PassphraseKey::derive(passphrase, salt, KdfParams { m_kib, t, p })
        .map_err(|_| ClientError::Corrupt("key derivation parameters"))?;
    Ok(Vault { key })
}

fn io(path: &Path) -> impl Fn(std::io::Error) -> ClientError + '_ {
    move |source| ClientError::Io { path: path.display().to_string(), source }
}

impl Vault {
    /// Derives the key for a new profile in `dir`. Nothing is written: the
    /// profile exists once [`NewHeader::commit`] writes `profile.json`, after
    /// everything else succeeded (enrolment is all or nothing).
    pub fn create(dir: &Path, passphrase: &str, m_kib: u32) -> Result<(Self, NewHeader), ClientError> {
        if passphrase.chars().count() < 8 {
            return Err(ClientError::Usage("the profile passphrase must be at least 8 characters".into()));
        }
        if dir.join("profile.json").exists() {
            return Err(ClientError::ProfileExists(dir.display().to_string()));
        }
        let mut salt = [0u8; 16];
        OsRng.fill_bytes(&mut salt);
        let vault = derive(passphrase, &salt, m_kib, 3, 1)?;
        let header = Header {
            format: FORMAT.into(),
            m_kib,
            t: 3,
            p: 1,
            salt: STANDARD.encode(salt),
            check: STANDARD.encode(vault.seal("check", CHECK)),
            lockout: 0,
            failures: 0,
        };
        Ok((vault, NewHeader(header)))
    }

    /// Unlocks an existing profile; a wrong passphrase is reported as such.
    pub fn unlock(dir: &Path, passphrase: &str) -> Result<Self, ClientError> {
        let path = dir.join("profile.json");
        let text = std::fs::read(&path).map_err(|e| match e.kind() {
            std::io::ErrorKind::NotFound => ClientError::NoProfile(dir.display().to_string()),
            _ => io(&path)(e),
        })?;
        let h: Header = serde_json::from_slice(&text).map_err(|_| ClientError::Corrupt("profile.json"))?;
        if h.format != FORMAT || h.m_kib > 4 * 1024 * 1024 || h.t > 64 || h.p > 64 {
            return Err(ClientError::Corrupt("unsupported profile format"));
        }
        let salt = STANDARD.decode(&h.salt).map_err(|_| ClientError::Corrupt("profile salt"))?;
        let vault = derive(passphrase, &salt, h.m_kib, h.t, h.p)?;
        let check = STANDARD.decode(&h.check).map_err(|_| ClientError::Corrupt("profile check"))?;
        match vault.open("check", &check) {
            Ok(v) if v.as_slice() == CHECK => {
                if h.failures != 0 {
                    write_header(&path, &Header { failures: 0, ..h })?;
                }
                Ok(vault)
            }
            _ => {
                let failures = h.failures.saturating_add(1);
                if h.lockout > 0 && failures >= h.lockout {
                    crate::wipe::erase_profile(dir);
                    return Err(ClientError::Wiped(format!(
                        "{failures} failed unlocks: this device erased its Strongroom data as its security group requires"
                    )));
                }
                write_header(&path, &Header { failures, ..h })?;
                Err(ClientError::WrongPassphrase)
            }
        }
    }

    /// Records the security group's device lockout (failed unlocks before erasure).
    pub fn set_lockout(dir: &Path, lockout: u32) -> Result<(), ClientError> {
        let path = dir.join("profile.json");
        let text = std::fs::read(&path).map_err(io(&path))?;
        let h: Header = serde_json::from_slice(&text).map_err(|_| ClientError::Corrupt("profile.json"))?;
        if h.lockout != lockout {
            write_header(&path, &Header { lockout, ..h })?;
        }
        Ok(())
    }

    /// `nonce | ciphertext | tag`, bound to `name`.
    pub fn seal(&self, name: &str, plaintext: &[u8]) -> Vec<u8> {
        let (nonce, sealed) = self.key.seal(name.as_bytes(), plaintext);
        let mut out = nonce.to_vec();
        out.extend_from_slice(&sealed);
        out
    }

    /// Opens a sealed record stored under `name`.
    pub fn open(&self, name: &str, sealed: &[u8]) -> Result<Zeroizing<Vec<u8>>, ClientError> {
        let (nonce, ct) = sealed.split_at_checked(12).ok_or(ClientError::Corrupt("record too short"))?;
        let nonce: [u8; 12] = nonce.try_into().map_err(|_| ClientError::Corrupt("record nonce"))?;
        self.key.open(name.as_bytes(), nonce, ct).map_err(|_| ClientError::Corrupt("a record does not authenticate"))
    }
}
