//! One storage suite, run against every backend: SQLite always, PostgreSQL
//! when STRONGROOM_TEST_POSTGRES_URL is set (CI sets it; otherwise the tests
//! say they skipped it). Each run gets a fresh database or schema.
#![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic, clippy::indexing_slicing)]

use std::collections::HashSet;

use rand_chacha::rand_core::{RngCore, SeedableRng};
use strongroom_server::store::*;

async fn sqlite() -> Store {
    let dir = std::env::temp_dir().join(format!(
        "sr-store-{}-{}",
        std::process::id(),
        rand_chacha::ChaCha8Rng::from_entropy().next_u64()
    ));
    std::fs::create_dir_all(&dir).unwrap();
    Store::connect(&format!("sqlite://{}?mode=rwc", dir.join("t.db").display())).await.unwrap()
}

async fn postgres() -> Option<(Store, String)> {
    let Ok(base) = std::env::var("STRONGROOM_TEST_POSTGRES_URL") else {
        eprintln!("SKIPPED the PostgreSQL run of this storage test: set STRONGROOM_TEST_POSTGRES_URL (e.g. postgres://postgres@127.0.0.1:5432/test)");
        return None;
    };
    let schema = format!("sr_test_{}", rand_chacha::ChaCha8Rng::from_entropy().next_u64());
    let mut admin =
        <sqlx::PgConnection as sqlx::Connection>::connect(&base).await.expect("connect to the test PostgreSQL");
    sqlx::Executor::execute(&mut admin, format!("CREATE SCHEMA {schema}").as_str()).await.unwrap();
    let sep = if base.contains('?') { '&' } else { '?' };
    Some((Store::connect(&format!("{base}{sep}options=-c%20search_path%3D{schema}")).await.unwrap(), schema))
}

async fn drop_schema(schema: &str) {
    let base = std::env::var("STRONGROOM_TEST_POSTGRES_URL").unwrap();
    let mut admin = <sqlx::PgConnection as sqlx::Connection>::connect(&base).await.unwrap();
    sqlx::Executor::execute(&mut admin, format!("DROP SCHEMA {schema} CASCADE").as_str()).await.unwrap();
}

/// Runs `f` against each available backend.
macro_rules! on_every_backend {
    ($name:ident, $f:ident) => {
        #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
        async fn $name() {
            $f(sqlite().await).await;
            if let Some((pg, schema)) = postgres().await {
                let keep = pg.clone();
                $f(pg).await;
                keep.close().await;
                drop_schema(&schema).await;
            }
        }
    };
}

/// A real first list and its successor for `user` naming `devices`,
/// signed by identity seed `seed`: the store follows the chain by digest.
fn signed_chain(
    net: &[u8; 16],
    user: &[u8; 16],
    seed: u8,
    devices: &[u8],
) -> ([u8; 32], strongroom_crypto::certs::DeviceList, strongroom_crypto::certs::DeviceList) {
    use strongroom_crypto::certs::{DeviceEntry, DeviceList};
    use strongroom_crypto::ids::{DeviceId, NetworkId, UserId};
    use strongroom_crypto::keys::{SecretBytes, SigningKey};
    let identity = SigningKey::from_seed(SecretBytes::new([seed; 32])).unwrap();
    let entries: Vec<DeviceEntry> = devices
        .iter()
        .map(|d| DeviceEntry {
            device_id: DeviceId::from_bytes(id(*d)),
            signing_key: identity.verifying_key(),
            created_at: 0,
            revoked: false,
            versions: strongroom_crypto::suite::SUPPORTED_VERSIONS,
            name: String::new(),
        })
        .collect();
    let l1 = DeviceList::first(&identity, NetworkId::from_bytes(*net), UserId::from_bytes(*user), 0, entries.clone())
        .unwrap();
    let l2 = l1.next(&identity, 1, entries).unwrap();
    (*identity.verifying_key().as_bytes(), l1, l2)
}

/// Envelope `m` (id and prefix made of `m`) from `sender` in `conv`.
fn envelope(m: u8, net: [u8; 16], conv: [u8; 16], sender: [u8; 16]) -> StoredEnvelope {
    StoredEnvelope {
        message_id: [m; 16],
        network_id: net,
        conversation_id: conv,
        sender_device: sender,
        prefix: vec![m; 4],
        signature: vec![0xee; 64],
        expires_at: None,
    }
}

fn id(n: u8) -> [u8; 16] {
    [n; 16]
}

async fn network(store: &Store) -> [u8; 16] {
    let net = id(1);
    assert!(store.create_network(&net, "Acme", &[7; 32], &policy(1, b"policy-1", &[]), 0).await.unwrap());
    assert!(!store.create_network(&net, "Again", &[7; 32], &policy(1, b"policy-1", &[]), 0).await.unwrap());
    net
}

/// A device's first login: claims the id for the account.
async fn device(store: &Store, net: &[u8; 16], user: &[u8; 16], n: u8) -> DeviceRef {
    let d = DeviceRef { network: *net, user: *user, device: id(n) };
    let claim = store.login_succeeded(&[n; 32], SessionDevice::Device(d), 1, i64::MAX).await.unwrap();
    assert!(claim.allowed(), "{claim:?}");
    d
}

fn policy<'a>(version: u64, body: &'a [u8], retention: &'a [[u8; 16]]) -> PolicyRow<'a> {
    PolicyRow { version, body, retention }
}

fn retention(net: &[u8; 16], n: u8) -> DeviceRef {
    DeviceRef { network: *net, user: RETENTION_OWNER, device: id(n) }
}

async fn user(store: &Store, net: &[u8; 16], n: u8, name: &str) -> [u8; 16] {
    let secret = [n; 32];
    store.create_invite(&secret, net, false, i64::MAX, 0).await.unwrap();
    assert_eq!(store.register(&secret, &id(n), name, "hash", 10).await.unwrap(), LoginOutcome::Registered(*net));
    id(n)
}

async fn accounts_and_invites(store: Store) {
    let net = network(&store).await;
    assert_eq!(store.network_public(&net).await.unwrap(), Some([7; 32]));
    assert_eq!(store.current_policy(&net).await.unwrap(), Some((1, std::sync::Arc::new(b"policy-1".to_vec()))));
    assert_eq!(store.put_policy(&net, &policy(2, b"policy-2", &[])).await.unwrap(), PolicyOutcome::Stored);
    assert_eq!(
        store.put_policy(&net, &policy(2, b"other", &[])).await.unwrap(),
        PolicyOutcome::Stale,
        "same version refused"
    );
    assert_eq!(
        store.put_policy(&net, &policy(1, b"old", &[])).await.unwrap(),
        PolicyOutcome::Stale,
        "rollback refused"
    );

    store.create_invite(&[9; 32], &net, true, 1000, 0).await.unwrap();
    assert_eq!(
        store.register(&[9; 32], &id(10), "alice", "h", 2000).await.unwrap(),
        LoginOutcome::BadInvite,
        "expired"
    );
    store.create_invite(&[8; 32], &net, true, 5000, 0).await.unwrap();
    user(&store, &net, 11, "bob").await;
    assert_eq!(store.register(&[8; 32], &id(12), "bob", "h", 10).await.unwrap(), LoginOutcome::UsernameTaken);
    // The failed registration rolled back: the invite still works once.
    assert_eq!(store.register(&[8; 32], &id(12), "alice", "h", 10).await.unwrap(), LoginOutcome::Registered(net));
    assert_eq!(store.register(&[8; 32], &id(13), "carol", "h", 10).await.unwrap(), LoginOutcome::BadInvite, "used");
    store.create_invite(&[6; 32], &net, false, 5000, 0).await.unwrap();
    assert!(store.revoke_invite(&[6; 32], &net).await.unwrap());
    assert_eq!(store.register(&[6; 32], &id(14), "dave", "h", 10).await.unwrap(), LoginOutcome::BadInvite, "revoked");

    let alice = store.user_by_name(&net, "alice").await.unwrap().unwrap();
    assert!(alice.admin);
    // Failed logins: per (username, source); waits double past the threshold, up to the cap.
    for _ in 0..2 {
        store.login_failure(&net, "alice", "192.0.2.1", 100, 3, 60_000).await.unwrap();
    }
    assert_eq!(store.login_wait(&net, "alice", "192.0.2.1", 100).await.unwrap(), 0, "under the threshold");
    store.login_failure(&net, "alice", "192.0.2.1", 100, 3, 60_000).await.unwrap();
    assert_eq!(store.login_wait(&net, "alice", "192.0.2.1", 100).await.unwrap(), 1_000);
    store.login_failure(&net, "alice", "192.0.2.1", 100, 3, 60_000).await.unwrap();
    assert_eq!(store.login_wait(&net, "alice", "192.0.2.1", 100).await.unwrap(), 2_000, "doubled");
    for _ in 0..20 {
        store.login_failure(&net, "alice", "192.0.2.1", 100, 3, 60_000).await.unwrap();
    }
    assert_eq!(store.login_wait(&net, "alice", "192.0.2.1", 100).await.unwrap(), 60_000, "capped");
    assert_eq!(store.login_wait(&net, "alice", "198.51.100.7", 100).await.unwrap(), 0, "other sources unaffected");
    store.login_failure(&net, "nobody", "192.0.2.1", 100, 1, 60_000).await.unwrap();
    assert_eq!(store.login_wait(&net, "nobody", "192.0.2.1", 100).await.unwrap(), 1_000, "unknown names alike");
    store.login_failure(&net, "alice", "198.51.100.7", 100, 0, 60_000).await.unwrap();
    assert_eq!(store.login_wait(&net, "alice", "198.51.100.7", 100).await.unwrap(), 0, "threshold 0: never");
    store.clear_login_failures(&net, "alice", Some("192.0.2.1")).await.unwrap();
    assert_eq!(store.login_wait(&net, "alice", "192.0.2.1", 100).await.unwrap(), 0);
    store.login_failure(&net, "alice", "192.0.2.1", 100, 1, 60_000).await.unwrap();
    store.clear_login_failures(&net, "alice", None).await.unwrap();
    assert_eq!(store.login_wait(&net, "alice", "192.0.2.1", 100).await.unwrap(), 0, "a reset clears every source");
    assert_eq!(store.purge_login_failures(70_000).await.unwrap(), 1, "old entries purged");
    let claim = |n: u8| SessionDevice::Device(DeviceRef { network: net, user: alice.id, device: id(n) });
    assert_eq!(store.login_succeeded(&[5; 32], claim(50), 200, 10_000).await.unwrap(), DeviceClaim::Claimed);
    let s = store.session(&[5; 32], 300).await.unwrap().unwrap();
    assert_eq!((s.user_id, s.device_id, s.network_id, s.admin), (alice.id, id(50), net, true));
    assert!(store.session(&[5; 32], 10_001).await.unwrap().is_none(), "expired session");
    // The sweep of open sockets asks about many at once, and agrees.
    let live = |hashes: Vec<[u8; 32]>, at: i64| {
        let store = store.clone();
        async move { store.live_sessions(&hashes, at).await.unwrap() }
    };
    assert_eq!(live(vec![[5; 32], [9; 32]], 300).await, [[5; 32]].into_iter().collect());
    assert!(live(vec![[5; 32]], 10_001).await.is_empty(), "expired");
    let unknown = (0..450u32).map(|i| {
        let mut h = [1u8; 32];
        h[..4].copy_from_slice(&i.to_be_bytes());
        h
    });
    let many: Vec<[u8; 32]> = unknown.chain([[5; 32]]).collect();
    assert_eq!(live(many, 300).await.len(), 1, "past one statement's worth");
    assert_eq!(store.login_succeeded(&[4; 32], claim(51), 200, 10_000).await.unwrap(), DeviceClaim::Claimed);
    store.set_password(&alice.id, "new", &[4; 32]).await.unwrap();
    assert!(store.session(&[5; 32], 300).await.unwrap().is_none(), "other sessions end on password change");
    assert!(store.session(&[4; 32], 300).await.unwrap().is_some());
    assert_eq!(live(vec![[5; 32], [4; 32]], 300).await, [[4; 32]].into_iter().collect(), "the sweep sees it too");
    store.logout(&[4; 32]).await.unwrap();
    assert!(store.session(&[4; 32], 300).await.unwrap().is_none());
    // Expired sessions are purged, live ones kept.
    assert_eq!(store.login_succeeded(&[3; 32], claim(51), 200, 500).await.unwrap(), DeviceClaim::Owned);
    assert_eq!(store.login_succeeded(&[2; 32], claim(51), 200, 10_000).await.unwrap(), DeviceClaim::Owned);
    assert_eq!(store.purge_sessions(600).await.unwrap(), 1, "the one that expired at 500");
    assert!(store.session(&[2; 32], 600).await.unwrap().is_some());
}
on_every_backend!(accounts_and_invites_sqlite_and_postgres, accounts_and_invites);

