//! Guests: people outside the organisation with a limited account on the
//! host network. Their invites name who invited them and the security group
//! they get; their last activity is kept so an inactive guest expires.

use sqlx::Row;

use super::{id16, int, Store, StoreError};

/// A guest the expiry pass looks at.
#[derive(Debug, Clone, Copy)]
pub struct GuestRow {
    /// The guest.
    pub user: [u8; 16],
    /// Their network.
    pub network: [u8; 16],
    /// Last activity (ms).
    pub last_active_at: i64,
}

/// Activity is written at most this often per guest (ms).
const TOUCH_EVERY_MS: i64 = 60_000;

impl Store {
    /// Stores a guest invite by the hash of its secret: who invited, and the
    /// security group (the inviter's) the guest gets.
    pub async fn create_guest_invite(
        &self,
        secret_hash: &[u8; 32],
        network: &[u8; 16],
        invited_by: &[u8; 16],
        group: Option<&[u8; 16]>,
        expires_at: i64,
        now: i64,
    ) -> Result<(), StoreError> {
        let mut tx = self.write().await?;
        sqlx::query(&self.sql(
            "INSERT INTO invites (secret_hash, network_id, admin, expires_at, revoked, created_at, guest, invited_by, group_id) \
             VALUES ($1, $2, 0, $3, 0, $4, 1, $5, $6)",
        ))
        .bind(secret_hash.to_vec())
        .bind(network.to_vec())
        .bind(expires_at)
        .bind(now)
        .bind(invited_by.to_vec())
        .bind(group.map(|g| g.to_vec()))
        .execute(&mut *tx.tx)
        .await?;
        tx.commit().await
    }

    /// A user's security group, if any.
    pub async fn user_group(&self, user: &[u8; 16]) -> Result<Option<[u8; 16]>, StoreError> {
        let row = sqlx::query(&self.sql("SELECT group_id FROM users WHERE id = $1"))
            .bind(user.to_vec())
            .fetch_optional(&self.pool)
            .await?;
        let Some(row) = row else { return Ok(None) };
        match row.try_get::<Option<Vec<u8>>, _>("group_id")? {
            Some(g) => Ok(Some(g.as_slice().try_into().map_err(|_| StoreError::Corrupt("group id"))?)),
            None => Ok(None),
        }
    }

    /// Notes a guest's activity (written at most once a minute).
    pub async fn touch_guest(&self, user: &[u8; 16], now: i64) -> Result<(), StoreError> {
        let stale = sqlx::query(
            &self.sql("SELECT 1 AS one FROM users WHERE id = $1 AND role = 'guest' AND last_active_at < $2"),
        )
        .bind(user.to_vec())
        .bind(now - TOUCH_EVERY_MS)
        .fetch_optional(&self.pool)
        .await?;
        if stale.is_none() {
            return Ok(());
        }
        let mut tx = self.write().await?;
        sqlx::query(&self.sql("UPDATE users SET last_active_at = $1 WHERE id = $2 AND role = 'guest'"))
            .bind(now)
            .bind(user.to_vec())
            .execute(&mut *tx.tx)
            .await?;
        tx.commit().await
    }

    /// Every guest not yet expired nor deleted.
    pub async fn live_guests(&self) -> Result<Vec<GuestRow>, StoreError> {
        let rows = sqlx::query(&self.sql(
            "SELECT id, network_id, last_active_at FROM users \
             WHERE role = 'guest' AND deleted = 0 AND expired_at IS NULL",
        ))
        .fetch_all(&self.pool)
        .await?;
        rows.iter()
            .map(|r| {
                Ok(GuestRow {
                    user: id16(r, "id")?,
                    network: id16(r, "network_id")?,
                    last_active_at: int(r, "last_active_at")?,
                })
            })
            .collect()
    }

    /// Expires a guest if still live and still inactive since `inactive_since`:
    /// devices revoked, queues and sessions dropped, and they leave every
    /// conversation no member signed (where members sign, the member who
    /// next syncs removes them with a signed statement). `false` if the
    /// guest was active meanwhile or is already gone.
    pub async fn expire_guest(&self, user: &[u8; 16], inactive_since: i64, now: i64) -> Result<bool, StoreError> {
        let mut tx = self.write().await?;
        let n = sqlx::query(&self.sql(
            "UPDATE users SET expired_at = $1, suspended = 1 \
             WHERE id = $2 AND role = 'guest' AND deleted = 0 AND expired_at IS NULL AND last_active_at < $3",
        ))
        .bind(now)
        .bind(user.to_vec())
        .bind(inactive_since)
        .execute(&mut *tx.tx)
        .await?
        .rows_affected();
        if n == 0 {
            return Ok(false);
        }
        self.drop_devices(&mut tx, user).await?;
        for q in [
            "UPDATE conversations SET membership_seq = membership_seq + 1 WHERE id IN (SELECT conversation_id FROM members WHERE user_id = $1 \
             AND conversation_id NOT IN (SELECT conversation_id FROM membership_statements))",
            "DELETE FROM members WHERE user_id = $1 AND conversation_id NOT IN (SELECT conversation_id FROM membership_statements)",
        ] {
            sqlx::query(&self.sql(q)).bind(user.to_vec()).execute(&mut *tx.tx).await?;
        }
        tx.commit().await?;
        Ok(true)
    }

    /// Whether two users share a conversation (a guest sees only them).
    pub async fn share_conversation(&self, a: &[u8; 16], b: &[u8; 16]) -> Result<bool, StoreError> {
        if a == b {
            return Ok(true);
        }
        let row = sqlx::query(&self.sql(
            "SELECT 1 AS one FROM members x JOIN members y ON y.conversation_id = x.conversation_id \
             WHERE x.user_id = $1 AND y.user_id = $2 LIMIT 1",
        ))
        .bind(a.to_vec())
        .bind(b.to_vec())
        .fetch_optional(&self.pool)
        .await?;
        Ok(row.is_some())
    }

    /// Which of `users` are guests.
    pub async fn guests_among(&self, users: &[[u8; 16]]) -> Result<Vec<[u8; 16]>, StoreError> {
        let mut out = Vec::new();
        for u in users {
            let row = sqlx::query(&self.sql("SELECT 1 AS one FROM users WHERE id = $1 AND role = 'guest'"))
                .bind(u.to_vec())
                .fetch_optional(&self.pool)
                .await?;
            if row.is_some() {
                out.push(*u);
            }
        }
        Ok(out)
    }

    /// Who invited a guest (username), if they are one.
    pub async fn guest_inviter(&self, user: &[u8; 16]) -> Result<Option<String>, StoreError> {
        let row = sqlx::query(&self.sql(
            "SELECT i.username FROM users u JOIN users i ON i.id = u.invited_by WHERE u.id = $1 AND u.role = 'guest'",
        ))
        .bind(user.to_vec())
        .fetch_optional(&self.pool)
        .await?;
        row.map(|r| r.try_get("username").map_err(StoreError::from)).transpose()
    }
}
