//! Administration: users' lifecycle, devices, security groups, network
//! settings, password resets and the hash-chained audit log.

use sqlx::Row;
use strongroom_wire::{AdminDevice, AdminUser, AuditEntry, DeviceId, GroupSettings, SecurityGroup, UserId};

use super::{id16, int, DeviceRef, Store, StoreError};
use crate::error::hex;

fn settings(json: &str) -> Result<GroupSettings, StoreError> {
    serde_json::from_str(json).map_err(|_| StoreError::Corrupt("security group settings"))
}

fn to_json(s: &GroupSettings) -> Result<String, StoreError> {
    serde_json::to_string(s).map_err(|_| StoreError::Corrupt("security group settings"))
}

/// Filters for the audit log.
#[derive(Debug, Default, Clone)]
pub struct AuditQuery {
    /// From (ms, inclusive).
    pub from: Option<i64>,
    /// Until (ms, exclusive).
    pub until: Option<i64>,
    /// By this actor.
    pub actor: Option<String>,
    /// This action.
    pub action: Option<String>,
}

impl Store {
    /// Users of a network, optionally whose name contains `search`.
    pub async fn admin_users(
        &self,
        network: &[u8; 16],
        search: Option<&str>,
        guests_only: bool,
    ) -> Result<Vec<AdminUser>, StoreError> {
        let pattern = format!("%{}%", search.unwrap_or("").replace(['%', '_'], ""));
        let rows = sqlx::query(&self.sql(
            "SELECT u.id, u.username, u.role, u.suspended, u.group_id, u.created_at, u.last_active_at, u.expired_at, \
             i.username AS inviter FROM users u LEFT JOIN users i ON i.id = u.invited_by \
             WHERE u.network_id = $1 AND u.deleted = 0 AND u.username LIKE $2 AND (u.role = 'guest' OR $3 = 0) \
             ORDER BY u.username LIMIT 10000",
        ))
        .bind(network.to_vec())
        .bind(pattern)
        .bind(i64::from(guests_only))
        .fetch_all(&self.pool)
        .await?;
        let devices = sqlx::query(&self.sql(
            "SELECT d.user_id, d.device_id, d.revoked, w.confirmed_at, w.requested_at FROM user_devices d \
             JOIN users u ON u.id = d.user_id LEFT JOIN device_wipes w ON w.device_id = d.device_id AND w.user_id = d.user_id \
             WHERE u.network_id = $1",
        ))
        .bind(network.to_vec())
        .fetch_all(&self.pool)
        .await?;
        let mut out = Vec::with_capacity(rows.len());
        for r in rows {
            let id = id16(&r, "id")?;
            let mut list = Vec::new();
            for d in devices.iter().filter(|d| id16(d, "user_id").ok() == Some(id)) {
                let wipe = match (
                    d.try_get::<Option<i64>, _>("requested_at")?,
                    d.try_get::<Option<i64>, _>("confirmed_at")?,
                ) {
                    (None, _) => "none",
                    (Some(_), None) => "pending",
                    (Some(_), Some(_)) => "confirmed",
                };
                list.push(AdminDevice {
                    device_id: DeviceId::from_bytes(id16(d, "device_id")?),
                    revoked: int(d, "revoked")? != 0,
                    wipe: wipe.into(),
                });
            }
            let role: String = r.try_get("role")?;
            let guest = role == "guest";
            out.push(AdminUser {
                user_id: UserId::from_bytes(id),
                username: r.try_get("username")?,
                invited_by: r.try_get("inviter")?,
                last_active_at: guest
                    .then(|| int(&r, "last_active_at"))
                    .transpose()?
                    .map(|t| u64::try_from(t).unwrap_or(0)),
                expired_at: r.try_get::<Option<i64>, _>("expired_at")?.map(|t| u64::try_from(t).unwrap_or(0)),
                role,
                suspended: int(&r, "suspended")? != 0,
                group_id: r.try_get::<Option<Vec<u8>>, _>("group_id")?.map(|g| hex(&g)),
                devices: list,
                created_at: u64::try_from(int(&r, "created_at")?).unwrap_or(0),
            });
        }
        Ok(out)
    }

