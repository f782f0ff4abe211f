//! One archive record: a message (of any kind) with who sent it, who
//! received it, where and when; or the archive's own events (deletions,
//! legal holds). Stored as JSON inside the encrypted leaf.

use serde::{Deserialize, Serialize};

/// A person or device in a record, by full identity.
#[derive(Debug, Clone, Serialize, Deserialize, PartialEq, Eq, Default)]
pub struct Party {
    /// User id (hex).
    pub user_id: String,
    /// Username at archive time.
    pub username: String,
    /// Their identity public key (hex), when known.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub identity_key: Option<String>,
    /// The sending device (senders only).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub device_id: Option<String>,
    /// A guest from outside the organisation (as the relay said at archive time).
    #[serde(default, skip_serializing_if = "std::ops::Not::not")]
    pub guest: bool,
}

/// An archived file.
#[derive(Debug, Clone, Serialize, Deserialize, PartialEq, Eq)]
pub struct FileInfo {
    /// Where the relay kept it; the archive keeps it as `files/<blob_id>`.
    pub blob_id: String,
    /// Name the sender gave.
    pub name: String,
    /// Media type.
    pub media_type: String,
    /// Plaintext size.
    pub size: u64,
    /// SHA-256 of the plaintext (checked when archived).
    pub sha256: String,
    /// SHA-256 of the stored encrypted blob.
    pub ciphertext_sha256: String,
    /// The file's stream key (hex): the archive record is itself encrypted.
    pub file_key: String,
    /// Whether the bytes were fetched and verified; if not, why.
    pub stored: bool,
    /// Why the bytes are missing, when they are.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub error: Option<String>,
}

/// A record removed under a retention period.
#[derive(Debug, Clone, Serialize, Deserialize, PartialEq, Eq)]
pub struct Deleted {
    /// Its leaf index.
    pub index: u64,
    /// Its leaf hash (hex), so verify can match the redacted leaf.
    pub leaf: String,
    /// Conversation (hex), when it had one.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub conversation_id: Option<String>,
    /// Its sequence number there.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub seq: Option<u64>,
    /// A `membership` record's statement SHA-256 (hex), so the statement is
    /// not archived again after the record is gone.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub statement: Option<String>,
}

/// Where a forwarded message came from, as its sender stated it.
#[derive(Debug, Clone, Serialize, Deserialize, PartialEq, Eq)]
pub struct Provenance {
    /// The conversation it was forwarded from (hex).
    pub conversation_id: String,
    /// Its message id there (hex).
    pub message_id: String,
    /// Who sent it there.
    pub sender: Party,
    /// When (ms, their clock).
    pub sent_at: u64,
    /// Set in exports: whether this archive holds the original (its
    /// document id) from that sender in that conversation, or not.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub checked: Option<String>,
}

/// A legal hold: records it matches are never deleted while it stands.
#[derive(Debug, Clone, Serialize, Deserialize, PartialEq, Eq, Default)]
pub struct Hold {
    /// Its name ("SEC inquiry 2026-14").
    pub name: String,
    /// Only records sent or received by this user (id, hex).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub user_id: Option<String>,
    /// Only this conversation (hex).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub conversation_id: Option<String>,
    /// Only records sent at or after this time (ms).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub from: Option<u64>,
    /// Only records sent before this time (ms).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub until: Option<u64>,
}

