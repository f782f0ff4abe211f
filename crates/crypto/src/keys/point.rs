//! Public-key validation: every Ed25519 and X25519 public key is checked once,
//! when it is decoded, so no weak key can exist as a value of the crate's types.
//!
//! With the Ed25519 identity point as a public key, the signature
//! `(R = B, S = 1)` verifies on any message; with any small-order key some
//! forgeries verify. A small-order X25519 key forces a predictable shared
//! secret. Non-canonical encodings give one key two spellings, which breaks
//! "one encoding per value". `curve25519-dalek` decodes the points; nothing
//! here is arithmetic of our own.

use curve25519_dalek::edwards::CompressedEdwardsY;

use super::KeyError;

/// p = 2^255 − 19, little-endian.
const P: [u8; 32] = {
    let mut p = [0xffu8; 32];
    p[0] = 0xed;
    p[31] = 0x7f;
    p
};

/// Whether a little-endian 32-byte integer is below p (top bit included).
fn below_p(le: &[u8; 32]) -> bool {
    // Compare from the most significant byte down. (Public data: no need
    // for constant time.)
    for (a, b) in le.iter().rev().zip(P.iter().rev()) {
        if a != b {
            return a < b;
        }
    }
    false
}

/// Checks an Ed25519 public key (RFC 8032 §5.1.3 decoding, plus canonical
/// y and no small order).
pub(crate) fn check_ed25519(bytes: &[u8; 32]) -> Result<(), KeyError> {
    let mut y = *bytes;
    if let Some(top) = y.last_mut() {
        *top &= 0x7f;
    }
    if !below_p(&y) {
        return Err(KeyError::NonCanonicalKey("Ed25519"));
    }
    let point = CompressedEdwardsY(*bytes).decompress().ok_or(KeyError::InvalidKey("Ed25519"))?;
    // x = 0 with the sign bit set decodes, but is a second spelling of (0, y).
    if point.compress().to_bytes() != *bytes {
        return Err(KeyError::NonCanonicalKey("Ed25519"));
    }
    if point.is_small_order() {
        return Err(KeyError::SmallOrderKey("Ed25519"));
    }
    Ok(())
}

/// Checks an X25519 public key: canonical (top bit clear, u < p) and not one
/// of the u-coordinates of small order (on the curve or its twist).
pub(crate) fn check_x25519(bytes: &[u8; 32]) -> Result<(), KeyError> {
    if !below_p(bytes) {
        return Err(KeyError::NonCanonicalKey("X25519"));
    }
    if small_order_u().iter().any(|u| u == bytes) {
        return Err(KeyError::SmallOrderKey("X25519"));
    }
    Ok(())
}

/// The canonical u-coordinates of small order: those of the eight torsion
/// points of the curve (0 and 1 among them) and p − 1 (order 4 on the twist).
fn small_order_u() -> &'static [[u8; 32]] {
    static SET: std::sync::OnceLock<Vec<[u8; 32]>> = std::sync::OnceLock::new();
    SET.get_or_init(|| {
        let mut set: Vec<[u8; 32]> =
            curve25519_dalek::constants::EIGHT_TORSION.iter().map(|t| t.to_montgomery().to_bytes()).collect();
        let mut minus_one = P;
        if let Some(low) = minus_one.first_mut() {
            *low = 0xec;
        }
        set.push(minus_one);
        set.sort_unstable();
        set.dedup();
        set
    })
}

#[cfg(test)]
#[allow(clippy::indexing_slicing)]
mod tests {
    use super::*;
    use crate::keys::{AgreementSecret, SecretBytes, SigningKey, VerifyingKey};
    use curve25519_dalek::constants::EIGHT_TORSION;

