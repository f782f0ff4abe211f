//! The client shell: a profile directory (owned by one process), its
//! unlocked store and state, and the relay API. `Client`'s operations are
//! split by concern: `enrol.rs`, `own_keys.rs`, `trust.rs`,
//! `conversations.rs`, `send.rs`, `receive.rs`; the rules they apply, with
//! no I/O of their own, are in `rules/`.

use std::path::{Path, PathBuf};

use strongroom_crypto::ids::*;
use strongroom_crypto::keys::*;
use strongroom_wire::*;

use crate::api::Api;
use crate::rules::group_policy::{check as check_rules, Action};

use crate::error::ClientError;
use crate::state::ProfileState;
use crate::store::LocalStore;
use crate::vault::Vault;

pub(crate) use crate::rules::prekeys::ONE_TIME_BATCH;
pub(crate) use crate::rules::view::{Message, ViewItem};
/// Argon2id memory for the profile key (64 MiB).
pub const PROFILE_KDF_KIB: u32 = 64 * 1024;

/// How often a watching device does its upkeep (purge, top up, rotate).
pub(crate) const UPKEEP_EVERY: std::time::Duration = std::time::Duration::from_secs(600);

/// What a sync did.
#[derive(Debug, Default)]
pub struct SyncReport {
    /// New messages, in arrival order.
    pub received: Vec<Message>,
    /// Envelopes refused (tampered, replayed, untrusted sender…), and
    /// messages the relay never delivered, each explained.
    pub warnings: Vec<String>,
    /// Contacts' device changes seen meanwhile ("alice removed a device").
    pub notices: Vec<String>,
}

/// A Strongroom device with its profile.
pub struct Client {
    pub(crate) dir: PathBuf,
    pub(crate) vault: Vault,
    pub(crate) store: LocalStore,
    pub(crate) state: ProfileState,
    pub(crate) api: Api,
    /// The device lockout last written to the profile header (u64::MAX:
    /// not yet), so every send does not re-read the header from disk.
    pub(crate) lockout_written: std::sync::atomic::AtomicU64,
    /// The wipe order is in the event log (it is logged once).
    pub(crate) wipe_logged: bool,
    /// Changes in contacts' device lists not yet shown ([`Client::take_notices`]).
    pub(crate) notices: Vec<String>,
    /// The distinct membership commitments each conversation's messages
    /// carried since the last check (a few per conversation), compared with
    /// this device's fold once they are stored.
    pub(crate) commitments: std::collections::BTreeMap<
        strongroom_crypto::ids::ConversationId,
        Vec<strongroom_crypto::envelope::MembershipCommitment>,
    >,
    /// Settings, policy and device lists kept between sends (`cache.rs`).
    pub(crate) cache: crate::cache::Cache,
    /// This process's claim on the profile directory (None: opened shared,
    /// for administration, and never writes the state).
    pub(crate) lock: Option<crate::profile_lock::ProfileLock>,
}

pub(crate) fn d_id(d: &Delivery) -> Result<[u8; 16], ClientError> {
    Ok(*d.message_id.as_bytes())
}

pub(crate) fn now_ms() -> u64 {
    std::time::SystemTime::now().duration_since(std::time::UNIX_EPOCH).map(|d| d.as_millis() as u64).unwrap_or(0)
}

pub(crate) fn unhex<const N: usize>(s: &str) -> Result<[u8; N], ClientError> {
    let v: Option<Vec<u8>> =
        (0..s.len()).step_by(2).map(|i| s.get(i..i + 2).and_then(|h| u8::from_str_radix(h, 16).ok())).collect();
    v.and_then(|v| v.try_into().ok()).ok_or(ClientError::Corrupt("stored key material"))
}

/// Hex of any length (stored lists); `None` when malformed.
pub(crate) fn unhex_vec(s: &str) -> Option<Vec<u8>> {
    if !s.len().is_multiple_of(2) {
        return None;
    }
    (0..s.len()).step_by(2).map(|i| s.get(i..i + 2).and_then(|h| u8::from_str_radix(h, 16).ok())).collect()
}

pub(crate) fn io(path: &Path) -> impl Fn(std::io::Error) -> ClientError + '_ {
    move |source| ClientError::Io { path: path.display().to_string(), source }
}

/// The security group's verdict as a client error.
pub(crate) fn check(rules: &strongroom_wire::GroupSettings, action: Action) -> Result<(), ClientError> {
    check_rules(rules, action).map_err(ClientError::Policy)
}

impl Client {
    pub(crate) fn api(&self) -> &Api {
        &self.api
    }

    pub(crate) fn identity_key_pair(&self) -> Result<SigningKey, ClientError> {
        self.identity()
    }

    pub(crate) fn pinned_network_key(&self) -> Result<VerifyingKey, ClientError> {
        self.network_key()
    }

    /// Unlocks an existing profile.
    pub async fn open(dir: &Path, passphrase: &str) -> Result<Self, ClientError> {
        if !dir.join("profile.json").exists() {
            return Err(ClientError::NoProfile(dir.display().to_string()));
        }
        let lock = crate::profile_lock::ProfileLock::acquire(dir)?;
        Self::open_holding(dir, passphrase, lock).await
    }

