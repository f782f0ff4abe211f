//! `strongroom backup`: an online copy of a running relay's data directory.

use std::path::PathBuf;

use anyhow::Context;
use clap::Args;

/// Which relay to back up, and where to.
#[derive(Args)]
pub struct BackupArgs {
    /// The relay's data directory.
    #[arg(long, env = "STRONGROOM_DATA_DIR")]
    data_dir: PathBuf,
    /// The relay's database URL, if not SQLite in the data directory.
    #[arg(long, env = "STRONGROOM_DATABASE_URL")]
    database_url: Option<String>,
    /// The relay's blob store, if not DATA_DIR/blobs.
    #[arg(long, env = "STRONGROOM_BLOB_STORE")]
    blob_store: Option<String>,
    /// A new (or empty) directory to write the backup to; a server starts on it as its data directory.
    #[arg(long)]
    to: PathBuf,
    /// Print the result as JSON.
    #[arg(long)]
    json: bool,
}

pub async fn run(a: BackupArgs) -> anyhow::Result<()> {
    let config = strongroom_server::Config {
        data_dir: a.data_dir.clone(),
        database_url: a.database_url.clone(),
        blob_store: a.blob_store.clone(),
        ..Default::default()
    };
    let r = strongroom_server::backup::backup(&config, &a.to).await.context("backup failed")?;
    if a.json {
        println!(
            "{}",
            serde_json::json!({
                "to": r.to.display().to_string(),
                "database_bytes": r.database_bytes,
                "blob_files": r.blob_files,
                "blob_bytes": r.blob_bytes,
                "blobs_skipped": r.blobs_skipped,
            })
        );
    } else {
        println!("Backup written to {}", r.to.display());
        println!("Database snapshot: {} bytes; files: {} ({} bytes)", r.database_bytes, r.blob_files, r.blob_bytes);
        if let Some(why) = r.blobs_skipped {
            println!("Files not copied: {why}");
        }
        println!("Restore: stop the relay, then start it with --data-dir {}", r.to.display());
    }
    Ok(())
}
