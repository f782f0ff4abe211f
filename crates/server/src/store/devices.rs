//! Device ownership. A device id is claimed once — by one account of one
//! network at the device's first login, or by a network's retention service
//! when a signed policy names it — and never changes owner or is released.
//! Revocation (by the owner's signed list, a device reset, a remote wipe or
//! the account's deletion) is final for the id.
//!
//! Everything keyed by device id (queues, pre-keys, wipe orders, link
//! requests, sessions, live sockets) is reached only through a
//! [`DeviceRef`] whose (network, user, device) this table vouches for: a
//! session's device is re-checked against it whenever the session is read
//! from the database, device lists may name only the user's own ids, and the
//! store functions that take a `DeviceRef` repeat the check in their SQL.

use super::{id16, int, Store, StoreError, WriteTx};

/// The user id that owns retention devices (no account has it).
pub const RETENTION_OWNER: [u8; 16] = [0xff; 16];

/// Ids no account may claim: the web console's sessions carry `[0xcc; 16]`,
/// retention sessions' user `[0xff; 16]`, and all zeros is what a corrupt
/// id decodes to.
pub const RESERVED_DEVICE_IDS: [[u8; 16]; 3] = [[0; 16], [0xcc; 16], [0xff; 16]];

/// One device as its owner: the network, the account (or
/// [`RETENTION_OWNER`]) and the device.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub struct DeviceRef {
    /// The owner's network.
    pub network: [u8; 16],
    /// The owning account, or [`RETENTION_OWNER`].
    pub user: [u8; 16],
    /// The device.
    pub device: [u8; 16],
}

impl DeviceRef {
    /// Whether this is a retention device.
    pub fn is_retention(&self) -> bool {
        self.user == RETENTION_OWNER
    }
}

/// What a login did with its device id.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum DeviceClaim {
    /// The id was free: it now belongs to this account.
    Claimed,
    /// The id already belongs to this account.
    Owned,
    /// The id belongs to this account but was revoked (listed as revoked,
    /// reset or wiped with the wipe already confirmed).
    Revoked,
    /// The id belongs to another account, another network, a retention
    /// service, or is reserved.
    Taken,
}

impl DeviceClaim {
    /// Whether a session may be made for the device.
    pub fn allowed(self) -> bool {
        matches!(self, Self::Claimed | Self::Owned)
    }
}

/// Who owns a device id.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Owner {
    /// The device, its network and account.
    pub device: DeviceRef,
    /// Revoked for good.
    pub revoked: bool,
}

impl Store {
    /// Who owns `device`, if anyone.
    pub async fn device_owner(&self, device: &[u8; 16]) -> Result<Option<Owner>, StoreError> {
        let row = sqlx::query(&self.sql("SELECT network_id, user_id, revoked FROM devices WHERE device_id = $1"))
            .bind(device.to_vec())
            .fetch_optional(&self.pool)
            .await?;
        row.map(|r| owner_of(&r, device)).transpose()
    }

    /// Claims `d.device` for `d.user` of `d.network` inside `tx`, or says
    /// why it cannot be used. A revoked id is usable only while a wipe order
    /// for it is unconfirmed, so a stolen device that logs in is told to erase itself.
    pub(super) async fn claim_device(
        &self,
        tx: &mut WriteTx<'_>,
        d: &DeviceRef,
        now: i64,
    ) -> Result<DeviceClaim, StoreError> {
        if RESERVED_DEVICE_IDS.contains(&d.device) || d.is_retention() {
            return Ok(DeviceClaim::Taken);
        }
        let owner = match self.owner_in(tx, &d.device).await? {
            Some(owner) => owner,
            None if self.insert_owner(tx, d, now).await? => return Ok(DeviceClaim::Claimed),
            // Claimed meanwhile by another transaction (PostgreSQL): judge that owner.
            None => self.owner_in(tx, &d.device).await?.ok_or(StoreError::Corrupt("device owner vanished"))?,
        };
        if owner.device != *d {
            return Ok(DeviceClaim::Taken);
        }
        if !owner.revoked {
            return Ok(DeviceClaim::Owned);
        }
        let wiping =
            sqlx::query(&self.sql(
                "SELECT 1 AS one FROM device_wipes WHERE device_id = $1 AND user_id = $2 AND confirmed_at IS NULL",
            ))
            .bind(d.device.to_vec())
            .bind(d.user.to_vec())
            .fetch_optional(&mut *tx.tx)
            .await?;
        Ok(if wiping.is_some() { DeviceClaim::Owned } else { DeviceClaim::Revoked })
    }

    /// Reserves the retention devices a network's policy names for that
    /// network's retention service, inside `tx`. Returns the first id that
    /// belongs to someone else (an account, or another network): such a
    /// policy must be refused.
    pub(super) async fn reserve_retention_devices(
        &self,
        tx: &mut WriteTx<'_>,
        network: &[u8; 16],
        devices: &[[u8; 16]],
        now: i64,
    ) -> Result<Option<[u8; 16]>, StoreError> {
        for device in devices {
            let d = DeviceRef { network: *network, user: RETENTION_OWNER, device: *device };
            if RESERVED_DEVICE_IDS.contains(device) {
                return Ok(Some(*device));
            }
            let owner = match self.owner_in(tx, device).await? {
                None if self.insert_owner(tx, &d, now).await? => continue,
                None => self.owner_in(tx, device).await?,
                owner => owner,
            };
            if owner.map(|o| o.device) != Some(d) {
                return Ok(Some(*device));
            }
        }
        Ok(None)
    }

    async fn owner_in(&self, tx: &mut WriteTx<'_>, device: &[u8; 16]) -> Result<Option<Owner>, StoreError> {
        let row = sqlx::query(&self.sql("SELECT network_id, user_id, revoked FROM devices WHERE device_id = $1"))
            .bind(device.to_vec())
            .fetch_optional(&mut *tx.tx)
            .await?;
        row.map(|r| owner_of(&r, device)).transpose()
    }

    /// Records `d` as the owner unless the id has one; whether it did.
    /// (On PostgreSQL a concurrent claim of the same id waits for this one
    /// and then inserts nothing, instead of failing.)
    async fn insert_owner(&self, tx: &mut WriteTx<'_>, d: &DeviceRef, now: i64) -> Result<bool, StoreError> {
        let n = sqlx::query(&self.sql(
            "INSERT INTO devices (device_id, network_id, user_id, claimed_at, revoked) VALUES ($1, $2, $3, $4, 0) \
             ON CONFLICT (device_id) DO NOTHING",
        ))
        .bind(d.device.to_vec())
        .bind(d.network.to_vec())
        .bind(d.user.to_vec())
        .bind(now)
        .execute(&mut *tx.tx)
        .await?
        .rows_affected();
        Ok(n == 1)
    }
}

fn owner_of(row: &sqlx::any::AnyRow, device: &[u8; 16]) -> Result<Owner, StoreError> {
    Ok(Owner {
        device: DeviceRef { network: id16(row, "network_id")?, user: id16(row, "user_id")?, device: *device },
        revoked: int(row, "revoked")? != 0,
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_retention_owner_is_the_protocols_retention_user() {
        assert_eq!(&RETENTION_OWNER, strongroom_crypto::ids::UserId::RETENTION.as_bytes());
        assert!(RESERVED_DEVICE_IDS.contains(&RETENTION_OWNER));
    }
}