async fn device_lists_and_prekeys(store: Store) {
    let net = network(&store).await;
    let u = user(&store, &net, 20, "erin").await;
    let d21 = device(&store, &net, &u, 21).await;
    device(&store, &net, &u, 22).await;
    use strongroom_crypto::certs::{DeviceEntry, DeviceList};
    use strongroom_crypto::ids::{DeviceId, NetworkId, UserId};
    use strongroom_crypto::keys::{SecretBytes, SigningKey};
    let identity = SigningKey::from_seed(SecretBytes::new([1; 32])).unwrap();
    let other = SigningKey::from_seed(SecretBytes::new([2; 32])).unwrap();
    let ik = *identity.verifying_key().as_bytes();
    let entries = |revoked: bool| -> Vec<DeviceEntry> {
        [(21, false), (22, revoked)]
            .iter()
            .map(|(d, r)| DeviceEntry {
                device_id: DeviceId::from_bytes(id(*d)),
                signing_key: other.verifying_key(),
                created_at: 0,
                revoked: *r,
                versions: strongroom_crypto::suite::SUPPORTED_VERSIONS,
                name: String::new(),
            })
            .collect()
    };
    let (nid, uid) = (NetworkId::from_bytes(net), UserId::from_bytes(u));
    let l1 = DeviceList::first(&identity, nid, uid, 0, entries(false)).unwrap();
    let l2 = l1.next(&identity, 1, entries(true)).unwrap();
    let fork = DeviceList::sign(&identity, nid, uid, 2, [7; 32], 1, entries(true)).unwrap();
    let both = [(id(21), false), (id(22), false)];
    assert_eq!(
        store.put_device_list(&net, &u, &ik, 2, &l2.previous, &l2.encode(), &both).await.unwrap(),
        Err(DeviceListRefusal::NotNext { current: 0 }),
        "the first list is version 1"
    );
    assert!(store.put_device_list(&net, &u, &ik, 1, &[0; 32], &l1.encode(), &both).await.unwrap().is_ok());
    assert_eq!(
        store.put_device_list(&net, &u, &[2; 32], 2, &l2.previous, &l2.encode(), &[]).await.unwrap(),
        Err(DeviceListRefusal::IdentityMismatch)
    );
    assert_eq!(
        store.put_device_list(&net, &u, &ik, 1, &[0; 32], &l1.encode(), &[]).await.unwrap(),
        Err(DeviceListRefusal::NotNext { current: 1 })
    );
    assert_eq!(
        store.put_device_list(&net, &u, &ik, u64::MAX, &l2.previous, &l2.encode(), &[]).await.unwrap(),
        Err(DeviceListRefusal::NotNext { current: 1 }),
        "no skipping versions"
    );
    assert_eq!(
        store.put_device_list(&net, &u, &ik, 2, &fork.previous, &fork.encode(), &[]).await.unwrap(),
        Err(DeviceListRefusal::WrongPrevious)
    );
    assert!(store.device_active(&u, &id(21)).await.unwrap());
    assert!(store
        .put_device_list(&net, &u, &ik, 2, &l2.previous, &l2.encode(), &[(id(21), false), (id(22), true)])
        .await
        .unwrap()
        .is_ok());
    assert!(!store.device_active(&u, &id(22)).await.unwrap(), "revoked");
    assert_eq!(store.device_list(&u).await.unwrap(), Some(l2.encode()));
    assert_eq!(store.device_list_history(&u, 0, 64).await.unwrap(), vec![l1.encode(), l2.encode()]);
    assert_eq!(store.device_list_history(&u, 1, 64).await.unwrap(), vec![l2.encode()]);
    assert_eq!(store.device_list_history(&u, 0, 1).await.unwrap(), vec![l1.encode()]);
    assert!(store.device_list_history(&u, 2, 64).await.unwrap().is_empty());

    // 40 one-time pre-keys, one medium-term; 80 concurrent claims.
    let mut keys: Vec<(u8, u32, i64, Vec<u8>)> =
        (0..40u32).map(|i| (1, i, i64::MAX, format!("otk-{i}").into_bytes())).collect();
    keys.push((0, 1, i64::MAX, b"mtk-1".to_vec()));
    keys.push((0, 0, 50, b"mtk-0-expired".to_vec()));
    store.put_prekeys(&d21, &keys).await.unwrap();
    assert_eq!(store.one_time_counts(&u).await.unwrap(), vec![(id(21), 40)]);
    let tasks: Vec<_> = (0..80)
        .map(|_| {
            let s = store.clone();
            tokio::spawn(async move { s.claim_prekey(&d21, 100, true).await.unwrap().unwrap().body })
        })
        .collect();
    let mut one_time = HashSet::new();
    let mut fallback = 0;
    for t in tasks {
        let k = t.await.unwrap();
        if k == b"mtk-1" {
            fallback += 1;
        } else {
            assert!(one_time.insert(k.clone()), "one-time pre-key handed out twice: {}", String::from_utf8_lossy(&k));
        }
    }
    assert_eq!((one_time.len(), fallback), (40, 40));
    let stranger = DeviceRef { device: id(99), ..d21 };
    assert!(
        matches!(store.claim_prekey(&stranger, 100, true).await, Err(StoreError::NotOwned)),
        "not a device of erin"
    );
    // Counting down; and a claimer past its allowance gets the medium-term key, taking nothing.
    store
        .put_prekeys(&d21, &[(1, 100, i64::MAX, b"otk-100".to_vec()), (1, 101, i64::MAX, b"otk-101".to_vec())])
        .await
        .unwrap();
    let first = store.claim_prekey(&d21, 100, true).await.unwrap().unwrap();
    assert_eq!((first.body, first.one_time_left), (b"otk-100".to_vec(), Some(1)));
    let medium = store.claim_prekey(&d21, 100, false).await.unwrap().unwrap();
    assert_eq!((medium.body, medium.one_time_left), (b"mtk-1".to_vec(), None));
    assert_eq!(store.one_time_counts(&u).await.unwrap(), vec![(id(21), 1)], "nothing taken");
}
on_every_backend!(device_lists_and_prekeys_sqlite_and_postgres, device_lists_and_prekeys);

/// A write that changed a row and then was refused (or failed) is rolled
/// back by the pool after its writer lock is released; the next write must
/// wait for that rollback, not fail with "database is locked" because it
/// read first and could not upgrade (a flaky CI run met exactly this).
async fn a_refused_write_does_not_lock_out_the_next(store: Store) {
    let net = network(&store).await;
    // A race: with deferred transactions, 26 of 40 runs failed here with a
    // second copy of this test loading the machine (1 in 30 alone).
    for n in 0..300u16 {
        let [hi, lo] = n.to_be_bytes();
        let (secret, u) = ([hi, lo, 0x5e].repeat(11)[..32].try_into().unwrap(), [hi, lo, 0xa5, 0xa5].repeat(4));
        let u: [u8; 16] = u.try_into().unwrap();
        store.create_invite(&secret, &net, false, i64::MAX, 0).await.unwrap();
        assert_eq!(
            store.register(&secret, &u, &format!("u{n}"), "hash", 10).await.unwrap(),
            LoginOutcome::Registered(net)
        );
        let (ik, l1, l2) = signed_chain(&net, &u, lo, &[]);
        // Pins the identity key, then refuses (the first list is version 1).
        assert_eq!(
            store.put_device_list(&net, &u, &ik, 2, &l2.previous, &l2.encode(), &[]).await.unwrap(),
            Err(DeviceListRefusal::NotNext { current: 0 })
        );
        // Reads, then pins the key: must not meet the refused write's lock.
        assert!(store.put_device_list(&net, &u, &ik, 1, &[0; 32], &l1.encode(), &[]).await.unwrap().is_ok());
    }
}
on_every_backend!(
    a_refused_write_does_not_lock_out_the_next_sqlite_and_postgres,
    a_refused_write_does_not_lock_out_the_next
);

