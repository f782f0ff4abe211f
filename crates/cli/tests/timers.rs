//! Disappearing messages: once a TTL runs out, the message is removed from
//! the local store on disk (its sealed bytes are overwritten), not hidden.
#![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic, clippy::indexing_slicing)]

mod common;

use std::path::Path;

use common::*;
use sqlx::{Connection, Row};
use strongroom_client::Client;
use strongroom_crypto::content::Content;

async fn sealed_blobs(profile: &Path) -> Vec<Vec<u8>> {
    let mut c =
        sqlx::SqliteConnection::connect(&format!("sqlite://{}", profile.join("store.db").display())).await.unwrap();
    let rows = sqlx::query("SELECT sealed FROM messages").fetch_all(&mut c).await.unwrap();
    rows.iter().map(|r| r.get::<Vec<u8>, _>("sealed")).collect()
}

fn on_disk(profile: &Path, needle: &[u8]) -> bool {
    std::fs::read_dir(profile).unwrap().any(|e| {
        let p = e.unwrap().path();
        p.is_file() && std::fs::read(&p).unwrap().windows(needle.len()).any(|w| w == needle)
    })
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn expired_messages_are_gone_from_disk() {
    let dir = temp_dir("ttl");
    let server = ServerProc::start(&dir.join("data"), &[]);
    let (mut alice, mut bob) = two_clients(&dir, &server).await;
    let bob_dir = dir.join("bob");
    let conv = alice.direct_with("bob").await.unwrap();

    alice.send(conv, &Content::Text("stays".into()), 0).await.unwrap();
    alice.send(conv, &Content::Text("self-destructs".into()), 2).await.unwrap();
    let r = bob.sync().await.unwrap();
    assert_eq!(r.received.len(), 2);
    let before = sealed_blobs(&bob_dir).await;
    assert_eq!(before.len(), 2);
    for b in &before {
        assert!(on_disk(&bob_dir, b), "each sealed record is in the store file before expiry");
    }

    tokio::time::sleep(std::time::Duration::from_millis(2500)).await;
    bob.sync().await.unwrap(); // purges what has expired
    let left: Vec<Content> = bob.messages(Some(conv)).await.unwrap().into_iter().map(|m| m.content).collect();
    assert_eq!(left, vec![Content::Text("stays".into())]);
    let after = sealed_blobs(&bob_dir).await;
    assert_eq!(after.len(), 1);
    let gone: Vec<&Vec<u8>> = before.iter().filter(|b| !after.contains(b)).collect();
    assert_eq!(gone.len(), 1);
    assert!(!on_disk(&bob_dir, gone[0]), "the expired record's bytes must be overwritten on disk, not just unlinked");
    assert!(on_disk(&bob_dir, &after[0]));
    // The sender's own copy expires too.
    alice.sync().await.unwrap();
    assert_eq!(alice.messages(Some(conv)).await.unwrap().len(), 1);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn medium_term_prekeys_rotate_and_old_private_halves_are_deleted() {
    use strongroom_client::{GRACE_MS, ROTATE_AFTER_MS};
    let dir = temp_dir("rotate");
    let server = ServerProc::start(&dir.join("data"), &[]);
    let (_, admin_invite) = create_network(&server, &dir, "acme");
    let mut alice =
        Client::enrol(&dir.join("alice"), "alice passphrase", &admin_invite, "alice", PASSWORD).await.unwrap();
    let now = now_ms();
    assert_eq!(alice.prekey_counts().0, 1);
    alice.maintain_keys(now + 1000).await.unwrap();
    assert_eq!(alice.prekey_counts().0, 1, "no rotation before a week");
    // t1: the first key A is a week old -> B is made; A is kept for the grace period.
    let t1 = now + ROTATE_AFTER_MS + 1000;
    alice.maintain_keys(t1).await.unwrap();
    assert_eq!(alice.prekey_counts().0, 2);
    // Just before A's grace ends, B is itself due for rotation -> C; A, B, C all kept.
    let t2 = t1 + GRACE_MS - 1000;
    alice.maintain_keys(t2).await.unwrap();
    assert_eq!(alice.prekey_counts().0, 3);
    // Past A's grace (counted from when B replaced it): A's private half is deleted.
    alice.maintain_keys(t1 + GRACE_MS + 1000).await.unwrap();
    assert_eq!(alice.prekey_counts().0, 2, "B and C remain");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn burn_on_read_starts_at_first_display_and_defaults_apply() {
    let dir = temp_dir("bor");
    let server = ServerProc::start(&dir.join("data"), &[]);
    let (mut alice, mut bob) = two_clients(&dir, &server).await;
    let conv = alice.direct_with("bob").await.unwrap();

    alice.send_timed(conv, &Content::Text("burn me".into()), 0, 1).await.unwrap();
    let got = bob.sync().await.unwrap().received;
    assert_eq!(got.len(), 1);
    // Unread, it stays however long it waits.
    tokio::time::sleep(std::time::Duration::from_millis(1300)).await;
    bob.sync().await.unwrap();
    assert_eq!(bob.messages(Some(conv)).await.unwrap().len(), 1);
    // Shown once, it is gone a second later.
    bob.mark_displayed(&[got[0].message_id]).await.unwrap();
    tokio::time::sleep(std::time::Duration::from_millis(1300)).await;
    bob.sync().await.unwrap();
    assert!(bob.messages(Some(conv)).await.unwrap().is_empty());

    // Conversation defaults: announced in-band, followed by both sides.
    alice.set_default_timers(conv, 1, 0).await.unwrap();
    bob.sync().await.unwrap();
    assert_eq!(bob.default_timers(conv).await.unwrap(), (1, 0));
    alice.send_text(conv, "short-lived by default").await.unwrap();
    let got = bob.sync().await.unwrap().received;
    assert_eq!(got.len(), 1);
    tokio::time::sleep(std::time::Duration::from_millis(1300)).await;
    bob.sync().await.unwrap();
    let left: Vec<Content> = bob.messages(Some(conv)).await.unwrap().into_iter().map(|m| m.content).collect();
    assert!(!left.contains(&Content::Text("short-lived by default".into())), "{left:?}");
}

/// A sender uses a one-time pre-key of a device only for its first message
/// to it (and again once per medium-term period); between, the device's
/// signed medium-term key. So a chatty sender cannot empty a device's
/// one-time pool, and the forward-secrecy granularity is the one
/// THREAT_MODEL.md states.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn one_time_prekeys_are_used_once_per_medium_term_period() {
    let dir = temp_dir("one-time-use");
    let server = ServerProc::start(&dir.join("data"), &[]);
    let (mut alice, mut bob) = two_clients(&dir, &server).await;
    let conv = alice.direct_with("bob").await.unwrap();
    let before = bob.prekey_counts().1;
    for i in 0..3 {
        alice.send(conv, &Content::Text(format!("message {i}")), 0).await.unwrap();
    }
    assert_eq!(bob.sync().await.unwrap().received.len(), 3);
    assert_eq!(bob.prekey_counts().1, before - 1, "only the first message used (and deleted) a one-time key");
}

/// A username goes into the lookup URL percent-encoded: "bob#x" is not Bob
/// (before, the fragment was cut off and the lookup found Bob), and "&" or
/// "=" cannot inject a parameter.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn usernames_are_escaped_in_lookups() {
    let dir = temp_dir("escape");
    let server = ServerProc::start(&dir.join("data"), &[]);
    let (alice, bob) = two_clients(&dir, &server).await;
    assert_eq!(alice.find_user("bob").await.unwrap(), bob.user_id());
    for odd in ["bob#x", "bob?x", "bob&username=alice", "bob/../alice", "bob%00"] {
        assert!(alice.find_user(odd).await.is_err(), "{odd} must not resolve to anyone");
    }
}
