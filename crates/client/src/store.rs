//! The local store: SQLite with every payload sealed by the [`Vault`].
//! Only random identifiers, sequence numbers and times are in the clear.
//! `secure_delete` overwrites deleted records, and the rollback journal
//! (not WAL) keeps no stale copies after a commit.

use std::path::Path;
use std::str::FromStr;

use sqlx::sqlite::{SqliteConnectOptions, SqliteJournalMode, SqlitePool, SqlitePoolOptions, SqliteSynchronous};
use sqlx::Row;
use zeroize::Zeroizing;

use crate::error::ClientError;
use crate::vault::Vault;

/// A stored message (content still sealed until read).
#[derive(Debug, Clone)]
pub struct StoredRow {
    /// Message id.
    pub message_id: [u8; 16],
    /// Conversation.
    pub conversation: [u8; 16],
    /// Server sequence number.
    pub seq: u64,
    /// Sender user.
    pub sender: [u8; 16],
    /// Sender timestamp (ms).
    pub timestamp: u64,
    /// Burn this many seconds after first display (0 = off).
    pub burn_secs: u32,
    /// Sealed content encoding.
    pub sealed: Vec<u8>,
}

/// An envelope refused after verification, kept (sealed) as evidence of
/// what the relay delivered and why it was refused.
#[derive(Debug, Clone, serde::Serialize, serde::Deserialize)]
pub struct Refusal {
    /// The message id the relay gave.
    pub message_id: [u8; 16],
    /// The relay's conversation and sequence number for it.
    pub conversation: [u8; 16],
    /// The relay's sequence number.
    pub seq: u64,
    /// When it was refused (ms).
    pub received_at: u64,
    /// Why.
    pub reason: String,
    /// The delivered envelope, as received.
    pub envelope: Vec<u8>,
}

/// Refused envelopes kept as evidence, newest first (each at most the
/// relay's envelope limit; older ones are dropped at upkeep).
pub(crate) const MAX_REFUSALS: i64 = 10_000;

/// A decrypted message ready to store: its row, content encoding and expiry.
pub(crate) type Pending = (StoredRow, Zeroizing<Vec<u8>>, Option<u64>);

pub(crate) struct LocalStore {
    pool: SqlitePool,
}

fn id16(v: Vec<u8>) -> Result<[u8; 16], ClientError> {
    v.try_into().map_err(|_| ClientError::Corrupt("identifier"))
}

impl LocalStore {
    pub(crate) async fn open(dir: &Path) -> Result<Self, ClientError> {
        let file = dir.join("store.db");
        crate::private_fs::private_file(&file)
            .map_err(|source| ClientError::Io { path: file.display().to_string(), source })?;
        let opts = SqliteConnectOptions::from_str(&format!("sqlite://{}", dir.join("store.db").display()))?
            .create_if_missing(true)
            .journal_mode(SqliteJournalMode::Delete)
            .synchronous(SqliteSynchronous::Full)
            .pragma("secure_delete", "ON")
            .foreign_keys(true);
        let pool = SqlitePoolOptions::new().max_connections(1).connect_with(opts).await?;
        if let Err(e) = crate::schema::migrate(&pool).await {
            pool.close().await;
            return Err(e);
        }
        Ok(Self { pool })
    }

    pub(crate) async fn put_record(&self, vault: &Vault, name: &str, plaintext: &[u8]) -> Result<(), ClientError> {
        sqlx::query("INSERT INTO records (name, sealed) VALUES (?1, ?2) ON CONFLICT (name) DO UPDATE SET sealed = excluded.sealed")
            .bind(name)
            .bind(vault.seal(name, plaintext))
            .execute(&self.pool)
            .await?;
        Ok(())
    }

    pub(crate) async fn record(&self, vault: &Vault, name: &str) -> Result<Option<Zeroizing<Vec<u8>>>, ClientError> {
        let row =
            sqlx::query("SELECT sealed FROM records WHERE name = ?1").bind(name).fetch_optional(&self.pool).await?;
        row.map(|r| vault.open(name, &r.get::<Vec<u8>, _>("sealed"))).transpose()
    }

    /// Stores one message and marks its id seen.
    pub(crate) async fn put_message(
        &self,
        vault: &Vault,
        row: &StoredRow,
        plaintext: &[u8],
        expires_at: Option<u64>,
    ) -> Result<(), ClientError> {
        self.put_messages(vault, &[(row.clone(), Zeroizing::new(plaintext.to_vec()), expires_at)]).await
    }

    /// Stores a batch of messages, marks their ids seen, records the
    /// relay's sequence numbers and keeps refused envelopes as evidence, all
    /// in one transaction: one durable commit for the batch (group commit),
    /// after which (and only after which) the batch may be acknowledged.
    pub(crate) async fn put_messages(&self, vault: &Vault, batch: &[Pending]) -> Result<(), ClientError> {
        self.put_batch(vault, batch, &[]).await
    }

