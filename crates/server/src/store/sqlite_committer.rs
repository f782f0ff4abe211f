//! The group committer on a SQLite file: one native connection on a thread
//! of its own. Through sqlx every statement was a hop to a worker thread and
//! back, multi-row statements of varying size were parsed again each time,
//! and eight pooled connections taking turns to write kept invalidating each
//! other's page caches (each read its pages back from the file). Here the
//! statements are prepared once, and the connection's cache stays warm: it
//! writes the message tables and nothing else does on the hot path.
//!
//! It takes the store's writer lock for each group like every other writer,
//! writes each group without an fsync and syncs the log itself beside the
//! next group's write ([`run`]); once a group is on disk it hands the rows
//! to the sink and answers each job exactly like the sqlx committer
//! (`messages.rs`).

use std::collections::HashMap;
use std::path::Path;
use std::sync::atomic::Ordering;

use rusqlite::{params, Connection, OpenFlags, OptionalExtension, Transaction, TransactionBehavior};

use super::ack_wave::{AckWave, Chunk, Row};
use super::device_numbers::DeviceNumbers;
use super::messages::{
    answer, coverage, deliver, fresh_by_conversation, more_sends, outcomes, split, EnvelopeJob, Job, Known, QueueIds,
    GROUP_ACK_ROWS,
};
use super::{Store, StoreError, StoreOutcome, WriteTimings};

/// Opens the committer's connection to the migrated database file the
/// pool opened (`file`, as SQLite itself names it).
pub(super) fn open(file: &Path) -> Result<Connection, StoreError> {
    let conn = Connection::open_with_flags(file, OpenFlags::SQLITE_OPEN_READ_WRITE | OpenFlags::SQLITE_OPEN_NO_MUTEX)?;
    conn.busy_timeout(std::time::Duration::from_secs(10))?;
    let mode: String = conn.query_row("PRAGMA journal_mode=WAL", [], |r| r.get(0))?;
    if !mode.eq_ignore_ascii_case("wal") {
        return Err(StoreError::Corrupt("the database would not switch to write-ahead logging"));
    }
    // No fsync inside a commit: the committer syncs the log itself, beside
    // the next group's write, and answers a group only after (see [`run`]).
    conn.execute_batch("PRAGMA synchronous=NORMAL; PRAGMA foreign_keys=ON;")?;
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
    // A delivered envelope's bytes are overwritten where they were deleted,
    // pages that fall free included, not left for whoever reads the file.
    conn.execute_batch("PRAGMA secure_delete=ON;")?;
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

/// The write-ahead log's file beside `file` (the database, as SQLite names
/// it), which the committer syncs itself (see [`run`]). It exists once the
/// pool has opened the database in WAL mode, and stays the same file while
/// any connection is open: the committer's is, for as long as it runs.
pub(super) fn log_file(file: &Path) -> Result<std::fs::File, StoreError> {
    let mut log = file.as_os_str().to_owned();
    log.push("-wal");
    // Writable: some systems flush only through a handle that may write.
    std::fs::OpenOptions::new()
        .read(true)
        .write(true)
        .open(log)
        .map_err(|_| StoreError::Corrupt("cannot open the database's write-ahead log"))
}

/// Syncs the log now and returns the highest queue position in it: what a
/// reader may read from the start.
pub(super) fn sync_now(conn: &Connection, log: &std::fs::File) -> Result<i64, StoreError> {
    let mark = queue_mark(conn)?;
    log.sync_data().map_err(|_| StoreError::Corrupt("cannot sync the database's write-ahead log to disk"))?;
    Ok(mark)
}

/// Runs the committer on a thread of its own until both queues close or
/// it is stopped.
pub(super) fn spawn(
    store: Store,
    conn: Connection,
    file: &Path,
    log: std::fs::File,
    sends: tokio::sync::mpsc::Receiver<Job>,
    acks: tokio::sync::mpsc::Receiver<Job>,
) -> Result<Running, StoreError> {
    // A handle of its own per sync under way: Linux reports a failed
    // write-back once per open file, to whichever sync checks first, so
    // syncs sharing one could see the error land on a later sync while an
    // earlier one, whose pages were lost, returned success.
    let mut logs = vec![log];
    for _ in 1..SYNCS_IN_FLIGHT {
        logs.push(log_file(file)?);
    }
    // A runtime of its own only to wait on the queues, the writer lock and
    // the log's syncs: the thread blocks in SQLite, which must not stall the
    // server's workers.
    let runtime = tokio::runtime::Builder::new_current_thread()
        .enable_time()
        .build()
        .map_err(|_| StoreError::Corrupt("could not start the committer's runtime"))?;
    let (stop, stopped) = tokio::sync::oneshot::channel();
    let thread = std::thread::Builder::new()
        .name("sqlite-committer".into())
        .spawn(move || runtime.block_on(run(store, conn, logs, sends, acks, stopped)))
        .map_err(|_| StoreError::Corrupt("could not start the committer's thread"))?;
    Ok(Running { stop, thread })
}

/// A group written to the log, run once a sync that began after it
/// returned: with `true` it hands the rows to the sink and answers each
/// job; with `false` (the sync failed) it fails each job.
type Finish<'a> = Box<dyn FnOnce(bool) + 'a>;

/// A sync of the log under way (it hands its file back): the groups it
/// covers, and the highest queue position they wrote.
type Syncing<'a> = (tokio::task::JoinHandle<(std::fs::File, std::io::Result<()>)>, Vec<Finish<'a>>, i64);

