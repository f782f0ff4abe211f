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
    /// Records an uploaded blob.
    pub async fn insert_blob(
        &self,
        id: &[u8; 16],
        row: &BlobRow,
        uploader: &[u8; 16],
        now: i64,
    ) -> Result<(), StoreError> {
        let mut tx = self.write().await?;
        sqlx::query(&self.sql(
            "INSERT INTO blobs (id, network_id, conversation_id, uploader, size, sha256, created_at) VALUES ($1, $2, $3, $4, $5, $6, $7)",
        ))
        .bind(id.to_vec())
        .bind(row.network_id.to_vec())
        .bind(row.conversation_id.to_vec())
        .bind(uploader.to_vec())
        .bind(i64::try_from(row.size).unwrap_or(i64::MAX))
        .bind(row.sha256.clone())
        .bind(now)
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
}