    /// [`LocalStore::put_messages`] with the batch's refusals.
    pub(crate) async fn put_batch(
        &self,
        vault: &Vault,
        batch: &[Pending],
        refusals: &[Refusal],
    ) -> Result<(), ClientError> {
        let mut tx = self.pool.begin().await?;
        for (row, plaintext, expires_at) in batch {
            let name = format!("msg:{}", hex(&row.message_id));
            sqlx::query(
                "INSERT INTO messages (message_id, conversation, seq, sender, timestamp, expires_at, burn_secs, sealed) \
                 VALUES (?1, ?2, ?3, ?4, ?5, ?6, ?8, ?7) ON CONFLICT (message_id) DO NOTHING",
            )
            .bind(row.message_id.to_vec())
            .bind(row.conversation.to_vec())
            .bind(i64::try_from(row.seq).unwrap_or(i64::MAX))
            .bind(row.sender.to_vec())
            .bind(i64::try_from(row.timestamp).unwrap_or(i64::MAX))
            .bind(expires_at.map(|t| i64::try_from(t).unwrap_or(i64::MAX)))
            .bind(vault.seal(&name, plaintext))
            .bind(i64::from(row.burn_secs))
            .execute(&mut *tx)
            .await?;
            sqlx::query("INSERT INTO seen (message_id, timestamp) VALUES (?1, ?2) ON CONFLICT (message_id) DO NOTHING")
                .bind(row.message_id.to_vec())
                .bind(i64::try_from(row.timestamp).unwrap_or(i64::MAX))
                .execute(&mut *tx)
                .await?;
        }
        let numbered = batch.iter().map(|(row, ..)| (row.conversation, row.seq));
        for (conversation, seq) in numbered.filter(|(_, seq)| *seq > 0) {
            sqlx::query("INSERT OR IGNORE INTO delivered (conversation, seq) VALUES (?1, ?2)")
                .bind(conversation.to_vec())
                .bind(i64::try_from(seq).unwrap_or(i64::MAX))
                .execute(&mut *tx)
                .await?;
        }
        for r in refusals {
            let name = format!("refused:{}", hex(&r.message_id));
            let evidence = serde_json::to_vec(r).map_err(|_| ClientError::Corrupt("refusal"))?;
            // Once per message id: a relay replaying it adds nothing.
            sqlx::query("INSERT OR IGNORE INTO refused (message_id, received_at, sealed) VALUES (?1, ?2, ?3)")
                .bind(r.message_id.to_vec())
                .bind(i64::try_from(r.received_at).unwrap_or(i64::MAX))
                .bind(vault.seal(&name, &evidence))
                .execute(&mut *tx)
                .await?;
        }
        tx.commit().await?;
        Ok(())
    }

    /// Keeps the newest [`MAX_REFUSALS`] refusals: evidence is bounded
    /// however much garbage a relay sends.
    pub(crate) async fn prune_refusals(&self) -> Result<(), ClientError> {
        sqlx::query("DELETE FROM refused WHERE id <= (SELECT id FROM refused ORDER BY id DESC LIMIT 1 OFFSET ?1)")
            .bind(MAX_REFUSALS)
            .execute(&self.pool)
            .await?;
        Ok(())
    }

    /// Envelopes refused after verification, oldest first.
    pub(crate) async fn refusals(&self, vault: &Vault) -> Result<Vec<Refusal>, ClientError> {
        let rows = sqlx::query("SELECT message_id, sealed FROM refused ORDER BY id").fetch_all(&self.pool).await?;
        rows.iter()
            .map(|r| {
                let id = id16(r.get("message_id"))?;
                let plain = vault.open(&format!("refused:{}", hex(&id)), &r.get::<Vec<u8>, _>("sealed"))?;
                serde_json::from_slice(&plain).map_err(|_| ClientError::Corrupt("refusal record"))
            })
            .collect()
    }

    /// How far a conversation's numbering was checked, and the numbers
    /// delivered above that (ascending).
    pub(crate) async fn unchecked(&self, conversation: &[u8; 16]) -> Result<(u64, Vec<u64>), ClientError> {
        let mark = sqlx::query("SELECT checked_to FROM marks WHERE conversation = ?1")
            .bind(conversation.to_vec())
            .fetch_optional(&self.pool)
            .await?
            .map_or(0, |r| u64::try_from(r.get::<i64, _>(0)).unwrap_or(0));
        let seqs = sqlx::query("SELECT seq FROM delivered WHERE conversation = ?1 AND seq > ?2 ORDER BY seq")
            .bind(conversation.to_vec())
            .bind(i64::try_from(mark).unwrap_or(i64::MAX))
            .fetch_all(&self.pool)
            .await?
            .iter()
            .map(|r| u64::try_from(r.get::<i64, _>(0)).unwrap_or(0))
            .collect();
        Ok((mark, seqs))
    }

