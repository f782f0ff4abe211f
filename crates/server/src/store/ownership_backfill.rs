//! Migration 6's data step: owners for the device ids of a database written
//! before device ownership existed (`devices.rs`), decided from what each
//! party signed rather than from who logged in first — an attacker of the
//! old relay may hold the oldest session on a victim's id.
//!
//! Per device id:
//! - named by one network's retention policies: that network's retention
//!   service (accounts that had claimed it lose it);
//! - else listed as active in exactly one account's signed device list:
//!   that account;
//! - else named (in a list as revoked, or by a session) by exactly one
//!   account: that account;
//! - otherwise (several networks' policies, several accounts listing it as
//!   active, several claimants) nobody can tell whose it is: it is
//!   **quarantined** — owned by no account, revoked — and its owner
//!   re-enrols the device.
//!
//! An owner's id is revoked if its own signed list says so or its own
//! account's administrators wiped it (the old relay let other accounts
//! revoke and wipe it: those marks are dropped). Then every session, list
//! row, wipe order and link request that does not match its id's owner is
//! deleted, and so are all console sessions (their administrators log in again).

use std::collections::{BTreeMap, BTreeSet};

use strongroom_crypto::certs::{DeviceList, NetworkPolicy};

use super::{blob, id16, Store, StoreError, WriteTx, CONSOLE_DEVICE, RESERVED_DEVICE_IDS, RETENTION_OWNER};

/// The user id of quarantined device ids (no account has it).
pub const QUARANTINED: [u8; 16] = [0; 16];

#[derive(Default)]
struct Claims {
    retention: BTreeSet<[u8; 16]>,
    active: BTreeSet<[u8; 16]>,
    revoked: BTreeSet<[u8; 16]>,
    sessions: BTreeSet<[u8; 16]>,
}

/// What the backfill decided (for the log).
#[derive(Debug, Default, PartialEq, Eq)]
pub struct Backfill {
    /// Ids given an owner.
    pub owned: usize,
    /// Ids nobody could be trusted with.
    pub quarantined: Vec<[u8; 16]>,
}

impl Store {
    pub(super) async fn backfill_owners(&self, tx: &mut WriteTx<'_>, now: i64) -> Result<Backfill, StoreError> {
        let rows = |q: &'static str| sqlx::query(q);
        let mut networks = BTreeMap::new();
        for r in rows("SELECT id, network_id FROM users").fetch_all(&mut *tx.tx).await? {
            networks.insert(id16(&r, "id")?, id16(&r, "network_id")?);
        }
        let mut existing = BTreeSet::new();
        for r in rows("SELECT id FROM networks").fetch_all(&mut *tx.tx).await? {
            existing.insert(id16(&r, "id")?);
        }
        let mut claims: BTreeMap<[u8; 16], Claims> = BTreeMap::new();
        for r in rows("SELECT network_id, body FROM policies").fetch_all(&mut *tx.tx).await? {
            let network = id16(&r, "network_id")?;
            let policy = NetworkPolicy::decode(&blob(&r, "body")?).map_err(|_| StoreError::Corrupt("policy"))?;
            for d in &policy.retention {
                claims.entry(*d.device_id.as_bytes()).or_default().retention.insert(network);
            }
        }
        for r in rows("SELECT user_id, body FROM device_lists").fetch_all(&mut *tx.tx).await? {
            let user = id16(&r, "user_id")?;
            let list = DeviceList::decode(&blob(&r, "body")?).map_err(|_| StoreError::Corrupt("device list"))?;
            for e in &list.devices {
                let c = claims.entry(*e.device_id.as_bytes()).or_default();
                if e.revoked { &mut c.revoked } else { &mut c.active }.insert(user);
            }
        }
        for r in rows("SELECT user_id, device_id FROM sessions").fetch_all(&mut *tx.tx).await? {
            claims.entry(id16(&r, "device_id")?).or_default().sessions.insert(id16(&r, "user_id")?);
        }
        let mut wiped_by_owner = BTreeSet::new();
        for r in rows("SELECT device_id, user_id FROM device_wipes").fetch_all(&mut *tx.tx).await? {
            wiped_by_owner.insert((id16(&r, "device_id")?, id16(&r, "user_id")?));
        }

        let mut report = Backfill::default();
        for (device, c) in &claims {
            if RESERVED_DEVICE_IDS.contains(device) {
                continue;
            }
            let single = |s: &BTreeSet<[u8; 16]>| if s.len() == 1 { s.first().copied() } else { None };
            let anyone: BTreeSet<[u8; 16]> = c.revoked.union(&c.sessions).copied().collect();
            let (network, user, revoked) = if !c.retention.is_empty() {
                match single(&c.retention) {
                    Some(network) => (network, RETENTION_OWNER, false),
                    None => (c.retention.first().copied().unwrap_or_default(), QUARANTINED, true),
                }
            } else if let Some(user) = single(&c.active) {
                (networks.get(&user).copied().unwrap_or_default(), user, wiped_by_owner.contains(&(*device, user)))
            } else if let (true, Some(user)) = (c.active.is_empty(), single(&anyone)) {
                let revoked = c.revoked.contains(&user) || wiped_by_owner.contains(&(*device, user));
                (networks.get(&user).copied().unwrap_or_default(), user, revoked)
            } else {
                let someone = c.active.iter().chain(&anyone).next().and_then(|u| networks.get(u)).copied();
                (someone.unwrap_or_default(), QUARANTINED, true)
            };
            if !existing.contains(&network) {
                // Only claimants whose account rows are gone: nobody to own
                // it (and their sessions and rows go below).
                continue;
            }
            if user == QUARANTINED {
                report.quarantined.push(*device);
            } else {
                report.owned += 1;
            }
            sqlx::query(&self.sql(
                "INSERT INTO devices (device_id, network_id, user_id, claimed_at, revoked) VALUES ($1, $2, $3, $4, $5)",
            ))
            .bind(device.to_vec())
            .bind(network.to_vec())
            .bind(user.to_vec())
            .bind(now)
            .bind(i64::from(revoked))
            .execute(&mut *tx.tx)
            .await?;
        }

        // Everything that does not match its id's owner goes.
        let owner_is = |t: &str| {
            format!("EXISTS (SELECT 1 FROM devices d WHERE d.device_id = {t}.device_id AND d.user_id = {t}.user_id)")
        };
        for t in ["sessions", "user_devices", "device_wipes", "device_links"] {
            sqlx::query(&format!("DELETE FROM {t} WHERE NOT {}", owner_is(t))).execute(&mut *tx.tx).await?;
        }
        sqlx::query(&self.sql("DELETE FROM sessions WHERE device_id = $1"))
            .bind(CONSOLE_DEVICE.to_vec())
            .execute(&mut *tx.tx)
            .await?;
        // The owner's own revocation, not marks other accounts left on it.
        sqlx::query(
            "UPDATE user_devices SET revoked = (SELECT d.revoked FROM devices d WHERE d.device_id = user_devices.device_id)",
        )
        .execute(&mut *tx.tx)
        .await?;
        Ok(report)
    }
}

