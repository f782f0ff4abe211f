//! `strongroom retention verify`: every leaf recomputed, every record
//! authenticated at its position, every checkpoint's signature and root
//! checked, deletions accounted for, and per-conversation sequences checked
//! for gaps. Problems are listed precisely (which record, segment, checkpoint).

use std::collections::{BTreeMap, BTreeSet, HashMap};

use object_store::ObjectStore;
use serde::Serialize;
use strongroom_crypto::ids::{DeviceId, NetworkId};
use strongroom_crypto::keys::VerifyingKey;
use strongroom_crypto::merkle::{Accumulator, Hash};

use crate::archive::{
    load_entries, numbered, parse_signed_segment, segment_list, segment_statement, Entry, Sealer, StoredCheckpoint,
};
pub use crate::worm::WormReport;
use crate::{hex, RetentionError};

/// Most problems listed; the count is always complete.
const MAX_LISTED: usize = 50;

/// What verify found.
#[derive(Debug, Default, Serialize)]
pub struct VerifyReport {
    /// Records (leaves), deleted ones included.
    pub records: u64,
    /// Of which deleted under a retention period.
    pub deleted: u64,
    /// Records a deletion record names that are still stored (WORM: their
    /// segment is locked until its retention ends); no reader returns them.
    pub deleted_kept: u64,
    /// The longest bucket default retention the archive recorded (days).
    #[serde(skip)]
    pub worm_recorded_days: Option<u64>,
    /// The second copy, when verify was given one.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub replica: Option<crate::replica::ReplicaReport>,
    /// The bucket's Object Lock settings and versions (S3 archives).
    #[serde(skip_serializing_if = "Option::is_none")]
    pub worm: Option<WormReport>,
    /// Segments read.
    pub segments: u64,
    /// Checkpoints checked.
    pub checkpoints: u64,
    /// Conversations whose sequences were checked.
    pub conversations: u64,
    /// Files whose bytes were checked.
    pub files: u64,
    /// Root over all records (hex), when there are any.
    pub root: Option<String>,
    /// Everything wrong, most precise first.
    pub problems: Vec<String>,
    /// How many problems in all (the list stops at 50).
    pub problem_count: u64,
    /// Whether the archive was compared with what the relay queued for
    /// this device ([`VerifyReport::compare_with_relay`]).
    pub relay_checked: bool,
    /// Messages the relay still queues for this device (not archived yet:
    /// `retention run` archives them).
    pub relay_pending: u64,
    /// Sequence numbers archived per conversation (for the relay comparison).
    #[serde(skip)]
    pub sequences: BTreeMap<String, BTreeSet<u64>>,
    /// Access records (searches, exports, holds, purges) in the log.
    pub access_records: u64,
    /// Whether the archive was compared with a witness's checkpoints.
    pub witness_checked: bool,
    /// The newest signed checkpoint the witness holds (its size).
    pub witness_size: Option<u64>,
    /// Every leaf hash, in order (for consistency proofs; empty past a
    /// missing segment).
    #[serde(skip)]
    pub leaves: Vec<Hash>,
    /// Signed checkpoint roots by size.
    #[serde(skip)]
    pub checkpoint_roots: BTreeMap<u64, Hash>,
    /// The devices this archive's device handed over to, when it was
    /// replaced and drained (its `handover` record).
    #[serde(skip_serializing_if = "Vec::is_empty")]
    pub handed_over_to: Vec<String>,
}

/// The numbers missing between a set's lowest and highest: how many, the
/// first and the last. Walks the set, never the range (a relay may number a
/// message u64::MAX).
fn gaps(s: &BTreeSet<u64>) -> Option<(u64, u64, u64)> {
    let mut found: Option<(u64, u64, u64)> = None;
    for (a, b) in s.iter().zip(s.iter().skip(1)) {
        if *b > a.saturating_add(1) {
            let (count, first, _) = found.unwrap_or((0, a + 1, 0));
            found = Some((count.saturating_add(b - a - 1), first, b - 1));
        }
    }
    found
}