/// Most syncs of the log under way at once. A group written while one runs
/// starts its own at once instead of waiting for that one to end first:
/// on a disk whose flush takes 4 ms, a send then waits one flush, not one
/// and a half on average. They finish in the order they began, each on its
/// own handle of the log (see [`spawn`]), and each one's result counts.
const SYNCS_IN_FLIGHT: usize = 4;

/// Group commit, pipelined. A group is written with `synchronous=NORMAL`
/// (no fsync in the commit) and waits; syncs of the log run beside the
/// committer (up to [`SYNCS_IN_FLIGHT`]), each covering every group written
/// before it began. So the next group is written while the last one syncs,
/// instead of each paying its write and then its sync in series (on a disk
/// whose fsync takes 4 ms, that serial wait was a third of a 1:1 send's
/// latency).
///
/// Nothing is answered, handed to a socket or counted as read-safe
/// (`durable_queue`) before its sync returns. What other connections may
/// read meanwhile is harmless: a later write by any of them lands after
/// these frames in the log and is synced with them (the pool commits with
/// `synchronous=FULL`), so it never outlives what it read; and reads of the
/// queue stop at `durable_queue`. A failed sync fails every job it
/// covered and every later one: after a failed fsync the kernel may have
/// dropped the pages, so nothing written since is known to be on disk
/// (restart the relay: SQLite recovers the log as it finds it).
///
/// Acknowledgements are taken apart into the ack wave (`ack_wave.rs`) and
/// written a chunk at a time, with whatever sends wait, or alone when no
/// send does. They wait while a big fan-out goes out: a chunk due while
/// [`Unpushed::busy`](super::Unpushed::busy) is held until the pushes have
/// gone out or [`ACK_HOLD_MAX`] passed, whichever is first; sends are
/// written meanwhile as they come. The pushes and this
/// thread share the CPU, an ack loses nothing by waiting, and each push
/// behind an ack group adds to a message's latency. After a hold that ran
/// out its time, acks are not held again for [`NO_HOLD_AFTER_TIMEOUT`]
/// times as long, so pushes that never drain hold them a sixth of the time
/// at most.
async fn run(
    store: Store,
    mut conn: Connection,
    mut logs: Vec<std::fs::File>,
    mut sends: tokio::sync::mpsc::Receiver<Job>,
    mut acks: tokio::sync::mpsc::Receiver<Job>,
    mut stopped: tokio::sync::oneshot::Receiver<()>,
) {
    // What was in the log at the start was synced by `Store::connect`.
    let (mut stopping, mut open, mut failed) = (false, true, false);
    let mut waiting: Vec<Finish<'_>> = Vec::new();
    let mut waiting_mark = 0i64;
    let mut numbers = DeviceNumbers::default();
    let mut syncing: std::collections::VecDeque<Syncing<'_>> = std::collections::VecDeque::new();
    // Acks taken apart into rows, committed a chunk at a time
    // (`ack_wave.rs`); held (`Hold`) while a fan-out goes out.
    let mut wave = AckWave::default();
    let mut hold = Hold::default();
    let unpushed = store.unpushed.clone();
    // The sends' queue is closed and empty (stopping); acks may remain.
    let mut sends_done = false;
    loop {
        if failed {
            // Nothing written since a failed sync is known to be on disk.
            for finish in waiting.drain(..) {
                finish(false);
            }
            wave.fail_all(not_synced);
        }
        if !waiting.is_empty() {
            if let Some(file) = logs.pop() {
                #[cfg(test)]
                let delay = store.sync_delay_ms.load(Ordering::Relaxed);
                let timings = store.timings.clone();
                let handle = tokio::task::spawn_blocking(move || {
                    let began = std::time::Instant::now();
                    #[cfg(test)]
                    std::thread::sleep(std::time::Duration::from_millis(delay));
                    let done = file.sync_data();
                    WriteTimings::step(&timings.sync, began);
                    (file, done)
                });
                syncing.push_back((handle, std::mem::take(&mut waiting), waiting_mark));
            }
        }
        if !open && syncing.is_empty() && wave.is_empty() {
            break;
        }
        tokio::select! {
            biased;
            done = synced(&mut syncing), if !syncing.is_empty() => {
                // The oldest sync: groups wait for every sync before theirs.
                let Some((_, finishes, mark)) = syncing.pop_front() else { continue };
                let done = done.map(|(file, done)| {
                    logs.push(file);
                    done
                });
                let ok = matches!(done, Ok(Ok(()))) && !failed;
                if ok {
                    // Readers may push these rows now, before the sockets are handed them.
                    store.durable_queue.fetch_max(mark, Ordering::AcqRel);
                } else if !failed {
                    tracing::error!(error = ?done, "syncing the database's write-ahead log failed; refusing writes until restart");
                    failed = true;
                }
                for finish in finishes {
                    finish(ok);
                }
            }
            // Before the sends: a stream of them must not keep held acks waiting
            // past their time.
            calm = release(&unpushed, hold.until), if hold.on => hold.end(calm, &store),
            // Acks are taken only while the wave has room (the rest wait in
            // their queue, which holds their connections back).
            first = next_job(&mut sends, &mut acks, wave.has_room()),
                if open && (wave.has_room() || !sends_done) => {
                let Some(first) = first else {
                    if wave.has_room() {
                        // Both queues are closed (stopping): what the wave
                        // holds is still written, held or not.
                        open = false;
                        hold.on = false;
                    } else {
                        sends_done = true;
                    }
                    continue;
                };
                // Sends up to a group's worth; every waiting ack into the wave.
                let mut group = vec![first];
                more_sends(&mut sends, &mut group);
                while wave.has_room() {
                    match acks.try_recv() {
                        Ok(j) => group.push(j),
                        Err(_) => break,
                    }
                }
                let group = route(group, &mut wave, &numbers);
                if failed {
                    fail(group);
                    wave.fail_all(not_synced);
                    continue;
                }
                // Acks alone wait while a fan-out goes out; with sends they go
                // along (and while acks are held, sends go alone: they never
                // wait behind them). Either way a chunk is written now when
                // it may be, so a stream of acks cannot keep the wave unwritten.
                if group.is_empty() && (wave.is_empty() || (open && hold.begin_if_busy(&store, &unpushed))) {
                    continue;
                }
                let chunk = (!hold.on && !wave.is_empty()).then(|| wave.take(GROUP_ACK_ROWS));
                let queues = (&mut wave, &mut waiting, &mut waiting_mark);
                write_group(&store, &mut conn, &mut numbers, group, chunk, queues).await;
            }
            // Nothing else waiting: the wave's next chunk.
            () = std::future::ready(()), if !wave.is_empty() && !hold.on && !failed => {
                if open && hold.begin_if_busy(&store, &unpushed) {
                    continue;
                }
                let chunk = wave.take(GROUP_ACK_ROWS);
                let queues = (&mut wave, &mut waiting, &mut waiting_mark);
                write_group(&store, &mut conn, &mut numbers, Vec::new(), Some(chunk), queues).await;
            }
            _ = &mut stopped, if !stopping => {
                // Take nothing new; what is queued is still committed.
                stopping = true;
                sends.close();
                acks.close();
            }
        }
    }
    // The connection closes here, before the pool: when it is the last one,
    // SQLite checkpoints the log into the database.
    drop(conn);
}