#[cfg(test)]
mod tests {
    #![allow(clippy::unwrap_used, clippy::expect_used, clippy::indexing_slicing)]
    use rand_core::OsRng;
    use strongroom_crypto::certs::{DeviceEntry, RetentionDevice};
    use strongroom_crypto::ids::{DeviceId, NetworkId, UserId};
    use strongroom_crypto::keys::{AgreementSecret, SigningKey};

    use super::*;
    use crate::store::{DeviceRef, Owner};

    fn id(n: u8) -> [u8; 16] {
        [n; 16]
    }

    async fn exec(store: &Store, q: &str, binds: &[Vec<u8>]) {
        let sql = store.sql(q);
        let mut query = sqlx::query(&sql);
        for b in binds {
            query = query.bind(b.clone());
        }
        query.execute(&store.pool).await.unwrap();
    }

    fn list(user: [u8; 16], network: [u8; 16], devices: &[(u8, bool)]) -> Vec<u8> {
        let identity = SigningKey::generate(&mut OsRng);
        let entries = devices
            .iter()
            .map(|(d, revoked)| DeviceEntry {
                device_id: DeviceId::from_bytes(id(*d)),
                signing_key: SigningKey::generate(&mut OsRng).verifying_key(),
                created_at: 0,
                revoked: *revoked,
                versions: strongroom_crypto::suite::SUPPORTED_VERSIONS,
                name: "d".into(),
            })
            .collect();
        DeviceList::first(&identity, NetworkId::from_bytes(network), UserId::from_bytes(user), 0, entries)
            .unwrap()
            .encode()
    }

