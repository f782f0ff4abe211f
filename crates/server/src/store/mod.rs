//! Storage: one [`Store`] over sqlx's `Any` driver, with a migration set per
//! dialect. SQLite (WAL; a write is answered once it is on disk: `synchronous=FULL`
//! on the pool, the committer syncs its log itself) is the embedded default;
//! PostgreSQL serves several server processes. Handlers never see SQL: each
//! domain has its own file of methods on `Store`.
//!
//! Queries are written once with `$1`-style placeholders; on SQLite they are
//! rewritten to `?1`, which SQLite binds by number exactly like PostgreSQL.

mod accounts;
mod ack_wave;
mod admin;
mod blobs;
mod cache;
mod checkpoint;
mod conversations;
mod device_numbers;
mod devices;
mod guests;
mod keys;
mod links;
mod login_throttle;
mod messages;
mod migrations;
mod networks;
mod ownership_backfill;
mod sqlite_committer;
mod unpushed;
mod write_timings;

pub use accounts::{LoginOutcome, RetentionLoginOutcome, SessionDevice, SessionRow, UserRow, CONSOLE_DEVICE};
pub use admin::AuditQuery;
pub use blobs::{BlobRow, RETRY_GRACE_MS};
pub use conversations::{ConversationRow, Kind, Person, Role};
pub use devices::{DeviceClaim, DeviceRef, Owner, RESERVED_DEVICE_IDS, RETENTION_OWNER};
pub use guests::GuestRow;
pub use keys::{ClaimedPreKey, DeviceListRefusal};
pub use links::LinkRow;
pub use messages::{CoverageRow, QueuedRow, StoreOutcome, StoredEnvelope, Tail};
pub use networks::{PolicyOutcome, PolicyRow};
pub use ownership_backfill::QUARANTINED;
pub use unpushed::Unpushed;
pub use write_timings::WriteTimings;

use std::borrow::Cow;
use std::sync::Arc;

use sqlx::any::{AnyPoolOptions, AnyRow};
use sqlx::{AnyPool, Executor, Row};
use thiserror::Error;
use tokio::sync::{Mutex, MutexGuard};

/// Which database the store talks to.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Backend {
    /// Embedded SQLite file.
    Sqlite,
    /// PostgreSQL server.
    Postgres,
}

