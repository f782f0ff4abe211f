//! Acknowledgements committed in an order that suits the queue's pages
//! (the SQLite committer).
//!
//! A room's devices acknowledge together: a thousand ack jobs, each one
//! device's acks of the same recent messages. Committed a job at a time, a
//! commit of 1,024 rows held a few devices' acks of every one of those
//! messages, and queue rows sit in insertion order (a message's rows
//! together): each commit rewrote a page in every message's rows, and the
//! next commit the same pages again. Here the waiting jobs are taken apart
//! into rows and committed in chunks ordered by (a block of device
//! numbers, message, device): a chunk holds a few messages' rows for a
//! block of devices, so it rewrites those messages' pages and the block's
//! part of the per-device index, and the next chunk mostly other pages.
//! For 1,000 devices acknowledging 64 messages each: a quarter of the log
//! frames and 0.4–0.6 of the CPU (`docs/bench/ackorder.py`;
//! docs/PERFORMANCE.md, eleventh sitting).
//!
//! A job is answered once the chunk holding its last row is on disk; a
//! chunk that fails fails every job with a row in it (acks are idempotent:
//! the device sends them again).

use std::collections::{BTreeSet, HashMap};

use super::device_numbers::DeviceNumbers;
use super::messages::AckJob;
use super::StoreError;

/// Device numbers per block: a chunk of 1,024 rows then spans four
/// messages of a 1,000-device room (fewest pages written, measured
/// against blocks of 64 and of every device).
const BLOCK_SHIFT: u32 = 8;

/// Rows taken into the wave at most; further jobs wait in their queue.
pub(super) const WAVE_MAX: usize = 1 << 16;

type Reply = tokio::sync::oneshot::Sender<Result<u64, StoreError>>;

/// One queue row to delete: `device`'s row of message `message`.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord)]
pub(super) struct Row {
    /// The wave the row came in: rows that come once the committer has
    /// begun writing a wave's rows wait for the next one, so a stream of
    /// rows that sort first cannot keep older ones waiting for ever.
    generation: u64,
    /// Block of the device's number (unnumbered devices last), then the
    /// message (ids are in time order, so in insertion order), then the
    /// device's number: the order chunks are taken in.
    block: i64,
    pub(super) message: [u8; 16],
    number: i64,
    pub(super) device: [u8; 16],
    pub(super) retention: bool,
    job: u64,
}

/// A job taken apart: its reply, the rows it removed so far and how many
/// of its rows are not yet in a committed chunk.
struct Slot {
    reply: Reply,
    removed: u64,
    left: usize,
}

/// The acks waiting for their commit, as rows in chunk order.
#[derive(Default)]
pub(super) struct AckWave {
    rows: BTreeSet<Row>,
    jobs: HashMap<u64, Slot>,
    next_job: u64,
    /// The generation rows come in now.
    generation: u64,
}

/// Rows taken for one commit.
pub(super) struct Chunk {
    pub(super) rows: Vec<Row>,
}

impl AckWave {
    pub(super) fn is_empty(&self) -> bool {
        self.rows.is_empty()
    }

    /// Whether the wave may take more jobs.
    pub(super) fn has_room(&self) -> bool {
        self.rows.len() < WAVE_MAX
    }

    /// Takes `job` apart into rows. A job with no ids is answered at once.
    pub(super) fn absorb(&mut self, job: AckJob, reply: Reply, numbers: &DeviceNumbers) {
        if job.ids.is_empty() {
            let _ = reply.send(Ok(0));
            return;
        }
        let id = self.next_job;
        self.next_job += 1;
        let number = numbers.known(&job.device).unwrap_or(i64::MAX);
        let mut left = 0;
        for message in job.ids {
            let row = Row {
                generation: self.generation,
                block: number >> BLOCK_SHIFT,
                message,
                number,
                device: job.device,
                retention: job.retention,
                job: id,
            };
            // The same id twice in one job is one row.
            left += usize::from(self.rows.insert(row));
        }
        self.jobs.insert(id, Slot { reply, removed: 0, left });
    }

    /// The next `max` rows in chunk order.
    pub(super) fn take(&mut self, max: usize) -> Chunk {
        let mut rows = Vec::with_capacity(max.min(self.rows.len()));
        while rows.len() < max {
            match self.rows.pop_first() {
                Some(r) => rows.push(r),
                None => break,
            }
        }
        // Writing the current generation has begun: later rows go in the next.
        if rows.last().is_some_and(|r| r.generation >= self.generation) {
            self.generation += 1;
        }
        Chunk { rows }
    }