async fn conversations_and_delivery(store: Store) {
    let net = network(&store).await;
    let (a, b) = (user(&store, &net, 30, "a").await, user(&store, &net, 31, "b").await);
    device(&store, &net, &a, 32).await;
    let (d33, d34) = (device(&store, &net, &b, 33).await, device(&store, &net, &b, 34).await);
    let r90 = retention(&net, 90);
    assert_eq!(store.put_policy(&net, &policy(2, b"policy-2", &[id(90)])).await.unwrap(), PolicyOutcome::Stored);
    store.put_device_list(&net, &a, &[1; 32], 1, &[0; 32], b"l", &[(id(32), false)]).await.unwrap().unwrap();
    store
        .put_device_list(&net, &b, &[2; 32], 1, &[0; 32], b"l", &[(id(33), false), (id(34), false)])
        .await
        .unwrap()
        .unwrap();
    let conv = id(35);
    store
        .create_conversation(&conv, &net, Kind::Group, &[(a, Role::Member), (b, Role::Member)], 0, None)
        .await
        .unwrap();
    assert_eq!(*store.member_devices(&conv).await.unwrap(), vec![(a, id(32)), (b, id(33)), (b, id(34))]);
    assert_eq!(store.conversations_of(&a).await.unwrap().len(), 1);

    let env = |m: u8, expires_at: Option<i64>| StoredEnvelope {
        message_id: id(m),
        network_id: net,
        conversation_id: conv,
        sender_device: id(32),
        prefix: vec![m; 10],
        signature: vec![0xee; 64],
        expires_at,
    };
    let tails = |m: u8| vec![(id(33), vec![m, 1], false), (id(34), vec![m, 2], false), (id(90), vec![m, 3], true)];
    assert_eq!(store.store_envelope(env(40, None), tails(40), 1000).await.unwrap(), StoreOutcome::Stored(1));
    assert_eq!(store.store_envelope(env(41, Some(5000)), tails(41), 1001).await.unwrap(), StoreOutcome::Stored(2));
    assert_eq!(store.store_envelope(env(40, None), tails(40), 1002).await.unwrap(), StoreOutcome::Duplicate(1));
    let mut other = env(40, None);
    other.sender_device = id(99);
    assert_eq!(store.store_envelope(other.clone(), tails(40), 1003).await.unwrap(), StoreOutcome::IdConflict);
    assert_eq!(store.conversation(&conv).await.unwrap().unwrap().last_seq, 2);

    let q = store.queued(&d33, 0, 10, usize::MAX).await.unwrap();
    assert_eq!(q.iter().map(|r| r.seq).collect::<Vec<_>>(), vec![1, 2]);
    let mut want = vec![40; 10];
    want.extend([40, 1]);
    want.extend([0xee; 64]);
    assert_eq!(q[0].envelope, want, "prefix | tail | signature");
    // A byte budget: the rows that fit, at least one, and whether more wait.
    let one = q[0].envelope.len();
    let (page, more) = store.queued_page(&d33, 0, 10, one).await.unwrap();
    assert_eq!((page.len(), more), (1, true));
    let (page, more) = store.queued_page(&d33, 0, 10, 1).await.unwrap();
    assert_eq!((page.len(), more), (1, true), "one row even over the budget");
    let (page, more) = store.queued_page(&d33, 0, 10, usize::MAX).await.unwrap();
    assert_eq!((page.len(), more), (2, false));
    let (page, more) = store.queued_page(&d33, 0, 2, usize::MAX).await.unwrap();
    assert_eq!((page.len(), more), (2, true), "a full page may have more behind it");
    assert_eq!(store.queue_depth().await.unwrap(), (4, 2));

    // Ack by one device keeps the envelope for the others.
    assert_eq!(store.ack(&d33, &[id(40)]).await.unwrap(), 1);
    assert_eq!(store.queued(&d33, 0, 10, usize::MAX).await.unwrap().len(), 1);
    assert_eq!(store.queued(&d34, 0, 10, usize::MAX).await.unwrap().len(), 2);
    // Only the owner reads a queue, and only retention sessions touch retention rows.
    assert!(store.queued(&DeviceRef { user: a, ..d34 }, 0, 10, usize::MAX).await.unwrap().is_empty(), "not a's device");
    assert!(store.queued(&DeviceRef { user: b, ..r90 }, 0, 10, usize::MAX).await.unwrap().is_empty(), "retention rows");
    assert_eq!(store.ack(&DeviceRef { user: b, ..r90 }, &[id(40), id(41)]).await.unwrap(), 0, "an account acks none");
    assert_eq!(store.ack(&DeviceRef { user: RETENTION_OWNER, ..d34 }, &[id(41)]).await.unwrap(), 0);
    let coverage = store.retention_coverage(&r90).await.unwrap();
    assert_eq!(
        coverage,
        vec![CoverageRow { conversation_id: conv, first_seq: 1, last_seq: 2, count: 2, queued: 2 }],
        "what the relay queued for the retention device"
    );
    assert!(matches!(store.retention_coverage(&d34).await, Err(StoreError::NotOwned)));
    assert_eq!(store.envelope_count().await.unwrap(), 2);

    // TTL expiry drops device queues, never the retention device's.
    assert_eq!(store.expire(6000, 1_000_000).await.unwrap(), 2);
    assert_eq!(store.queued(&d34, 0, 10, usize::MAX).await.unwrap().len(), 1);
    assert_eq!(store.queued(&r90, 0, 10, usize::MAX).await.unwrap().len(), 2, "retention keeps everything");
    // The undelivered horizon drops the rest for devices; retention still keeps all.
    store.expire(10_000_000, 1000).await.unwrap();
    assert_eq!(store.queue_depth().await.unwrap(), (0, 2));
    assert_eq!(store.envelope_count().await.unwrap(), 2);
    // Files: quotas count bytes. An expired file stays while a retention
    // device has messages of its conversation queued since its upload; then,
    // as retention was sent messages of that conversation since, until a
    // retention device downloaded it (or a grace period passed).
    let blob_row = |size: u64| BlobRow { network_id: net, conversation_id: conv, size, sha256: vec![1; 32] };
    store.insert_blob(&id(60), &blob_row(100), &a, 500, Some(600)).await.unwrap();
    store.insert_blob(&id(61), &blob_row(50), &b, 200_000, Some(200_100)).await.unwrap();
    store.insert_blob(&id(62), &blob_row(7), &a, 2000, None).await.unwrap();
    assert_eq!(store.blob_usage(&a, &net).await.unwrap(), (107, 157));
    assert_eq!(
        store.expired_blobs(300_000, 0, 10).await.unwrap(),
        vec![id(61)],
        "60: queued for retention since its upload; 61: nothing sent to retention since (an unsent upload); 62: no expiry"
    );
    store.ack(&r90, &[id(40), id(41)]).await.unwrap();
    assert_eq!(store.retention_coverage(&r90).await.unwrap()[0].queued, 0, "acknowledged: counted, no longer queued");
    assert_eq!(store.expired_blobs(300_000, 0, 10).await.unwrap(), vec![id(61)], "60 waits for its retention download");
    let after_grace = 600 + RETRY_GRACE_MS + 1;
    assert!(store.expired_blobs(after_grace, 0, 10).await.unwrap().contains(&id(60)), "not forever");
    store.blob_fetched_by_retention(&id(60)).await.unwrap();
    assert_eq!(store.expired_blobs(300_000, 0, 10).await.unwrap(), vec![id(60), id(61)]);
    assert_eq!(store.expired_blobs(300_000, 100_000, 10).await.unwrap(), vec![id(60), id(61)], "62 awaits retention");
    store.blob_fetched_by_retention(&id(62)).await.unwrap();
    assert_eq!(store.expired_blobs(300_000, 100_000, 10).await.unwrap(), vec![id(60), id(62), id(61)], "a lifetime");
    assert!(!store.begin_blob_removal(&id(62), 300_000, 0).await.unwrap(), "no expiry without a lifetime");
    assert!(store.begin_blob_removal(&id(60), 300_000, 0).await.unwrap());
    assert_eq!(store.blob(&id(60)).await.unwrap(), None, "no download once removal began");
    assert!(store.expired_blobs(0, 0, 10).await.unwrap().contains(&id(60)), "a begun removal is retried");
    store.delete_blob(&id(60)).await.unwrap();
    assert_eq!(store.blob_usage(&a, &net).await.unwrap(), (7, 57));
    assert_eq!(store.envelope_count().await.unwrap(), 0, "envelopes go once every queue has them acked");
    // Swept, yet a replay is still a duplicate (until the replay window has passed).
    assert_eq!(store.store_envelope(env(40, None), tails(40), 5000).await.unwrap(), StoreOutcome::Duplicate(1));
    assert_eq!(store.store_envelope(other.clone(), tails(40), 5000).await.unwrap(), StoreOutcome::IdConflict);
    assert_eq!(store.envelope_count().await.unwrap(), 0, "nothing stored again");
    store.expire(2_678_700_000 + 1000 + 1, 1000).await.unwrap();
    assert_eq!(
        store.store_envelope(env(40, None), tails(40), 2_678_700_002).await.unwrap(),
        StoreOutcome::Stored(3),
        "forgotten after the window"
    );

    let seq = store.change_members(&conv, &[], &[b], &[], &[], None).await.unwrap();
    assert_eq!(seq, 2);
    assert_eq!(*store.member_devices(&conv).await.unwrap(), vec![(a, id(32))]);
}
on_every_backend!(conversations_and_delivery_sqlite_and_postgres, conversations_and_delivery);

