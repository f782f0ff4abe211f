//! `strongroom retention run`: log in to the relay as the retention device,
//! receive every envelope and file of every conversation, verify, decrypt
//! and archive them, and only then acknowledge them. Envelopes that cannot
//! be verified or decrypted are archived as `unreadable` with the reason
//! and their bytes: that is evidence too.

use std::collections::HashMap;
use std::io::Write;
use std::time::Duration;

use base64::engine::general_purpose::STANDARD;
use base64::Engine as _;
use rand_core::{OsRng, RngCore};
use strongroom_crypto::certs::{
    DeviceList, DeviceListExpectation, MembershipStatement, NetworkPolicy, PolicyTracker, PreKeyKind, PreKeyRef,
    RetentionLogin, RetentionState, VerifiedDeviceList, VerifiedPolicy,
};
use strongroom_crypto::content::{Content, Control, FileRef, ReceiptKind};
use strongroom_crypto::envelope::{
    DeliveredEnvelope, EnvelopeError, MembershipCommitment, PreKeySecrets, RecipientDevice, ReplayGuard, MAX_SKEW_MS,
};
use strongroom_crypto::ids::{ConversationId, MessageId, UserId};
use strongroom_crypto::keys::AgreementSecret;
use strongroom_wire::{
    Ack, Conversation, Deliveries, Delivery, RetentionLoginRequest, Session, UserInfo, UserKeys, B64,
};

use crate::archive::Archive;
use crate::keys::RetentionKeys;
use crate::membership::{Addressees, Check};
use crate::record::{FileInfo, Party, Record};
use crate::{hex, now_ms, RetentionError};

/// Deliveries fetched per round (one segment and one checkpoint each).
const BATCH: u32 = 500;

/// How long `run` goes on.
#[derive(Debug, Clone)]
pub struct RunOptions {
    /// Where to keep `{"records", "last_archived_at", "updated_at"}` for
    /// monitoring (`strongroom retention status`), rewritten after every batch.
    pub status_file: Option<std::path::PathBuf>,
    /// Stop once the queue is empty.
    pub until_empty: bool,
    /// Stop after this long in any case.
    pub max_time: Option<Duration>,
    /// Wait between polls of an empty queue.
    pub poll: Duration,
    /// Set to true to stop (SIGTERM): the batch in hand is archived and
    /// acknowledged first, so nothing is half done.
    pub stop: Option<tokio::sync::watch::Receiver<bool>>,
    /// Scheduled verify, backlog threshold and the webhook alerts go to.
    pub health: crate::health::HealthOptions,
}

/// A handover record's control object, if `r` is one with this action.
fn handover<'a>(r: &'a Record, action: &str) -> Option<&'a serde_json::Value> {
    r.control.as_ref().filter(|c| r.kind == "handover" && c.get("action").and_then(|a| a.as_str()) == Some(action))
}

/// Sleeps `d`, or less if told to stop.
async fn pause_unless_stopped(d: Duration, stop: &mut Option<tokio::sync::watch::Receiver<bool>>) {
    match stop {
        Some(rx) => {
            // Whoever could say stop is gone: an ordinary pause, not a busy loop.
            if let Ok(Err(_)) = tokio::time::timeout(d, rx.wait_for(|s| *s)).await {
                tokio::time::sleep(d).await;
            }
        }
        None => tokio::time::sleep(d).await,
    }
}

/// What a run did.
#[derive(Debug, Default, Clone, serde::Serialize)]
pub struct RunReport {
    /// Messages archived (one record each).
    pub archived: u64,
    /// Membership statements archived (a record each: creations and member changes).
    pub membership: u64,
    /// Of which unreadable envelopes kept as evidence.
    pub unreadable: u64,
    /// Files stored.
    pub files: u64,
    /// Deliveries that were already archived (a restart after a crash) and were only acknowledged.
    pub duplicates: u64,
    /// This device was replaced (`admin retention rotate`), archived all
    /// that waited for it, recorded the handover and stopped.
    pub handed_over: bool,
}

/// The archive already dedups by message id, and an archive must take old
/// messages from a long backlog: no replay window here.
struct NoReplayWindow;

impl ReplayGuard for NoReplayWindow {
    fn check(&self, _: &MessageId, _: u64, _: u64) -> Result<(), EnvelopeError> {
        Ok(())
    }
    fn record(&mut self, _: MessageId, _: u64, _: u64) {}
}

/// The retention device's one agreement key.
struct OneKey<'a>(PreKeyRef, &'a AgreementSecret);

impl PreKeySecrets for OneKey<'_> {
    fn secret(&self, key: PreKeyRef) -> Option<&AgreementSecret> {
        (key == self.0).then_some(self.1)
    }
}

/// A relay answer: `Ok(Some)`, a definite refusal `Ok(None)` (4xx: the
/// thing does not exist or may not be read), or an error a retry could fix
/// (network, 5xx, 408, 429, or 401: the session ended), which must stop the run before anything is
/// archived as failed or acknowledged.
fn definite<T>(r: Result<T, RetentionError>) -> Result<Option<T>, RetentionError> {
    match r {
        Ok(v) => Ok(Some(v)),
        Err(RetentionError::Refused { status, .. }) if is_definite(status) => Ok(None),
        Err(e) => Err(e),
    }
}

