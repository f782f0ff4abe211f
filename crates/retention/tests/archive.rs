//! The archive against tampering: a flipped byte, a deleted record, an
//! inserted one (even by someone holding the archive key), two reordered,
//! a removed segment, a forged checkpoint and an unrecorded deletion are
//! each caught with a precise message; purges under holds keep it provable.
#![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic, clippy::indexing_slicing)]

use std::path::{Path, PathBuf};

use rand_core::OsRng;
use strongroom_crypto::ids::{DeviceId, NetworkId};
use strongroom_crypto::keys::{SecretBytes, SigningKey};
use strongroom_retention::archive::{destination, encode_segment, parse_segment, Archive, Sealer};
use strongroom_retention::holds;
use strongroom_retention::record::{Hold, Party, Record};
use strongroom_retention::search::{search, Filter};
use strongroom_retention::verify::{verify, Trusted, VerifyReport};

struct Fixture {
    dir: PathBuf,
    key: SecretBytes<32>,
    seed: [u8; 32],
    network: NetworkId,
    device: DeviceId,
}

fn record(i: u64, conversation: u8, seq: u64, sent_at: u64) -> Record {
    let party = |n: &str, b: u8| Party { user_id: format!("{b:032x}"), username: n.into(), ..Party::default() };
    Record {
        kind: "text".into(),
        archived_at: sent_at,
        conversation_id: Some(format!("{conversation:032x}")),
        seq: Some(seq),
        message_id: Some(format!("{:032x}", 1000 + i)),
        sender: Some(party("alice", 1)),
        recipients: vec![party("alice", 1), party(if conversation == 1 { "bob" } else { "carol" }, conversation + 1)],
        sent_at: Some(sent_at),
        text: Some(format!("message {i}")),
        ..Record::default()
    }
}

impl Fixture {
    /// Three segments of five records: conversation 1 (seq 1..=10) and 2 (seq 1..=5).
    async fn new(tag: &str) -> Self {
        let dir = std::env::temp_dir().join(format!(
            "sr-archive-{tag}-{}-{}",
            std::process::id(),
            rand_core::RngCore::next_u64(&mut OsRng)
        ));
        let f = Self {
            dir,
            key: SecretBytes::random(&mut OsRng),
            seed: *SigningKey::generate(&mut OsRng).expose_seed().expose(),
            network: NetworkId::from_bytes([7; 16]),
            device: DeviceId::from_bytes([8; 16]),
        };
        let mut a = f.open().await;
        for s in 0..3u64 {
            let recs: Vec<Record> = (0..5u64)
                .map(|k| {
                    let i = s * 5 + k;
                    if i < 10 {
                        record(i, 1, i + 1, 1_000 + i)
                    } else {
                        record(i, 2, i - 9, 1_000 + i)
                    }
                })
                .collect();
            a.append(&recs).await.unwrap();
        }
        f
    }

    async fn open(&self) -> Archive {
        let signer = SigningKey::from_seed(SecretBytes::new(self.seed)).unwrap();
        Archive::open(destination(self.dir.to_str().unwrap()).unwrap(), &self.key, signer, self.network, self.device)
            .await
            .unwrap()
    }

    async fn verify(&self) -> VerifyReport {
        let sealer = Sealer::new(&self.key, self.network, self.device).unwrap();
        let signing_key = SigningKey::from_seed(SecretBytes::new(self.seed)).unwrap().verifying_key();
        let trusted = Trusted { network: self.network, device: self.device, signing_key, sealer: &sealer };
        verify(destination(self.dir.to_str().unwrap()).unwrap().as_ref(), &trusted, true).await.unwrap()
    }

    fn segment(&self, first: u64) -> PathBuf {
        self.dir.join(format!("segments/{first:016}.seg"))
    }
}

fn has(report: &VerifyReport, needle: &str) -> bool {
    report.problems.iter().any(|p| p.contains(needle))
}

