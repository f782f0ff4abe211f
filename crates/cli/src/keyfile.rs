//! The network key file: the Ed25519 seed sealed under the administrators'
//! passphrase (the SDK's sealed secret: Argon2id, AES-256-GCM, the format and
//! network as associated data). The server never sees it.

use std::path::Path;

use anyhow::{bail, Context};
use base64::engine::general_purpose::STANDARD;
use base64::Engine as _;
use serde::{Deserialize, Serialize};
use strongroom_client::sealed_secret::{SealedSecret, SecretError};
use strongroom_crypto::ids::NetworkId;
use strongroom_crypto::keys::{SecretBytes, SigningKey};

#[derive(Serialize, Deserialize)]
struct KeyFile {
    format: String,
    network_id: String,
    public_key: String,
    kdf: String,
    m_kib: u32,
    t: u32,
    p: u32,
    salt: String,
    nonce: String,
    sealed_seed: String,
}

const FORMAT: &str = "strongroom-network-key-v1";

impl KeyFile {
    /// The sealed seed as the SDK's sealed-secret form (the file keeps its
    /// own field names).
    fn secret(&self) -> SealedSecret {
        SealedSecret {
            kdf: self.kdf.clone(),
            m_kib: self.m_kib,
            t: self.t,
            p: self.p,
            salt: self.salt.clone(),
            nonce: self.nonce.clone(),
            sealed: self.sealed_seed.clone(),
        }
    }
}

/// The associated data: the format and the network, so a key file cannot
/// be passed off as another network's.
fn purpose(network: &NetworkId) -> Vec<u8> {
    let mut v = FORMAT.as_bytes().to_vec();
    v.extend_from_slice(network.as_bytes());
    v
}

/// Writes `key` to `path` (owner-only), refusing to overwrite.
pub fn save(path: &Path, network: &NetworkId, key: &SigningKey, passphrase: &str) -> anyhow::Result<()> {
    let secret = SealedSecret::seal(passphrase, 12, &purpose(network), key.expose_seed().expose())
        .map_err(|e| anyhow::anyhow!("the network key passphrase: {e}"))?;
    let file = KeyFile {
        format: FORMAT.into(),
        network_id: network.to_string(),
        public_key: STANDARD.encode(key.verifying_key().as_bytes()),
        kdf: secret.kdf,
        m_kib: secret.m_kib,
        t: secret.t,
        p: secret.p,
        salt: secret.salt,
        nonce: secret.nonce,
        sealed_seed: secret.sealed,
    };
    let json = serde_json::to_string_pretty(&file)?;
    let mut opts = std::fs::OpenOptions::new();
    opts.write(true).create_new(true);
    #[cfg(unix)]
    std::os::unix::fs::OpenOptionsExt::mode(&mut opts, 0o600);
    use std::io::Write;
    opts.open(path)
        .with_context(|| format!("cannot create key file {} (it must not exist yet)", path.display()))?
        .write_all(json.as_bytes())?;
    Ok(())
}

/// Reads and decrypts a key file.
pub fn load(path: &Path, passphrase: &str) -> anyhow::Result<(NetworkId, SigningKey)> {
    let text = std::fs::read_to_string(path).with_context(|| format!("cannot read key file {}", path.display()))?;
    let file: KeyFile = serde_json::from_str(&text).context("the key file is not a Strongroom network key file")?;
    if file.format != FORMAT {
        bail!("unsupported key file format {}", file.format);
    }
    let network = NetworkId::parse_hex(&file.network_id).context("the key file's network id is damaged")?;
    let seed = file.secret().open(passphrase, &purpose(&network)).map_err(|e| match e {
        SecretError::Unlock => anyhow::anyhow!("wrong passphrase, or the key file was altered"),
        other => anyhow::anyhow!("the key file {}: {other}", path.display()),
    })?;
    let seed: [u8; 32] =
        seed.as_slice().try_into().map_err(|_| anyhow::anyhow!("the key file holds a key of the wrong size"))?;
    let key = SigningKey::from_seed(SecretBytes::new(seed)).map_err(|e| anyhow::anyhow!("{e}"))?;
    if STANDARD.encode(key.verifying_key().as_bytes()) != file.public_key {
        bail!("the key file's public key does not match its private key");
    }
    Ok((network, key))
}

#[cfg(test)]
mod tests {
    use super::*;
    use rand_core::OsRng;

    #[test]
    fn round_trip_wrong_passphrase_and_tamper() {
        let dir = std::env::temp_dir().join(format!("sr-keyfile-{}", std::process::id()));
        let _ = std::fs::remove_dir_all(&dir);
        std::fs::create_dir_all(&dir).unwrap();
        let path = dir.join("network.key");
        let key = SigningKey::generate(&mut OsRng);
        let net = NetworkId::random(&mut OsRng);
        assert!(save(&path, &net, &key, "short").is_err());
        save(&path, &net, &key, "correct horse battery").unwrap();
        assert!(save(&path, &net, &key, "correct horse battery").is_err(), "never overwrites");
        let text = std::fs::read_to_string(&path).unwrap();
        assert!(!text.contains(&STANDARD.encode(key.expose_seed().expose())));
        let (n, k) = load(&path, "correct horse battery").unwrap();
        assert_eq!((n, k.verifying_key()), (net, key.verifying_key()));
        let err = load(&path, "wrong passphrase!").unwrap_err().to_string();
        assert!(err.contains("wrong passphrase"), "{err}");
        let tampered = text.replace(&net.to_string(), &NetworkId::from_bytes([0; 16]).to_string());
        std::fs::write(&path, tampered).unwrap();
        assert!(load(&path, "correct horse battery").is_err());
        let _ = std::fs::remove_dir_all(&dir);
    }
}