/// Whether a retry could fix it: the relay unreachable or overloaded, the
/// archive store or a local file failing.
fn is_transient(e: &RetentionError) -> bool {
    match e {
        RetentionError::Refused { status, .. } => !is_definite(*status),
        RetentionError::Network(_) | RetentionError::Storage(_) | RetentionError::Io { .. } => true,
        _ => false,
    }
}

/// A relay answer no retry will change: 4xx, except 401 (log in again), 408
/// and 429.
fn is_definite(status: u16) -> bool {
    status < 500 && !matches!(status, 401 | 408 | 429)
}

/// The relay, as the retention device sees it: the SDK's relay API (its
/// one mapping of answers to errors) with a retention session.
pub struct Relay {
    api: strongroom_client::RelayApi,
}

impl Relay {
    /// A relay at `base`.
    pub fn new(base: &str) -> Result<Self, RetentionError> {
        Ok(Self { api: strongroom_client::RelayApi::with_timeout(base, Duration::from_secs(120))? })
    }

    /// Logs in with a fresh signed statement.
    pub async fn login(&mut self, keys: &RetentionKeys) -> Result<(), RetentionError> {
        let mut nonce = [0u8; 16];
        OsRng.fill_bytes(&mut nonce);
        let statement =
            RetentionLogin { network_id: keys.network()?, device_id: keys.device_id()?, timestamp: now_ms(), nonce };
        let req = RetentionLoginRequest {
            network_id: statement.network_id,
            device_id: statement.device_id,
            timestamp: statement.timestamp,
            nonce: hex(&nonce),
            signature: B64(statement.sign(&keys.signing).as_bytes().to_vec()),
        };
        let session: Session = self.api.post("/v1/retention/session", &req).await?;
        self.api.set_token(session.token);
        Ok(())
    }

    async fn json<T: serde::de::DeserializeOwned>(&self, path: &str) -> Result<T, RetentionError> {
        Ok(self.api.get(path).await?)
    }

    async fn bytes(&self, path: &str) -> Result<Vec<u8>, RetentionError> {
        Ok(self.api.get_bytes(path).await?)
    }

    async fn ack(&self, ids: Vec<MessageId>) -> Result<(), RetentionError> {
        self.post_json("/v1/messages/ack", &Ack { message_ids: ids }).await
    }

    async fn post_json(&self, path: &str, body: &impl serde::Serialize) -> Result<(), RetentionError> {
        Ok(self.api.post_empty(path, body).await?)
    }

    async fn download(&self, path: &str, dest: &std::path::Path) -> Result<(), RetentionError> {
        self.api.download(path, dest).await?;
        Ok(())
    }
}

/// The network's and security groups' retention periods, from the relay.
pub async fn fetch_periods(keys: &RetentionKeys) -> Result<strongroom_wire::RetentionPeriods, RetentionError> {
    let mut relay = Relay::new(&keys.server_url)?;
    relay.login(keys).await?;
    relay.json("/v1/retention/periods").await
}

/// What the relay queued for this retention device, per conversation
/// (for `retention verify`).
pub async fn fetch_coverage(keys: &RetentionKeys) -> Result<strongroom_wire::RetentionCoverage, RetentionError> {
    let mut relay = Relay::new(&keys.server_url)?;
    relay.login(keys).await?;
    relay.json("/v1/retention/coverage").await
}

/// The network's current policy from the relay, verified against the
/// network key pinned at `init` and never older than the newest this
/// archive has seen (kept with the archive, so a relay cannot roll it back
/// across restarts); the newest is recorded, with its retention floor.
async fn current_policy(
    relay: &Relay,
    keys: &RetentionKeys,
    archive: &Archive,
) -> Result<VerifiedPolicy, RetentionError> {
    let policy = NetworkPolicy::decode(&relay.bytes("/v1/policy").await?)
        .map_err(|e| RetentionError::Trust(format!("the network policy is malformed: {e}")))?;
    let store = archive.store().as_ref();
    let seen = crate::archive::policy_seen(store).await?;
    let mut tracker = match seen {
        Some((version, digest)) => PolicyTracker::resume(keys.network_public, keys.network()?, version, digest),
        None => PolicyTracker::new(keys.network_public, keys.network()?),
    };
    let verified = tracker
        .verify(&policy)
        .map_err(|e| RetentionError::Trust(format!("the network policy does not verify: {e}")))?;
    let floor = verified.policy().retention_floor_days;
    if tracker.highest() != seen || crate::archive::policy_floor(store).await.ok() != Some(floor) {
        if let Some(highest) = tracker.highest() {
            crate::archive::save_policy_seen(store, highest, floor).await?;
        }
    }
    Ok(verified)
}

/// The retention-period floor (days) of the network's current signed
/// policy, checked as [`Service::start`] checks it; `None` if it sets none.
pub async fn fetch_floor(keys: &RetentionKeys, archive: &Archive) -> Result<Option<u32>, RetentionError> {
    let mut relay = Relay::new(&keys.server_url)?;
    relay.login(keys).await?;
    Ok(current_policy(&relay, keys, archive).await?.policy().retention_floor_days)
}

/// The running retention device.
pub struct Service {
    keys: RetentionKeys,
    relay: Relay,
    archive: Archive,
    users: HashMap<UserId, (String, Option<VerifiedDeviceList>)>,
    /// Users the relay said are guests.
    guests: std::collections::HashSet<UserId>,
    memberships: crate::membership::Memberships,
    scratch: std::path::PathBuf,
    /// Called with a batch's records durable and not yet acknowledged: a
    /// fault-injection point (`STRONGROOM_FAULT=abort-before-ack`).
    before_ack: Option<Box<dyn Fn() + Send + Sync>>,
}

