//! Trust in the network's policy and in other people's keys: verified
//! policies and device lists, pins, safety numbers, the verified mark.

use crate::client::*;
use crate::error::ClientError;
use crate::store::hex;
use crate::vault::Vault;
use strongroom_crypto::certs::*;
use strongroom_crypto::ids::*;
use strongroom_crypto::keys::*;
use strongroom_wire::GroupSettings;
use strongroom_wire::*;

impl Client {
    /// The network policy, verified against the pinned network key; refuses
    /// rollback and equivocation.
    pub async fn policy(&mut self) -> Result<VerifiedPolicy, ClientError> {
        let bytes = self.api.get_bytes("/v1/policy").await?;
        let policy = NetworkPolicy::decode(&bytes)
            .map_err(|e| ClientError::Trust(format!("the network policy is malformed: {e}")))?;
        let mut tracker = match &self.state.policy {
            Some((v, d)) => PolicyTracker::resume(self.network_key()?, self.network_id(), *v, unhex(d)?),
            None => PolicyTracker::new(self.network_key()?, self.network_id()),
        };
        let verified =
            tracker.verify(&policy).map_err(|e| ClientError::Trust(format!("network policy refused: {e}")))?;
        if let Some((v, d)) = tracker.highest() {
            if self.state.policy.as_ref().map(|p| p.0) != Some(v) {
                self.state.policy = Some((v, hex(&d)));
                self.save().await?;
                self.log(&[crate::rules::events::EventKind::Policy { version: v }]).await?;
            }
        }
        // Kept only when it is the newest seen (an older one verified
        // above would have been refused).
        self.keep_policy(&verified, &bytes).await?;
        Ok(verified)
    }

    /// The security-group settings that apply to this user, fetched now (so
    /// an administrator's change applies at the next operation, no restart).
    /// Also records the device lockout for the (locked) profile header.
    pub async fn my_policy(&self) -> Result<GroupSettings, ClientError> {
        let (_, policy) = self.fetch_settings().await?;
        self.note_lockout(&policy)?;
        Ok(policy)
    }

    /// The settings as last fetched (see [`Client::my_policy`] for fresh ones).
    pub(crate) async fn known_settings(&self) -> Result<(Option<String>, GroupSettings), ClientError> {
        let (tag, policy) = self.settings().await?;
        self.note_lockout(&policy)?;
        Ok((tag, policy))
    }

    fn note_lockout(&self, policy: &GroupSettings) -> Result<(), ClientError> {
        let lockout = u64::from(policy.device_lockout);
        if self.lockout_written.load(std::sync::atomic::Ordering::Relaxed) != lockout {
            Vault::set_lockout(&self.dir, policy.device_lockout)?;
            self.lockout_written.store(lockout, std::sync::atomic::Ordering::Relaxed);
        }
        Ok(())
    }

    /// Publishes a new network policy (administrators sign it with the
    /// network key file), then fetches and verifies it like any client.
    pub async fn publish_policy(&mut self, policy: &NetworkPolicy) -> Result<VerifiedPolicy, ClientError> {
        self.api.put_bytes("/v1/policy", policy.encode()).await?;
        self.policy().await
    }

    /// A user's device list, verified; the identity key is pinned on first
    /// use and a change is refused until the user re-verifies.
    pub async fn device_list(&mut self, user: UserId) -> Result<VerifiedDeviceList, ClientError> {
        Ok(self.device_list_and_revoked(user).await?.0)
    }

