//! Versioned schema migrations, one list per dialect, applied in order inside
//! a transaction each. Applied versions are recorded so a migration runs once;
//! a later schema change is a new file, never an edit of an old one.

use sqlx::Row;

use super::{Backend, Store, StoreError};

const SQLITE: &[(i64, &str)] = &[
    (1, include_str!("../../migrations/sqlite/0001_initial.sql")),
    (2, include_str!("../../migrations/sqlite/0002_device_links.sql")),
    (3, include_str!("../../migrations/sqlite/0003_retention_sessions.sql")),
    (4, include_str!("../../migrations/sqlite/0004_administration.sql")),
    (5, include_str!("../../migrations/sqlite/0005_retention_checkpoints.sql")),
    (6, include_str!("../../migrations/sqlite/0006_device_ownership.sql")),
    (7, include_str!("../../migrations/sqlite/0007_relay_limits.sql")),
    (8, include_str!("../../migrations/sqlite/0008_device_list_chain.sql")),
    (9, include_str!("../../migrations/sqlite/0009_membership_statements.sql")),
    (10, include_str!("../../migrations/sqlite/0010_guests.sql")),
    (11, include_str!("../../migrations/sqlite/0011_queue_in_insertion_order.sql")),
    (12, include_str!("../../migrations/sqlite/0012_envelope_bodies.sql")),
    (13, include_str!("../../migrations/sqlite/0013_device_numbers.sql")),
];
const POSTGRES: &[(i64, &str)] = &[
    (1, include_str!("../../migrations/postgres/0001_initial.sql")),
    (2, include_str!("../../migrations/postgres/0002_device_links.sql")),
    (3, include_str!("../../migrations/postgres/0003_retention_sessions.sql")),
    (4, include_str!("../../migrations/postgres/0004_administration.sql")),
    (5, include_str!("../../migrations/postgres/0005_retention_checkpoints.sql")),
    (6, include_str!("../../migrations/postgres/0006_device_ownership.sql")),
    (7, include_str!("../../migrations/postgres/0007_relay_limits.sql")),
    (8, include_str!("../../migrations/postgres/0008_device_list_chain.sql")),
    (9, include_str!("../../migrations/postgres/0009_membership_statements.sql")),
    (10, include_str!("../../migrations/postgres/0010_guests.sql")),
    (11, include_str!("../../migrations/postgres/0011_queue_in_insertion_order.sql")),
    (12, include_str!("../../migrations/postgres/0012_envelope_bodies.sql")),
    (13, include_str!("../../migrations/postgres/0013_device_numbers.sql")),
];

/// A migration's statements: each ends with `;` at the end of a line, so a
/// trigger's body may hold `;` inside its line.
fn statements(sql: &str) -> Vec<String> {
    let mut out = Vec::new();
    let mut current = String::new();
    for line in sql.lines() {
        current.push_str(line);
        current.push('\n');
        if line.trim_end().ends_with(';') {
            let statement = current.trim().trim_end_matches(';').trim().to_owned();
            if !statement.is_empty() {
                out.push(statement);
            }
            current.clear();
        }
    }
    let rest = current.trim().trim_end_matches(';').trim();
    if !rest.is_empty() {
        out.push(rest.to_owned());
    }
    out
}

pub(super) async fn run(store: &Store) -> Result<(), StoreError> {
    let list = match store.backend {
        Backend::Sqlite => SQLITE,
        Backend::Postgres => POSTGRES,
    };
    let mut tx = store.write().await?;
    sqlx::query(
        "CREATE TABLE IF NOT EXISTS schema_migrations (version BIGINT PRIMARY KEY, applied_at BIGINT NOT NULL)",
    )
    .execute(&mut *tx.tx)
    .await?;
    if store.backend == Backend::Postgres {
        // Several server processes may start at once: one migrates, the others wait.
        sqlx::query("LOCK TABLE schema_migrations IN EXCLUSIVE MODE").execute(&mut *tx.tx).await?;
    }
    let rows = sqlx::query("SELECT version FROM schema_migrations").fetch_all(&mut *tx.tx).await?;
    let applied: Vec<i64> = rows.iter().map(|r| r.try_get::<i64, _>("version")).collect::<Result<_, _>>()?;
    for (version, sql) in list {
        if applied.contains(version) {
            continue;
        }
        for statement in statements(sql) {
            sqlx::query(&statement).execute(&mut *tx.tx).await?;
        }
        if *version == 6 {
            // Owners for the ids of a database from before ownership.
            let done = store.backfill_owners(&mut tx, super::now_ms()).await?;
            if !done.quarantined.is_empty() {
                tracing::warn!(
                    owned = done.owned,
                    quarantined = done.quarantined.len(),
                    "device ownership: some device ids had several claimants and are quarantined; those devices must enrol again"
                );
            } else if done.owned > 0 {
                tracing::info!(
                    owned = done.owned,
                    "device ownership: owners assigned from signed device lists and policies"
                );
            }
            for device in &done.quarantined {
                tracing::warn!(device = %crate::error::hex(device), "device id quarantined: several accounts or networks claimed it");
            }
        }
        sqlx::query(&store.sql("INSERT INTO schema_migrations (version, applied_at) VALUES ($1, $2)"))
            .bind(*version)
            .bind(super::now_ms())
            .execute(&mut *tx.tx)
            .await?;
    }
    tx.commit().await
}

#[cfg(test)]
mod tests {
    use super::statements;

    #[test]
    fn statements_end_at_line_ends_and_triggers_keep_their_bodies() {
        let sql = "CREATE TABLE a (x INTEGER);\nCREATE INDEX i ON a (x);\nCREATE TRIGGER t AFTER DELETE ON a BEGIN INSERT INTO b VALUES (OLD.x); END;\nCREATE TABLE c (y INTEGER)\n";
        assert_eq!(
            statements(sql),
            vec![
                "CREATE TABLE a (x INTEGER)",
                "CREATE INDEX i ON a (x)",
                "CREATE TRIGGER t AFTER DELETE ON a BEGIN INSERT INTO b VALUES (OLD.x); END",
                "CREATE TABLE c (y INTEGER)",
            ]
        );
        for (_, file) in super::SQLITE.iter().chain(super::POSTGRES) {
            assert!(statements(file).iter().all(|s| !s.is_empty()));
        }
    }
}
