use sqlx::Row;

use super::{blob, int, Store, StoreError};

impl Store {
    /// The hash of the operator's bootstrap secret, if one was set.
    pub async fn bootstrap_hash(&self) -> Result<Option<Vec<u8>>, StoreError> {
        let row = sqlx::query(&self.sql("SELECT value FROM server_meta WHERE key = 'bootstrap'"))
            .fetch_optional(&self.pool)
            .await?;
        row.map(|r| blob(&r, "value")).transpose()
    }

    /// Records the bootstrap secret's hash unless one exists; returns whether it was set.
    pub async fn init_bootstrap_hash(&self, hash: &[u8]) -> Result<bool, StoreError> {
        let mut tx = self.write().await?;
        let done = sqlx::query(
            &self.sql("INSERT INTO server_meta (key, value) VALUES ('bootstrap', $1) ON CONFLICT (key) DO NOTHING"),
        )
        .bind(hash.to_vec())
        .execute(&mut *tx.tx)
        .await?
        .rows_affected()
            == 1;
        tx.commit().await?;
        Ok(done)
    }

    /// Replaces the bootstrap secret's hash `old` by `new`; `false` if `old`
    /// is not (or no longer) the current one: each secret works once.
    pub async fn rotate_bootstrap_hash(&self, old: &[u8], new: &[u8]) -> Result<bool, StoreError> {
        let mut tx = self.write().await?;
        let done = sqlx::query(&self.sql("UPDATE server_meta SET value = $1 WHERE key = 'bootstrap' AND value = $2"))
            .bind(new.to_vec())
            .bind(old.to_vec())
            .execute(&mut *tx.tx)
            .await?
            .rows_affected()
            == 1;
        tx.commit().await?;
        Ok(done)
    }

    /// Creates a network with its public key and first policy. `false` if the id exists.
    pub async fn create_network(
        &self,
        id: &[u8; 16],
        name: &str,
        public: &[u8; 32],
        policy: &PolicyRow<'_>,
        now: i64,
    ) -> Result<bool, StoreError> {
        let mut tx = self.write().await?;
        let created = sqlx::query(&self.sql(
            "INSERT INTO networks (id, name, network_public, created_at) VALUES ($1, $2, $3, $4) ON CONFLICT (id) DO NOTHING",
        ))
        .bind(id.to_vec())
        .bind(name.to_owned())
        .bind(public.to_vec())
        .bind(now)
        .execute(&mut *tx.tx)
        .await?
        .rows_affected()
            == 1;
        if created {
            sqlx::query(&self.sql("INSERT INTO policies (network_id, version, body) VALUES ($1, $2, $3)"))
                .bind(id.to_vec())
                .bind(i64::try_from(policy.version).unwrap_or(i64::MAX))
                .bind(policy.body.to_vec())
                .execute(&mut *tx.tx)
                .await?;
            if self.reserve_retention_devices(&mut tx, id, policy.retention, now).await?.is_some() {
                // Another owner holds a named id: nothing is created.
                return Ok(false);
            }
        }
        tx.commit().await?;
        Ok(created)
    }

    /// The network's public key.
    pub async fn network_public(&self, id: &[u8; 16]) -> Result<Option<[u8; 32]>, StoreError> {
        let row = sqlx::query(&self.sql("SELECT network_public FROM networks WHERE id = $1"))
            .bind(id.to_vec())
            .fetch_optional(&self.pool)
            .await?;
        row.map(|r| blob(&r, "network_public")?.try_into().map_err(|_| StoreError::Corrupt("network key"))).transpose()
    }

    /// A network's name and public key.
    pub async fn network_info(&self, id: &[u8; 16]) -> Result<Option<(String, Vec<u8>)>, StoreError> {
        let row = sqlx::query(&self.sql("SELECT name, network_public FROM networks WHERE id = $1"))
            .bind(id.to_vec())
            .fetch_optional(&self.pool)
            .await?;
        row.map(|r| Ok((r.try_get("name")?, blob(&r, "network_public")?))).transpose()
    }

