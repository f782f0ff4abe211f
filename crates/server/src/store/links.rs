use super::{blob, id16, Store, StoreError};

/// A device waiting to be linked: (device, signing key, link key, sealed identity if approved).
pub type LinkRow = ([u8; 16], Vec<u8>, Vec<u8>, Option<Vec<u8>>);

/// Pending requests expire after an hour.
const LINK_TTL_MS: i64 = 3_600_000;
/// Requests kept per account (newest first). Approving devices check at most
/// this many (each is a guess at the code's check), so more would only block
/// approvals; the newest is the one the person just started.
pub const MAX_PENDING_LINKS: i64 = 16;

impl Store {
    /// Records (or replaces) a new device's request to be linked.
    pub async fn request_link(
        &self,
        user: &[u8; 16],
        device: &[u8; 16],
        signing_key: &[u8],
        link_key: &[u8],
        now: i64,
    ) -> Result<(), StoreError> {
        let mut tx = self.write().await?;
        // Only this account's own pending request for its own device.
        sqlx::query(&self.sql("DELETE FROM device_links WHERE device_id = $1 AND user_id = $2"))
            .bind(device.to_vec())
            .bind(user.to_vec())
            .execute(&mut *tx.tx)
            .await?;
        sqlx::query(&self.sql(
            "INSERT INTO device_links (device_id, user_id, signing_key, link_key, sealed, created_at) VALUES ($1, $2, $3, $4, NULL, $5)",
        ))
        .bind(device.to_vec())
        .bind(user.to_vec())
        .bind(signing_key.to_vec())
        .bind(link_key.to_vec())
        .bind(now)
        .execute(&mut *tx.tx)
        .await?;
        sqlx::query(&self.sql(
            "DELETE FROM device_links WHERE user_id = $1 AND (created_at <= $2 OR device_id NOT IN \
             (SELECT device_id FROM device_links WHERE user_id = $1 ORDER BY created_at DESC, device_id LIMIT $3))",
        ))
        .bind(user.to_vec())
        .bind(now - LINK_TTL_MS)
        .bind(MAX_PENDING_LINKS)
        .execute(&mut *tx.tx)
        .await?;
        tx.commit().await
    }

    /// A user's link requests from the last hour.
    pub async fn links(&self, user: &[u8; 16], now: i64) -> Result<Vec<LinkRow>, StoreError> {
        let rows = sqlx::query(&self.sql(
            "SELECT device_id, signing_key, link_key, sealed FROM device_links WHERE user_id = $1 AND created_at > $2 ORDER BY created_at",
        ))
        .bind(user.to_vec())
        .bind(now - LINK_TTL_MS)
        .fetch_all(&self.pool)
        .await?;
        rows.iter()
            .map(|r| {
                Ok((
                    id16(r, "device_id")?,
                    blob(r, "signing_key")?,
                    blob(r, "link_key")?,
                    sqlx::Row::try_get(r, "sealed")?,
                ))
            })
            .collect()
    }

    /// Stores the approving device's sealed identity key; `false` if there is no such request.
    pub async fn approve_link(
        &self,
        user: &[u8; 16],
        device: &[u8; 16],
        sealed: &[u8],
        now: i64,
    ) -> Result<bool, StoreError> {
        let mut tx = self.write().await?;
        let n = sqlx::query(
            &self.sql("UPDATE device_links SET sealed = $1 WHERE device_id = $2 AND user_id = $3 AND created_at > $4"),
        )
        .bind(sealed.to_vec())
        .bind(device.to_vec())
        .bind(user.to_vec())
        .bind(now - LINK_TTL_MS)
        .execute(&mut *tx.tx)
        .await?
        .rows_affected();
        tx.commit().await?;
        Ok(n == 1)
    }
}