/// Many envelopes and acks at once land in shared commits: sequence numbers
/// stay gapless per conversation, a repeated id inside one group is a
/// duplicate of the first, a clashing id is refused, and concurrent acks
/// from several devices each count their own.
async fn group_commits(store: Store) {
    let net = network(&store).await;
    let (a, b) = (user(&store, &net, 50, "a").await, user(&store, &net, 51, "b").await);
    device(&store, &net, &a, 52).await;
    let (d53, d54) = (device(&store, &net, &b, 53).await, device(&store, &net, &b, 54).await);
    store.put_device_list(&net, &a, &[1; 32], 1, &[0; 32], b"l", &[(id(52), false)]).await.unwrap().unwrap();
    store
        .put_device_list(&net, &b, &[2; 32], 1, &[0; 32], b"l", &[(id(53), false), (id(54), false)])
        .await
        .unwrap()
        .unwrap();
    let (c1, c2) = (id(55), id(56));
    for c in [c1, c2] {
        store
            .create_conversation(&c, &net, Kind::Group, &[(a, Role::Member), (b, Role::Member)], 0, None)
            .await
            .unwrap();
    }
    let env = |m: u16, conv: [u8; 16], sender: u8| {
        let mut message_id = [0u8; 16];
        message_id[..2].copy_from_slice(&m.to_be_bytes());
        StoredEnvelope {
            message_id,
            network_id: net,
            conversation_id: conv,
            sender_device: id(sender),
            prefix: vec![1; 8],
            signature: vec![2; 64],
            expires_at: None,
        }
    };
    let tails = vec![(id(53), vec![3], false), (id(54), vec![4], false)];
    // 200 distinct envelopes over two conversations, then id 0 again (same
    // sender: duplicate) and id 1 from another device (clash), all at once.
    let mut jobs: Vec<StoredEnvelope> = (0..200u16).map(|m| env(m, if m % 2 == 0 { c1 } else { c2 }, 52)).collect();
    jobs.push(env(0, c1, 52));
    jobs.push(env(1, c2, 57));
    let outcomes =
        futures_util::future::join_all(jobs.iter().map(|e| store.store_envelope(e.clone(), tails.clone(), 1000))).await;
    let outcomes: Vec<StoreOutcome> = outcomes.into_iter().map(Result::unwrap).collect();
    for conv in [c1, c2] {
        let mut seqs: Vec<u64> = jobs[..200]
            .iter()
            .zip(&outcomes)
            .filter(|(e, _)| e.conversation_id == conv)
            .map(|(_, o)| match o {
                StoreOutcome::Stored(s) => *s,
                other => panic!("{other:?}"),
            })
            .collect();
        seqs.sort_unstable();
        assert_eq!(seqs, (1..=100).collect::<Vec<u64>>(), "gapless per conversation");
        assert_eq!(store.conversation(&conv).await.unwrap().unwrap().last_seq, 100);
    }
    let StoreOutcome::Stored(first) = outcomes[0] else { panic!() };
    assert_eq!(outcomes[200], StoreOutcome::Duplicate(first));
    assert_eq!(outcomes[201], StoreOutcome::IdConflict);
    assert_eq!(store.envelope_count().await.unwrap(), 200);

    // Both devices ack everything concurrently, half of it twice.
    let ids: Vec<[u8; 16]> = jobs[..200].iter().map(|e| e.message_id).collect();
    let acks = futures_util::future::join_all([
        store.ack(&d53, &ids[..100]),
        store.ack(&d53, &ids[100..]),
        store.ack(&d54, &ids),
        store.ack(&d54, &ids[..100]),
    ])
    .await;
    let acks: Vec<u64> = acks.into_iter().map(Result::unwrap).collect();
    assert_eq!(acks[0] + acks[1], 200);
    assert_eq!(acks[2] + acks[3], 200, "a repeated ack removes nothing twice");
    assert_eq!(store.queue_depth().await.unwrap(), (0, 0));
    assert_eq!(store.envelope_count().await.unwrap(), 0, "fully acknowledged envelopes are gone");
    assert_eq!(store.ack(&d53, &[]).await.unwrap(), 0);

    // An envelope naming a conversation that is not stored fails its group,
    // which is committed again one by one: only that envelope fails.
    let ghost = id(58);
    let mixed: Vec<StoredEnvelope> = (300..310u16).map(|m| env(m, if m == 305 { ghost } else { c1 }, 52)).collect();
    let outcomes =
        futures_util::future::join_all(mixed.iter().map(|e| store.store_envelope(e.clone(), tails.clone(), 1000)))
            .await;
    let mut seqs = Vec::new();
    for (e, o) in mixed.iter().zip(&outcomes) {
        match o {
            Ok(StoreOutcome::Stored(s)) if e.conversation_id == c1 => seqs.push(*s),
            Err(_) if e.conversation_id == ghost => {}
            other => panic!("{:?}: {other:?}", e.message_id),
        }
    }
    seqs.sort_unstable();
    assert_eq!(seqs, (101..=109).collect::<Vec<u64>>(), "gapless: the failed one took no number");
    assert_eq!(store.envelope_count().await.unwrap(), 9);
}
on_every_backend!(group_commits_sqlite_and_postgres, group_commits);

/// On SQLite the committer hands each committed row to the sink, in queue
/// order and exactly as `queued` would read it back.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn committed_rows_go_to_the_sink_in_queue_order() {
    let store = sqlite().await;
    let seen = std::sync::Arc::new(std::sync::Mutex::new(Vec::new()));
    let into = seen.clone();
    assert!(store.deliver_to(Box::new(move |device, row| into.lock().unwrap().push((*device, row())))));
    assert!(store.delivers_directly());
    let net = network(&store).await;
    let (a, b) = (user(&store, &net, 60, "a").await, user(&store, &net, 61, "b").await);
    let conv = id(62);
    store
        .create_conversation(&conv, &net, Kind::Group, &[(a, Role::Member), (b, Role::Member)], 0, None)
        .await
        .unwrap();
    let owners = [device(&store, &net, &b, 64).await, device(&store, &net, &b, 65).await];
    let envs: Vec<StoredEnvelope> = (0..50u8).map(|m| envelope(m, net, conv, id(63))).collect();
    let tails = vec![(id(64), vec![1], false), (id(65), vec![2], false)];
    futures_util::future::join_all(envs.iter().map(|e| store.store_envelope(e.clone(), tails.clone(), 1))).await;
    // A duplicate delivers nothing again.
    store.store_envelope(envs[0].clone(), tails.clone(), 2).await.unwrap();
    let seen = seen.lock().unwrap().clone();
    assert_eq!(seen.len(), 100);
    for owner in owners {
        let pushed: Vec<_> = seen.iter().filter(|(d, _)| *d == owner.device).map(|(_, r)| r.clone()).collect();
        assert!(pushed.windows(2).all(|w| w[0].queue_id < w[1].queue_id), "in queue order");
        assert_eq!(pushed, store.queued(&owner, 0, 100, usize::MAX).await.unwrap(), "as the store reads them back");
    }
}

/// On SQLite the group committer has its own connection to the file the
/// pool opened (here named with a percent-encoded space, which sqlx
/// decodes): it commits there, `close` lets it finish and stops it, the
/// write-ahead log is folded back into the database, and a later write is
/// refused rather than hanging.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_sqlite_committer_writes_the_pools_file_and_stops_on_close() {
    let dir = std::env::temp_dir().join(format!("sr-store-close-{}", std::process::id()));
    let _ = std::fs::remove_dir_all(&dir);
    std::fs::create_dir_all(dir.join("a b")).unwrap();
    let store = Store::connect(&format!("sqlite://{}/a%20b/t.db?mode=rwc", dir.display())).await.unwrap();
    let net = network(&store).await;
    let (a, b) = (user(&store, &net, 70, "a").await, user(&store, &net, 71, "b").await);
    let conv = id(72);
    store
        .create_conversation(&conv, &net, Kind::Direct, &[(a, Role::Member), (b, Role::Member)], 0, None)
        .await
        .unwrap();
    let env = |m: u8| envelope(m, net, conv, id(73));
    let tails = vec![(id(74), vec![1], false)];
    let stored =
        futures_util::future::join_all((1..=20u8).map(|m| store.store_envelope(env(m), tails.clone(), 1))).await;
    assert!(stored.iter().all(|o| matches!(o, Ok(StoreOutcome::Stored(_)))), "{stored:?}");
    assert!(!dir.join("a%20b").exists(), "no second database under the undecoded name");
    store.close().await;
    let wal = dir.join("a b/t.db-wal");
    // sqlx's worker threads close their connections after `close` returns;
    // the last one to close folds the log in.
    let folded = || !wal.exists() || std::fs::metadata(&wal).map(|m| m.len() == 0).unwrap_or(true);
    for _ in 0..50 {
        if folded() {
            break;
        }
        std::thread::sleep(std::time::Duration::from_millis(100));
    }
    assert!(folded(), "the log was checkpointed at close");
    let late = tokio::time::timeout(std::time::Duration::from_secs(10), store.store_envelope(env(99), tails, 2)).await;
    assert!(matches!(late, Ok(Err(_))), "{late:?}");
    // Everything committed before the close is in the file.
    let again = Store::connect(&format!("sqlite://{}/a%20b/t.db", dir.display())).await.unwrap();
    assert_eq!(again.envelope_count().await.unwrap(), 20);
    again.close().await;
    let _ = std::fs::remove_dir_all(&dir);
}

