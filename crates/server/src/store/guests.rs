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

    /// Unused, unexpired, unrevoked guest invites a member has made.
    pub async fn open_guest_invites(&self, invited_by: &[u8; 16], now: i64) -> Result<i64, StoreError> {
        let row = sqlx::query(&self.sql(
            "SELECT COUNT(*) AS n FROM invites WHERE invited_by = $1 AND guest = 1 AND used_at IS NULL \
             AND revoked = 0 AND expires_at > $2",
        ))
        .bind(invited_by.to_vec())
        .bind(now)
        .fetch_one(&self.pool)
        .await?;
        int(&row, "n")
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

    /// Notes a guest's activity, written only when the last note is older
    /// than `every` ms (nothing cached reads it, so the cache stays).
    /// `false` if the guest has expired (or is gone).
    pub async fn touch_guest(&self, user: &[u8; 16], now: i64, every: i64) -> Result<bool, StoreError> {
        let row = sqlx::query(&self.sql(
            "SELECT last_active_at FROM users WHERE id = $1 AND role = 'guest' AND deleted = 0 AND expired_at IS NULL",
        ))
        .bind(user.to_vec())
        .fetch_optional(&self.pool)
        .await?;
        let Some(row) = row else { return Ok(false) };
        if int(&row, "last_active_at")? >= now - every {
            return Ok(true);
        }
        let mut tx = self.write_queue().await?;
        let n = sqlx::query(
            &self.sql("UPDATE users SET last_active_at = $1 WHERE id = $2 AND role = 'guest' AND expired_at IS NULL"),
        )
        .bind(now)
        .bind(user.to_vec())
        .execute(&mut *tx.tx)
        .await?
        .rows_affected();
        tx.commit().await?;
        Ok(n == 1)
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
        // One query per 500 ids (well under every backend's parameter limit).
        for chunk in users.chunks(500) {
            let marks: Vec<String> = (1..=chunk.len()).map(|i| format!("${i}")).collect();
            let sql = format!("SELECT id FROM users WHERE role = 'guest' AND id IN ({})", marks.join(", "));
            let sql = self.sql(&sql).into_owned();
            let mut q = sqlx::query(&sql);
            for u in chunk {
                q = q.bind(u.to_vec());
            }
            for r in q.fetch_all(&self.pool).await? {
                out.push(id16(&r, "id")?);
            }
        }
        Ok(out)
    }

    /// Whether an unused invite of `network` is a guest's (`None`: no such unused invite).
    pub async fn invite_is_guest(
        &self,
        secret_hash: &[u8; 32],
        network: &[u8; 16],
    ) -> Result<Option<bool>, StoreError> {
        let row = sqlx::query(
            &self.sql("SELECT guest FROM invites WHERE secret_hash = $1 AND network_id = $2 AND used_at IS NULL"),
        )
        .bind(secret_hash.to_vec())
        .bind(network.to_vec())
        .fetch_optional(&self.pool)
        .await?;
        row.map(|r| int(&r, "guest").map(|g| g != 0)).transpose()
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
