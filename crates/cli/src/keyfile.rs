//! The network key file: the Ed25519 seed sealed with AES-256-GCM under a key
//! derived from the administrators' passphrase with Argon2id. The server never
//! sees it.

use std::path::Path;

use anyhow::{bail, Context};
use argon2::{Algorithm, Argon2, Params, Version};
use aws_lc_rs::aead::{Aad, LessSafeKey, Nonce, UnboundKey, AES_256_GCM};
use base64::engine::general_purpose::STANDARD;
use base64::Engine as _;
use rand_core::{OsRng, RngCore};
use serde::{Deserialize, Serialize};
use strongroom_crypto::ids::NetworkId;
use strongroom_crypto::keys::{SecretBytes, SigningKey};
use zeroize::Zeroizing;

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
const M_KIB: u32 = 64 * 1024;
const T: u32 = 3;

fn derive(passphrase: &str, salt: &[u8], m: u32, t: u32, p: u32) -> anyhow::Result<Zeroizing<[u8; 32]>> {
    let params = Params::new(m, t, p, Some(32)).map_err(|e| anyhow::anyhow!("bad key file parameters: {e}"))?;
    let mut key = Zeroizing::new([0u8; 32]);
    Argon2::new(Algorithm::Argon2id, Version::V0x13, params)
        .hash_password_into(passphrase.as_bytes(), salt, key.as_mut())
        .map_err(|e| anyhow::anyhow!("key derivation failed: {e}"))?;
    Ok(key)
}

fn aad(network: &NetworkId) -> Vec<u8> {
    let mut v = FORMAT.as_bytes().to_vec();
    v.extend_from_slice(network.as_bytes());
    v
}

/// Writes `key` to `path` (owner-only), refusing to overwrite.
pub fn save(path: &Path, network: &NetworkId, key: &SigningKey, passphrase: &str) -> anyhow::Result<()> {
    if passphrase.chars().count() < 12 {
        bail!("the network key passphrase must be at least 12 characters");
    }
    let mut salt = [0u8; 16];
    let mut nonce = [0u8; 12];
    OsRng.fill_bytes(&mut salt);
    OsRng.fill_bytes(&mut nonce);
    let k = derive(passphrase, &salt, M_KIB, T, 1)?;
    let sealing = LessSafeKey::new(
        UnboundKey::new(&AES_256_GCM, k.as_ref()).map_err(|_| anyhow::anyhow!("AES key setup failed"))?,
    );
    let mut buf = Zeroizing::new(key.expose_seed().expose().to_vec());
    sealing
        .seal_in_place_append_tag(Nonce::assume_unique_for_key(nonce), Aad::from(aad(network)), &mut *buf)
        .map_err(|_| anyhow::anyhow!("sealing the key failed"))?;
    let file = KeyFile {
        format: FORMAT.into(),
        network_id: network.to_string(),
        public_key: STANDARD.encode(key.verifying_key().as_bytes()),
        kdf: "argon2id".into(),
        m_kib: M_KIB,
        t: T,
        p: 1,
        salt: STANDARD.encode(salt),
        nonce: STANDARD.encode(nonce),
        sealed_seed: STANDARD.encode(&*buf),
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
    if file.format != FORMAT || file.kdf != "argon2id" {
        bail!("unsupported key file format {}", file.format);
    }
    if file.m_kib > 4 * 1024 * 1024 || file.t > 64 || file.p > 64 {
        bail!("the key file's key-derivation parameters are out of range");
    }
    let network = NetworkId::parse_hex(&file.network_id).context("the key file's network id is damaged")?;
    let salt = STANDARD.decode(&file.salt).context("damaged salt")?;
    let nonce: [u8; 12] = STANDARD.decode(&file.nonce).ok().and_then(|n| n.try_into().ok()).context("damaged nonce")?;
    let mut sealed = Zeroizing::new(STANDARD.decode(&file.sealed_seed).context("damaged sealed key")?);
    let k = derive(passphrase, &salt, file.m_kib, file.t, file.p)?;
    let opening = LessSafeKey::new(
        UnboundKey::new(&AES_256_GCM, k.as_ref()).map_err(|_| anyhow::anyhow!("AES key setup failed"))?,
    );
    let seed = opening
        .open_in_place(Nonce::assume_unique_for_key(nonce), Aad::from(aad(&network)), &mut sealed)
        .map_err(|_| anyhow::anyhow!("wrong passphrase, or the key file was altered"))?;
    let seed: [u8; 32] = seed.try_into().map_err(|_| anyhow::anyhow!("the key file holds a key of the wrong size"))?;
    let key = SigningKey::from_seed(SecretBytes::new(seed)).map_err(|e| anyhow::anyhow!("{e}"))?;
    if STANDARD.encode(key.verifying_key().as_bytes()) != file.public_key {
        bail!("the key file's public key does not match its private key");
    }
    Ok((network, key))
}

#[cfg(test)]
mod tests {
    use super::*;

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
