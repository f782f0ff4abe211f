//! Enrolment: a new profile and account, all or nothing.

use crate::api::Api;
use crate::client::*;
use crate::error::ClientError;
use crate::state::{ProfileState, SecretKey, SessionToken};
use crate::store::{hex, LocalStore};
use crate::vault::Vault;
use rand_core::OsRng;
use std::path::{Path, PathBuf};
use strongroom_crypto::certs::*;
use strongroom_crypto::ids::*;
use strongroom_crypto::keys::*;
use strongroom_wire::*;
use subtle::ConstantTimeEq;

/// Deletes the store an unfinished enrolment left (no profile.json).
pub(crate) fn remove_store_files(dir: &Path) {
    for name in ["store.db", "store.db-journal"] {
        let _ = std::fs::remove_file(dir.join(name));
    }
}

/// Registers with the invite. If the relay says the invite is used, this may
/// be our own earlier attempt that failed after registering: the account is
/// resumed only if the password logs in and the account has no device list
/// yet. An account with a device is never taken over by re-running an old
/// invite (nor could it be: the relay binds it to its first identity key).
async fn register_or_resume(
    api: &mut Api,
    invite: &Invite,
    network: NetworkId,
    device: DeviceId,
    username: &str,
    password: &str,
) -> Result<UserId, ClientError> {
    let req = Register { invite: invite.encode(), username: username.into(), password: password.into() };
    let registered: Result<Registered, ClientError> = api.post("/v1/register", &req).await;
    let refused = match registered {
        Ok(r) => {
            return Ok(r.user_id);
        }
        Err(e @ ClientError::Refused { status: 403, .. }) => e,
        Err(e) => return Err(e),
    };
    let Ok(session) = api.login(network, username, password, device).await else { return Err(refused) };
    let user_id = session.user_id;
    match api.get::<UserKeys>(&format!("/v1/keys/{user_id}")).await {
        // No device list yet: nothing of the earlier attempt is on the relay
        // but the account itself. Finish it.
        Err(ClientError::Refused { status: 404, .. }) => Ok(user_id),
        // The relay binds an account to the identity key of its first device
        // list; that key went with the failed attempt's profile.
        Ok(_) => Err(ClientError::Usage(format!(
            "the account {username} already has a device (an earlier enrolment got that far, or it is in use): \
             ask an administrator to reset its devices (`strongroom admin devices reset {username}`) for a new invite"
        ))),
        Err(e) => Err(e),
    }
}

