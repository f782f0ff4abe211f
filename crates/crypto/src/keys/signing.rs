use aws_lc_rs::signature::{self, Ed25519KeyPair, KeyPair};
use rand_core::{CryptoRng, RngCore};

use super::{KeyError, SecretBytes};

/// An Ed25519 public key.
#[derive(Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub struct VerifyingKey(pub(crate) [u8; 32]);

/// An Ed25519 signature.
#[derive(Clone, Copy, PartialEq, Eq)]
pub struct Signature(pub(crate) [u8; 64]);

/// An Ed25519 private key (network, identity or device key).
///
/// Holds the 32-byte seed (wiped on drop) and the expanded key the backend
/// signs with. Has no `Debug` that could print the seed.
pub struct SigningKey {
    seed: SecretBytes<32>,
    pair: Ed25519KeyPair,
    public: VerifyingKey,
}

impl SigningKey {
    /// A new key from a cryptographic RNG.
    pub fn generate(rng: &mut (impl RngCore + CryptoRng)) -> Self {
        let seed = SecretBytes::<32>::random(rng);
        // A 32-byte seed is always a valid Ed25519 private key.
        Self::from_seed(seed).unwrap_or_else(|_| unreachable_seed())
    }

    /// Rebuilds a key from its RFC 8032 seed.
    pub fn from_seed(seed: SecretBytes<32>) -> Result<Self, KeyError> {
        let pair = Ed25519KeyPair::from_seed_unchecked(seed.expose()).map_err(|_| KeyError::InvalidKey("Ed25519"))?;
        let mut public = [0u8; 32];
        public.copy_from_slice(pair.public_key().as_ref());
        Ok(Self { seed, pair, public: VerifyingKey(public) })
    }

    /// The seed, for saving the key under encryption. Treat as secret.
    pub fn expose_seed(&self) -> &SecretBytes<32> {
        &self.seed
    }

    /// The public half.
    pub fn verifying_key(&self) -> VerifyingKey {
        self.public
    }

    /// Signs `message` (deterministic, RFC 8032).
    pub fn sign(&self, message: &[u8]) -> Signature {
        let mut out = [0u8; 64];
        out.copy_from_slice(self.pair.sign(message).as_ref());
        Signature(out)
    }
}

#[cold]
fn unreachable_seed() -> SigningKey {
    // Ed25519 accepts every 32-byte seed; the backend only fails on a wrong
    // length, which the type rules out. Abort rather than continue with a
    // predictable key if a backend ever breaks that promise.
    std::process::abort()
}

impl std::fmt::Debug for SigningKey {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("SigningKey").field("public", &self.public).finish_non_exhaustive()
    }
}

impl VerifyingKey {
    /// Decodes public key bytes, refusing anything that is not a canonical
    /// encoding of a curve point outside the small-order subgroup
    /// (PROTOCOL.md §2.1).
    pub fn from_bytes(bytes: [u8; 32]) -> Result<Self, KeyError> {
        super::point::check_ed25519(&bytes)?;
        Ok(Self(bytes))
    }

    /// The 32 public key bytes.
    pub fn as_bytes(&self) -> &[u8; 32] {
        &self.0
    }

    /// Checks `signature` over `message`.
    pub fn verify(&self, message: &[u8], signature: &Signature) -> Result<(), KeyError> {
        signature::UnparsedPublicKey::new(&signature::ED25519, &self.0)
            .verify(message, &signature.0)
            .map_err(|_| KeyError::BadSignature)
    }
}

impl std::fmt::Debug for VerifyingKey {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "VerifyingKey({})", crate::hex::encode(&self.0))
    }
}

impl Signature {
    /// Wraps signature bytes.
    pub fn from_bytes(bytes: [u8; 64]) -> Self {
        Self(bytes)
    }

    /// The 64 signature bytes.
    pub fn as_bytes(&self) -> &[u8; 64] {
        &self.0
    }
}

impl std::fmt::Debug for Signature {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "Signature({})", crate::hex::encode(&self.0))
    }
}

/// Builds the bytes a signature covers: a domain-separation label, a zero
/// byte, then the encoded body. Distinct labels keep a signature made for one
/// kind of object from ever verifying as another.
pub(crate) fn signing_input(label: &[u8], body: &[u8]) -> Vec<u8> {
    let mut v = Vec::with_capacity(label.len() + 1 + body.len());
    v.extend_from_slice(label);
    v.push(0);
    v.extend_from_slice(body);
    v
}

#[cfg(test)]
mod tests {
    use super::*;
    use rand_core::OsRng;

    #[test]
    fn signs_and_verifies_and_rejects_tampering() {
        let k = SigningKey::generate(&mut OsRng);
        let sig = k.sign(b"hello");
        k.verifying_key().verify(b"hello", &sig).unwrap();
        assert_eq!(k.verifying_key().verify(b"hellO", &sig), Err(KeyError::BadSignature));
        let mut bad = sig;
        bad.0[0] ^= 1;
        assert_eq!(k.verifying_key().verify(b"hello", &bad), Err(KeyError::BadSignature));
        let other = SigningKey::generate(&mut OsRng);
        assert_eq!(other.verifying_key().verify(b"hello", &sig), Err(KeyError::BadSignature));
    }

    #[test]
    fn rfc8032_test_vector_1() {
        // RFC 8032 section 7.1, TEST 1 (empty message).
        let seed: [u8; 32] =
            crate::hex::decode_array("9d61b19deffd5a60ba844af492ec2cc44449c5697b326919703bac031cae7f60").unwrap();
        let k = SigningKey::from_seed(SecretBytes::new(seed)).unwrap();
        assert_eq!(
            crate::hex::encode(k.verifying_key().as_bytes()),
            "d75a980182b10ab7d54bfed3c964073a0ee172f3daa62325af021a68f707511a"
        );
        assert_eq!(
            crate::hex::encode(k.sign(b"").as_bytes()),
            "e5564300c360ac729086e2cc806e828a84877f1eb8e5d974d873e065224901555fb8821590a33bacc61e39701cf9b46bd25bf5f0595bbe24655141438e7a100b"
        );
    }

    #[test]
    fn debug_hides_seed() {
        let k = SigningKey::from_seed(SecretBytes::new([7u8; 32])).unwrap();
        assert!(!format!("{k:?}").contains("0707"));
    }
}