impl VerifyReport {
    /// Checks this archive together with the one of the device it replaced
    /// (`admin retention rotate`): the predecessor's problems count here,
    /// it must have recorded its handover to `me`, and per conversation the
    /// two archives together must hold every sequence number between the
    /// first and the last (nothing fell between them).
    pub fn merge_predecessor(&mut self, predecessor: &VerifyReport, me: &str) {
        for p in &predecessor.problems {
            self.problem(format!("predecessor archive: {p}"));
        }
        // Problems past the listed ones still count.
        self.problem_count += predecessor.problem_count.saturating_sub(predecessor.problems.len() as u64);
        if !predecessor.handed_over_to.iter().any(|d| d == me) {
            self.problem(
                "the predecessor archive records no handover to this device: it has not drained yet (run `strongroom retention run` for it until it stops by itself)".into(),
            );
        }
        for (conversation, theirs) in &predecessor.sequences {
            let mine = self.sequences.get(conversation).cloned().unwrap_or_default();
            let both: BTreeSet<u64> = mine.union(theirs).copied().collect();
            let (Some(lo), Some(hi)) = (both.first(), both.last()) else { continue };
            if let Some((missing, _, _)) = gaps(&both) {
                self.problem(format!(
                    "conversation {conversation}: {missing} sequence number(s) between {lo} and {hi} are in neither archive"
                ));
            }
        }
    }

    /// Whether the archive is intact.
    pub fn ok(&self) -> bool {
        self.problem_count == 0
    }

    /// Compares the archive with what the relay says it queued for this
    /// retention device: per conversation, every envelope queued must be
    /// archived or still queued. An envelope that is neither was taken off
    /// the queue without being archived (acknowledged by someone else, or
    /// dropped by the relay), which the archive alone cannot show.
    pub fn compare_with_relay(&mut self, relay: &strongroom_wire::RetentionCoverage) {
        self.relay_checked = true;
        for c in &relay.conversations {
            if c.first_seq > c.last_seq || c.count > (c.last_seq - c.first_seq).saturating_add(1) {
                self.problem(format!(
                    "the relay's record of conversation {} is impossible ({} message(s) in sequence {}..={}): the relay is faulty or lying",
                    c.conversation_id, c.count, c.first_seq, c.last_seq
                ));
                continue;
            }
            let archived = self
                .sequences
                .get(&c.conversation_id.to_string())
                .map_or(0, |s| s.range(c.first_seq..=c.last_seq).count() as u64);
            let lost = c.count.saturating_sub(archived).saturating_sub(c.queued);
            self.relay_pending += c.count.saturating_sub(archived).min(c.queued);
            if lost > 0 {
                let seen =
                    if archived == 0 { "none of which is archived".to_owned() } else { format!("{archived} archived") };
                self.problem(format!(
                    "conversation {}: the relay queued {} message(s) for this device (sequence {}..={}), {seen}, {} still queued: {lost} message(s) never reached the archive (taken off its queue without being archived)",
                    c.conversation_id, c.count, c.first_seq, c.last_seq, c.queued
                ));
            }
        }
    }

    pub fn problem(&mut self, p: String) {
        self.problem_count += 1;
        if self.problems.len() < MAX_LISTED {
            self.problems.push(p);
        }
    }
}

/// Whom the archive must belong to (from the retention key file, not from
/// the archive itself, which an attacker could rewrite).
pub struct Trusted<'a> {
    /// Network.
    pub network: NetworkId,
    /// Retention device.
    pub device: DeviceId,
    /// Its checkpoint key.
    pub signing_key: VerifyingKey,
    /// Decrypts records.
    pub sealer: &'a Sealer,
}