/// Acks held while a fan-out goes out (see [`run`]).
struct Hold {
    on: bool,
    until: tokio::time::Instant,
    /// No hold starts before this (a hold ran out its time).
    not_before: tokio::time::Instant,
    /// A hold ended: the next chunk is written whatever goes out, so
    /// back-to-back fan-outs cannot keep acks waiting for ever.
    owed: bool,
}

impl Default for Hold {
    fn default() -> Self {
        let now = tokio::time::Instant::now();
        Self { on: false, until: now, not_before: now, owed: false }
    }
}

impl Hold {
    /// Called before a chunk of acks alone is written: starts a hold if
    /// pushes are under way and none may not; whether one is on.
    fn begin_if_busy(&mut self, store: &Store, unpushed: &super::Unpushed) -> bool {
        let now = tokio::time::Instant::now();
        if std::mem::take(&mut self.owed) {
            return self.on;
        }
        if !self.on && now >= self.not_before && unpushed.busy() {
            self.on = true;
            self.until = now + hold_max(store);
            #[cfg(test)]
            store.holds.fetch_add(1, Ordering::Relaxed);
        }
        self.on
    }

    /// The hold is over: the pushes went out (`calm`), or its time ran out.
    fn end(&mut self, calm: bool, store: &Store) {
        self.on = false;
        self.owed = true;
        if !calm {
            self.not_before = tokio::time::Instant::now() + NO_HOLD_AFTER_TIMEOUT * hold_max(store);
        }
    }
}

/// The next job, a send before an ack (acks only with `take_acks`);
/// `None` once the queues it reads are closed and empty.
async fn next_job(
    sends: &mut tokio::sync::mpsc::Receiver<Job>,
    acks: &mut tokio::sync::mpsc::Receiver<Job>,
    take_acks: bool,
) -> Option<Job> {
    tokio::select! {
        biased;
        Some(j) = sends.recv() => Some(j),
        Some(j) = acks.recv(), if take_acks => Some(j),
        else => None,
    }
}

/// Acks go into the wave; the sends are returned, in order.
fn route(jobs: Vec<Job>, wave: &mut AckWave, numbers: &DeviceNumbers) -> Vec<Job> {
    let mut sends = Vec::with_capacity(jobs.len());
    for j in jobs {
        match j {
            Job::Ack(a, reply) => wave.absorb(a, reply, numbers),
            send => sends.push(send),
        }
    }
    sends
}

/// Longest an ack waits for a fan-out to go out (see [`run`]).
const ACK_HOLD_MAX: std::time::Duration = std::time::Duration::from_millis(50);

/// After a hold that ran out its time, acks are not held for this many
/// times as long: pushes that never drain below the mark (a saturated
/// group) are not a fan-out to wait for, and acks held there stall the
/// connections that send them.
const NO_HOLD_AFTER_TIMEOUT: u32 = 5;