fn edit_segment(path: &Path, f: impl FnOnce(&mut Vec<strongroom_retention::archive::Entry>)) {
    let mut entries = parse_segment(&std::fs::read(path).unwrap()).unwrap();
    f(&mut entries);
    std::fs::write(path, encode_segment(&entries)).unwrap();
}

#[tokio::test]
async fn an_intact_archive_verifies() {
    let f = Fixture::new("intact").await;
    let r = f.verify().await;
    assert!(r.ok(), "{:?}", r.problems);
    assert_eq!((r.records, r.segments, r.checkpoints, r.conversations), (15, 3, 3, 2));
    // Reopening rebuilds the same log and knows what it holds.
    let a = f.open().await;
    assert_eq!(a.size(), 15);
    assert!(a.contains(&[0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0x03, 0xe8]));
}

#[tokio::test]
async fn a_flipped_byte_is_caught() {
    let f = Fixture::new("flip").await;
    let path = f.segment(5);
    let mut bytes = std::fs::read(&path).unwrap();
    let at = bytes.len() / 2;
    bytes[at] ^= 0x20;
    std::fs::write(&path, bytes).unwrap();
    let r = f.verify().await;
    assert!(!r.ok());
    assert!(has(&r, "does not authenticate at this position"), "{:?}", r.problems);
    assert!(has(&r, "checkpoint at size 10: the records do not match its root"), "{:?}", r.problems);
}

#[tokio::test]
async fn a_deleted_record_is_caught() {
    let f = Fixture::new("delete").await;
    edit_segment(&f.segment(5), |e| {
        e.remove(2);
    });
    let r = f.verify().await;
    assert!(has(&r, "record 7 is missing from segment segments/0000000000000005.seg: deleted"), "{:?}", r.problems);
    // Counted once: the next segment still starts where it should, and the
    // later checkpoint is not blamed for it again.
    assert!(!has(&r, "segments/0000000000000010.seg"), "{:?}", r.problems);
    assert!(has(&r, "2 signed checkpoint(s) after record 7 cannot be checked"), "{:?}", r.problems);
    assert!(!has(&r, "record 12"), "later records are not blamed: {:?}", r.problems);
    assert!(
        has(&r, "conversation 00000000000000000000000000000001: 1 sequence number(s) missing between 8 and 8"),
        "{:?}",
        r.problems
    );
}

#[tokio::test]
async fn an_inserted_record_is_caught_even_with_the_archive_key() {
    let f = Fixture::new("insert").await;
    // Someone with the archive key (not the signing key) forges a valid-looking record.
    let sealer = Sealer::new(&f.key, f.network, f.device).unwrap();
    let forged = sealer.seal(7, &record(99, 1, 11, 1_007)).unwrap();
    edit_segment(&f.segment(5), |e| e.insert(2, forged));
    let r = f.verify().await;
    assert!(!r.ok());
    assert!(has(&r, "overlapping records already in the log (inserted)"), "{:?}", r.problems);
    assert!(
        has(&r, "segment segments/0000000000000005.seg, entry 3: a second record 7: one of the two was inserted"),
        "{:?}",
        r.problems
    );
    assert!(has(&r, "checkpoint at size 10: the records do not match its root"), "{:?}", r.problems);
}

#[tokio::test]
async fn two_reordered_records_are_caught() {
    let f = Fixture::new("reorder").await;
    edit_segment(&f.segment(0), |e| e.swap(1, 3));
    let r = f.verify().await;
    assert!(
        has(&r, "record 1 (segment segments/0000000000000000.seg, entry 1): does not authenticate at this position"),
        "{:?}",
        r.problems
    );
    assert!(has(&r, "record 3 (segment segments/0000000000000000.seg, entry 3)"), "{:?}", r.problems);
    assert!(has(&r, "checkpoint at size 5"), "{:?}", r.problems);
}

