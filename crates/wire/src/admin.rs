//! Administration: security groups and their settings, users as
//! administrators see them, and the audit log.

use serde::{Deserialize, Serialize};

use crate::{ConversationId, DeviceId, NetworkId, UserId};

/// What a security group allows. Users without a group get the network's
/// default settings. Unknown fields are refused, so a typo is an error.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct GroupSettings {
    /// Longest disappearing-message timer, seconds; 0 = no limit. When set,
    /// every message must expire within it.
    pub max_ttl_secs: u32,
    /// Longest burn-on-read timer, seconds; 0 = no limit.
    pub max_bor_secs: u32,
    /// May send files.
    pub files_enabled: bool,
    /// May download files.
    pub file_download: bool,
    /// Largest file, bytes.
    pub max_file_size: u64,
    /// May make calls.
    pub calling_enabled: bool,
    /// May use video in calls.
    pub video_enabled: bool,
    /// May share their screen.
    pub screen_share_enabled: bool,
    /// May share locations.
    pub location_enabled: bool,
    /// May forward messages.
    pub message_forwarding: bool,
    /// Clients may fetch link previews.
    pub link_previews: bool,
    /// Read receipts: `off`, `on` (the user chooses) or `forced`.
    pub read_receipts: ReceiptPolicy,
    /// Talking to other networks: `none`, `allow_list` or `open`.
    pub federation: Federation,
    /// Networks allowed when `federation` is `allow_list` (domain names).
    pub federation_allow: Vec<String>,
    /// Members may invite guests and add guests to conversations; guests
    /// these members invite get this group's settings.
    pub guests_enabled: bool,
    /// A guest of this group inactive this long (seconds) expires: their
    /// devices are revoked and members remove them; 0 = never.
    pub guest_expiry_secs: u32,
    /// Shortest password, characters.
    pub password_min_length: u32,
    /// Failed logins before the account locks; 0 = never.
    pub lockout_threshold: u32,
    /// Failed profile unlocks before a device erases itself; 0 = never.
    pub device_lockout: u32,
    /// Archive retention period for these users' messages, days; 0 = the
    /// archive's default.
    pub retention_days: u32,
}

impl Default for GroupSettings {
    fn default() -> Self {
        Self {
            max_ttl_secs: 0,
            max_bor_secs: 0,
            files_enabled: true,
            file_download: true,
            max_file_size: 4 << 30,
            calling_enabled: true,
            video_enabled: true,
            screen_share_enabled: true,
            location_enabled: true,
            message_forwarding: true,
            link_previews: true,
            read_receipts: ReceiptPolicy::On,
            federation: Federation::None,
            federation_allow: Vec::new(),
            guests_enabled: false,
            guest_expiry_secs: 30 * 86_400,
            password_min_length: 10,
            lockout_threshold: 5,
            device_lockout: 0,
            retention_days: 0,
        }
    }
}

/// Whether read receipts are sent. A value this release does not know reads
/// as `Unknown` (clients leave the choice to the person); the relay refuses
/// to store it (`validate`).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum ReceiptPolicy {
    /// Never.
    Off,
    /// As each person chooses.
    On,
    /// Always.
    Forced,
    /// A policy this release does not know.
    Unknown,
}

impl ReceiptPolicy {
    /// Every policy, in order.
    pub const ALL: [ReceiptPolicy; 3] = [Self::Off, Self::On, Self::Forced];

    /// Its name on the wire.
    pub fn name(self) -> &'static str {
        match self {
            Self::Off => "off",
            Self::On => "on",
            Self::Forced => "forced",
            Self::Unknown => "unknown",
        }
    }

    /// From its name.
    pub fn parse(s: &str) -> Option<Self> {
        Self::ALL.into_iter().find(|p| p.name() == s)
    }
}

impl std::fmt::Display for ReceiptPolicy {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(self.name())
    }
}

by_name!(ReceiptPolicy);

/// Talking to other networks. A value this release does not know reads as
/// `Unknown`; the relay refuses to store it (`validate`).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum Federation {
    /// This network only.
    None,
    /// The networks in `federation_allow`.
    AllowList,
    /// Any network.
    Open,
    /// A setting this release does not know.
    Unknown,
}

impl Federation {
    /// Its name on the wire.
    pub fn name(self) -> &'static str {
        match self {
            Self::None => "none",
            Self::AllowList => "allow_list",
            Self::Open => "open",
            Self::Unknown => "unknown",
        }
    }

    /// From its name.
    pub fn parse(s: &str) -> Option<Self> {
        [Self::None, Self::AllowList, Self::Open].into_iter().find(|f| f.name() == s)
    }
}

by_name!(Federation);