impl Service {
    /// Runs `hook` between a batch's append and its acknowledgement (a
    /// crash there must lose nothing and duplicate nothing).
    pub fn before_ack(&mut self, hook: Box<dyn Fn() + Send + Sync>) {
        self.before_ack = Some(hook);
    }

    /// Logs in and checks that the network's current policy, verified
    /// against the network key pinned at `init`, names this device.
    pub async fn start(keys: RetentionKeys, archive: Archive) -> Result<Self, RetentionError> {
        let mut relay = Relay::new(&keys.server_url)?;
        relay.login(&keys).await?;
        let verified = current_policy(&relay, &keys, &archive).await?;
        let me = keys.device_id()?;
        if !verified.policy().retention.iter().any(|d| d.device_id == me) {
            return Err(RetentionError::Trust(
                "the network policy does not name this retention device: run `strongroom admin retention enable`"
                    .into(),
            ));
        }
        let scratch = std::env::temp_dir().join(format!("strongroom-retention-{}", std::process::id()));
        strongroom_client::private_fs::private_dir(&scratch).map_err(crate::error::io(&scratch))?;
        let mut service = Self {
            keys,
            relay,
            archive,
            users: HashMap::new(),
            guests: std::collections::HashSet::new(),
            memberships: Default::default(),
            scratch,
            before_ack: None,
        };
        service.note_predecessors(&verified).await?;
        Ok(service)
    }

    /// The first time this device runs beside a draining one it replaces,
    /// the archive records the takeover (`retention verify --predecessor`
    /// then checks the two archives together).
    async fn note_predecessors(&mut self, verified: &VerifiedPolicy) -> Result<(), RetentionError> {
        let me = self.keys.device_id()?;
        let draining: Vec<String> = verified
            .policy()
            .retention
            .iter()
            .filter(|d| d.state == RetentionState::Draining && d.device_id != me)
            .map(|d| d.device_id.to_string())
            .collect();
        if draining.is_empty() || verified.policy().active_retention().all(|d| d.device_id != me) {
            return Ok(());
        }
        let mut noted = std::collections::HashSet::new();
        self.archive
            .for_each(|_, r| {
                if let Some(from) = handover(&r, "took_over").and_then(|c| c.get("from")).and_then(|f| f.as_array()) {
                    noted.extend(from.iter().filter_map(|x| x.as_str().map(str::to_owned)));
                }
            })
            .await?;
        if draining.iter().all(|d| noted.contains(d)) {
            return Ok(());
        }
        self.archive
            .append(&[Record {
                kind: "handover".into(),
                archived_at: now_ms(),
                control: Some(serde_json::json!({"action": "took_over", "from": draining})),
                ..Record::default()
            }])
            .await
    }

    /// When this device drains (replaced by `admin retention rotate`) and
    /// its queue is empty: records the last sequence number it archived per
    /// conversation and whom it handed over to. True once handed over.
    async fn hand_over_if_draining(&mut self) -> Result<bool, RetentionError> {
        let verified = current_policy(&self.relay, &self.keys, &self.archive).await?;
        let me = self.keys.device_id()?;
        let draining =
            verified.policy().retention.iter().any(|d| d.device_id == me && d.state == RetentionState::Draining);
        if !draining {
            return Ok(false);
        }
        let mut last: std::collections::BTreeMap<String, u64> = std::collections::BTreeMap::new();
        let mut done = false;
        self.archive
            .for_each(|_, r| {
                done |= handover(&r, "handed_over").is_some();
                if let (Some(c), Some(s)) = (r.conversation_id, r.seq) {
                    let e = last.entry(c).or_default();
                    *e = (*e).max(s);
                }
            })
            .await?;
        if !done {
            let to: Vec<String> = verified.policy().active_retention().map(|d| d.device_id.to_string()).collect();
            self.archive
                .append(&[Record {
                    kind: "handover".into(),
                    archived_at: now_ms(),
                    control: Some(serde_json::json!({"action": "handed_over", "to": to, "last_seq": last})),
                    ..Record::default()
                }])
                .await?;
        }
        Ok(true)
    }

    /// The archive.
    pub fn archive(&self) -> &Archive {
        &self.archive
    }

    /// Receives and archives until the options say stop. Running as a
    /// service (not `until_empty`), an error a retry could fix — the relay
    /// or the archive store down — is logged and retried with a growing
    /// pause (up to a minute); nothing was acknowledged, so nothing is lost.
    /// With `until_empty` it is returned, for scripts and tests.
    pub async fn run(&mut self, opts: RunOptions) -> Result<RunReport, RetentionError> {
        let alerts = crate::health::Alerts::new(opts.health.webhook.clone(), self.keys.device_id()?.to_string());
        alerts.send("start", serde_json::json!({"records": self.archive.size()})).await;
        let result = self.run_loop(opts, &alerts).await;
        let why = match &result {
            Ok(r) if r.handed_over => "handed over".to_owned(),
            Ok(_) => "stopped".to_owned(),
            Err(e) => e.to_string(),
        };
        alerts.send("stop", serde_json::json!({"why": why, "records": self.archive.size()})).await;
        result
    }