/// Why a storage operation failed.
#[derive(Debug, Error)]
#[non_exhaustive]
pub enum StoreError {
    /// The database failed or is unreachable.
    #[error("database error: {0}")]
    Database(#[from] sqlx::Error),
    /// The group committer's own SQLite connection failed.
    #[error("database error: {0}")]
    Sqlite(#[from] rusqlite::Error),
    /// The database URL is not SQLite or PostgreSQL.
    #[error("unsupported database URL (use sqlite://PATH or postgres://…)")]
    UnsupportedUrl,
    /// A stored value is not what the schema promises (corruption).
    #[error("stored data is corrupt: {0}")]
    Corrupt(&'static str),
    /// A device named by a (network, account, device) is not that
    /// account's, or is revoked: the caller checked too little.
    #[error("that device is not an active device of that account")]
    NotOwned,
}

/// The server's database.
#[derive(Clone)]
pub struct Store {
    pool: AnyPool,
    backend: Backend,
    /// SQLite allows one writer; taking this before a write transaction
    /// avoids SQLITE_BUSY on lock upgrades. Unused on PostgreSQL.
    write_lock: Arc<Mutex<()>>,
    /// Group commit of envelopes and acks (see `messages.rs`): sends and
    /// acks queue separately, so sends never wait behind a burst of acks.
    envelopes: Option<tokio::sync::mpsc::Sender<messages::Job>>,
    acks: Option<tokio::sync::mpsc::Sender<messages::Job>>,
    /// What the send path reads, remembered until a write (see `cache.rs`).
    cache: Arc<cache::Cache>,
    /// Where committed queue rows go (SQLite: straight to connections).
    sink: Arc<std::sync::OnceLock<Sink>>,
    /// The server's runtime, for checkpoints started from the committer's thread.
    runtime: tokio::runtime::Handle,
    /// The SQLite committer's thread, stopped by [`Store::close`].
    committer: Arc<std::sync::Mutex<Option<sqlite_committer::Running>>>,
    /// SQLite's write-ahead log checkpoints (see `checkpoint.rs`).
    checkpoints: Arc<checkpoint::Checkpoints>,
    /// Queue positions up to this one are on disk: the SQLite committer
    /// writes a group before the log is synced (`sqlite_committer.rs`), and
    /// readers must not push a row a power cut could take back.
    durable_queue: Arc<std::sync::atomic::AtomicI64>,
    /// Pushes waiting for their sockets (the hub counts them): the SQLite
    /// committer holds acks back while a big fan-out goes out.
    unpushed: Arc<Unpushed>,
    /// How long each step of the write path takes (`/metrics`).
    timings: Arc<WriteTimings>,
    /// Tests: a slower disk (ms added to each of the committer's syncs).
    #[cfg(test)]
    sync_delay_ms: Arc<std::sync::atomic::AtomicU64>,
    /// Tests: how long the committer holds acks back (ms; 0: the default).
    #[cfg(test)]
    ack_hold_ms: Arc<std::sync::atomic::AtomicU64>,
    /// Tests: how many ack groups the committer held.
    #[cfg(test)]
    holds: Arc<std::sync::atomic::AtomicU64>,
}

/// Takes each committed queue row: (device, row built on demand).
pub type Sink = Box<dyn Fn(&[u8; 16], &dyn Fn() -> QueuedRow) + Send + Sync>;

/// A write transaction (holding the SQLite writer lock when on SQLite).
pub struct WriteTx<'a> {
    tx: sqlx::Transaction<'static, sqlx::Any>,
    _guard: Option<MutexGuard<'a, ()>>,
    store: &'a Store,
    /// Committing invalidates the cache: every write but the message hot path.
    invalidates: bool,
}

impl Store {
    /// Connects and applies pending migrations.
    pub async fn connect(url: &str) -> Result<Self, StoreError> {
        sqlx::any::install_default_drivers();
        let backend = if url.starts_with("sqlite:") {
            Backend::Sqlite
        } else if url.starts_with("postgres:") || url.starts_with("postgresql:") {
            Backend::Postgres
        } else {
            return Err(StoreError::UnsupportedUrl);
        };
        let opts = AnyPoolOptions::new()
            .max_connections(match backend {
                Backend::Sqlite => 8,
                Backend::Postgres => 16,
            })
            // A pooled SQLite connection is a file handle that cannot drop
            // as a network connection can: pinging it before each use (sqlx's
            // default) was a second hop to its worker thread on every query.
            .test_before_acquire(backend == Backend::Postgres);
        let opts = if backend == Backend::Sqlite {
            opts.after_connect(|conn, _| {
                Box::pin(async move {
                    conn.execute("PRAGMA journal_mode=WAL").await?;
                    conn.execute("PRAGMA synchronous=FULL").await?;
                    conn.execute("PRAGMA foreign_keys=ON").await?;
                    // Deleted rows (delivered envelopes' bytes) are overwritten.
                    conn.execute("PRAGMA secure_delete=ON").await?;
                    conn.execute("PRAGMA busy_timeout=10000").await?;
                    // Checkpoints run beside the writer (`checkpoint_soon`),
                    // not inside whichever commit crosses the threshold.
                    conn.execute("PRAGMA wal_autocheckpoint=0").await?;
                    conn.execute(format!("PRAGMA journal_size_limit={}", checkpoint::LOG_SIZE_LIMIT).as_str()).await?;
                    Ok(())
                })
            })
        } else {
            opts
        };
        let pool = opts.connect(url).await?;
        let mut store = Self {
            pool,
            backend,
            write_lock: Arc::new(Mutex::new(())),
            envelopes: None,
            acks: None,
            cache: Arc::new(cache::Cache::new()),
            sink: Arc::new(std::sync::OnceLock::new()),
            runtime: tokio::runtime::Handle::current(),
            committer: Arc::default(),
            checkpoints: Arc::default(),
            durable_queue: Arc::new(std::sync::atomic::AtomicI64::new(i64::MAX)),
            unpushed: Arc::default(),
            timings: Arc::default(),
            #[cfg(test)]
            sync_delay_ms: Arc::default(),
            #[cfg(test)]
            ack_hold_ms: Arc::default(),
            #[cfg(test)]
            holds: Arc::default(),
        };
        migrations::run(&store).await?;
        // The committer holds a store without a sender of its own, so it
        // ends when the last handle is dropped.
        let (tx, rx) = tokio::sync::mpsc::channel(4096);
        let (ack_tx, ack_rx) = tokio::sync::mpsc::channel(4096);
        // On SQLite, the file the pool opened, as SQLite names it (after the
        // URL's decoding and options); none for a database in memory.
        let file = match backend {
            Backend::Sqlite => {
                let row = sqlx::query("SELECT file FROM pragma_database_list WHERE name = 'main'")
                    .fetch_one(&store.pool)
                    .await?;
                Some(row.try_get::<String, _>("file")?).filter(|f| !f.is_empty())
            }
            Backend::Postgres => None,
        };
        match file {
            Some(file) => {
                let conn = sqlite_committer::open(std::path::Path::new(&file))?;
                let log = sqlite_committer::log_file(std::path::Path::new(&file))?;
                // What a crash left in the log may be only in the page cache:
                // on disk before any reader counts on it (before the listener).
                let mark = sqlite_committer::sync_now(&conn, &log)?;
                store.durable_queue.store(mark, std::sync::atomic::Ordering::Release);
                let running =
                    sqlite_committer::spawn(store.clone(), conn, std::path::Path::new(&file), log, rx, ack_rx)?;
                if let Ok(mut slot) = store.committer.lock() {
                    *slot = Some(running);
                }
            }
            None => drop(tokio::spawn(messages::group_commit(store.clone(), rx, ack_rx))),
        }
        store.envelopes = Some(tx);
        store.acks = Some(ack_tx);
        Ok(store)
    }

    /// Which database this is.
    pub fn backend(&self) -> Backend {
        self.backend
    }

    /// Stops the SQLite committer once what is queued is committed, then
    /// closes the pool (waits for connections to be returned). Later
    /// writes fail.
    pub async fn close(&self) {
        let running = self.committer.lock().ok().and_then(|mut c| c.take());
        if let Some(running) = running {
            running.stop().await;
        }
        self.pool.close().await;
    }

    /// Applies pending migrations (a no-op when up to date).
    pub async fn migrate_again(&self) -> Result<(), StoreError> {
        migrations::run(self).await
    }

    fn sql<'q>(&self, q: &'q str) -> Cow<'q, str> {
        match self.backend {
            Backend::Postgres => Cow::Borrowed(q),
            Backend::Sqlite => Cow::Owned(q.replace('$', "?")),
        }
    }

