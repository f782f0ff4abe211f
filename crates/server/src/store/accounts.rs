use std::collections::HashSet;

use sqlx::Row;

use super::{blob, id16, int, DeviceClaim, DeviceRef, Store, StoreError, RETENTION_OWNER};

/// The device id web console sessions carry (reserved: no device can claim it).
pub const CONSOLE_DEVICE: [u8; 16] = [0xcc; 16];

/// Token hashes asked about in one statement by [`Store::live_sessions`].
const LIVE_SESSIONS_CHUNK: usize = 200;

/// What a new session is bound to.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum SessionDevice {
    /// A device of the account (claimed at this login if new).
    Device(DeviceRef),
    /// The web console, for an administrator or auditor.
    Console {
        /// The account.
        user: [u8; 16],
    },
}

/// A user as the login path needs it.
#[derive(Debug, Clone)]
pub struct UserRow {
    /// User id.
    pub id: [u8; 16],
    /// Network.
    pub network_id: [u8; 16],
    /// Argon2id PHC string.
    pub password_hash: String,
    /// Administrator.
    pub admin: bool,
}

/// An authenticated session.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct SessionRow {
    /// User.
    pub user_id: [u8; 16],
    /// Device the token is bound to.
    pub device_id: [u8; 16],
    /// The user's network.
    pub network_id: [u8; 16],
    /// Administrator.
    pub admin: bool,
    /// Read-only administrator (auditor).
    pub auditor: bool,
    /// Suspended: every request is refused.
    pub suspended: bool,
    /// A guest: limited to the conversations they were added to.
    pub guest: bool,
    /// An administrator ordered this device wiped (not yet confirmed).
    pub wipe_pending: bool,
}

impl SessionRow {
    /// The session's device as its owner (checked against `devices` when
    /// the session was read).
    pub fn device_ref(&self) -> DeviceRef {
        DeviceRef { network: self.network_id, user: self.user_id, device: self.device_id }
    }
}

/// What a retention device's login did.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum RetentionLoginOutcome {
    /// A session was made.
    Session,
    /// The nonce was used before.
    Replayed,
    /// The device id belongs to an account or another network.
    NotOwned,
}

/// What registering with an invite did.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum LoginOutcome {
    /// The account exists; its network.
    Registered([u8; 16]),
    /// The invite is unknown, used, revoked or expired.
    BadInvite,
    /// The username is taken in that network.
    UsernameTaken,
    /// A re-enrolment invite was used: the existing account (network, user) gets a new password.
    Reenrolled([u8; 16], [u8; 16]),
    /// A re-enrolment invite used with another username.
    WrongUser,
}