    /// A live (not deleted) user's network and name.
    pub async fn live_user(&self, user: &[u8; 16]) -> Result<Option<([u8; 16], String)>, StoreError> {
        let row = sqlx::query(&self.sql("SELECT network_id, username FROM users WHERE id = $1 AND deleted = 0"))
            .bind(user.to_vec())
            .fetch_optional(&self.pool)
            .await?;
        row.map(|r| Ok((id16(&r, "network_id")?, r.try_get("username")?))).transpose()
    }

    /// Whether a user is suspended.
    pub async fn is_suspended(&self, user: &[u8; 16]) -> Result<bool, StoreError> {
        let row = sqlx::query(&self.sql("SELECT suspended FROM users WHERE id = $1"))
            .bind(user.to_vec())
            .fetch_optional(&self.pool)
            .await?;
        Ok(row.map(|r| int(&r, "suspended")).transpose()?.unwrap_or(0) != 0)
    }

    /// A user's devices (ids).
    pub async fn user_devices(&self, user: &[u8; 16]) -> Result<Vec<[u8; 16]>, StoreError> {
        let rows = sqlx::query(&self.sql("SELECT device_id FROM devices WHERE user_id = $1"))
            .bind(user.to_vec())
            .fetch_all(&self.pool)
            .await?;
        rows.iter().map(|r| id16(r, "device_id")).collect()
    }

    /// Devices of a user that are revoked (by the user or an administrator).
    pub async fn revoked_devices(&self, user: &[u8; 16]) -> Result<Vec<[u8; 16]>, StoreError> {
        let rows = sqlx::query(&self.sql("SELECT device_id FROM user_devices WHERE user_id = $1 AND revoked = 1"))
            .bind(user.to_vec())
            .fetch_all(&self.pool)
            .await?;
        rows.iter().map(|r| id16(r, "device_id")).collect()
    }

    /// Suspends or unsuspends a user. Sessions are refused while suspended
    /// (with a message saying so) and work again when lifted.
    /// Suspending ends every session for good: while suspended they are
    /// refused (`account_suspended`, so clients can say why), and
    /// unsuspending deletes them rather than reviving them (the user logs
    /// in again).
    pub async fn set_suspended(&self, user: &[u8; 16], suspended: bool) -> Result<(), StoreError> {
        let mut tx = self.write().await?;
        sqlx::query(&self.sql("UPDATE users SET suspended = $1 WHERE id = $2"))
            .bind(i64::from(suspended))
            .bind(user.to_vec())
            .execute(&mut *tx.tx)
            .await?;
        if !suspended {
            sqlx::query(&self.sql("DELETE FROM sessions WHERE user_id = $1"))
                .bind(user.to_vec())
                .execute(&mut *tx.tx)
                .await?;
        }
        tx.commit().await
    }

    /// Sets a user's role (`user`, `admin`, `auditor`).
    pub async fn set_role(&self, user: &[u8; 16], role: &str) -> Result<(), StoreError> {
        let mut tx = self.write().await?;
        sqlx::query(&self.sql("UPDATE users SET role = $1, admin = $2 WHERE id = $3"))
            .bind(role.to_owned())
            .bind(i64::from(role == "admin"))
            .bind(user.to_vec())
            .execute(&mut *tx.tx)
            .await?;
        tx.commit().await
    }

    pub(super) async fn drop_devices(&self, tx: &mut super::WriteTx<'_>, user: &[u8; 16]) -> Result<(), StoreError> {
        for q in [
            // By the devices' numbers, which the queue's per-device index is keyed by.
            "DELETE FROM queue WHERE device_no IN (SELECT n.no FROM device_numbers n \
             JOIN devices d ON d.device_id = n.device_id WHERE d.user_id = $1)",
            "DELETE FROM prekeys WHERE device_id IN (SELECT device_id FROM devices WHERE user_id = $1)",
            "DELETE FROM device_links WHERE user_id = $1",
            "UPDATE user_devices SET revoked = 1 WHERE user_id = $1",
            "UPDATE devices SET revoked = 1 WHERE user_id = $1",
            "DELETE FROM sessions WHERE user_id = $1",
        ] {
            sqlx::query(&self.sql(q)).bind(user.to_vec()).execute(&mut *tx.tx).await?;
        }
        Ok(())
    }