#[tokio::test]
async fn a_removed_segment_or_forged_checkpoint_is_caught() {
    let f = Fixture::new("segment").await;
    std::fs::remove_file(f.segment(10)).unwrap();
    let r = f.verify().await;
    assert!(
        has(&r, "checkpoint at size 15 but the archive has only 10 records: records were deleted"),
        "{:?}",
        r.problems
    );

    // A segment from the middle: one problem naming the missing file, not
    // one per later record and checkpoint.
    let m = Fixture::new("middle").await;
    std::fs::remove_file(m.segment(5)).unwrap();
    let r = m.verify().await;
    assert!(has(&r, "segments/0000000000000005.seg is missing: records 5..=9 (5) deleted"), "{:?}", r.problems);
    assert!(r.problem_count <= 2, "{:?}", r.problems);

    // A segment renamed to the largest index: named, counted, no overflow.
    let huge = Fixture::new("huge").await;
    std::fs::rename(huge.segment(10), huge.dir.join(format!("segments/{}.seg", u64::MAX))).unwrap();
    let r = huge.verify().await;
    assert!(!r.ok() && has(&r, "segments/0000000000000010.seg is missing"), "{:?}", r.problems);

    let g = Fixture::new("forged").await;
    let path = g.dir.join("checkpoints/0000000000000015.ckpt");
    let mut cp = std::fs::read(&path).unwrap();
    cp[10] ^= 1; // the root
    std::fs::write(&path, cp).unwrap();
    let r = g.verify().await;
    assert!(has(&r, "checkpoint at size 15: the signature does not verify"), "{:?}", r.problems);
}

#[tokio::test]
async fn purge_respects_holds_and_keeps_the_log_provable() {
    let f = Fixture::new("purge").await;
    let mut a = f.open().await;
    holds::place(
        &mut a,
        Hold { name: "inquiry".into(), conversation_id: Some(format!("{:032x}", 2)), ..Hold::default() },
    )
    .await
    .unwrap();
    assert!(
        holds::place(&mut a, Hold { name: "inquiry".into(), ..Hold::default() }).await.is_err(),
        "names are unique"
    );
    // Period 1 day, "now" far in the future: every message is past it.
    let report = holds::purge(&mut a, &holds::Periods::uniform(1), 10 * 86_400_000).await.unwrap();
    assert_eq!((report.deleted, report.held), (10, 5));
    let r = f.verify().await;
    assert!(r.ok(), "deletions are recorded, so the rest still verifies: {:?}", r.problems);
    assert_eq!(r.deleted, 10);
    let left = search(&a, &Filter::default()).await.unwrap();
    assert_eq!(left.iter().filter(|(_, r)| r.is_message()).count(), 5, "only held messages remain");
    assert!(left.iter().any(|(_, r)| r.kind == "deletion" && r.deleted.len() == 10));

    // A record removed some other way (no deletion record) is caught.
    edit_segment(&f.segment(10), |e| {
        let leaf = e[0].leaf(10);
        e[0] = strongroom_retention::archive::Entry::Redacted(leaf);
    });
    let r = f.verify().await;
    assert!(has(&r, "record 10 was removed without a deletion record naming it"), "{:?}", r.problems);

    // Releasing the hold lets the next purge take the rest.
    let mut a = f.open().await;
    holds::release(&mut a, "inquiry").await.unwrap();
    assert!(holds::active(&a).await.unwrap().is_empty());
}

#[tokio::test]
async fn search_filters() {
    let f = Fixture::new("search").await;
    let a = f.open().await;
    let by_text = search(&a, &Filter { text: Some("MESSAGE 12".into()), ..Filter::default() }).await.unwrap();
    assert_eq!(by_text.len(), 1);
    assert_eq!(by_text[0].0, 12);
    let by_user = search(&a, &Filter { user: Some("carol".into()), ..Filter::default() }).await.unwrap();
    assert_eq!(by_user.len(), 5);
    let by_time = search(&a, &Filter { from: Some(1_003), until: Some(1_006), ..Filter::default() }).await.unwrap();
    assert_eq!(by_time.iter().map(|(i, _)| *i).collect::<Vec<_>>(), vec![3, 4, 5]);
    let by_conv = search(&a, &Filter { conversation: Some(format!("{:032x}", 1)), ..Filter::default() }).await.unwrap();
    assert_eq!(by_conv.len(), 10);
}