/// Verifies the archive in `store`. `check_files` also re-hashes every stored file.
pub async fn verify(
    store: &dyn ObjectStore,
    trusted: &Trusted<'_>,
    check_files: bool,
) -> Result<VerifyReport, RetentionError> {
    let mut report = VerifyReport::default();
    let header = crate::archive::header(store).await?;
    if header.signing_key != hex(trusted.signing_key.as_bytes()) || header.device_id != trusted.device.to_string() {
        report.problem("archive.json names another retention device or key than this key file".into());
    }

    // Checkpoints first: their roots are compared as the leaves go by.
    let mut checkpoints = BTreeMap::new();
    for (size, path) in numbered(store, "checkpoints", "ckpt").await? {
        let bytes = store.get(&path).await?.bytes().await?;
        let Some(cp) = StoredCheckpoint::decode(&bytes) else {
            report.problem(format!("checkpoint {path}: malformed ({} bytes)", bytes.len()));
            continue;
        };
        if cp.tree_size != size {
            report.problem(format!("checkpoint {path}: names size {} but is stored as {size}", cp.tree_size));
        }
        if cp.statement(trusted.network, trusted.device).verify(&trusted.signing_key, &cp.signature).is_err() {
            report.problem(format!("checkpoint at size {size}: the signature does not verify (forged or altered)"));
        }
        checkpoints.insert(cp.tree_size, cp.root);
        report.checkpoints += 1;
    }

    let mut acc = Accumulator::new();
    let mut deleted_leaves: HashMap<u64, Hash> = HashMap::new();
    let mut accounted: HashMap<u64, Hash> = HashMap::new();
    let mut seqs: BTreeMap<String, BTreeSet<u64>> = BTreeMap::new();
    let mut seen_ids: HashMap<String, u64> = HashMap::new();
    // Conversations created (signed statement) after the archive began, so
    // every message of theirs, from number 1, was queued for it.
    let mut created: HashMap<String, u64> = HashMap::new();
    let mut began = u64::MAX;
    let mut files = Vec::new();
    // Records whose segment file is gone: counted, so later positions and
    // the final size stay right; checkpoints past the first such gap cannot
    // be checked and are counted, not each reported.
    let mut missing: u64 = 0;
    let mut gap: Option<u64> = None;
    let mut unchecked: u64 = 0;
    let mut sealed_indices = std::collections::HashSet::new();
    for (first, path, retired) in segment_list(store).await? {
        report.segments += 1;
        let expected = acc.size().saturating_add(missing);
        if first != expected {
            if first > expected {
                report.problem(format!(
                    "{} is missing: records {expected}..={} ({}) deleted",
                    crate::archive::segment_name(expected),
                    first - 1,
                    first - expected
                ));
                missing = missing.saturating_add(first - expected);
                gap.get_or_insert(expected);
            } else {
                report.problem(format!(
                    "segment {path}: starts at record {first}, overlapping records already in the log (inserted)"
                ));
            }
        }
        let entries = if retired {
            match load_entries(store, &path, true).await {
                Ok(e) => e,
                Err(RetentionError::Corrupt(e)) => {
                    report.problem(format!("segment {e}"));
                    continue;
                }
                Err(e) => return Err(e),
            }
        } else {
            let bytes = store.get(&path).await?.bytes().await?;
            match parse_signed_segment(&bytes) {
                Ok((entries, signature)) => {
                    if let Some((sig, body)) = signature {
                        let statement = segment_statement(trusted.network, trusted.device, first, body);
                        if statement.verify(&trusted.signing_key, &sig).is_err() {
                            report.problem(format!(
                                "segment {path}: its signature does not verify (altered, or written by someone without this device's key)"
                            ));
                        }
                    }
                    entries
                }
                Err(e) => {
                    report.problem(format!("segment {path}: {e}"));
                    continue;
                }
            }
        };
        // Records are opened at the position their segment declares, so one
        // missing or extra entry is named precisely instead of every later
        // record failing; a one-step shift is recognised as such.
        let mut shift: i64 = 0;
        for (k, entry) in entries.iter().enumerate() {
            let index = acc.size().saturating_add(missing);
            let declared =
                (i64::try_from(first).unwrap_or(i64::MAX).saturating_add(k as i64).saturating_add(shift)).max(0) as u64;
            match entry {
                Entry::Sealed { salt, ciphertext } => {
                    let open = |at: u64| trusted.sealer.open(at, salt, ciphertext);
                    let found = if let Some(r) = open(declared) {
                        Some((declared, r))
                    } else if let Some(r) = open(declared + 1) {
                        report.problem(format!(
                            "record {declared} is missing from segment {path}: deleted (record {} follows directly)",
                            declared + 1
                        ));
                        shift += 1;
                        missing = missing.saturating_add(1);
                        gap.get_or_insert(declared);
                        Some((declared + 1, r))
                    } else if let Some(r) = declared.checked_sub(1).and_then(open) {
                        report.problem(format!(
                            "segment {path}, entry {k}: a second record {}: one of the two was inserted",
                            declared - 1
                        ));
                        shift -= 1;
                        Some((declared - 1, r))
                    } else {
                        report.problem(format!(
                            "record {declared} (segment {path}, entry {k}): does not authenticate at this position: altered or moved"
                        ));
                        None
                    };
                    if let Some((at, record)) = found {
                        sealed_indices.insert(at);
                        began = began.min(record.archived_at);
                        if let Some(days) = record.locked_days() {
                            report.worm_recorded_days = report.worm_recorded_days.max(Some(days));
                        }
                        if record.kind == "access" {
                            report.access_records += 1;
                            let what = record.control.as_ref().and_then(|c| c.get("action")).and_then(|a| a.as_str());
                            if record.actor.as_deref().is_none_or(|a| a.trim().is_empty()) || what.is_none() {
                                report.problem(format!("record {at}: an access record that does not say who or what"));
                            }
                        }
                        let handed = record.control.as_ref().filter(|c| {
                            record.kind == "handover" && c.get("action").and_then(|a| a.as_str()) == Some("handed_over")
                        });
                        if let Some(to) = handed.and_then(|c| c.get("to")).and_then(|t| t.as_array()) {
                            report.handed_over_to.extend(to.iter().filter_map(|d| d.as_str().map(str::to_owned)));
                        }
                        let creation = record
                            .control
                            .as_ref()
                            .is_some_and(|c| c.get("action").and_then(|a| a.as_str()) == Some("created"));
                        if let (true, "membership", Some(c), Some(t)) =
                            (creation, record.kind.as_str(), &record.conversation_id, record.sent_at)
                        {
                            created.insert(c.clone(), t);
                        }
                        if let (Some(c), Some(s)) = (&record.conversation_id, record.seq) {
                            seqs.entry(c.clone()).or_default().insert(s);
                        }
                        if let Some(id) = &record.message_id {
                            if let Some(prev) = seen_ids.insert(id.clone(), at) {
                                report.problem(format!(
                                    "record {at}: message {id} is archived twice (also record {prev})"
                                ));
                            }
                        }
                        for d in &record.deleted {
                            if let Some(leaf) = crate::unhex::<32>(&d.leaf) {
                                accounted.insert(d.index, leaf);
                            }
                            if let (Some(c), Some(s)) = (&d.conversation_id, d.seq) {
                                seqs.entry(c.clone()).or_default().insert(s);
                            }
                        }
                        if let Some(f) = record.file.filter(|f| f.stored) {
                            files.push((at, f));
                        }
                    }
                }
                Entry::Redacted(h) => {
                    report.deleted += 1;
                    deleted_leaves.insert(declared, *h);
                }
            }
            acc.push(entry.leaf(index));
            report.leaves.push(entry.leaf(index));
            if let Some(root) = checkpoints.get(&acc.size().saturating_add(missing)) {
                if gap.is_some() {
                    unchecked += 1;
                } else if Some(*root) != acc.root() {
                    report.problem(format!(
                        "checkpoint at size {}: the records do not match its root (altered, deleted, inserted or reordered at or before record {index})",
                        acc.size()
                    ));
                }
            }
        }
    }
    let total = acc.size().saturating_add(missing);
    report.checkpoint_roots = checkpoints.clone();
    if gap.is_some() {
        // Positions past the gap are unknown: no proof is built from them.
        report.leaves.clear();
    }
    report.records = total;
    report.root = if gap.is_some() { None } else { acc.root().map(|r| hex(&r)) };
    if let (Some(at), true) = (gap, unchecked > 0) {
        report.problem(format!(
            "{unchecked} signed checkpoint(s) after record {at} cannot be checked: they cover the missing records"
        ));
    }

    // On a WORM bucket a deleted record stays in its segment until every
    // record of the segment is deleted: counted, never read.
    report.deleted_kept = accounted.keys().filter(|i| sealed_indices.contains(*i)).count() as u64;
    for (index, leaf) in &deleted_leaves {
        if accounted.get(index) != Some(leaf) {
            report.problem(format!("record {index} was removed without a deletion record naming it"));
        }
    }
    match checkpoints.keys().next_back() {
        None if total > 0 => report.problem("no signed checkpoint: nothing in this archive is signed".into()),
        Some(last) if *last > total => report.problem(format!(
            "checkpoint at size {last} but the archive has only {total} records: records were deleted ({total}..={}, from {} on)",
            last - 1,
            crate::archive::segment_name(total)
        )),
        Some(last) if *last < total => report.problem(format!(
            "records {last}..{} come after the last signed checkpoint (appended by someone else, or the service stopped before signing; run it to sign)",
            total - 1
        )),
        _ => {}
    }
    report.conversations = seqs.len() as u64;
    report.sequences = seqs.clone();
    for (conversation, s) in &seqs {
        let Some(lo) = s.first() else { continue };
        // A skew's margin: a creator's clock a little ahead does not count.
        let after_start = created.get(conversation).is_some_and(|t| *t >= began.saturating_add(5 * 60_000));
        if *lo > 1 && after_start {
            report.problem(format!(
                "conversation {conversation}: sequence number(s) 1..={} missing at its start (it was created after this archive began, so every message was queued for it)",
                lo - 1
            ));
        }
        if let Some((count, a, b)) = gaps(s) {
            report.problem(format!(
                "conversation {conversation}: {count} sequence number(s) missing between {a} and {b}"
            ));
        }
    }
    if check_files {
        // A deleted record's file went with it (WORM: the record stays in
        // its locked segment, unread).
        for (index, f) in files.into_iter().filter(|(i, _)| !accounted.contains_key(i)) {
            report.files += 1;
            match store.get(&crate::archive::file_name(&f.blob_id)).await {
                Ok(got) => {
                    let bytes = got.bytes().await?;
                    let digest = aws_lc_rs::digest::digest(&aws_lc_rs::digest::SHA256, &bytes);
                    if hex(digest.as_ref()) != f.ciphertext_sha256 {
                        report.problem(format!("file {} (record {index}): its bytes were altered", f.blob_id));
                    }
                }
                Err(object_store::Error::NotFound { .. }) => {
                    report.problem(format!("file {} (record {index}) is missing", f.blob_id))
                }
                Err(e) => return Err(e.into()),
            }
        }
    }
    Ok(report)
}