/// [`ACK_HOLD_MAX`] (tests: what they set).
fn hold_max(store: &Store) -> std::time::Duration {
    #[cfg(test)]
    {
        let ms = store.ack_hold_ms.load(Ordering::Relaxed);
        if ms > 0 {
            return std::time::Duration::from_millis(ms);
        }
    }
    let _ = store;
    ACK_HOLD_MAX
}

/// Returns `true` once the pushes under way have gone out, `false` at `until`.
async fn release(unpushed: &super::Unpushed, until: tokio::time::Instant) -> bool {
    tokio::select! {
        biased;
        () = unpushed.calm() => true,
        () = tokio::time::sleep_until(until) => false,
    }
}

/// The result of the oldest sync under way (never ready when there is none).
async fn synced(
    syncing: &mut std::collections::VecDeque<Syncing<'_>>,
) -> Result<(std::fs::File, std::io::Result<()>), tokio::task::JoinError> {
    match syncing.front_mut() {
        Some((handle, _, _)) => handle.await,
        None => std::future::pending().await,
    }
}

/// Writes `group` (sends) and `chunk` (acks) to the log in one
/// transaction, and queues what to do once a sync covers it. If that
/// fails, the chunk's jobs fail (the devices send those acks again) and
/// the sends are written one by one, so one bad envelope fails only itself.
async fn write_group<'a>(
    store: &'a Store,
    conn: &mut Connection,
    numbers: &mut DeviceNumbers,
    group: Vec<Job>,
    chunk: Option<Chunk>,
    (wave, waiting, waiting_mark): (&mut AckWave, &mut Vec<Finish<'a>>, &mut i64),
) {
    // Read once per group: rows committed without queue ids are never
    // handed to a sink set in between.
    let sink = store.sink.get();
    let timings = &store.timings;
    let together = {
        let (envelopes, _) = split(&group);
        let started = std::time::Instant::now();
        timings.group_started(envelopes.iter().map(|e| e.queued), started);
        let rows = chunk.as_ref().map(|c| &c.rows[..]).unwrap_or_default();
        let _writer = store.write_lock.lock().await;
        let locked = std::time::Instant::now();
        timings.write_lock.observe(locked.saturating_duration_since(started));
        let r = commit(conn, |tx| {
            let stored = store_many(tx, numbers, &envelopes, sink.is_some())?;
            Ok((stored, ack_rows(tx, rows)?, queue_mark(tx)?))
        });
        if r.is_ok() {
            WriteTimings::step(&timings.commit, locked);
        }
        numbered(numbers, r)
    };
    match together {
        Ok(((stored, queued), removed, mark)) => {
            store.checkpoint_soon();
            *waiting_mark = (*waiting_mark).max(mark);
            let acked = chunk.map(|c| wave.committed(&c, &removed)).unwrap_or_default();
            waiting.push(Box::new(move |ok| {
                if ok {
                    let (envelopes, _) = split(&group);
                    if sink.is_some() && !queued.is_empty() {
                        let began = std::time::Instant::now();
                        deliver(sink, &envelopes, &stored, &queued);
                        WriteTimings::step(&timings.handoff, began);
                    }
                    timings.sends_durable(envelopes.iter().map(|e| e.queued));
                    answer(group, stored, Vec::new());
                    for (reply, n) in acked {
                        let _ = reply.send(Ok(n));
                    }
                } else {
                    fail(group);
                    for (reply, _) in acked {
                        let _ = reply.send(Err(not_synced()));
                    }
                }
            }));
        }
        Err(e) => {
            tracing::warn!(error = %e, jobs = group.len(), "group commit failed; failing its acks, committing its sends one by one");
            // The acks once alone (a bad send must not fail a thousand
            // devices' acks), then, if that fails too, their jobs.
            if let Some(c) = chunk {
                let writer = store.write_lock.lock().await;
                let alone = commit(conn, |tx| Ok((ack_rows(tx, &c.rows)?, queue_mark(tx)?)));
                drop(writer);
                match alone {
                    Ok((removed, mark)) => {
                        *waiting_mark = (*waiting_mark).max(mark);
                        let acked = wave.committed(&c, &removed);
                        waiting.push(Box::new(move |ok| {
                            for (reply, n) in acked {
                                let _ = reply.send(if ok { Ok(n) } else { Err(not_synced()) });
                            }
                        }));
                    }
                    Err(e) => wave.failed(&c, || same_error(&e)),
                }
            }
            for j in group {
                let writer = store.write_lock.lock().await;
                match j {
                    Job::Envelope(e, reply) => {
                        let one = [&*e];
                        let r =
                            commit(conn, |tx| Ok((store_many(tx, numbers, &one, sink.is_some())?, queue_mark(tx)?)));
                        let r = numbered(numbers, r);
                        drop(writer);
                        match r {
                            Ok(((stored, queued), mark)) => {
                                *waiting_mark = (*waiting_mark).max(mark);
                                waiting.push(Box::new(move |ok| {
                                    if ok {
                                        deliver(sink, &[&*e], &stored, &queued);
                                        timings.sends_durable(std::iter::once(e.queued));
                                        let _ = reply
                                            .send(stored.into_iter().next().ok_or(StoreError::Corrupt("no outcome")));
                                    } else {
                                        let _ = reply.send(Err(not_synced()));
                                    }
                                }));
                            }
                            // Nothing was written: nothing to wait for.
                            Err(e) => {
                                let _ = reply.send(Err(e));
                            }
                        }
                    }
                    // `route` sent every ack to the wave.
                    Job::Ack(_, reply) => {
                        drop(writer);
                        let _ = reply.send(Err(StoreError::Corrupt("an ack reached the committer's send group")));
                    }
                }
                store.checkpoint_soon();
            }
        }
    }
}

