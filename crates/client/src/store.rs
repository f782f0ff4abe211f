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
use crate::rules::events::{Event, EventKind};
use crate::vault::Vault;
use strongroom_crypto::ids::ConversationId;

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
    /// Counts as unread until read (from someone else, for reading).
    pub countable: bool,
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

/// A queued message's id and its opened entry.
pub(crate) type OutboxEntry = ([u8; 16], Result<Zeroizing<Vec<u8>>, ClientError>);

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

    /// Stores a batch of messages, marks their ids seen, records the
    /// relay's sequence numbers and keeps refused envelopes as evidence, all
    /// in one transaction: one durable commit for the batch (group commit),
    /// after which (and only after which) the batch may be acknowledged.
    pub(crate) async fn put_messages(
        &self,
        vault: &Vault,
        batch: &[Pending],
        events: &[EventKind],
    ) -> Result<(), ClientError> {
        self.put_batch(vault, batch, &[], events).await
    }

    /// [`LocalStore::put_messages`] with the batch's refusals.
    pub(crate) async fn put_batch(
        &self,
        vault: &Vault,
        batch: &[Pending],
        refusals: &[Refusal],
        events: &[EventKind],
    ) -> Result<(), ClientError> {
        let mut tx = self.pool.begin().await?;
        insert_messages(&mut tx, vault, batch).await?;
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
        log_events(&mut tx, vault, events).await?;
        tx.commit().await?;
        Ok(())
    }

    /// Logs events on their own (the store changes they report are done).
    pub(crate) async fn log(&self, vault: &Vault, events: &[EventKind]) -> Result<(), ClientError> {
        let mut tx = self.pool.begin().await?;
        log_events(&mut tx, vault, events).await?;
        tx.commit().await?;
        Ok(())
    }

    /// Events after `after`, oldest first, at most `limit`.
    pub(crate) async fn events(&self, vault: &Vault, after: u64, limit: u32) -> Result<Vec<Event>, ClientError> {
        let rows = sqlx::query("SELECT id, at, sealed FROM events WHERE id > ?1 ORDER BY id LIMIT ?2")
            .bind(i64::try_from(after).unwrap_or(i64::MAX))
            .bind(i64::from(limit))
            .fetch_all(&self.pool)
            .await?;
        rows.iter()
            .map(|r| {
                let id = u64::try_from(r.get::<i64, _>("id")).unwrap_or(0);
                let plain = vault.open(&format!("event:{id}"), &r.get::<Vec<u8>, _>("sealed"))?;
                let kind = serde_json::from_slice(&plain).map_err(|_| ClientError::Corrupt("event record"))?;
                Ok(Event { id, at: u64::try_from(r.get::<i64, _>("at")).unwrap_or(0), kind })
            })
            .collect()
    }

    /// Keeps the newest `keep` events (ids stay increasing: never reused).
    pub(crate) async fn prune_events(&self, keep: i64) -> Result<(), ClientError> {
        sqlx::query("DELETE FROM events WHERE id <= (SELECT id FROM events ORDER BY id DESC LIMIT 1 OFFSET ?1)")
            .bind(keep)
            .execute(&self.pool)
            .await?;
        Ok(())
    }

    /// This device's own copy of a message and its outbox entry, in one
    /// transaction, before it is posted.
    pub(crate) async fn queue(
        &self,
        vault: &Vault,
        own: &Pending,
        message_id: &[u8; 16],
        outgoing: &[u8],
    ) -> Result<(), ClientError> {
        let mut tx = self.pool.begin().await?;
        insert_messages(&mut tx, vault, std::slice::from_ref(own)).await?;
        sqlx::query("INSERT INTO outbox (message_id, sealed) VALUES (?1, ?2) ON CONFLICT (message_id) DO UPDATE SET sealed = excluded.sealed")
            .bind(message_id.to_vec())
            .bind(vault.seal(&format!("outbox:{}", hex(message_id)), outgoing))
            .execute(&mut *tx)
            .await?;
        tx.commit().await?;
        Ok(())
    }

    /// Replaces a queued message's entry (sealed again).
    pub(crate) async fn requeue(
        &self,
        vault: &Vault,
        message_id: &[u8; 16],
        outgoing: &[u8],
    ) -> Result<(), ClientError> {
        sqlx::query("UPDATE outbox SET sealed = ?2 WHERE message_id = ?1")
            .bind(message_id.to_vec())
            .bind(vault.seal(&format!("outbox:{}", hex(message_id)), outgoing))
            .execute(&self.pool)
            .await?;
        Ok(())
    }

    /// The relay accepted a queued message as number `seq`: its own copy
    /// takes the number and it leaves the outbox.
    pub(crate) async fn sent(
        &self,
        vault: &Vault,
        message_id: &[u8; 16],
        conversation: &[u8; 16],
        seq: u64,
        events: &[EventKind],
    ) -> Result<(), ClientError> {
        let seq = i64::try_from(seq).unwrap_or(i64::MAX);
        let mut tx = self.pool.begin().await?;
        sqlx::query("UPDATE messages SET seq = ?2 WHERE message_id = ?1")
            .bind(message_id.to_vec())
            .bind(seq)
            .execute(&mut *tx)
            .await?;
        if seq > 0 {
            sqlx::query("INSERT OR IGNORE INTO delivered (conversation, seq) VALUES (?1, ?2)")
                .bind(conversation.to_vec())
                .bind(seq)
                .execute(&mut *tx)
                .await?;
        }
        sqlx::query("DELETE FROM outbox WHERE message_id = ?1").bind(message_id.to_vec()).execute(&mut *tx).await?;
        log_events(&mut tx, vault, events).await?;
        tx.commit().await?;
        Ok(())
    }

    /// A queued message refused for good: it leaves the outbox, and with
    /// `drop_copy` this device's copy goes too (nobody else has it).
    pub(crate) async fn unqueue(
        &self,
        vault: &Vault,
        message_id: &[u8; 16],
        drop_copy: bool,
        events: &[EventKind],
    ) -> Result<(), ClientError> {
        let mut tx = self.pool.begin().await?;
        sqlx::query("DELETE FROM outbox WHERE message_id = ?1").bind(message_id.to_vec()).execute(&mut *tx).await?;
        if drop_copy {
            sqlx::query("DELETE FROM messages WHERE message_id = ?1")
                .bind(message_id.to_vec())
                .execute(&mut *tx)
                .await?;
        }
        log_events(&mut tx, vault, events).await?;
        tx.commit().await?;
        Ok(())
    }

    /// Queued messages, oldest first: each id with its entry, or why the
    /// entry cannot be opened.
    pub(crate) async fn outbox(&self, vault: &Vault) -> Result<Vec<OutboxEntry>, ClientError> {
        let rows = sqlx::query("SELECT message_id, sealed FROM outbox ORDER BY id").fetch_all(&self.pool).await?;
        rows.iter()
            .map(|r| {
                let id = id16(r.get("message_id"))?;
                Ok((id, vault.open(&format!("outbox:{}", hex(&id)), &r.get::<Vec<u8>, _>("sealed"))))
            })
            .collect()
    }

    /// Whether anything waits in the outbox (no decryption).
    pub(crate) async fn outbox_len(&self) -> Result<u64, ClientError> {
        let n: i64 = sqlx::query("SELECT COUNT(*) FROM outbox").fetch_one(&self.pool).await?.get(0);
        Ok(u64::try_from(n).unwrap_or(0))
    }

    /// Moves a conversation's read position forward (never back) and logs it.
    pub(crate) async fn set_read(&self, vault: &Vault, conversation: &[u8; 16], to: u64) -> Result<u64, ClientError> {
        let mut tx = self.pool.begin().await?;
        let before: i64 = sqlx::query("SELECT read_to FROM read_state WHERE conversation = ?1")
            .bind(conversation.to_vec())
            .fetch_optional(&mut *tx)
            .await?
            .map_or(0, |r| r.get(0));
        sqlx::query(
            "INSERT INTO read_state (conversation, read_to) VALUES (?1, ?2) \
             ON CONFLICT (conversation) DO UPDATE SET read_to = MAX(read_to, excluded.read_to)",
        )
        .bind(conversation.to_vec())
        .bind(i64::try_from(to).unwrap_or(i64::MAX))
        .execute(&mut *tx)
        .await?;
        let now: i64 = sqlx::query("SELECT read_to FROM read_state WHERE conversation = ?1")
            .bind(conversation.to_vec())
            .fetch_one(&mut *tx)
            .await?
            .get(0);
        if now != before {
            let read_to = u64::try_from(now).unwrap_or(0);
            let event = EventKind::Read { conversation: ConversationId::from_bytes(*conversation), read_to };
            log_events(&mut tx, vault, std::slice::from_ref(&event)).await?;
        }
        let now = u64::try_from(now).unwrap_or(0);
        tx.commit().await?;
        Ok(now)
    }

    /// Mutes or unmutes a conversation.
    pub(crate) async fn set_muted(&self, conversation: &[u8; 16], muted: bool) -> Result<(), ClientError> {
        sqlx::query(
            "INSERT INTO read_state (conversation, muted) VALUES (?1, ?2) \
             ON CONFLICT (conversation) DO UPDATE SET muted = excluded.muted",
        )
        .bind(conversation.to_vec())
        .bind(i64::from(muted))
        .execute(&self.pool)
        .await?;
        Ok(())
    }

    /// Per conversation with stored messages or a read state: (read to,
    /// unread count, muted).
    pub(crate) async fn read_states(&self) -> Result<Vec<([u8; 16], u64, u64, bool)>, ClientError> {
        let rows = sqlx::query(
            "SELECT c.conversation, COALESCE(r.read_to, 0) AS read_to, COALESCE(r.muted, 0) AS muted, \
             (SELECT COUNT(*) FROM messages m WHERE m.conversation = c.conversation AND m.countable = 1 \
              AND m.seq > COALESCE(r.read_to, 0) AND (m.expires_at IS NULL OR m.expires_at > ?1)) AS unread \
             FROM (SELECT DISTINCT conversation FROM messages UNION SELECT conversation FROM read_state) c \
             LEFT JOIN read_state r ON r.conversation = c.conversation ORDER BY c.conversation",
        )
        .bind(i64::try_from(crate::client::now_ms()).unwrap_or(i64::MAX))
        .fetch_all(&self.pool)
        .await?;
        rows.into_iter()
            .map(|r| {
                Ok((
                    id16(r.get("conversation"))?,
                    u64::try_from(r.get::<i64, _>("read_to")).unwrap_or(0),
                    u64::try_from(r.get::<i64, _>("unread")).unwrap_or(0),
                    r.get::<i64, _>("muted") != 0,
                ))
            })
            .collect()
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
        self.set_acked(ids, true).await
    }

    /// Notes `ids` as acknowledged to the relay, or (`false`) as not: the
    /// relay failed the ack, so a re-delivery of them is honest.
    pub(crate) async fn set_acked(&self, ids: &[[u8; 16]], acked: bool) -> Result<(), ClientError> {
        let mut tx = self.pool.begin().await?;
        for id in ids {
            sqlx::query("UPDATE seen SET acked = ?2 WHERE message_id = ?1")
                .bind(id.to_vec())
                .bind(i64::from(acked))
                .execute(&mut *tx)
                .await?;
        }
        tx.commit().await?;
        Ok(())
    }

    /// Messages, oldest first by (conversation, seq); one conversation or all.
    /// Never one past its expiry, whether or not the purge has run yet.
    pub(crate) async fn messages(&self, conversation: Option<&[u8; 16]>) -> Result<Vec<StoredRow>, ClientError> {
        let now = i64::try_from(crate::client::now_ms()).unwrap_or(i64::MAX);
        let rows = match conversation {
            Some(c) => {
                sqlx::query(
                    "SELECT * FROM messages WHERE conversation = ?1 AND (expires_at IS NULL OR expires_at > ?2) \
                     ORDER BY seq, timestamp",
                )
                .bind(c.to_vec())
                .bind(now)
                .fetch_all(&self.pool)
                .await?
            }
            None => {
                sqlx::query(
                    "SELECT * FROM messages WHERE expires_at IS NULL OR expires_at > ?1 ORDER BY timestamp, seq",
                )
                .bind(now)
                .fetch_all(&self.pool)
                .await?
            }
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
                    countable: r.get::<i64, _>("countable") != 0,
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

type Tx<'a> = sqlx::Transaction<'a, sqlx::Sqlite>;

/// Stores messages (ignoring ids already stored), marks them seen and
/// records the relay's numbers.
async fn insert_messages(tx: &mut Tx<'_>, vault: &Vault, batch: &[Pending]) -> Result<(), ClientError> {
    for (row, plaintext, expires_at) in batch {
        let name = format!("msg:{}", hex(&row.message_id));
        sqlx::query(
            "INSERT INTO messages (message_id, conversation, seq, sender, timestamp, expires_at, burn_secs, sealed, countable) \
             VALUES (?1, ?2, ?3, ?4, ?5, ?6, ?8, ?7, ?9) ON CONFLICT (message_id) DO NOTHING",
        )
        .bind(row.message_id.to_vec())
        .bind(row.conversation.to_vec())
        .bind(i64::try_from(row.seq).unwrap_or(i64::MAX))
        .bind(row.sender.to_vec())
        .bind(i64::try_from(row.timestamp).unwrap_or(i64::MAX))
        .bind(expires_at.map(|t| i64::try_from(t).unwrap_or(i64::MAX)))
        .bind(vault.seal(&name, plaintext))
        .bind(i64::from(row.burn_secs))
        .bind(i64::from(row.countable))
        .execute(&mut **tx)
        .await?;
        sqlx::query("INSERT INTO seen (message_id, timestamp) VALUES (?1, ?2) ON CONFLICT (message_id) DO NOTHING")
            .bind(row.message_id.to_vec())
            .bind(i64::try_from(row.timestamp).unwrap_or(i64::MAX))
            .execute(&mut **tx)
            .await?;
        if row.seq > 0 {
            sqlx::query("INSERT OR IGNORE INTO delivered (conversation, seq) VALUES (?1, ?2)")
                .bind(row.conversation.to_vec())
                .bind(i64::try_from(row.seq).unwrap_or(i64::MAX))
                .execute(&mut **tx)
                .await?;
        }
    }
    Ok(())
}

/// Appends events to the log inside `tx`. Each is sealed under its own id
/// (so entries cannot be swapped); ids continue from the highest ever used,
/// pruned or not, so a reader's cursor never sees one twice.
async fn log_events(tx: &mut Tx<'_>, vault: &Vault, events: &[EventKind]) -> Result<(), ClientError> {
    if events.is_empty() {
        return Ok(());
    }
    let last: i64 = sqlx::query(
        "SELECT MAX(COALESCE((SELECT seq FROM sqlite_sequence WHERE name = 'events'), 0), \
         COALESCE((SELECT MAX(id) FROM events), 0))",
    )
    .fetch_one(&mut **tx)
    .await?
    .get(0);
    let at = i64::try_from(crate::client::now_ms()).unwrap_or(i64::MAX);
    for (id, kind) in (last.saturating_add(1)..).zip(events) {
        let json = Zeroizing::new(serde_json::to_vec(kind).map_err(|_| ClientError::Corrupt("event"))?);
        sqlx::query("INSERT INTO events (id, at, sealed) VALUES (?1, ?2, ?3)")
            .bind(id)
            .bind(at)
            .bind(vault.seal(&format!("event:{id}"), &json))
            .execute(&mut **tx)
            .await?;
    }
    Ok(())
}

pub(crate) fn hex(b: &[u8]) -> String {
    b.iter().map(|x| format!("{x:02x}")).collect()
}
