//! The profile's keys and trust state, kept as one sealed record.

use std::collections::BTreeMap;

use serde::{Deserialize, Deserializer, Serialize, Serializer};
use zeroize::{Zeroize, Zeroizing};

/// A 32-byte private key in the saved state: wiped on drop, never printed,
/// stored as hex inside the sealed state record (the format profiles of
/// schema 1 already use).
#[derive(Clone)]
pub(crate) struct SecretKey(Zeroizing<[u8; 32]>);

impl SecretKey {
    pub(crate) fn new(bytes: &[u8; 32]) -> Self {
        Self(Zeroizing::new(*bytes))
    }
    pub(crate) fn expose(&self) -> &[u8; 32] {
        &self.0
    }
}

impl std::fmt::Debug for SecretKey {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("SecretKey(redacted)")
    }
}

impl Serialize for SecretKey {
    fn serialize<S: Serializer>(&self, s: S) -> Result<S::Ok, S::Error> {
        let hex = Zeroizing::new(crate::store::hex(self.0.as_ref()));
        s.serialize_str(&hex)
    }
}

impl<'de> Deserialize<'de> for SecretKey {
    fn deserialize<D: Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
        let text = Zeroizing::new(String::deserialize(d)?);
        let mut out = Zeroizing::new([0u8; 32]);
        if text.len() != 64 {
            return Err(serde::de::Error::custom("a stored key is not 32 bytes"));
        }
        for (i, byte) in out.iter_mut().enumerate() {
            let pair = text.get(2 * i..2 * i + 2).ok_or_else(|| serde::de::Error::custom("stored key"))?;
            *byte = u8::from_str_radix(pair, 16).map_err(|_| serde::de::Error::custom("a stored key is not hex"))?;
        }
        Ok(Self(out))
    }
}

/// The relay session token: a bearer secret, wiped on drop, never printed.
#[derive(Clone)]
pub(crate) struct SessionToken(Zeroizing<String>);

impl Serialize for SessionToken {
    fn serialize<S: Serializer>(&self, s: S) -> Result<S::Ok, S::Error> {
        s.serialize_str(&self.0)
    }
}

impl<'de> Deserialize<'de> for SessionToken {
    fn deserialize<D: Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
        Ok(Self(Zeroizing::new(String::deserialize(d)?)))
    }
}

impl SessionToken {
    pub(crate) fn new(token: String) -> Self {
        Self(Zeroizing::new(token))
    }
    pub(crate) fn expose(&self) -> &str {
        &self.0
    }
}

impl std::fmt::Debug for SessionToken {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("SessionToken(redacted)")
    }
}

/// Whether a pre-key is the medium-term one or a one-time one (stored as
/// 0 / 1, as schema-1 profiles do).
pub(crate) const MEDIUM_TERM: u8 = 0;
pub(crate) const ONE_TIME: u8 = 1;

/// Everything a device knows about itself.
#[derive(Serialize, Deserialize)]
pub(crate) struct ProfileState {
    pub server_url: String,
    pub network_id: String,
    pub network_public: String,
    pub username: String,
    pub user_id: String,
    pub device_id: String,
    pub token: SessionToken,
    /// The account's identity key: only on the primary device (the one that
    /// enrolled). Linked devices never hold it (PROTOCOL.md §8), so one that
    /// is revoked cannot sign a list bringing itself back.
    pub identity_seed: Option<SecretKey>,
    pub device_seed: SecretKey,
    /// (kind: [`MEDIUM_TERM`] / [`ONE_TIME`], id, private key)
    pub prekeys: Vec<(u8, u32, SecretKey)>,
    pub next_prekey_id: u32,
    /// When each medium-term pre-key was made (id → ms), for rotation.
    #[serde(default)]
    pub medium_created: BTreeMap<u32, u64>,
    pub device_list_version: u64,
    /// Highest policy version seen and its digest (hex).
    pub policy: Option<(u64, String)>,
    /// Pinned identity keys by user id (hex → hex).
    pub pins: BTreeMap<String, String>,
    /// When this device last sealed to a one-time pre-key of each device
    /// (`user:device` hex → ms): within a medium-term period it asks only for
    /// the medium-term key (PROTOCOL.md §3.1).
    #[serde(default)]
    pub one_time_used: BTreeMap<strongroom_wire::DeviceAddress, u64>,
    /// Highest device-list version seen per user and that list's SHA-256
    /// (user hex → (version, digest hex)): an older list is a rollback, a
    /// different one under the same version a relay showing two views.
    #[serde(default)]
    pub lists_seen: BTreeMap<String, (u64, String)>,
    /// The last verified device list per user (user hex → encoded list hex):
    /// a newer one must follow it (revoked devices stay revoked), and the
    /// difference is shown ("alice removed a device").
    #[serde(default)]
    pub lists_known: BTreeMap<String, String>,
    /// Devices an administrator revoked or wiped, as the relay last listed
    /// them beside each user's list (user hex → device hex): never sealed
    /// to, whatever the signed list says.
    #[serde(default)]
    pub revoked_known: BTreeMap<String, Vec<String>>,
    /// Recipients' medium-term pre-keys as last claimed (`user:device` hex →
    /// (claimed at ms, encoded signed pre-key hex)): sealed to again for one
    /// rotation period without asking the relay (PROTOCOL.md §3.1).
    #[serde(default)]
    pub medium_known: BTreeMap<strongroom_wire::DeviceAddress, (u64, String)>,
    /// Identity keys the person marked verified after comparing safety
    /// numbers (user hex → key hex); stale once the pinned key differs.
    #[serde(default)]
    pub verified: BTreeMap<String, String>,
    /// Enrolment has not finished: the keys are kept (the relay binds the
    /// account to this identity once its device list is published) so that
    /// running `enrol` again finishes it; nothing else opens the profile.
    #[serde(default)]
    pub enrolling: bool,
}

impl Drop for ProfileState {
    fn drop(&mut self) {
        // The keys wipe themselves; the pins and ids are public.
        self.server_url.zeroize();
    }
}

#[cfg(test)]
mod tests {
    #![allow(clippy::unwrap_used)]
    use super::*;

    #[test]
    fn keys_round_trip_as_hex_and_never_print() {
        let key = SecretKey::new(&[0xab; 32]);
        let json = serde_json::to_string(&key).unwrap();
        assert_eq!(json, format!("\"{}\"", "ab".repeat(32)));
        assert_eq!(serde_json::from_str::<SecretKey>(&json).unwrap().expose(), &[0xab; 32]);
        assert!(!format!("{key:?}").contains("ab"));
        assert!(!format!("{:?}", SessionToken::new("tok-secret".into())).contains("tok-secret"));
    }

    #[test]
    fn malformed_stored_keys_are_refused() {
        for bad in ["\"ab\"", "\"zz\"", &format!("\"{}\"", "zz".repeat(32)), "12", &format!("\"{}é\"", "a".repeat(62))]
        {
            assert!(serde_json::from_str::<SecretKey>(bad).is_err(), "{bad}");
        }
    }
}
