use rand_core::{CryptoRng, RngCore};
use subtle::ConstantTimeEq;
use zeroize::{Zeroize, ZeroizeOnDrop};

/// A fixed-size secret: wiped on drop, compared in constant time, and never
/// printed (`Debug` shows `***`). Reading the bytes is an explicit call to
/// [`SecretBytes::expose`].
#[derive(Clone, Zeroize, ZeroizeOnDrop)]
pub struct SecretBytes<const N: usize>([u8; N]);

impl<const N: usize> SecretBytes<N> {
    /// Wraps bytes that are already secret; the caller should wipe its copy.
    pub fn new(bytes: [u8; N]) -> Self {
        Self(bytes)
    }

    /// Fresh random bytes from a cryptographic RNG.
    pub fn random(rng: &mut (impl RngCore + CryptoRng)) -> Self {
        let mut s = Self([0u8; N]);
        rng.fill_bytes(&mut s.0);
        s
    }

    pub(crate) fn zero() -> Self {
        Self([0u8; N])
    }

    /// The secret bytes. Named so every read of a secret is visible in review.
    pub fn expose(&self) -> &[u8; N] {
        &self.0
    }

    pub(crate) fn as_mut(&mut self) -> &mut [u8; N] {
        &mut self.0
    }

    /// Whether every byte is zero, in constant time.
    pub(crate) fn is_zero(&self) -> bool {
        bool::from(self.0.ct_eq(&[0u8; N]))
    }
}

impl<const N: usize> ConstantTimeEq for SecretBytes<N> {
    fn ct_eq(&self, other: &Self) -> subtle::Choice {
        self.0.ct_eq(&other.0)
    }
}

impl<const N: usize> PartialEq for SecretBytes<N> {
    fn eq(&self, other: &Self) -> bool {
        bool::from(self.ct_eq(other))
    }
}

impl<const N: usize> Eq for SecretBytes<N> {}

impl<const N: usize> std::fmt::Debug for SecretBytes<N> {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "SecretBytes<{N}>(***)")
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn debug_never_shows_the_bytes() {
        let s = SecretBytes::new([0xab; 4]);
        let shown = format!("{s:?}");
        assert!(!shown.contains("ab") && !shown.contains("171"), "{shown}");
    }

    #[test]
    fn compares_by_value() {
        assert_eq!(SecretBytes::new([1u8; 8]), SecretBytes::new([1u8; 8]));
        assert_ne!(SecretBytes::new([1u8; 8]), SecretBytes::new([2u8; 8]));
        assert!(SecretBytes::<3>::zero().is_zero());
    }
}
