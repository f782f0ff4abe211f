//! Linking a new device by approval from an existing one.
//!
//! The new device makes its signing key and an ephemeral X25519 link key and
//! shows a link code: the first 10 bytes of
//! `SHA-256("strongroom/v2/link-code" | 0x00 | network | user | device |
//! signing key | link key)`
//! as 20 hex digits. The approving device accepts only the pending request
//! whose code matches what the person reads off the new device — so a server
//! cannot substitute its own keys — signs a device list that includes it, and
//! seals the identity key — with the network key it pinned, which the new
//! device has no invite to learn from — to the link key:
//!
//! ```text
//! e ← fresh X25519;  shared = X25519(e, link key)
//! key = HKDF-SHA256(salt = "", IKM = shared,
//!                   info = "strongroom/v2/link-identity" | 0x00 | network | user | device | link key | E)
//! sealed = E (32) | AES-256-GCM(key, nonce = 0^12, aad = network | user | device,
//!                               identity seed (32) | network public key (32))   (112 bytes)
//! ```

use rand_core::{CryptoRng, RngCore};
use subtle::ConstantTimeEq;

use crate::ids::{DeviceId, NetworkId, UserId};
use crate::keys::{AgreementPublic, AgreementSecret, KeyError, SecretBytes, VerifyingKey};
use crate::primitives::{self, sha256, AEAD_TAG_LEN};
use crate::suite::label;

/// Length of a sealed identity key.
pub const SEALED_IDENTITY_LEN: usize = 32 + 64 + AEAD_TAG_LEN;

/// The device being linked, scoped by network and account.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct LinkTarget {
    /// Network.
    pub network_id: NetworkId,
    /// The account it joins.
    pub user_id: UserId,
    /// The new device.
    pub device_id: DeviceId,
}

impl LinkTarget {
    fn bytes(&self) -> [u8; 48] {
        let mut out = [0u8; 48];
        let (n, rest) = out.split_at_mut(16);
        let (u, d) = rest.split_at_mut(16);
        n.copy_from_slice(self.network_id.as_bytes());
        u.copy_from_slice(self.user_id.as_bytes());
        d.copy_from_slice(self.device_id.as_bytes());
        out
    }
}

/// The code a new device shows for approval.
#[derive(Clone, Copy, PartialEq, Eq)]
pub struct LinkCode([u8; 10]);

impl LinkCode {
    /// The code for a device's keys.
    pub fn of(target: &LinkTarget, signing_key: &VerifyingKey, link_key: &AgreementPublic) -> Self {
        let h = sha256(&[label::LINK_CODE, &[0], &target.bytes(), signing_key.as_bytes(), link_key.as_bytes()]);
        let mut c = [0u8; 10];
        c.copy_from_slice(h.get(..10).unwrap_or(&[0u8; 10]));
        Self(c)
    }

    /// Parses the shown form (hex digits; spaces and dashes ignored).
    pub fn parse(s: &str) -> Option<Self> {
        let compact: String = s.chars().filter(|c| c.is_ascii_hexdigit()).collect();
        crate::hex::decode_array(&compact).map(Self)
    }

    /// Whether `other` is this code (constant time).
    pub fn matches(&self, other: &LinkCode) -> bool {
        bool::from(self.0.ct_eq(&other.0))
    }
}

impl std::fmt::Display for LinkCode {
    /// Five groups of four hex digits.
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        let hex = crate::hex::encode(&self.0);
        let groups: Vec<&str> = (0..5).filter_map(|i| hex.get(i * 4..i * 4 + 4)).collect();
        f.write_str(&groups.join("-"))
    }
}

impl std::fmt::Debug for LinkCode {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "LinkCode({self})")
    }
}