    /// `chunk` was committed, `removed[i]` rows for its i-th row: the jobs
    /// it completed, with their totals, to answer once it is on disk.
    pub(super) fn committed(&mut self, chunk: &Chunk, removed: &[u64]) -> Vec<(Reply, u64)> {
        debug_assert_eq!(chunk.rows.len(), removed.len());
        let mut done = Vec::new();
        for (row, n) in chunk.rows.iter().zip(removed) {
            let Some(slot) = self.jobs.get_mut(&row.job) else { continue };
            slot.removed += n;
            slot.left = slot.left.saturating_sub(1);
            if slot.left == 0 {
                if let Some(slot) = self.jobs.remove(&row.job) {
                    done.push((slot.reply, slot.removed));
                }
            }
        }
        done
    }

    /// `chunk` could not be committed: every job with a row in it fails
    /// now (with `error`), and its other rows leave the wave.
    pub(super) fn failed(&mut self, chunk: &Chunk, error: impl Fn() -> StoreError) {
        let mut gone = std::collections::HashSet::new();
        for row in &chunk.rows {
            if let Some(slot) = self.jobs.remove(&row.job) {
                gone.insert(row.job);
                let _ = slot.reply.send(Err(error()));
            }
        }
        if !gone.is_empty() {
            self.rows.retain(|r| !gone.contains(&r.job));
        }
    }

    /// Fails every job in the wave (a sync failed: nothing written since is
    /// known to be on disk).
    pub(super) fn fail_all(&mut self, error: impl Fn() -> StoreError) {
        self.rows.clear();
        for (_, slot) in self.jobs.drain() {
            let _ = slot.reply.send(Err(error()));
        }
    }
}

#[cfg(test)]
mod tests {
    #![allow(clippy::unwrap_used, clippy::indexing_slicing)]

    use super::*;

    fn numbers(devices: &[[u8; 16]]) -> DeviceNumbers {
        let mut c = rusqlite::Connection::open_in_memory().unwrap();
        c.execute_batch("CREATE TABLE device_numbers (no INTEGER PRIMARY KEY, device_id BLOB NOT NULL UNIQUE);")
            .unwrap();
        let mut n = DeviceNumbers::default();
        let tx = c.transaction().unwrap();
        for d in devices {
            n.get(&tx, d).unwrap();
        }
        tx.commit().unwrap();
        n.committed();
        n
    }

    fn device(i: u16) -> [u8; 16] {
        let mut d = [0xd0; 16];
        d[..2].copy_from_slice(&i.to_be_bytes());
        d
    }

    fn message(i: u8) -> [u8; 16] {
        [i; 16]
    }

    #[test]
    fn chunks_go_by_block_then_message_and_a_job_is_answered_with_its_last_row() {
        // 600 devices (three blocks: numbers 1..=255, 256..=511, 512..),
        // each acknowledging messages 1..=4, one job each.
        let devices: Vec<[u8; 16]> = (0..600).map(device).collect();
        let numbers = numbers(&devices);
        let mut wave = AckWave::default();
        let mut replies = Vec::new();
        for d in &devices {
            let (tx, rx) = tokio::sync::oneshot::channel();
            let job = AckJob { device: *d, retention: false, ids: (1..=4).map(message).collect() };
            wave.absorb(job, tx, &numbers);
            replies.push(rx);
        }
        // An unnumbered device's rows come last.
        let (tx, mut stranger) = tokio::sync::oneshot::channel();
        wave.absorb(AckJob { device: [0xee; 16], retention: false, ids: vec![message(1)] }, tx, &numbers);
        let first = wave.take(300);
        // The first block (numbers 1..=255: 255 devices), message 1 then 2.
        assert!(first.rows[..255].iter().all(|r| r.message == message(1)));
        assert!(first.rows[255..].iter().all(|r| r.message == message(2)));
        assert!(first.rows.windows(2).all(|w| w[0] < w[1]));
        let done = wave.committed(&first, &vec![1; first.rows.len()]);
        assert!(done.is_empty(), "a job was answered before its last row was committed");
        let mut answered = 0;
        let mut total = 0;
        while !wave.is_empty() {
            let chunk = wave.take(1024);
            for (reply, n) in wave.committed(&chunk, &vec![1; chunk.rows.len()]) {
                total += n;
                answered += 1;
                let _ = reply.send(Ok(n));
            }
            if chunk.rows.iter().any(|r| r.device == [0xee; 16]) {
                assert!(wave.is_empty(), "the unnumbered device's row was not last");
            }
        }
        // Every job answered once, with all four of its rows.
        assert_eq!((answered, total), (601, 2401));
        for mut rx in replies {
            assert_eq!(rx.try_recv().unwrap().unwrap(), 4);
        }
        assert_eq!(stranger.try_recv().unwrap().unwrap(), 1);
    }

