//! Custody of the retention keys beyond one passphrase file on one host.
//!
//! - A **recovery file** holds the device's keys wrapped by a KMS key
//!   (`retention custody kms-wrap`): after the retention host is lost, a
//!   fresh host allowed to use that KMS key unwraps them (`custody recover`)
//!   under a new passphrase and goes on archiving, verifying and exporting.
//! - A **reader file** holds only the archive key (and the public key that
//!   signs checkpoints), wrapped by a passphrase or by the reader's own KMS
//!   key (`custody grant-reader`): a designated third party can verify,
//!   search and export, but can neither add to the archive nor receive
//!   messages. The grant itself is an access record in the archive.
//!
//! KMS requests bind the ciphertext to the device with an encryption
//! context (`strongroom: <purpose>:<device id>`), so a recovery file cannot
//! be replayed as another device's.

use std::path::Path;

use base64::Engine;
use serde::{Deserialize, Serialize};
use strongroom_client::sealed_secret::{SealedSecret, SecretError};
use strongroom_crypto::ids::{DeviceId, NetworkId};
use strongroom_crypto::keys::{SecretBytes, VerifyingKey};
use zeroize::Zeroizing;

use crate::aws::Kms;
use crate::keys::{DeviceFile, RetentionKeys};
use crate::{hex, unhex, RetentionError};

const RECOVERY: &str = "strongroom-retention-recovery-v1";
const READER: &str = "strongroom-retention-reader-v1";

/// How a custody file's secret is wrapped.
#[derive(Serialize, Deserialize)]
#[serde(tag = "by", rename_all = "snake_case")]
enum Wrap {
    /// KMS Encrypt under `key_id`.
    Kms { key_id: String, ciphertext: String },
    /// A passphrase (Argon2id, AES-256-GCM).
    Passphrase { sealed: SealedSecret },
}

#[derive(Serialize, Deserialize)]
struct CustodyFile {
    format: String,
    server_url: String,
    network_public: String,
    device: DeviceFile,
    /// Who a reader file was made for.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    holder: Option<String>,
    created_at: u64,
    wrap: Wrap,
}

/// What a wrap is bound to: the purpose, the device, and the SHA-256 of
/// every public field of the file (relay, network key, device description,
/// holder, time), so none can be edited without the unwrap failing.
fn context(purpose: &str, file: &CustodyFile) -> Result<String, RetentionError> {
    let public = serde_json::to_vec(&(
        &file.format,
        &file.server_url,
        &file.network_public,
        &file.device,
        &file.holder,
        file.created_at,
    ))
    .map_err(|e| RetentionError::Corrupt(e.to_string()))?;
    let digest = aws_lc_rs::digest::digest(&aws_lc_rs::digest::SHA256, &public);
    Ok(format!("{purpose}:{}:{}", file.device.device_id, hex(digest.as_ref())))
}

fn write_new(path: &Path, file: &CustodyFile) -> Result<(), RetentionError> {
    use std::io::Write;
    let json = serde_json::to_vec_pretty(file).map_err(|e| RetentionError::Corrupt(e.to_string()))?;
    let mut options = std::fs::OpenOptions::new();
    options.write(true).create_new(true);
    #[cfg(unix)]
    std::os::unix::fs::OpenOptionsExt::mode(&mut options, 0o600);
    let mut f = options.open(path).map_err(crate::error::io(path))?;
    f.write_all(&json).and_then(|()| f.sync_all()).map_err(crate::error::io(path))
}

fn read(path: &Path, format: &str) -> Result<CustodyFile, RetentionError> {
    let raw = std::fs::read(path).map_err(crate::error::io(path))?;
    let file: CustodyFile = serde_json::from_slice(&raw)
        .map_err(|e| RetentionError::Usage(format!("{} is not a Strongroom custody file: {e}", path.display())))?;
    if file.format != format {
        let what = if format == RECOVERY { "a recovery file" } else { "a reader file" };
        return Err(RetentionError::Usage(format!("{} is {}, not {what}", path.display(), file.format)));
    }
    file.device.retention_device()?;
    Ok(file)
}

async fn unwrap(
    file: &CustodyFile,
    purpose: &str,
    passphrase: Option<&str>,
) -> Result<Zeroizing<Vec<u8>>, RetentionError> {
    match &file.wrap {
        Wrap::Kms { key_id, ciphertext } => {
            let blob = base64::engine::general_purpose::STANDARD
                .decode(ciphertext)
                .map_err(|_| RetentionError::Corrupt("the custody file's ciphertext is not base64".into()))?;
            Kms::from_env()?.decrypt(&blob, &context(purpose, file)?, key_id).await
        }
        Wrap::Passphrase { sealed } => {
            let passphrase = passphrase
                .ok_or_else(|| RetentionError::Usage("this file is sealed by a passphrase: give it".into()))?;
            sealed.open(passphrase, context(purpose, file)?.as_bytes()).map_err(|e| match e {
                SecretError::Unlock => RetentionError::Unlock("the reader file".into()),
                other => RetentionError::Corrupt(other.to_string()),
            })
        }
    }
}

