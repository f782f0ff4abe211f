//! Legal holds and retention periods. Holds are records in the log (placed
//! and released), so the log itself proves which holds stood when. Purging
//! deletes records older than the period that no hold covers: a deletion
//! record naming each one (index, leaf hash, conversation, sequence) is
//! appended first, then the records are replaced by their leaf hashes, so
//! `verify` still proves everything else intact and sees every gap explained.

use serde::Serialize;

use crate::archive::{read_entries, Archive};
use crate::record::{Deleted, Hold, Record};
use crate::{hex, now_ms, RetentionError};

/// What a purge did.
#[derive(Debug, Default, Serialize, PartialEq, Eq)]
pub struct PurgeReport {
    /// Records deleted.
    pub deleted: u64,
    /// Records past their period kept because a hold covers them.
    pub held: u64,
    /// Files removed with their records.
    pub files: u64,
}

impl Hold {
    /// Whether the hold covers a record.
    pub fn covers(&self, r: &Record) -> bool {
        self.user_id.as_deref().is_none_or(|u| r.involves(u))
            && self.conversation_id.as_deref().is_none_or(|c| r.conversation_id.as_deref() == Some(c))
            // Any of its times in the range: a sender's clock cannot move a
            // record out from under a hold.
            && r.times().any(|at| self.from.is_none_or(|t| at >= t) && self.until.is_none_or(|t| at < t))
    }
}

/// Places a hold.
pub async fn place(archive: &mut Archive, hold: Hold) -> Result<(), RetentionError> {
    if hold.name.trim().is_empty() {
        return Err(RetentionError::Usage("a hold needs a name (--name)".into()));
    }
    if active(archive).await?.iter().any(|h| h.name == hold.name) {
        return Err(RetentionError::Usage(format!("a hold named {:?} already stands", hold.name)));
    }
    archive
        .append(&[Record { kind: "hold".into(), archived_at: now_ms(), hold: Some(hold), ..Record::default() }])
        .await
}

/// Releases a hold by name.
pub async fn release(archive: &mut Archive, name: &str) -> Result<(), RetentionError> {
    let Some(hold) = active(archive).await?.into_iter().find(|h| h.name == name) else {
        return Err(RetentionError::Usage(format!("no hold named {name:?} stands (see `retention hold list`)")));
    };
    archive
        .append(&[Record {
            kind: "hold_released".into(),
            archived_at: now_ms(),
            hold: Some(hold),
            ..Record::default()
        }])
        .await
}

/// Holds standing now, from the log.
pub async fn active(archive: &Archive) -> Result<Vec<Hold>, RetentionError> {
    let mut holds: Vec<Hold> = Vec::new();
    archive
        .for_each(|_, r| match (r.kind.as_str(), r.hold) {
            ("hold", Some(h)) => holds.push(h),
            ("hold_released", Some(h)) => holds.retain(|x| x.name != h.name),
            _ => {}
        })
        .await?;
    Ok(holds)
}

/// Which retention period applies to a record. Only the archive operator
/// (`--period-days`, the archive's own configuration) starts a period: with
/// none, nothing is deleted. The relay's settings (the sender's security
/// group's period, else the network's) are not signed, so they may only
/// lengthen it; the floor of the network-key-signed policy raises it too.
/// No record goes before the longest of the three.
#[derive(Debug, Clone, Default)]
pub struct Periods {
    /// The archive operator's period (`--period-days`).
    pub default_days: Option<u64>,
    /// The network's period, as the relay reports it (0 = unset).
    pub network_days: u32,
    /// By sender (user id hex): their security group's period, as the relay reports it.
    pub users: std::collections::BTreeMap<String, u32>,
    /// The retention-period floor of the signed network policy.
    pub floor_days: Option<u32>,
}

impl Periods {
    /// One period for everything.
    pub fn uniform(days: u64) -> Self {
        Self { default_days: Some(days), ..Self::default() }
    }

    /// The period for a record, in days; `None` keeps it.
    pub fn for_record(&self, r: &Record) -> Option<u64> {
        let operator = self.default_days?;
        let group = r.sender.as_ref().and_then(|s| self.users.get(&s.user_id)).copied().filter(|d| *d > 0);
        let relay = group.or((self.network_days > 0).then_some(self.network_days)).map_or(0, u64::from);
        Some(operator.max(relay).max(self.floor_days.map_or(0, u64::from)))
    }

    fn describe(&self) -> String {
        let mut parts = Vec::new();
        if let Some(d) = self.floor_days {
            parts.push(format!("signed policy floor of {d} days"));
        }
        if !self.users.is_empty() {
            parts.push(format!("security group periods for {} users", self.users.len()));
        }
        if self.network_days > 0 {
            parts.push(format!("network period of {} days", self.network_days));
        }
        if let Some(d) = self.default_days {
            parts.push(format!("operator period of {d} days"));
        }
        format!("retention period: {}", parts.join("; "))
    }
}

/// Deletes message records older than their retention period (by sent
/// time) that no standing hold covers.
pub async fn purge(archive: &mut Archive, periods: &Periods, now: u64) -> Result<PurgeReport, RetentionError> {
    let holds = active(archive).await?;
    let mut report = PurgeReport::default();
    let mut deleted = Vec::new();
    let mut files = Vec::new();
    read_entries(archive.store().as_ref(), archive.sealer(), |index, entry, record| {
        let Some(r) = record else { return };
        if archive.is_deleted(index) {
            return;
        }
        let Some(days) = periods.for_record(&r) else { return };
        if !r.is_message() || r.retention_clock() >= now.saturating_sub(days.saturating_mul(86_400_000)) {
            return;
        }
        if holds.iter().any(|h| h.covers(&r)) {
            report.held += 1;
            return;
        }
        deleted.push(Deleted {
            index,
            leaf: hex(&entry.leaf(index)),
            conversation_id: r.conversation_id.clone(),
            seq: r.seq,
            statement: r.statement().map(|d| hex(&d)),
        });
        if let Some(f) = r.file.filter(|f| f.stored) {
            files.push(f.blob_id);
        }
    })
    .await?;
    report.deleted = deleted.len() as u64;
    if !deleted.is_empty() {
        // The log says what goes, and why, before anything goes.
        archive
            .append(&[Record {
                kind: "deletion".into(),
                archived_at: now_ms(),
                deleted,
                reason: Some(periods.describe()),
                ..Record::default()
            }])
            .await?;
    }
    // Also what a purge that stopped half-way left.
    archive.redact().await?;
    for blob in files {
        archive.delete_file(&blob).await?;
        report.files += 1;
    }
    Ok(report)
}
