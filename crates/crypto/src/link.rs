//! Linking a new device by approval from an existing one.
//!
//! The new device makes its signing key, an ephemeral X25519 link key and a
//! 10-byte random **link secret**, and shows a link code that carries
//! the secret and a check binding it to the device's keys:
//!
//! ```text
//! check = first 6 bytes of SHA-256("strongroom/v2/link-code" | 0x00 | secret
//!                                  | network | user | device | signing key | link key)
//! code  = secret (10) | check (6), shown as 32 hex digits
//! ```
//!
//! The secret never goes to the relay. The approving device accepts only the
//! pending request whose keys give the check in the code the person typed or
//! scanned (so a relay cannot substitute keys), signs a device list that
//! includes it, and seals the account's identity *public* key and the network
//! key it pinned to the link key, under a key derived with the secret as HKDF
//! salt. The identity private key never leaves the primary device: a linked
//! device can be revoked for good because it never held what signs lists.
//!
//! ```text
//! e ← fresh X25519;  shared = X25519(e, link key)
//! key = HKDF-SHA256(salt = secret, IKM = shared,
//!                   info = "strongroom/v2/link-transfer" | 0x00 | network | user | device | link key | E)
//! sealed = E (32) | AES-256-GCM(key, nonce = 0^12, aad = network | user | device,
//!                               identity public key (32) | network public key (32))   (112 bytes)
//! ```
//!
//! Every input but the secret is public to the relay, so without it the
//! relay could seal its own identity and network key to the link key and the
//! new device would pin them. With it, only a device holding what the
//! person saw can make a transfer the new device opens.

use rand_core::{CryptoRng, RngCore};
use subtle::ConstantTimeEq;

use crate::ids::{DeviceId, NetworkId, UserId};
use crate::keys::{AgreementPublic, AgreementSecret, KeyError, SecretBytes, VerifyingKey};
use crate::primitives::{self, sha256, AEAD_TAG_LEN};
use crate::suite::label;

/// Length of a sealed link transfer.
pub const SEALED_TRANSFER_LEN: usize = 32 + 64 + AEAD_TAG_LEN;

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

/// Length of the link secret in a code.
pub const LINK_SECRET_LEN: usize = 10;
const CHECK_LEN: usize = 6;

/// The code a new device shows for approval: its link secret and a check
/// binding the secret to the device's keys. Wiped on drop; never printed by
/// `Debug`.
#[derive(Clone)]
pub struct LinkCode {
    secret: zeroize::Zeroizing<[u8; LINK_SECRET_LEN]>,
    check: [u8; CHECK_LEN],
}

fn check_of(
    secret: &[u8; LINK_SECRET_LEN],
    target: &LinkTarget,
    signing_key: &VerifyingKey,
    link_key: &AgreementPublic,
) -> [u8; CHECK_LEN] {
    let h = sha256(&[label::LINK_CODE, &[0], secret, &target.bytes(), signing_key.as_bytes(), link_key.as_bytes()]);
    let mut c = [0u8; CHECK_LEN];
    c.copy_from_slice(h.get(..CHECK_LEN).unwrap_or(&[0u8; CHECK_LEN]));
    c
}

impl LinkCode {
    /// A new device's code, with a fresh secret.
    pub fn generate(
        target: &LinkTarget,
        signing_key: &VerifyingKey,
        link_key: &AgreementPublic,
        rng: &mut (impl RngCore + CryptoRng),
    ) -> Self {
        let mut secret = zeroize::Zeroizing::new([0u8; LINK_SECRET_LEN]);
        rng.fill_bytes(secret.as_mut());
        Self::with_secret(*secret, target, signing_key, link_key)
    }

    /// The code for a given secret (test vectors; use [`LinkCode::generate`]).
    pub fn with_secret(
        secret: [u8; LINK_SECRET_LEN],
        target: &LinkTarget,
        signing_key: &VerifyingKey,
        link_key: &AgreementPublic,
    ) -> Self {
        let check = check_of(&secret, target, signing_key, link_key);
        Self { secret: zeroize::Zeroizing::new(secret), check }
    }

    /// Parses the shown form: 32 hex digits (other characters ignored).
    pub fn parse(s: &str) -> Option<Self> {
        let compact: zeroize::Zeroizing<String> =
            zeroize::Zeroizing::new(s.chars().filter(|c| c.is_ascii_hexdigit()).collect());
        let all: zeroize::Zeroizing<[u8; LINK_SECRET_LEN + CHECK_LEN]> =
            zeroize::Zeroizing::new(crate::hex::decode_array(&compact)?);
        let (secret, check) = all.split_at(LINK_SECRET_LEN);
        Some(Self { secret: zeroize::Zeroizing::new(secret.try_into().ok()?), check: check.try_into().ok()? })
    }