    /// Deletes a user: every queued message for them is purged, their
    /// devices revoked, sessions ended, and they leave every conversation.
    /// The name is freed; the row stays so history keeps its references.
    pub async fn delete_user(&self, user: &[u8; 16]) -> Result<(), StoreError> {
        let mut tx = self.write().await?;
        self.drop_devices(&mut tx, user).await?;
        for q in [
            "UPDATE conversations SET membership_seq = membership_seq + 1 WHERE id IN (SELECT conversation_id FROM members WHERE user_id = $1)",
            "DELETE FROM members WHERE user_id = $1",
            "DELETE FROM password_resets WHERE user_id = $1",
        ] {
            sqlx::query(&self.sql(q)).bind(user.to_vec()).execute(&mut *tx.tx).await?;
        }
        sqlx::query(&self.sql(
            "UPDATE users SET deleted = 1, suspended = 1, group_id = NULL, username = $1, password_hash = '!' WHERE id = $2",
        ))
        .bind(format!("deleted-{}", hex(user)))
        .bind(user.to_vec())
        .execute(&mut *tx.tx)
        .await?;
        tx.commit().await
    }

    /// Resets every device of a user: revoked, queues dropped, sessions
    /// ended, and the pinned identity cleared so the user can enrol afresh
    /// (with a re-enrolment invite).
    pub async fn reset_devices(&self, user: &[u8; 16]) -> Result<(), StoreError> {
        let mut tx = self.write().await?;
        self.drop_devices(&mut tx, user).await?;
        sqlx::query(&self.sql("DELETE FROM device_lists WHERE user_id = $1"))
            .bind(user.to_vec())
            .execute(&mut *tx.tx)
            .await?;
        // A new identity key starts a new chain at version 1.
        sqlx::query(&self.sql("DELETE FROM device_list_history WHERE user_id = $1"))
            .bind(user.to_vec())
            .execute(&mut *tx.tx)
            .await?;
        sqlx::query(&self.sql("UPDATE users SET identity_key = NULL WHERE id = $1"))
            .bind(user.to_vec())
            .execute(&mut *tx.tx)
            .await?;
        tx.commit().await
    }

    /// Orders a device wiped: revoked and its queue dropped now; its session
    /// survives only to be told and to confirm. `false` unless the device
    /// belongs to that account of that network.
    pub async fn wipe_device(&self, target: &DeviceRef, now: i64) -> Result<bool, StoreError> {
        let mut tx = self.write().await?;
        let known = sqlx::query(
            &self.sql("SELECT 1 AS one FROM devices WHERE device_id = $1 AND user_id = $2 AND network_id = $3"),
        )
        .bind(target.device.to_vec())
        .bind(target.user.to_vec())
        .bind(target.network.to_vec())
        .fetch_optional(&mut *tx.tx)
        .await?;
        if known.is_none() {
            return Ok(false);
        }
        sqlx::query(&self.sql(
            "INSERT INTO device_wipes (device_id, user_id, requested_at) VALUES ($1, $2, $3) ON CONFLICT (device_id) DO NOTHING",
        ))
        .bind(target.device.to_vec())
        .bind(target.user.to_vec())
        .bind(now)
        .execute(&mut *tx.tx)
        .await?;
        for q in [
            "UPDATE user_devices SET revoked = 1 WHERE device_id = $1 AND user_id = $2",
            "UPDATE devices SET revoked = 1 WHERE device_id = $1 AND user_id = $2",
            "DELETE FROM device_links WHERE device_id = $1 AND user_id = $2",
        ] {
            sqlx::query(&self.sql(q))
                .bind(target.device.to_vec())
                .bind(target.user.to_vec())
                .execute(&mut *tx.tx)
                .await?;
        }
        // The device is this account's (checked above): its queue and keys go.
        for q in [
            self.queue_sql("DELETE FROM queue WHERE {device}", "", "$1"),
            self.sql("DELETE FROM prekeys WHERE device_id = $1").into_owned(),
        ] {
            sqlx::query(&q).bind(target.device.to_vec()).execute(&mut *tx.tx).await?;
        }
        tx.commit().await?;
        Ok(true)
    }

    /// Whether the device has a wipe ordered by its own account's
    /// administrators and not yet confirmed.
    pub async fn wipe_pending(&self, d: &DeviceRef) -> Result<bool, StoreError> {
        let row =
            sqlx::query(&self.sql(
                "SELECT 1 AS one FROM device_wipes WHERE device_id = $1 AND user_id = $2 AND confirmed_at IS NULL",
            ))
            .bind(d.device.to_vec())
            .bind(d.user.to_vec())
            .fetch_optional(&self.pool)
            .await?;
        Ok(row.is_some())
    }