    /// `q` with every `{device}` replaced by the condition that a queue row
    /// (of `alias`, e.g. `q.`) is device `param`'s: through the device's
    /// number, which the queue's per-device index is keyed by (migration
    /// 0013), and its id too.
    fn queue_sql(&self, q: &str, alias: &str, param: &str) -> String {
        let device = format!(
            "{alias}device_no = (SELECT no FROM device_numbers WHERE device_id = {param}) AND {alias}device_id = {param}"
        );
        self.sql(&q.replace("{device}", &device)).into_owned()
    }

    /// A write transaction whose commit invalidates the cache.
    async fn write(&self) -> Result<WriteTx<'_>, StoreError> {
        let mut tx = self.write_queue().await?;
        tx.invalidates = true;
        Ok(tx)
    }

    /// A write transaction of the message hot path (envelopes, queues,
    /// acks), which changes nothing the cache holds.
    async fn write_queue(&self) -> Result<WriteTx<'_>, StoreError> {
        let guard = match self.backend {
            Backend::Sqlite => Some(self.write_lock.lock().await),
            Backend::Postgres => None,
        };
        // SQLite: take the database's writer lock at BEGIN, where the busy
        // timeout applies. A write that was refused or failed is rolled back
        // by its connection's worker after our lock guard is gone; a deferred
        // transaction that read first could not wait for that rollback and
        // failed at once with "database is locked".
        let tx = match self.backend {
            Backend::Sqlite => self.pool.begin_with("BEGIN IMMEDIATE").await?,
            Backend::Postgres => self.pool.begin().await?,
        };
        Ok(WriteTx { tx, _guard: guard, store: self, invalidates: false })
    }

    /// Hands every committed queue row to `sink`, in commit order, so that
    /// connections push rows as they come instead of reading them back
    /// (on SQLite queue ids only grow, so a connection reads the store only
    /// to fill a gap; on PostgreSQL other processes commit too, see
    /// `routes/ws.rs`). Returns whether it was set (only once).
    pub fn deliver_to(&self, sink: Sink) -> bool {
        self.sink.set(sink).is_ok()
    }

    /// The count of pushes waiting for their sockets, for the hub to keep.
    pub fn unpushed(&self) -> Arc<Unpushed> {
        self.unpushed.clone()
    }

    /// How long each step of the write path took (`/metrics`).
    pub fn write_timings(&self) -> &WriteTimings {
        &self.timings
    }

    /// Whether committed rows reach connections without a wake-up.
    pub fn delivers_directly(&self) -> bool {
        self.sink.get().is_some()
    }

    /// SQLite: copies the write-ahead log back into the database beside
    /// the writer, one at a time and at most every 250 ms (`checkpoint.rs`).
    /// With automatic checkpoints the commit that crossed the log's
    /// threshold paid for the checkpoint's fsyncs, which put each one into
    /// some send's latency.
    pub(crate) fn checkpoint_soon(&self) {
        if self.backend != Backend::Sqlite || self.pool.is_closed() {
            return;
        }
        self.checkpoints.soon(&self.runtime, &self.pool, &self.write_lock);
    }

    /// Another server process committed a write: forget what was read.
    pub fn invalidate_cache(&self) {
        self.cache.invalidate();
    }

    /// Where to announce this process's invalidating commits (cluster mode).
    pub fn announce_changes(&self, tx: tokio::sync::mpsc::Sender<()>) {
        self.cache.set_announce(tx);
    }
}

impl WriteTx<'_> {
    async fn commit(self) -> Result<(), StoreError> {
        self.tx.commit().await?;
        if self.invalidates {
            self.store.cache.committed();
        }
        self.store.checkpoint_soon();
        Ok(())
    }
}

pub(crate) fn blob(row: &AnyRow, col: &str) -> Result<Vec<u8>, StoreError> {
    Ok(row.try_get::<Vec<u8>, _>(col)?)
}

pub(crate) fn int(row: &AnyRow, col: &str) -> Result<i64, StoreError> {
    Ok(row.try_get::<i64, _>(col)?)
}

pub(crate) fn id16(row: &AnyRow, col: &str) -> Result<[u8; 16], StoreError> {
    blob(row, col)?.try_into().map_err(|_| StoreError::Corrupt("identifier is not 16 bytes"))
}

/// Milliseconds since the Unix epoch.
pub fn now_ms() -> i64 {
    std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map(|d| i64::try_from(d.as_millis()).unwrap_or(i64::MAX))
        .unwrap_or(0)
}