/// A delivered envelope's bytes leave the database file: they are deleted
/// (not cleared in place) and overwritten where they lay (`secure_delete`),
/// while an undelivered one's are still there.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_delivered_envelopes_bytes_leave_the_file() {
    let dir =
        std::env::temp_dir().join(format!("sr-store-erase-{}", rand_chacha::ChaCha8Rng::from_entropy().next_u64()));
    std::fs::create_dir_all(&dir).unwrap();
    let file = dir.join("t.db");
    let store = Store::connect(&format!("sqlite://{}?mode=rwc", file.display())).await.unwrap();
    let net = network(&store).await;
    let (a, b) = (user(&store, &net, 80, "a").await, user(&store, &net, 81, "b").await);
    let conv = id(82);
    store
        .create_conversation(&conv, &net, Kind::Direct, &[(a, Role::Member), (b, Role::Member)], 0, None)
        .await
        .unwrap();
    // Two envelopes whose bytes are random, so neither is found by chance,
    // and small enough to share a page: without `secure_delete` a deleted
    // one's bytes would stay in that page's free space.
    let mut rng = rand_chacha::ChaCha8Rng::from_entropy();
    let mut sealed = |m: u8| {
        let mut e = envelope(m, net, conv, id(83));
        e.prefix = vec![0; 600];
        rng.fill_bytes(&mut e.prefix);
        e
    };
    let (delivered, waiting) = (sealed(1), sealed(2));
    let device = id(84);
    for e in [delivered.clone(), waiting.clone()] {
        let tail = vec![(device, vec![7; 80], false)];
        assert!(matches!(store.store_envelope(e, tail, 1).await, Ok(StoreOutcome::Stored(_))));
    }
    let owner = DeviceRef { network: net, user: b, device };
    assert_eq!(store.ack(&owner, &[delivered.message_id]).await.unwrap(), 1);
    store.close().await;
    let wal = dir.join("t.db-wal");
    for _ in 0..50 {
        if !wal.exists() {
            break;
        }
        std::thread::sleep(std::time::Duration::from_millis(100));
    }
    let mut bytes = std::fs::read(&file).unwrap();
    bytes.extend(std::fs::read(&wal).unwrap_or_default());
    let holds = |needle: &[u8]| bytes.windows(needle.len()).any(|w| w == needle);
    assert!(holds(&waiting.prefix[..64]), "the waiting envelope is stored");
    assert!(!holds(&delivered.prefix[..64]), "the delivered envelope's bytes are still in the file");
    let _ = std::fs::remove_dir_all(&dir);
}

/// A device id has one owner for good: another account, another network,
/// a retention service or a reserved id never gets it; revocation is final
/// unless a wipe order is pending; device lists, wipes and their
/// confirmation stay within the owning account.
async fn device_ownership(store: Store) {
    let net = network(&store).await;
    let other = id(2);
    assert!(store.create_network(&other, "Other", &[8; 32], &policy(1, b"p", &[]), 0).await.unwrap());
    let (a, b) = (user(&store, &net, 70, "a").await, user(&store, &net, 71, "b").await);
    let m = user(&store, &other, 72, "mallory").await;
    let da = device(&store, &net, &a, 73).await;
    let login = |user: [u8; 16], network: [u8; 16], n: u8, token: u8| {
        let store = store.clone();
        async move {
            let d = DeviceRef { network, user, device: id(n) };
            store.login_succeeded(&[token; 32], SessionDevice::Device(d), 1, i64::MAX).await.unwrap()
        }
    };
    assert_eq!(login(a, net, 73, 100).await, DeviceClaim::Owned, "its owner again");
    assert_eq!(login(b, net, 73, 101).await, DeviceClaim::Taken, "another account");
    assert_eq!(login(m, other, 73, 102).await, DeviceClaim::Taken, "another network");
    for reserved in RESERVED_DEVICE_IDS {
        assert_eq!(login(a, net, reserved[0], 103).await, DeviceClaim::Taken, "reserved {reserved:?}");
    }
    assert!(store.session(&[101; 32], 2).await.unwrap().is_none(), "no session was made for the taker");
    assert_eq!(store.device_owner(&id(73)).await.unwrap(), Some(Owner { device: da, revoked: false }));

    // Retention ids: reserved by the policy, refused to accounts, and a
    // policy naming an account's device is refused.
    assert_eq!(store.put_policy(&net, &policy(2, b"p2", &[id(74)])).await.unwrap(), PolicyOutcome::Stored);
    assert_eq!(login(a, net, 74, 104).await, DeviceClaim::Taken, "a retention device");
    assert_eq!(store.put_policy(&net, &policy(3, b"p3", &[id(73)])).await.unwrap(), PolicyOutcome::DeviceTaken(id(73)));
    assert_eq!(
        store.put_policy(&other, &policy(2, b"p", &[id(74)])).await.unwrap(),
        PolicyOutcome::DeviceTaken(id(74))
    );

    // Device lists name only the account's own ids.
    assert_eq!(
        store.put_device_list(&net, &b, &[2; 32], 1, &[0; 32], b"l", &[(id(73), true)]).await.unwrap(),
        Err(DeviceListRefusal::NotOwned(id(73))),
        "b cannot revoke a's device"
    );
    assert_eq!(
        store
            .put_device_list(&net, &a, &[1; 32], 1, &[0; 32], b"l", &[(id(73), false), (id(75), false)])
            .await
            .unwrap(),
        Err(DeviceListRefusal::NotOwned(id(75))),
        "an id that never logged in"
    );
    let (ik, l1, l2) = signed_chain(&net, &a, 1, &[73]);
    store.put_device_list(&net, &a, &ik, 1, &[0; 32], &l1.encode(), &[(id(73), false)]).await.unwrap().unwrap();

    // Wipe orders: only for the owning account in its network; only the device confirms.
    assert!(!store.wipe_device(&DeviceRef { user: b, ..da }, 5).await.unwrap(), "b does not own it");
    assert!(!store.wipe_device(&DeviceRef { network: other, user: m, ..da }, 5).await.unwrap(), "other network");
    assert!(!store.wipe_pending(&da).await.unwrap());
    assert!(store.wipe_device(&da, 5).await.unwrap());
    assert!(store.session(&[73; 32], 6).await.unwrap().unwrap().wipe_pending);
    assert!(!store.confirm_wipe(&DeviceRef { user: b, ..da }, 6).await.unwrap(), "another account cannot confirm");
    assert!(store.wipe_pending(&da).await.unwrap());
    assert_eq!(login(a, net, 73, 105).await, DeviceClaim::Owned, "a wiped device still hears its order");
    assert!(store.confirm_wipe(&da, 7).await.unwrap());
    assert!(store.session(&[73; 32], 8).await.unwrap().is_none(), "confirmed: its sessions ended");
    assert_eq!(login(a, net, 73, 106).await, DeviceClaim::Revoked, "revocation is final");
    assert_eq!(
        store.put_device_list(&net, &a, &ik, 2, &l2.previous, &l2.encode(), &[(id(73), false)]).await.unwrap(),
        Ok(()),
        "a list may still name it…"
    );
    assert!(!store.device_active(&a, &id(73)).await.unwrap(), "…but it stays revoked");

    // Concurrent first logins with one new id (two accounts racing): one
    // claim wins, its account's other logins see it owned, the rival's are
    // refused, and nothing fails.
    let races = (0..16u8).map(|i| login(if i % 2 == 0 { a } else { b }, net, 77, 110 + i));
    let claims = futures_util::future::join_all(races).await;
    assert_eq!(claims.iter().filter(|c| **c == DeviceClaim::Claimed).count(), 1, "{claims:?}");
    let winner = store.device_owner(&id(77)).await.unwrap().unwrap().device.user;
    for (i, c) in claims.iter().enumerate() {
        let mine = if i % 2 == 0 { a } else { b };
        assert!(if mine == winner { c.allowed() } else { *c == DeviceClaim::Taken }, "{i}: {c:?}");
    }
}
on_every_backend!(device_ownership_sqlite_and_postgres, device_ownership);

async fn migrations_are_idempotent(store: Store) {
    store.migrate_again().await.unwrap();
    store.migrate_again().await.unwrap();
}
on_every_backend!(migrations_run_once_sqlite_and_postgres, migrations_are_idempotent);

/// PostgreSQL: a queue that grows by thousands of rows gets fresh planner
/// statistics at once (without them each page of a backlog read and sorted
/// the device's whole queue), not when autovacuum comes round.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn postgres_refreshes_queue_statistics_as_a_backlog_grows() {
    use sqlx::Row;
    let Some((store, schema)) = postgres().await else { return };
    let net = network(&store).await;
    let (a, b) = (user(&store, &net, 60, "a").await, user(&store, &net, 61, "b").await);
    let conv = id(62);
    store
        .create_conversation(&conv, &net, Kind::Direct, &[(a, Role::Member), (b, Role::Member)], 0, None)
        .await
        .unwrap();
    let base = std::env::var("STRONGROOM_TEST_POSTGRES_URL").unwrap();
    let mut admin = <sqlx::PgConnection as sqlx::Connection>::connect(&base).await.unwrap();
    let analyzed = |schema: String| {
        sqlx::query(
            "SELECT COALESCE(analyze_count, 0) + COALESCE(autoanalyze_count, 0) AS n FROM pg_stat_user_tables \
             WHERE schemaname = $1 AND relname = 'queue'",
        )
        .bind(schema)
    };
    let before: i64 = analyzed(schema.clone()).fetch_one(&mut admin).await.unwrap().get("n");
    let envs: Vec<StoredEnvelope> = (0..5_200u32)
        .map(|m| {
            let mut e = envelope(0, net, conv, id(63));
            e.message_id[..4].copy_from_slice(&m.to_be_bytes());
            e
        })
        .collect();
    for chunk in envs.chunks(1_000) {
        let done = futures_util::future::join_all(
            chunk.iter().map(|e| store.store_envelope(e.clone(), vec![(id(64), vec![1; 32], false)], 1000)),
        )
        .await;
        assert!(done.iter().all(|r| matches!(r, Ok(StoreOutcome::Stored(_)))));
    }
    let mut after = before;
    for _ in 0..100 {
        after = analyzed(schema.clone()).fetch_one(&mut admin).await.unwrap().get("n");
        if after > before {
            break;
        }
        tokio::time::sleep(std::time::Duration::from_millis(100)).await;
    }
    assert!(after > before, "the queue's statistics were not refreshed");
    store.close().await;
    drop_schema(&schema).await;
}

/// The schema at migration 10, as a relay of that version left it.
const SQLITE_TO_10: [&str; 10] = [
    include_str!("../migrations/sqlite/0001_initial.sql"),
    include_str!("../migrations/sqlite/0002_device_links.sql"),
    include_str!("../migrations/sqlite/0003_retention_sessions.sql"),
    include_str!("../migrations/sqlite/0004_administration.sql"),
    include_str!("../migrations/sqlite/0005_retention_checkpoints.sql"),
    include_str!("../migrations/sqlite/0006_device_ownership.sql"),
    include_str!("../migrations/sqlite/0007_relay_limits.sql"),
    include_str!("../migrations/sqlite/0008_device_list_chain.sql"),
    include_str!("../migrations/sqlite/0009_membership_statements.sql"),
    include_str!("../migrations/sqlite/0010_guests.sql"),
];
const POSTGRES_TO_10: [&str; 10] = [
    include_str!("../migrations/postgres/0001_initial.sql"),
    include_str!("../migrations/postgres/0002_device_links.sql"),
    include_str!("../migrations/postgres/0003_retention_sessions.sql"),
    include_str!("../migrations/postgres/0004_administration.sql"),
    include_str!("../migrations/postgres/0005_retention_checkpoints.sql"),
    include_str!("../migrations/postgres/0006_device_ownership.sql"),
    include_str!("../migrations/postgres/0007_relay_limits.sql"),
    include_str!("../migrations/postgres/0008_device_list_chain.sql"),
    include_str!("../migrations/postgres/0009_membership_statements.sql"),
    include_str!("../migrations/postgres/0010_guests.sql"),
];