#[cfg(test)]
mod tests {
    use super::*;
    use strongroom_crypto::ids::ConversationId;
    use strongroom_wire::{ConversationCoverage, RetentionCoverage};

    const C1: &str = "c1c1c1c1c1c1c1c1c1c1c1c1c1c1c1c1";

    fn report(archived: &[(&str, &[u64])]) -> VerifyReport {
        let mut r = VerifyReport::default();
        for (c, seqs) in archived {
            r.sequences.insert((*c).to_owned(), seqs.iter().copied().collect());
        }
        r
    }

    fn coverage(c: &str, first_seq: u64, last_seq: u64, count: u64, queued: u64) -> RetentionCoverage {
        RetentionCoverage {
            conversations: vec![ConversationCoverage {
                conversation_id: ConversationId::parse_hex(c).unwrap(),
                first_seq,
                last_seq,
                count,
                queued,
            }],
        }
    }

    #[test]
    fn gaps_are_counted_from_the_set_not_the_range() {
        assert_eq!(gaps(&[1, 2, 3].into()), None);
        assert_eq!(gaps(&[1, 4, 5, 9].into()), Some((5, 2, 8)));
        assert_eq!(gaps(&[1, u64::MAX].into()), Some((u64::MAX - 2, 2, u64::MAX - 1)), "no walk over 2^64");
    }

