//! This device's own keys: its device list, the pre-key pool on the relay,
//! rotation and upkeep.

use crate::client::*;
use crate::error::ClientError;
use crate::state::{SecretKey, MEDIUM_TERM, ONE_TIME};
use crate::store::hex;
use rand_core::OsRng;
use std::collections::HashMap;
use strongroom_crypto::certs::*;
use strongroom_crypto::keys::*;
use strongroom_wire::*;

impl Client {
    pub(crate) async fn set_device_list_version(&mut self, version: u64) -> Result<(), ClientError> {
        self.state.device_list_version = version;
        self.save().await
    }

    pub(crate) async fn publish_initial_prekeys(&mut self, one_time: u32) -> Result<(), ClientError> {
        self.add_prekeys(true, one_time).await?;
        self.save().await
    }

    pub(crate) async fn publish_device_list(&mut self) -> Result<(), ClientError> {
        let device_key = self.device_key()?;
        let entry = crate::rules::keys::device_entry(self.device_id(), device_key.verifying_key(), "cli", now_ms());
        // Enrolment starts the identity key's chain (a reset account's new
        // identity starts its own).
        self.state.device_list_version = 1;
        let list = DeviceList::first(&self.identity()?, self.network_id(), self.user_id(), now_ms(), vec![entry])
            .map_err(|e| ClientError::Usage(e.to_string()))?;
        self.state.pins.insert(self.state.user_id.clone(), hex(self.identity()?.verifying_key().as_bytes()));
        self.api.put_bytes("/v1/keys/device-list", list.encode()).await
    }

    pub(crate) async fn add_prekeys(&mut self, medium_term: bool, one_time: u32) -> Result<(), ClientError> {
        self.add_prekeys_at(medium_term, one_time, now_ms()).await
    }

    pub(crate) async fn add_prekeys_at(
        &mut self,
        medium_term: bool,
        one_time: u32,
        now: u64,
    ) -> Result<(), ClientError> {
        let device_key = self.device_key()?;
        let kinds: Vec<PreKeyKind> = medium_term
            .then_some(PreKeyKind::MediumTerm)
            .into_iter()
            .chain((0..one_time).map(|_| PreKeyKind::OneTime))
            .collect();
        let who = (self.network_id(), self.user_id(), self.device_id());
        let made =
            crate::rules::keys::new_prekeys(&device_key, who, &kinds, self.state.next_prekey_id, now, &mut OsRng)
                .map_err(|e| ClientError::Usage(e.to_string()))?;
        let mut signed = Vec::with_capacity(made.len());
        for k in made {
            self.state.next_prekey_id = k.key_ref.id.saturating_add(1);
            signed.push(B64(k.signed.encode()));
            let stored_kind = if k.key_ref.kind == PreKeyKind::OneTime { ONE_TIME } else { MEDIUM_TERM };
            self.state.prekeys.push((stored_kind, k.key_ref.id, SecretKey::new(k.secret.expose_bytes().expose())));
            if k.key_ref.kind == PreKeyKind::MediumTerm {
                self.state.medium_created.insert(k.key_ref.id, now);
            }
        }
        self.save().await?;
        self.api.put_json("/v1/keys/prekeys", &UploadPreKeys { prekeys: signed }).await
    }

    pub(crate) fn prekey_secrets(&self) -> Result<HashMap<PreKeyRef, AgreementSecret>, ClientError> {
        self.state
            .prekeys
            .iter()
            .map(|(kind, id, secret)| {
                let kind = if *kind == ONE_TIME { PreKeyKind::OneTime } else { PreKeyKind::MediumTerm };
                let s = AgreementSecret::from_bytes(SecretBytes::new(*secret.expose()))
                    .map_err(|_| ClientError::Corrupt("pre-key"))?;
                Ok((PreKeyRef { kind, id: *id }, s))
            })
            .collect()
    }

    /// Key upkeep as of `now`: a fresh medium-term pre-key once the newest is
    /// [`ROTATE_AFTER_MS`] old, and deletion of older medium-term private keys
    /// [`GRACE_MS`] after they were replaced. Runs at every sync.
    pub async fn maintain_keys(&mut self, now: u64) -> Result<(), ClientError> {
        let upkeep = crate::rules::prekeys::upkeep(&self.state.medium_created, now);
        if upkeep.rotate {
            self.add_prekeys_at(true, 0, now).await?;
        }
        if upkeep.stale.is_empty() {
            return Ok(());
        }
        for id in &upkeep.stale {
            self.state.medium_created.remove(id);
            self.state.prekeys.retain(|(k, i, _)| !(*k == MEDIUM_TERM && i == id));
        }
        self.save().await
    }

    /// Every private key this profile holds (identity, device, pre-keys), for
    /// tests that scan the profile directory for them.
    #[cfg(feature = "test-support")]
    pub fn private_keys_for_tests(&self) -> Vec<zeroize::Zeroizing<Vec<u8>>> {
        let seeds = self.state.identity_seed.iter().chain([&self.state.device_seed]);
        let prekeys = self.state.prekeys.iter().map(|(_, _, s)| s);
        seeds.chain(prekeys).map(|k| zeroize::Zeroizing::new(k.expose().to_vec())).collect()
    }

    /// Forgets the device lists kept per contact (not the versions and
    /// digests seen), as a profile from before lists were kept looks.
    #[cfg(feature = "test-support")]
    pub fn forget_known_lists_for_tests(&mut self) {
        self.state.lists_known.clear();
    }

    /// Private pre-keys held: (medium-term, one-time).
    pub fn prekey_counts(&self) -> (usize, usize) {
        let medium = self.state.prekeys.iter().filter(|(k, _, _)| *k == MEDIUM_TERM).count();
        (medium, self.state.prekeys.len() - medium)
    }

    pub(crate) async fn top_up(&mut self) -> Result<(), ClientError> {
        let keys: UserKeys = self.api.get(&format!("/v1/keys/{}", self.user_id())).await?;
        let mine = self.device_id();
        let left = keys.one_time_remaining.iter().find(|c| c.device_id == mine).map_or(0, |c| c.count);
        if crate::rules::prekeys::needs_top_up(left) {
            self.add_prekeys(false, ONE_TIME_BATCH).await?;
        }
        Ok(())
    }

    /// Periodic upkeep, at every sync and while watching: expired messages
    /// purged, one-time pre-keys topped up, medium-term pre-keys rotated.
    pub async fn upkeep(&mut self) -> Result<(), ClientError> {
        self.store.purge_expired(now_ms()).await?;
        self.store.prune_refusals().await?;
        self.store.prune_events(crate::events::EVENTS_KEPT).await?;
        self.top_up().await?;
        self.maintain_keys(now_ms()).await
    }
}
