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

impl Store {
    /// Records an uploaded blob, removed after `expires_at` (see [`Store::expired_blobs`]).
    pub async fn insert_blob(
        &self,
        id: &[u8; 16],
        row: &BlobRow,
        uploader: &[u8; 16],
        now: i64,
        expires_at: i64,
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

    /// A blob's metadata.
    pub async fn blob(&self, id: &[u8; 16]) -> Result<Option<BlobRow>, StoreError> {
        let row = sqlx::query(&self.sql("SELECT network_id, conversation_id, size, sha256 FROM blobs WHERE id = $1"))
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

    /// Up to `limit` blobs past their expiry that no retention device can
    /// still need: none has a message of the blob's conversation queued
    /// since the blob was uploaded (a message naming it comes after it).
    pub async fn expired_blobs(&self, now: i64, limit: i64) -> Result<Vec<[u8; 16]>, StoreError> {
        let rows = sqlx::query(&self.sql(
            "SELECT id FROM blobs b WHERE b.expires_at < $1 AND NOT EXISTS (\
             SELECT 1 FROM queue q JOIN envelopes e ON e.message_id = q.message_id \
             WHERE q.retention = 1 AND e.conversation_id = b.conversation_id AND q.enqueued_at >= b.created_at) \
             ORDER BY b.expires_at LIMIT $2",
        ))
        .bind(now)
        .bind(limit)
        .fetch_all(&self.pool)
        .await?;
        rows.iter().map(|r| id16(r, "id")).collect()
    }

    /// Forgets a blob whose bytes were removed from the blob store.
    pub async fn delete_blob(&self, id: &[u8; 16]) -> Result<(), StoreError> {
        let mut tx = self.write().await?;
        sqlx::query(&self.sql("DELETE FROM blobs WHERE id = $1")).bind(id.to_vec()).execute(&mut *tx.tx).await?;
        tx.commit().await
    }
}