    #[test]
    fn two_archives_across_a_rotation_must_miss_nothing_between_them() {
        let mut old = report(&[(C1, &[1, 2, 3])]);
        old.handed_over_to = vec!["new".into()];
        let mut new = report(&[(C1, &[4, 5])]);
        new.merge_predecessor(&old, "new");
        assert!(new.ok(), "{:?}", new.problems);
        let mut gap = report(&[(C1, &[6, 7])]);
        gap.merge_predecessor(&old, "new");
        assert!(
            gap.problems[0].contains("2 sequence number(s) between 1 and 7 are in neither archive"),
            "{:?}",
            gap.problems
        );
        let mut not_to_me = report(&[(C1, &[4])]);
        not_to_me.merge_predecessor(&old, "someone else");
        assert!(not_to_me.problems[0].contains("records no handover"), "{:?}", not_to_me.problems);
        old.problem("record 9 was altered".into());
        let mut inherited = report(&[(C1, &[4])]);
        inherited.merge_predecessor(&old, "new");
        assert_eq!(inherited.problems, ["predecessor archive: record 9 was altered"]);
    }

    #[test]
    fn everything_archived_or_still_queued_is_fine() {
        let mut r = report(&[(C1, &[1, 2, 3])]);
        r.compare_with_relay(&coverage(C1, 1, 5, 5, 2));
        assert!(r.ok(), "{:?}", r.problems);
        assert_eq!((r.relay_checked, r.relay_pending), (true, 2));
    }