/// Migration 11 (queue rows name envelopes by id; delivered envelopes
/// become tombstones) keeps what a relay at migration 10 held: queued rows
/// with their tails, in queue order; spent ids, still answered as
/// duplicates; queue positions never reused.
async fn upgrade_from_10(url: &str, pg: bool) {
    use sqlx::{Connection, Row};
    sqlx::any::install_default_drivers();
    let b = |bytes: [u8; 16]| {
        let hex: String = bytes.iter().map(|x| format!("{x:02x}")).collect();
        if pg {
            format!("'\\x{hex}'::bytea")
        } else {
            format!("x'{hex}'")
        }
    };
    let (net, user, conv, a, c, sender) = (id(1), id(2), id(3), id(4), id(5), id(6));
    let (m0, m1, m2) = (id(10), id(11), id(12));
    let mut raw = sqlx::AnyConnection::connect(url).await.unwrap();
    for sql in if pg { POSTGRES_TO_10 } else { SQLITE_TO_10 } {
        sqlx::raw_sql(sql).execute(&mut raw).await.unwrap();
    }
    let far = 4_000_000_000_000i64;
    let setup = format!(
        "CREATE TABLE schema_migrations (version BIGINT PRIMARY KEY, applied_at BIGINT NOT NULL);
         INSERT INTO schema_migrations (version, applied_at) VALUES (1,0),(2,0),(3,0),(4,0),(5,0),(6,0),(7,0),(8,0),(9,0),(10,0);
         INSERT INTO networks (id, name, network_public, created_at) VALUES ({net}, 'Acme', {net}, 0);
         INSERT INTO devices (device_id, network_id, user_id, claimed_at) VALUES ({a}, {net}, {user}, 0);
         INSERT INTO conversations (id, network_id, kind, last_seq, created_at) VALUES ({conv}, {net}, 1, 3, 0);
         INSERT INTO spent_messages (message_id, conversation_id, sender_device, seq, forget_at) VALUES ({m0}, {conv}, {sender}, 1, {far});
         INSERT INTO envelopes (message_id, network_id, conversation_id, seq, sender_device, prefix, signature, received_at, expires_at) VALUES
           ({m1}, {net}, {conv}, 2, {sender}, {m1}, {net}, 100, NULL), ({m2}, {net}, {conv}, 3, {sender}, {m2}, {net}, 200, {never});
         INSERT INTO queue (id, device_id, message_id, tail, retention, enqueued_at) VALUES
           (5, {a}, {m1}, {a}, 0, 100), (6, {c}, {m1}, {c}, 0, 100), (7, {a}, {m2}, {a}, 0, 200), (9, {c}, {m2}, {c}, 0, 200);
         DELETE FROM queue WHERE id = 9;",
        net = b(net), a = b(a), c = b(c), user = b(user), conv = b(conv), sender = b(sender),
        m0 = b(m0), m1 = b(m1), m2 = b(m2), never = far * 2
    );
    sqlx::raw_sql(&setup).execute(&mut raw).await.unwrap();
    if pg {
        // As if those rows had taken their ids from the sequence.
        sqlx::raw_sql("SELECT setval('queue_id_seq', 9)").execute(&mut raw).await.unwrap();
    }
    raw.close().await.unwrap();

    let store = Store::connect(url).await.unwrap();
    let owner = DeviceRef { network: net, user, device: a };
    let rows = store.queued(&owner, 0, 100, 1 << 20).await.unwrap();
    assert_eq!(rows.iter().map(|r| (r.queue_id, r.message_id, r.seq)).collect::<Vec<_>>(), [(5, m1, 2), (7, m2, 3)]);
    assert!(rows.iter().all(|r| r.envelope.windows(16).any(|w| w == a)), "each row keeps its tail");
    // The spent id is still a duplicate; a new message takes the next
    // sequence number and a queue position past every earlier one.
    let env = |m: [u8; 16]| StoredEnvelope { message_id: m, ..envelope(0, net, conv, sender) };
    assert_eq!(
        store.store_envelope(env(m0), vec![(a, vec![1], false)], 300).await.unwrap(),
        StoreOutcome::Duplicate(1)
    );
    assert_eq!(
        store.store_envelope(env(id(13)), vec![(a, vec![1], false)], 300).await.unwrap(),
        StoreOutcome::Stored(4)
    );
    let after = store.queued(&owner, 7, 100, 1 << 20).await.unwrap();
    assert_eq!(after.len(), 1);
    assert!(after[0].queue_id > 9, "queue position {} reused", after[0].queue_id);
    // m2 was only a's: acknowledged, it becomes a tombstone, a replay is a duplicate.
    assert_eq!(store.ack(&owner, &[m1, m2]).await.unwrap(), 2);
    assert_eq!(
        store.store_envelope(env(m2), vec![(a, vec![1], false)], 300).await.unwrap(),
        StoreOutcome::Duplicate(3)
    );
    assert_eq!(store.envelope_count().await.unwrap(), 2, "m1 (still c's) and the new one");
    // A tombstone keeps no bytes and no timer; only live envelopes have bytes.
    let mut raw = sqlx::AnyConnection::connect(url).await.unwrap();
    let row = sqlx::query(&format!(
        "SELECT (SELECT COUNT(*) FROM envelope_bodies b WHERE b.envelope = e.id) AS n, expires_at FROM envelopes e WHERE message_id = {}",
        b(m2)
    ))
    .fetch_one(&mut raw)
    .await
    .unwrap();
    assert_eq!((row.get::<i64, _>("n"), row.get::<Option<i64>, _>("expires_at")), (0, None));
    let bodies: i64 =
        sqlx::query("SELECT COUNT(*) AS n FROM envelope_bodies").fetch_one(&mut raw).await.unwrap().get("n");
    assert_eq!(bodies, 2, "m1's and the new one's");
    // Bytes a tombstone left behind (two acks racing on PostgreSQL, say)
    // go at the next expiry pass; live ones stay.
    sqlx::query(&format!(
        "INSERT INTO envelope_bodies (envelope, prefix, signature) SELECT id, {m}, {m} FROM envelopes WHERE message_id = {m}",
        m = b(m2)
    ))
    .execute(&mut raw)
    .await
    .unwrap();
    assert_eq!(store.expire(1000, i64::MAX / 4).await.unwrap(), 0);
    let bodies: i64 =
        sqlx::query("SELECT COUNT(*) AS n FROM envelope_bodies").fetch_one(&mut raw).await.unwrap().get("n");
    assert_eq!(bodies, 2, "the tombstone's bytes are swept, the live ones kept");
    // Tombstones are forgotten at their time (a month past receipt), not before.
    let month = 2_678_700_000;
    for (now, left) in [(month + 199, 4), (month + 201, 3), (far - 1, 3), (far + 1, 2)] {
        assert_eq!(store.expire(now, i64::MAX / 4).await.unwrap(), 0);
        let n: i64 = sqlx::query("SELECT COUNT(*) AS n FROM envelopes").fetch_one(&mut raw).await.unwrap().get("n");
        assert_eq!(n, left, "envelope rows at {now}");
    }
    raw.close().await.unwrap();
    store.close().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn migration_11_keeps_queues_and_spent_ids() {
    let dir = std::env::temp_dir().join(format!("sr-upgrade-{}", rand_chacha::ChaCha8Rng::from_entropy().next_u64()));
    std::fs::create_dir_all(&dir).unwrap();
    upgrade_from_10(&format!("sqlite://{}?mode=rwc", dir.join("t.db").display()), false).await;
    let Ok(base) = std::env::var("STRONGROOM_TEST_POSTGRES_URL") else {
        eprintln!("SKIPPED the PostgreSQL run: set STRONGROOM_TEST_POSTGRES_URL");
        return;
    };
    let schema = format!("sr_test_{}", rand_chacha::ChaCha8Rng::from_entropy().next_u64());
    let mut admin = <sqlx::PgConnection as sqlx::Connection>::connect(&base).await.unwrap();
    sqlx::Executor::execute(&mut admin, format!("CREATE SCHEMA {schema}").as_str()).await.unwrap();
    let sep = if base.contains('?') { '&' } else { '?' };
    upgrade_from_10(&format!("{base}{sep}options=-c%20search_path%3D{schema}"), true).await;
    drop_schema(&schema).await;
}

/// Administration: users, roles, suspension, deletion, device resets,
/// password resets, security groups and their settings, retention periods
/// and checkpoints, and the hash-chained audit log (on PostgreSQL appended
/// under a table lock, so concurrent appends still chain).
async fn administration(store: Store) {
    let net = network(&store).await;
    let other = id(2);
    assert!(store.create_network(&other, "Globex", &[8; 32], &policy(1, b"p", &[]), 0).await.unwrap());
    let alice = user(&store, &net, 70, "alice").await;
    let bob = user(&store, &net, 71, "bob").await;
    let mallory = user(&store, &other, 72, "mallory").await;
    assert_eq!(store.network_info(&net).await.unwrap(), Some(("Acme".to_owned(), vec![7; 32])));
    assert_eq!(store.network_info(&id(99)).await.unwrap(), None);
    assert_eq!(store.user_network(&bob).await.unwrap(), Some(net));
    assert_eq!(store.users_in_network(&net, &[alice, bob, mallory]).await.unwrap(), 2, "mallory is elsewhere");
    assert_eq!(store.live_user(&bob).await.unwrap(), Some((net, "bob".to_owned())));
    assert_eq!(store.password_hash(&bob).await.unwrap(), Some("hash".to_owned()));

    // Listing and search, per network.
    let names = |v: Vec<strongroom_wire::admin::AdminUser>| v.into_iter().map(|u| u.username).collect::<Vec<_>>();
    assert_eq!(names(store.admin_users(&net, None, false).await.unwrap()), vec!["alice", "bob"]);
    assert_eq!(names(store.admin_users(&net, Some("bo"), false).await.unwrap()), vec!["bob"]);
    assert_eq!(
        names(store.admin_users(&net, Some("%"), false).await.unwrap()),
        vec!["alice", "bob"],
        "wildcards are literal-free"
    );
    assert_eq!(names(store.admin_users(&other, None, false).await.unwrap()), vec!["mallory"]);

    // Roles and suspension.
    store.set_role(&bob, "auditor").await.unwrap();
    let listed = store.admin_users(&net, Some("bob"), false).await.unwrap();
    assert_eq!(listed[0].role, "auditor");
    let d = device(&store, &net, &bob, 73).await;
    store.put_device_list(&net, &bob, &[3; 32], 1, &[0; 32], b"l", &[(id(73), false)]).await.unwrap().unwrap();
    assert_eq!(store.identity_key(&bob).await.unwrap(), Some(vec![3; 32]));
    assert_eq!(store.user_devices(&bob).await.unwrap(), vec![id(73)]);
    assert!(store.revoked_devices(&bob).await.unwrap().is_empty());
    assert!(!store.is_suspended(&bob).await.unwrap());
    store.set_suspended(&bob, true).await.unwrap();
    assert!(store.is_suspended(&bob).await.unwrap());
    let s = store.session(&[73; 32], 2).await.unwrap();
    assert!(s.is_none_or(|s| s.suspended), "a suspended user's session does not pass as active");
    store.set_suspended(&bob, false).await.unwrap();
    assert!(store.session(&[73; 32], 2).await.unwrap().is_none(), "unsuspending does not revive old sessions");

    // Sessions: the console's idle timeout.
    let console = store.login_succeeded(&[74; 32], SessionDevice::Console { user: alice }, 100, 200).await.unwrap();
    assert!(console.allowed());
    store.touch_session(&[74; 32], 10_000).await.unwrap();
    assert!(store.session(&[74; 32], 5_000).await.unwrap().is_some(), "extended");

    // A device reset revokes every device and clears the identity.
    store.reset_devices(&bob).await.unwrap();
    assert_eq!(store.user_devices(&bob).await.unwrap(), vec![id(73)], "the id stays the account's, revoked");
    assert_eq!(store.identity_key(&bob).await.unwrap(), None);
    let again = store.login_succeeded(&[75; 32], SessionDevice::Device(d), 3, i64::MAX).await.unwrap();
    assert_eq!(again, DeviceClaim::Revoked, "a reset device id stays revoked");

    // Password resets: one-time, per user and network, and they stop the old password at once.
    store.create_reset(&alice, &[9; 32], 1_000).await.unwrap();
    assert!(store.session(&[74; 32], 500).await.unwrap().is_none(), "sessions end at the reset");
    assert_ne!(store.password_hash(&alice).await.unwrap(), Some("hash".to_owned()), "old password unusable");
    assert!(!store.redeem_reset(&net, "bob", &[9; 32], "new", 500).await.unwrap(), "someone else's code");
    assert!(!store.redeem_reset(&other, "alice", &[9; 32], "new", 500).await.unwrap(), "another network");
    assert!(!store.redeem_reset(&net, "alice", &[9; 32], "new", 1_500).await.unwrap(), "expired");
    store.create_reset(&alice, &[10; 32], 1_000).await.unwrap();
    assert!(!store.redeem_reset(&net, "alice", &[9; 32], "new", 500).await.unwrap(), "replaced by the newer code");
    assert!(store.redeem_reset(&net, "alice", &[10; 32], "new", 500).await.unwrap());
    assert!(!store.redeem_reset(&net, "alice", &[10; 32], "newer", 500).await.unwrap(), "used");
    assert_eq!(store.password_hash(&alice).await.unwrap(), Some("new".to_owned()));

    // Security groups: settings follow the user's group, else the network's.
    let strict =
        strongroom_wire::admin::GroupSettings { max_ttl_secs: 3600, files_enabled: false, ..Default::default() };
    let loose = strongroom_wire::admin::GroupSettings { max_ttl_secs: 0, files_enabled: true, ..Default::default() };
    assert_eq!(store.network_settings(&net).await.unwrap(), None);
    assert_eq!(store.effective_settings(&alice).await.unwrap(), None, "server defaults apply");
    store.set_network_settings(&net, &loose).await.unwrap();
    assert_eq!(store.network_settings(&net).await.unwrap(), Some(loose.clone()));
    assert_eq!(store.effective_settings(&alice).await.unwrap(), Some(loose.clone()));
    assert!(store.create_group(&net, &id(80), "traders", &strict, 0).await.unwrap());
    assert!(!store.create_group(&net, &id(81), "traders", &strict, 0).await.unwrap(), "name taken");
    assert!(store.create_group(&other, &id(82), "traders", &strict, 0).await.unwrap(), "names are per network");
    assert!(store.assign_group(&net, &alice, Some(&id(80))).await.unwrap());
    assert!(!store.assign_group(&net, &alice, Some(&id(82))).await.unwrap(), "another network's group");
    assert!(!store.assign_group(&other, &alice, Some(&id(82))).await.unwrap(), "a user of another network");
    assert_eq!(store.effective_settings(&alice).await.unwrap(), Some(strict.clone()));
    let groups = store.groups(&net).await.unwrap();
    assert_eq!((groups.len(), groups[0].name.as_str(), groups[0].members), (1, "traders", 1));
    assert!(store.update_group(&net, &id(80), "desk", &loose).await.unwrap());
    assert!(!store.update_group(&other, &id(80), "desk", &loose).await.unwrap(), "not in that network");
    assert_eq!(store.effective_settings(&alice).await.unwrap(), Some(loose.clone()));
    assert!(!store.delete_group(&other, &id(80)).await.unwrap());
    assert!(store.delete_group(&net, &id(80)).await.unwrap());
    assert!(store.groups(&net).await.unwrap().is_empty());
    assert!(
        store.admin_users(&net, Some("alice"), false).await.unwrap()[0].group_id.is_none(),
        "members leave with it"
    );

    // Lookups by id or name stay inside the network.
    let found = |u: Option<strongroom_wire::UserInfo>| u.map(|u| (*u.user_id.as_bytes(), u.username, u.guest));
    assert_eq!(
        found(store.find_user(&net, Some(&alice), None).await.unwrap()),
        Some((alice, "alice".to_owned(), false))
    );
    assert_eq!(found(store.find_user(&net, None, Some("bob")).await.unwrap()), Some((bob, "bob".to_owned(), false)));
    assert_eq!(store.find_user(&other, Some(&alice), None).await.unwrap(), None, "not across networks");
    assert_eq!(store.find_user(&other, None, Some("alice")).await.unwrap(), None);

    // Re-enrolment: an invite bound to an account re-enrols that account only.
    store.create_invite(&[40; 32], &net, false, i64::MAX, 0).await.unwrap();
    store.bind_invite_user(&[40; 32], &alice).await.unwrap();
    assert_eq!(store.register(&[40; 32], &id(77), "bob", "h", 10).await.unwrap(), LoginOutcome::WrongUser);
    assert_eq!(
        store.register(&[40; 32], &id(77), "alice", "h", 10).await.unwrap(),
        LoginOutcome::Reenrolled(net, alice)
    );

    // Retention logins: single-use nonces, only for the network's retention ids.
    store.put_policy(&net, &policy(3, b"policy-3", &[id(90)])).await.unwrap();
    let login = |nonce: u8, network: [u8; 16], device: u8| {
        let s = store.clone();
        async move { s.retention_login(&[nonce; 16], &network, &id(device), &[nonce; 32], 10, 10_000).await.unwrap() }
    };
    assert_eq!(login(1, net, 90).await, RetentionLoginOutcome::Session);
    assert_eq!(login(1, net, 90).await, RetentionLoginOutcome::Replayed, "a nonce works once");
    assert_eq!(login(2, other, 90).await, RetentionLoginOutcome::NotOwned, "another network's retention id");
    assert_eq!(login(3, net, 73).await, RetentionLoginOutcome::NotOwned, "bob's device id");

    // Retention periods and checkpoints, per network.
    store.put_policy(&net, &policy(2, b"policy-2", &[id(90)])).await.unwrap();
    let conv = id(91);
    store.create_conversation(&conv, &net, Kind::Group, &[(alice, Role::Member)], 0, None).await.unwrap();
    assert_eq!(store.membership(&conv, &alice).await.unwrap(), Some((net, true)));
    assert_eq!(store.membership(&conv, &bob).await.unwrap(), Some((net, false)), "in the network, not a member");
    assert_eq!(store.membership(&id(92), &alice).await.unwrap(), None, "no such conversation");
    assert!(store.retention_periods(&net).await.unwrap().is_empty());
    let keep = strongroom_wire::admin::GroupSettings { retention_days: 2555, ..Default::default() };
    assert!(store.create_group(&net, &id(83), "records", &keep, 0).await.unwrap());
    assert!(store.assign_group(&net, &alice, Some(&id(83))).await.unwrap());
    assert_eq!(store.retention_periods(&net).await.unwrap(), vec![(alice, 2555)]);
    assert!(store.retention_periods(&other).await.unwrap().is_empty());
    store.put_retention_checkpoint(&net, &id(90), 5, &[4; 32], 100, 200).await.unwrap();
    store.put_retention_checkpoint(&net, &id(90), 7, &[5; 32], 300, 400).await.unwrap();
    let cps = store.retention_checkpoints(&net).await.unwrap();
    assert_eq!(cps.last().map(|c| (c.0, c.1, c.2)), Some((id(90), 7, [5; 32])));
    assert!(store.retention_checkpoints(&other).await.unwrap().is_empty());

    // The audit log: appended in order, chained, filtered; concurrent appends still chain.
    store.audit(&net, "alice", "user.suspend", "bob", "192.0.2.1", "{}", 1_000).await.unwrap();
    store.audit(&net, "alice", "group.create", "traders", "192.0.2.1", "{}", 2_000).await.unwrap();
    let writers: Vec<_> = (0..16)
        .map(|i| {
            let s = store.clone();
            tokio::spawn(async move {
                s.audit(&id(1), "bot", "user.invite", &format!("u{i}"), "::1", "{}", 3_000 + i).await
            })
        })
        .collect();
    for w in writers {
        w.await.unwrap().unwrap();
    }
    store.audit(&other, "mallory", "user.suspend", "x", "::1", "{}", 1_500).await.unwrap();
    let all = store.audit_entries(&net, &AuditQuery::default()).await.unwrap();
    assert_eq!(all.len(), 18);
    assert_eq!(all.iter().map(|e| e.seq).collect::<Vec<_>>(), (1..=18).collect::<Vec<_>>());
    strongroom_wire::admin::verify_audit_chain(&all).unwrap();
    let q = AuditQuery { action: Some("group.create".into()), ..Default::default() };
    assert_eq!(store.audit_entries(&net, &q).await.unwrap().len(), 1);
    let q = AuditQuery { from: Some(1_000), until: Some(2_000), ..Default::default() };
    assert_eq!(store.audit_entries(&net, &q).await.unwrap().len(), 1, "until is exclusive");
    let q = AuditQuery { actor: Some("bot".into()), ..Default::default() };
    assert_eq!(store.audit_entries(&net, &q).await.unwrap().len(), 16);
    assert_eq!(store.audit_entries(&other, &AuditQuery::default()).await.unwrap().len(), 1, "per network");

    // Deleting a user ends them everywhere; their name is not taken by a deleted row.
    store.delete_user(&bob).await.unwrap();
    assert_eq!(store.live_user(&bob).await.unwrap(), None);
    assert_eq!(names(store.admin_users(&net, None, false).await.unwrap()), vec!["alice"]);

    // Device links: a request, its approval, only for the same account.
    store.request_link(&alice, &id(76), b"sign", b"link", 10).await.unwrap();
    assert_eq!(store.links(&alice, 20).await.unwrap().len(), 1);
    assert!(store.links(&alice, 10 + 3_600_001).await.unwrap().is_empty(), "an hour later");
    assert!(!store.approve_link(&mallory, &id(76), b"sealed", 20).await.unwrap(), "not mallory's request");
    assert!(store.approve_link(&alice, &id(76), b"sealed", 20).await.unwrap());
    assert_eq!(store.links(&alice, 20).await.unwrap()[0].3, Some(b"sealed".to_vec()));
    // At most 16 pending per account: the oldest go, the newest stays.
    for n in 0..20u8 {
        store.request_link(&alice, &id(100 + n), b"sign", b"link", 30 + i64::from(n)).await.unwrap();
    }
    let kept = store.links(&alice, 60).await.unwrap();
    assert_eq!(kept.len(), 16);
    assert_eq!(kept.last().unwrap().0, id(119));
    assert!(!kept.iter().any(|r| r.0 == id(76) || r.0 == id(103)));

    // The bootstrap secret: set once, rotated only from the current one.
    assert!(store.init_bootstrap_hash(&[1; 32]).await.unwrap());
    assert!(!store.init_bootstrap_hash(&[2; 32]).await.unwrap(), "set once");
    assert_eq!(store.bootstrap_hash().await.unwrap(), Some(vec![1; 32]));
    assert!(!store.rotate_bootstrap_hash(&[2; 32], &[3; 32]).await.unwrap(), "not the current one");
    assert!(store.rotate_bootstrap_hash(&[1; 32], &[3; 32]).await.unwrap());
    assert!(!store.rotate_bootstrap_hash(&[1; 32], &[4; 32]).await.unwrap(), "each secret works once");
    assert_eq!(store.bootstrap_hash().await.unwrap(), Some(vec![3; 32]));
}
on_every_backend!(administration_sqlite_and_postgres, administration);

/// A table's shape, the same in both dialects: (column, kind, not null, in the primary key).
type Shape = std::collections::BTreeMap<String, Vec<(String, &'static str, bool, bool)>>;

fn kind(declared: &str) -> &'static str {
    match declared.to_ascii_lowercase().as_str() {
        "blob" | "bytea" => "bytes",
        "integer" | "bigint" | "int" | "int8" | "smallint" => "integer",
        "text" | "character varying" | "varchar" => "text",
        _ => "other",
    }
}

/// The two dialects' migrations build the same schema: tables, columns
/// (name, kind, nullability, primary key) and named indexes. A migration
/// written for one dialect and forgotten (or mistyped) in the other fails here.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn sqlite_and_postgres_schemas_match() {
    use sqlx::{Connection, Row};
    let Some((pg, schema)) = postgres().await else { return };
    pg.close().await;
    let dir = std::env::temp_dir().join(format!("sr-parity-{}", rand_chacha::ChaCha8Rng::from_entropy().next_u64()));
    std::fs::create_dir_all(&dir).unwrap();
    let url = format!("sqlite://{}?mode=rwc", dir.join("t.db").display());
    Store::connect(&url).await.unwrap().close().await;

    let mut lite = sqlx::SqliteConnection::connect(&url).await.unwrap();
    let mut lite_shape = Shape::new();
    let tables: Vec<String> =
        sqlx::query("SELECT name FROM sqlite_master WHERE type = 'table' AND name NOT LIKE 'sqlite_%' ORDER BY name")
            .fetch_all(&mut lite)
            .await
            .unwrap()
            .iter()
            .map(|r| r.get("name"))
            .collect();
    for t in &tables {
        let cols = sqlx::query(&format!("PRAGMA table_info({t})")).fetch_all(&mut lite).await.unwrap();
        let mut v: Vec<_> = cols
            .iter()
            .map(|c| {
                let pk = c.get::<i64, _>("pk") > 0;
                (
                    c.get::<String, _>("name"),
                    kind(&c.get::<String, _>("type")),
                    pk || c.get::<i64, _>("notnull") != 0,
                    pk,
                )
            })
            .collect();
        v.sort();
        lite_shape.insert(t.clone(), v);
    }
    let lite_indexes: Vec<String> = sqlx::query(
        "SELECT name FROM sqlite_master WHERE type = 'index' AND name NOT LIKE 'sqlite_autoindex%' ORDER BY name",
    )
    .fetch_all(&mut lite)
    .await
    .unwrap()
    .iter()
    .map(|r| r.get("name"))
    .collect();

    let base = std::env::var("STRONGROOM_TEST_POSTGRES_URL").unwrap();
    let mut pgc = sqlx::PgConnection::connect(&base).await.unwrap();
    let pks: HashSet<(String, String)> = sqlx::query(
        "SELECT k.table_name::text AS t, k.column_name::text AS c FROM information_schema.table_constraints tc \
         JOIN information_schema.key_column_usage k ON k.constraint_name = tc.constraint_name AND k.table_schema = tc.table_schema \
         WHERE tc.constraint_type = 'PRIMARY KEY' AND tc.table_schema = $1",
    )
    .bind(&schema)
    .fetch_all(&mut pgc)
    .await
    .unwrap()
    .iter()
    .map(|r| (r.get("t"), r.get("c")))
    .collect();
    let mut pg_shape = Shape::new();
    for r in sqlx::query(
        "SELECT table_name::text AS t, column_name::text AS c, data_type::text AS ty, is_nullable::text AS n \
         FROM information_schema.columns WHERE table_schema = $1",
    )
    .bind(&schema)
    .fetch_all(&mut pgc)
    .await
    .unwrap()
    {
        let (t, c): (String, String) = (r.get("t"), r.get("c"));
        let pk = pks.contains(&(t.clone(), c.clone()));
        pg_shape.entry(t).or_default().push((c, kind(&r.get::<String, _>("ty")), r.get::<String, _>("n") == "NO", pk));
    }
    for v in pg_shape.values_mut() {
        v.sort();
    }
    let mut pg_indexes: Vec<String> = sqlx::query(
        "SELECT indexname::text AS i FROM pg_indexes WHERE schemaname = $1 \
         AND indexname NOT IN (SELECT conname FROM pg_constraint)",
    )
    .bind(&schema)
    .fetch_all(&mut pgc)
    .await
    .unwrap()
    .iter()
    .map(|r| r.get("i"))
    .collect();
    pg_indexes.sort();
    drop_schema(&schema).await;

    assert_eq!(lite_shape.keys().collect::<Vec<_>>(), pg_shape.keys().collect::<Vec<_>>(), "tables");
    for (table, cols) in &lite_shape {
        assert_eq!(Some(cols), pg_shape.get(table), "columns of {table} (SQLite left, PostgreSQL right)");
    }
    assert_eq!(lite_indexes, pg_indexes, "indexes");
}