    /// Whether this code was made for exactly these keys (constant time).
    pub fn binds(&self, target: &LinkTarget, signing_key: &VerifyingKey, link_key: &AgreementPublic) -> bool {
        bool::from(check_of(&self.secret, target, signing_key, link_key).ct_eq(&self.check))
    }
}

impl std::fmt::Display for LinkCode {
    /// Eight groups of four hex digits (it is meant to be shown: the person
    /// carries it to the approving device).
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        let mut all = zeroize::Zeroizing::new([0u8; LINK_SECRET_LEN + CHECK_LEN]);
        let (a, b) = all.split_at_mut(LINK_SECRET_LEN);
        a.copy_from_slice(self.secret.as_ref());
        b.copy_from_slice(&self.check);
        let hex = zeroize::Zeroizing::new(crate::hex::encode(all.as_ref()));
        let groups: Vec<&str> = (0..8).filter_map(|i| hex.get(i * 4..i * 4 + 4)).collect();
        f.write_str(&groups.join("-"))
    }
}

impl PartialEq for LinkCode {
    /// Constant time: the secret is compared.
    fn eq(&self, other: &Self) -> bool {
        bool::from(self.secret.as_ref().ct_eq(other.secret.as_ref()) & self.check.ct_eq(&other.check))
    }
}

impl Eq for LinkCode {}

impl std::fmt::Debug for LinkCode {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("LinkCode(redacted)")
    }
}