    /// The device itself confirms it erased itself; its sessions end.
    /// `false` if no wipe of this account's device was pending.
    pub async fn confirm_wipe(&self, d: &DeviceRef, now: i64) -> Result<bool, StoreError> {
        let mut tx = self.write().await?;
        let n = sqlx::query(&self.sql(
            "UPDATE device_wipes SET confirmed_at = $1 WHERE device_id = $2 AND user_id = $3 AND confirmed_at IS NULL",
        ))
        .bind(now)
        .bind(d.device.to_vec())
        .bind(d.user.to_vec())
        .execute(&mut *tx.tx)
        .await?
        .rows_affected();
        if n == 0 {
            return Ok(false);
        }
        sqlx::query(&self.sql("DELETE FROM sessions WHERE device_id = $1 AND user_id = $2"))
            .bind(d.device.to_vec())
            .bind(d.user.to_vec())
            .execute(&mut *tx.tx)
            .await?;
        tx.commit().await?;
        Ok(true)
    }

    /// Stores a one-time password reset code for a user, ends their
    /// sessions and makes the old password unusable.
    pub async fn create_reset(&self, user: &[u8; 16], code_hash: &[u8; 32], expires_at: i64) -> Result<(), StoreError> {
        let mut tx = self.write().await?;
        sqlx::query(&self.sql("DELETE FROM password_resets WHERE user_id = $1"))
            .bind(user.to_vec())
            .execute(&mut *tx.tx)
            .await?;
        sqlx::query(&self.sql("INSERT INTO password_resets (code_hash, user_id, expires_at) VALUES ($1, $2, $3)"))
            .bind(code_hash.to_vec())
            .bind(user.to_vec())
            .bind(expires_at)
            .execute(&mut *tx.tx)
            .await?;
        sqlx::query(&self.sql("DELETE FROM sessions WHERE user_id = $1"))
            .bind(user.to_vec())
            .execute(&mut *tx.tx)
            .await?;
        // The old password stops working now, not when the code is redeemed
        // (no PHC string is '!': every check against it fails).
        sqlx::query(&self.sql("UPDATE users SET password_hash = '!' WHERE id = $1"))
            .bind(user.to_vec())
            .execute(&mut *tx.tx)
            .await?;
        tx.commit().await
    }

    /// Redeems a reset code for `username` in `network`; false if it is
    /// unknown, used, expired or someone else's.
    pub async fn redeem_reset(
        &self,
        network: &[u8; 16],
        username: &str,
        code_hash: &[u8; 32],
        password_hash: &str,
        now: i64,
    ) -> Result<bool, StoreError> {
        let mut tx = self.write().await?;
        let row = sqlx::query(&self.sql(
            "SELECT r.user_id FROM password_resets r JOIN users u ON u.id = r.user_id \
             WHERE r.code_hash = $1 AND r.expires_at > $2 AND u.network_id = $3 AND u.username = $4 AND u.deleted = 0",
        ))
        .bind(code_hash.to_vec())
        .bind(now)
        .bind(network.to_vec())
        .bind(username.to_owned())
        .fetch_optional(&mut *tx.tx)
        .await?;
        let Some(row) = row else { return Ok(false) };
        let user = id16(&row, "user_id")?;
        sqlx::query(&self.sql("DELETE FROM password_resets WHERE user_id = $1"))
            .bind(user.to_vec())
            .execute(&mut *tx.tx)
            .await?;
        sqlx::query(&self.sql("UPDATE users SET password_hash = $1 WHERE id = $2"))
            .bind(password_hash.to_owned())
            .bind(user.to_vec())
            .execute(&mut *tx.tx)
            .await?;
        tx.commit().await?;
        Ok(true)
    }

    /// Creates a security group; `None` if the name is taken.
    pub async fn create_group(
        &self,
        network: &[u8; 16],
        id: &[u8; 16],
        name: &str,
        s: &GroupSettings,
        now: i64,
    ) -> Result<bool, StoreError> {
        let mut tx = self.write().await?;
        let n = sqlx::query(&self.sql(
            "INSERT INTO security_groups (id, network_id, name, settings, created_at) VALUES ($1, $2, $3, $4, $5) \
             ON CONFLICT (network_id, name) DO NOTHING",
        ))
        .bind(id.to_vec())
        .bind(network.to_vec())
        .bind(name.to_owned())
        .bind(to_json(s)?)
        .bind(now)
        .execute(&mut *tx.tx)
        .await?
        .rows_affected();
        tx.commit().await?;
        Ok(n == 1)
    }

