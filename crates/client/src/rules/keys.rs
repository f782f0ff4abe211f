//! A device's public key material, made with no I/O (the clock and the RNG
//! come in as arguments): its entry in the account's signed device list and
//! its signed pre-keys. The SDK, the load generator and test harnesses all
//! enrol devices with these.

use rand_core::{CryptoRng, RngCore};
use strongroom_crypto::certs::{CertError, DeviceEntry, PreKeyKind, PreKeyRef, SignedPreKey};
use strongroom_crypto::ids::{DeviceId, NetworkId, UserId};
use strongroom_crypto::keys::{AgreementSecret, SigningKey, VerifyingKey};

/// How long a published medium-term pre-key is valid (30 days: rotated
/// after 7, see `prekeys.rs`).
pub const MEDIUM_TERM_VALID_MS: u64 = 30 * 86_400_000;
/// How long a published one-time pre-key is valid.
pub const ONE_TIME_VALID_MS: u64 = 365 * 86_400_000;

/// A device's entry in its account's device list, added at `now`.
pub fn device_entry(device_id: DeviceId, signing_key: VerifyingKey, name: &str, now: u64) -> DeviceEntry {
    DeviceEntry {
        device_id,
        signing_key,
        created_at: now,
        revoked: false,
        versions: strongroom_crypto::suite::SUPPORTED_VERSIONS,
        name: name.into(),
    }
}

/// A pre-key just made: the private half (kept on the device) and the
/// signed public half (published).
pub struct NewPreKey {
    /// Its kind and id.
    pub key_ref: PreKeyRef,
    /// The private half.
    pub secret: AgreementSecret,
    /// The public half, signed by the device key.
    pub signed: SignedPreKey,
}

/// Makes and signs one pre-key of each kind in `kinds` for device `who`,
/// with ids from `first_id` up.
pub fn new_prekeys(
    device_key: &SigningKey,
    who: (NetworkId, UserId, DeviceId),
    kinds: &[PreKeyKind],
    first_id: u32,
    now: u64,
    rng: &mut (impl RngCore + CryptoRng),
) -> Result<Vec<NewPreKey>, CertError> {
    let (network, user, device) = who;
    kinds
        .iter()
        .enumerate()
        .map(|(i, kind)| {
            let id = u32::try_from(i)
                .ok()
                .and_then(|i| first_id.checked_add(i))
                .ok_or(CertError::Invalid("this device has used every pre-key id"))?;
            let secret = AgreementSecret::generate(rng);
            let valid = if *kind == PreKeyKind::MediumTerm { MEDIUM_TERM_VALID_MS } else { ONE_TIME_VALID_MS };
            let key_ref = PreKeyRef { kind: *kind, id };
            let until = now.saturating_add(valid);
            let signed = SignedPreKey::sign(device_key, network, user, device, key_ref, secret.public(), now, until)?;
            Ok(NewPreKey { key_ref, secret, signed })
        })
        .collect()
}

#[cfg(test)]
mod tests {
    #![allow(clippy::unwrap_used, clippy::indexing_slicing)]
    use super::*;
    use rand_core::OsRng;
    use strongroom_crypto::certs::{DeviceList, DeviceListExpectation};

    #[test]
    fn a_new_device_lists_and_signs_keys_that_verify_under_it() {
        let (net, user, device) =
            (NetworkId::from_bytes([1; 16]), UserId::from_bytes([2; 16]), DeviceId::from_bytes([3; 16]));
        let (identity, device_key) = (SigningKey::generate(&mut OsRng), SigningKey::generate(&mut OsRng));
        let entry = device_entry(device, device_key.verifying_key(), "phone", 1_000);
        let list = DeviceList::first(&identity, net, user, 1_000, vec![entry]).unwrap();
        let list = list
            .verify(&DeviceListExpectation { network_id: net, user_id: user, pinned_identity: None, seen: None })
            .unwrap();
        let kinds = [PreKeyKind::MediumTerm, PreKeyKind::OneTime, PreKeyKind::OneTime];
        let keys = new_prekeys(&device_key, (net, user, device), &kinds, 7, 1_000, &mut OsRng).unwrap();
        assert_eq!(keys.iter().map(|k| k.key_ref.id).collect::<Vec<_>>(), [7, 8, 9]);
        let d = list.device(device).unwrap();
        for k in &keys {
            let v = k.signed.verify(&d, 2_000).unwrap();
            assert_eq!(v.key_ref(), k.key_ref);
        }
        assert_eq!(keys[0].signed.expires_at, 1_000 + MEDIUM_TERM_VALID_MS);
        assert_eq!(keys[1].signed.expires_at, 1_000 + ONE_TIME_VALID_MS);
        // Ids never wrap.
        assert!(new_prekeys(&device_key, (net, user, device), &kinds, u32::MAX - 1, 1_000, &mut OsRng).is_err());
        // Signed by another device's key: refused.
        let other =
            new_prekeys(&SigningKey::generate(&mut OsRng), (net, user, device), &kinds[..1], 0, 1_000, &mut OsRng)
                .unwrap();
        assert!(other[0].signed.verify(&d, 2_000).is_err());
    }
}
