//! The retention device's keys: an Ed25519 signing key (relay login and
//! archive checkpoints), an X25519 agreement key (message keys are wrapped
//! to it) and the archive key (records at rest). All three live sealed
//! under the organisation's passphrase in `retention.key`; the public half
//! is `retention-device.json`, which administrators sign into the policy.

use std::path::{Path, PathBuf};

use rand_core::OsRng;
use serde::{Deserialize, Serialize};
use strongroom_crypto::certs::{NetworkFingerprint, RetentionDevice};
use strongroom_crypto::ids::{DeviceId, NetworkId};
use strongroom_crypto::keys::{AgreementPublic, AgreementSecret, SecretBytes, SigningKey, VerifyingKey};
use zeroize::Zeroizing;

use crate::error::io;
use crate::{hex, unhex, RetentionError};
use strongroom_client::sealed_secret::{SealedSecret, SecretError};

const FORMAT: &str = "strongroom-retention-key-v1";
/// The agreement key's id in the policy (a new key would get a new id).
pub const AGREEMENT_KEY_ID: u32 = 1;

/// What administrators need to name this device in the network policy.
#[derive(Debug, Clone, Serialize, Deserialize, PartialEq, Eq)]
pub struct DeviceFile {
    /// File format.
    pub format: String,
    /// Network (hex).
    pub network_id: String,
    /// Device (hex).
    pub device_id: String,
    /// Shown to users.
    pub name: String,
    /// Ed25519 public key (hex).
    pub signing_key: String,
    /// X25519 public key (hex).
    pub agreement_key: String,
    /// Its id.
    pub agreement_key_id: u32,
    /// The network key fingerprint it was created for.
    pub network_fingerprint: String,
}

impl DeviceFile {
    /// Reads and checks a device file.
    pub fn load(path: &Path) -> Result<Self, RetentionError> {
        let raw = std::fs::read(path).map_err(io(path))?;
        let f: DeviceFile = serde_json::from_slice(&raw)
            .map_err(|e| RetentionError::Usage(format!("{} is not a retention device file: {e}", path.display())))?;
        f.retention_device()?;
        Ok(f)
    }

    /// The policy entry for this device.
    pub fn retention_device(&self) -> Result<RetentionDevice, RetentionError> {
        let bad = |what: &str| RetentionError::Usage(format!("the retention device file has a malformed {what}"));
        Ok(RetentionDevice {
            device_id: DeviceId::from_bytes(unhex(&self.device_id).ok_or_else(|| bad("device id"))?),
            signing_key: VerifyingKey::from_bytes(unhex(&self.signing_key).ok_or_else(|| bad("signing key"))?)
                .map_err(|_| bad("signing key"))?,
            agreement_key: AgreementPublic::from_bytes(unhex(&self.agreement_key).ok_or_else(|| bad("agreement key"))?)
                .map_err(|_| bad("agreement key"))?,
            agreement_key_id: self.agreement_key_id,
            versions: strongroom_crypto::suite::SUPPORTED_VERSIONS,
            state: strongroom_crypto::certs::RetentionState::Active,
            name: self.name.clone(),
        })
    }

    /// The network.
    pub fn network(&self) -> Result<NetworkId, RetentionError> {
        NetworkId::parse_hex(&self.network_id)
            .ok_or_else(|| RetentionError::Usage("the retention device file has a malformed network id".into()))
    }
}

#[derive(Serialize, Deserialize)]
struct KeyFile {
    format: String,
    server_url: String,
    network_public: String,
    device: DeviceFile,
    secrets: SealedSecret,
}

#[derive(Serialize, Deserialize)]
struct Secrets {
    signing_seed: String,
    agreement: String,
    archive_key: String,
}

/// The unlocked keys.
pub struct RetentionKeys {
    /// The relay.
    pub server_url: String,
    /// The network key, pinned at `init`.
    pub network_public: VerifyingKey,
    /// The public description.
    pub device: DeviceFile,
    /// Signs relay logins and checkpoints.
    pub signing: SigningKey,
    /// Unwraps message keys.
    pub agreement: AgreementSecret,
    /// Seals archive records.
    pub archive_key: SecretBytes<32>,
}

impl std::fmt::Debug for RetentionKeys {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("RetentionKeys").field("device", &self.device.device_id).finish_non_exhaustive()
    }
}

/// `retention.key` in `dir`.
pub fn key_path(dir: &Path) -> PathBuf {
    dir.join("retention.key")
}

/// `retention-device.json` in `dir`.
pub fn device_path(dir: &Path) -> PathBuf {
    dir.join("retention-device.json")
}

impl RetentionKeys {
    /// Creates fresh keys for `network` (whose key the caller fetched and
    /// showed to the operator by fingerprint) and writes both files into
    /// `dir`, refusing to overwrite.
    pub fn create(
        dir: &Path,
        passphrase: &str,
        server_url: &str,
        network: NetworkId,
        network_public: VerifyingKey,
        name: &str,
    ) -> Result<Self, RetentionError> {
        if name.is_empty() || name.len() > strongroom_crypto::certs::MAX_RETENTION_NAME {
            return Err(RetentionError::Usage("the retention device name must be 1 to 64 bytes".into()));
        }
        strongroom_client::private_fs::private_dir(dir).map_err(io(dir))?;
        if key_path(dir).exists() {
            return Err(RetentionError::Usage(format!(
                "{} already exists: this directory already holds a retention device",
                key_path(dir).display()
            )));
        }
        let signing = SigningKey::generate(&mut OsRng);
        let agreement = AgreementSecret::generate(&mut OsRng);
        let archive_key = SecretBytes::<32>::random(&mut OsRng);
        let device = DeviceFile {
            format: "strongroom-retention-device-v1".into(),
            network_id: network.to_string(),
            device_id: DeviceId::random(&mut OsRng).to_string(),
            name: name.into(),
            signing_key: hex(signing.verifying_key().as_bytes()),
            agreement_key: hex(agreement.public().as_bytes()),
            agreement_key_id: AGREEMENT_KEY_ID,
            network_fingerprint: NetworkFingerprint::of(&network_public).to_string(),
        };
        let keys = Self { server_url: server_url.into(), network_public, device, signing, agreement, archive_key };
        keys.save(dir, passphrase)?;
        Ok(keys)
    }

