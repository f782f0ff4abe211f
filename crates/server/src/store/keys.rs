use sqlx::Row;

use super::{blob, id16, int, Backend, DeviceRef, Store, StoreError, WriteTx};

/// Why a device list upload was refused.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum DeviceListRefusal {
    /// Signed by an identity key other than the one pinned for the user.
    IdentityMismatch,
    /// Not the version after the stored list (0: none stored, so 1).
    NotNext {
        /// Stored version.
        current: u64,
    },
    /// Chained to another list than the stored one.
    WrongPrevious,
    /// Lists as active (or leaves out) a device the stored list revoked.
    Revived([u8; 16]),
    /// Names a device id this account does not own (never logged in with
    /// it, or it belongs to someone else).
    NotOwned([u8; 16]),
}

/// A claimed pre-key.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ClaimedPreKey {
    /// The signed pre-key.
    pub body: Vec<u8>,
    /// One-time keys the device has left, when one was taken; `None` when
    /// this is the medium-term key.
    pub one_time_left: Option<u64>,
}

impl Store {
    /// Stores a verified device list and the device set it names, and keeps
    /// it in the user's list history. The first list pins the user's identity
    /// key; later ones must use the same key, the next version, and name the
    /// stored list's digest (`previous`), so the history is one chain.
    #[allow(clippy::too_many_arguments)]
    pub async fn put_device_list(
        &self,
        network: &[u8; 16],
        user: &[u8; 16],
        identity: &[u8; 32],
        version: u64,
        previous: &[u8; 32],
        body: &[u8],
        devices: &[([u8; 16], bool)],
    ) -> Result<Result<(), DeviceListRefusal>, StoreError> {
        let mut tx = self.write().await?;
        // Only ids this account owns: a list naming anyone else's device
        // (as active or revoked) would touch that device's queue and keys.
        let mut owned_revoked = Vec::new();
        for (device, _) in devices {
            let owner = sqlx::query(
                &self.sql("SELECT revoked FROM devices WHERE device_id = $1 AND user_id = $2 AND network_id = $3"),
            )
            .bind(device.to_vec())
            .bind(user.to_vec())
            .bind(network.to_vec())
            .fetch_optional(&mut *tx.tx)
            .await?;
            match owner {
                None => return Ok(Err(DeviceListRefusal::NotOwned(*device))),
                Some(r) if int(&r, "revoked")? != 0 => owned_revoked.push(*device),
                Some(_) => {}
            }
        }
        let pinned = sqlx::query(&self.sql("SELECT identity_key FROM users WHERE id = $1"))
            .bind(user.to_vec())
            .fetch_one(&mut *tx.tx)
            .await?;
        match pinned.try_get::<Option<Vec<u8>>, _>("identity_key")? {
            Some(k) if k != identity => return Ok(Err(DeviceListRefusal::IdentityMismatch)),
            Some(_) => {}
            None => {
                sqlx::query(&self.sql("UPDATE users SET identity_key = $1 WHERE id = $2"))
                    .bind(identity.to_vec())
                    .bind(user.to_vec())
                    .execute(&mut *tx.tx)
                    .await?;
            }
        }
        let current = sqlx::query(&self.sql("SELECT version, body FROM device_lists WHERE user_id = $1"))
            .bind(user.to_vec())
            .fetch_optional(&mut *tx.tx)
            .await?;
        let version_i = i64::try_from(version).unwrap_or(i64::MAX);
        let cur = current.as_ref().map(|r| int(r, "version")).transpose()?.unwrap_or(0);
        if version_i != cur.saturating_add(1) {
            return Ok(Err(DeviceListRefusal::NotNext { current: u64::try_from(cur).unwrap_or(0) }));
        }
        if let Some(row) = &current {
            let stored = strongroom_crypto::certs::DeviceList::decode(&blob(row, "body")?)
                .map_err(|_| StoreError::Corrupt("stored device list"))?;
            if stored.digest() != *previous {
                return Ok(Err(DeviceListRefusal::WrongPrevious));
            }
            // Peers refuse a list that revives or drops a device revoked
            // before; so does the relay, in this transaction, or the chain
            // would be wedged for everyone.
            use strongroom_crypto::certs::{CertError, DeviceList, DeviceListExpectation};
            use strongroom_crypto::ids::{NetworkId, UserId};
            let expect = DeviceListExpectation {
                network_id: NetworkId::from_bytes(*network),
                user_id: UserId::from_bytes(*user),
                pinned_identity: None,
                seen: None,
            };
            let next = DeviceList::decode(body).map_err(|_| StoreError::Corrupt("device list to store"))?;
            let stored = stored.verify(&expect).map_err(|_| StoreError::Corrupt("stored device list"))?;
            if let Err(CertError::DeviceRevived { device, .. }) = stored.successor(&next) {
                return Ok(Err(DeviceListRefusal::Revived(*device.as_bytes())));
            }
        }
        sqlx::query(&self.sql("INSERT INTO device_list_history (user_id, version, body) VALUES ($1, $2, $3)"))
            .bind(user.to_vec())
            .bind(version_i)
            .bind(body.to_vec())
            .execute(&mut *tx.tx)
            .await?;
        if current.is_some() {
            sqlx::query(&self.sql("UPDATE device_lists SET version = $1, body = $2 WHERE user_id = $3"))
                .bind(version_i)
                .bind(body.to_vec())
                .bind(user.to_vec())
                .execute(&mut *tx.tx)
                .await?;
        } else {
            sqlx::query(&self.sql("INSERT INTO device_lists (user_id, version, body) VALUES ($1, $2, $3)"))
                .bind(user.to_vec())
                .bind(version_i)
                .bind(body.to_vec())
                .execute(&mut *tx.tx)
                .await?;
        }
        sqlx::query(&self.sql("DELETE FROM user_devices WHERE user_id = $1"))
            .bind(user.to_vec())
            .execute(&mut *tx.tx)
            .await?;
        // Devices an administrator wiped stay revoked whatever the list says.
        let wiped: Vec<Vec<u8>> = sqlx::query(&self.sql("SELECT device_id FROM device_wipes WHERE user_id = $1"))
            .bind(user.to_vec())
            .fetch_all(&mut *tx.tx)
            .await?
            .iter()
            .map(|r| r.try_get::<Vec<u8>, _>("device_id"))
            .collect::<Result<_, _>>()?;
        for (device, revoked) in devices {
            // Revocation is final: wiped or once-revoked ids stay revoked whatever the list says.
            let revoked = &(*revoked
                || owned_revoked.contains(device)
                || wiped.iter().any(|w| w.as_slice() == device.as_slice()));
            sqlx::query(&self.sql("INSERT INTO user_devices (user_id, device_id, revoked) VALUES ($1, $2, $3)"))
                .bind(user.to_vec())
                .bind(device.to_vec())
                .bind(i64::from(*revoked))
                .execute(&mut *tx.tx)
                .await?;
            if *revoked {
                // A revoked device receives nothing more and is logged out at once.
                sqlx::query(&self.sql("UPDATE devices SET revoked = 1 WHERE device_id = $1 AND user_id = $2"))
                    .bind(device.to_vec())
                    .bind(user.to_vec())
                    .execute(&mut *tx.tx)
                    .await?;
                sqlx::query(&self.sql("DELETE FROM prekeys WHERE device_id = $1"))
                    .bind(device.to_vec())
                    .execute(&mut *tx.tx)
                    .await?;
                sqlx::query(&self.sql("DELETE FROM sessions WHERE user_id = $1 AND device_id = $2"))
                    .bind(user.to_vec())
                    .bind(device.to_vec())
                    .execute(&mut *tx.tx)
                    .await?;
                sqlx::query(&self.queue_sql("DELETE FROM queue WHERE {device}", "", "$1"))
                    .bind(device.to_vec())
                    .execute(&mut *tx.tx)
                    .await?;
            }
        }
        tx.commit().await?;
        Ok(Ok(()))
    }