    /// The scheduled checks: verify the archive, and compare the relay's
    /// backlog for this device with the threshold (alerting once per rise).
    async fn health_check(&mut self, opts: &RunOptions, alerts: &crate::health::Alerts, backlog_alerted: &mut bool) {
        let keys = &self.keys;
        let verify_now = opts.health.verify_every.is_some();
        let checked = async {
            if !verify_now {
                return Ok(None);
            }
            let sealer = crate::archive::Sealer::new(&keys.archive_key, keys.network()?, keys.device_id()?)?;
            let trusted = crate::verify::Trusted {
                network: keys.network()?,
                device: keys.device_id()?,
                signing_key: keys.signing.verifying_key(),
                sealer: &sealer,
            };
            crate::verify::verify(self.archive.store().as_ref(), &trusted, false).await.map(Some)
        }
        .await;
        match checked {
            Ok(Some(r)) if !r.ok() => {
                let listed: Vec<&String> = r.problems.iter().take(5).collect();
                alerts
                    .send("verify_failed", serde_json::json!({"problem_count": r.problem_count, "problems": listed}))
                    .await
            }
            Ok(_) => {}
            Err(e) => alerts.send("verify_failed", serde_json::json!({"error": e.to_string()})).await,
        }
        let Some(limit) = opts.health.backlog_alert else { return };
        match self.relay.json::<strongroom_wire::RetentionCoverage>("/v1/retention/coverage").await {
            Ok(c) => {
                let queued: u64 = c.conversations.iter().map(|c| c.queued).sum();
                if queued > limit && !*backlog_alerted {
                    alerts.send("backlog", serde_json::json!({"queued": queued, "limit": limit})).await;
                }
                *backlog_alerted = queued > limit;
            }
            Err(e) => tracing::warn!("cannot read the backlog: {e}"),
        }
    }

    async fn run_loop(
        &mut self,
        mut opts: RunOptions,
        alerts: &crate::health::Alerts,
    ) -> Result<RunReport, RetentionError> {
        let started = tokio::time::Instant::now();
        let mut last_health: Option<tokio::time::Instant> = None;
        let mut backlog_alerted = false;
        let mut report = RunReport::default();
        let mut pause = opts.poll;
        let mut last_archived = 0;
        let mut last_drain_check = tokio::time::Instant::now();
        loop {
            // The backlog is read every minute when only it is watched.
            let every = opts.health.verify_every.or(opts.health.backlog_alert.map(|_| Duration::from_secs(60)));
            if every.is_some_and(|every| last_health.is_none_or(|t| t.elapsed() >= every)) {
                last_health = Some(tokio::time::Instant::now());
                self.health_check(&opts, alerts, &mut backlog_alerted).await;
            }
            if opts.max_time.is_some_and(|t| started.elapsed() >= t) {
                break;
            }
            if opts.stop.as_ref().is_some_and(|s| *s.borrow()) {
                tracing::info!(records = self.archive.size(), "stopping: asked to");
                break;
            }
            let step = async {
                let batch = match self.relay.json::<Deliveries>(&format!("/v1/messages?limit={BATCH}")).await {
                    Ok(b) => b.messages,
                    Err(RetentionError::Refused { status: 401, .. }) => {
                        self.relay.login(&self.keys).await?;
                        return Ok(None);
                    }
                    Err(e) => return Err(e),
                };
                if batch.is_empty() {
                    return Ok(Some(false));
                }
                self.archive_batch(&batch, &mut report).await?;
                Ok(Some(true))
            }
            .await;
            let archived = match step {
                Ok(None) => continue,
                Ok(Some(archived)) => {
                    pause = opts.poll;
                    archived
                }
                Err(e) if !opts.until_empty && is_transient(&e) => {
                    tracing::warn!("archiving paused, will retry in {} s: {e}", pause.as_secs_f32());
                    pause_unless_stopped(pause, &mut opts.stop).await;
                    pause = (pause * 2).min(Duration::from_secs(60));
                    continue;
                }
                Err(e) => return Err(e),
            };
            if archived {
                last_archived = now_ms();
                tracing::info!(archived = report.archived, records = self.archive.size(), "archived a batch");
            }
            // Rewritten after every poll, busy or idle: `updated_at` says the
            // service is alive, `records` is never behind the archive.
            if let Some(path) = &opts.status_file {
                write_status(path, self.archive.size(), last_archived)?;
            }
            if !archived {
                // Drained: a replaced device hands over and stops (checked
                // every 30 s while idle, and at the end of a --once run).
                if opts.until_empty || last_drain_check.elapsed() >= Duration::from_secs(30) {
                    last_drain_check = tokio::time::Instant::now();
                    match self.hand_over_if_draining().await {
                        Ok(true) => {
                            tracing::info!(records = self.archive.size(), "replaced and drained: handed over");
                            report.handed_over = true;
                            break;
                        }
                        Ok(false) => {}
                        Err(e) if !opts.until_empty && is_transient(&e) => {
                            tracing::warn!("cannot check whether this device drains (retried): {e}")
                        }
                        Err(e) => return Err(e),
                    }
                }
                if opts.until_empty {
                    break;
                }
                let poll = opts.poll;
                pause_unless_stopped(poll, &mut opts.stop).await;
            }
        }
        Ok(report)
    }