/// Writes a recovery file: the device's keys wrapped by KMS key `key_id`.
pub async fn kms_wrap(keys: &RetentionKeys, key_id: &str, out: &Path) -> Result<(), RetentionError> {
    let secrets = keys.secrets_json()?;
    let mut file = CustodyFile {
        format: RECOVERY.into(),
        server_url: keys.server_url.clone(),
        network_public: hex(keys.network_public.as_bytes()),
        device: keys.device.clone(),
        holder: None,
        created_at: crate::now_ms(),
        wrap: Wrap::Kms { key_id: key_id.into(), ciphertext: String::new() },
    };
    let ciphertext = Kms::from_env()?.encrypt(key_id, &secrets, &context(RECOVERY, &file)?).await?;
    file.wrap =
        Wrap::Kms { key_id: key_id.into(), ciphertext: base64::engine::general_purpose::STANDARD.encode(ciphertext) };
    write_new(out, &file)
}

/// Unwraps a recovery file with KMS and saves the keys in `dir` under a
/// new `passphrase`.
pub async fn recover(from: &Path, dir: &Path, passphrase: &str) -> Result<RetentionKeys, RetentionError> {
    let file = read(from, RECOVERY)?;
    let plain = unwrap(&file, RECOVERY, None).await?;
    let bad = || RetentionError::Corrupt("the recovery file's network key is malformed".into());
    let network_public = VerifyingKey::from_bytes(unhex(&file.network_public).ok_or_else(bad)?).map_err(|_| bad())?;
    let keys = RetentionKeys::from_secrets(file.server_url, network_public, file.device, &plain)?;
    keys.save(dir, passphrase)?;
    Ok(keys)
}

#[derive(Serialize, Deserialize)]
struct ReaderSecret {
    archive_key: String,
}

/// Writes a reader file for `holder`: the archive key alone, wrapped by
/// `kms_key_id` (the holder's KMS key) or else sealed under `passphrase`.
pub async fn grant_reader(
    keys: &RetentionKeys,
    holder: &str,
    kms_key_id: Option<&str>,
    passphrase: Option<&str>,
    out: &Path,
) -> Result<(), RetentionError> {
    if holder.trim().is_empty() || holder.len() > 200 {
        return Err(RetentionError::Usage("name the reader (1 to 200 bytes)".into()));
    }
    let secret = Zeroizing::new(
        serde_json::to_vec(&ReaderSecret { archive_key: hex(keys.archive_key.expose()) })
            .map_err(|e| RetentionError::Corrupt(e.to_string()))?,
    );
    let mut file = CustodyFile {
        format: READER.into(),
        server_url: keys.server_url.clone(),
        network_public: hex(keys.network_public.as_bytes()),
        device: keys.device.clone(),
        holder: Some(holder.into()),
        created_at: crate::now_ms(),
        wrap: Wrap::Kms { key_id: String::new(), ciphertext: String::new() },
    };
    let bound = context(READER, &file)?;
    file.wrap = match (kms_key_id, passphrase) {
        (Some(key_id), _) => {
            let ciphertext = Kms::from_env()?.encrypt(key_id, &secret, &bound).await?;
            Wrap::Kms {
                key_id: key_id.into(),
                ciphertext: base64::engine::general_purpose::STANDARD.encode(ciphertext),
            }
        }
        (None, Some(p)) => Wrap::Passphrase {
            sealed: SealedSecret::seal(p, 12, bound.as_bytes(), &secret).map_err(|e| match e {
                SecretError::TooShort(n) => {
                    RetentionError::Usage(format!("the reader passphrase must be at least {n} characters"))
                }
                other => RetentionError::Corrupt(other.to_string()),
            })?,
        },
        (None, None) => {
            return Err(RetentionError::Usage("a reader file is wrapped by a KMS key or a passphrase: give one".into()))
        }
    };
    write_new(out, &file)
}

/// What a reader file unlocks.
pub struct ReaderKeys {
    /// Who it was made for.
    pub holder: String,
    /// The network.
    pub network: NetworkId,
    /// The retention device whose archive it reads.
    pub device: DeviceId,
    /// The key its checkpoints are signed with.
    pub signing_public: VerifyingKey,
    /// The archive key.
    pub archive_key: SecretBytes<32>,
}

impl std::fmt::Debug for ReaderKeys {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("ReaderKeys").field("holder", &self.holder).field("device", &self.device).finish_non_exhaustive()
    }
}

/// Opens a reader file (KMS settings from the environment, or `passphrase`).
pub async fn open_reader(path: &Path, passphrase: Option<&str>) -> Result<ReaderKeys, RetentionError> {
    let file = read(path, READER)?;
    let plain = unwrap(&file, READER, passphrase).await?;
    let secret: ReaderSecret =
        serde_json::from_slice(&plain).map_err(|_| RetentionError::Corrupt("the reader file's secret".into()))?;
    let policy = file.device.retention_device()?;
    Ok(ReaderKeys {
        holder: file.holder.unwrap_or_default(),
        network: file.device.network()?,
        device: policy.device_id,
        signing_public: policy.signing_key,
        archive_key: SecretBytes::new(
            unhex(&secret.archive_key)
                .ok_or_else(|| RetentionError::Corrupt("the reader file's archive key".into()))?,
        ),
    })
}

/// Whether the file at `path` is wrapped by KMS (no passphrase needed).
pub fn is_kms_wrapped(path: &Path) -> bool {
    std::fs::read(path)
        .ok()
        .and_then(|raw| serde_json::from_slice::<CustodyFile>(&raw).ok())
        .is_some_and(|f| matches!(f.wrap, Wrap::Kms { .. }))
}