impl Store {
    /// Uses an invite and creates the account, atomically.
    pub async fn register(
        &self,
        invite_hash: &[u8; 32],
        user_id: &[u8; 16],
        username: &str,
        password_hash: &str,
        now: i64,
    ) -> Result<LoginOutcome, StoreError> {
        let mut tx = self.write().await?;
        let invite = sqlx::query(&self.sql(
            "UPDATE invites SET used_at = $1 WHERE secret_hash = $2 AND used_at IS NULL AND revoked = 0 AND expires_at > $3 \
             RETURNING network_id, admin, user_id, guest, invited_by, group_id",
        ))
        .bind(now)
        .bind(invite_hash.to_vec())
        .bind(now)
        .fetch_optional(&mut *tx.tx)
        .await?;
        let Some(invite) = invite else { return Ok(LoginOutcome::BadInvite) };
        let network = id16(&invite, "network_id")?;
        let admin = int(&invite, "admin")?;
        let guest = int(&invite, "guest")? != 0;
        let invited_by = invite.try_get::<Option<Vec<u8>>, _>("invited_by")?;
        let group = invite.try_get::<Option<Vec<u8>>, _>("group_id")?;
        if let Some(existing) = invite.try_get::<Option<Vec<u8>>, _>("user_id")? {
            let n = sqlx::query(
                &self.sql("UPDATE users SET password_hash = $1 WHERE id = $2 AND username = $3 AND deleted = 0"),
            )
            .bind(password_hash.to_owned())
            .bind(existing.clone())
            .bind(username.to_owned())
            .execute(&mut *tx.tx)
            .await?
            .rows_affected();
            if n == 0 {
                return Ok(LoginOutcome::WrongUser);
            }
            tx.commit().await?;
            let user: [u8; 16] = existing.as_slice().try_into().map_err(|_| StoreError::Corrupt("invite user"))?;
            return Ok(LoginOutcome::Reenrolled(network, user));
        }
        let inserted = sqlx::query(&self.sql(
            "INSERT INTO users (id, network_id, username, password_hash, admin, role, failed_logins, locked_until, created_at, \
             invited_by, group_id, last_active_at) \
             VALUES ($1, $2, $3, $4, $5, $6, 0, 0, $7, $8, $9, $7) ON CONFLICT (network_id, username) DO NOTHING",
        ))
        .bind(user_id.to_vec())
        .bind(network.to_vec())
        .bind(username.to_owned())
        .bind(password_hash.to_owned())
        .bind(admin)
        .bind(match (admin != 0, guest) {
            (_, true) => "guest",
            (true, false) => "admin",
            (false, false) => "user",
        })
        .bind(now)
        .bind(invited_by)
        .bind(group)
        .execute(&mut *tx.tx)
        .await?
        .rows_affected();
        if inserted == 0 {
            // Dropping the transaction rolls the invite back: it stays usable.
            return Ok(LoginOutcome::UsernameTaken);
        }
        tx.commit().await?;
        Ok(LoginOutcome::Registered(network))
    }

    /// Looks a user up by network and name.
    pub async fn user_by_name(&self, network: &[u8; 16], username: &str) -> Result<Option<UserRow>, StoreError> {
        let row = sqlx::query(
            &self.sql("SELECT id, network_id, password_hash, admin FROM users WHERE network_id = $1 AND username = $2"),
        )
        .bind(network.to_vec())
        .bind(username.to_owned())
        .fetch_optional(&self.pool)
        .await?;
        row.map(|r| {
            Ok(UserRow {
                id: id16(&r, "id")?,
                network_id: id16(&r, "network_id")?,
                password_hash: r.try_get("password_hash")?,
                admin: int(&r, "admin")? != 0,
            })
        })
        .transpose()
    }

    /// After a successful password check: claims the device id for the
    /// account (see `devices.rs`) and, if it may be used, creates the
    /// session, in one transaction. (Failed logins are counted in
    /// `login_throttle.rs`; the users table's old lockout columns are unused.)
    pub async fn login_succeeded(
        &self,
        token_hash: &[u8; 32],
        device: SessionDevice,
        now: i64,
        expires_at: i64,
    ) -> Result<DeviceClaim, StoreError> {
        let mut tx = self.write().await?;
        let (user, device_id, claim) = match device {
            SessionDevice::Device(d) => (d.user, d.device, self.claim_device(&mut tx, &d, now).await?),
            SessionDevice::Console { user } => (user, CONSOLE_DEVICE, DeviceClaim::Owned),
        };
        if !claim.allowed() {
            return Ok(claim);
        }
        sqlx::query(&self.sql(
            "INSERT INTO sessions (token_hash, user_id, device_id, created_at, expires_at) VALUES ($1, $2, $3, $4, $5)",
        ))
        .bind(token_hash.to_vec())
        .bind(user.to_vec())
        .bind(device_id.to_vec())
        .bind(now)
        .bind(expires_at)
        .execute(&mut *tx.tx)
        .await?;
        tx.commit().await?;
        Ok(claim)
    }

