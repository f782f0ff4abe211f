//! Failed logins counted per (network, username, source): after a threshold
//! that source waits, the wait doubling with each further failure up to a
//! cap. Another source (the account's owner) is never locked out, and
//! usernames that do not exist are counted the same way, so the answers do
//! not say which exist. Kept in the database so every server process of a
//! cluster counts together.

use sqlx::Row;

use super::{Store, StoreError};

/// The first wait after the threshold; each further failure doubles it.
const FIRST_WAIT_MS: i64 = 1_000;

impl Store {
    /// Milliseconds `source` must still wait before trying `username` again (0: none).
    pub async fn login_wait(
        &self,
        network: &[u8; 16],
        username: &str,
        source: &str,
        now: i64,
    ) -> Result<i64, StoreError> {
        let row = sqlx::query(
            &self.sql("SELECT wait_until FROM login_failures WHERE network_id = $1 AND username = $2 AND source = $3"),
        )
        .bind(network.to_vec())
        .bind(username.to_owned())
        .bind(source.to_owned())
        .fetch_optional(&self.pool)
        .await?;
        let until: i64 = match row {
            Some(r) => r.try_get("wait_until")?,
            None => 0,
        };
        Ok((until - now).max(0))
    }

    /// Counts a failed login of `source` for `username`; from the
    /// `threshold`-th failure on (0: never) the source waits, up to `max_wait_ms`.
    pub async fn login_failure(
        &self,
        network: &[u8; 16],
        username: &str,
        source: &str,
        now: i64,
        threshold: u32,
        max_wait_ms: i64,
    ) -> Result<(), StoreError> {
        let mut tx = self.write().await?;
        sqlx::query(&self.sql(
            "INSERT INTO login_failures (network_id, username, source, failures, wait_until, updated_at) \
             VALUES ($1, $2, $3, 1, 0, $4) ON CONFLICT (network_id, username, source) \
             DO UPDATE SET failures = login_failures.failures + 1, updated_at = $4",
        ))
        .bind(network.to_vec())
        .bind(username.to_owned())
        .bind(source.to_owned())
        .bind(now)
        .execute(&mut *tx.tx)
        .await?;
        let failures: i64 = sqlx::query(
            &self.sql("SELECT failures FROM login_failures WHERE network_id = $1 AND username = $2 AND source = $3"),
        )
        .bind(network.to_vec())
        .bind(username.to_owned())
        .bind(source.to_owned())
        .fetch_one(&mut *tx.tx)
        .await?
        .try_get("failures")?;
        if threshold > 0 && failures >= i64::from(threshold) {
            let doublings = u32::try_from(failures - i64::from(threshold)).unwrap_or(u32::MAX).min(40);
            let wait = FIRST_WAIT_MS.saturating_mul(1i64 << doublings).min(max_wait_ms.max(FIRST_WAIT_MS));
            sqlx::query(&self.sql(
                "UPDATE login_failures SET wait_until = $1 WHERE network_id = $2 AND username = $3 AND source = $4",
            ))
            .bind(now.saturating_add(wait))
            .bind(network.to_vec())
            .bind(username.to_owned())
            .bind(source.to_owned())
            .execute(&mut *tx.tx)
            .await?;
        }
        tx.commit().await
    }

    /// Forgets the failures of `source` for `username` (a successful login),
    /// or of every source (`None`: a password reset or change).
    pub async fn clear_login_failures(
        &self,
        network: &[u8; 16],
        username: &str,
        source: Option<&str>,
    ) -> Result<(), StoreError> {
        let mut tx = self.write().await?;
        let q = match source {
            Some(_) => "DELETE FROM login_failures WHERE network_id = $1 AND username = $2 AND source = $3",
            None => "DELETE FROM login_failures WHERE network_id = $1 AND username = $2",
        };
        let sql = self.sql(q);
        let mut q = sqlx::query(&sql).bind(network.to_vec()).bind(username.to_owned());
        if let Some(s) = source {
            q = q.bind(s.to_owned());
        }
        q.execute(&mut *tx.tx).await?;
        tx.commit().await
    }

    /// Forgets failures not repeated since `before` (the expiry pass).
    pub async fn purge_login_failures(&self, before: i64) -> Result<u64, StoreError> {
        let mut tx = self.write().await?;
        let n = sqlx::query(&self.sql("DELETE FROM login_failures WHERE updated_at < $1 AND wait_until < $1"))
            .bind(before)
            .execute(&mut *tx.tx)
            .await?
            .rows_affected();
        tx.commit().await?;
        Ok(n)
    }
}