    /// Up to `limit` lists of a user's chain after version `after`, oldest
    /// first: what a peer that saw `after` needs to follow to the current one.
    pub async fn device_list_history(
        &self,
        user: &[u8; 16],
        after: u64,
        limit: u32,
    ) -> Result<Vec<Vec<u8>>, StoreError> {
        let rows =
            sqlx::query(&self.sql(
                "SELECT body FROM device_list_history WHERE user_id = $1 AND version > $2 ORDER BY version LIMIT $3",
            ))
            .bind(user.to_vec())
            .bind(i64::try_from(after).unwrap_or(i64::MAX))
            .bind(i64::from(limit))
            .fetch_all(&self.pool)
            .await?;
        rows.iter().map(|r| blob(r, "body")).collect()
    }

    /// The stored device list of a user.
    pub async fn device_list(&self, user: &[u8; 16]) -> Result<Option<Vec<u8>>, StoreError> {
        let row = sqlx::query(&self.sql("SELECT body FROM device_lists WHERE user_id = $1"))
            .bind(user.to_vec())
            .fetch_optional(&self.pool)
            .await?;
        row.map(|r| blob(&r, "body")).transpose()
    }

    /// Whether `device` is an active (listed, not revoked) device of `user`.
    pub async fn device_active(&self, user: &[u8; 16], device: &[u8; 16]) -> Result<bool, StoreError> {
        let row = sqlx::query(
            &self.sql("SELECT 1 AS one FROM user_devices WHERE user_id = $1 AND device_id = $2 AND revoked = 0"),
        )
        .bind(user.to_vec())
        .bind(device.to_vec())
        .fetch_optional(&self.pool)
        .await?;
        Ok(row.is_some())
    }