    #[test]
    fn a_drained_queue_is_named() {
        // Nothing archived, nothing queued: all five left the queue unarchived.
        let mut r = report(&[]);
        r.compare_with_relay(&coverage(C1, 1, 5, 5, 0));
        assert_eq!(r.problem_count, 1);
        assert!(r.problems[0].contains(C1) && r.problems[0].contains("5 message(s) never reached"), "{:?}", r.problems);
        // A tail: three archived, two gone.
        let mut r = report(&[(C1, &[1, 2, 3])]);
        r.compare_with_relay(&coverage(C1, 1, 5, 5, 0));
        assert!(r.problems[0].contains("2 message(s) never reached"), "{:?}", r.problems);
    }

    #[test]
    fn archived_seqs_outside_the_relays_range_do_not_count() {
        // Seqs 1-3 came before this device was named; the relay queued 4..=6 for it.
        let mut r = report(&[(C1, &[1, 2, 3])]);
        r.compare_with_relay(&coverage(C1, 4, 6, 3, 0));
        assert!(r.problems[0].contains("3 message(s) never reached"), "{:?}", r.problems);
    }

    #[test]
    fn an_impossible_relay_answer_is_a_problem_not_a_panic() {
        let mut r = report(&[(C1, &[1])]);
        r.compare_with_relay(&coverage(C1, 9, 3, 1, 0));
        r.compare_with_relay(&coverage(C1, 1, 2, 5, 0));
        // At the very end of the range: a plain (valid) report of one loss.
        r.compare_with_relay(&coverage(C1, u64::MAX, u64::MAX, 1, 0));
        assert_eq!(r.problem_count, 3, "{:?}", r.problems);
        assert!(r.problems[0].contains("impossible") && r.problems[1].contains("impossible"));
        assert!(r.problems[2].contains("1 message(s) never reached"));
    }

    #[test]
    fn gaps_the_relay_never_queued_are_not_blamed() {
        // Retention was off between seq 2 and 5: the relay queued 4 of 1..=6.
        let mut r = report(&[(C1, &[1, 2, 5, 6])]);
        r.compare_with_relay(&coverage(C1, 1, 6, 4, 0));
        assert!(r.ok(), "{:?}", r.problems);
    }
}
