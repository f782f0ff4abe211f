//! SQLite write-ahead log checkpoints, beside the writer.
//!
//! A passive checkpoint copies the log into the database without holding
//! writers off. Under sustained writes it never catches up (frames are
//! appended while it copies), so the log never starts over from its
//! beginning: it grew without bound (540 MB in a four-second benchmark),
//! and every commit paid for new file blocks and page-cache pages. So
//! once the log is long, a second pass runs with writers held off: only
//! what was appended during the first pass is left to copy, and the next
//! write starts the log over, rewriting blocks that already exist.

use std::sync::atomic::{AtomicBool, AtomicI64, Ordering};
use std::sync::Arc;

use sqlx::{AnyConnection, AnyPool, Row};
use tokio::sync::Mutex;

/// How often the log is checkpointed while writes go on.
const EVERY_MS: i64 = 250;

/// Frames (database pages) in the log past which a checkpoint finishes
/// with writers held off: 16 MiB at 4 KiB pages.
const FINISH_AT_FRAMES: i64 = 4096;

/// The log's file is cut back to this after it starts over (SQLite's
/// `journal_size_limit`): a burst's log does not keep its disk space.
pub(super) const LOG_SIZE_LIMIT: i64 = 64 << 20;

/// When the last checkpoint ended and whether one is running.
pub(super) struct Checkpoints {
    last_ms: AtomicI64,
    running: AtomicBool,
    finish_at_frames: AtomicI64,
    /// Held-off passes that copied the whole log: the next write starts it over.
    finished: AtomicI64,
}

impl Default for Checkpoints {
    fn default() -> Self {
        Self {
            last_ms: AtomicI64::new(0),
            running: AtomicBool::new(false),
            finish_at_frames: AtomicI64::new(FINISH_AT_FRAMES),
            finished: AtomicI64::new(0),
        }
    }
}

impl Checkpoints {
    /// Starts a checkpoint on `runtime` unless one ran within `EVERY_MS`
    /// or one is running.
    pub(super) fn soon(self: &Arc<Self>, runtime: &tokio::runtime::Handle, pool: &AnyPool, writer: &Arc<Mutex<()>>) {
        if super::now_ms() - self.last_ms.load(Ordering::Relaxed) < EVERY_MS
            || self.running.swap(true, Ordering::AcqRel)
        {
            return;
        }
        let (state, pool, writer) = (self.clone(), pool.clone(), writer.clone());
        runtime.spawn(async move {
            if let Err(e) = state.run(&pool, &writer).await {
                tracing::warn!(error = %e, "WAL checkpoint failed; the next one retries");
            }
            state.last_ms.store(super::now_ms(), Ordering::Relaxed);
            state.running.store(false, Ordering::Release);
        });
    }

    async fn run(&self, pool: &AnyPool, writer: &Mutex<()>) -> Result<(), sqlx::Error> {
        // Its own connection, taken before writers are held off: the
        // committer must never wait on the pool.
        let mut conn = pool.acquire().await?;
        let (frames, copied) = passive(&mut conn).await?;
        // Held off only when this pass copied all it saw: a reader holding
        // an old snapshot (a backup, say) keeps the log from starting over
        // whatever writers do, so holding them off would gain nothing.
        if frames >= self.finish_at_frames.load(Ordering::Relaxed) && copied == frames {
            let _writers_held_off = writer.lock().await;
            let (frames, copied) = passive(&mut conn).await?;
            if copied == frames {
                self.finished.fetch_add(1, Ordering::Relaxed);
            }
        }
        Ok(())
    }

    #[cfg(test)]
    pub(super) fn finish_at(&self, frames: i64) {
        self.finish_at_frames.store(frames, Ordering::Relaxed);
    }
}

/// A passive checkpoint: the frames the log held and those copied.
async fn passive(conn: &mut AnyConnection) -> Result<(i64, i64), sqlx::Error> {
    let row = sqlx::query("PRAGMA wal_checkpoint(PASSIVE)").fetch_one(&mut *conn).await?;
    Ok((row.try_get::<i64, _>(1)?, row.try_get::<i64, _>(2)?))
}

#[cfg(test)]
mod tests {
    #![allow(clippy::unwrap_used, clippy::expect_used, clippy::indexing_slicing)]
    use super::super::Store;

    /// Writers that never pause for two seconds (eight checkpoint periods):
    /// the log still starts over, again and again, so its file stays well
    /// under what was written through it (without the second pass the log
    /// never started over and its file held twice what was written).
    #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
    async fn the_log_starts_over_under_writes_that_never_pause() {
        let dir = std::env::temp_dir().join(format!("sr-checkpoint-{}-{}", std::process::id(), super::super::now_ms()));
        std::fs::create_dir_all(&dir).unwrap();
        let store = Store::connect(&format!("sqlite://{}?mode=rwc", dir.join("t.db").display())).await.unwrap();
        store.checkpoints.finish_at(64);
        sqlx::query("CREATE TABLE filler (b BLOB NOT NULL)").execute(&store.pool).await.unwrap();
        let (writers, blob, until) = (4, 8000, std::time::Instant::now() + std::time::Duration::from_secs(2));
        let written = std::sync::Arc::new(std::sync::atomic::AtomicU64::new(0));
        let wal = dir.join("t.db-wal");
        let largest = std::sync::Arc::new(std::sync::atomic::AtomicU64::new(0));
        let mut tasks = Vec::new();
        for _ in 0..writers {
            let (store, wal, largest, written) = (store.clone(), wal.clone(), largest.clone(), written.clone());
            tasks.push(tokio::spawn(async move {
                while std::time::Instant::now() < until {
                    let mut tx = store.write_queue().await.unwrap();
                    sqlx::query("INSERT INTO filler (b) VALUES (randomblob(8000))").execute(&mut *tx.tx).await.unwrap();
                    tx.commit().await.unwrap();
                    written.fetch_add(blob, std::sync::atomic::Ordering::Relaxed);
                    let size = std::fs::metadata(&wal).map(|m| m.len()).unwrap_or(0);
                    largest.fetch_max(size, std::sync::atomic::Ordering::Relaxed);
                }
            }));
        }
        for t in tasks {
            t.await.unwrap();
        }
        let written = written.load(std::sync::atomic::Ordering::Relaxed);
        let largest = largest.load(std::sync::atomic::Ordering::Relaxed);
        let finished = store.checkpoints.finished.load(std::sync::atomic::Ordering::Relaxed);
        assert!(largest > 0, "the log was never seen");
        assert!(finished >= 2, "{finished} checkpoints copied the whole log with writers held off");
        assert!(largest < written, "the log grew to {largest} bytes of {written} written");
        store.close().await;
        let _ = std::fs::remove_dir_all(&dir);
    }
}
