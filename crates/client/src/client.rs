//! The client: a profile directory, its keys, and the relay.

use std::collections::HashMap;
use std::path::{Path, PathBuf};

use rand_core::OsRng;
use strongroom_crypto::certs::*;
use strongroom_crypto::content::{Content, FileRef};
use strongroom_crypto::envelope::*;
use strongroom_crypto::ids::*;
use strongroom_crypto::keys::*;
use strongroom_wire::GroupSettings;
use strongroom_wire::*;
use subtle::ConstantTimeEq;

use crate::api::Api;
use crate::error::ClientError;
use crate::state::{ProfileState, SecretKey, SessionToken, MEDIUM_TERM, ONE_TIME};
use crate::store::{hex, LocalStore, StoredRow};
use crate::vault::Vault;

pub(crate) use crate::rules::prekeys::ONE_TIME_BATCH;
use crate::rules::prekeys::ROTATE_AFTER_MS;
pub(crate) use crate::rules::view::{Message, ViewItem};
/// Argon2id memory for the profile key (64 MiB).
pub const PROFILE_KDF_KIB: u32 = 64 * 1024;

/// How often a watching device does its upkeep (purge, top up, rotate).
const UPKEEP_EVERY: std::time::Duration = std::time::Duration::from_secs(600);

/// The conversation kind of a note to self (only its owner's devices).
pub(crate) const NOTES: &str = "notes";

/// What a sync did.
#[derive(Debug, Default)]
pub struct SyncReport {
    /// New messages, in arrival order.
    pub received: Vec<Message>,
    /// Envelopes refused (tampered, replayed, untrusted sender…), and
    /// messages the relay never delivered, each explained.
    pub warnings: Vec<String>,
}

/// A Strongroom device with its profile.
pub struct Client {
    dir: PathBuf,
    vault: Vault,
    store: LocalStore,
    state: ProfileState,
    api: Api,
    /// The device lockout last written to the profile header (u64::MAX:
    /// not yet), so every send does not re-read the header from disk.
    lockout_written: std::sync::atomic::AtomicU64,
    /// This process's claim on the profile directory (None: opened shared,
    /// for administration, and never writes the state).
    lock: Option<crate::profile_lock::ProfileLock>,
}

fn d_id(d: &Delivery) -> Result<[u8; 16], ClientError> {
    MessageId::parse_hex(&d.message_id).map(|m| *m.as_bytes()).ok_or(ClientError::Corrupt("message id from server"))
}

fn now_ms() -> u64 {
    std::time::SystemTime::now().duration_since(std::time::UNIX_EPOCH).map(|d| d.as_millis() as u64).unwrap_or(0)
}

fn unhex<const N: usize>(s: &str) -> Result<[u8; N], ClientError> {
    let v: Option<Vec<u8>> =
        (0..s.len()).step_by(2).map(|i| s.get(i..i + 2).and_then(|h| u8::from_str_radix(h, 16).ok())).collect();
    v.and_then(|v| v.try_into().ok()).ok_or(ClientError::Corrupt("stored key material"))
}

fn io(path: &Path) -> impl Fn(std::io::Error) -> ClientError + '_ {
    move |source| ClientError::Io { path: path.display().to_string(), source }
}

/// Deletes the store an unfinished enrolment left (no profile.json).
pub(crate) fn remove_store_files(dir: &Path) {
    for name in ["store.db", "store.db-journal"] {
        let _ = std::fs::remove_file(dir.join(name));
    }
}

/// The account an enrolment registers, or finds half-enrolled.
struct Enrolling {
    user_id: UserId,
    /// The version of a device list an unfinished enrolment published (0: none).
    list_version: u64,
}

/// Registers with the invite. If the relay says the invite is used, this may
/// be our own earlier attempt that failed after registering: the account is
/// taken over only if the password logs in and the account has no working
/// device yet (no device list, or one device with no pre-keys). A working
/// account is never taken over by re-running an old invite.
async fn register_or_resume(
    api: &mut Api,
    invite: &Invite,
    network: NetworkId,
    device: DeviceId,
    username: &str,
    password: &str,
) -> Result<Enrolling, ClientError> {
    let req = Register { invite: invite.encode(), username: username.into(), password: password.into() };
    let registered: Result<Registered, ClientError> = api.post("/v1/register", &req).await;
    let refused = match registered {
        Ok(r) => {
            let user_id = UserId::parse_hex(&r.user_id).ok_or(ClientError::Corrupt("user id from server"))?;
            return Ok(Enrolling { user_id, list_version: 0 });
        }
        Err(e @ ClientError::Refused { status: 403, .. }) => e,
        Err(e) => return Err(e),
    };
    let Ok(session) = api.login(network, username, password, device).await else { return Err(refused) };
    let user_id = UserId::parse_hex(&session.user_id).ok_or(ClientError::Corrupt("user id from server"))?;
    let list_version = match api.get::<UserKeys>(&format!("/v1/keys/{user_id}")).await {
        Ok(keys) => {
            let Ok(list) = DeviceList::decode(&keys.device_list.0) else { return Err(refused) };
            let unused = list.devices.len() == 1 && keys.one_time_remaining.iter().all(|c| c.count == 0);
            if !unused {
                return Err(refused);
            }
            list.version
        }
        Err(ClientError::Refused { status: 404, .. }) => 0,
        Err(e) => return Err(e),
    };
    Ok(Enrolling { user_id, list_version })
}