    /// A network's security groups with their member counts.
    pub async fn groups(&self, network: &[u8; 16]) -> Result<Vec<SecurityGroup>, StoreError> {
        let rows = sqlx::query(&self.sql(
            "SELECT g.id, g.name, g.settings, (SELECT COUNT(*) FROM users u WHERE u.group_id = g.id AND u.deleted = 0) AS members \
             FROM security_groups g WHERE g.network_id = $1 ORDER BY g.name",
        ))
        .bind(network.to_vec())
        .fetch_all(&self.pool)
        .await?;
        rows.iter()
            .map(|r| {
                Ok(SecurityGroup {
                    id: hex(&id16(r, "id")?),
                    name: r.try_get("name")?,
                    settings: settings(&r.try_get::<String, _>("settings")?)?,
                    members: u64::try_from(int(r, "members")?).unwrap_or(0),
                })
            })
            .collect()
    }

    /// Changes a group's name and settings; false if it is not in the network (or the name is taken).
    pub async fn update_group(
        &self,
        network: &[u8; 16],
        id: &[u8; 16],
        name: &str,
        s: &GroupSettings,
    ) -> Result<bool, StoreError> {
        let mut tx = self.write().await?;
        let taken = sqlx::query(
            &self.sql("SELECT 1 AS one FROM security_groups WHERE network_id = $1 AND name = $2 AND id <> $3"),
        )
        .bind(network.to_vec())
        .bind(name.to_owned())
        .bind(id.to_vec())
        .fetch_optional(&mut *tx.tx)
        .await?;
        if taken.is_some() {
            return Ok(false);
        }
        let n = sqlx::query(
            &self.sql("UPDATE security_groups SET name = $1, settings = $2 WHERE id = $3 AND network_id = $4"),
        )
        .bind(name.to_owned())
        .bind(to_json(s)?)
        .bind(id.to_vec())
        .bind(network.to_vec())
        .execute(&mut *tx.tx)
        .await?
        .rows_affected();
        tx.commit().await?;
        Ok(n == 1)
    }

    /// Deletes a group; its members fall back to the network's defaults.
    pub async fn delete_group(&self, network: &[u8; 16], id: &[u8; 16]) -> Result<bool, StoreError> {
        let mut tx = self.write().await?;
        sqlx::query(&self.sql("UPDATE users SET group_id = NULL WHERE group_id = $1 AND network_id = $2"))
            .bind(id.to_vec())
            .bind(network.to_vec())
            .execute(&mut *tx.tx)
            .await?;
        let n = sqlx::query(&self.sql("DELETE FROM security_groups WHERE id = $1 AND network_id = $2"))
            .bind(id.to_vec())
            .bind(network.to_vec())
            .execute(&mut *tx.tx)
            .await?
            .rows_affected();
        tx.commit().await?;
        Ok(n == 1)
    }

    /// Puts a user in a group of their network (or none); false if the
    /// group or the user is not in that network.
    pub async fn assign_group(
        &self,
        network: &[u8; 16],
        user: &[u8; 16],
        group: Option<&[u8; 16]>,
    ) -> Result<bool, StoreError> {
        let mut tx = self.write().await?;
        if let Some(g) = group {
            let found =
                sqlx::query(&self.sql("SELECT 1 AS one FROM security_groups WHERE id = $1 AND network_id = $2"))
                    .bind(g.to_vec())
                    .bind(network.to_vec())
                    .fetch_optional(&mut *tx.tx)
                    .await?;
            if found.is_none() {
                return Ok(false);
            }
        }
        let n = sqlx::query(&self.sql("UPDATE users SET group_id = $1 WHERE id = $2 AND network_id = $3"))
            .bind(group.map(|g| g.to_vec()))
            .bind(user.to_vec())
            .bind(network.to_vec())
            .execute(&mut *tx.tx)
            .await?
            .rows_affected();
        tx.commit().await?;
        Ok(n == 1)
    }