/// Why a sealed identity key could not be opened.
#[derive(Debug, Clone, Copy, PartialEq, Eq, thiserror::Error)]
#[non_exhaustive]
pub enum LinkError {
    /// Wrong length.
    #[error("sealed identity key must be {SEALED_IDENTITY_LEN} bytes")]
    Length,
    /// Bad ephemeral key.
    #[error("{0}")]
    Key(#[from] KeyError),
    /// Does not authenticate for this device and link key.
    #[error("the sealed identity key does not authenticate (wrong device or altered)")]
    Open,
    /// Backend failure.
    #[error("cryptographic backend failure")]
    Backend,
}

fn derive(
    shared: &SecretBytes<32>,
    target: &LinkTarget,
    link_key: &AgreementPublic,
    eph: &AgreementPublic,
) -> Result<SecretBytes<32>, LinkError> {
    primitives::hkdf_sha256_key(
        &[],
        shared.expose(),
        &[label::LINK, &[0], &target.bytes(), link_key.as_bytes(), eph.as_bytes()],
    )
    .map_err(|_| LinkError::Backend)
}

/// Seals the identity key's seed and the pinned network key to a new
/// device's link key.
pub fn seal_identity(
    identity_seed: &SecretBytes<32>,
    network_key: &VerifyingKey,
    target: &LinkTarget,
    link_key: &AgreementPublic,
    rng: &mut (impl RngCore + CryptoRng),
) -> Result<Vec<u8>, LinkError> {
    seal_identity_with(identity_seed, network_key, target, link_key, SecretBytes::random(rng))
}

/// [`seal_identity`] with a given ephemeral private key (test vectors; never
/// reuse one).
pub fn seal_identity_with(
    identity_seed: &SecretBytes<32>,
    network_key: &VerifyingKey,
    target: &LinkTarget,
    link_key: &AgreementPublic,
    ephemeral: SecretBytes<32>,
) -> Result<Vec<u8>, LinkError> {
    let e = AgreementSecret::from_bytes(ephemeral)?;
    let shared = e.diffie_hellman(link_key)?;
    let key = derive(&shared, target, link_key, &e.public())?;
    let mut buf = zeroize::Zeroizing::new([0u8; 64]);
    let (seed_part, network_part) = buf.split_at_mut(32);
    seed_part.copy_from_slice(identity_seed.expose());
    network_part.copy_from_slice(network_key.as_bytes());
    let tag = primitives::aes256gcm_seal(key.expose(), [0; 12], &target.bytes(), buf.as_mut_slice())
        .map_err(|_| LinkError::Backend)?;
    let mut out = Vec::with_capacity(SEALED_IDENTITY_LEN);
    out.extend_from_slice(e.public().as_bytes());
    out.extend_from_slice(buf.as_slice());
    out.extend_from_slice(&tag);
    Ok(out)
}

/// Opens a sealed identity seed and network key with the new device's link secret.
pub fn open_identity(
    sealed: &[u8],
    target: &LinkTarget,
    link_secret: &AgreementSecret,
) -> Result<(SecretBytes<32>, VerifyingKey), LinkError> {
    if sealed.len() != SEALED_IDENTITY_LEN {
        return Err(LinkError::Length);
    }
    let (eph, rest) = sealed.split_at(32);
    let (ct, tag) = rest.split_at(64);
    let eph = AgreementPublic::from_bytes(eph.try_into().map_err(|_| LinkError::Length)?)?;
    let shared = link_secret.diffie_hellman(&eph)?;
    let key = derive(&shared, target, &link_secret.public(), &eph)?;
    let mut buf = zeroize::Zeroizing::new([0u8; 64]);
    buf.copy_from_slice(ct);
    let tag: [u8; AEAD_TAG_LEN] = tag.try_into().map_err(|_| LinkError::Length)?;
    primitives::aes256gcm_open(key.expose(), [0; 12], &target.bytes(), buf.as_mut_slice(), &tag)
        .map_err(|_| LinkError::Open)?;
    let (seed_part, network_part) = buf.split_at(32);
    let mut seed = [0u8; 32];
    seed.copy_from_slice(seed_part);
    let mut network = [0u8; 32];
    network.copy_from_slice(network_part);
    Ok((SecretBytes::new(seed), VerifyingKey::from_bytes(network)?))
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::keys::SigningKey;
    use rand_core::OsRng;

    #[test]
    fn code_binds_keys_and_identity_transfer_round_trips() {
        let device = LinkTarget {
            network_id: NetworkId::random(&mut OsRng),
            user_id: UserId::random(&mut OsRng),
            device_id: DeviceId::random(&mut OsRng),
        };
        let signing = SigningKey::generate(&mut OsRng).verifying_key();
        let link = AgreementSecret::generate(&mut OsRng);
        let code = LinkCode::of(&device, &signing, &link.public());
        assert_eq!(LinkCode::parse(&code.to_string()), Some(code));
        assert_eq!(code.to_string().len(), 24);
        let other = AgreementSecret::generate(&mut OsRng);
        assert!(
            !code.matches(&LinkCode::of(&device, &signing, &other.public())),
            "a substituted link key changes the code"
        );

        let seed = SecretBytes::new([7u8; 32]);
        let network = SigningKey::generate(&mut OsRng).verifying_key();
        let sealed = seal_identity(&seed, &network, &device, &link.public(), &mut OsRng).unwrap();
        assert_eq!(sealed.len(), SEALED_IDENTITY_LEN);
        assert_eq!(open_identity(&sealed, &device, &link).unwrap(), (seed, network));
        assert_eq!(open_identity(&sealed, &device, &other).unwrap_err(), LinkError::Open);
        let elsewhere = LinkTarget { network_id: NetworkId::random(&mut OsRng), ..device };
        assert_eq!(open_identity(&sealed, &elsewhere, &link).unwrap_err(), LinkError::Open);
        let other_user = LinkTarget { user_id: UserId::random(&mut OsRng), ..device };
        assert_eq!(open_identity(&sealed, &other_user, &link).unwrap_err(), LinkError::Open);
        let mut bad = sealed.clone();
        bad[40] ^= 1;
        assert_eq!(open_identity(&bad, &device, &link).unwrap_err(), LinkError::Open);
        assert_eq!(open_identity(&sealed[..10], &device, &link).unwrap_err(), LinkError::Length);
    }
}