    /// The newest policy: (version, encoded policy).
    pub async fn current_policy(
        &self,
        network: &[u8; 16],
    ) -> Result<Option<(u64, std::sync::Arc<Vec<u8>>)>, StoreError> {
        let generation = self.cache.generation();
        if let Some(found) = self.cache.policies.get(network, generation) {
            return Ok(found);
        }
        let row = sqlx::query(
            &self.sql("SELECT version, body FROM policies WHERE network_id = $1 ORDER BY version DESC LIMIT 1"),
        )
        .bind(network.to_vec())
        .fetch_optional(&self.pool)
        .await?;
        let found = row
            .map(|r| {
                Ok::<_, StoreError>((
                    u64::try_from(int(&r, "version")?).unwrap_or(0),
                    std::sync::Arc::new(blob(&r, "body")?),
                ))
            })
            .transpose()?;
        self.cache.policies.put(*network, generation, found.clone());
        Ok(found)
    }

    /// Stores a newer policy; `false` if its version is not above the current one.
    pub async fn put_policy(&self, network: &[u8; 16], policy: &PolicyRow<'_>) -> Result<PolicyOutcome, StoreError> {
        let PolicyRow { version, body, retention } = *policy;
        let mut tx = self.write().await?;
        let current: i64 =
            sqlx::query(&self.sql("SELECT COALESCE(MAX(version), 0) AS v FROM policies WHERE network_id = $1"))
                .bind(network.to_vec())
                .fetch_one(&mut *tx.tx)
                .await?
                .try_get("v")?;
        let version = i64::try_from(version).unwrap_or(i64::MAX);
        if version <= current {
            return Ok(PolicyOutcome::Stale);
        }
        if let Some(device) = self.reserve_retention_devices(&mut tx, network, retention, super::now_ms()).await? {
            return Ok(PolicyOutcome::DeviceTaken(device));
        }
        sqlx::query(&self.sql("INSERT INTO policies (network_id, version, body) VALUES ($1, $2, $3)"))
            .bind(network.to_vec())
            .bind(version)
            .bind(body.to_vec())
            .execute(&mut *tx.tx)
            .await?;
        tx.commit().await?;
        Ok(PolicyOutcome::Stored)
    }

    /// Stores an invite by the hash of its secret.
    pub async fn create_invite(
        &self,
        secret_hash: &[u8; 32],
        network: &[u8; 16],
        admin: bool,
        expires_at: i64,
        now: i64,
    ) -> Result<(), StoreError> {
        let mut tx = self.write().await?;
        sqlx::query(&self.sql(
            "INSERT INTO invites (secret_hash, network_id, admin, expires_at, revoked, created_at) VALUES ($1, $2, $3, $4, 0, $5)",
        ))
        .bind(secret_hash.to_vec())
        .bind(network.to_vec())
        .bind(i64::from(admin))
        .bind(expires_at)
        .bind(now)
        .execute(&mut *tx.tx)
        .await?;
        tx.commit().await
    }

    /// Binds an invite to an existing user: using it re-enrols that account.
    pub async fn bind_invite_user(&self, secret_hash: &[u8; 32], user: &[u8; 16]) -> Result<(), StoreError> {
        let mut tx = self.write().await?;
        sqlx::query(&self.sql("UPDATE invites SET user_id = $1 WHERE secret_hash = $2"))
            .bind(user.to_vec())
            .bind(secret_hash.to_vec())
            .execute(&mut *tx.tx)
            .await?;
        tx.commit().await
    }

    /// Revokes an unused invite of `network`; `false` if there is none.
    pub async fn revoke_invite(&self, secret_hash: &[u8; 32], network: &[u8; 16]) -> Result<bool, StoreError> {
        let mut tx = self.write().await?;
        let n = sqlx::query(
            &self.sql("UPDATE invites SET revoked = 1 WHERE secret_hash = $1 AND network_id = $2 AND used_at IS NULL"),
        )
        .bind(secret_hash.to_vec())
        .bind(network.to_vec())
        .execute(&mut *tx.tx)
        .await?
        .rows_affected();
        tx.commit().await?;
        Ok(n == 1)
    }
}

/// What publishing a policy did.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum PolicyOutcome {
    /// Stored as the current policy.
    Stored,
    /// A policy with this or a newer version exists.
    Stale,
    /// It names a retention device id that an account or another network owns.
    DeviceTaken([u8; 16]),
}

/// A signed policy as stored: its version, its bytes and the retention
/// device ids it names (reserved for the network's retention service).
#[derive(Debug, Clone, Copy)]
pub struct PolicyRow<'a> {
    /// The policy's version.
    pub version: u64,
    /// The signed policy.
    pub body: &'a [u8],
    /// The retention devices it names.
    pub retention: &'a [[u8; 16]],
}