    /// The network's default settings (for users in no group); `None` until
    /// an administrator sets them (the server's configuration applies).
    pub async fn network_settings(&self, network: &[u8; 16]) -> Result<Option<GroupSettings>, StoreError> {
        let row = sqlx::query(&self.sql("SELECT settings FROM network_settings WHERE network_id = $1"))
            .bind(network.to_vec())
            .fetch_optional(&self.pool)
            .await?;
        row.map(|r| settings(&r.try_get::<String, _>("settings")?)).transpose()
    }

    /// Replaces the network's default settings.
    pub async fn set_network_settings(&self, network: &[u8; 16], s: &GroupSettings) -> Result<(), StoreError> {
        let mut tx = self.write().await?;
        sqlx::query(&self.sql(
            "INSERT INTO network_settings (network_id, settings) VALUES ($1, $2) \
             ON CONFLICT (network_id) DO UPDATE SET settings = excluded.settings",
        ))
        .bind(network.to_vec())
        .bind(to_json(s)?)
        .execute(&mut *tx.tx)
        .await?;
        tx.commit().await
    }

    /// What applies to a user: their group's settings, else the network's;
    /// `None` when neither is set.
    pub async fn effective_settings(&self, user: &[u8; 16]) -> Result<Option<GroupSettings>, StoreError> {
        let generation = self.cache.generation();
        if let Some(found) = self.cache.settings.get(user, generation) {
            return Ok(found);
        }
        // One statement: the group's settings, else the network's (this runs on every send).
        let row = sqlx::query(&self.sql(
            "SELECT COALESCE(g.settings, n.settings) AS settings FROM users u \
             LEFT JOIN security_groups g ON g.id = u.group_id \
             LEFT JOIN network_settings n ON n.network_id = u.network_id WHERE u.id = $1",
        ))
        .bind(user.to_vec())
        .fetch_optional(&self.pool)
        .await?;
        let found = match row {
            Some(r) => r.try_get::<Option<String>, _>("settings")?.map(|s| settings(&s)).transpose()?,
            None => None,
        };
        self.cache.settings.put(*user, generation, found.clone());
        Ok(found)
    }

    /// Retention periods (days) by user, for users whose group sets one.
    pub async fn retention_periods(&self, network: &[u8; 16]) -> Result<Vec<([u8; 16], u32)>, StoreError> {
        let rows = sqlx::query(&self.sql(
            "SELECT u.id, g.settings FROM users u JOIN security_groups g ON g.id = u.group_id WHERE u.network_id = $1",
        ))
        .bind(network.to_vec())
        .fetch_all(&self.pool)
        .await?;
        let mut out = Vec::new();
        for r in rows {
            let days = settings(&r.try_get::<String, _>("settings")?)?.retention_days;
            if days > 0 {
                out.push((id16(&r, "id")?, days));
            }
        }
        Ok(out)
    }

    /// Records a retention device's latest signed checkpoint (if newer).
    pub async fn put_retention_checkpoint(
        &self,
        network: &[u8; 16],
        device: &[u8; 16],
        tree_size: i64,
        root: &[u8; 32],
        signed_at: i64,
        now: i64,
    ) -> Result<(), StoreError> {
        let mut tx = self.write().await?;
        sqlx::query(&self.sql(
            "INSERT INTO retention_checkpoints (network_id, device_id, tree_size, root, signed_at, received_at) \
             VALUES ($1, $2, $3, $4, $5, $6) ON CONFLICT (network_id, device_id) DO UPDATE SET \
             tree_size = excluded.tree_size, root = excluded.root, signed_at = excluded.signed_at, received_at = excluded.received_at \
             WHERE excluded.tree_size >= retention_checkpoints.tree_size",
        ))
        .bind(network.to_vec())
        .bind(device.to_vec())
        .bind(tree_size)
        .bind(root.to_vec())
        .bind(signed_at)
        .bind(now)
        .execute(&mut *tx.tx)
        .await?;
        tx.commit().await
    }