impl GroupSettings {
    /// Every setting in range, or what is wrong and what is allowed.
    pub fn validate(&self) -> Result<(), String> {
        if self.read_receipts == ReceiptPolicy::Unknown {
            return Err("read_receipts is off, on or forced".into());
        }
        if self.federation == Federation::Unknown {
            return Err("federation is none, allow_list or open".into());
        }
        if self.federation_allow.len() > 1000 {
            return Err("federation_allow holds at most 1000 networks".into());
        }
        for d in &self.federation_allow {
            let ok = !d.is_empty()
                && d.len() <= 253
                && d.split('.').all(|l| {
                    !l.is_empty() && l.len() <= 63 && l.bytes().all(|b| b.is_ascii_alphanumeric() || b == b'-')
                });
            if !ok {
                return Err(format!("federation_allow entry {d:?} is not a domain name"));
            }
        }
        if !(8..=1024).contains(&self.password_min_length) {
            return Err("password_min_length is 8 to 1024".into());
        }
        if self.lockout_threshold > 1000 || self.device_lockout > 1000 {
            return Err("lockout_threshold and device_lockout are 0 (off) to 1000".into());
        }
        if self.max_file_size == 0 {
            return Err("max_file_size must be at least 1 byte (turn files off with files_enabled = false)".into());
        }
        if !self.files_enabled && self.max_file_size == 0 {
            return Err("max_file_size must be positive".into());
        }
        Ok(())
    }
}

/// A security group.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct SecurityGroup {
    /// Id (hex).
    pub id: String,
    /// Name, unique in the network.
    pub name: String,
    /// Its settings.
    pub settings: GroupSettings,
    /// Members.
    pub members: u64,
}

/// `POST /v1/admin/invites`: one invite per label.
#[derive(Debug, Clone, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct BulkInvite {
    /// One invite per label (e.g. the names from a CSV file); at most 1000.
    pub labels: Vec<String>,
    /// The invited become administrators.
    #[serde(default)]
    pub admin: bool,
    /// How long the invites stay valid (seconds); the relay's default if absent.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub ttl_secs: Option<u64>,
}

/// One invite of a [`BulkInvite`], with its label.
#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct LabelledInvite {
    /// The label it was made for.
    pub label: String,
    /// The invite.
    #[serde(flatten)]
    pub invite: crate::InviteCreated,
}

/// `POST /v1/admin/invites/reissue` and `POST /v1/invites/revoke`: an invite by its code.
#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct InviteCode {
    /// The invite code.
    pub invite: String,
}

/// `POST /v1/admin/groups` and `PUT /v1/admin/groups/{id}`.
#[derive(Debug, Clone, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct GroupRequest {
    /// Name.
    pub name: String,
    /// Settings (omitted fields take their defaults).
    #[serde(default)]
    pub settings: GroupSettings,
}

/// A user as administrators see it.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct AdminUser {
    /// Id (hex).
    pub user_id: UserId,
    /// Username.
    pub username: String,
    /// `user`, `admin`, `auditor` or `guest`.
    pub role: String,
    /// Suspended.
    pub suspended: bool,
    /// Who invited this guest (username), for guests.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub invited_by: Option<String>,
    /// Last activity (ms), for guests.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub last_active_at: Option<u64>,
    /// When this guest's access expired (ms).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub expired_at: Option<u64>,
    /// Security group (id), if any.
    pub group_id: Option<String>,
    /// Devices: (id, revoked, wipe pending or done).
    pub devices: Vec<AdminDevice>,
    /// Created (ms).
    pub created_at: u64,
}

/// A device as administrators see it.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct AdminDevice {
    /// Id (hex).
    pub device_id: DeviceId,
    /// Revoked.
    pub revoked: bool,
    /// `none`, `pending` or `confirmed`.
    pub wipe: String,
}

/// One audit log entry. `hash = SHA-256(prev_hash | seq | at | actor | action | target | source | details)`
/// with each field as a u32 length and its bytes; the first entry's `prev_hash` is 32 zero bytes.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct AuditEntry {
    /// Position in the network's log, from 1.
    pub seq: u64,
    /// When (ms).
    pub at: u64,
    /// Who (username, or `bootstrap`).
    pub actor: String,
    /// What, e.g. `user.suspend`.
    pub action: String,
    /// On what (user, device, group…).
    pub target: String,
    /// From which address.
    pub source: String,
    /// Details (JSON text).
    pub details: String,
    /// Previous entry's hash (hex).
    pub prev_hash: String,
    /// This entry's hash (hex).
    pub hash: String,
}