/// An archive record.
#[derive(Debug, Clone, Serialize, Deserialize, PartialEq, Default)]
pub struct Record {
    /// text, reply, edit, recall, reaction, receipt, file, location, control,
    /// unknown, unreadable (could not be verified or decrypted: kept as
    /// evidence), deletion, hold, hold_released.
    pub kind: String,
    /// When the archive wrote it (ms).
    pub archived_at: u64,
    /// Conversation (hex).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub conversation_id: Option<String>,
    /// direct, group or room.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub conversation_kind: Option<String>,
    /// The relay's sequence number in the conversation.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub seq: Option<u64>,
    /// Message id (hex).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub message_id: Option<String>,
    /// Sender.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub sender: Option<Party>,
    /// Every member of the conversation the message was addressed to: the
    /// signed member set its sender committed to in the header.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub recipients: Vec<Party>,
    /// Where `recipients` came from: `committed` (the sender's signed
    /// commitment) or `relay` (no signed set matched: the relay's member
    /// list when archived, with `recipients_note` saying why).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub recipients_source: Option<String>,
    /// Why the committed member set could not be used.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub recipients_note: Option<String>,
    /// The sender's timestamp (ms).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub sent_at: Option<u64>,
    /// Set when the sender's timestamp was more than MAX_SKEW (5 minutes)
    /// ahead of the archive's clock: how far ahead (ms). Devices refuse such
    /// a message; the archive keeps it, flagged, because a record must not
    /// be lost to a wrong clock.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub sent_at_ahead_ms: Option<u64>,
    /// When the relay accepted the message (ms), as it delivered it.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub relay_received_at: Option<u64>,
    /// Set when the relay's receive time was more than MAX_SKEW ahead of
    /// the archive's clock (then not believed): how far ahead (ms).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub relay_received_at_ahead_ms: Option<u64>,
    /// Set when the sender's timestamp was more than MAX_SKEW behind the
    /// relay's receive time (a back-dated message): how far behind (ms).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub sent_at_behind_ms: Option<u64>,
    /// Disappearing-message timer the sender set (s).
    #[serde(default, skip_serializing_if = "is_zero")]
    pub ttl_secs: u32,
    /// Burn-on-read timer the sender set (s).
    #[serde(default, skip_serializing_if = "is_zero")]
    pub burn_on_read_secs: u32,
    /// Text (text, reply, edit).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub text: Option<String>,
    /// The message this one is about (reply, edit, recall, reaction).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub target: Option<String>,
    /// Reaction emoji.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub emoji: Option<String>,
    /// A reaction taken back.
    #[serde(default, skip_serializing_if = "std::ops::Not::not")]
    pub removed: bool,
    /// Receipts: delivered or read, when, and for which messages.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub receipt: Option<serde_json::Value>,
    /// Files.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub file: Option<FileInfo>,
    /// Locations: latitude, longitude, accuracy, live until.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub location: Option<serde_json::Value>,
    /// Membership and room control.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub control: Option<serde_json::Value>,
    /// A forwarded message: where it came from.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub forwarded_from: Option<Provenance>,
    /// A forwarded message whose forwarder withheld where it came from (a
    /// forward made where retention was off, or a client that says nothing).
    #[serde(default, skip_serializing_if = "std::ops::Not::not")]
    pub forwarded_withheld: bool,
    /// Why an envelope was unreadable.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub error: Option<String>,
    /// The envelope as delivered (base64), for unreadable ones.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub raw: Option<String>,
    /// Deletions: what was removed, and why.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub deleted: Vec<Deleted>,
    /// Deletions: the rule that allowed it.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub reason: Option<String>,
    /// Holds placed or released.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub hold: Option<Hold>,
    /// `access` records: who searched, exported, placed or released a hold
    /// or purged (the operator's name as given).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub actor: Option<String>,
    /// `access` records: why, as the operator gave it.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub why: Option<String>,
}

impl Record {
    /// The default retention a `storage_locked` access record states (days).
    pub fn locked_days(&self) -> Option<u64> {
        let c = self.control.as_ref().filter(|_| self.kind == "access")?;
        (c.get("action")?.as_str()? == "storage_locked").then(|| c.get("days")?.as_u64()).flatten()
    }

    /// An `access` record: who did what to the archive, and why. `detail`
    /// holds the filter used and how many records it touched.
    pub fn access(action: &str, actor: &str, why: Option<&str>, detail: serde_json::Value) -> Record {
        let mut control = serde_json::json!({"action": action});
        if let (Some(c), Some(d)) = (control.as_object_mut(), detail.as_object()) {
            c.extend(d.clone());
        }
        Record {
            kind: "access".into(),
            archived_at: crate::now_ms(),
            control: Some(control),
            actor: Some(actor.to_owned()),
            why: why.map(str::to_owned),
            ..Record::default()
        }
    }
}

fn is_zero(v: &u32) -> bool {
    *v == 0
}

impl Record {
    /// Whether `user` (hex) sent it or was among its recipients.
    pub fn involves(&self, user: &str) -> bool {
        self.sender.as_ref().is_some_and(|s| s.user_id == user || s.username == user)
            || self.recipients.iter().any(|r| r.user_id == user || r.username == user)
    }

    /// When it happened: sent time if known, else archive time.
    pub fn time(&self) -> u64 {
        self.sent_at.unwrap_or(self.archived_at)
    }

    /// Every time the record knows: the sender's (its own clock), the
    /// relay's receive time and the archive's.
    pub fn times(&self) -> impl Iterator<Item = u64> + '_ {
        [self.sent_at, self.relay_received_at, Some(self.archived_at)].into_iter().flatten()
    }

    /// What a retention period counts from: the latest of [`Record::times`],
    /// so a sender's clock set back cannot make a record due early.
    pub fn retention_clock(&self) -> u64 {
        self.times().max().unwrap_or(self.archived_at)
    }

    /// A `membership` record's statement SHA-256.
    pub fn statement(&self) -> Option<[u8; 32]> {
        if self.kind != "membership" {
            return None;
        }
        let hex = self.control.as_ref()?.get("statement_sha256")?.as_str()?;
        crate::unhex::<32>(hex)
    }

    /// Whether this is a message (not an archive event).
    pub fn is_message(&self) -> bool {
        !matches!(self.kind.as_str(), "deletion" | "hold" | "hold_released" | "handover" | "access")
    }
}
