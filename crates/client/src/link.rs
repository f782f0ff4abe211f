//! Linking a new device to an account by approval from an existing device.

use std::path::{Path, PathBuf};
use std::time::Duration;

use rand_core::OsRng;
use strongroom_crypto::certs::{DeviceList, DeviceListExpectation};
use strongroom_crypto::ids::{DeviceId, NetworkId, UserId};
use strongroom_crypto::keys::VerifyingKey;
use strongroom_crypto::keys::{AgreementSecret, SigningKey};
use strongroom_crypto::link::{open_transfer, seal_transfer, LinkCode, LinkTarget};
use strongroom_wire::{LinkApproval, LinkRequest, B64};

use crate::api::Api;
use crate::client::{Client, ONE_TIME_BATCH};
use crate::error::ClientError;
use crate::profile_lock::ProfileLock;
use crate::state::ProfileState;
use crate::store::{hex, LocalStore};
use crate::vault::{NewHeader, Vault};

/// A new device waiting for approval; show [`PendingLink::code`] on it.
pub struct PendingLink {
    dir: PathBuf,
    vault: Vault,
    header: NewHeader,
    lock: ProfileLock,
    store: LocalStore,
    api: Api,
    server_url: String,
    network: NetworkId,
    username: String,
    user: UserId,
    device: DeviceId,
    token: String,
    device_key: SigningKey,
    link: AgreementSecret,
    /// Shown to the person; its secret never goes to the relay.
    code: LinkCode,
}

/// Pending link requests an approving device checks against a code.
const MAX_PENDING_LINKS: usize = 16;

fn now_ms() -> u64 {
    std::time::SystemTime::now().duration_since(std::time::UNIX_EPOCH).map(|d| d.as_millis() as u64).unwrap_or(0)
}

impl Client {
    /// Starts linking a new device: creates its profile, logs in (the session
    /// is useless until an existing device approves), and asks to be linked.
    pub async fn link_begin(
        dir: &Path,
        passphrase: &str,
        server_url: &str,
        network: NetworkId,
        username: &str,
        password: &str,
    ) -> Result<PendingLink, ClientError> {
        if dir.join("profile.json").exists() {
            return Err(ClientError::ProfileExists(dir.display().to_string()));
        }
        crate::private_fs::private_dir(dir)
            .map_err(|source| ClientError::Io { path: dir.display().to_string(), source })?;
        let lock = ProfileLock::acquire(dir)?;
        // Left by a link that never finished: unreadable without its header.
        crate::enrol::remove_store_files(dir);
        let (vault, header) = Vault::create(dir, passphrase, crate::client::PROFILE_KDF_KIB)?;
        let store = LocalStore::open(dir).await?;
        let mut api = Api::new(server_url, None);
        let device = DeviceId::random(&mut OsRng);
        let session = api.login(network, username, password, device).await?;
        let device_key = SigningKey::generate(&mut OsRng);
        let link = AgreementSecret::generate(&mut OsRng);
        let req = LinkRequest {
            device_id: None,
            signing_key: B64(device_key.verifying_key().as_bytes().to_vec()),
            link_key: B64(link.public().as_bytes().to_vec()),
        };
        api.post_empty("/v1/devices/link", &req).await?;
        let user = session.user_id;
        let target = LinkTarget { network_id: network, user_id: user, device_id: device };
        let code = LinkCode::generate(&target, &device_key.verifying_key(), &link.public(), &mut OsRng);
        Ok(PendingLink {
            dir: dir.to_owned(),
            vault,
            header,
            lock,
            store,
            api,
            server_url: server_url.into(),
            network,
            username: username.into(),
            user,
            device,
            token: session.token,
            device_key,
            link,
            code,
        })
    }

    /// Approves the new device showing `code`: signs a device list that adds
    /// it and hands it the account's identity public key and the network
    /// key, sealed to its link key. Only the primary device can.
    pub async fn approve_link(&mut self, code: &str) -> Result<DeviceId, ClientError> {
        let identity = self.identity_key_pair()?;
        let wanted = LinkCode::parse(code)
            .ok_or_else(|| ClientError::Usage("a link code is 32 hex digits, as the new device shows it".into()))?;
        let pending: Vec<LinkRequest> = self.api().get("/v1/devices/link").await?;
        // Each request is one guess at the code's 48-bit check: a relay
        // flooding requests gets no more than a few.
        if pending.len() > MAX_PENDING_LINKS {
            return Err(ClientError::Trust(format!(
                "the relay lists {} devices waiting to be linked to your account (at most {MAX_PENDING_LINKS} are checked): \
                 approve nothing and tell your administrator",
                pending.len()
            )));
        }
        let found = pending.iter().find_map(|r| {
            let device = r.device_id?;
            let signing =
                strongroom_crypto::keys::VerifyingKey::from_bytes(r.signing_key.0.as_slice().try_into().ok()?).ok()?;
            let link =
                strongroom_crypto::keys::AgreementPublic::from_bytes(r.link_key.0.as_slice().try_into().ok()?).ok()?;
            let target = LinkTarget { network_id: self.network_id(), user_id: self.user_id(), device_id: device };
            wanted.binds(&target, &signing, &link).then_some((target, signing, link))
        });
        let (target, signing, link) = found.ok_or_else(|| {
            ClientError::Usage("no device waiting to be linked shows that code; check it and try again".into())
        })?;
        let own = self.device_list(self.user_id()).await?;
        let mut entries = own.list().devices.clone();
        entries.push(crate::rules::keys::device_entry(target.device_id, signing, "linked", now_ms()));
        let list = own.list().next(&identity, now_ms(), entries).map_err(|e| ClientError::Usage(e.to_string()))?;
        self.api().put_bytes("/v1/keys/device-list", list.encode()).await?;
        self.set_device_list_version(list.version).await?;
        let sealed =
            seal_transfer(&identity.verifying_key(), &self.pinned_network_key()?, &target, &link, &wanted, &mut OsRng)
                .map_err(|e| ClientError::Trust(e.to_string()))?;
        self.api()
            .post_empty(
                "/v1/devices/link/approve",
                &LinkApproval { device_id: target.device_id, sealed_transfer: B64(sealed) },
            )
            .await?;
        Ok(target.device_id)
    }
}