    /// [`Client::open`] with the profile's lock already held (the app takes
    /// it when it starts, before anyone types the passphrase).
    pub async fn open_holding(
        dir: &Path,
        passphrase: &str,
        lock: crate::profile_lock::ProfileLock,
    ) -> Result<Self, ClientError> {
        if !dir.join("profile.json").exists() {
            return Err(ClientError::NoProfile(dir.display().to_string()));
        }
        let mut client = Self::open_unlocked(dir, passphrase).await?;
        if client.state.enrolling {
            client.close().await;
            return Err(ClientError::Usage(
                "this profile's enrolment did not finish: run the same `strongroom enrol` again to finish it".into(),
            ));
        }
        client.lock = Some(lock);
        client.carry_out_wipe().await
    }

    /// A remote wipe is carried out before anything else: if the relay says
    /// an administrator wiped this device, the profile is erased and
    /// [`ClientError::Wiped`] returned. Any other answer (the relay down, an
    /// expired session) is left for the operation that follows: stored
    /// messages stay readable offline.
    async fn carry_out_wipe(self) -> Result<Self, ClientError> {
        // Bounded: a network that drops packets must not stop the profile opening.
        let asked = tokio::time::timeout(std::time::Duration::from_secs(10), self.fetch_settings()).await;
        match asked {
            Ok(Err(ClientError::Wiped(why))) => {
                let dir = self.dir.display().to_string();
                let told = self.erase_after_wipe().await.is_ok();
                Err(ClientError::Wiped(format!(
                    "{why}: its Strongroom data in {dir} is erased{}",
                    if told { " and the server was told" } else { "" }
                )))
            }
            _ => Ok(self),
        }
    }

    /// Opens a profile another process may own, for administration calls
    /// only (`strongroom admin …` beside a running app): it reads the keys
    /// and session but never writes the state record, so it cannot undo
    /// the owner's pre-key or trust updates.
    pub async fn open_shared(dir: &Path, passphrase: &str) -> Result<Self, ClientError> {
        if !dir.join("profile.json").exists() {
            return Err(ClientError::NoProfile(dir.display().to_string()));
        }
        Self::open_unlocked(dir, passphrase).await?.carry_out_wipe().await
    }

    pub(crate) async fn open_unlocked(dir: &Path, passphrase: &str) -> Result<Self, ClientError> {
        let vault = Vault::unlock(dir, passphrase)?;
        let store = LocalStore::open(dir).await?;
        let raw =
            store.record(&vault, "state").await?.ok_or(ClientError::Corrupt("the profile has no state record"))?;
        let state: ProfileState = serde_json::from_slice(&raw).map_err(|_| ClientError::Corrupt("state record"))?;
        let api = Api::new(&state.server_url, Some(state.token.expose().to_owned()));
        Ok(Self::assemble(dir.to_owned(), vault, store, state, api, None))
    }

    /// A client from its parts, with nothing pending.
    pub(crate) fn assemble(
        dir: PathBuf,
        vault: Vault,
        store: LocalStore,
        state: ProfileState,
        api: Api,
        lock: Option<crate::profile_lock::ProfileLock>,
    ) -> Self {
        Self {
            dir,
            vault,
            store,
            state,
            api,
            lockout_written: u64::MAX.into(),
            wipe_logged: false,
            notices: Vec::new(),
            commitments: Default::default(),
            cache: Default::default(),
            lock,
        }
    }

    /// Closes the store.
    pub async fn close(self) {
        self.store.close().await;
    }

    pub(crate) async fn save(&self) -> Result<(), ClientError> {
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

    /// The fingerprint of the network key this profile pinned (compare it
    /// with the one your administrator publishes).
    pub fn network_fingerprint(&self) -> Result<String, ClientError> {
        Ok(strongroom_crypto::certs::NetworkFingerprint::of(&self.network_key()?).to_string())
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

    /// The identity private key: only the primary device has it.
    pub(crate) fn identity(&self) -> Result<SigningKey, ClientError> {
        let seed = self.state.identity_seed.as_ref().ok_or(ClientError::NotPrimary)?;
        SigningKey::from_seed(SecretBytes::new(*seed.expose())).map_err(|_| ClientError::Corrupt("identity key"))
    }

    /// This account's identity public key, as pinned at enrolment or link.
    pub(crate) fn identity_public(&self) -> Result<VerifyingKey, ClientError> {
        let pinned = self.state.pins.get(&self.state.user_id).ok_or(ClientError::Corrupt("own identity key"))?;
        VerifyingKey::from_bytes(unhex(pinned)?).map_err(|_| ClientError::Corrupt("own identity key"))
    }

    /// Whether this is the account's primary device (it can link and remove
    /// devices).
    pub fn is_primary(&self) -> bool {
        self.state.identity_seed.is_some()
    }

    pub(crate) fn device_key(&self) -> Result<SigningKey, ClientError> {
        SigningKey::from_seed(SecretBytes::new(*self.state.device_seed.expose()))
            .map_err(|_| ClientError::Corrupt("device key"))
    }

    pub(crate) fn network_key(&self) -> Result<VerifyingKey, ClientError> {
        VerifyingKey::from_bytes(unhex(&self.state.network_public)?).map_err(|_| ClientError::Corrupt("network key"))
    }

    pub(crate) async fn record(&self, name: &str) -> Result<Option<zeroize::Zeroizing<Vec<u8>>>, ClientError> {
        self.store.record(&self.vault, name).await
    }

    pub(crate) async fn put_record(&self, name: &str, value: &[u8]) -> Result<(), ClientError> {
        self.store.put_record(&self.vault, name, value).await
    }
}