    async fn archive_batch(&mut self, batch: &[Delivery], report: &mut RunReport) -> Result<(), RetentionError> {
        let mut records = Vec::with_capacity(batch.len());
        let mut conversations: HashMap<ConversationId, Option<Conversation>> = HashMap::new();
        let mut in_batch = std::collections::HashSet::new();
        let mut statements_in_batch = std::collections::HashSet::new();
        for d in batch {
            let id = d.message_id;
            if self.archive.contains(id.as_bytes()) || !in_batch.insert(*id.as_bytes()) {
                report.duplicates += 1;
                continue;
            }
            if let std::collections::hash_map::Entry::Vacant(slot) = conversations.entry(d.conversation_id) {
                let path = format!("/v1/conversations/{}", d.conversation_id);
                slot.insert(definite(self.relay.json::<Conversation>(&path).await)?);
            }
            // Statements the message's header commits to come first, as records.
            let commitment = DeliveredEnvelope::decode(&d.envelope.0).ok().map(|e| e.header().membership);
            if let Some(c) = commitment.filter(|c| c.version > 0) {
                for r in self.follow_membership(d.conversation_id, c.version).await? {
                    let Some(digest) = r.statement() else { continue };
                    if !self.archive.contains_statement(&digest) && statements_in_batch.insert(digest) {
                        records.push(r);
                    }
                }
            }
            let conversation = conversations.get(&d.conversation_id).cloned().flatten();
            let record = self.record_for(d, conversation.as_ref(), report).await?;
            if record.kind == "control" {
                // Membership changed: later messages in this batch see the new members.
                conversations.remove(&d.conversation_id);
            }
            records.push(record);
        }
        self.archive.append(&records).await?;
        let statements = records.iter().filter(|r| r.kind == "membership").count() as u64;
        report.membership += statements;
        report.archived += records.len() as u64 - statements;
        if let Some(hook) = &self.before_ack {
            hook();
        }
        // Only now, with the records durable, may the relay forget them.
        self.relay.ack(batch.iter().map(|d| d.message_id).collect()).await?;
        if let Some(cp) = self.archive.last_checkpoint() {
            let report = strongroom_wire::CheckpointReport {
                tree_size: cp.tree_size,
                root: hex(&cp.root),
                timestamp: cp.timestamp,
                signature: B64(cp.signature.as_bytes().to_vec()),
            };
            // For administrators' dashboards; the archive does not depend on it.
            if let Err(e) = self.relay.post_json("/v1/retention/checkpoint", &report).await {
                tracing::warn!("could not report the archive checkpoint to the relay: {e}");
            }
        }
        Ok(())
    }

    /// A user's name and verified device list. A relay that is down or
    /// overloaded is an error (the run stops and acknowledges nothing, so the
    /// messages come again); a definite answer — no such user, or a list that
    /// does not verify — is `""` / `None`, recorded as such.
    async fn user(
        &mut self,
        user: UserId,
        refresh: bool,
    ) -> Result<(String, Option<VerifiedDeviceList>), RetentionError> {
        if !refresh {
            if let Some(u) = self.users.get(&user) {
                return Ok(u.clone());
            }
        }
        let info = definite(self.relay.json::<UserInfo>(&format!("/v1/users?id={user}")).await)?;
        if info.as_ref().is_some_and(|u| u.guest) {
            self.guests.insert(user);
        }
        let name = info.map(|u| u.username).unwrap_or_default();
        let keys: Option<UserKeys> = definite(self.relay.json(&format!("/v1/keys/{user}")).await)?;
        let list = keys.and_then(|keys| {
            DeviceList::decode(&keys.device_list.0)
                .ok()?
                .verify(&DeviceListExpectation {
                    network_id: self.keys.network().ok()?,
                    user_id: user,
                    pinned_identity: None,
                    seen: None,
                })
                .ok()
        });
        self.users.insert(user, (name.clone(), list.clone()));
        Ok((name, list))
    }

    async fn party(&mut self, user: UserId) -> Result<Party, RetentionError> {
        let (username, list) = self.user(user, false).await?;
        Ok(Party {
            user_id: user.to_string(),
            username,
            identity_key: list.map(|l| hex(l.identity_key().as_bytes())),
            device_id: None,
            guest: self.guests.contains(&user),
        })
    }

    /// Fills a record's recipients: the signed member set its header commits
    /// to, else (flagged, with why) the relay's list when archived.
    async fn addressees(
        &mut self,
        record: &mut Record,
        conversation_id: ConversationId,
        commitment: Option<&MembershipCommitment>,
        listed: Option<&Conversation>,
    ) -> Result<(), RetentionError> {
        let found = match commitment {
            Some(c) => self.memberships.lookup(conversation_id, c),
            None => Addressees::Unknown("the envelope is malformed".into()),
        };
        let users: Vec<UserId> = match found {
            Addressees::Committed(set) => {
                record.recipients_source = Some("committed".into());
                let newest = self.memberships.folded_to(conversation_id);
                if let Some(c) = commitment.filter(|c| c.version < newest) {
                    record.recipients_note = Some(format!(
                        "the sender committed to membership statement {}; {newest} was the newest when archived",
                        c.version
                    ));
                }
                set.into_iter().collect()
            }
            Addressees::Unknown(why) => {
                record.recipients_source = Some("relay".into());
                record.recipients_note = Some(why);
                listed.map(|c| c.members.iter().map(|m| m.user_id).collect()).unwrap_or_default()
            }
        };
        for u in users {
            record.recipients.push(self.party(u).await?);
        }
        Ok(())
    }