    /// Active devices of the members of a conversation: (user, device), sorted.
    pub async fn member_devices(
        &self,
        conversation: &[u8; 16],
    ) -> Result<std::sync::Arc<Vec<([u8; 16], [u8; 16])>>, StoreError> {
        let generation = self.cache.generation();
        if let Some(found) = self.cache.member_devices.get(conversation, generation) {
            return Ok(found);
        }
        let rows = sqlx::query(&self.sql(
            "SELECT d.user_id, d.device_id FROM members m JOIN user_devices d ON d.user_id = m.user_id \
             WHERE m.conversation_id = $1 AND d.revoked = 0",
        ))
        .bind(conversation.to_vec())
        .fetch_all(&self.pool)
        .await?;
        let mut v = rows
            .iter()
            .map(|r| Ok((id16(r, "user_id")?, id16(r, "device_id")?)))
            .collect::<Result<Vec<_>, StoreError>>()?;
        v.sort_unstable();
        let v = std::sync::Arc::new(v);
        self.cache.member_devices.put(*conversation, generation, v.clone());
        Ok(v)
    }

    /// Adds signed pre-keys of a device: (kind, id, expires_at, encoded).
    /// Re-uploading an id replaces it.
    pub async fn put_prekeys(&self, owner: &DeviceRef, keys: &[(u8, u32, i64, Vec<u8>)]) -> Result<(), StoreError> {
        let device = &owner.device;
        let mut tx = self.write().await?;
        if !self.owns_active(&mut tx, owner).await? {
            return Err(StoreError::NotOwned);
        }
        for (kind, id, expires_at, body) in keys {
            sqlx::query(&self.sql(
                "INSERT INTO prekeys (device_id, kind, key_id, expires_at, body) VALUES ($1, $2, $3, $4, $5) \
                 ON CONFLICT (device_id, kind, key_id) DO UPDATE SET expires_at = excluded.expires_at, body = excluded.body",
            ))
            .bind(device.to_vec())
            .bind(i64::from(*kind))
            .bind(i64::from(*id))
            .bind(*expires_at)
            .bind(body.clone())
            .execute(&mut *tx.tx)
            .await?;
        }
        tx.commit().await
    }

