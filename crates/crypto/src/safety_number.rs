//! Safety numbers: what two users compare (read aloud or by QR code) to
//! confirm that neither identity key was swapped by the server.
//!
//! Per party: `d_0 = SHA-512(label | 0x00 | version u16 (2) | network id |
//! user id | identity key)`,
//! `d_{i+1} = SHA-512(d_i | identity key)` for 5200 rounds (slows brute-force
//! search for a colliding key); the party's fingerprint is the first 30 bytes,
//! shown as six 5-digit groups (each 5-byte big-endian integer mod 100000).
//! The two 30-digit halves are sorted and joined, so both sides see the same
//! 60 digits. The QR string is `"SRSN2:"` followed by upper-case hex of the two
//! 30-byte fingerprints in the same order (QR alphanumeric mode).

use subtle::ConstantTimeEq;

use crate::ids::{NetworkId, UserId};
use crate::keys::VerifyingKey;
use crate::primitives::sha512;
use crate::suite::label;

const ITERATIONS: usize = 5200;
const FINGERPRINT_VERSION: u16 = 2;
const QR_PREFIX: &str = "SRSN2:";

/// The safety number of two identities.
#[derive(Clone, PartialEq, Eq)]
pub struct SafetyNumber {
    halves: [[u8; 30]; 2],
}

/// One party of a safety number: a user, scoped by network, and the
/// identity key their devices are trusted under.
pub type Party<'a> = (&'a NetworkId, &'a UserId, &'a VerifyingKey);

fn fingerprint((network, user, key): Party<'_>) -> [u8; 30] {
    let mut d = sha512(&[
        label::SAFETY_NUMBER,
        &[0],
        &FINGERPRINT_VERSION.to_be_bytes(),
        network.as_bytes(),
        user.as_bytes(),
        key.as_bytes(),
    ]);
    for _ in 0..ITERATIONS {
        d = sha512(&[&d, key.as_bytes()]);
    }
    let mut out = [0u8; 30];
    out.copy_from_slice(d.get(..30).unwrap_or(&[0u8; 30]));
    out
}

fn digits(fp: &[u8; 30]) -> String {
    let mut s = String::with_capacity(30);
    for chunk in fp.chunks_exact(5) {
        let v = chunk.iter().fold(0u64, |acc, b| (acc << 8) | u64::from(*b));
        s.push_str(&format!("{:05}", v % 100_000));
    }
    s
}

impl SafetyNumber {
    /// The safety number of two (network, user, identity key) parties; the
    /// order of the arguments does not matter.
    pub fn new(a: Party<'_>, b: Party<'_>) -> Self {
        let mut halves = [fingerprint(a), fingerprint(b)];
        // By digits, then bytes: both sides get the same order even in the
        // (astronomically unlikely) case of equal digits.
        halves.sort_by(|x, y| digits(x).cmp(&digits(y)).then(x.cmp(y)));
        Self { halves }
    }

    /// 60 digits in twelve groups of five, e.g. for reading aloud.
    pub fn digits(&self) -> String {
        let all = format!("{}{}", digits(&self.halves[0]), digits(&self.halves[1]));
        all.as_bytes().chunks(5).filter_map(|c| std::str::from_utf8(c).ok()).collect::<Vec<_>>().join(" ")
    }

    /// The string to put in a QR code.
    pub fn qr_string(&self) -> String {
        let mut both = Vec::with_capacity(60);
        both.extend_from_slice(&self.halves[0]);
        both.extend_from_slice(&self.halves[1]);
        format!("{QR_PREFIX}{}", crate::hex::encode(&both).to_ascii_uppercase())
    }

    /// Whether a scanned QR string is this safety number (constant time).
    pub fn matches_qr(&self, scanned: &str) -> bool {
        let ours = self.qr_string();
        ours.len() == scanned.len() && bool::from(ours.as_bytes().ct_eq(scanned.as_bytes()))
    }
}

impl std::fmt::Display for SafetyNumber {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(&self.digits())
    }
}

impl std::fmt::Debug for SafetyNumber {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "SafetyNumber({})", self.digits())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn same_on_both_sides_and_changes_with_either_key() {
        let key =
            |b: u8| crate::keys::SigningKey::from_seed(crate::keys::SecretBytes::new([b; 32])).unwrap().verifying_key();
        let net = NetworkId([9; 16]);
        let (ua, ub) = (UserId([1; 16]), UserId([2; 16]));
        let (ka, kb) = (key(3), key(4));
        let alice_view = SafetyNumber::new((&net, &ua, &ka), (&net, &ub, &kb));
        let bob_view = SafetyNumber::new((&net, &ub, &kb), (&net, &ua, &ka));
        assert_eq!(alice_view, bob_view);
        assert_eq!(alice_view.digits().len(), 60 + 11);
        assert!(alice_view.digits().chars().all(|c| c.is_ascii_digit() || c == ' '));
        assert!(bob_view.matches_qr(&alice_view.qr_string()));
        assert_eq!(alice_view.qr_string().len(), 6 + 120);
        let swapped = SafetyNumber::new((&net, &ua, &ka), (&net, &ub, &key(5)));
        assert_ne!(swapped.digits(), alice_view.digits());
        assert!(!swapped.matches_qr(&alice_view.qr_string()));
        assert!(!alice_view.matches_qr("SRSN2:"));
        // The same user id and key in another network is another party.
        let other_net = NetworkId([8; 16]);
        let elsewhere = SafetyNumber::new((&other_net, &ua, &ka), (&net, &ub, &kb));
        assert_ne!(elsewhere.digits(), alice_view.digits());
    }
}