    /// The session for a token hash, if valid at `now` (every request asks:
    /// remembered until the next write, see `cache.rs`).
    pub async fn session(&self, token_hash: &[u8; 32], now: i64) -> Result<Option<SessionRow>, StoreError> {
        let generation = self.cache.generation();
        if let Some((session, expires_at)) = self.cache.sessions.get(token_hash, generation) {
            return Ok((expires_at > now).then_some(session));
        }
        let found = self.session_uncached(token_hash, now).await?;
        if let Some(found) = found {
            self.cache.sessions.put(*token_hash, generation, found);
        }
        Ok(found.map(|(s, _)| s))
    }

    async fn session_uncached(&self, token_hash: &[u8; 32], now: i64) -> Result<Option<(SessionRow, i64)>, StoreError> {
        let row = sqlx::query(&self.sql(
            "SELECT s.user_id, s.device_id, s.expires_at, u.network_id, u.admin, u.role, u.suspended, \
             (SELECT COUNT(*) FROM device_wipes w WHERE w.device_id = s.device_id AND w.user_id = s.user_id \
              AND w.confirmed_at IS NULL) AS wiping \
             FROM sessions s JOIN users u ON u.id = s.user_id \
             WHERE s.token_hash = $1 AND s.expires_at > $2 AND u.deleted = 0 AND u.expired_at IS NULL \
             AND (s.device_id = $3 OR EXISTS (SELECT 1 FROM devices d WHERE d.device_id = s.device_id \
                  AND d.user_id = s.user_id AND d.network_id = u.network_id AND (d.revoked = 0 OR EXISTS \
                  (SELECT 1 FROM device_wipes w WHERE w.device_id = s.device_id AND w.user_id = s.user_id \
                   AND w.confirmed_at IS NULL))))",
        ))
        .bind(token_hash.to_vec())
        .bind(now)
        .bind(CONSOLE_DEVICE.to_vec())
        .fetch_optional(&self.pool)
        .await?;
        if let Some(r) = row {
            let session = SessionRow {
                user_id: id16(&r, "user_id")?,
                device_id: id16(&r, "device_id")?,
                network_id: id16(&r, "network_id")?,
                admin: int(&r, "admin")? != 0,
                auditor: r.try_get::<String, _>("role")? == "auditor",
                suspended: int(&r, "suspended")? != 0,
                guest: r.try_get::<String, _>("role")? == "guest",
                wipe_pending: int(&r, "wiping")? != 0,
            };
            return Ok(Some((session, int(&r, "expires_at")?)));
        }
        let row = sqlx::query(&self.sql(
            "SELECT r.device_id, r.network_id, r.expires_at FROM retention_sessions r \
             JOIN devices d ON d.device_id = r.device_id AND d.network_id = r.network_id AND d.user_id = $3 \
             WHERE r.token_hash = $1 AND r.expires_at > $2",
        ))
        .bind(token_hash.to_vec())
        .bind(now)
        .bind(RETENTION_OWNER.to_vec())
        .fetch_optional(&self.pool)
        .await?;
        row.map(|r| {
            let session = SessionRow {
                user_id: RETENTION_OWNER,
                device_id: id16(&r, "device_id")?,
                network_id: id16(&r, "network_id")?,
                admin: false,
                auditor: false,
                suspended: false,
                guest: false,
                wipe_pending: false,
            };
            Ok((session, int(&r, "expires_at")?))
        })
        .transpose()
    }