#[tokio::test]
async fn the_relay_may_lengthen_a_period_never_shorten_it_and_the_signed_floor_wins() {
    let f = Fixture::new("periods").await;
    let mut a = f.open().await;
    // Bob (0x02) sends two late records; Alice (0x01) sent the fixture's.
    let bob = |i: u64, seq: u64| {
        let mut r = record(i, 1, seq, 1_000 + i);
        r.sender = Some(Party { user_id: format!("{:032x}", 2), username: "bob".into(), ..Party::default() });
        r
    };
    a.append(&[bob(20, 11), bob(21, 12)]).await.unwrap();
    let day = 86_400_000;
    // The relay (unsigned) says 1 day for everyone and 10 for bob's group;
    // the operator runs with 30: nothing goes before 30 days.
    let mut periods = holds::Periods { default_days: Some(30), network_days: 1, ..holds::Periods::default() };
    periods.users.insert(format!("{:032x}", 2), 10);
    assert_eq!(periods.for_record(&bob(0, 1)), Some(30));
    assert_eq!(periods.for_record(&record(0, 1, 1, 0)), Some(30));
    let report = holds::purge(&mut a, &periods, 20 * day).await.unwrap();
    assert_eq!(report.deleted, 0, "a relay setting cannot shorten the operator's period");
    // Without an operator period, the relay's alone deletes nothing.
    let relay_only = holds::Periods { network_days: 1, ..holds::Periods::default() };
    assert_eq!(relay_only.for_record(&record(0, 1, 1, 0)), None);
    assert_eq!(holds::purge(&mut a, &relay_only, 400 * day).await.unwrap().deleted, 0);
    // The relay may lengthen it: bob's group keeps 60 days.
    periods.users.insert(format!("{:032x}", 2), 60);
    assert_eq!(periods.for_record(&bob(0, 1)), Some(60));
    // The signed floor (say 7 years) beats a zero-day operator period.
    let floored = holds::Periods { default_days: Some(0), floor_days: Some(2_555), ..holds::Periods::default() };
    assert_eq!(holds::purge(&mut a, &floored, 2_000 * day).await.unwrap().deleted, 0, "below the floor");
    // 40 days on: everyone's 30 has passed but bob's 60 has not.
    let report = holds::purge(&mut a, &periods, 40 * day).await.unwrap();
    assert_eq!(report.deleted, 15);
    let r = f.verify().await;
    assert!(r.ok(), "{:?}", r.problems);
    let report = holds::purge(&mut a, &periods, 70 * day).await.unwrap();
    assert_eq!(report.deleted, 2);
    let deletion = search(&a, &Filter::default()).await.unwrap().into_iter().rev().find(|(_, r)| r.kind == "deletion");
    let reason = deletion.unwrap().1.reason.unwrap();
    assert!(reason.contains("operator period of 30 days"), "{reason}");
}

