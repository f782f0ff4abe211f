//! Versioned migrations of the local store. `PRAGMA user_version` holds how
//! many have run; each runs in one transaction with its version bump, so a
//! crash mid-upgrade leaves the previous schema intact. A migration, once
//! released, never changes: a new one is added instead, and a fixture
//! profile of every schema (`tests/fixtures/profile-schema-N`) must still
//! open and read.

use sqlx::sqlite::SqlitePool;
use sqlx::Row;

use crate::error::ClientError;

/// Migrations in order; migration `i` brings the store to schema `i + 1`.
const MIGRATIONS: &[&[&str]] = &[
    // 1: the first schema. Profiles from before versioning have these
    // tables at user_version 0, hence IF NOT EXISTS.
    &[
        "CREATE TABLE IF NOT EXISTS records (name TEXT PRIMARY KEY, sealed BLOB NOT NULL)",
        "CREATE TABLE IF NOT EXISTS messages (message_id BLOB PRIMARY KEY, conversation BLOB NOT NULL, seq INTEGER NOT NULL, \
         sender BLOB NOT NULL, timestamp INTEGER NOT NULL, expires_at INTEGER, burn_secs INTEGER NOT NULL DEFAULT 0, \
         sealed BLOB NOT NULL)",
        "CREATE INDEX IF NOT EXISTS messages_by_conversation ON messages (conversation, seq)",
        "CREATE TABLE IF NOT EXISTS seen (message_id BLOB PRIMARY KEY, timestamp INTEGER NOT NULL, acked INTEGER NOT NULL DEFAULT 0)",
    ],
    // 2: delivery bookkeeping. `delivered` keeps every sequence number the
    // relay delivered or assigned (recalled and expired messages included),
    // so a gap is told from messages that are merely gone; `marks` is how
    // far each conversation was checked. `refused` keeps each envelope
    // refused after verification, sealed, as evidence before it is
    // acknowledged.
    &[
        "CREATE TABLE delivered (conversation BLOB NOT NULL, seq INTEGER NOT NULL, PRIMARY KEY (conversation, seq))",
        "INSERT OR IGNORE INTO delivered (conversation, seq) SELECT conversation, seq FROM messages WHERE seq > 0",
        "CREATE TABLE marks (conversation BLOB PRIMARY KEY, checked_to INTEGER NOT NULL)",
        "INSERT INTO marks (conversation, checked_to) SELECT conversation, MAX(seq) FROM messages GROUP BY conversation",
        "CREATE TABLE refused (id INTEGER PRIMARY KEY AUTOINCREMENT, message_id BLOB NOT NULL UNIQUE, \
         received_at INTEGER NOT NULL, sealed BLOB NOT NULL)",
    ],
    // 3: what the app and bots stand on. `outbox` holds messages sealed and
    // not yet accepted by the relay, in order; `events` is the event log
    // (ids increase and are never reused); `read_state` is each
    // conversation's read position and mute. `countable` marks messages a
    // person reads from others (unread counts); history from before the
    // upgrade counts as read.
    &[
        "CREATE TABLE outbox (id INTEGER PRIMARY KEY AUTOINCREMENT, message_id BLOB NOT NULL UNIQUE, sealed BLOB NOT NULL)",
        "CREATE TABLE events (id INTEGER PRIMARY KEY AUTOINCREMENT, at INTEGER NOT NULL, sealed BLOB NOT NULL)",
        "CREATE TABLE read_state (conversation BLOB PRIMARY KEY, read_to INTEGER NOT NULL DEFAULT 0, \
         muted INTEGER NOT NULL DEFAULT 0)",
        "ALTER TABLE messages ADD COLUMN countable INTEGER NOT NULL DEFAULT 0",
        "INSERT INTO read_state (conversation, read_to) SELECT conversation, MAX(seq) FROM messages GROUP BY conversation",
    ],
];