    /// Takes one of `target`'s one-time pre-keys (if `one_time` and any is
    /// left), else its newest unexpired medium-term pre-key. `None`: none at all.
    pub async fn claim_prekey(
        &self,
        target: &DeviceRef,
        now: i64,
        one_time: bool,
    ) -> Result<Option<ClaimedPreKey>, StoreError> {
        let device = &target.device;
        let claim = match self.backend {
            // Concurrent claimers skip rows another transaction is taking.
            Backend::Postgres => {
                "DELETE FROM prekeys WHERE (device_id, kind, key_id) IN (SELECT device_id, kind, key_id FROM prekeys \
                 WHERE device_id = $1 AND kind = 1 AND expires_at > $2 ORDER BY key_id LIMIT 1 FOR UPDATE SKIP LOCKED) RETURNING body"
            }
            // Writers are serialised by the write lock.
            Backend::Sqlite => {
                "DELETE FROM prekeys WHERE rowid = (SELECT rowid FROM prekeys \
                 WHERE device_id = $1 AND kind = 1 AND expires_at > $2 ORDER BY key_id LIMIT 1) RETURNING body"
            }
        };
        let mut tx = self.write().await?;
        if !self.owns_active(&mut tx, target).await? {
            return Err(StoreError::NotOwned);
        }
        if one_time {
            let taken =
                sqlx::query(&self.sql(claim)).bind(device.to_vec()).bind(now).fetch_optional(&mut *tx.tx).await?;
            if let Some(row) = taken {
                let left = sqlx::query(
                    &self
                        .sql("SELECT COUNT(*) AS n FROM prekeys WHERE device_id = $1 AND kind = 1 AND expires_at > $2"),
                )
                .bind(device.to_vec())
                .bind(now)
                .fetch_one(&mut *tx.tx)
                .await?;
                let left = u64::try_from(int(&left, "n")?).unwrap_or(0);
                tx.commit().await?;
                return Ok(Some(ClaimedPreKey { body: blob(&row, "body")?, one_time_left: Some(left) }));
            }
        }
        tx.commit().await?;
        let row = sqlx::query(&self.sql(
            "SELECT body FROM prekeys WHERE device_id = $1 AND kind = 0 AND expires_at > $2 ORDER BY key_id DESC LIMIT 1",
        ))
        .bind(device.to_vec())
        .bind(now)
        .fetch_optional(&self.pool)
        .await?;
        row.map(|r| Ok(ClaimedPreKey { body: blob(&r, "body")?, one_time_left: None })).transpose()
    }

    /// One-time pre-keys left for each active device of a user.
    pub async fn one_time_counts(&self, user: &[u8; 16]) -> Result<Vec<([u8; 16], u64)>, StoreError> {
        let rows = sqlx::query(&self.sql(
            "SELECT d.device_id, (SELECT COUNT(*) FROM prekeys p WHERE p.device_id = d.device_id AND p.kind = 1) AS n \
             FROM user_devices d WHERE d.user_id = $1 AND d.revoked = 0 ORDER BY d.device_id",
        ))
        .bind(user.to_vec())
        .fetch_all(&self.pool)
        .await?;
        rows.iter().map(|r| Ok((id16(r, "device_id")?, u64::try_from(int(r, "n")?).unwrap_or(0)))).collect()
    }

    /// Whether `d` names an owned, unrevoked device of its account and network.
    async fn owns_active(&self, tx: &mut WriteTx<'_>, d: &DeviceRef) -> Result<bool, StoreError> {
        let row = sqlx::query(&self.sql(
            "SELECT 1 AS one FROM devices WHERE device_id = $1 AND user_id = $2 AND network_id = $3 AND revoked = 0",
        ))
        .bind(d.device.to_vec())
        .bind(d.user.to_vec())
        .bind(d.network.to_vec())
        .fetch_optional(&mut *tx.tx)
        .await?;
        Ok(row.is_some())
    }
}