/// `e` again, for each job a failed commit fails (the database's own
/// error where it is one, which cannot be cloned as such).
fn same_error(e: &StoreError) -> StoreError {
    match e {
        StoreError::Sqlite(rusqlite::Error::SqliteFailure(code, message)) => {
            StoreError::Sqlite(rusqlite::Error::SqliteFailure(*code, message.clone()))
        }
        _ => StoreError::Corrupt("a group of acknowledgements could not be committed"),
    }
}

/// Fails every job of `group` (its sync failed, or an earlier one did).
fn fail(group: Vec<Job>) {
    for j in group {
        match j {
            Job::Envelope(_, reply) => {
                let _ = reply.send(Err(not_synced()));
            }
            Job::Ack(_, reply) => {
                let _ = reply.send(Err(not_synced()));
            }
        }
    }
}

fn not_synced() -> StoreError {
    StoreError::Corrupt("the database's log could not be synced to disk; the relay must be restarted")
}

/// The highest queue position given out so far.
fn queue_mark(conn: &Connection) -> Result<i64, StoreError> {
    let mut q = conn.prepare_cached("SELECT COALESCE((SELECT seq FROM sqlite_sequence WHERE name = 'queue'), 0)")?;
    Ok(q.query_row([], |r| r.get(0))?)
}