impl Client {
    /// Creates a profile in `dir`, registers with the invite, and publishes
    /// this first device's keys. The network key is pinned only if its
    /// fingerprint matches the one the invite carries.
    ///
    /// All or nothing: a failure before the account is claimed (its device
    /// list published) leaves nothing that blocks a retry; if the relay had
    /// registered the account, a retry with the same invite and password
    /// finishes it. From the claim on, the profile is kept, marked
    /// unfinished (the relay binds the account to its identity key): the
    /// same `enrol` again, with the same passphrase, finishes it, and
    /// nothing else opens it meanwhile.
    pub async fn enrol(
        dir: &Path,
        passphrase: &str,
        invite: &str,
        username: &str,
        password: &str,
    ) -> Result<Self, ClientError> {
        let invite = Invite::parse(invite).map_err(ClientError::Invite)?;
        if dir.join("profile.json").exists() {
            return Self::resume_enrolment(dir, passphrase, username).await;
        }
        if passphrase.chars().count() < 8 {
            return Err(ClientError::Usage("the profile passphrase must be at least 8 characters".into()));
        }
        let mut api = Api::new(&invite.server_url, None);
        // The network key is checked before anything is written.
        let network = NetworkId::from_bytes(invite.network_id);
        let info: NetworkInfo = api.get(&format!("/v1/networks/{network}")).await?;
        let public: [u8; 32] = info
            .network_public
            .0
            .as_slice()
            .try_into()
            .map_err(|_| ClientError::Trust("the server sent a malformed network key".into()))?;
        let key = VerifyingKey::from_bytes(public).map_err(|e| {
            ClientError::Trust(format!("the server sent an unusable network key ({e}); do not use this server"))
        })?;
        let fingerprint = NetworkFingerprint::of(&key);
        if !bool::from(fingerprint.as_bytes().ct_eq(&invite.network_fingerprint)) {
            return Err(ClientError::Trust(
                "the server's network key does not match the fingerprint in your invite: do not use this server; tell your administrator".into(),
            ));
        }
        crate::private_fs::private_dir(dir).map_err(io(dir))?;
        let lock = crate::profile_lock::ProfileLock::acquire(dir)?;
        // Checked again under the lock: another enrolment may have finished meanwhile.
        if dir.join("profile.json").exists() {
            return Err(ClientError::ProfileExists(dir.display().to_string()));
        }
        // A store without profile.json is what an unfinished enrolment left:
        // unreadable without the header's salt, so nothing is lost.
        remove_store_files(dir);
        let (vault, header) = Vault::create(dir, passphrase, PROFILE_KDF_KIB)?;
        let store = LocalStore::open(dir).await?;
        let made = async {
            let device = DeviceId::random(&mut OsRng);
            let user = register_or_resume(&mut api, &invite, network, device, username, password).await?;
            let session = api.login(network, username, password, device).await?;
            let identity = SigningKey::generate(&mut OsRng);
            let device_key = SigningKey::generate(&mut OsRng);
            Ok::<_, ClientError>(ProfileState {
                server_url: invite.server_url.clone(),
                network_id: network.to_string(),
                network_public: hex(&public),
                username: username.into(),
                user_id: user.to_string(),
                device_id: device.to_string(),
                token: SessionToken::new(session.token),
                identity_seed: Some(SecretKey::new(identity.expose_seed().expose())),
                device_seed: SecretKey::new(device_key.expose_seed().expose()),
                prekeys: Vec::new(),
                next_prekey_id: 0,
                medium_created: Default::default(),
                device_list_version: 0,
                policy: None,
                pins: Default::default(),
                one_time_used: Default::default(),
                lists_seen: Default::default(),
                lists_known: Default::default(),
                revoked_known: Default::default(),
                medium_known: Default::default(),
                verified: Default::default(),
                enrolling: false,
            })
        }
        .await;
        let state = match made {
            Ok(state) => state,
            Err(e) => {
                store.close().await;
                remove_store_files(dir);
                return Err(e);
            }
        };
        let mut client = Self::assemble(dir.to_owned(), vault, store, state, api, Some(lock));
        // The policy is checked before the account is claimed with a device
        // list; the keys are on disk (marked unfinished) before the claim.
        let checked = async {
            client.policy().await?;
            client.state.enrolling = true;
            client.save().await
        }
        .await;
        if let Err(e) = checked.and_then(|()| header.commit(dir)) {
            client.store.close().await;
            remove_store_files(dir);
            return Err(e);
        }
        client.finish_enrolment().await?;
        Ok(client)
    }

    /// `enrol` on a profile that exists: finishes an unfinished enrolment.
    async fn resume_enrolment(dir: &Path, passphrase: &str, username: &str) -> Result<Self, ClientError> {
        let lock = crate::profile_lock::ProfileLock::acquire(dir)?;
        let mut client = Self::open_unlocked(dir, passphrase).await?;
        client.lock = Some(lock);
        if !client.state.enrolling {
            return Err(ClientError::ProfileExists(dir.display().to_string()));
        }
        if client.state.username != username {
            return Err(ClientError::Usage(format!(
                "this profile holds the unfinished enrolment of {}; run enrol again with that username, or use another --profile directory",
                client.state.username
            )));
        }
        client.finish_enrolment().await?;
        Ok(client)
    }

    /// Claims the account with this device's list (unless an earlier try
    /// did), publishes its pre-keys, and marks the profile finished.
    async fn finish_enrolment(&mut self) -> Result<(), ClientError> {
        let me = self.user_id();
        match self.api.get::<UserKeys>(&format!("/v1/keys/{me}")).await {
            Err(ClientError::Refused { status: 404, .. }) => self.publish_device_list().await?,
            Ok(keys) => {
                let list = DeviceList::decode(&keys.device_list.0)
                    .map_err(|e| ClientError::Trust(format!("your device list from the relay: {e}")))?;
                let ours = self.identity()?.verifying_key();
                if list.identity_key != ours || !list.devices.iter().any(|d| d.device_id == self.device_id()) {
                    return Err(ClientError::Usage(format!(
                        "the account {} already has another device: ask an administrator to reset its devices for a new invite",
                        self.state.username
                    )));
                }
                // Published by the try that failed; verified like any list.
                self.device_list(me).await?;
                self.state.device_list_version = list.version;
            }
            Err(e) => return Err(e),
        }
        self.add_prekeys(true, ONE_TIME_BATCH).await?;
        self.state.enrolling = false;
        self.save().await
    }

    pub(crate) fn from_parts(
        dir: PathBuf,
        vault: Vault,
        store: LocalStore,
        state: ProfileState,
        api: Api,
        lock: crate::profile_lock::ProfileLock,
    ) -> Self {
        Self::assemble(dir, vault, store, state, api, Some(lock))
    }
}
