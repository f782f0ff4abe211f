//! Online backup of a relay on the embedded default: a transactionally
//! consistent copy of the SQLite database (`VACUUM INTO`, taken while the
//! server runs and writes), then the blob directory and the bootstrap
//! secret, into a new data directory a server can start on as it is.
//!
//! The relay holds the only copy of messages the retention service has not
//! archived yet, so a restore must bring back every queued row: the snapshot
//! is one read transaction, so a message is in it with all its queue rows or
//! not at all. Blobs are copied after the snapshot: a file is written before
//! its record, so every record in the snapshot finds its file.

use std::path::{Path, PathBuf};

use crate::config::Config;
use crate::store::StoreError;
use crate::{private_dir, ServerError};

/// What a backup copied.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct BackupReport {
    /// The new data directory.
    pub to: PathBuf,
    /// Bytes of the database snapshot.
    pub database_bytes: u64,
    /// Blob files copied.
    pub blob_files: u64,
    /// Bytes of blob files copied.
    pub blob_bytes: u64,
    /// Why blobs were not copied, when they were not (object storage).
    pub blobs_skipped: Option<String>,
}

/// Backs up the relay configured by `config` into `to`, a new or empty
/// directory (made owner-only). SQLite only: PostgreSQL is backed up with
/// its own tools (docs/OPERATIONS.md).
pub async fn backup(config: &Config, to: &Path) -> Result<BackupReport, ServerError> {
    let url = config.database_url();
    let sqlite = url.strip_prefix("sqlite://").or_else(|| url.strip_prefix("sqlite:"));
    let Some(file) = sqlite.and_then(|rest| rest.split('?').next()) else {
        return Err(ServerError::Config(
            "this relay uses PostgreSQL: back it up with pg_dump or continuous archiving (docs/OPERATIONS.md)".into(),
        ));
    };
    let source = PathBuf::from(file);
    if !source.is_file() {
        return Err(ServerError::Config(format!("no relay database at {} (check --data-dir)", source.display())));
    }
    let dir_err = |p: &Path| {
        let path = p.display().to_string();
        move |source| ServerError::DataDir { path, source }
    };
    if to.exists() && std::fs::read_dir(to).map_err(dir_err(to))?.next().is_some() {
        return Err(ServerError::Config(format!("{} is not empty: back up into a new directory", to.display())));
    }
    private_dir(to).map_err(dir_err(to))?;
    let target = to.join("strongroom.db");
    let target_str = target.to_str().ok_or_else(|| ServerError::Config("the backup path is not UTF-8".into()))?;
    // One read transaction on a live WAL database: consistent, and writers go
    // on. A plain read-only connection: no migrations run against the live
    // database, whichever version of the server owns it.
    {
        use sqlx::{ConnectOptions, Connection};
        let mut conn = sqlx::sqlite::SqliteConnectOptions::new()
            .filename(&source)
            .read_only(true)
            .busy_timeout(std::time::Duration::from_secs(30))
            .connect()
            .await
            .map_err(StoreError::from)?;
        sqlx::query("VACUUM INTO ?").bind(target_str).execute(&mut conn).await.map_err(StoreError::from)?;
        conn.close().await.map_err(StoreError::from)?;
    }
    crate::private_file(&target).map_err(dir_err(&target))?;
    let database_bytes = std::fs::metadata(&target).map_err(dir_err(&target))?.len();

    let blobs = match config.blob_store.as_deref() {
        None => Some(config.data_dir.join("blobs")),
        Some(u) if u.starts_with("file://") => Some(PathBuf::from(u.trim_start_matches("file://"))),
        _ => None,
    };
    let (mut blob_files, mut blob_bytes) = (0, 0);
    let blobs_skipped = match blobs {
        Some(dir) if dir.is_dir() => {
            copy_tree(&dir, &to.join("blobs"), &mut blob_files, &mut blob_bytes)?;
            None
        }
        Some(_) => None,
        None => Some("blobs are in object storage: use the bucket's versioning or replication".to_owned()),
    };
    let secret = config.data_dir.join("bootstrap-secret");
    if secret.is_file() {
        let bytes = std::fs::read(&secret).map_err(dir_err(&secret))?;
        crate::write_private(&to.join("bootstrap-secret"), &bytes).map_err(dir_err(&secret))?;
    }
    Ok(BackupReport { to: to.to_owned(), database_bytes, blob_files, blob_bytes, blobs_skipped })
}

/// Copies `from` into `to` (owner-only), skipping files that vanish meanwhile
/// (an expired blob removed during the copy).
fn copy_tree(from: &Path, to: &Path, files: &mut u64, bytes: &mut u64) -> Result<(), ServerError> {
    let err = |p: &Path| {
        let path = p.display().to_string();
        move |source| ServerError::DataDir { path, source }
    };
    private_dir(to).map_err(err(to))?;
    for entry in std::fs::read_dir(from).map_err(err(from))? {
        let entry = entry.map_err(err(from))?;
        let (src, dst) = (entry.path(), to.join(entry.file_name()));
        let kind = entry.file_type().map_err(err(&src))?;
        if kind.is_dir() {
            copy_tree(&src, &dst, files, bytes)?;
        } else if kind.is_file() {
            match std::fs::copy(&src, &dst) {
                Ok(n) => {
                    crate::private_file(&dst).map_err(err(&dst))?;
                    *files += 1;
                    *bytes += n;
                }
                Err(e) if e.kind() == std::io::ErrorKind::NotFound => {}
                Err(e) => return Err(ServerError::DataDir { path: src.display().to_string(), source: e }),
            }
        }
    }
    Ok(())
}
