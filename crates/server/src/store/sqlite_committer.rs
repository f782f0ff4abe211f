//! The group committer on a SQLite file: one native connection on a thread
//! of its own. Through sqlx every statement was a hop to a worker thread and
//! back, multi-row statements of varying size were parsed again each time,
//! and eight pooled connections taking turns to write kept invalidating each
//! other's page caches (each read its pages back from the file). Here the
//! statements are prepared once, and the connection's cache stays warm: it
//! writes the message tables and nothing else does on the hot path.
//!
//! It takes the store's writer lock for each group like every other writer,
//! commits with `synchronous=FULL`, hands the committed rows to the sink and
//! answers each job exactly like the sqlx committer (`messages.rs`).

use std::collections::HashMap;
use std::path::Path;

use rusqlite::{params, Connection, OpenFlags, OptionalExtension, Transaction, TransactionBehavior};

use super::messages::{
    answer, coverage, deliver, fresh_by_conversation, next_group, outcomes, split, tombstone, AckJob, EnvelopeJob, Job,
    Known, QueueIds,
};
use super::{Store, StoreError, StoreOutcome};

/// Opens the committer's connection to the migrated database file the
/// pool opened (`file`, as SQLite itself names it).
pub(super) fn open(file: &Path) -> Result<Connection, StoreError> {
    let conn = Connection::open_with_flags(file, OpenFlags::SQLITE_OPEN_READ_WRITE | OpenFlags::SQLITE_OPEN_NO_MUTEX)?;
    conn.busy_timeout(std::time::Duration::from_secs(10))?;
    let mode: String = conn.query_row("PRAGMA journal_mode=WAL", [], |r| r.get(0))?;
    if !mode.eq_ignore_ascii_case("wal") {
        return Err(StoreError::Corrupt("the database would not switch to write-ahead logging"));
    }
    conn.execute_batch("PRAGMA synchronous=FULL; PRAGMA foreign_keys=ON;")?;
    // Checkpoints run beside the writer (`Store::checkpoint_soon`).
    let _: i64 = conn.query_row("PRAGMA wal_autocheckpoint=0", [], |r| r.get(0))?;
    // The writer that starts the log over cuts its file back (`checkpoint.rs`).
    let _: i64 =
        conn.query_row(&format!("PRAGMA journal_size_limit={}", super::checkpoint::LOG_SIZE_LIMIT), [], |r| r.get(0))?;
    // A group into a big room dirties the queue's per-device index on a leaf
    // per few devices: hundreds of pages per message. SQLite's default 2 MB
    // cache evicted pages each group then read back from the log. This
    // connection writes the message tables and nothing else does on the hot
    // path, so what it keeps stays valid (a write elsewhere starts it over).
    conn.execute_batch(&format!("PRAGMA cache_size=-{};", CACHE_KIB))?;
    conn.set_prepared_statement_cache_capacity(32);
    Ok(conn)
}

/// The committer's page cache (KiB): grows only as far as pages are used.
const CACHE_KIB: u32 = 64 * 1024;

/// The running committer: [`Running::stop`] lets it finish what is queued,
/// closes its connection and waits for its thread.
pub(super) struct Running {
    stop: tokio::sync::oneshot::Sender<()>,
    thread: std::thread::JoinHandle<()>,
}

impl Running {
    pub(super) async fn stop(self) {
        let _ = self.stop.send(());
        let thread = self.thread;
        let _ = tokio::task::spawn_blocking(move || thread.join()).await;
    }
}

/// Runs the committer on a thread of its own until both queues close or
/// it is stopped.
pub(super) fn spawn(
    store: Store,
    conn: Connection,
    sends: tokio::sync::mpsc::Receiver<Job>,
    acks: tokio::sync::mpsc::Receiver<Job>,
) -> Result<Running, StoreError> {
    // A runtime of its own only to wait on the queues and the writer lock:
    // the thread blocks in SQLite, which must not stall the server's workers.
    let runtime = tokio::runtime::Builder::new_current_thread()
        .build()
        .map_err(|_| StoreError::Corrupt("could not start the committer's runtime"))?;
    let (stop, stopped) = tokio::sync::oneshot::channel();
    let thread = std::thread::Builder::new()
        .name("sqlite-committer".into())
        .spawn(move || runtime.block_on(run(store, conn, sends, acks, stopped)))
        .map_err(|_| StoreError::Corrupt("could not start the committer's thread"))?;
    Ok(Running { stop, thread })
}

