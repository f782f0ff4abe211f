use super::{blob, id16, int, Store, StoreError};

/// A stored blob's metadata.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct BlobRow {
    /// Network.
    pub network_id: [u8; 16],
    /// The conversation whose members may read it.
    pub conversation_id: [u8; 16],
    /// Size in bytes.
    pub size: u64,
    /// SHA-256 of the bytes.
    pub sha256: Vec<u8>,
}

/// When blob `b` may be removed (`$1` now, `$2` the default lifetime, 0 =
/// forever): expired; no retention device has a message of its conversation
/// queued since its upload (a minute's margin for the clocks of several
/// relay processes); and if a retention device was sent anything in that
/// conversation since the upload (`retention_coverage.last_at`), one has
/// downloaded the file in full — or [`RETRY_GRACE_MS`] has passed since it
/// expired, for a retention service that failed to fetch it, and for uploads
/// never sent.
const REMOVABLE: &str = "((b.expires_at IS NOT NULL AND b.expires_at >= 0 AND b.expires_at < $1) \
     OR (b.expires_at IS NULL AND $2 > 0 AND b.created_at < $1 - $2)) \
     AND NOT EXISTS (SELECT 1 FROM queue q JOIN envelopes e ON e.id = q.envelope \
         WHERE q.retention = 1 AND e.conversation_id = b.conversation_id AND q.enqueued_at >= b.created_at - 60000) \
     AND (b.retention_fetched = 1 \
         OR NOT EXISTS (SELECT 1 FROM retention_coverage c \
             WHERE c.conversation_id = b.conversation_id AND c.last_at >= b.created_at - 60000) \
         OR (b.expires_at IS NOT NULL AND b.expires_at < $1 - $4) \
         OR (b.expires_at IS NULL AND $2 > 0 AND b.created_at < $1 - $2 - $4))";

/// How long after expiry a file a retention device may still need waits
/// for its download: 30 days.
pub const RETRY_GRACE_MS: i64 = 30 * 86_400_000;

impl Store {
    /// Records an uploaded blob, removed after `expires_at`, or without one
    /// after the configured lifetime (see [`Store::expired_blobs`]).
    pub async fn insert_blob(
        &self,
        id: &[u8; 16],
        row: &BlobRow,
        uploader: &[u8; 16],
        now: i64,
        expires_at: Option<i64>,
    ) -> Result<(), StoreError> {
        let mut tx = self.write().await?;
        sqlx::query(&self.sql(
            "INSERT INTO blobs (id, network_id, conversation_id, uploader, size, sha256, created_at, expires_at) VALUES ($1, $2, $3, $4, $5, $6, $7, $8)",
        ))
        .bind(id.to_vec())
        .bind(row.network_id.to_vec())
        .bind(row.conversation_id.to_vec())
        .bind(uploader.to_vec())
        .bind(i64::try_from(row.size).unwrap_or(i64::MAX))
        .bind(row.sha256.clone())
        .bind(now)
        .bind(expires_at)
        .execute(&mut *tx.tx)
        .await?;
        tx.commit().await
    }

    /// A blob's metadata (none once its removal has begun).
    pub async fn blob(&self, id: &[u8; 16]) -> Result<Option<BlobRow>, StoreError> {
        let row = sqlx::query(&self.sql(
            "SELECT network_id, conversation_id, size, sha256 FROM blobs WHERE id = $1 AND (expires_at IS NULL OR expires_at <> -1)",
        ))
            .bind(id.to_vec())
            .fetch_optional(&self.pool)
            .await?;
        row.map(|r| {
            Ok(BlobRow {
                network_id: id16(&r, "network_id")?,
                conversation_id: id16(&r, "conversation_id")?,
                size: u64::try_from(int(&r, "size")?).unwrap_or(0),
                sha256: blob(&r, "sha256")?,
            })
        })
        .transpose()
    }

    /// Bytes of stored blobs: uploaded by `user`, and in `network` (quotas).
    pub async fn blob_usage(&self, user: &[u8; 16], network: &[u8; 16]) -> Result<(u64, u64), StoreError> {
        let mut out = [0u64; 2];
        for (slot, (q, id)) in out.iter_mut().zip([
            ("SELECT CAST(SUM(size) AS BIGINT) AS n FROM blobs WHERE uploader = $1", user),
            ("SELECT CAST(SUM(size) AS BIGINT) AS n FROM blobs WHERE network_id = $1", network),
        ]) {
            let row = sqlx::query(&self.sql(q)).bind(id.to_vec()).fetch_one(&self.pool).await?;
            let n: Option<i64> = sqlx::Row::try_get(&row, "n")?;
            *slot = u64::try_from(n.unwrap_or(0)).unwrap_or(0);
        }
        Ok((out[0], out[1]))
    }

    /// Up to `limit` blobs to remove: those whose removal has begun, and
    /// those past their expiry (`expires_at`, or `lifetime_ms` after upload
    /// when none was asked; a lifetime of 0 keeps them) that no retention
    /// device can still need (see [`REMOVABLE`]).
    pub async fn expired_blobs(&self, now: i64, lifetime_ms: i64, limit: i64) -> Result<Vec<[u8; 16]>, StoreError> {
        let rows = sqlx::query(&self.sql(&format!(
            "SELECT id FROM blobs b WHERE b.expires_at = -1 OR ({REMOVABLE}) ORDER BY b.created_at LIMIT $3"
        )))
        .bind(now)
        .bind(lifetime_ms)
        .bind(limit)
        .bind(RETRY_GRACE_MS)
        .fetch_all(&self.pool)
        .await?;
        rows.iter().map(|r| id16(r, "id")).collect()
    }

    /// Begins removing a blob if it is (still) removable, atomically with
    /// the check: from here on it cannot be downloaded. `false`: keep it.
    pub async fn begin_blob_removal(&self, id: &[u8; 16], now: i64, lifetime_ms: i64) -> Result<bool, StoreError> {
        let mut tx = self.write().await?;
        let n = sqlx::query(&self.sql(&format!(
            "UPDATE blobs SET expires_at = -1 WHERE id = $3 AND (expires_at = -1 OR EXISTS (SELECT 1 FROM blobs b WHERE b.id = $3 AND ({REMOVABLE})))"
        )))
        .bind(now)
        .bind(lifetime_ms)
        .bind(id.to_vec())
        .bind(RETRY_GRACE_MS)
        .execute(&mut *tx.tx)
        .await?
        .rows_affected();
        tx.commit().await?;
        Ok(n == 1)
    }

    /// A retention device has downloaded this blob in full.
    pub async fn blob_fetched_by_retention(&self, id: &[u8; 16]) -> Result<(), StoreError> {
        let mut tx = self.write().await?;
        sqlx::query(&self.sql("UPDATE blobs SET retention_fetched = 1 WHERE id = $1"))
            .bind(id.to_vec())
            .execute(&mut *tx.tx)
            .await?;
        tx.commit().await
    }

    /// Forgets a blob whose bytes were removed from the blob store.
    pub async fn delete_blob(&self, id: &[u8; 16]) -> Result<(), StoreError> {
        let mut tx = self.write().await?;
        sqlx::query(&self.sql("DELETE FROM blobs WHERE id = $1")).bind(id.to_vec()).execute(&mut *tx.tx).await?;
        tx.commit().await
    }
}