/// Why a sealed link transfer could not be opened.
#[derive(Debug, Clone, Copy, PartialEq, Eq, thiserror::Error)]
#[non_exhaustive]
pub enum LinkError {
    /// Wrong length.
    #[error("a sealed link transfer must be {SEALED_TRANSFER_LEN} bytes")]
    Length,
    /// Bad ephemeral key.
    #[error("{0}")]
    Key(#[from] KeyError),
    /// Does not authenticate for this device, link key and link secret:
    /// altered, or made by someone who never saw the code.
    #[error("the link transfer does not authenticate (wrong device, altered, or not made by a device that saw this link code)")]
    Open,
    /// Backend failure.
    #[error("cryptographic backend failure")]
    Backend,
}

fn derive(
    shared: &SecretBytes<32>,
    code: &LinkCode,
    target: &LinkTarget,
    link_key: &AgreementPublic,
    eph: &AgreementPublic,
) -> Result<SecretBytes<32>, LinkError> {
    primitives::hkdf_sha256_key(
        code.secret.as_ref(),
        shared.expose(),
        &[label::LINK, &[0], &target.bytes(), link_key.as_bytes(), eph.as_bytes()],
    )
    .map_err(|_| LinkError::Backend)
}

/// Seals the account's identity public key and the pinned network key to a
/// new device's link key, under the secret of the code the person carried.
pub fn seal_transfer(
    identity_key: &VerifyingKey,
    network_key: &VerifyingKey,
    target: &LinkTarget,
    link_key: &AgreementPublic,
    code: &LinkCode,
    rng: &mut (impl RngCore + CryptoRng),
) -> Result<Vec<u8>, LinkError> {
    seal_transfer_with(identity_key, network_key, target, link_key, code, SecretBytes::random(rng))
}

/// [`seal_transfer`] with a given ephemeral private key (test vectors; never
/// reuse one).
pub fn seal_transfer_with(
    identity_key: &VerifyingKey,
    network_key: &VerifyingKey,
    target: &LinkTarget,
    link_key: &AgreementPublic,
    code: &LinkCode,
    ephemeral: SecretBytes<32>,
) -> Result<Vec<u8>, LinkError> {
    let e = AgreementSecret::from_bytes(ephemeral)?;
    let shared = e.diffie_hellman(link_key)?;
    let key = derive(&shared, code, target, link_key, &e.public())?;
    let mut buf = [0u8; 64];
    let (identity_part, network_part) = buf.split_at_mut(32);
    identity_part.copy_from_slice(identity_key.as_bytes());
    network_part.copy_from_slice(network_key.as_bytes());
    let tag = primitives::aes256gcm_seal(key.expose(), [0; 12], &target.bytes(), buf.as_mut_slice())
        .map_err(|_| LinkError::Backend)?;
    let mut out = Vec::with_capacity(SEALED_TRANSFER_LEN);
    out.extend_from_slice(e.public().as_bytes());
    out.extend_from_slice(buf.as_slice());
    out.extend_from_slice(&tag);
    Ok(out)
}

/// Opens a sealed link transfer with the new device's link key and the code
/// it showed: the account's identity key and the network key, to pin.
pub fn open_transfer(
    sealed: &[u8],
    target: &LinkTarget,
    link_secret: &AgreementSecret,
    code: &LinkCode,
) -> Result<(VerifyingKey, VerifyingKey), LinkError> {
    if sealed.len() != SEALED_TRANSFER_LEN {
        return Err(LinkError::Length);
    }
    let (eph, rest) = sealed.split_at(32);
    let (ct, tag) = rest.split_at(64);
    let eph = AgreementPublic::from_bytes(eph.try_into().map_err(|_| LinkError::Length)?)?;
    let shared = link_secret.diffie_hellman(&eph)?;
    let key = derive(&shared, code, target, &link_secret.public(), &eph)?;
    let mut buf = [0u8; 64];
    buf.copy_from_slice(ct);
    let tag: [u8; AEAD_TAG_LEN] = tag.try_into().map_err(|_| LinkError::Length)?;
    primitives::aes256gcm_open(key.expose(), [0; 12], &target.bytes(), buf.as_mut_slice(), &tag)
        .map_err(|_| LinkError::Open)?;
    let (identity_part, network_part) = buf.split_at(32);
    let mut identity = [0u8; 32];
    identity.copy_from_slice(identity_part);
    let mut network = [0u8; 32];
    network.copy_from_slice(network_part);
    Ok((VerifyingKey::from_bytes(identity)?, VerifyingKey::from_bytes(network)?))
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::keys::SigningKey;
    use rand_core::OsRng;

    /// A new device: its target, signing key, link key and code.
    fn new_device() -> (LinkTarget, VerifyingKey, AgreementSecret, LinkCode) {
        let device = LinkTarget {
            network_id: NetworkId::random(&mut OsRng),
            user_id: UserId::random(&mut OsRng),
            device_id: DeviceId::random(&mut OsRng),
        };
        let signing = SigningKey::generate(&mut OsRng).verifying_key();
        let link = AgreementSecret::generate(&mut OsRng);
        let code = LinkCode::generate(&device, &signing, &link.public(), &mut OsRng);
        (device, signing, link, code)
    }

    #[test]
    fn code_binds_keys_and_the_transfer_round_trips() {
        let (device, signing, link, code) = new_device();
        let shown = code.to_string();
        assert_eq!(shown.len(), 39, "eight groups of four hex digits");
        assert_eq!(LinkCode::parse(&shown), Some(code.clone()));
        assert_eq!(LinkCode::parse(&shown.to_uppercase().replace('-', " ")), Some(code.clone()));
        assert!(LinkCode::parse(&shown[..30]).is_none());
        assert!(!format!("{code:?}").contains(&shown[..4]), "Debug never shows the secret");
        assert!(code.binds(&device, &signing, &link.public()));
        let other = AgreementSecret::generate(&mut OsRng);
        assert!(!code.binds(&device, &signing, &other.public()), "a substituted link key fails the check");
        let other_signing = SigningKey::generate(&mut OsRng).verifying_key();
        assert!(!code.binds(&device, &other_signing, &link.public()), "a substituted signing key fails the check");

        let identity = SigningKey::generate(&mut OsRng).verifying_key();
        let network = SigningKey::generate(&mut OsRng).verifying_key();
        let sealed = seal_transfer(&identity, &network, &device, &link.public(), &code, &mut OsRng).unwrap();
        assert_eq!(sealed.len(), SEALED_TRANSFER_LEN);
        assert_eq!(open_transfer(&sealed, &device, &link, &code).unwrap(), (identity, network));
        assert_eq!(open_transfer(&sealed, &device, &other, &code).unwrap_err(), LinkError::Open);
        let elsewhere = LinkTarget { network_id: NetworkId::random(&mut OsRng), ..device };
        assert_eq!(open_transfer(&sealed, &elsewhere, &link, &code).unwrap_err(), LinkError::Open);
        let other_user = LinkTarget { user_id: UserId::random(&mut OsRng), ..device };
        assert_eq!(open_transfer(&sealed, &other_user, &link, &code).unwrap_err(), LinkError::Open);
        let mut bad = sealed.clone();
        bad[40] ^= 1;
        assert_eq!(open_transfer(&bad, &device, &link, &code).unwrap_err(), LinkError::Open);
        assert_eq!(open_transfer(&sealed[..10], &device, &link, &code).unwrap_err(), LinkError::Length);
    }

    /// The relay knows every input of the transfer but the secret: a
    /// transfer it seals (its own identity and network key, to the link
    /// key it saw) does not open on the new device.
    #[test]
    fn a_transfer_sealed_without_the_secret_is_refused() {
        let (device, signing, link, code) = new_device();
        let rogue_identity = SigningKey::generate(&mut OsRng).verifying_key();
        let rogue_network = SigningKey::generate(&mut OsRng).verifying_key();
        let guessed = LinkCode::generate(&device, &signing, &link.public(), &mut OsRng);
        let forged =
            seal_transfer(&rogue_identity, &rogue_network, &device, &link.public(), &guessed, &mut OsRng).unwrap();
        assert_eq!(open_transfer(&forged, &device, &link, &code).unwrap_err(), LinkError::Open);
    }
}