    /// The verified list, and the devices an administrator revoked or wiped
    /// (never encrypted to, whatever the signed list says).
    pub(crate) async fn device_list_and_revoked(
        &mut self,
        user: UserId,
    ) -> Result<(VerifiedDeviceList, Vec<DeviceId>), ClientError> {
        let keys: UserKeys = self.api.get(&format!("/v1/keys/{user}")).await?;
        let revoked: Vec<DeviceId> = keys.revoked_devices;
        let list = DeviceList::decode(&keys.device_list.0)
            .map_err(|e| ClientError::Trust(format!("device list of {user}: {e}")))?;
        let pinned = self
            .state
            .pins
            .get(&user.to_string())
            .map(|k| unhex(k))
            .transpose()?
            .map(VerifyingKey::from_bytes)
            .transpose()
            .map_err(|_| ClientError::Corrupt("pinned identity key"))?;
        let seen = match self.state.lists_seen.get(&user.to_string()) {
            Some((version, digest)) => Some((*version, unhex(digest)?)),
            None => None,
        };
        // Unreadable means "not known": the checks against `seen` still apply.
        let known = self
            .state
            .lists_known
            .get(&user.to_string())
            .and_then(|h| unhex_vec(h))
            .and_then(|b| DeviceList::decode(&b).ok());
        // A profile that kept only (version, digest) fetches that list once,
        // so the revocations in it are checked too.
        let known = match (known, seen) {
            (Some(k), _) => Some(k),
            (None, Some((v, d))) if list.version > v => Some(self.list_at(user, v, &d).await?.ok_or_else(|| {
                ClientError::Trust(format!(
                    "device list of {user} refused: the relay's history does not hold version {v} seen before"
                ))
            })?),
            (None, _) => None,
        };
        let (chain, complete) = match seen {
            Some((v, _)) if list.version > v.saturating_add(1) => self.list_chain(user, v, &list).await?,
            _ => (vec![list.clone()], true),
        };
        let expect =
            DeviceListExpectation { network_id: self.network_id(), user_id: user, pinned_identity: pinned, seen };
        let verified = crate::rules::trust::follow(&expect, known.as_ref(), &chain)
            .map_err(|e| ClientError::Trust(format!("device list of {user} refused: {e}")))?;
        let reached = verified.list().clone();
        let after = crate::rules::trust::seen_after(seen, reached.version, reached.digest());
        let newer = after != seen;
        if let (true, Some((version, digest))) = (newer, after) {
            self.state.lists_seen.insert(user.to_string(), (version, hex(&digest)));
            if let Some(before) = known.as_ref().filter(|k| k.identity_key == verified.identity_key()) {
                let who = self.username_of(user).await.unwrap_or_else(|_| user.to_string());
                let notices = crate::rules::trust::device_notices(&who, before, &verified);
                let events: Vec<_> = notices
                    .iter()
                    .map(|n| crate::rules::events::EventKind::Identity { user, notice: n.clone() })
                    .collect();
                self.log(&events).await?;
                self.notices.extend(notices);
            }
            self.state.lists_known.insert(user.to_string(), hex(&reached.encode()));
        }
        if !complete {
            // Progress is kept: the next look-up goes on from here.
            self.save().await?;
            return Err(ClientError::Incomplete(format!(
                "device list of {user}: followed its history to version {} of {}; try again to go on",
                reached.version, list.version
            )));
        }
        if pinned.is_none() {
            self.state.pins.insert(user.to_string(), hex(verified.identity_key().as_bytes()));
        }
        let revoked_hex: Vec<String> = revoked.iter().map(|d| d.to_string()).collect();
        let revoked_changed = self.state.revoked_known.get(&user.to_string()) != Some(&revoked_hex);
        if revoked_changed {
            self.state.revoked_known.insert(user.to_string(), revoked_hex);
        }
        if newer || pinned.is_none() || revoked_changed {
            self.save().await?;
        }
        self.cache.lists.insert(user, (verified.clone(), revoked.clone()));
        Ok((verified, revoked))
    }

    /// The user's list at `version` from the relay's history, if it is the
    /// one with `digest`.
    async fn list_at(&self, user: UserId, version: u64, digest: &[u8; 32]) -> Result<Option<DeviceList>, ClientError> {
        let after = version.saturating_sub(1);
        let page: DeviceListHistory = self.api.get(&format!("/v1/keys/{user}/history?after={after}")).await?;
        Ok(page
            .lists
            .first()
            .and_then(|raw| DeviceList::decode(&raw.0).ok())
            .filter(|l| l.version == version && l.digest() == *digest))
    }