    #[test]
    fn honest_keys_pass() {
        for i in 0..64u8 {
            let k = SigningKey::from_seed(SecretBytes::new([i; 32])).unwrap();
            check_ed25519(k.verifying_key().as_bytes()).unwrap();
            let a = AgreementSecret::from_bytes(SecretBytes::new([i; 32])).unwrap();
            check_x25519(a.public().as_bytes()).unwrap();
        }
    }

    #[test]
    fn every_torsion_point_is_refused_in_every_spelling() {
        for t in EIGHT_TORSION {
            let canonical = t.compress().to_bytes();
            assert_eq!(check_ed25519(&canonical), Err(KeyError::SmallOrderKey("Ed25519")), "{canonical:?}");
            // The other sign of x, where x = 0: a non-canonical second spelling.
            let mut flipped = canonical;
            flipped[31] ^= 0x80;
            assert!(check_ed25519(&flipped).is_err());
        }
        // y = p + 1 spells the identity non-canonically.
        let mut p_plus_1 = P;
        p_plus_1[0] = 0xee;
        assert_eq!(check_ed25519(&p_plus_1), Err(KeyError::NonCanonicalKey("Ed25519")));
    }

    #[test]
    fn the_identity_key_forgery_no_longer_verifies() {
        // A = identity, R = B, S = 1: verifies on any message under plain
        // RFC 8032 verification (SB = R + hA since hA = 0).
        let identity = EIGHT_TORSION[0].compress().to_bytes();
        let mut sig = [0u8; 64];
        sig[..32].copy_from_slice(&curve25519_dalek::constants::ED25519_BASEPOINT_COMPRESSED.to_bytes());
        sig[32] = 1;
        // The backend alone accepts it: this is the hole.
        assert!(aws_lc_rs::signature::UnparsedPublicKey::new(&aws_lc_rs::signature::ED25519, &identity)
            .verify(b"any message at all", &sig)
            .is_ok());
        // The crate refuses the key before any signature is checked.
        assert_eq!(VerifyingKey::from_bytes(identity), Err(KeyError::SmallOrderKey("Ed25519")));
    }

    #[test]
    fn small_order_x25519_keys_force_a_zero_secret_and_are_refused() {
        let set = small_order_u();
        assert_eq!(set.len(), 5, "0, 1, p−1 and the two order-8 points");
        let me = AgreementSecret::from_bytes(SecretBytes::new([0x42; 32])).unwrap();
        for u in set {
            // Each really is of small order: the backend gets an all-zero
            // shared secret (and refuses it).
            let raw = aws_lc_rs::agreement::agree(
                &aws_lc_rs::agreement::PrivateKey::from_private_key(&aws_lc_rs::agreement::X25519, &[0x42; 32])
                    .unwrap(),
                aws_lc_rs::agreement::UnparsedPublicKey::new(&aws_lc_rs::agreement::X25519, u),
                (),
                |s| Ok(s.iter().all(|b| *b == 0)),
            );
            assert!(raw.unwrap_or(true), "{u:?} gives a non-zero secret");
            assert_eq!(check_x25519(u), Err(KeyError::SmallOrderKey("X25519")));
        }
        assert!(me.public().as_bytes() != &[0; 32]);
        // The two order-8 u-coordinates, as PROTOCOL.md §2.1 prints them.
        for shown in [
            "e0eb7a7c3b41b8ae1656e3faf19fc46ada098deb9c32b1fd866205165f49b800",
            "5f9c95bca3508c24b1d0b1559c83ef5b04445cc4581c8e86d8224eddd09f1157",
        ] {
            let u: [u8; 32] = crate::hex::decode_array(shown).unwrap();
            assert!(set.contains(&u), "{shown} is not in the small-order set");
        }
        // u ≥ p and a set top bit are second spellings.
        assert_eq!(check_x25519(&P), Err(KeyError::NonCanonicalKey("X25519")));
        let mut top = *me.public().as_bytes();
        top[31] |= 0x80;
        assert_eq!(check_x25519(&top), Err(KeyError::NonCanonicalKey("X25519")));
    }
}