    /// Of `hashes`, the user sessions a socket may go on with at `now`: not
    /// ended or expired, the user neither suspended nor deleted, the device
    /// neither removed nor being wiped. What [`Store::session`] answers,
    /// for many at once (the sweep of open sockets, `service/socket_sweep.rs`).
    pub async fn live_sessions(&self, hashes: &[[u8; 32]], now: i64) -> Result<HashSet<[u8; 32]>, StoreError> {
        let mut live = HashSet::with_capacity(hashes.len());
        for chunk in hashes.chunks(LIVE_SESSIONS_CHUNK) {
            let list: Vec<String> = (0..chunk.len()).map(|i| format!("${}", i + 3)).collect();
            let q = format!(
                "SELECT s.token_hash FROM sessions s JOIN users u ON u.id = s.user_id \
                 WHERE s.token_hash IN ({}) AND s.expires_at > $1 AND u.deleted = 0 AND u.expired_at IS NULL \
                 AND u.suspended = 0 AND NOT EXISTS (SELECT 1 FROM device_wipes w WHERE w.device_id = s.device_id \
                  AND w.user_id = s.user_id AND w.confirmed_at IS NULL) \
                 AND (s.device_id = $2 OR EXISTS (SELECT 1 FROM devices d WHERE d.device_id = s.device_id \
                  AND d.user_id = s.user_id AND d.network_id = u.network_id AND d.revoked = 0))",
                list.join(", ")
            );
            let sql = self.sql(&q);
            let mut query = sqlx::query(&sql).bind(now).bind(CONSOLE_DEVICE.to_vec());
            for h in chunk {
                query = query.bind(h.to_vec());
            }
            for r in query.fetch_all(&self.pool).await? {
                let hash: Vec<u8> = r.try_get("token_hash")?;
                if let Ok(h) = <[u8; 32]>::try_from(hash.as_slice()) {
                    live.insert(h);
                }
            }
        }
        Ok(live)
    }

    /// Records a retention device's login nonce (false if it was used
    /// before) and creates its session.
    pub async fn retention_login(
        &self,
        nonce: &[u8; 16],
        network: &[u8; 16],
        device: &[u8; 16],
        token_hash: &[u8; 32],
        now: i64,
        expires_at: i64,
    ) -> Result<RetentionLoginOutcome, StoreError> {
        let mut tx = self.write().await?;
        // Named by the current policy (checked by the caller), so reserved
        // for this network's retention service unless something else owns it.
        if self.reserve_retention_devices(&mut tx, network, &[*device], now).await?.is_some() {
            return Ok(RetentionLoginOutcome::NotOwned);
        }
        sqlx::query(&self.sql("DELETE FROM retention_logins WHERE expires_at < $1"))
            .bind(now)
            .execute(&mut *tx.tx)
            .await?;
        let seen = sqlx::query(&self.sql("SELECT 1 AS x FROM retention_logins WHERE nonce = $1"))
            .bind(nonce.to_vec())
            .fetch_optional(&mut *tx.tx)
            .await?;
        if seen.is_some() {
            return Ok(RetentionLoginOutcome::Replayed);
        }
        // Nonces are kept a day: longer than the timestamp window.
        sqlx::query(&self.sql("INSERT INTO retention_logins (nonce, expires_at) VALUES ($1, $2)"))
            .bind(nonce.to_vec())
            .bind(now + 86_400_000)
            .execute(&mut *tx.tx)
            .await?;
        sqlx::query(&self.sql(
            "INSERT INTO retention_sessions (token_hash, network_id, device_id, created_at, expires_at) \
             VALUES ($1, $2, $3, $4, $5)",
        ))
        .bind(token_hash.to_vec())
        .bind(network.to_vec())
        .bind(device.to_vec())
        .bind(now)
        .bind(expires_at)
        .execute(&mut *tx.tx)
        .await?;
        tx.commit().await?;
        Ok(RetentionLoginOutcome::Session)
    }

    /// Deletes sessions (account and retention) that expired before `now`;
    /// returns how many.
    pub async fn purge_sessions(&self, now: i64) -> Result<u64, StoreError> {
        let mut tx = self.write_queue().await?;
        let mut n = 0;
        for q in ["DELETE FROM sessions WHERE expires_at < $1", "DELETE FROM retention_sessions WHERE expires_at < $1"]
        {
            n += sqlx::query(&self.sql(q)).bind(now).execute(&mut *tx.tx).await?.rows_affected();
        }
        tx.commit().await?;
        Ok(n)
    }

    /// Extends a session (the web console's idle timeout).
    pub async fn touch_session(&self, token_hash: &[u8; 32], expires_at: i64) -> Result<(), StoreError> {
        let mut tx = self.write().await?;
        sqlx::query(&self.sql("UPDATE sessions SET expires_at = $1 WHERE token_hash = $2"))
            .bind(expires_at)
            .bind(token_hash.to_vec())
            .execute(&mut *tx.tx)
            .await?;
        tx.commit().await
    }