    /// Writes `retention.key` (sealed under `passphrase`) and
    /// `retention-device.json` into `dir`, refusing to overwrite.
    pub fn save(&self, dir: &Path, passphrase: &str) -> Result<(), RetentionError> {
        strongroom_client::private_fs::private_dir(dir).map_err(io(dir))?;
        if key_path(dir).exists() {
            return Err(RetentionError::Usage(format!(
                "{} already exists: this directory already holds a retention device",
                key_path(dir).display()
            )));
        }
        let secrets = self.secrets_json()?;
        let file = KeyFile {
            format: FORMAT.into(),
            server_url: self.server_url.clone(),
            network_public: hex(self.network_public.as_bytes()),
            device: self.device.clone(),
            secrets: SealedSecret::seal(passphrase, 12, FORMAT.as_bytes(), &secrets).map_err(|e| match e {
                SecretError::TooShort(n) => {
                    RetentionError::Usage(format!("the retention key passphrase must be at least {n} characters"))
                }
                other => RetentionError::Corrupt(other.to_string()),
            })?,
        };
        let json = serde_json::to_vec_pretty(&file).map_err(|e| RetentionError::Corrupt(e.to_string()))?;
        write_private(&key_path(dir), &json)?;
        let public = serde_json::to_vec_pretty(&self.device).map_err(|e| RetentionError::Corrupt(e.to_string()))?;
        std::fs::write(device_path(dir), public).map_err(io(&device_path(dir)))?;
        Ok(())
    }

    /// The three secrets as JSON (for sealing or wrapping).
    pub(crate) fn secrets_json(&self) -> Result<Zeroizing<Vec<u8>>, RetentionError> {
        Ok(Zeroizing::new(
            serde_json::to_vec(&Secrets {
                signing_seed: hex(self.signing.expose_seed().expose()),
                agreement: hex(self.agreement.expose_bytes().expose()),
                archive_key: hex(self.archive_key.expose()),
            })
            .map_err(|e| RetentionError::Corrupt(e.to_string()))?,
        ))
    }

    /// Keys from their public parts and [`RetentionKeys::secrets_json`].
    pub(crate) fn from_secrets(
        server_url: String,
        network_public: VerifyingKey,
        device: DeviceFile,
        plain: &[u8],
    ) -> Result<Self, RetentionError> {
        let s: Secrets = serde_json::from_slice(plain).map_err(|_| RetentionError::Corrupt("key secrets".into()))?;
        let bad = || RetentionError::Corrupt("key secrets".into());
        let signing =
            SigningKey::from_seed(SecretBytes::new(unhex(&s.signing_seed).ok_or_else(bad)?)).map_err(|_| bad())?;
        let agreement =
            AgreementSecret::from_bytes(SecretBytes::new(unhex(&s.agreement).ok_or_else(bad)?)).map_err(|_| bad())?;
        let archive_key = SecretBytes::new(unhex(&s.archive_key).ok_or_else(bad)?);
        if hex(signing.verifying_key().as_bytes()) != device.signing_key
            || hex(agreement.public().as_bytes()) != device.agreement_key
        {
            return Err(RetentionError::Corrupt("the key file's public and private halves differ".into()));
        }
        Ok(Self { server_url, network_public, device, signing, agreement, archive_key })
    }

    /// Unlocks `dir/retention.key`.
    pub fn load(dir: &Path, passphrase: &str) -> Result<Self, RetentionError> {
        let path = key_path(dir);
        let raw = std::fs::read(&path).map_err(io(&path))?;
        let file: KeyFile = serde_json::from_slice(&raw)
            .map_err(|_| RetentionError::Corrupt(format!("{} is not a retention key file", path.display())))?;
        if file.format != FORMAT {
            return Err(RetentionError::Corrupt(format!("{} has an unknown format", path.display())));
        }
        let plain = file.secrets.open(passphrase, FORMAT.as_bytes()).map_err(|e| match e {
            SecretError::Unlock => RetentionError::Unlock(path.display().to_string()),
            other => RetentionError::Corrupt(format!("{}: {other}", path.display())),
        })?;
        let bad = || RetentionError::Corrupt("key secrets".into());
        let network_public =
            VerifyingKey::from_bytes(unhex(&file.network_public).ok_or_else(bad)?).map_err(|_| bad())?;
        Self::from_secrets(file.server_url, network_public, file.device, &plain)
    }

    /// The network.
    pub fn network(&self) -> Result<NetworkId, RetentionError> {
        self.device.network()
    }

    /// This device.
    pub fn device_id(&self) -> Result<DeviceId, RetentionError> {
        Ok(self.device.retention_device()?.device_id)
    }
}

fn write_private(path: &Path, bytes: &[u8]) -> Result<(), RetentionError> {
    use std::io::Write;
    let mut options = std::fs::OpenOptions::new();
    options.write(true).create_new(true);
    #[cfg(unix)]
    std::os::unix::fs::OpenOptionsExt::mode(&mut options, 0o600);
    let mut f = options.open(path).map_err(io(path))?;
    f.write_all(bytes).and_then(|()| f.sync_all()).map_err(io(path))
}