#[tokio::test]
async fn a_back_dated_message_is_kept_for_its_period_from_when_the_relay_took_it() {
    let f = Fixture::new("backdated").await;
    let mut a = f.open().await;
    let day = 86_400_000;
    let now = 5_000 * day;
    // Sent "3,000 days ago" by the sender's clock, taken by the relay today.
    let mut r = record(30, 3, 1, now - 3_000 * day);
    r.relay_received_at = Some(now);
    r.archived_at = now;
    r.sent_at_behind_ms = Some(3_000 * day);
    a.append(&[r.clone()]).await.unwrap();
    assert_eq!(r.retention_clock(), now);
    let report = holds::purge(&mut a, &holds::Periods::uniform(2_555), now + day).await.unwrap();
    assert_eq!(report.deleted, 15, "the fixture's old records go; the back-dated one stays");
    let left = search(&a, &Filter { conversation: Some(format!("{:032x}", 3)), ..Filter::default() }).await.unwrap();
    assert_eq!(left.len(), 1);
    // A hold on the sender's claimed time range still covers it, and so does
    // one on when the relay took it.
    let claimed =
        Hold { name: "x".into(), from: Some(now - 3_001 * day), until: Some(now - 2_999 * day), ..Hold::default() };
    let received = Hold { name: "y".into(), from: Some(now - day), until: Some(now + day), ..Hold::default() };
    let elsewhere = Hold { name: "z".into(), from: Some(day), until: Some(2 * day), ..Hold::default() };
    assert!(claimed.covers(&r) && received.covers(&r) && !elsewhere.covers(&r));
    // 2,555 days after the relay took it, it is due.
    let report = holds::purge(&mut a, &holds::Periods::uniform(2_555), now + 2_556 * day).await.unwrap();
    assert_eq!(report.deleted, 1);
}

#[tokio::test]
async fn the_same_archive_works_on_object_storage() {
    // object_store's in-memory backend: what s3:// destinations go through.
    let store = destination("memory:").unwrap();
    let key = SecretBytes::<32>::random(&mut OsRng);
    let seed = *SigningKey::generate(&mut OsRng).expose_seed().expose();
    let (network, device) = (NetworkId::from_bytes([1; 16]), DeviceId::from_bytes([2; 16]));
    let signer = SigningKey::from_seed(SecretBytes::new(seed)).unwrap();
    let mut a = Archive::open(store.clone(), &key, signer, network, device).await.unwrap();
    a.append(&(0..10).map(|i| record(i, 1, i + 1, 1_000 + i)).collect::<Vec<_>>()).await.unwrap();
    let sealer = Sealer::new(&key, network, device).unwrap();
    let signing_key = SigningKey::from_seed(SecretBytes::new(seed)).unwrap().verifying_key();
    let r = verify(store.as_ref(), &Trusted { network, device, signing_key, sealer: &sealer }, true).await.unwrap();
    assert!(r.ok(), "{:?}", r.problems);
    assert_eq!(r.records, 10);
    // Reopening replays it from the store.
    let again = Archive::open(store, &key, SigningKey::from_seed(SecretBytes::new(seed)).unwrap(), network, device)
        .await
        .unwrap();
    assert_eq!(again.size(), 10);
}

#[tokio::test]
async fn messages_missing_at_the_start_of_a_conversation_created_after_the_archive_began_are_named() {
    let f = Fixture::new("start-gap").await;
    let mut a = f.open().await;
    let creation = |conversation: u8, at: u64| Record {
        kind: "membership".into(),
        archived_at: at,
        conversation_id: Some(format!("{conversation:032x}")),
        message_id: Some(format!("{:032x}", 9_000 + u64::from(conversation))),
        sent_at: Some(at),
        control: Some(serde_json::json!({"action": "created", "sequence": 1})),
        ..Record::default()
    };
    let minutes = 60_000;
    // Conversation 3 was created an hour after the archive began: its first
    // two messages never arrived. Conversation 4 predates the archive.
    a.append(&[
        creation(3, 1_000 + 60 * minutes),
        record(40, 3, 3, 1_000 + 61 * minutes),
        record(41, 3, 4, 1_000 + 62 * minutes),
        creation(4, 0),
        record(42, 4, 7, 1_000 + 63 * minutes),
    ])
    .await
    .unwrap();
    let r = f.verify().await;
    assert!(
        has(&r, "conversation 00000000000000000000000000000003: sequence number(s) 1..=2 missing at its start"),
        "{:?}",
        r.problems
    );
    assert_eq!(r.problem_count, 1, "conversation 4 began before the archive: {:?}", r.problems);
}