    /// Folds `conversation`'s signed membership statements up to `version`
    /// (each verified under its author device's key), returning a record for
    /// each one applied. A statement that does not verify or follow stops
    /// folding there; messages committing past it are archived with the
    /// relay's member list, flagged.
    async fn follow_membership(
        &mut self,
        conversation: ConversationId,
        version: u64,
    ) -> Result<Vec<Record>, RetentionError> {
        let mut out = Vec::new();
        while !self.memberships.has(conversation, version)
            && crate::membership::may_follow(self.memberships.fetch_after(conversation))
        {
            let after = self.memberships.fetch_after(conversation);
            let path = format!("/v1/conversations/{conversation}/membership?after={after}");
            let Some(page) = definite(self.relay.json::<strongroom_wire::MembershipHistory>(&path).await)? else {
                break;
            };
            let (statements, malformed) = crate::membership::decode_page(&page);
            let fetched = statements.len();
            // Each checked in place, in order: a result never applies to another statement.
            let mut checked = Vec::with_capacity(statements.len());
            for s in statements {
                let result = self.check_statement(&s).await?;
                checked.push((s, result));
            }
            let applied = self.memberships.apply(conversation, checked);
            for (s, revoked, members) in &applied {
                // The members after each statement, from the fold itself (a
                // set may already be trimmed from what is kept).
                let members = members.clone();
                let mut r = crate::membership::record(s, &members, *revoked);
                let mut author = self.party(s.author_user).await?;
                author.device_id = Some(s.author_device.to_string());
                r.sender = Some(author);
                for u in members {
                    r.recipients.push(self.party(u).await?);
                }
                r.recipients_source = Some("committed".into());
                out.push(r);
            }
            if let Some(why) = malformed {
                self.memberships.stop(conversation, why);
            }
            // Nothing more, or nothing taken from this page: stop asking.
            if fetched == 0 || self.memberships.fetch_after(conversation) <= after {
                break;
            }
        }
        Ok(out)
    }

    /// A statement's signature under its author device, from the author's
    /// verified device list (read again once if the device is not in it);
    /// a device since revoked is checked too, and said so.
    async fn check_statement(&mut self, s: &MembershipStatement) -> Result<Check, RetentionError> {
        for refresh in [false, true] {
            let (_, list) = self.user(s.author_user, refresh).await?;
            let Some(list) = list else { continue };
            let (device, revoked) = match list.device(s.author_device) {
                Ok(d) => (d, false),
                Err(_) => match list.revoked_device(s.author_device) {
                    Ok(d) => (d, true),
                    Err(_) => continue,
                },
            };
            return Ok(match s.verify(&device) {
                Ok(()) if revoked => Check::Revoked,
                Ok(()) => Check::Current,
                Err(e) => Check::Refused(e.to_string()),
            });
        }
        Ok(Check::Refused(format!("its author device {} is not a device of {}", s.author_device, s.author_user)))
    }

    async fn record_for(
        &mut self,
        d: &Delivery,
        conversation: Option<&Conversation>,
        report: &mut RunReport,
    ) -> Result<Record, RetentionError> {
        let mut record = Record {
            archived_at: now_ms(),
            conversation_id: Some(d.conversation_id.to_string()),
            conversation_kind: conversation.map(|c| c.kind.name().to_owned()),
            seq: Some(d.seq),
            message_id: Some(d.message_id.to_string()),
            // A relay's time ahead of the archive's is not believed: it would
            // keep the record from its period and call an honest sender late.
            relay_received_at: (d.received_at > 0 && d.received_at <= now_ms().saturating_add(MAX_SKEW_MS))
                .then_some(d.received_at),
            relay_received_at_ahead_ms: d
                .received_at
                .checked_sub(now_ms().saturating_add(MAX_SKEW_MS))
                .filter(|a| *a > 0),
            ..Record::default()
        };
        let env = match DeliveredEnvelope::decode(&d.envelope.0) {
            Ok(env) => env,
            Err(e) => {
                self.addressees(&mut record, d.conversation_id, None, conversation).await?;
                return Ok(unreadable(record, &d.envelope.0, format!("malformed envelope: {e}"), report));
            }
        };
        let h = *env.header();
        self.addressees(&mut record, d.conversation_id, Some(&h.membership), conversation).await?;
        record.sent_at = Some(h.timestamp);
        let now = now_ms();
        if h.timestamp > now.saturating_add(MAX_SKEW_MS) {
            record.sent_at_ahead_ms = Some(h.timestamp - now);
        }
        if let Some(received) = record.relay_received_at.filter(|r| h.timestamp.saturating_add(MAX_SKEW_MS) < *r) {
            record.sent_at_behind_ms = Some(received - h.timestamp);
        }
        record.ttl_secs = h.ttl_secs;
        record.burn_on_read_secs = h.burn_on_read_secs;
        let mut sender = self.party(h.sender_user_id).await?;
        sender.device_id = Some(h.sender_device_id.to_string());
        record.sender = Some(sender);
        if h.conversation_id != d.conversation_id || h.message_id != d.message_id {
            return Ok(unreadable(record, &d.envelope.0, "the relay filed it under another id".into(), report));
        }
        let opened = match self.open(&env, h.sender_user_id, false).await? {
            Err(EnvelopeError::Sender(_)) => self.open(&env, h.sender_user_id, true).await?,
            other => other,
        };
        match opened {
            Ok(content) => {
                self.fill(&mut record, content, report).await?;
                Ok(record)
            }
            Err(e) => Ok(unreadable(record, &d.envelope.0, e.to_string(), report)),
        }
    }

