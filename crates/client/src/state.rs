//! The profile's keys and trust state, kept as one sealed record.

use std::collections::BTreeMap;

use serde::{Deserialize, Serialize};
use zeroize::Zeroize;

/// Everything a device knows about itself. Secrets are hex strings wiped on drop.
#[derive(Serialize, Deserialize)]
pub(crate) struct ProfileState {
    pub server_url: String,
    pub network_id: String,
    pub network_public: String,
    pub username: String,
    pub user_id: String,
    pub device_id: String,
    pub token: String,
    pub identity_seed: String,
    pub device_seed: String,
    /// (kind: 0 medium-term / 1 one-time, id, private key hex)
    pub prekeys: Vec<(u8, u32, String)>,
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
    pub one_time_used: BTreeMap<String, u64>,
    /// Highest device-list version seen per user and that list's SHA-256
    /// (user hex → (version, digest hex)): an older list is a rollback, a
    /// different one under the same version a relay showing two views.
    #[serde(default)]
    pub lists_seen: BTreeMap<String, (u64, String)>,
}

impl Drop for ProfileState {
    fn drop(&mut self) {
        self.token.zeroize();
        self.identity_seed.zeroize();
        self.device_seed.zeroize();
        for (_, _, secret) in &mut self.prekeys {
            secret.zeroize();
        }
    }
}