    /// Conversations with numbers delivered beyond their checked mark
    /// (received by sync or watch since the last check).
    pub(crate) async fn conversations_to_check(&self) -> Result<Vec<[u8; 16]>, ClientError> {
        let rows = sqlx::query(
            "SELECT DISTINCT d.conversation FROM delivered d LEFT JOIN marks m ON m.conversation = d.conversation \
             WHERE d.seq > COALESCE(m.checked_to, 0)",
        )
        .fetch_all(&self.pool)
        .await?;
        rows.into_iter().map(|r| id16(r.get(0))).collect()
    }

    /// Records how far a conversation's numbering was checked.
    pub(crate) async fn set_checked(&self, conversation: &[u8; 16], to: u64) -> Result<(), ClientError> {
        sqlx::query(
            "INSERT INTO marks (conversation, checked_to) VALUES (?1, ?2) \
             ON CONFLICT (conversation) DO UPDATE SET checked_to = excluded.checked_to",
        )
        .bind(conversation.to_vec())
        .bind(i64::try_from(to).unwrap_or(i64::MAX))
        .execute(&self.pool)
        .await?;
        Ok(())
    }

    /// Whether a message id was stored before, and whether its delivery was acknowledged.
    pub(crate) async fn seen(&self, id: &[u8; 16]) -> Result<Option<bool>, ClientError> {
        let row = sqlx::query("SELECT acked FROM seen WHERE message_id = ?1")
            .bind(id.to_vec())
            .fetch_optional(&self.pool)
            .await?;
        Ok(row.map(|r| r.get::<i64, _>("acked") != 0))
    }

    /// Records that the server was told these messages are stored.
    pub(crate) async fn mark_acked(&self, ids: &[[u8; 16]]) -> Result<(), ClientError> {
        let mut tx = self.pool.begin().await?;
        for id in ids {
            sqlx::query("UPDATE seen SET acked = 1 WHERE message_id = ?1").bind(id.to_vec()).execute(&mut *tx).await?;
        }
        tx.commit().await?;
        Ok(())
    }

    /// Messages, oldest first by (conversation, seq); one conversation or all.
    pub(crate) async fn messages(&self, conversation: Option<&[u8; 16]>) -> Result<Vec<StoredRow>, ClientError> {
        let rows = match conversation {
            Some(c) => {
                sqlx::query("SELECT * FROM messages WHERE conversation = ?1 ORDER BY seq, timestamp")
                    .bind(c.to_vec())
                    .fetch_all(&self.pool)
                    .await?
            }
            None => sqlx::query("SELECT * FROM messages ORDER BY timestamp, seq").fetch_all(&self.pool).await?,
        };
        rows.into_iter()
            .map(|r| {
                Ok(StoredRow {
                    message_id: id16(r.get("message_id"))?,
                    conversation: id16(r.get("conversation"))?,
                    seq: u64::try_from(r.get::<i64, _>("seq")).unwrap_or(0),
                    sender: id16(r.get("sender"))?,
                    timestamp: u64::try_from(r.get::<i64, _>("timestamp")).unwrap_or(0),
                    burn_secs: u32::try_from(r.get::<i64, _>("burn_secs")).unwrap_or(0),
                    sealed: r.get("sealed"),
                })
            })
            .collect()
    }

    /// Deletes one message (overwritten on disk by `secure_delete`).
    pub(crate) async fn delete_message(&self, id: &[u8; 16]) -> Result<(), ClientError> {
        sqlx::query("DELETE FROM messages WHERE message_id = ?1").bind(id.to_vec()).execute(&self.pool).await?;
        Ok(())
    }

    /// Starts the burn-on-read clock of displayed messages (first display only).
    pub(crate) async fn mark_displayed(&self, ids: &[[u8; 16]], now: u64) -> Result<(), ClientError> {
        let mut tx = self.pool.begin().await?;
        for id in ids {
            sqlx::query(
                "UPDATE messages SET expires_at = MIN(COALESCE(expires_at, ?2 + burn_secs * 1000), ?2 + burn_secs * 1000), burn_secs = 0 \
                 WHERE message_id = ?1 AND burn_secs > 0",
            )
            .bind(id.to_vec())
            .bind(i64::try_from(now).unwrap_or(i64::MAX))
            .execute(&mut *tx)
            .await?;
        }
        tx.commit().await?;
        Ok(())
    }

    /// Deletes messages whose TTL has run out (overwritten on disk).
    pub(crate) async fn purge_expired(&self, now: u64) -> Result<u64, ClientError> {
        let n = sqlx::query("DELETE FROM messages WHERE expires_at IS NOT NULL AND expires_at <= ?1")
            .bind(i64::try_from(now).unwrap_or(i64::MAX))
            .execute(&self.pool)
            .await?
            .rows_affected();
        Ok(n)
    }

    pub(crate) async fn close(&self) {
        self.pool.close().await;
    }
}

pub(crate) fn hex(b: &[u8]) -> String {
    b.iter().map(|x| format!("{x:02x}")).collect()
}