    /// Opens an envelope: the outer error is transient (stop, retry later),
    /// the inner one a verified refusal (archived as `unreadable`).
    async fn open(
        &mut self,
        env: &DeliveredEnvelope,
        sender: UserId,
        refresh: bool,
    ) -> Result<Result<Content, EnvelopeError>, RetentionError> {
        let (_, list) = self.user(sender, refresh).await?;
        Ok(self.open_with(env, sender, list))
    }

    fn open_with(
        &self,
        env: &DeliveredEnvelope,
        sender: UserId,
        list: Option<VerifiedDeviceList>,
    ) -> Result<Content, EnvelopeError> {
        let list = list.ok_or(EnvelopeError::Sender(strongroom_crypto::certs::CertError::UnknownDevice {
            user: sender,
            device: env.header().sender_device_id,
        }))?;
        let me = RecipientDevice {
            network_id: self.keys.network().map_err(|_| EnvelopeError::Backend)?,
            user_id: UserId::RETENTION,
            identity_key: self.keys.network_public,
            device_id: self.keys.device_id().map_err(|_| EnvelopeError::Backend)?,
        };
        let key_ref = PreKeyRef { kind: PreKeyKind::Retention, id: self.keys.device.agreement_key_id };
        // Flag, never refuse, a sender clock ahead of ours: `process` records
        // how far ahead it was (`sent_at_ahead_ms`).
        let now = now_ms().max(env.header().timestamp.saturating_sub(MAX_SKEW_MS));
        env.open(&me, &OneKey(key_ref, &self.keys.agreement), &list, &mut NoReplayWindow, now).map(|o| o.content)
    }

    async fn fill(&mut self, r: &mut Record, content: Content, report: &mut RunReport) -> Result<(), RetentionError> {
        // A forward is recorded as what was forwarded, with its provenance.
        let content = match content {
            Content::Forwarded { origin, content } if origin.is_withheld() => {
                r.forwarded_withheld = true;
                *content
            }
            Content::Forwarded { origin, content } => {
                r.forwarded_from = Some(crate::record::Provenance {
                    conversation_id: origin.conversation.to_string(),
                    message_id: origin.message.to_string(),
                    // As the forwarder states it: no identity key lends it weight.
                    sender: crate::record::Party { identity_key: None, ..self.party(origin.sender).await? },
                    sent_at: origin.sent_at,
                    checked: None,
                });
                *content
            }
            other => other,
        };
        let id = |m: &MessageId| Some(m.to_string());
        match content {
            Content::Text(t) => (r.kind, r.text) = ("text".into(), Some(t)),
            Content::Reply { in_reply_to, text } => {
                (r.kind, r.text, r.target) = ("reply".into(), Some(text), id(&in_reply_to))
            }
            Content::Edit { target, text } => (r.kind, r.text, r.target) = ("edit".into(), Some(text), id(&target)),
            Content::Recall { target } => (r.kind, r.target) = ("recall".into(), id(&target)),
            Content::Reaction { target, emoji, remove } => {
                (r.kind, r.target, r.emoji, r.removed) = ("reaction".into(), id(&target), Some(emoji), remove)
            }
            Content::Receipt { kind, at, message_ids } => {
                r.kind = "receipt".into();
                let kind = if kind == ReceiptKind::Read { "read" } else { "delivered" };
                let ids: Vec<String> = message_ids.iter().map(|m| m.to_string()).collect();
                r.receipt = Some(serde_json::json!({"kind": kind, "at": at, "message_ids": ids}));
            }
            Content::Location(l) => {
                r.kind = "location".into();
                r.location = Some(serde_json::json!({
                    "latitude": l.latitude, "longitude": l.longitude, "accuracy_m": l.accuracy_m, "live_until": l.live_until,
                }));
            }
            Content::Control(c) => {
                r.kind = "control".into();
                r.control = Some(control_json(&c));
            }
            Content::File(f) => {
                r.kind = "file".into();
                let info = self.fetch_file(&f).await?;
                if info.stored {
                    report.files += 1;
                }
                r.file = Some(info);
            }
            Content::Unknown { type_id, body } => {
                r.kind = "unknown".into();
                r.raw = Some(STANDARD.encode(&body));
                r.error = Some(format!("content type {type_id} is not known to this version"));
            }
            _ => r.kind = "unknown".into(),
        }
        Ok(())
    }

    /// Downloads, checks and stores a file. A definite failure (the relay no
    /// longer has it, or it does not match its reference) is recorded in the
    /// record; an error a retry could fix (relay down, local disk, archive
    /// store) stops the run, so nothing is acknowledged and the message and
    /// its file come again.
    async fn fetch_file(&mut self, f: &FileRef) -> Result<FileInfo, RetentionError> {
        let mut info = FileInfo {
            blob_id: f.blob_id.to_string(),
            name: f.name.clone(),
            media_type: f.media_type.clone(),
            size: f.size,
            sha256: String::new(),
            ciphertext_sha256: hex(&f.ciphertext_sha256),
            file_key: hex(f.file_key.expose()),
            stored: false,
            error: None,
        };
        let tmp = self.scratch.join(f.blob_id.to_string());
        let result = self.fetch_file_to(f, &tmp).await;
        let _ = std::fs::remove_file(&tmp);
        match result? {
            Ok(sha) => {
                info.sha256 = sha;
                info.stored = true;
            }
            Err(why) => info.error = Some(why),
        }
        Ok(info)
    }