    /// A database as the relay before ownership left it after the attacks
    /// (sessions on others' ids, lists naming others' ids, a cross-network
    /// wipe), migrated: owners come from what each party signed.
    #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
    async fn owners_come_from_signed_lists_and_policies_not_from_the_oldest_session() {
        let dir = std::env::temp_dir().join(format!("sr-backfill-{}", std::process::id()));
        std::fs::create_dir_all(&dir).unwrap();
        let store = Store::connect(&format!("sqlite://{}?mode=rwc", dir.join("t.db").display())).await.unwrap();
        // Back to schema 5 with legacy rows.
        exec(&store, "DROP TABLE devices", &[]).await;
        exec(&store, "DROP TABLE retention_coverage", &[]).await;
        exec(&store, "DELETE FROM schema_migrations WHERE version = 6", &[]).await;
        let (n1, n2) = (id(1), id(2));
        let (alice, bob, carol, mallory) = (id(11), id(12), id(13), id(14));
        for n in [n1, n2] {
            exec(
                &store,
                "INSERT INTO networks (id, name, network_public, created_at) VALUES ($1, 'n', $2, 0)",
                &[n.to_vec(), vec![7; 32]],
            )
            .await;
        }
        for (u, n, name) in [(alice, n1, "alice"), (bob, n1, "bob"), (carol, n1, "carol"), (mallory, n2, "mallory")] {
            exec(
                &store,
                "INSERT INTO users (id, network_id, username, password_hash, admin, created_at) VALUES ($1, $2, $3, 'h', 0, 0)",
                &[u.to_vec(), n.to_vec(), name.as_bytes().to_vec()],
            )
            .await;
        }
        // Device ids: V, W, Z bob's; X claimed by alice and carol; R the
        // retention device; P carol's pending link; Q alice's revoked one.
        let (v, w, x, r, p, q, z) = (30, 31, 32, 33, 34, 35, 36);
        let network_key = SigningKey::generate(&mut OsRng);
        let retention = RetentionDevice {
            device_id: DeviceId::from_bytes(id(r)),
            signing_key: network_key.verifying_key(),
            agreement_key: AgreementSecret::generate(&mut OsRng).public(),
            agreement_key_id: 1,
            versions: strongroom_crypto::suite::SUPPORTED_VERSIONS,
            state: strongroom_crypto::certs::RetentionState::Active,
            name: "archive".into(),
        };
        let policy = NetworkPolicy::sign(&network_key, NetworkId::from_bytes(n1), 2, 0, vec![retention]).unwrap();
        exec(
            &store,
            "INSERT INTO policies (network_id, version, body) VALUES ($1, 2, $2)",
            &[n1.to_vec(), policy.encode()],
        )
        .await;
        for (u, n, devices) in [
            (bob, n1, vec![(v, false), (w, false), (z, false)]),
            (alice, n1, vec![(x, false), (q, true)]),
            (carol, n1, vec![(x, false)]),
            (mallory, n2, vec![(w, true)]),
        ] {
            exec(
                &store,
                "INSERT INTO device_lists (user_id, version, body) VALUES ($1, 1, $2)",
                &[u.to_vec(), list(u, n, &devices)],
            )
            .await;
            for (d, revoked) in devices {
                // The old cross-network wipe revoked every account's row for W.
                let revoked = revoked || d == w || d == z;
                let sql = format!(
                    "INSERT INTO user_devices (user_id, device_id, revoked) VALUES ($1, $2, {})",
                    i64::from(revoked)
                );
                exec(&store, &sql, &[u.to_vec(), id(d).to_vec()]).await;
            }
        }
        // Mallory's session on V is the oldest; Carol's on R and P; console.
        for (token, u, d, at) in
            [(1u8, mallory, v, 1), (2, bob, v, 5), (3, carol, r, 2), (4, carol, p, 3), (5, alice, 0xcc, 4)]
        {
            let sql = format!(
                "INSERT INTO sessions (token_hash, user_id, device_id, created_at, expires_at) VALUES ($1, $2, $3, {at}, 9999999999999)"
            );
            exec(&store, &sql, &[vec![token; 32], u.to_vec(), id(d).to_vec()]).await;
        }
        exec(
            &store,
            "INSERT INTO device_wipes (device_id, user_id, requested_at) VALUES ($1, $2, 0)",
            &[id(w).to_vec(), mallory.to_vec()],
        )
        .await;
        exec(
            &store,
            "INSERT INTO device_wipes (device_id, user_id, requested_at) VALUES ($1, $2, 0)",
            &[id(z).to_vec(), bob.to_vec()],
        )
        .await;

        store.migrate_again().await.unwrap();

        let owner = |d: u8| {
            let store = store.clone();
            async move { store.device_owner(&id(d)).await.unwrap() }
        };
        let own =
            |network, user, d: u8, revoked| Some(Owner { device: DeviceRef { network, user, device: id(d) }, revoked });
        assert_eq!(owner(v).await, own(n1, bob, v, false), "bob's signed list, not mallory's older session");
        assert_eq!(owner(w).await, own(n1, bob, w, false), "mallory's revocation and wipe do not count");
        assert_eq!(owner(z).await, own(n1, bob, z, true), "his own administrators' wipe does");
        assert_eq!(owner(x).await, own(n1, QUARANTINED, x, true), "two accounts list it: nobody gets it");
        assert_eq!(owner(r).await, own(n1, RETENTION_OWNER, r, false), "the policy names it");
        assert_eq!(owner(p).await, own(n1, carol, p, false), "her pending link device");
        assert_eq!(owner(q).await, own(n1, alice, q, true));
        for (token, alive) in [(1u8, false), (2, true), (3, false), (4, true), (5, false)] {
            assert_eq!(store.session(&[token; 32], 10).await.unwrap().is_some(), alive, "session {token}");
        }
        assert!(!store.wipe_pending(&DeviceRef { network: n2, user: mallory, device: id(w) }).await.unwrap());
        assert!(store.device_active(&bob, &id(w)).await.unwrap(), "bob's W is his and active again");
        assert!(!store.device_active(&mallory, &id(w)).await.unwrap());
        assert!(
            !store.device_active(&alice, &id(x)).await.unwrap() && !store.device_active(&carol, &id(x)).await.unwrap()
        );
        // And the rule holds from here on.
        let mallory_login = DeviceRef { network: n2, user: mallory, device: id(v) };
        let claim = store.login_succeeded(&[9; 32], crate::store::SessionDevice::Device(mallory_login), 1, 99).await;
        assert_eq!(claim.unwrap(), crate::store::DeviceClaim::Taken);
        store.close().await;
        let _ = std::fs::remove_dir_all(&dir);
    }
}
