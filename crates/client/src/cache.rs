//! What a send needs that rarely changes, kept between sends so that a
//! steady-state send is one request (PROTOCOL.md §4.7): the security-group
//! settings under the relay's tag, the verified network policy, each
//! member's verified device list, and recipients' medium-term pre-keys.
//! Each is trusted exactly as when it was fetched (the lists and policy are
//! verified again when loaded from the store), and refreshed when the relay
//! says it changed: a `settings_changed` or `recipient_mismatch` refusal,
//! after which the message is sealed again.

use std::collections::HashMap;

use strongroom_crypto::certs::{NetworkPolicy, PolicyTracker, VerifiedDeviceList, VerifiedPolicy};
use strongroom_crypto::ids::{DeviceId, UserId};
use strongroom_crypto::keys::VerifyingKey;
use strongroom_wire::GroupSettings;

use crate::client::{unhex, unhex_vec, Client};
use crate::error::ClientError;

/// The record holding the settings and their tag.
const SETTINGS: &str = "settings";
/// The record holding the newest verified network policy, encoded.
const POLICY: &str = "policy-bytes";

/// The in-memory side of the cache (the store keeps the rest).
#[derive(Default)]
pub(crate) struct Cache {
    /// (tag, settings) as the relay last gave them.
    pub settings: std::sync::Mutex<Option<(Option<String>, GroupSettings)>>,
    pub policy: Option<VerifiedPolicy>,
    /// Verified list and administrator-revoked devices per member.
    pub lists: HashMap<UserId, (VerifiedDeviceList, Vec<DeviceId>)>,
    /// When this process last looked for expired guests to remove.
    pub guests_checked: Option<std::time::Instant>,
}

#[derive(serde::Serialize, serde::Deserialize)]
struct KeptSettings {
    tag: Option<String>,
    settings: GroupSettings,
}

impl Client {
    /// The security-group settings as last fetched (fetched now if this
    /// profile never did), and their tag.
    pub(crate) async fn settings(&self) -> Result<(Option<String>, GroupSettings), ClientError> {
        if let Some(s) = self.cache.settings.lock().map_err(|_| ClientError::Corrupt("settings cache"))?.clone() {
            return Ok(s);
        }
        if let Some(raw) = self.record(SETTINGS).await? {
            if let Ok(k) = serde_json::from_slice::<KeptSettings>(&raw) {
                let kept = (k.tag, k.settings);
                *self.cache.settings.lock().map_err(|_| ClientError::Corrupt("settings cache"))? = Some(kept.clone());
                return Ok(kept);
            }
        }
        self.fetch_settings().await
    }

    /// Fetches the settings and their tag, and keeps them.
    pub(crate) async fn fetch_settings(&self) -> Result<(Option<String>, GroupSettings), ClientError> {
        let (settings, tag): (GroupSettings, _) =
            self.api.get_tagged("/v1/me/policy", strongroom_wire::SETTINGS_TAG_HEADER).await?;
        let kept = KeptSettings { tag, settings };
        let json = serde_json::to_vec(&kept).map_err(|_| ClientError::Corrupt("settings"))?;
        if self.lock.is_some() {
            self.put_record(SETTINGS, &json).await?;
        }
        let pair = (kept.tag, kept.settings);
        *self.cache.settings.lock().map_err(|_| ClientError::Corrupt("settings cache"))? = Some(pair.clone());
        Ok(pair)
    }

    /// The newest network policy this device verified, without asking the
    /// relay unless it has none.
    pub(crate) async fn known_policy(&mut self) -> Result<VerifiedPolicy, ClientError> {
        if let Some(p) = &self.cache.policy {
            return Ok(p.clone());
        }
        if let (Some(raw), Some((v, d))) = (self.record(POLICY).await?, self.state.policy.clone()) {
            let mut tracker = PolicyTracker::resume(self.network_key()?, self.network_id(), v, unhex(&d)?);
            // Anything but the very policy verified before: ask the relay.
            if let Ok(verified) = NetworkPolicy::decode(&raw).map_err(|_| ()).and_then(|p| {
                if p.version == v {
                    tracker.verify(&p).map_err(|_| ())
                } else {
                    Err(())
                }
            }) {
                self.cache.policy = Some(verified.clone());
                return Ok(verified);
            }
        }
        self.policy().await
    }

    /// Whether the network policy this device last verified names a
    /// retention service (fetched if it never verified one).
    pub async fn retention_enabled(&mut self) -> Result<bool, ClientError> {
        Ok(self.known_policy().await?.retention_enabled())
    }

    /// Keeps a policy just verified.
    pub(crate) async fn keep_policy(&mut self, policy: &VerifiedPolicy, bytes: &[u8]) -> Result<(), ClientError> {
        if self.lock.is_some() {
            self.put_record(POLICY, bytes).await?;
        }
        self.cache.policy = Some(policy.clone());
        Ok(())
    }

    /// A member's verified device list and revoked devices: as last verified
    /// unless `fresh`, else fetched (and kept).
    pub(crate) async fn member_list(
        &mut self,
        user: UserId,
        fresh: bool,
    ) -> Result<(VerifiedDeviceList, Vec<DeviceId>), ClientError> {
        if !fresh {
            if let Some(hit) = self.cache.lists.get(&user) {
                return Ok(hit.clone());
            }
            if let Some(hit) = self.stored_list(user) {
                self.cache.lists.insert(user, hit.clone());
                return Ok(hit);
            }
        }
        self.device_list_and_revoked(user).await
    }

    /// The list this profile verified last for `user`, verified again
    /// against the pin and the version seen; `None` if anything differs.
    fn stored_list(&self, user: UserId) -> Option<(VerifiedDeviceList, Vec<DeviceId>)> {
        let key = user.to_string();
        let pinned = self.state.pins.get(&key).and_then(|k| unhex::<32>(k).ok())?;
        let (version, digest) = self.state.lists_seen.get(&key)?;
        let digest = unhex::<32>(digest).ok()?;
        let list = unhex_vec(self.state.lists_known.get(&key)?)
            .and_then(|b| strongroom_crypto::certs::DeviceList::decode(&b).ok())?;
        let expect = strongroom_crypto::certs::DeviceListExpectation {
            network_id: self.network_id(),
            user_id: user,
            pinned_identity: Some(VerifyingKey::from_bytes(pinned).ok()?),
            seen: Some((*version, digest)),
        };
        let verified = list.verify(&expect).ok().filter(|l| l.list().version == *version)?;
        let revoked = self.state.revoked_known.get(&key)?.iter().filter_map(|d| DeviceId::parse_hex(d)).collect();
        Some((verified, revoked))
    }

    /// Forgets what the relay said changed, so the next seal fetches it.
    pub(crate) fn forget_recipients(&mut self) {
        self.cache.policy = None;
        self.cache.lists.clear();
    }
}