    /// `Ok(Ok(plaintext SHA-256))` stored; `Ok(Err(why))` a definite failure
    /// to record; `Err` an error a retry could fix.
    async fn fetch_file_to(
        &mut self,
        f: &FileRef,
        tmp: &std::path::Path,
    ) -> Result<Result<String, String>, RetentionError> {
        match self.relay.download(&format!("/v1/blobs/{}", f.blob_id), tmp).await {
            Ok(()) => {}
            Err(RetentionError::Refused { status, message }) if is_definite(status) => {
                return Ok(Err(format!("the relay refused the file ({status}): {message}")))
            }
            Err(e) => return Err(e),
        }
        let file = f.clone();
        let path = tmp.to_path_buf();
        // Outer error: the local copy could not be read (retry); inner: the
        // bytes do not decrypt to what the message promised (record it).
        let checked = tokio::task::spawn_blocking(move || -> Result<Result<String, String>, std::io::Error> {
            let input = std::fs::File::open(&path)?;
            let mut sink = HashSink(aws_lc_rs::digest::Context::new(&aws_lc_rs::digest::SHA256));
            let summary = match strongroom_crypto::attachment::decrypt(
                &file.file_key,
                std::io::BufReader::with_capacity(1 << 20, input),
                &mut sink,
            ) {
                Ok(summary) => summary,
                Err(strongroom_crypto::attachment::AttachmentError::Io { kind, message }) => {
                    return Err(std::io::Error::new(kind, message))
                }
                Err(e) => return Ok(Err(e.to_string())),
            };
            Ok(summary.check(&file).map(|()| hex(sink.0.finish().as_ref())).map_err(|e| e.to_string()))
        })
        .await
        .map_err(|e| RetentionError::Corrupt(format!("file check stopped: {e}")))?
        .map_err(crate::error::io(tmp))?;
        let sha = match checked {
            Ok(sha) => sha,
            Err(why) => return Ok(Err(why)),
        };
        self.archive.put_file(&f.blob_id.to_string(), tmp).await?;
        Ok(Ok(sha))
    }
}

impl Drop for Service {
    fn drop(&mut self) {
        let _ = std::fs::remove_dir_all(&self.scratch);
    }
}

/// Replaces the status file whole (written aside, then renamed).
pub fn write_status(path: &std::path::Path, records: u64, last_archived_at: u64) -> Result<(), RetentionError> {
    // 0: nothing archived by this process; the last time stands.
    let last_archived_at = match last_archived_at {
        0 => std::fs::read(path)
            .ok()
            .and_then(|b| serde_json::from_slice::<serde_json::Value>(&b).ok())
            .and_then(|v| v.get("last_archived_at").and_then(|t| t.as_u64()))
            .unwrap_or(0),
        t => t,
    };
    let json = serde_json::json!({"records": records, "last_archived_at": last_archived_at, "updated_at": now_ms()});
    let tmp = path.with_extension("tmp");
    std::fs::write(&tmp, json.to_string()).map_err(crate::error::io(&tmp))?;
    std::fs::rename(&tmp, path).map_err(crate::error::io(path))
}

struct HashSink(aws_lc_rs::digest::Context);

impl Write for HashSink {
    fn write(&mut self, buf: &[u8]) -> std::io::Result<usize> {
        self.0.update(buf);
        Ok(buf.len())
    }
    fn flush(&mut self) -> std::io::Result<()> {
        Ok(())
    }
}

fn unreadable(mut r: Record, raw: &[u8], why: String, report: &mut RunReport) -> Record {
    report.unreadable += 1;
    tracing::warn!(message = ?r.message_id, "archived an envelope that could not be verified or decrypted: {why}");
    r.kind = "unreadable".into();
    r.error = Some(why);
    r.raw = Some(STANDARD.encode(raw));
    r
}

fn control_json(c: &Control) -> serde_json::Value {
    let ids = |v: &[UserId]| v.iter().map(|u| u.to_string()).collect::<Vec<_>>();
    match c {
        Control::MembersAdded(v) => serde_json::json!({"action": "members_added", "users": ids(v)}),
        Control::MembersRemoved(v) => serde_json::json!({"action": "members_removed", "users": ids(v)}),
        Control::Left => serde_json::json!({"action": "left"}),
        Control::ModeratorsAdded(v) => serde_json::json!({"action": "moderators_added", "users": ids(v)}),
        Control::ModeratorsRemoved(v) => serde_json::json!({"action": "moderators_removed", "users": ids(v)}),
        Control::Renamed(name) => serde_json::json!({"action": "renamed", "name": name}),
        Control::IdentityVerified { user, safety_number } => {
            serde_json::json!({"action": "identity_verified", "user": user.to_string(), "safety_number": safety_number})
        }
        Control::DefaultTimers { ttl_secs, burn_on_read_secs } => {
            serde_json::json!({"action": "default_timers", "ttl_secs": ttl_secs, "burn_on_read_secs": burn_on_read_secs})
        }
        Control::Unknown { action, .. } => serde_json::json!({"action": "unknown", "code": action}),
        _ => serde_json::json!({"action": "unknown"}),
    }
}