    /// Ends one session.
    pub async fn logout(&self, token_hash: &[u8; 32]) -> Result<(), StoreError> {
        let mut tx = self.write().await?;
        sqlx::query(&self.sql("DELETE FROM sessions WHERE token_hash = $1"))
            .bind(token_hash.to_vec())
            .execute(&mut *tx.tx)
            .await?;
        tx.commit().await
    }

    /// Sets a new password hash and ends every other session of the user.
    pub async fn set_password(&self, user: &[u8; 16], hash: &str, keep_session: &[u8; 32]) -> Result<(), StoreError> {
        let mut tx = self.write().await?;
        sqlx::query(&self.sql("UPDATE users SET password_hash = $1 WHERE id = $2"))
            .bind(hash.to_owned())
            .bind(user.to_vec())
            .execute(&mut *tx.tx)
            .await?;
        sqlx::query(&self.sql("DELETE FROM sessions WHERE user_id = $1 AND token_hash <> $2"))
            .bind(user.to_vec())
            .bind(keep_session.to_vec())
            .execute(&mut *tx.tx)
            .await?;
        tx.commit().await
    }

    /// The password hash of a user.
    pub async fn password_hash(&self, user: &[u8; 16]) -> Result<Option<String>, StoreError> {
        let row = sqlx::query(&self.sql("SELECT password_hash FROM users WHERE id = $1"))
            .bind(user.to_vec())
            .fetch_optional(&self.pool)
            .await?;
        Ok(row.map(|r| r.try_get("password_hash")).transpose()?)
    }

    /// A user's id and name, looked up by either, within a network.
    pub async fn find_user(
        &self,
        network: &[u8; 16],
        id: Option<&[u8; 16]>,
        username: Option<&str>,
    ) -> Result<Option<strongroom_wire::UserInfo>, StoreError> {
        let row =
            match (id, username) {
                (Some(id), _) => {
                    sqlx::query(
                        &self.sql("SELECT id, username, role, expired_at FROM users WHERE network_id = $1 AND id = $2"),
                    )
                    .bind(network.to_vec())
                    .bind(id.to_vec())
                    .fetch_optional(&self.pool)
                    .await?
                }
                (None, Some(name)) => {
                    sqlx::query(&self.sql(
                        "SELECT id, username, role, expired_at FROM users WHERE network_id = $1 AND username = $2",
                    ))
                    .bind(network.to_vec())
                    .bind(name.to_owned())
                    .fetch_optional(&self.pool)
                    .await?
                }
                (None, None) => None,
            };
        row.map(|r| {
            Ok(strongroom_wire::UserInfo {
                user_id: strongroom_wire::UserId::from_bytes(id16(&r, "id")?),
                username: r.try_get("username")?,
                guest: r.try_get::<String, _>("role")? == "guest",
                expired: r.try_get::<Option<i64>, _>("expired_at")?.is_some(),
            })
        })
        .transpose()
    }

    /// The network of a user, if the user exists.
    pub async fn user_network(&self, user: &[u8; 16]) -> Result<Option<[u8; 16]>, StoreError> {
        let row = sqlx::query(&self.sql("SELECT network_id FROM users WHERE id = $1"))
            .bind(user.to_vec())
            .fetch_optional(&self.pool)
            .await?;
        row.map(|r| id16(&r, "network_id")).transpose()
    }

    /// The pinned identity key of a user.
    pub async fn identity_key(&self, user: &[u8; 16]) -> Result<Option<Vec<u8>>, StoreError> {
        let row = sqlx::query(&self.sql("SELECT identity_key FROM users WHERE id = $1"))
            .bind(user.to_vec())
            .fetch_optional(&self.pool)
            .await?;
        Ok(row.and_then(|r| blob(&r, "identity_key").ok()))
    }
}