impl Client {
    /// Creates a profile in `dir`, registers with the invite, and publishes
    /// this first device's keys. The network key is pinned only if its
    /// fingerprint matches the one the invite carries.
    ///
    /// All or nothing: the profile exists once `profile.json` is written,
    /// last; a failure leaves nothing that blocks a retry. If the relay
    /// registered the account before the failure, a retry with the same
    /// invite and password finishes that enrolment.
    pub async fn enrol(
        dir: &Path,
        passphrase: &str,
        invite: &str,
        username: &str,
        password: &str,
    ) -> Result<Self, ClientError> {
        let invite = Invite::parse(invite).map_err(ClientError::Invite)?;
        if dir.join("profile.json").exists() {
            return Err(ClientError::ProfileExists(dir.display().to_string()));
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
                user_id: user.user_id.to_string(),
                device_id: device.to_string(),
                token: SessionToken::new(session.token),
                identity_seed: SecretKey::new(identity.expose_seed().expose()),
                device_seed: SecretKey::new(device_key.expose_seed().expose()),
                prekeys: Vec::new(),
                next_prekey_id: 0,
                medium_created: Default::default(),
                device_list_version: user.list_version,
                policy: None,
                pins: Default::default(),
                one_time_used: Default::default(),
                lists_seen: Default::default(),
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
        let mut client =
            Self { dir: dir.to_owned(), vault, store, state, api, lockout_written: u64::MAX.into(), lock: Some(lock) };
        // The policy is checked before the account is claimed with a device list.
        let finished = async {
            client.policy().await?;
            client.publish_device_list().await?;
            client.add_prekeys(true, ONE_TIME_BATCH).await?;
            client.save().await
        }
        .await;
        match finished.and_then(|()| header.commit(dir)) {
            Ok(()) => Ok(client),
            Err(e) => {
                client.store.close().await;
                remove_store_files(dir);
                Err(e)
            }
        }
    }

    pub(crate) fn from_parts(
        dir: PathBuf,
        vault: Vault,
        store: LocalStore,
        state: ProfileState,
        api: Api,
        lock: crate::profile_lock::ProfileLock,
    ) -> Self {
        Self { dir, vault, store, state, api, lockout_written: u64::MAX.into(), lock: Some(lock) }
    }

    pub(crate) fn api(&self) -> &Api {
        &self.api
    }

    pub(crate) fn identity_key_pair(&self) -> Result<SigningKey, ClientError> {
        self.identity()
    }

    pub(crate) fn pinned_network_key(&self) -> Result<VerifyingKey, ClientError> {
        self.network_key()
    }

    pub(crate) async fn set_device_list_version(&mut self, version: u64) -> Result<(), ClientError> {
        self.state.device_list_version = version;
        self.save().await
    }

    pub(crate) async fn publish_initial_prekeys(&mut self, one_time: u32) -> Result<(), ClientError> {
        self.add_prekeys(true, one_time).await?;
        self.save().await
    }

    /// Unlocks an existing profile.
    pub async fn open(dir: &Path, passphrase: &str) -> Result<Self, ClientError> {
        if !dir.join("profile.json").exists() {
            return Err(ClientError::NoProfile(dir.display().to_string()));
        }
        let lock = crate::profile_lock::ProfileLock::acquire(dir)?;
        let mut client = Self::open_unlocked(dir, passphrase).await?;
        client.lock = Some(lock);
        Ok(client)
    }

    /// Opens a profile another process may own, for administration calls
    /// only (`strongroom admin …` beside a running app): it reads the keys
    /// and session but never writes the state record, so it cannot undo
    /// the owner's pre-key or trust updates.
    pub async fn open_shared(dir: &Path, passphrase: &str) -> Result<Self, ClientError> {
        if !dir.join("profile.json").exists() {
            return Err(ClientError::NoProfile(dir.display().to_string()));
        }
        Self::open_unlocked(dir, passphrase).await
    }

    async fn open_unlocked(dir: &Path, passphrase: &str) -> Result<Self, ClientError> {
        let vault = Vault::unlock(dir, passphrase)?;
        let store = LocalStore::open(dir).await?;
        let raw =
            store.record(&vault, "state").await?.ok_or(ClientError::Corrupt("the profile has no state record"))?;
        let state: ProfileState = serde_json::from_slice(&raw).map_err(|_| ClientError::Corrupt("state record"))?;
        let api = Api::new(&state.server_url, Some(state.token.expose().to_owned()));
        Ok(Self { dir: dir.to_owned(), vault, store, state, api, lockout_written: u64::MAX.into(), lock: None })
    }

    /// Closes the store.
    pub async fn close(self) {
        self.store.close().await;
    }

    async fn save(&self) -> Result<(), ClientError> {
        if self.lock.is_none() {
            // Opened shared: the owning process keeps the state.
            return Ok(());
        }
        let json = zeroize::Zeroizing::new(serde_json::to_vec(&self.state).map_err(|_| ClientError::Corrupt("state"))?);
        self.store.put_record(&self.vault, "state", &json).await
    }

    /// The profile directory.
    pub fn dir(&self) -> &Path {
        &self.dir
    }
    /// This user.
    pub fn user_id(&self) -> UserId {
        UserId::parse_hex(&self.state.user_id).unwrap_or(UserId::from_bytes([0; 16]))
    }
    /// This user's name.
    pub fn username(&self) -> &str {
        &self.state.username
    }
    /// This device.
    pub fn device_id(&self) -> DeviceId {
        DeviceId::parse_hex(&self.state.device_id).unwrap_or(DeviceId::from_bytes([0; 16]))
    }
    /// The network.
    pub fn network_id(&self) -> NetworkId {
        NetworkId::parse_hex(&self.state.network_id).unwrap_or(NetworkId::from_bytes([0; 16]))
    }
    fn identity(&self) -> Result<SigningKey, ClientError> {
        SigningKey::from_seed(SecretBytes::new(*self.state.identity_seed.expose()))
            .map_err(|_| ClientError::Corrupt("identity key"))
    }
    fn device_key(&self) -> Result<SigningKey, ClientError> {
        SigningKey::from_seed(SecretBytes::new(*self.state.device_seed.expose()))
            .map_err(|_| ClientError::Corrupt("device key"))
    }
    fn network_key(&self) -> Result<VerifyingKey, ClientError> {
        VerifyingKey::from_bytes(unhex(&self.state.network_public)?).map_err(|_| ClientError::Corrupt("network key"))
    }

    async fn publish_device_list(&mut self) -> Result<(), ClientError> {
        let device_key = self.device_key()?;
        let entry = DeviceEntry {
            device_id: self.device_id(),
            signing_key: device_key.verifying_key(),
            created_at: now_ms(),
            revoked: false,
            versions: strongroom_crypto::suite::SUPPORTED_VERSIONS,
            name: "cli".into(),
        };
        self.state.device_list_version += 1;
        let list = DeviceList::sign(
            &self.identity()?,
            self.network_id(),
            self.user_id(),
            self.state.device_list_version,
            now_ms(),
            vec![entry],
        )
        .map_err(|e| ClientError::Usage(e.to_string()))?;
        self.state.pins.insert(self.state.user_id.clone(), hex(self.identity()?.verifying_key().as_bytes()));
        self.api.put_bytes("/v1/keys/device-list", list.encode()).await
    }

    async fn add_prekeys(&mut self, medium_term: bool, one_time: u32) -> Result<(), ClientError> {
        self.add_prekeys_at(medium_term, one_time, now_ms()).await
    }

    async fn add_prekeys_at(&mut self, medium_term: bool, one_time: u32, now: u64) -> Result<(), ClientError> {
        let device_key = self.device_key()?;
        let mut signed = Vec::new();
        let kinds =
            medium_term.then_some(PreKeyKind::MediumTerm).into_iter().chain((0..one_time).map(|_| PreKeyKind::OneTime));
        for kind in kinds {
            let id = self.state.next_prekey_id;
            self.state.next_prekey_id += 1;
            let secret = AgreementSecret::generate(&mut OsRng);
            let expires = if kind == PreKeyKind::MediumTerm { now + 30 * 86_400_000 } else { now + 365 * 86_400_000 };
            let key_ref = PreKeyRef { kind, id };
            let pk = SignedPreKey::sign(
                &device_key,
                self.network_id(),
                self.user_id(),
                self.device_id(),
                key_ref,
                secret.public(),
                now,
                expires,
            )
            .map_err(|e| ClientError::Usage(e.to_string()))?;
            signed.push(B64(pk.encode()));
            let stored_kind = if kind == PreKeyKind::OneTime { ONE_TIME } else { MEDIUM_TERM };
            self.state.prekeys.push((stored_kind, id, SecretKey::new(secret.expose_bytes().expose())));
            if kind == PreKeyKind::MediumTerm {
                self.state.medium_created.insert(id, now);
            }
        }
        self.save().await?;
        self.api.put_json("/v1/keys/prekeys", &UploadPreKeys { prekeys: signed }).await
    }

    fn prekey_secrets(&self) -> Result<HashMap<PreKeyRef, AgreementSecret>, ClientError> {
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
            }
        }
        Ok(verified)
    }

    /// The security-group settings that apply to this user, fetched now (so
    /// an administrator's change applies at the next operation, no restart).
    /// Also records the device lockout for the (locked) profile header.
    pub async fn my_policy(&self) -> Result<GroupSettings, ClientError> {
        let policy: GroupSettings = self.api.get("/v1/me/policy").await?;
        let lockout = u64::from(policy.device_lockout);
        if self.lockout_written.load(std::sync::atomic::Ordering::Relaxed) != lockout {
            Vault::set_lockout(&self.dir, policy.device_lockout)?;
            self.lockout_written.store(lockout, std::sync::atomic::Ordering::Relaxed);
        }
        Ok(policy)
    }

    /// An administration API call (`strongroom admin …`): JSON in, JSON out.
    pub async fn admin_call(
        &self,
        method: reqwest::Method,
        path: &str,
        body: Option<&serde_json::Value>,
    ) -> Result<Option<serde_json::Value>, ClientError> {
        self.api.call_json(method, path, body).await
    }

    pub(crate) async fn confirm_wipe(&self) -> Result<(), ClientError> {
        self.api.post_empty("/v1/devices/wipe/confirm", &serde_json::json!({})).await
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
    async fn device_list_and_revoked(
        &mut self,
        user: UserId,
    ) -> Result<(VerifiedDeviceList, Vec<DeviceId>), ClientError> {
        let keys: UserKeys = self.api.get(&format!("/v1/keys/{user}")).await?;
        let revoked: Vec<DeviceId> = keys.revoked_devices.iter().filter_map(|d| DeviceId::parse_hex(d)).collect();
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
        let verified = list
            .verify(&DeviceListExpectation {
                network_id: self.network_id(),
                user_id: user,
                pinned_identity: pinned,
                seen,
            })
            .map_err(|e| ClientError::Trust(format!("device list of {user} refused: {e}")))?;
        let newer = seen.is_none_or(|(version, _)| list.version > version);
        if newer {
            self.state.lists_seen.insert(user.to_string(), (list.version, hex(&list.digest())));
        }
        if pinned.is_none() {
            self.state.pins.insert(user.to_string(), hex(verified.identity_key().as_bytes()));
        }
        if newer || pinned.is_none() {
            self.save().await?;
        }
        Ok((verified, revoked))
    }

    /// Creates an invite (network administrators).
    pub async fn create_invite(&self, admin: bool) -> Result<InviteCreated, ClientError> {
        self.api.post("/v1/invites", &CreateInvite { admin, ttl_secs: None }).await
    }

    /// The safety number with `username`, from this user's identity and the
    /// pinned (or, on first contact, fetched and pinned) identity of theirs.
    pub async fn safety_number(
        &mut self,
        username: &str,
    ) -> Result<strongroom_crypto::safety_number::SafetyNumber, ClientError> {
        let user = self.find_user(username).await?;
        let theirs = self.device_list(user).await?.identity_key();
        let mine = self.identity()?.verifying_key();
        let net = self.network_id();
        Ok(strongroom_crypto::safety_number::SafetyNumber::new((&net, &self.user_id(), &mine), (&net, &user, &theirs)))
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

    /// A user id by username.
    pub async fn find_user(&self, username: &str) -> Result<UserId, ClientError> {
        // Percent-encoded: "bob#x" must not look up "bob", nor "a&username=b" inject a parameter.
        let mut url = reqwest::Url::parse("http://relay/v1/users").map_err(|_| ClientError::Corrupt("url"))?;
        url.query_pairs_mut().append_pair("username", username);
        let u: UserInfo = self.api.get(&format!("/v1/users?{}", url.query().unwrap_or_default())).await?;
        UserId::parse_hex(&u.user_id).ok_or(ClientError::Corrupt("user id from server"))
    }

    /// A username by user id.
    pub async fn username_of(&self, user: UserId) -> Result<String, ClientError> {
        Ok(self.api.get::<UserInfo>(&format!("/v1/users?id={user}")).await?.username)
    }

    /// Conversations this user is in.
    pub async fn conversations(&self) -> Result<Vec<Conversation>, ClientError> {
        self.api.get("/v1/conversations").await
    }

    /// Creates a conversation with the given usernames.
    pub async fn create_conversation(&self, kind: &str, members: &[&str]) -> Result<Conversation, ClientError> {
        let mut ids = Vec::new();
        for m in members {
            ids.push(self.find_user(m).await?.to_string());
        }
        self.api.post("/v1/conversations", &CreateConversation { kind: kind.into(), members: ids }).await
    }

    /// A conversation's members and roles.
    pub async fn conversation(&self, id: ConversationId) -> Result<Conversation, ClientError> {
        self.api.get(&format!("/v1/conversations/{id}")).await
    }

    /// Changes members (groups: any member; rooms: moderators) and announces
    /// the change in the conversation with a signed control message, so every
    /// member and the retention archive hold a record of who changed what.
    pub async fn change_members(
        &mut self,
        id: ConversationId,
        add: &[&str],
        remove: &[&str],
        promote: &[&str],
        demote: &[&str],
    ) -> Result<Conversation, ClientError> {
        let (add, remove, promote, demote) = (
            self.resolve(add).await?,
            self.resolve(remove).await?,
            self.resolve(promote).await?,
            self.resolve(demote).await?,
        );
        let hexes = |v: &[UserId]| v.iter().map(|u| u.to_string()).collect::<Vec<_>>();
        let change = ChangeMembers {
            add: hexes(&add),
            remove: hexes(&remove),
            promote: hexes(&promote),
            demote: hexes(&demote),
        };
        let c: Conversation = self.api.post(&format!("/v1/conversations/{id}/members"), &change).await?;
        use strongroom_crypto::content::Control;
        let leaving = remove == [self.user_id()];
        let announcements = [
            (!add.is_empty()).then(|| Control::MembersAdded(add.clone())),
            (!remove.is_empty() && !leaving).then(|| Control::MembersRemoved(remove.clone())),
            leaving.then_some(Control::Left),
            (!promote.is_empty()).then(|| Control::ModeratorsAdded(promote.clone())),
            (!demote.is_empty()).then(|| Control::ModeratorsRemoved(demote.clone())),
        ];
        for control in announcements.into_iter().flatten() {
            // Best effort: after leaving, there may be nobody left to tell.
            match self.send(id, &Content::Control(control), 0).await {
                Ok(_) | Err(ClientError::Refused { .. }) | Err(ClientError::Usage(_)) => {}
                Err(e) => return Err(e),
            }
        }
        Ok(c)
    }

    async fn resolve(&self, names: &[&str]) -> Result<Vec<UserId>, ClientError> {
        let mut v = Vec::with_capacity(names.len());
        for name in names {
            v.push(self.find_user(name).await?);
        }
        Ok(v)
    }

    /// This user's devices from the signed device list: (id, name, revoked).
    pub async fn devices(&mut self) -> Result<Vec<(DeviceId, String, bool)>, ClientError> {
        let list = self.device_list(self.user_id()).await?;
        Ok(list.list().devices.iter().map(|d| (d.device_id, d.name.clone(), d.revoked)).collect())
    }

    /// Redeems an administrator's reset code with a new password, then logs in with it.
    pub async fn reset_password(&mut self, code: &str, new_password: &str) -> Result<(), ClientError> {
        let req = RedeemReset {
            network_id: self.state.network_id.clone(),
            username: self.state.username.clone(),
            code: code.into(),
            new_password: new_password.into(),
        };
        self.api.post_empty("/v1/password/reset", &req).await?;
        self.login(new_password).await
    }

    /// Logs this device in again (after the session expired or the password changed).
    pub async fn login(&mut self, password: &str) -> Result<(), ClientError> {
        let (network, device, username) = (self.network_id(), self.device_id(), self.state.username.clone());
        let session = self.api.login(network, &username, password, device).await?;
        self.state.token = SessionToken::new(session.token);
        self.save().await
    }

    /// The direct conversation with `username`, created if needed.
    /// Naming yourself gives your note to self.
    pub async fn direct_with(&self, username: &str) -> Result<ConversationId, ClientError> {
        let other = self.find_user(username).await?;
        if other == self.user_id() {
            return self.notes_to_self().await;
        }
        let other = other.to_string();
        for c in self.conversations().await? {
            if c.kind == "direct" && c.members.iter().any(|m| m.user_id == other) {
                return ConversationId::parse_hex(&c.id).ok_or(ClientError::Corrupt("conversation id"));
            }
        }
        let c: Conversation = self
            .api
            .post("/v1/conversations", &CreateConversation { kind: "direct".into(), members: vec![other] })
            .await?;
        ConversationId::parse_hex(&c.id).ok_or(ClientError::Corrupt("conversation id"))
    }

    /// The devices a message to `conversation` is sealed for, and whether
    /// the conversation is a note to self.
    /// This user's note-to-self conversation (created on first use): only
    /// this user's devices, and the retention service if the network has
    /// one, receive what is sent to it.
    pub async fn notes_to_self(&self) -> Result<ConversationId, ClientError> {
        if let Some(c) = self.conversations().await?.into_iter().find(|c| c.kind == NOTES) {
            return ConversationId::parse_hex(&c.id).ok_or(ClientError::Corrupt("conversation id"));
        }
        let c: Conversation =
            self.api.post("/v1/conversations", &CreateConversation { kind: NOTES.into(), members: Vec::new() }).await?;
        ConversationId::parse_hex(&c.id).ok_or(ClientError::Corrupt("conversation id"))
    }

    async fn recipients(&mut self, conversation: ConversationId) -> Result<(Vec<Recipient>, bool), ClientError> {
        let c: Conversation = self.api.get(&format!("/v1/conversations/{conversation}")).await?;
        let notes = c.kind == NOTES;
        let me = (self.user_id(), self.device_id());
        let mut devices = Vec::new();
        for m in &c.members {
            let user = UserId::parse_hex(&m.user_id).ok_or(ClientError::Corrupt("member id"))?;
            let (list, revoked) = self.device_list_and_revoked(user).await?;
            devices.extend(
                list.active_devices()
                    .filter(|d| (d.user_id(), d.device_id()) != me && !revoked.contains(&d.device_id())),
            );
        }
        let mut recipients = Vec::with_capacity(devices.len() + 1);
        if !devices.is_empty() {
            // A one-time pre-key for the first message to a device, then once
            // per medium-term period; the medium-term key in between
            // (PROTOCOL.md §3.1, THREAT_MODEL.md "Forward secrecy").
            let now = now_ms();
            let pairs: Vec<String> = devices.iter().map(|d| format!("{}:{}", d.user_id(), d.device_id())).collect();
            let medium_term = pairs
                .iter()
                .filter(|p| !crate::rules::prekeys::wants_one_time(self.state.one_time_used.get(*p).copied(), now))
                .cloned()
                .collect();
            let claim = ClaimPreKeys { devices: pairs.clone(), medium_term };
            let claimed: ClaimedPreKeys = self.api.post("/v1/keys/claim", &claim).await?;
            let mut used_one_time = false;
            for ((d, pair), pk) in devices.iter().zip(pairs).zip(claimed.prekeys) {
                let signed = SignedPreKey::decode(&pk.0)
                    .map_err(|e| ClientError::Trust(format!("pre-key of device {}: {e}", d.device_id())))?;
                let verified = signed
                    .verify(d, now)
                    .map_err(|e| ClientError::Trust(format!("pre-key of device {}: {e}", d.device_id())))?;
                if verified.key_ref().kind == PreKeyKind::OneTime {
                    self.state.one_time_used.insert(pair, now);
                    used_one_time = true;
                }
                recipients.push(Recipient::from(&verified));
            }
            if used_one_time {
                let horizon = now.saturating_sub(ROTATE_AFTER_MS);
                self.state.one_time_used.retain(|_, at| *at >= horizon);
                self.save().await?;
            }
        }
        let policy = self.policy().await?;
        recipients.extend(policy.retention_recipients());
        Ok((recipients, notes))
    }

    /// The conversation's default timers (ttl, burn-on-read), from the last
    /// `DefaultTimers` control message sent or received in it.
    pub async fn default_timers(&self, conversation: ConversationId) -> Result<(u32, u32), ClientError> {
        let rec = self.store.record(&self.vault, &format!("timers:{conversation}")).await?;
        Ok(rec.and_then(|r| serde_json::from_slice::<(u32, u32)>(&r).ok()).unwrap_or((0, 0)))
    }

    /// Sets the conversation's default timers for everyone in it.
    pub async fn set_default_timers(
        &mut self,
        conversation: ConversationId,
        ttl_secs: u32,
        bor_secs: u32,
    ) -> Result<Accepted, ClientError> {
        let control = Content::Control(strongroom_crypto::content::Control::DefaultTimers {
            ttl_secs,
            burn_on_read_secs: bor_secs,
        });
        // The announcement itself does not expire.
        let accepted = self.send_exact(conversation, &control, 0, 0).await?;
        self.remember_timers(conversation, ttl_secs, bor_secs).await?;
        Ok(accepted)
    }

    async fn remember_timers(&self, conversation: ConversationId, ttl: u32, bor: u32) -> Result<(), ClientError> {
        let json = serde_json::to_vec(&(ttl, bor)).map_err(|_| ClientError::Corrupt("timers"))?;
        self.store.put_record(&self.vault, &format!("timers:{conversation}"), &json).await
    }

    /// Starts the burn-on-read clock of messages the user has now seen.
    pub async fn mark_displayed(&self, ids: &[MessageId]) -> Result<(), ClientError> {
        let raw: Vec<[u8; 16]> = ids.iter().map(|m| *m.as_bytes()).collect();
        self.store.mark_displayed(&raw, now_ms()).await
    }

    /// Seals `content` for every current device of the conversation (and the
    /// retention devices the verified policy names) and sends it. If the
    /// server reports a changed device set, refreshes once and retries.
    pub async fn send(
        &mut self,
        conversation: ConversationId,
        content: &Content,
        ttl_secs: u32,
    ) -> Result<Accepted, ClientError> {
        self.send_timed(conversation, content, ttl_secs, 0).await
    }

    /// Sends with a TTL and a burn-on-read time (seconds; 0 = off). When both
    /// are 0 the conversation's default timers apply; the security group's
    /// maxima clamp whatever results.
    pub async fn send_timed(
        &mut self,
        conversation: ConversationId,
        content: &Content,
        ttl_secs: u32,
        bor_secs: u32,
    ) -> Result<Accepted, ClientError> {
        let (ttl_secs, bor_secs) = if ttl_secs == 0 && bor_secs == 0 {
            self.default_timers(conversation).await?
        } else {
            (ttl_secs, bor_secs)
        };
        self.send_exact(conversation, content, ttl_secs, bor_secs).await
    }

    /// Sends with no timers, whatever the conversation's defaults.
    pub(crate) async fn send_untimed(
        &mut self,
        conversation: ConversationId,
        content: &Content,
    ) -> Result<Accepted, ClientError> {
        self.send_exact(conversation, content, 0, 0).await
    }

    pub(crate) async fn record(&self, name: &str) -> Result<Option<zeroize::Zeroizing<Vec<u8>>>, ClientError> {
        self.store.record(&self.vault, name).await
    }

    pub(crate) async fn put_record(&self, name: &str, value: &[u8]) -> Result<(), ClientError> {
        self.store.put_record(&self.vault, name, value).await
    }

    /// Sends with exactly these timers (no conversation defaults), clamped
    /// to the security group's maxima.
    async fn send_exact(
        &mut self,
        conversation: ConversationId,
        content: &Content,
        ttl_secs: u32,
        bor_secs: u32,
    ) -> Result<Accepted, ClientError> {
        let rules = self.my_policy().await?;
        if matches!(content, Content::Location(_)) && !rules.location_enabled {
            return Err(ClientError::Policy("your security group does not allow sharing locations".into()));
        }
        let (ttl_secs, bor_secs) =
            crate::rules::timers::effective((ttl_secs, bor_secs), (0, 0), rules.max_ttl_secs, rules.max_bor_secs);
        let mut attempt = 0;
        loop {
            attempt += 1;
            let (recipients, notes) = self.recipients(conversation).await?;
            if recipients.is_empty() && !notes {
                return Err(ClientError::Usage("nobody else is in this conversation yet".into()));
            }
            let identity = self.identity()?;
            let device_key = self.device_key()?;
            let sender = Sender {
                network_id: self.network_id(),
                user_id: self.user_id(),
                identity_key: identity.verifying_key(),
                device_id: self.device_id(),
                signing_key: &device_key,
            };
            let meta = MessageMeta {
                host_network_id: self.network_id(),
                conversation_id: conversation,
                message_id: MessageId::random(&mut OsRng),
                timestamp: now_ms(),
                ttl_secs,
                burn_on_read_secs: bor_secs,
                membership: MembershipCommitment::default(),
            };
            let posted = if recipients.is_empty() {
                // A note to self with no other device of ours and no
                // retention: nobody to seal for, so it stays on this device
                // (sequence 0: not numbered by the relay).
                Ok(Accepted { message_id: meta.message_id.to_string(), seq: 0, duplicate: false })
            } else {
                let env = seal(&sender, &meta, content, &recipients, &mut OsRng)
                    .map_err(|e| ClientError::Usage(e.to_string()))?;
                self.post_envelope(env.encode()).await
            };
            match posted {
                Err(ClientError::Refused { code, .. }) if code == "recipient_mismatch" && attempt < 3 => continue,
                Ok(accepted) => {
                    // Keep our own copy, so the conversation reads complete here too.
                    let row = StoredRow {
                        message_id: *meta.message_id.as_bytes(),
                        conversation: *conversation.as_bytes(),
                        seq: accepted.seq,
                        sender: *self.user_id().as_bytes(),
                        timestamp: meta.timestamp,
                        burn_secs: 0,
                        sealed: Vec::new(),
                    };
                    let plain =
                        zeroize::Zeroizing::new(content.encode().map_err(|e| ClientError::Usage(e.to_string()))?);
                    let expires = crate::rules::timers::expires_at(meta.timestamp, ttl_secs);
                    self.store.put_message(&self.vault, &row, &plain, expires).await?;
                    if let Content::Recall { target } = content {
                        self.store.delete_message(target.as_bytes()).await?;
                    }
                    return Ok(accepted);
                }
                other => return other,
            }
        }
    }

    /// Encrypts and uploads a file, then sends its reference. Memory stays
    /// flat; `progress` sees (bytes done, total) for encryption then upload.
    pub async fn send_file(
        &mut self,
        conversation: ConversationId,
        path: &Path,
        progress: crate::files::Progress<'_>,
    ) -> Result<(Accepted, FileRef), ClientError> {
        let name = path.file_name().map(|n| n.to_string_lossy().into_owned()).unwrap_or_else(|| "file".into());
        let media = crate::files::media_type(&name).to_owned();
        self.send_file_named(conversation, path, &name, &media, progress).await
    }

    /// [`Client::send_file`] under a given file name and media type.
    pub async fn send_file_named(
        &mut self,
        conversation: ConversationId,
        path: &Path,
        name: &str,
        media_type: &str,
        progress: crate::files::Progress<'_>,
    ) -> Result<(Accepted, FileRef), ClientError> {
        let rules = self.my_policy().await?;
        if !rules.files_enabled {
            return Err(ClientError::Policy("your security group does not allow sending files".into()));
        }
        let size = std::fs::metadata(path).map_err(io(path))?.len();
        if size > rules.max_file_size {
            return Err(ClientError::Policy(format!(
                "files are limited to {} bytes in your security group; this one is {size}",
                rules.max_file_size
            )));
        }
        let tmp = crate::files::scratch(&self.dir)?;
        let result = self.send_file_via(conversation, path, &tmp, progress).await.map(|mut f| {
            f.name = name.chars().take(255).collect();
            f.media_type = media_type.to_owned();
            f
        });
        let result = match result {
            Ok(file) => {
                let accepted = self.send(conversation, &Content::File(file.clone()), 0).await;
                accepted.map(|a| (a, file))
            }
            Err(e) => Err(e),
        };
        let _ = std::fs::remove_file(&tmp);
        result
    }

    async fn send_file_via(
        &mut self,
        conversation: ConversationId,
        path: &Path,
        tmp: &Path,
        progress: crate::files::Progress<'_>,
    ) -> Result<FileRef, ClientError> {
        let (source, scratch) = (path.to_owned(), tmp.to_owned());
        let mut file = tokio::task::block_in_place(|| crate::files::encrypt_file(&source, &scratch, progress))?;
        let len =
            std::fs::metadata(tmp).map_err(|source| ClientError::Io { path: tmp.display().to_string(), source })?.len();
        let upload = tokio::fs::File::open(tmp)
            .await
            .map_err(|source| ClientError::Io { path: tmp.display().to_string(), source })?;
        let path_q = format!("/v1/blobs?conversation={conversation}&sha256={}", hex(&file.ciphertext_sha256));
        let created: BlobCreated = self.api.post_file(&path_q, upload, len).await?;
        progress(len, len);
        file.blob_id = BlobId::parse_hex(&created.blob_id).ok_or(ClientError::Corrupt("blob id from server"))?;
        Ok(file)
    }

    /// Downloads and decrypts a received file to `dest`, verifying its hash,
    /// size and every chunk; on any failure nothing is left at `dest`.
    pub async fn get_file(
        &self,
        file: &FileRef,
        dest: &Path,
        progress: crate::files::Progress<'_>,
    ) -> Result<(), ClientError> {
        if !self.my_policy().await?.file_download {
            return Err(ClientError::Policy("your security group does not allow downloading files".into()));
        }
        let tmp = crate::files::scratch(&self.dir)?;
        let result = async {
            self.api.download(&format!("/v1/blobs/{}", file.blob_id), &tmp).await?;
            let (f, t, d) = (file.clone(), tmp.clone(), dest.to_owned());
            tokio::task::block_in_place(|| crate::files::decrypt_file(&f, &t, &d, progress))
        }
        .await;
        let _ = std::fs::remove_file(&tmp);
        result
    }

    /// The file reference carried by a stored message.
    pub async fn file_of(&self, message: MessageId) -> Result<FileRef, ClientError> {
        self.messages(None)
            .await?
            .into_iter()
            .find(|m| m.message_id == message)
            .and_then(|m| match m.content {
                Content::File(f) => Some(f),
                _ => None,
            })
            .ok_or_else(|| {
                ClientError::Usage(format!("no received file with message id {message}; run `strongroom read` first"))
            })
    }

    /// Posts an envelope, resending the same bytes if the connection fails:
    /// the server accepts a message id once, so a resend after a lost answer
    /// is harmless and nothing is sent twice.
    async fn post_envelope(&self, bytes: Vec<u8>) -> Result<Accepted, ClientError> {
        let mut delay = std::time::Duration::from_millis(100);
        for _ in 0..12 {
            match self.api.post_bytes::<Accepted>("/v1/messages", bytes.clone()).await {
                Err(ClientError::Network(_)) => {
                    tokio::time::sleep(delay).await;
                    delay = (delay * 2).min(std::time::Duration::from_secs(2));
                }
                other => return other,
            }
        }
        self.api.post_bytes("/v1/messages", bytes).await
    }

    /// Sends text.
    pub async fn send_text(&mut self, conversation: ConversationId, text: &str) -> Result<Accepted, ClientError> {
        self.send(conversation, &Content::Text(text.into()), 0).await
    }

    /// Fetches, verifies, decrypts, stores and acknowledges everything queued
    /// for this device. Envelopes that fail verification become warnings,
    /// are kept (sealed) as evidence, and are then acknowledged so they do
    /// not block the queue; an error a retry could fix (relay, key directory
    /// or local store) stops the sync with that message and everything after
    /// it unacknowledged. Once the queue is drained, sequence numbers that
    /// never arrived are reported as gaps. Nothing panics.
    pub async fn sync(&mut self) -> Result<SyncReport, ClientError> {
        let mut report = SyncReport::default();
        let mut lists = HashMap::new();
        let mut touched: std::collections::BTreeSet<ConversationId> = Default::default();
        let mut handled: std::collections::HashSet<String> = std::collections::HashSet::new();
        let mut drained = false;
        loop {
            let batch: Deliveries = self.api.get("/v1/messages?limit=500").await?;
            if batch.messages.is_empty() {
                drained = true;
                break;
            }
            // A relay that keeps serving what this pass already handled
            // (acknowledged or refused) would keep us here forever.
            if batch.messages.iter().all(|d| handled.contains(&d.message_id)) {
                report.warnings.push("the server keeps resending messages already handled; stopping this sync".into());
                break;
            }
            handled.extend(batch.messages.iter().map(|d| d.message_id.clone()));
            let mut ack = Vec::with_capacity(batch.messages.len());
            let mut stop = None;
            let mut opened = Vec::with_capacity(batch.messages.len());
            let mut refusals = Vec::new();
            let mut in_batch = std::collections::HashSet::new();
            for d in &batch.messages {
                let reason = match self.open_delivery(d, &mut lists).await {
                    Ok((m, row, plain, expires)) if in_batch.insert(m.message_id) => {
                        touched.insert(m.conversation);
                        opened.push((row, plain, expires));
                        report.received.push(m);
                        None
                    }
                    Ok(_) => Some("delivered twice (replay)".to_owned()),
                    Err(ClientError::AlreadyStored) => None,
                    // A retry could succeed (relay or key directory down, local
                    // store failing): stop here, acknowledge nothing from this
                    // message on, and let the next sync take it again.
                    Err(e) if e.is_transient() => {
                        stop = Some(e);
                        break;
                    }
                    Err(e) => Some(e.to_string()),
                };
                if let Some(reason) = reason {
                    report.warnings.push(format!("message {} refused: {reason}", d.message_id));
                    refusals.push(self.refusal(d, reason));
                }
                ack.push(d.message_id.clone());
            }
            let delivered: Vec<([u8; 16], u64)> = refusals.iter().map(|r| (r.conversation, r.seq)).collect();
            touched.extend(delivered.iter().map(|(c, _)| ConversationId::from_bytes(*c)));
            // Durable before acknowledged: one commit for the whole batch,
            // refusals (the evidence) included.
            self.store.put_batch(&self.vault, &opened, &refusals, &delivered).await?;
            let start = report.received.len().saturating_sub(opened.len());
            self.apply_recalls(report.received.get(start..).unwrap_or_default()).await?;
            self.save().await?;
            if !ack.is_empty() {
                self.api.post_empty("/v1/messages/ack", &Ack { message_ids: ack.clone() }).await?;
                let acked: Vec<[u8; 16]> =
                    ack.iter().filter_map(|m| MessageId::parse_hex(m)).map(|m| *m.as_bytes()).collect();
                self.store.mark_acked(&acked).await?;
            }
            if let Some(e) = stop {
                return Err(e);
            }
        }
        if drained {
            // Nothing more is queued: a number still missing will not come.
            for conversation in touched {
                let (mark, seen) = self.store.unchecked(conversation.as_bytes()).await?;
                let (checked_to, gaps) = crate::rules::sequence::check(mark, &seen);
                for g in gaps {
                    report.warnings.push(if g.first == g.last {
                        format!("conversation {conversation}: message #{} was never delivered to this device", g.first)
                    } else {
                        format!(
                            "conversation {conversation}: messages #{}..#{} were never delivered to this device (a gap)",
                            g.first, g.last
                        )
                    });
                }
                if checked_to != mark {
                    self.store.set_checked(conversation.as_bytes(), checked_to).await?;
                }
            }
        }
        self.upkeep().await?;
        Ok(report)
    }

    /// Periodic upkeep, at every sync and while watching: expired messages
    /// purged, one-time pre-keys topped up, medium-term pre-keys rotated.
    pub async fn upkeep(&mut self) -> Result<(), ClientError> {
        self.store.purge_expired(now_ms()).await?;
        self.top_up().await?;
        self.maintain_keys(now_ms()).await
    }

    /// The evidence kept for a refused delivery.
    fn refusal(&self, d: &Delivery, reason: String) -> crate::store::Refusal {
        crate::store::Refusal {
            message_id: d_id(d).unwrap_or([0; 16]),
            conversation: ConversationId::parse_hex(&d.conversation_id).map(|c| *c.as_bytes()).unwrap_or([0; 16]),
            seq: d.seq,
            received_at: now_ms(),
            reason,
            envelope: d.envelope.0.clone(),
        }
    }

    /// Envelopes this device refused, kept as evidence: (message id the
    /// relay gave, relay's sequence number, why, the envelope as received).
    pub async fn refused(&self) -> Result<Vec<(MessageId, u64, String, Vec<u8>)>, ClientError> {
        Ok(self
            .store
            .refusals(&self.vault)
            .await?
            .into_iter()
            .map(|r| (MessageId::from_bytes(r.message_id), r.seq, r.reason, r.envelope))
            .collect())
    }

    /// Streams messages as the server pushes them over WebSocket, storing,
    /// acknowledging and handing each to `on_message`; refused envelopes go
    /// to `on_warning`. Messages handed to `on_message` count as displayed
    /// (their burn-on-read clock starts); receipts are stored, not handed on.
    /// Returns after `max` messages or `timeout`.
    pub async fn watch(
        &mut self,
        max: Option<usize>,
        timeout: Option<std::time::Duration>,
        mut on_message: impl FnMut(&Message),
        mut on_warning: impl FnMut(&str),
    ) -> Result<usize, ClientError> {
        use futures_util::{SinkExt, StreamExt};
        use tokio_tungstenite::tungstenite::client::IntoClientRequest;
        use tokio_tungstenite::tungstenite::Message as Frame;
        let url = format!("{}/v1/ws", self.state.server_url.trim_end_matches('/')).replacen("http", "ws", 1);
        let mut req = url.into_client_request().map_err(|e| ClientError::Usage(format!("bad server URL: {e}")))?;
        let auth = format!("Bearer {}", self.state.token.expose())
            .parse()
            .map_err(|_| ClientError::Corrupt("session token"))?;
        req.headers_mut().insert("Authorization", auth);
        // No Nagle: acks are small frames that must not wait for the server's delayed ACK.
        let (mut ws, _) = tokio_tungstenite::connect_async_with_config(req, None, true)
            .await
            .map_err(|e| ClientError::Usage(format!("cannot open the live connection: {e}")))?;
        let deadline = timeout.map(|t| tokio::time::Instant::now() + t);
        let mut count = 0;
        // Upkeep at once, then every UPKEEP_EVERY: a device that only
        // watches must not run out of pre-keys or keep expired messages.
        let mut upkeep_at = tokio::time::Instant::now();
        while max.is_none_or(|m| count < m) {
            if tokio::time::Instant::now() >= upkeep_at {
                if let Err(e) = self.upkeep().await {
                    on_warning(&format!("key upkeep failed (retried in a while): {e}"));
                }
                upkeep_at = tokio::time::Instant::now() + UPKEEP_EVERY;
            }
            let wake = deadline.map_or(upkeep_at, |d| d.min(upkeep_at));
            let next = match tokio::time::timeout_at(wake, ws.next()).await {
                Ok(n) => n,
                Err(_) if deadline.is_some_and(|d| tokio::time::Instant::now() >= d) => break,
                Err(_) => continue,
            };
            let text = match next {
                Some(Ok(Frame::Text(t))) => t,
                Some(Ok(Frame::Close(_))) | None => break,
                Some(Ok(_)) => continue,
                Some(Err(e)) => return Err(ClientError::Usage(format!("live connection lost: {e}"))),
            };
            let d = match serde_json::from_str::<WsFrame>(&text) {
                Ok(WsFrame::Message(d)) => d,
                // Claims are using up this device's one-time pre-keys: upload more now.
                Ok(WsFrame::PrekeysLow { .. }) => {
                    if let Err(e) = self.top_up().await {
                        on_warning(&format!("cannot upload more one-time pre-keys: {e}"));
                    }
                    continue;
                }
                _ => continue,
            };
            match self.receive(&d).await {
                // Receipts are stored (the view shows "read by") but are not messages to show.
                Ok(Some(m)) if matches!(m.content, Content::Receipt { .. }) => {}
                Ok(Some(m)) => {
                    count += 1;
                    on_message(&m);
                    // Handed to the application = shown: burn-on-read starts.
                    self.mark_displayed(&[m.message_id]).await?;
                }
                Ok(None) | Err(ClientError::AlreadyStored) => {}
                // Not acknowledged: the relay delivers it again after a retry.
                Err(e) if e.is_transient() => return Err(e),
                Err(e) => {
                    on_warning(&format!("message {} refused: {e}", d.message_id));
                    // The evidence is durable before the refusal is acknowledged.
                    let r = self.refusal(&d, e.to_string());
                    let numbered = [(r.conversation, r.seq)];
                    self.store.put_batch(&self.vault, &[], std::slice::from_ref(&r), &numbered).await?;
                }
            }
            let ack = serde_json::to_string(&WsFrame::Ack { message_ids: vec![d.message_id.clone()] })
                .map_err(|_| ClientError::Corrupt("ack"))?;
            ws.send(Frame::Text(ack.into()))
                .await
                .map_err(|e| ClientError::Usage(format!("live connection lost: {e}")))?;
            self.store.mark_acked(&[d_id(&d)?]).await?;
        }
        let _ = ws.close(None).await;
        Ok(count)
    }

    async fn receive(&mut self, d: &Delivery) -> Result<Option<Message>, ClientError> {
        let (m, row, plain, expires) = self.open_delivery(d, &mut HashMap::new()).await?;
        self.store.put_messages(&self.vault, &[(row, plain, expires)]).await?;
        self.apply_recalls(std::slice::from_ref(&m)).await?;
        self.save().await?;
        Ok(Some(m))
    }

    /// Verifies and decrypts one delivery (not yet stored), reusing sender
    /// device lists fetched earlier in the same pass unless the sending
    /// device is not in them. A used one-time pre-key is forgotten (the
    /// caller saves the state with the batch that stores the message).
    async fn open_delivery(
        &mut self,
        d: &Delivery,
        lists: &mut HashMap<UserId, VerifiedDeviceList>,
    ) -> Result<(Message, StoredRow, zeroize::Zeroizing<Vec<u8>>, Option<u64>), ClientError> {
        let delivered = DeliveredEnvelope::decode(&d.envelope.0).map_err(|e| ClientError::Trust(e.to_string()))?;
        let h = *delivered.header();
        match self.store.seen(h.message_id.as_bytes()).await? {
            // Stored but never acknowledged (we stopped in between): an honest re-delivery.
            Some(false) => return Err(ClientError::AlreadyStored),
            Some(true) => return Err(ClientError::Trust(EnvelopeError::Replay(h.message_id).to_string())),
            None => {}
        }
        let sender = match lists.get(&h.sender_user_id) {
            Some(l) if l.device(h.sender_device_id).is_ok() => l.clone(),
            _ => {
                let l = self.device_list(h.sender_user_id).await?;
                lists.insert(h.sender_user_id, l.clone());
                l
            }
        };
        let me = RecipientDevice {
            network_id: self.network_id(),
            user_id: self.user_id(),
            identity_key: self.identity()?.verifying_key(),
            device_id: self.device_id(),
        };
        let opened = delivered
            .open(&me, &self.prekey_secrets()?, &sender, &mut MemoryReplayGuard::default(), now_ms())
            .map_err(|e| ClientError::Trust(e.to_string()))?;
        let plain = zeroize::Zeroizing::new(opened.content.encode().map_err(|e| ClientError::Trust(e.to_string()))?);
        let row = StoredRow {
            message_id: *h.message_id.as_bytes(),
            conversation: *h.conversation_id.as_bytes(),
            seq: d.seq,
            sender: *h.sender_user_id.as_bytes(),
            timestamp: h.timestamp,
            burn_secs: h.burn_on_read_secs,
            sealed: Vec::new(),
        };
        if opened.prekey.kind == PreKeyKind::OneTime {
            // Forward secrecy: the one-time private key is gone after first use.
            self.state.prekeys.retain(|(k, id, _)| !(*k == ONE_TIME && *id == opened.prekey.id));
        }
        let message = Message {
            message_id: h.message_id,
            conversation: h.conversation_id,
            seq: d.seq,
            sender: h.sender_user_id,
            timestamp: h.timestamp,
            content: opened.content,
        };
        Ok((message, row, plain, h.expires_at()))
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
        let seeds = [&self.state.identity_seed, &self.state.device_seed];
        let prekeys = self.state.prekeys.iter().map(|(_, _, s)| s);
        seeds.into_iter().chain(prekeys).map(|k| zeroize::Zeroizing::new(k.expose().to_vec())).collect()
    }

    /// Private pre-keys held: (medium-term, one-time).
    pub fn prekey_counts(&self) -> (usize, usize) {
        let medium = self.state.prekeys.iter().filter(|(k, _, _)| *k == MEDIUM_TERM).count();
        (medium, self.state.prekeys.len() - medium)
    }

    async fn top_up(&mut self) -> Result<(), ClientError> {
        let keys: UserKeys = self.api.get(&format!("/v1/keys/{}", self.user_id())).await?;
        let mine = self.device_id().to_string();
        let left = keys.one_time_remaining.iter().find(|c| c.device_id == mine).map_or(0, |c| c.count);
        if crate::rules::prekeys::needs_top_up(left) {
            self.add_prekeys(false, ONE_TIME_BATCH).await?;
        }
        Ok(())
    }

    /// The conversation view: edits applied (only the original sender's),
    /// reactions gathered, recalled messages gone.
    pub async fn view(&self, conversation: Option<ConversationId>) -> Result<Vec<ViewItem>, ClientError> {
        Ok(crate::rules::view::fold(self.messages(conversation).await?))
    }

    /// The conversation a stored message belongs to.
    pub async fn conversation_of(&self, message: MessageId) -> Result<ConversationId, ClientError> {
        self.messages(None)
            .await?
            .into_iter()
            .find(|m| m.message_id == message)
            .map(|m| m.conversation)
            .ok_or_else(|| ClientError::Usage(format!("no stored message {message}; run `strongroom read` first")))
    }

    /// Applies recalls: a recall from a message's own sender deletes it from disk.
    async fn apply_recalls(&self, received: &[Message]) -> Result<(), ClientError> {
        for m in received {
            if let Content::Control(strongroom_crypto::content::Control::DefaultTimers {
                ttl_secs,
                burn_on_read_secs,
            }) = m.content
            {
                self.remember_timers(m.conversation, ttl_secs, burn_on_read_secs).await?;
            }
        }
        let recalls: Vec<&Message> = received.iter().filter(|m| matches!(m.content, Content::Recall { .. })).collect();
        if recalls.is_empty() {
            return Ok(());
        }
        let stored = self.messages(None).await?;
        for r in recalls {
            let Content::Recall { target } = r.content else { continue };
            if stored.iter().any(|m| m.message_id == target && m.sender == r.sender) {
                self.store.delete_message(target.as_bytes()).await?;
            }
        }
        Ok(())
    }

    /// Stored messages, in order; of one conversation or all.
    pub async fn messages(&self, conversation: Option<ConversationId>) -> Result<Vec<Message>, ClientError> {
        let rows = self.store.messages(conversation.as_ref().map(|c| c.as_bytes())).await?;
        rows.into_iter()
            .map(|r| {
                let plain = self.vault.open(&format!("msg:{}", hex(&r.message_id)), &r.sealed)?;
                Ok(Message {
                    message_id: MessageId::from_bytes(r.message_id),
                    conversation: ConversationId::from_bytes(r.conversation),
                    seq: r.seq,
                    sender: UserId::from_bytes(r.sender),
                    timestamp: r.timestamp,
                    content: Content::decode(&plain).map_err(|_| ClientError::Corrupt("stored message"))?,
                })
            })
            .collect()
    }
}
