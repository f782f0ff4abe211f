//! A profile (and a key file) written by an older release must open and
//! read after every upgrade. `crates/client/tests/fixtures/profile-schema-N` holds a real
//! profile (Bob's, after a short exchange with Alice) written by the release
//! whose local store had schema N; each is committed once and never
//! regenerated, so a migration that breaks old data fails here.
#![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic, clippy::indexing_slicing)]

mod common;

use std::path::{Path, PathBuf};

use common::*;
use strongroom_client::Client;
use strongroom_crypto::content::Content;

const PASSPHRASE: &str = "bob passphrase";

fn fixture(schema: u32) -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join(format!("../client/tests/fixtures/profile-schema-{schema}"))
}

fn copy_profile(from: &Path, to: &Path) {
    std::fs::create_dir_all(to).unwrap();
    for name in ["profile.json", "store.db"] {
        std::fs::copy(from.join(name), to.join(name)).unwrap();
    }
}

/// Writes the fixture for the current schema. Run once, by hand, when a
/// release changes the schema: `cargo test -p strongroom --test
/// profile_upgrade -- --ignored write_fixture` (then commit the directory).
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
#[ignore = "writes a fixture; run by hand when the schema changes"]
async fn write_fixture() {
    let schema: u32 =
        std::env::var("STRONGROOM_FIXTURE_SCHEMA").expect("set STRONGROOM_FIXTURE_SCHEMA").parse().unwrap();
    let dir = temp_dir("fixture");
    let server = ServerProc::start(&dir.join("data"), &[]);
    let (mut alice, mut bob) = two_clients(&dir, &server).await;
    let conv = alice.direct_with("bob").await.unwrap();
    let hello = alice.send_text(conv, "hello bob").await.unwrap();
    let draft = alice.send_text(conv, "first draft").await.unwrap();
    let draft_id = draft.message_id;
    alice.send(conv, &Content::Edit { target: draft_id, text: "final text".into() }, 0).await.unwrap();
    bob.sync().await.unwrap();
    bob.send_text(conv, "hi alice").await.unwrap();
    let hello_id = hello.message_id;
    bob.send(conv, &Content::Reaction { target: hello_id, emoji: "👍".into(), remove: false }, 0).await.unwrap();
    bob.close().await;
    let out = fixture(schema);
    assert!(!out.exists(), "{} exists: fixtures are written once", out.display());
    copy_profile(&dir.join("bob"), &out);
    eprintln!("wrote {}", out.display());
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn profiles_from_every_earlier_schema_open_and_read_with_no_relay() {
    for schema in [1, 2] {
        let dir = temp_dir("upgrade");
        let profile = dir.join("bob");
        copy_profile(&fixture(schema), &profile);
        // Twice: the first open migrates, the second finds nothing to do.
        for _ in 0..2 {
            // No server runs: stored history is readable offline.
            let bob = open_again(&profile).await;
            assert_eq!(bob.username(), "bob");
            let view = bob.view(None).await.unwrap();
            let texts: Vec<String> = view
                .iter()
                .map(|i| match &i.message.content {
                    Content::Text(t) => t.clone(),
                    other => format!("{other:?}"),
                })
                .collect();
            assert_eq!(texts, ["hello bob", "final text", "hi alice"], "schema {schema}");
            assert!(view[1].edited);
            assert_eq!(view[0].reactions.len(), 1);
            assert_eq!(view[0].reactions[0].1, "👍");
            assert_eq!(bob.messages(None).await.unwrap().len(), 5);
            // History from before the upgrade counts as read; nothing is
            // queued and the event log starts empty.
            let states = bob.read_states().await.unwrap();
            assert!(states.iter().all(|s| s.unread == 0 && !s.muted), "{states:?}");
            assert!(bob.queued().await.unwrap().is_empty());
            assert!(bob.events(0, 10).await.unwrap().is_empty());
            bob.close().await;
        }
    }
}

/// Opens the profile just closed. The other test here spawns processes: a
/// child forked while the previous open held the profile's lock keeps a copy
/// of its descriptor (and so the lock) until it execs, so a busy profile is
/// tried again for a moment.
async fn open_again(profile: &Path) -> Client {
    for _ in 0..50 {
        match Client::open(profile, PASSPHRASE).await {
            Err(strongroom_client::ClientError::ProfileBusy(_)) => {
                tokio::time::sleep(std::time::Duration::from_millis(100)).await
            }
            other => return other.unwrap(),
        }
    }
    panic!("the profile stayed busy")
}

fn fixture_file(name: &str) -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join("tests/fixtures").join(name)
}

/// Key files written by the release before the SDK's one sealed-secret
/// helper still open with it: the network key file through the CLI, the
/// retention key file through the retention service.
#[test]
fn key_files_written_by_the_earlier_release_still_open() {
    let dir = temp_dir("old-keys");
    // The network key, unlocked by `admin network fingerprint`.
    let network_key = fixture_file("network-key-v1.json");
    let out = std::process::Command::new(bin())
        .args(["admin", "network", "fingerprint", "--key-file"])
        .arg(&network_key)
        .env("STRONGROOM_NETWORK_KEY_PASSPHRASE", "network key passphrase")
        .output()
        .unwrap();
    assert!(out.status.success(), "{}", String::from_utf8_lossy(&out.stderr));
    let shown = String::from_utf8_lossy(&out.stdout);
    assert!(shown.contains("4255052ff9cfb22da5b125e07f5abd03") && shown.contains("b39d 87e9 30f6 3fd7"), "{shown}");
    let wrong = std::process::Command::new(bin())
        .args(["admin", "network", "fingerprint", "--key-file"])
        .arg(&network_key)
        .env("STRONGROOM_NETWORK_KEY_PASSPHRASE", "not the passphrase")
        .output()
        .unwrap();
    assert!(!wrong.status.success());
    assert!(String::from_utf8_lossy(&wrong.stderr).contains("wrong passphrase"));

    let rdir = dir.join("retention");
    std::fs::create_dir_all(&rdir).unwrap();
    std::fs::copy(fixture_file("retention-key-v1.json"), rdir.join("retention.key")).unwrap();
    let keys = strongroom_retention::keys::RetentionKeys::load(&rdir, "retention passphrase").unwrap();
    assert_eq!(keys.device_id().unwrap().to_string(), "2b20997fe1045e7b3fba41ea4ceb72e2");
    assert!(matches!(
        strongroom_retention::keys::RetentionKeys::load(&rdir, "not the passphrase"),
        Err(strongroom_retention::RetentionError::Unlock(_))
    ));
}