    /// Latest checkpoint per retention device of a network: (device, size, root, signed at).
    pub async fn retention_checkpoints(
        &self,
        network: &[u8; 16],
    ) -> Result<Vec<([u8; 16], u64, [u8; 32], u64)>, StoreError> {
        let rows = sqlx::query(
            &self.sql("SELECT device_id, tree_size, root, signed_at FROM retention_checkpoints WHERE network_id = $1"),
        )
        .bind(network.to_vec())
        .fetch_all(&self.pool)
        .await?;
        rows.iter()
            .map(|r| {
                let root: Vec<u8> = r.try_get("root")?;
                Ok((
                    id16(r, "device_id")?,
                    u64::try_from(int(r, "tree_size")?).unwrap_or(0),
                    <[u8; 32]>::try_from(root.as_slice()).map_err(|_| StoreError::Corrupt("checkpoint root"))?,
                    u64::try_from(int(r, "signed_at")?).unwrap_or(0),
                ))
            })
            .collect()
    }

    /// Appends to the network's audit log, chaining the hash.
    #[allow(clippy::too_many_arguments)]
    pub async fn audit(
        &self,
        network: &[u8; 16],
        actor: &str,
        action: &str,
        target: &str,
        source: &str,
        details: &str,
        now: i64,
    ) -> Result<(), StoreError> {
        let mut tx = self.write().await?;
        if self.backend == super::Backend::Postgres {
            // One appender per network at a time, across server processes.
            sqlx::query("SELECT pg_advisory_xact_lock(hashtext($1))").bind(hex(network)).execute(&mut *tx.tx).await?;
        }
        let last =
            sqlx::query(&self.sql("SELECT seq, hash FROM audit_log WHERE network_id = $1 ORDER BY seq DESC LIMIT 1"))
                .bind(network.to_vec())
                .fetch_optional(&mut *tx.tx)
                .await?;
        let (seq, prev) = match last {
            Some(r) => {
                let h: Vec<u8> = r.try_get("hash")?;
                (
                    int(&r, "seq")? + 1,
                    <[u8; 32]>::try_from(h.as_slice()).map_err(|_| StoreError::Corrupt("audit hash"))?,
                )
            }
            None => (1, [0u8; 32]),
        };
        let mut entry = AuditEntry {
            seq: u64::try_from(seq).unwrap_or(0),
            at: u64::try_from(now).unwrap_or(0),
            actor: actor.into(),
            action: action.into(),
            target: target.into(),
            source: source.into(),
            details: details.into(),
            prev_hash: hex(&prev),
            hash: String::new(),
        };
        let hash = entry.compute_hash(&prev);
        entry.hash = hex(&hash);
        sqlx::query(&self.sql(
            "INSERT INTO audit_log (network_id, seq, at, actor, action, target, source, details, prev_hash, hash) \
             VALUES ($1, $2, $3, $4, $5, $6, $7, $8, $9, $10)",
        ))
        .bind(network.to_vec())
        .bind(seq)
        .bind(now)
        .bind(entry.actor)
        .bind(entry.action)
        .bind(entry.target)
        .bind(entry.source)
        .bind(entry.details)
        .bind(prev.to_vec())
        .bind(hash.to_vec())
        .execute(&mut *tx.tx)
        .await?;
        tx.commit().await
    }

    /// Audit entries of a network, oldest first, filtered.
    pub async fn audit_entries(&self, network: &[u8; 16], q: &AuditQuery) -> Result<Vec<AuditEntry>, StoreError> {
        let rows = sqlx::query(&self.sql(
            "SELECT seq, at, actor, action, target, source, details, prev_hash, hash FROM audit_log \
             WHERE network_id = $1 AND at >= $2 AND at < $3 ORDER BY seq",
        ))
        .bind(network.to_vec())
        .bind(q.from.unwrap_or(0))
        .bind(q.until.unwrap_or(i64::MAX))
        .fetch_all(&self.pool)
        .await?;
        let mut out = Vec::with_capacity(rows.len());
        for r in rows {
            let e = AuditEntry {
                seq: u64::try_from(int(&r, "seq")?).unwrap_or(0),
                at: u64::try_from(int(&r, "at")?).unwrap_or(0),
                actor: r.try_get("actor")?,
                action: r.try_get("action")?,
                target: r.try_get("target")?,
                source: r.try_get("source")?,
                details: r.try_get("details")?,
                prev_hash: hex(&r.try_get::<Vec<u8>, _>("prev_hash")?),
                hash: hex(&r.try_get::<Vec<u8>, _>("hash")?),
            };
            if q.actor.as_deref().is_some_and(|a| a != e.actor)
                || q.action.as_deref().is_some_and(|a| !e.action.starts_with(a))
            {
                continue;
            }
            out.push(e);
        }
        Ok(out)
    }
}