async fn run(
    store: Store,
    mut conn: Connection,
    mut sends: tokio::sync::mpsc::Receiver<Job>,
    mut acks: tokio::sync::mpsc::Receiver<Job>,
    mut stopped: tokio::sync::oneshot::Receiver<()>,
) {
    let mut stopping = false;
    loop {
        let group = tokio::select! {
            biased;
            group = next_group(&mut sends, &mut acks) => group,
            _ = &mut stopped, if !stopping => {
                // Take nothing new; what is queued is still committed.
                stopping = true;
                sends.close();
                acks.close();
                continue;
            }
        };
        let Some(group) = group else { break };
        // Read once per group: rows committed without queue ids are never
        // handed to a sink set in between.
        let sink = store.sink.get();
        let (envelopes, ack_jobs) = split(&group);
        let together = {
            let _writer = store.write_lock.lock().await;
            commit(&mut conn, |tx| Ok((store_many(tx, &envelopes, sink.is_some())?, ack_many(tx, &ack_jobs)?)))
        };
        match together {
            Ok(((stored, queued), acked)) => {
                store.checkpoint_soon();
                deliver(sink, &envelopes, &stored, &queued);
                answer(group, stored, acked);
            }
            Err(e) => {
                tracing::warn!(error = %e, jobs = group.len(), "group commit failed; committing one by one");
                for j in group {
                    let writer = store.write_lock.lock().await;
                    match j {
                        Job::Envelope(e, reply) => {
                            let one = [&*e];
                            let r = commit(&mut conn, |tx| store_many(tx, &one, sink.is_some()));
                            drop(writer);
                            let r = r.and_then(|(stored, queued)| {
                                deliver(sink, &one, &stored, &queued);
                                stored.into_iter().next().ok_or(StoreError::Corrupt("no outcome"))
                            });
                            let _ = reply.send(r);
                        }
                        Job::Ack(a, reply) => {
                            let r = commit(&mut conn, |tx| ack_many(tx, &[&a]));
                            drop(writer);
                            let _ =
                                reply.send(r.and_then(|n| n.first().copied().ok_or(StoreError::Corrupt("no outcome"))));
                        }
                    }
                    store.checkpoint_soon();
                }
            }
        }
    }
    // The connection closes here, before the pool: when it is the last one,
    // SQLite checkpoints the log into the database.
    drop(conn);
}