impl Client {
    /// Revokes one of this user's other devices: signs a device list marking
    /// it revoked. Peers stop encrypting to it and refuse its signatures; the
    /// server logs it out. Only the primary device can, and for good: every
    /// later list must keep it revoked.
    pub async fn remove_device(&mut self, device: DeviceId) -> Result<(), ClientError> {
        let identity = self.identity_key_pair()?;
        if device == self.device_id() {
            return Err(ClientError::Usage("this is the device you are using; remove it from another device".into()));
        }
        let own = self.device_list(self.user_id()).await?;
        let mut entries = own.list().devices.clone();
        let entry = entries
            .iter_mut()
            .find(|e| e.device_id == device && !e.revoked)
            .ok_or_else(|| ClientError::Usage(format!("{device} is not one of your active devices")))?;
        entry.revoked = true;
        let list = own.list().next(&identity, now_ms(), entries).map_err(|e| ClientError::Usage(e.to_string()))?;
        self.api().put_bytes("/v1/keys/device-list", list.encode()).await?;
        self.set_device_list_version(list.version).await
    }
}

impl PendingLink {
    fn target(&self) -> LinkTarget {
        LinkTarget { network_id: self.network, user_id: self.user, device_id: self.device }
    }

    /// The code the person carries to the approving device (typed or
    /// scanned). It holds the secret that authenticates the transfer back:
    /// show it only on this device's screen.
    pub fn code(&self) -> LinkCode {
        self.code.clone()
    }

    /// Waits for approval (polling), then pins the account's identity key and
    /// the network key from the transfer, checks the signed device list
    /// includes this device, and publishes its pre-keys.
    pub async fn wait(self, timeout: Duration) -> Result<Client, ClientError> {
        let deadline = tokio::time::Instant::now() + timeout;
        let approval: LinkApproval = loop {
            match self.api.get("/v1/devices/link/result").await {
                Ok(a) => break a,
                Err(ClientError::Refused { status: 404, .. }) if tokio::time::Instant::now() < deadline => {
                    tokio::time::sleep(Duration::from_millis(300)).await;
                }
                Err(ClientError::Refused { status: 404, .. }) => {
                    return Err(ClientError::Usage("not approved in time; run `strongroom link` again".into()));
                }
                Err(e) => return Err(e),
            }
        };
        if approval.device_id != self.device {
            return Err(ClientError::Trust("the relay answered with another device's link approval".into()));
        }
        let (identity, network_key): (VerifyingKey, VerifyingKey) =
            open_transfer(&approval.sealed_transfer.0, &self.target(), &self.link, &self.code)
                .map_err(|e| ClientError::Trust(format!("link refused: {e}")))?;
        let keys: strongroom_wire::UserKeys = self.api.get(&format!("/v1/keys/{}", self.user)).await?;
        let list = DeviceList::decode(&keys.device_list.0).map_err(|e| ClientError::Trust(e.to_string()))?;
        let verified = list
            .verify(&DeviceListExpectation {
                network_id: self.network,
                user_id: self.user,
                pinned_identity: Some(identity),
                seen: None,
            })
            .map_err(|e| {
                ClientError::Trust(format!("the device list does not match the identity key received: {e}"))
            })?;
        let me = verified
            .device(self.device)
            .map_err(|e| ClientError::Trust(format!("this device is not in the signed list: {e}")))?;
        if me.signing_key() != self.device_key.verifying_key() {
            return Err(ClientError::Trust("the signed device list names another key for this device".into()));
        }
        let mut pins = std::collections::BTreeMap::new();
        pins.insert(self.user.to_string(), hex(identity.as_bytes()));
        let state = ProfileState {
            server_url: self.server_url,
            network_id: self.network.to_string(),
            network_public: hex(network_key.as_bytes()),
            username: self.username,
            user_id: self.user.to_string(),
            device_id: self.device.to_string(),
            token: crate::state::SessionToken::new(self.token.clone()),
            // A linked device never holds the identity private key.
            identity_seed: None,
            device_seed: crate::state::SecretKey::new(self.device_key.expose_seed().expose()),
            prekeys: Vec::new(),
            next_prekey_id: 0,
            medium_created: Default::default(),
            device_list_version: list.version,
            policy: None,
            pins,
            one_time_used: Default::default(),
            lists_seen: [(self.user.to_string(), (list.version, hex(&list.digest())))].into(),
            lists_known: [(self.user.to_string(), hex(&list.encode()))].into(),
            revoked_known: Default::default(),
            medium_known: Default::default(),
            verified: Default::default(),
            enrolling: false,
        };
        let mut api = Api::new(&state.server_url, Some(self.token));
        api.set_token(state.token.expose().to_owned());
        let dir = self.dir.clone();
        let mut client = Client::from_parts(self.dir, self.vault, self.store, state, api, self.lock);
        client.publish_initial_prekeys(ONE_TIME_BATCH).await?;
        client.policy().await?;
        // Only now does the profile exist (a failure above leaves none).
        self.header.commit(&dir)?;
        Ok(client)
    }
}