    #[test]
    fn rows_that_come_once_a_wave_is_being_written_wait_for_the_next() {
        let devices: Vec<[u8; 16]> = (0..300).map(device).collect();
        let numbers = numbers(&devices);
        let mut wave = AckWave::default();
        let (tx, mut late) = tokio::sync::oneshot::channel();
        // The last block's device acknowledges first.
        wave.absorb(AckJob { device: devices[299], retention: false, ids: vec![message(9)] }, tx, &numbers);
        let mut chunk = wave.take(1);
        assert_eq!(chunk.rows.len(), 1);
        // A stream of rows that sort before it (a lower block, an older
        // message) cannot keep a waiting row waiting: it goes in the chunk
        // after the one being written when they came.
        let (tx, mut waiting) = tokio::sync::oneshot::channel();
        wave.absorb(AckJob { device: devices[298], retention: false, ids: vec![message(9)] }, tx, &numbers);
        for round in 0..3u8 {
            for d in &devices[..10] {
                let (tx, _rx) = tokio::sync::oneshot::channel();
                wave.absorb(AckJob { device: *d, retention: false, ids: vec![message(round)] }, tx, &numbers);
            }
            for (reply, n) in wave.committed(&chunk, &vec![1; chunk.rows.len()]) {
                let _ = reply.send(Ok(n));
            }
            chunk = wave.take(10);
        }
        assert_eq!(late.try_recv().unwrap().unwrap(), 1);
        assert_eq!(waiting.try_recv().unwrap().unwrap(), 1, "rows that came later went first");
        // Within one generation, the block-then-message order holds.
        let _ = wave.take(1024);
        let (tx, _rx) = tokio::sync::oneshot::channel();
        wave.absorb(AckJob { device: devices[299], retention: false, ids: vec![message(0)] }, tx, &numbers);
        let (tx, _rx) = tokio::sync::oneshot::channel();
        wave.absorb(AckJob { device: devices[1], retention: false, ids: vec![message(7)] }, tx, &numbers);
        let rest = wave.take(1024);
        let order: Vec<_> = rest.rows.iter().map(|r| (r.device, r.message)).collect();
        assert_eq!(order, vec![(devices[1], message(7)), (devices[299], message(0))]);
    }

    #[test]
    fn a_failed_chunk_fails_its_jobs_and_takes_their_other_rows_out() {
        let devices: Vec<[u8; 16]> = (0..3).map(device).collect();
        let numbers = numbers(&devices);
        let mut wave = AckWave::default();
        let mut rxs = Vec::new();
        for d in &devices {
            let (tx, rx) = tokio::sync::oneshot::channel();
            wave.absorb(
                AckJob { device: *d, retention: false, ids: vec![message(1), message(2), message(2)] },
                tx,
                &numbers,
            );
            rxs.push(rx);
        }
        // An empty job is answered at once.
        let (tx, mut empty) = tokio::sync::oneshot::channel();
        wave.absorb(AckJob { device: devices[0], retention: false, ids: vec![] }, tx, &numbers);
        assert_eq!(empty.try_recv().unwrap().unwrap(), 0);
        // Message 1 for devices 0 and 1 fails: their jobs fail, device 2's goes on.
        let chunk = wave.take(2);
        wave.failed(&chunk, || StoreError::Corrupt("test"));
        assert!(rxs[0].try_recv().unwrap().is_err());
        assert!(rxs[1].try_recv().unwrap().is_err());
        let rest = wave.take(1024);
        assert_eq!(rest.rows.len(), 2, "the failed jobs' other rows stayed (the repeated id is one row)");
        let done = wave.committed(&rest, &[1, 1]);
        assert_eq!(done.len(), 1);
        assert_eq!(done.into_iter().next().unwrap().1, 2);
        // A failed sync fails what is still waiting.
        let (tx, mut late) = tokio::sync::oneshot::channel();
        wave.absorb(AckJob { device: devices[2], retention: true, ids: vec![message(3)] }, tx, &numbers);
        wave.fail_all(|| StoreError::Corrupt("test"));
        assert!(wave.is_empty() && late.try_recv().unwrap().is_err());
    }
}
