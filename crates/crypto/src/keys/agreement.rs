use aws_lc_rs::agreement::{self, PrivateKey, UnparsedPublicKey, X25519};
use rand_core::{CryptoRng, RngCore};

use super::{KeyError, SecretBytes};

/// An X25519 public key (a pre-key, an ephemeral key or a retention key).
#[derive(Clone, Copy, PartialEq, Eq, Hash)]
pub struct AgreementPublic(pub(crate) [u8; 32]);

/// An X25519 private key. The raw scalar is wiped on drop and never printed.
pub struct AgreementSecret {
    bytes: SecretBytes<32>,
    key: PrivateKey,
    public: AgreementPublic,
}

impl AgreementSecret {
    /// A new key from a cryptographic RNG.
    pub fn generate(rng: &mut (impl RngCore + CryptoRng)) -> Self {
        // Every 32-byte string is a valid X25519 scalar (it is clamped).
        Self::from_bytes(SecretBytes::random(rng)).unwrap_or_else(|_| std::process::abort())
    }

    /// Rebuilds a key from its 32 private bytes (RFC 7748 encoding).
    pub fn from_bytes(bytes: SecretBytes<32>) -> Result<Self, KeyError> {
        let key = PrivateKey::from_private_key(&X25519, bytes.expose()).map_err(|_| KeyError::InvalidKey("X25519"))?;
        let public = key.compute_public_key().map_err(|_| KeyError::InvalidKey("X25519"))?;
        let mut pk = [0u8; 32];
        if public.as_ref().len() != 32 {
            return Err(KeyError::InvalidKey("X25519"));
        }
        pk.copy_from_slice(public.as_ref());
        Ok(Self { bytes, key, public: AgreementPublic(pk) })
    }

    /// The private bytes, for saving under encryption. Treat as secret.
    pub fn expose_bytes(&self) -> &SecretBytes<32> {
        &self.bytes
    }

    /// The public half.
    pub fn public(&self) -> AgreementPublic {
        self.public
    }

    /// X25519(self, peer). Refuses an all-zero result, which a low-order peer
    /// key would force.
    pub fn diffie_hellman(&self, peer: &AgreementPublic) -> Result<SecretBytes<32>, KeyError> {
        let mut out = SecretBytes::<32>::zero();
        agreement::agree(&self.key, UnparsedPublicKey::new(&X25519, &peer.0), KeyError::WeakAgreement, |shared| {
            if shared.len() != 32 {
                return Err(KeyError::WeakAgreement);
            }
            out.as_mut().copy_from_slice(shared);
            Ok(())
        })?;
        if out.is_zero() {
            return Err(KeyError::WeakAgreement);
        }
        Ok(out)
    }
}

impl std::fmt::Debug for AgreementSecret {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("AgreementSecret").field("public", &self.public).finish_non_exhaustive()
    }
}

impl AgreementPublic {
    /// Decodes public key bytes, refusing a non-canonical u-coordinate or
    /// one of small order (PROTOCOL.md §2.1).
    pub fn from_bytes(bytes: [u8; 32]) -> Result<Self, KeyError> {
        super::point::check_x25519(&bytes)?;
        Ok(Self(bytes))
    }

    /// The 32 public key bytes.
    pub fn as_bytes(&self) -> &[u8; 32] {
        &self.0
    }
}

impl std::fmt::Debug for AgreementPublic {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "AgreementPublic({})", crate::hex::encode(&self.0))
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::hex;

    #[test]
    fn rfc7748_section_6_1() {
        let a = AgreementSecret::from_bytes(SecretBytes::new(
            hex::decode_array("77076d0a7318a57d3c16c17251b26645df4c2f87ebc0992ab177fba51db92c2a").unwrap(),
        ))
        .unwrap();
        let b = AgreementSecret::from_bytes(SecretBytes::new(
            hex::decode_array("5dab087e624a8a4b79e17f8b83800ee66f3bb1292618b6fd1c2f8b27ff88e0eb").unwrap(),
        ))
        .unwrap();
        assert_eq!(
            hex::encode(a.public().as_bytes()),
            "8520f0098930a754748b7ddcb43ef75a0dbf3a0d26381af4eba4a98eaa9b4e6a"
        );
        let k1 = a.diffie_hellman(&b.public()).unwrap();
        let k2 = b.diffie_hellman(&a.public()).unwrap();
        assert_eq!(hex::encode(k1.expose()), "4a5d9d5ba4ce2de1728e3bf480350f25e07e21c947d19e3376f09b3c1e161742");
        assert_eq!(k1, k2);
    }

    #[test]
    fn low_order_peer_is_refused() {
        let a = AgreementSecret::from_bytes(SecretBytes::new([9u8; 32])).unwrap();
        for point in [[0u8; 32], {
            let mut p = [0u8; 32];
            p[0] = 1;
            p
        }] {
            assert_eq!(a.diffie_hellman(&AgreementPublic(point)).unwrap_err(), KeyError::WeakAgreement);
        }
    }
}