    /// The lists after version `after` up to `current`, from the relay's
    /// history of the user's chain. A list the history does not reach (a
    /// version nobody signed in sequence) is refused.
    async fn list_chain(
        &self,
        user: UserId,
        after: u64,
        current: &DeviceList,
    ) -> Result<(Vec<DeviceList>, bool), ClientError> {
        let mut chain: Vec<DeviceList> = Vec::new();
        let mut cursor = after;
        while cursor < current.version && chain.len() < crate::rules::trust::MAX_CHAIN {
            let page: DeviceListHistory = self.api.get(&format!("/v1/keys/{user}/history?after={cursor}")).await?;
            let before = chain.len();
            for raw in &page.lists {
                let l = DeviceList::decode(&raw.0)
                    .map_err(|e| ClientError::Trust(format!("device list history of {user}: {e}")))?;
                if l.version <= cursor || l.version > current.version {
                    break;
                }
                cursor = l.version;
                chain.push(l);
            }
            if chain.len() == before {
                break;
            }
        }
        let reached = chain.last().is_some_and(|l| l.version == current.version && l.digest() == current.digest());
        // Stopped short of the current list: a long history is followed in
        // steps; a history that ends below it (a version nobody signed in
        // sequence) is refused.
        let short = chain.len() >= crate::rules::trust::MAX_CHAIN;
        if reached || (short && !chain.is_empty()) {
            return Ok((chain, reached));
        }
        Err(ClientError::Trust(format!(
            "device list of {user} refused: {}",
            CertError::DeviceListGap { seen: after, got: current.version }
        )))
    }

    /// What changed in contacts' device lists since the last call ("alice
    /// removed a device"), for showing to the person.
    pub fn take_notices(&mut self) -> Vec<String> {
        std::mem::take(&mut self.notices)
    }

    /// The safety number with `username`, from this user's identity and the
    /// pinned (or, on first contact, fetched and pinned) identity of theirs.
    pub async fn safety_number(
        &mut self,
        username: &str,
    ) -> Result<strongroom_crypto::safety_number::SafetyNumber, ClientError> {
        let user = self.find_user(username).await?;
        let theirs = self.device_list(user).await?.identity_key();
        let mine = self.identity_public()?;
        let net = self.network_id();
        Ok(strongroom_crypto::safety_number::SafetyNumber::new((&net, &self.user_id(), &mine), (&net, &user, &theirs)))
    }

    /// Marks `username`'s current identity key verified: do this after
    /// comparing the safety number in person or on a call. Any later change
    /// of their identity key undoes it.
    ///
    /// Where data retention is on, the verification is also sent to your
    /// direct conversation with them (`Control::IdentityVerified`, naming
    /// the safety number), so it is on the record; they see it too.
    pub async fn mark_verified(&mut self, username: &str) -> Result<(), ClientError> {
        let user = self.find_user(username).await?;
        let key = self.device_list(user).await?.identity_key();
        let number = self.safety_number(username).await?.digits();
        self.state.verified.insert(user.to_string(), hex(key.as_bytes()));
        self.save().await?;
        if user != self.user_id() && self.retention_enabled().await? {
            let direct = self.direct_with(username).await?;
            let note =
                strongroom_crypto::content::Content::Control(strongroom_crypto::content::Control::IdentityVerified {
                    user,
                    safety_number: number,
                });
            self.send(direct, &note, 0).await?;
        }
        Ok(())
    }

    /// Whether `username`'s identity key is the one marked verified.
    pub async fn verification(&mut self, username: &str) -> Result<crate::rules::trust::Verification, ClientError> {
        let user = self.find_user(username).await?;
        self.device_list(user).await?;
        let pinned = self.state.pins.get(&user.to_string()).map(|k| unhex::<32>(k)).transpose()?;
        let verified = self.state.verified.get(&user.to_string()).map(|k| unhex::<32>(k)).transpose()?;
        Ok(crate::rules::trust::verification(pinned.as_ref(), verified.as_ref()))
    }

    /// Accepts `username`'s current identity key after it changed (do this
    /// only after comparing the new safety number out of band).
    pub async fn accept_identity(&mut self, username: &str) -> Result<(), ClientError> {
        let user = self.find_user(username).await?;
        self.state.pins.remove(&user.to_string());
        // A new identity key starts its own list versions.
        self.state.lists_seen.remove(&user.to_string());
        self.device_list(user).await?;
        Ok(())
    }
}
