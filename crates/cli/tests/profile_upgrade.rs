//! A profile written by an older release must open and read after every
//! upgrade. `crates/client/tests/fixtures/profile-schema-N` holds a real
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
    let draft_id = strongroom_crypto::ids::MessageId::parse_hex(&draft.message_id).unwrap();
    alice.send(conv, &Content::Edit { target: draft_id, text: "final text".into() }, 0).await.unwrap();
    bob.sync().await.unwrap();
    bob.send_text(conv, "hi alice").await.unwrap();
    let hello_id = strongroom_crypto::ids::MessageId::parse_hex(&hello.message_id).unwrap();
    bob.send(conv, &Content::Reaction { target: hello_id, emoji: "👍".into(), remove: false }, 0).await.unwrap();
    bob.close().await;
    let out = fixture(schema);
    assert!(!out.exists(), "{} exists: fixtures are written once", out.display());
    copy_profile(&dir.join("bob"), &out);
    eprintln!("wrote {}", out.display());
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_profile_from_schema_1_opens_and_reads_with_no_relay() {
    let dir = temp_dir("upgrade");
    let profile = dir.join("bob");
    copy_profile(&fixture(1), &profile);
    // Twice: the first open migrates, the second finds nothing to do.
    for _ in 0..2 {
        // No server runs: stored history is readable offline.
        let bob = Client::open(&profile, PASSPHRASE).await.unwrap();
        assert_eq!(bob.username(), "bob");
        let view = bob.view(None).await.unwrap();
        let texts: Vec<String> = view
            .iter()
            .map(|i| match &i.message.content {
                Content::Text(t) => t.clone(),
                other => format!("{other:?}"),
            })
            .collect();
        assert_eq!(texts, ["hello bob", "final text", "hi alice"]);
        assert!(view[1].edited);
        assert_eq!(view[0].reactions.len(), 1);
        assert_eq!(view[0].reactions[0].1, "👍");
        assert_eq!(bob.messages(None).await.unwrap().len(), 5);
        bob.close().await;
    }
}