#[tokio::test]
async fn a_witness_catches_deleted_newest_records_and_a_rewritten_log() {
    use strongroom_retention::archive::{witness_checkpoint_name, StoredCheckpoint};
    let f = Fixture::new("witness").await;
    let wdir = f.dir.with_extension("witness");
    let witness = destination(wdir.to_str().unwrap()).unwrap();
    let mut a = f.open().await;
    a.set_witness(witness.clone()).await.unwrap();
    a.append(&[record(20, 2, 6, 2_000), record(21, 2, 7, 2_001)]).await.unwrap();
    let at = |n: u64| wdir.join(format!("{}/checkpoints/{n:016}.ckpt", f.device));
    assert!(at(15).exists() && at(17).exists());
    let check = |f: &Fixture| {
        let witness = witness.clone();
        let (key, seed, network, device, dir) = (f.key.expose().to_owned(), f.seed, f.network, f.device, f.dir.clone());
        async move {
            let sealer = Sealer::new(&SecretBytes::new(key), network, device).unwrap();
            let signing_key = SigningKey::from_seed(SecretBytes::new(seed)).unwrap().verifying_key();
            let trusted = Trusted { network, device, signing_key, sealer: &sealer };
            let mut r = verify(destination(dir.to_str().unwrap()).unwrap().as_ref(), &trusted, true).await.unwrap();
            r.compare_with_witness(witness.as_ref(), &trusted).await.unwrap();
            r
        }
    };
    let r = check(&f).await;
    assert!(r.ok() && r.witness_checked && r.witness_size == Some(17), "{:?}", r.problems);

    // The newest segment and its checkpoint deleted: the archive alone
    // still verifies, the witness does not agree.
    std::fs::remove_file(f.segment(15)).unwrap();
    std::fs::remove_file(f.dir.join("checkpoints/0000000000000017.ckpt")).unwrap();
    assert!(f.verify().await.ok(), "undetectable from the archive alone");
    let r = check(&f).await;
    assert!(
        has(&r, "the witness holds a signed checkpoint at size 17, newer than the archive's newest (15)"),
        "{:?}",
        r.problems
    );

    // Cut back and grown again past the old size (a restart appending new
    // records): the witness's checkpoint at 17 no longer matches.
    let mut a = f.open().await;
    a.set_witness(witness.clone()).await.unwrap();
    a.append(&[record(22, 2, 6, 3_000), record(23, 2, 7, 3_001), record(24, 2, 8, 3_002)]).await.unwrap();
    let r = check(&f).await;
    assert!(
        has(&r, "the witness's checkpoint at size 17 does not match the archive's first 17 records"),
        "{:?}",
        r.problems
    );
    // And the witness never lets a checkpoint of a size it holds be replaced.
    drop(a);
    std::fs::remove_file(f.segment(15)).unwrap();
    std::fs::remove_file(f.dir.join("checkpoints/0000000000000018.ckpt")).unwrap();
    let mut a = f.open().await;
    a.set_witness(witness.clone()).await.unwrap();
    let refused = a.append(&[record(25, 2, 6, 4_000), record(26, 2, 7, 4_001), record(27, 2, 8, 4_002)]).await;
    assert!(refused.unwrap_err().to_string().contains("the witness already holds a different checkpoint"));
    drop(a);

    // An insider with the keys rewrites the log and signs new checkpoints:
    // the witness's root from before has no consistency proof to them.
    let signer = SigningKey::from_seed(SecretBytes::new(f.seed)).unwrap();
    let mut forged = StoredCheckpoint {
        tree_size: 12,
        root: [9; 32],
        timestamp: 1,
        signature: strongroom_crypto::keys::Signature::from_bytes([0; 64]),
    };
    forged.signature = forged.statement(f.network, f.device).sign(&signer);
    std::fs::remove_dir_all(&wdir).unwrap();
    witness.put(&witness_checkpoint_name(f.device, 12), forged.encode().into()).await.unwrap();
    let r = check(&f).await;
    assert!(
        has(&r, "no consistency proof links the witness's checkpoint at size 12 to the archive's"),
        "{:?}",
        r.problems
    );
}