impl AuditEntry {
    /// Recomputes this entry's hash from its fields and `prev_hash`.
    pub fn compute_hash(&self, prev_hash: &[u8; 32]) -> [u8; 32] {
        use aws_lc_rs::digest::{Context, SHA256};
        let mut ctx = Context::new(&SHA256);
        ctx.update(prev_hash);
        ctx.update(&self.seq.to_be_bytes());
        ctx.update(&self.at.to_be_bytes());
        for field in [&self.actor, &self.action, &self.target, &self.source, &self.details] {
            ctx.update(&(field.len() as u32).to_be_bytes());
            ctx.update(field.as_bytes());
        }
        let mut out = [0u8; 32];
        out.copy_from_slice(ctx.finish().as_ref());
        out
    }
}

/// Checks a run of audit entries from the start of a log: every hash, every
/// link, and no gap in `seq`. The first problem, precisely.
pub fn verify_audit_chain(entries: &[AuditEntry]) -> Result<(), String> {
    let mut prev = [0u8; 32];
    for (i, e) in entries.iter().enumerate() {
        let want = i as u64 + 1;
        if e.seq != want {
            return Err(format!(
                "entry {want} is missing (found {} in its place): entries were deleted or inserted",
                e.seq
            ));
        }
        if e.prev_hash != hex(&prev) {
            return Err(format!("entry {}: does not link to the entry before it", e.seq));
        }
        let h = e.compute_hash(&prev);
        if e.hash != hex(&h) {
            return Err(format!("entry {} ({} by {}): its contents were altered", e.seq, e.action, e.actor));
        }
        prev = h;
    }
    Ok(())
}

fn hex(b: &[u8]) -> String {
    b.iter().map(|x| format!("{x:02x}")).collect()
}

/// `POST /v1/admin/users/{id}/role`.
#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct SetRole {
    /// `user`, `admin` or `auditor`.
    pub role: String,
}

/// `POST /v1/admin/users/{id}/group`.
#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct SetGroup {
    /// Group id (hex), or none for the network default.
    pub group_id: Option<String>,
}

/// A one-time code the user redeems to choose a new password (`POST /v1/password/reset`).
#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct ResetCode {
    /// The code.
    pub code: String,
    /// Valid until (ms).
    pub expires_at: u64,
}

/// `POST /v1/password/reset`.
#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct RedeemReset {
    /// Network (hex).
    pub network_id: NetworkId,
    /// Username.
    pub username: String,
    /// The code from the administrator.
    pub code: String,
    /// The new password.
    pub new_password: String,
}

/// `GET /v1/retention/periods`.
#[derive(Debug, Clone, Default, Serialize, Deserialize)]
pub struct RetentionPeriods {
    /// The network's period in days (0 = none set).
    pub network_days: u32,
    /// Users whose security group sets a period: user id (hex) → days.
    pub users: std::collections::BTreeMap<UserId, u32>,
}

/// `GET /v1/retention/coverage`: what the relay queued for the calling
/// retention device, per conversation (`retention verify` checks its
/// archive against it).
#[derive(Debug, Clone, Default, Serialize, Deserialize, PartialEq, Eq)]
pub struct RetentionCoverage {
    /// One entry per conversation with anything queued for the device.
    pub conversations: Vec<ConversationCoverage>,
}

/// One conversation's part of [`RetentionCoverage`].
#[derive(Debug, Clone, Serialize, Deserialize, PartialEq, Eq)]
pub struct ConversationCoverage {
    /// The conversation (hex).
    pub conversation_id: ConversationId,
    /// Lowest sequence number queued for the device.
    pub first_seq: u64,
    /// Highest.
    pub last_seq: u64,
    /// How many envelopes were queued for it in all.
    pub count: u64,
    /// How many of those are still queued (not acknowledged yet).
    pub queued: u64,
}

/// One retention device of `GET /v1/admin/retention/backlog`: what waits
/// for it on the relay.
#[derive(Debug, Clone, Serialize, Deserialize, PartialEq, Eq)]
pub struct RetentionBacklog {
    /// The retention device.
    pub device_id: DeviceId,
    /// Its name in the policy.
    pub name: String,
    /// `active` (every message is sealed to it) or `draining` (replaced:
    /// it empties its queue, then may no longer log in).
    pub state: String,
    /// Messages queued for it, not yet archived and acknowledged.
    pub queued: u64,
}

/// `POST /v1/retention/checkpoint`: the retention device reports its
/// archive's latest signed checkpoint (shown to administrators; the relay
/// checks the signature with the key the policy names).
#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct CheckpointReport {
    /// Records in the archive.
    pub tree_size: u64,
    /// Merkle root (hex).
    pub root: String,
    /// When it was signed (ms).
    pub timestamp: u64,
    /// Ed25519 signature over the `ArchiveCheckpoint` statement (base64).
    pub signature: crate::B64,
}