/// `result` of a transaction that gave out device numbers: they hold if it committed.
fn numbered<T>(numbers: &mut DeviceNumbers, result: Result<T, StoreError>) -> Result<T, StoreError> {
    match &result {
        Ok(_) => numbers.committed(),
        Err(_) => numbers.rolled_back(),
    }
    result
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
    numbers: &mut DeviceNumbers,
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
        "INSERT INTO envelopes (message_id, network_id, conversation_id, seq, sender_device, received_at, expires_at) \
         VALUES (?1, ?2, ?3, ?4, ?5, ?6, ?7)",
    )?;
    let mut body = tx.prepare_cached(&format!(
        "INSERT INTO envelope_bodies (envelope, prefix, signature) VALUES (?1, ?2, ?3) {}",
        super::messages::BODY_CONFLICT
    ))?;
    let mut queue = tx.prepare_cached(
        "INSERT INTO queue (device_id, envelope, tail, retention, enqueued_at, device_no) VALUES (?1, ?2, ?3, ?4, ?5, ?6)",
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
            j.now,
            e.expires_at
        ])?;
        let id = tx.last_insert_rowid();
        body.execute(params![id, &e.prefix[..], &e.signature[..]])?;
        for (device, tail, retention) in &j.tails {
            let no = numbers.get(tx, device)?;
            queue.execute(params![&device[..], id, &tail[..], i64::from(*retention), j.now, no])?;
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

/// [`Store::ack_many`](super::Store) on this connection, for a chunk of
/// the ack wave: each row's queue row (of that device, and of its kind:
/// retention rows only for a retention device), then each envelope no
/// queue references any more becomes a tombstone (`messages::tombstone`:
/// its bytes deleted, its row marked). Returns what each row removed.
/// The pages written are those of rows in insertion order; the random
/// message-id index is only read.
fn ack_rows(tx: &Transaction<'_>, rows: &[Row]) -> Result<Vec<u64>, StoreError> {
    if rows.is_empty() {
        return Ok(Vec::new());
    }
    // One plain statement per id: a room's message is acknowledged by every
    // device (`RETURNING` would open a temporary b-tree each time).
    let mut remove = tx.prepare_cached(
        "DELETE FROM queue WHERE envelope = (SELECT id FROM envelopes WHERE message_id = ?3) \
         AND device_id = ?1 AND retention = ?2",
    )?;
    let mut removed = Vec::with_capacity(rows.len());
    for r in rows {
        removed.push(remove.execute(params![&r.device[..], i64::from(r.retention), &r.message[..]])? as u64);
    }
    let mut ids: Vec<[u8; 16]> = rows.iter().map(|r| r.message).collect();
    ids.sort_unstable();
    ids.dedup();
    // Once per id and group; only an envelope's last ack goes further.
    let mut unreferenced = tx.prepare_cached(
        "SELECT id FROM envelopes WHERE message_id = ?1 AND forget_at IS NULL \
         AND NOT EXISTS (SELECT 1 FROM queue WHERE queue.envelope = envelopes.id)",
    )?;
    let mut clear = tx.prepare_cached("DELETE FROM envelope_bodies WHERE envelope = ?1")?;
    let mut mark =
        tx.prepare_cached(&format!("UPDATE envelopes SET {} WHERE id = ?1", super::messages::tombstone_set()))?;
    for m in &ids {
        if let Some(envelope) = unreferenced.query_row([&m[..]], |r| r.get::<_, i64>(0)).optional()? {
            clear.execute([envelope])?;
            mark.execute([envelope])?;
        }
    }
    Ok(removed)
}

#[cfg(test)]
mod tests {
    #![allow(clippy::unwrap_used)]

    /// `.cargo/config.toml` builds SQLite without the page-cache group all
    /// connections share and without allocation statistics: each took a
    /// global mutex per page fetched or allocation made (~6 % of a 1:1
    /// delivery's CPU in the twelfth sitting's profile).
    #[test]
    fn sqlite_is_built_without_global_mutexes_on_the_hot_path() {
        let conn = rusqlite::Connection::open_in_memory().unwrap();
        let mut stmt = conn.prepare("PRAGMA compile_options").unwrap();
        let options: Vec<String> = stmt.query_map([], |r| r.get(0)).unwrap().map(Result::unwrap).collect();
        assert!(options.iter().any(|o| o == "THREADSAFE=1"), "{options:?}");
        assert!(!options.iter().any(|o| o == "ENABLE_MEMORY_MANAGEMENT"), "{options:?}");
        assert!(options.iter().any(|o| o == "DEFAULT_MEMSTATUS=0"), "{options:?}");
    }

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
        assert_eq!(get("synchronous"), "1", "NORMAL: the committer syncs the log itself");
        assert_eq!(get("wal_autocheckpoint"), "0");
        assert_eq!(get("cache_size"), format!("-{}", super::CACHE_KIB));
        assert_eq!(get("secure_delete"), "1");
        drop(conn);
        let _ = std::fs::remove_dir_all(&dir);
    }

    /// On a disk whose syncs take 1.5 s: a send is answered, and its row
    /// read or handed to a socket, only once a sync that began after it was
    /// written returns; and the next send is written meanwhile (the
    /// committer is not waiting on the disk) and starts a sync of its own
    /// at once, not after the first one ended.
    #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
    async fn nothing_is_answered_or_read_before_the_log_is_on_disk() {
        use super::super::{Store, StoreOutcome};
        use std::time::{Duration, Instant};
        let dir = std::env::temp_dir().join(format!("sr-synced-{}-{}", std::process::id(), super::super::now_ms()));
        std::fs::create_dir_all(&dir).unwrap();
        let file = dir.join("s.db");
        let store = two_devices(&file).await;
        let send = |m: u8| send(&store, m);
        let queued =
            |store: Store| async move { store.queued_page(&receiver(), 0, 10, usize::MAX).await.unwrap().0.len() };
        let written = || -> i64 {
            let raw = rusqlite::Connection::open(&file).unwrap();
            raw.query_row("SELECT COUNT(*) FROM queue", [], |r| r.get(0)).unwrap()
        };

        let handed = std::sync::Arc::new(std::sync::Mutex::new(Vec::new()));
        let sink = handed.clone();
        assert!(store.deliver_to(Box::new(move |_, row| sink.lock().unwrap().push(row().message_id))));
        store.sync_delay_ms.store(1500, std::sync::atomic::Ordering::Relaxed);
        let until = Instant::now() + Duration::from_secs(10);
        let wait_written = |n: i64| async move {
            while written() < n {
                assert!(Instant::now() < until, "not written while the first send synced");
                tokio::time::sleep(Duration::from_millis(20)).await;
            }
        };
        let first = send(40);
        wait_written(1).await;
        tokio::time::sleep(Duration::from_millis(300)).await;
        let second = send(41);
        // Written to the log while the first one's sync is under way.
        wait_written(2).await;
        assert!(handed.lock().unwrap().is_empty(), "a row went to a socket before it was on disk");
        assert_eq!(queued(store.clone()).await, 0, "a row was read before it was on disk");
        assert!(!first.is_finished(), "answered before the log was synced");
        assert_eq!(first.await.unwrap().unwrap(), StoreOutcome::Stored(1));
        let first_done = Instant::now();
        assert_eq!(*handed.lock().unwrap(), vec![id(40)], "handed to the socket once on disk");
        // The second waits for a sync that began after it was written.
        assert!(!second.is_finished(), "answered by a sync that began before it was written");
        assert_eq!(queued(store.clone()).await, 1, "only the synced row is read");
        assert_eq!(second.await.unwrap().unwrap(), StoreOutcome::Stored(2));
        // Its sync began when it was written (300 ms after the first's), not
        // when the first's ended (which would put it 1.5 s after).
        let gap = first_done.elapsed();
        assert!(gap < Duration::from_millis(1200), "the second sync waited for the first: {gap:?}");
        assert_eq!(queued(store.clone()).await, 2);
        assert_eq!(*handed.lock().unwrap(), vec![id(40), id(41)], "in commit order");
        // `/metrics` tells where the time went: each send waited on the
        // disk's syncs (over a second each), not for its group to start.
        let t = store.write_timings();
        assert_eq!((t.send_wait.count(), t.send_durable.count()), (2, 2));
        assert_eq!(t.send_wait.at_most(1000.0), Some(2), "a send waited for its group to start");
        assert_eq!(t.send_durable.at_most(1000.0), Some(0), "durable before its log's sync returned");
        assert!(t.sync.count() >= 2 && t.sync.at_most(1000.0) < Some(t.sync.count()), "syncs of 1.5 s");
        assert!(t.commit.count() >= 2 && t.write_lock.count() >= 2);
        assert_eq!(t.handoff.count(), 2, "a row each, handed to the sink");
        store.close().await;
        let _ = std::fs::remove_dir_all(&dir);
    }

    /// The committer used without a database file (and on PostgreSQL)
    /// records the same steps, less those it has not: no log sync, writer
    /// lock or hand-off of its own.
    #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
    async fn the_pooled_committer_records_its_steps_too() {
        let url =
            format!("sqlite:file:sr-steps-{}-{}?mode=memory&cache=shared", std::process::id(), super::super::now_ms());
        let store = two_devices_at(&url).await;
        assert_eq!(send(&store, 40).await.unwrap().unwrap(), super::super::StoreOutcome::Stored(1));
        let t = store.write_timings();
        assert_eq!((t.send_wait.count(), t.send_durable.count()), (1, 1));
        assert!(t.commit.count() >= 1);
        assert_eq!((t.sync.count(), t.write_lock.count(), t.handoff.count()), (0, 0, 0));
        store.close().await;
    }

    /// While a fan-out goes out, acks wait (sends do not wait behind them)
    /// until the pushes went out, or at most the longest hold, after which
    /// acks are not held again for a while; and closing the store writes
    /// what was held.
    #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
    async fn acks_wait_for_a_fan_out_and_sends_never_wait_for_acks() {
        use super::super::StoreOutcome;
        use std::sync::atomic::Ordering::Relaxed;
        use std::time::{Duration, Instant};
        let dir = std::env::temp_dir().join(format!("sr-held-{}-{}", std::process::id(), super::super::now_ms()));
        std::fs::create_dir_all(&dir).unwrap();
        let store = two_devices(&dir.join("h.db")).await;
        for m in 40..44 {
            assert!(matches!(send(&store, m).await.unwrap(), Ok(StoreOutcome::Stored(_))));
        }
        let within = Duration::from_secs(20);
        let unpushed = store.unpushed();
        let holds = |n: u64| {
            let store = store.clone();
            async move {
                let until = Instant::now() + within;
                while store.holds.load(Relaxed) < n {
                    assert!(Instant::now() < until, "the ack was never held");
                    tokio::time::sleep(Duration::from_millis(10)).await;
                }
            }
        };

        store.ack_hold_ms.store(60_000, Relaxed);
        unpushed.queued(1000);
        let held = ack(&store, 40);
        holds(1).await;
        let sent = tokio::time::timeout(within, send(&store, 44)).await;
        assert!(matches!(sent, Ok(Ok(Ok(StoreOutcome::Stored(_))))), "a send waited behind held acks: {sent:?}");
        assert!(!held.is_finished(), "an ack was written while a fan-out went out");
        unpushed.taken(1000);
        let acked = tokio::time::timeout(within, held).await;
        assert_eq!(acked.unwrap().unwrap().unwrap(), 1, "written once the pushes went out");

        // A fan-out that does not end, and sends streaming in once the ack
        // is held: held no longer than the longest hold…
        store.ack_hold_ms.store(1500, Relaxed);
        unpushed.queued(1000);
        let start = Instant::now();
        let held = ack(&store, 41);
        holds(2).await;
        let stop = std::sync::Arc::new(std::sync::atomic::AtomicBool::new(false));
        let streams: Vec<_> = (0..8u8)
            .map(|k| {
                let (store, stop) = (store.clone(), stop.clone());
                tokio::spawn(async move {
                    let mut n = 0u16;
                    while !stop.load(Relaxed) {
                        let mut m = [k; 16];
                        m[..2].copy_from_slice(&n.to_be_bytes());
                        m[2] = 0xa0;
                        assert!(send_id(&store, m).await.unwrap().is_ok());
                        n += 1;
                    }
                    n
                })
            })
            .collect();
        let acked = tokio::time::timeout(within, held).await;
        let waited = start.elapsed();
        stop.store(true, Relaxed);
        let mut streamed = 0;
        for s in streams {
            streamed += s.await.unwrap();
        }
        assert_eq!(acked.unwrap().unwrap().unwrap(), 1);
        assert!(waited >= Duration::from_millis(1400), "released early: {waited:?}");
        assert!(waited < Duration::from_secs(10), "sends kept a held ack waiting: {waited:?}");
        assert!(streamed > 8, "the sends did not stream ({streamed})");
        // …and the next ack right after is not held at all.
        let start = Instant::now();
        assert_eq!(tokio::time::timeout(within, ack(&store, 42)).await.unwrap().unwrap().unwrap(), 1);
        assert!(start.elapsed() < Duration::from_millis(1000), "held again at once: {:?}", start.elapsed());
        store.close().await;

        // Closing writes what is held.
        let store = two_devices(&dir.join("c.db")).await;
        assert!(matches!(send(&store, 40).await.unwrap(), Ok(StoreOutcome::Stored(_))));
        store.ack_hold_ms.store(60_000, Relaxed);
        store.unpushed().queued(1000);
        let last = ack(&store, 40);
        let until = Instant::now() + within;
        while store.holds.load(Relaxed) < 1 {
            assert!(Instant::now() < until, "the ack was never held");
            tokio::time::sleep(Duration::from_millis(10)).await;
        }
        store.close().await;
        assert_eq!(tokio::time::timeout(within, last).await.unwrap().unwrap().unwrap(), 1);
        let _ = std::fs::remove_dir_all(&dir);
    }

    /// Many overlapping ack jobs at once go through the wave in chunks:
    /// each job answered with what it removed, every row removed once, and
    /// every envelope's bytes gone once its last row is.
    #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
    async fn a_wave_of_overlapping_acks_is_written_in_chunks_and_each_job_answered() {
        let dir = std::env::temp_dir().join(format!("sr-wave-{}-{}", std::process::id(), super::super::now_ms()));
        std::fs::create_dir_all(&dir).unwrap();
        let store = two_devices(&dir.join("w.db")).await;
        let ids: Vec<[u8; 16]> = (0..700u16)
            .map(|n| {
                let mut m = [0xb0; 16];
                m[..2].copy_from_slice(&n.to_be_bytes());
                m
            })
            .collect();
        for part in ids.chunks(100) {
            let sent: Vec<_> = part.iter().map(|m| send_id(&store, *m)).collect();
            for s in sent {
                assert!(matches!(s.await.unwrap(), Ok(super::super::StoreOutcome::Stored(_))));
            }
        }
        // Job k acknowledges messages k, k + 1 and k + 2: 2,100 rows in
        // all (over two chunks at least), each message in three jobs.
        let jobs: Vec<_> = (0..ids.len())
            .map(|k| {
                let store = store.clone();
                let mine: Vec<[u8; 16]> = (0..3).map(|d| ids[(k + d) % ids.len()]).collect();
                tokio::spawn(async move { store.ack(&receiver(), &mine).await })
            })
            .collect();
        let mut removed = 0;
        for j in jobs {
            removed += j.await.unwrap().unwrap();
        }
        assert_eq!(removed, 700, "each queue row is removed once, by one of its jobs");
        assert_eq!(store.ack(&receiver(), &ids).await.unwrap(), 0);
        let bodies: i64 =
            sqlx::query_scalar("SELECT COUNT(*) FROM envelope_bodies").fetch_one(&store.pool).await.unwrap();
        let queued: i64 = sqlx::query_scalar("SELECT COUNT(*) FROM queue").fetch_one(&store.pool).await.unwrap();
        assert_eq!((bodies, queued), (0, 0));
        store.close().await;
        let _ = std::fs::remove_dir_all(&dir);
    }

    /// Device 33 acknowledges message `m`, on a task of its own.
    fn ack(store: &super::super::Store, m: u8) -> tokio::task::JoinHandle<Result<u64, super::super::StoreError>> {
        let store = store.clone();
        tokio::spawn(async move { store.ack(&receiver(), &[id(m)]).await })
    }

    fn id(n: u8) -> [u8; 16] {
        [n; 16]
    }

    /// The receiving device of [`two_devices`].
    fn receiver() -> super::super::DeviceRef {
        super::super::DeviceRef { network: id(1), user: id(31), device: id(33) }
    }

    /// A store at `file` with a network, two users with a device each (32
    /// sends, 33 receives) and a conversation between them.
    async fn two_devices(file: &std::path::Path) -> super::super::Store {
        two_devices_at(&format!("sqlite://{}?mode=rwc", file.display())).await
    }

    /// [`two_devices`] in the database at `url`.
    async fn two_devices_at(url: &str) -> super::super::Store {
        use super::super::{DeviceRef, Kind, PolicyRow, Role, SessionDevice, Store};
        let store = Store::connect(url).await.unwrap();
        let net = id(1);
        let policy = PolicyRow { version: 1, body: b"policy", retention: &[] };
        assert!(store.create_network(&net, "Acme", &[7; 32], &policy, 0).await.unwrap());
        for (n, name) in [(30, "a"), (31, "b")] {
            store.create_invite(&[n; 32], &net, false, i64::MAX, 0).await.unwrap();
            store.register(&[n; 32], &id(n), name, "hash", 10).await.unwrap();
        }
        for (user, n) in [(30, 32), (31, 33)] {
            let device = DeviceRef { network: net, user: id(user), device: id(n) };
            let claim = store.login_succeeded(&[n; 32], SessionDevice::Device(device), 1, i64::MAX).await;
            assert!(claim.unwrap().allowed());
        }
        let members = [(id(30), Role::Member), (id(31), Role::Member)];
        store.create_conversation(&id(35), &net, Kind::Group, &members, 0, None).await.unwrap();
        store
    }

    /// Message `m` from device 32 to device 33, stored on a task of its own.
    fn send(
        store: &super::super::Store,
        m: u8,
    ) -> tokio::task::JoinHandle<Result<super::super::StoreOutcome, super::super::StoreError>> {
        send_id(store, id(m))
    }

    /// [`send`] with a message id of any 16 bytes.
    fn send_id(
        store: &super::super::Store,
        message: [u8; 16],
    ) -> tokio::task::JoinHandle<Result<super::super::StoreOutcome, super::super::StoreError>> {
        let m = message[15];
        let store = store.clone();
        let env = super::super::StoredEnvelope {
            message_id: message,
            network_id: id(1),
            conversation_id: id(35),
            sender_device: id(32),
            prefix: vec![m; 10],
            signature: vec![0xee; 64],
            expires_at: None,
        };
        tokio::spawn(async move { store.store_envelope(env, vec![(id(33), vec![m, 1], false)], 1000).await })
    }
}