/// Runs `work` in one immediate transaction and commits it (rolled back
/// when `work` fails).
fn commit<T>(
    conn: &mut Connection,
    work: impl FnOnce(&Transaction<'_>) -> Result<T, StoreError>,
) -> Result<T, StoreError> {
    let tx = conn.transaction_with_behavior(TransactionBehavior::Immediate)?;
    let out = work(&tx)?;
    tx.commit()?;
    Ok(out)
}

/// [`Store::store_many`](super::Store) on this connection: the same rows,
/// one prepared statement per row instead of multi-row statements.
fn store_many(
    tx: &Transaction<'_>,
    jobs: &[&EnvelopeJob],
    want_queue_ids: bool,
) -> Result<(Vec<StoreOutcome>, QueueIds), StoreError> {
    // Ids stored, or delivered to everyone and kept as tombstones (a replay
    // of one is a duplicate, not a new message to queue again).
    let mut known = Known::new();
    let mut find =
        tx.prepare_cached("SELECT conversation_id, sender_device, seq FROM envelopes WHERE message_id = ?1")?;
    for j in jobs {
        let id = &j.env.message_id;
        if known.contains_key(id) {
            continue;
        }
        let found = find.query_row([&id[..]], |r| Ok((r.get(0)?, r.get(1)?, Some(r.get::<_, i64>(2)?)))).optional()?;
        if let Some(owner) = found {
            known.insert(*id, owner);
        }
    }
    let fresh = fresh_by_conversation(jobs, &mut known);
    let mut seqs: HashMap<usize, i64> = HashMap::new();
    let mut next_seq =
        tx.prepare_cached("UPDATE conversations SET last_seq = last_seq + ?2 WHERE id = ?1 RETURNING last_seq")?;
    for (conversation, members) in &fresh {
        let n = i64::try_from(members.len()).unwrap_or(i64::MAX);
        let last: i64 = next_seq
            .query_row(params![&conversation[..], n], |r| r.get(0))
            .optional()?
            .ok_or(StoreError::Corrupt("an envelope names a conversation that is not stored"))?;
        for (k, i) in members.iter().enumerate() {
            seqs.insert(*i, last - n + 1 + i64::try_from(k).unwrap_or(0));
        }
    }
    let mut new: Vec<(usize, i64)> = seqs.iter().map(|(i, s)| (*i, *s)).collect();
    new.sort_unstable();
    let mut envelope = tx.prepare_cached(
        "INSERT INTO envelopes (message_id, network_id, conversation_id, seq, sender_device, prefix, signature, received_at, expires_at) \
         VALUES (?1, ?2, ?3, ?4, ?5, ?6, ?7, ?8, ?9)",
    )?;
    let mut queue = tx.prepare_cached(
        "INSERT INTO queue (device_id, envelope, tail, retention, enqueued_at) VALUES (?1, ?2, ?3, ?4, ?5)",
    )?;
    let mut queued = QueueIds::new();
    for (i, seq) in &new {
        let j = jobs.get(*i).ok_or(StoreError::Corrupt("group index"))?;
        let e = &j.env;
        envelope.execute(params![
            &e.message_id[..],
            &e.network_id[..],
            &e.conversation_id[..],
            seq,
            &e.sender_device[..],
            &e.prefix[..],
            &e.signature[..],
            j.now,
            e.expires_at
        ])?;
        let id = tx.last_insert_rowid();
        for (device, tail, retention) in &j.tails {
            queue.execute(params![&device[..], id, &tail[..], i64::from(*retention), j.now])?;
            if want_queue_ids {
                queued.insert((*device, e.message_id), tx.last_insert_rowid());
            }
        }
    }
    let mut cover = tx.prepare_cached(
        "INSERT INTO retention_coverage (device_id, conversation_id, network_id, first_seq, last_seq, count, last_at) \
         VALUES (?1, ?2, ?3, ?4, ?5, ?6, ?7) \
         ON CONFLICT (device_id, conversation_id) DO UPDATE SET \
         first_seq = MIN(retention_coverage.first_seq, excluded.first_seq), \
         last_seq = MAX(retention_coverage.last_seq, excluded.last_seq), \
         count = retention_coverage.count + excluded.count, \
         last_at = MAX(retention_coverage.last_at, excluded.last_at)",
    )?;
    for ((device, conversation), (network, first, last, count, at)) in coverage(jobs, &new) {
        cover.execute(params![&device[..], &conversation[..], &network[..], first, last, count, at])?;
    }
    Ok((outcomes(jobs, &known, &seqs)?, queued))
}

/// [`Store::ack_many`](super::Store) on this connection: each id's queue row
/// (of that device, and of its kind: retention rows only for a retention
/// device), then each envelope no queue references any more becomes a
/// tombstone. Only the message-id index is read; the pages written are
/// those of rows in insertion order.
fn ack_many(tx: &Transaction<'_>, jobs: &[&AckJob]) -> Result<Vec<u64>, StoreError> {
    let mut remove = tx.prepare_cached(
        "DELETE FROM queue WHERE envelope = (SELECT id FROM envelopes WHERE message_id = ?3) \
         AND device_id = ?1 AND retention = ?2",
    )?;
    let mut removed = Vec::with_capacity(jobs.len());
    for j in jobs {
        let mut n = 0u64;
        for m in &j.ids {
            n += remove.execute(params![&j.device[..], i64::from(j.retention), &m[..]])? as u64;
        }
        removed.push(n);
    }
    let mut ids: Vec<[u8; 16]> = jobs.iter().flat_map(|j| j.ids.iter().copied()).collect();
    ids.sort_unstable();
    ids.dedup();
    let mut sweep = tx.prepare_cached(&format!("{} AND message_id = ?1", tombstone("x''")))?;
    for m in &ids {
        sweep.execute([&m[..]])?;
    }
    Ok(removed)
}

#[cfg(test)]
mod tests {
    #![allow(clippy::unwrap_used)]

    /// The committer's connection: write-ahead log, full sync, no automatic
    /// checkpoints, and a page cache that holds a big room's index pages.
    #[test]
    fn the_committer_connection_is_set_up_for_its_load() {
        let dir = std::env::temp_dir().join(format!("sr-committer-{}-{}", std::process::id(), super::super::now_ms()));
        std::fs::create_dir_all(&dir).unwrap();
        let file = dir.join("c.db");
        drop(rusqlite::Connection::open(&file).unwrap());
        let conn = super::open(&file).unwrap();
        let get = |pragma: &str| -> String {
            conn.query_row(&format!("PRAGMA {pragma}"), [], |r| r.get::<_, rusqlite::types::Value>(0))
                .map(|v| match v {
                    rusqlite::types::Value::Integer(i) => i.to_string(),
                    rusqlite::types::Value::Text(t) => t,
                    other => format!("{other:?}"),
                })
                .unwrap()
        };
        assert_eq!(get("journal_mode"), "wal");
        assert_eq!(get("synchronous"), "2", "FULL: a commit is on disk before it is answered");
        assert_eq!(get("wal_autocheckpoint"), "0");
        assert_eq!(get("cache_size"), format!("-{}", super::CACHE_KIB));
        drop(conn);
        let _ = std::fs::remove_dir_all(&dir);
    }
}