/// The schema this release writes.
pub(crate) const CURRENT: u32 = MIGRATIONS.len() as u32;

/// Brings the store to [`CURRENT`]; refuses a store from a newer release.
pub(crate) async fn migrate(pool: &SqlitePool) -> Result<u32, ClientError> {
    let found = version(pool).await?;
    if found > CURRENT {
        return Err(ClientError::ProfileTooNew { found, known: CURRENT });
    }
    for (done, steps) in MIGRATIONS.iter().enumerate().skip(found as usize) {
        let mut tx = pool.begin().await?;
        for step in *steps {
            sqlx::query(step).execute(&mut *tx).await?;
        }
        // PRAGMA takes no bound parameters; the value is our own constant.
        sqlx::query(&format!("PRAGMA user_version = {}", done + 1)).execute(&mut *tx).await?;
        tx.commit().await?;
    }
    Ok(found)
}

/// The store's schema version.
pub(crate) async fn version(pool: &SqlitePool) -> Result<u32, ClientError> {
    let row = sqlx::query("PRAGMA user_version").fetch_one(pool).await?;
    Ok(u32::try_from(row.get::<i64, _>(0)).unwrap_or(u32::MAX))
}

#[cfg(test)]
mod tests {
    #![allow(clippy::unwrap_used, clippy::panic)]
    use super::*;
    use sqlx::sqlite::SqlitePoolOptions;

    async fn memory() -> SqlitePool {
        SqlitePoolOptions::new().max_connections(1).connect("sqlite::memory:").await.unwrap()
    }

    #[tokio::test]
    async fn a_new_store_gets_every_migration_once() {
        let pool = memory().await;
        assert_eq!(migrate(&pool).await.unwrap(), 0);
        assert_eq!(version(&pool).await.unwrap(), CURRENT);
        // Again: nothing to do (a second CREATE TABLE delivered would fail).
        assert_eq!(migrate(&pool).await.unwrap(), CURRENT);
    }

    #[tokio::test]
    async fn schema_1_data_is_carried_into_the_delivery_bookkeeping() {
        let pool = memory().await;
        for step in MIGRATIONS[0] {
            sqlx::query(step).execute(&pool).await.unwrap();
        }
        for (id, seq) in [(1u8, 1i64), (2, 2), (3, 5)] {
            sqlx::query("INSERT INTO messages (message_id, conversation, seq, sender, timestamp, sealed) VALUES (?1, ?2, ?3, ?2, 0, ?2)")
                .bind(vec![id; 16])
                .bind(vec![9u8; 16])
                .bind(seq)
                .execute(&pool)
                .await
                .unwrap();
        }
        // A pre-versioning profile: tables present, user_version 0.
        assert_eq!(migrate(&pool).await.unwrap(), 0);
        let seqs: Vec<i64> = sqlx::query("SELECT seq FROM delivered ORDER BY seq")
            .fetch_all(&pool)
            .await
            .unwrap()
            .iter()
            .map(|r| r.get(0))
            .collect();
        assert_eq!(seqs, [1, 2, 5]);
        let mark: i64 = sqlx::query("SELECT checked_to FROM marks").fetch_one(&pool).await.unwrap().get(0);
        assert_eq!(mark, 5, "history before the upgrade is not reported as a gap");
    }

    #[tokio::test]
    async fn a_store_from_a_newer_release_is_refused_untouched() {
        let pool = memory().await;
        sqlx::query(&format!("PRAGMA user_version = {}", CURRENT + 1)).execute(&pool).await.unwrap();
        match migrate(&pool).await {
            Err(ClientError::ProfileTooNew { found, known }) => assert_eq!((found, known), (CURRENT + 1, CURRENT)),
            other => panic!("expected ProfileTooNew, got {other:?}"),
        }
        assert!(sqlx::query("SELECT 1 FROM records").fetch_optional(&pool).await.is_err(), "nothing was created");
    }
}