#[tokio::test]
async fn an_offline_purge_needs_the_floor_recorded_not_an_older_files_silence() {
    use strongroom_retention::archive::{policy_floor, save_policy_seen};
    let store = destination("memory:").unwrap();
    assert!(policy_floor(store.as_ref()).await.is_err(), "never ran");
    // As an older release wrote it: no word on the floor.
    let old = format!(r#"{{"version":3,"digest":"{}"}}"#, "ab".repeat(32));
    store.put(&"policy-seen.json".into(), old.into_bytes().into()).await.unwrap();
    let e = policy_floor(store.as_ref()).await.unwrap_err().to_string();
    assert!(e.contains("has not recorded the network policy's retention floor"), "{e}");
    save_policy_seen(store.as_ref(), (3, [0xab; 32]), Some(2_555)).await.unwrap();
    assert_eq!(policy_floor(store.as_ref()).await.unwrap(), Some(2_555));
    save_policy_seen(store.as_ref(), (4, [0xcd; 32]), None).await.unwrap();
    assert_eq!(policy_floor(store.as_ref()).await.unwrap(), None, "recorded: no floor");
}

#[tokio::test]
async fn a_directory_archive_is_fsynced_before_append_returns() {
    let f = Fixture::new("fsync").await;
    let mut a = f.open().await;
    a.append(&[record(30, 3, 1, 5_000)]).await.unwrap();
    assert_eq!(a.synced(), 0, "not asked to");
    a.fsync_in(f.dir.clone());
    a.append(&[record(31, 3, 2, 5_001)]).await.unwrap();
    // The segment and its directory, the checkpoint and its directory.
    assert_eq!(a.synced(), 4);
    assert_eq!(strongroom_retention::archive::local_dir(f.dir.to_str().unwrap()), Some(f.dir.clone()));
    assert_eq!(strongroom_retention::archive::local_dir("s3://bucket/x"), None);
    assert_eq!(strongroom_retention::archive::local_dir("memory:"), None);
    // A file that cannot be synced (its directory gone) is an error, not a silent success.
    let mut b = f.open().await;
    b.fsync_in(f.dir.join("no-such-dir"));
    let e = b.append(&[record(32, 3, 3, 5_002)]).await.unwrap_err();
    assert!(e.to_string().contains("no-such-dir"), "{e}");
}

#[tokio::test]
async fn two_writers_never_overwrite_each_others_records() {
    // The running service and a `hold place` (or purge) beside it.
    let f = Fixture::new("two-writers").await;
    let mut service = f.open().await;
    let mut admin = f.open().await;
    service.append(&[record(40, 3, 1, 6_000)]).await.unwrap();
    holds::place(&mut admin, Hold { name: "beside the service".into(), ..Hold::default() }).await.unwrap();
    service.append(&[record(41, 3, 2, 6_001)]).await.unwrap();
    let r = f.verify().await;
    assert!(r.ok(), "{:?}", r.problems);
    assert_eq!(r.records, 18);
    let all = search(&f.open().await, &Filter::default()).await.unwrap();
    let texts: Vec<String> = all.iter().filter_map(|(_, r)| r.text.clone()).collect();
    assert!(texts.contains(&"message 40".to_owned()) && texts.contains(&"message 41".to_owned()), "{texts:?}");
    assert!(all.iter().any(|(_, r)| r.kind == "hold"), "the hold is kept too");
}

#[tokio::test]
async fn an_access_record_must_say_who_and_what() {
    let f = Fixture::new("access").await;
    let mut a = f.open().await;
    a.append(&[Record::access("export", "records.officer", Some("FOIA 2026-7"), serde_json::json!({"results": 3}))])
        .await
        .unwrap();
    let r = f.verify().await;
    assert!(r.ok() && r.access_records == 1, "{:?}", r.problems);
    let nameless = Record { actor: None, ..Record::access("search", "", None, serde_json::json!({})) };
    a.append(&[nameless]).await.unwrap();
    let r = f.verify().await;
    assert!(has(&r, "an access record that does not say who or what"), "{:?}", r.problems);
    let all = search(&a, &Filter::default()).await.unwrap();
    assert!(all.iter().all(|(_, r)| r.kind != "access"), "searches never return the access log");
}

/// Someone with the archive key alone (a reader, or a thief of the key)
/// seals a deletion record into a new segment: the device will not take it
/// as its own (it is not signed), so it neither hides the records it names
/// nor signs a checkpoint over it, and verify names it.
#[tokio::test]
async fn a_segment_sealed_with_the_archive_key_alone_is_refused() {
    let f = Fixture::new("forged-tail").await;
    let sealer = Sealer::new(&f.key, f.network, f.device).unwrap();
    let forged = Record {
        kind: "deletion".into(),
        archived_at: 2_000,
        deleted: vec![strongroom_retention::record::Deleted {
            index: 3,
            leaf: "00".repeat(32),
            conversation_id: None,
            seq: None,
            statement: None,
        }],
        ..Record::default()
    };
    std::fs::write(f.segment(15), encode_segment(&[sealer.seal(15, &forged).unwrap()])).unwrap();
    let signer = SigningKey::from_seed(SecretBytes::new(f.seed)).unwrap();
    let store = destination(f.dir.to_str().unwrap()).unwrap();
    let err = Archive::open(store.clone(), &f.key, signer, f.network, f.device).await.err().unwrap();
    assert!(err.to_string().contains("is not signed by this retention device"), "{err}");
    assert!(!f.dir.join("checkpoints/0000000000000016.ckpt").exists(), "signed a checkpoint over it");
    let r = f.verify().await;
    assert!(has(&r, "come after the last signed checkpoint"), "{:?}", r.problems);

    // Signed, but by another key: verify says the signature is wrong.
    let mut bytes = encode_segment(&[sealer.seal(15, &forged).unwrap()]);
    let other = SigningKey::generate(&mut OsRng);
    let sig = strongroom_retention::archive::segment_statement(f.network, f.device, 15, &bytes).sign(&other);
    bytes.push(3);
    bytes.extend_from_slice(sig.as_bytes());
    std::fs::write(f.segment(15), &bytes).unwrap();
    let signer = SigningKey::from_seed(SecretBytes::new(f.seed)).unwrap();
    assert!(Archive::open(store.clone(), &f.key, signer, f.network, f.device).await.is_err());
    let r = f.verify().await;
    assert!(has(&r, "segments/0000000000000015.seg: its signature does not verify"), "{:?}", r.problems);

    // An old checkpoint copied under a larger size does not vouch for it either.
    std::fs::copy(f.dir.join("checkpoints/0000000000000015.ckpt"), f.dir.join("checkpoints/0000000000000016.ckpt"))
        .unwrap();
    let signer = SigningKey::from_seed(SecretBytes::new(f.seed)).unwrap();
    let err = Archive::open(store, &f.key, signer, f.network, f.device).await.err().unwrap();
    assert!(err.to_string().contains("is not signed by this retention device"), "{err}");
}

/// A batch retried after its segment landed (the write returned an error
/// afterwards: a replica, an fsync, a timeout) is not archived twice.
#[tokio::test]
async fn a_retried_append_after_its_segment_landed_archives_nothing_twice() {
    let f = Fixture::new("retry").await;
    // `stale` has not seen the segment its own earlier try wrote.
    let mut stale = f.open().await;
    let mut first_try = f.open().await;
    let batch: Vec<Record> = (15..18u64).map(|i| record(i, 2, i - 9, 2_000 + i)).collect();
    first_try.append(&batch).await.unwrap();
    stale.append(&batch).await.unwrap();
    assert_eq!(stale.size(), 18);
    let r = f.verify().await;
    assert!(r.ok(), "{:?}", r.problems);
    assert_eq!(r.records, 18, "nothing archived twice");
}