/// A write that reads first and finds SQLite's writer lock held by another
/// connection waits for it (the busy timeout) instead of failing at once:
/// the deterministic form of the race above.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_write_that_reads_first_waits_for_the_writer_lock() {
    let dir =
        std::env::temp_dir().join(format!("sr-store-held-{}", rand_chacha::ChaCha8Rng::from_entropy().next_u64()));
    std::fs::create_dir_all(&dir).unwrap();
    let file = dir.join("t.db");
    let store = Store::connect(&format!("sqlite://{}?mode=rwc", file.display())).await.unwrap();
    let net = network(&store).await;
    let u = user(&store, &net, 20, "erin").await;
    let (ik, l1, _) = signed_chain(&net, &u, 20, &[]);
    let mut other =
        <sqlx::SqliteConnection as sqlx::Connection>::connect(&format!("sqlite://{}", file.display())).await.unwrap();
    sqlx::Executor::execute(&mut other, "BEGIN IMMEDIATE").await.unwrap();
    let release = tokio::spawn(async move {
        tokio::time::sleep(std::time::Duration::from_millis(300)).await;
        sqlx::Executor::execute(&mut other, "COMMIT").await.unwrap();
    });
    // Reads the user's lists, then pins the identity key.
    assert!(store.put_device_list(&net, &u, &ik, 1, &[0; 32], &l1.encode(), &[]).await.unwrap().is_ok());
    release.await.unwrap();
    store.close().await;
    let _ = std::fs::remove_dir_all(&dir);
}
