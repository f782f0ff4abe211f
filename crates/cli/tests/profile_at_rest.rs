//! A profile directory at rest holds neither message plaintext nor any
//! private key, in raw or hex form, after real traffic with the real server.
#![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic, clippy::indexing_slicing)]

mod common;

use common::*;
use strongroom_client::Client;

fn hex(b: &[u8]) -> String {
    b.iter().map(|x| format!("{x:02x}")).collect()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn no_plaintext_and_no_private_key_bytes_on_disk() {
    let dir = temp_dir("at-rest");
    let server = ServerProc::start(&dir.join("data"), &[]);
    let (mut alice, mut bob) = two_clients(&dir, &server).await;
    let conv = alice.direct_with("bob").await.unwrap();
    alice.send_text(conv, "merger codename BLUEHERON closes friday").await.unwrap();
    bob.sync().await.unwrap();
    bob.send_text(conv, "understood, BLUEHERON it is").await.unwrap();
    alice.sync().await.unwrap();
    // Rotation adds medium-term keys: more private keys to look for.
    bob.maintain_keys(u64::MAX / 2).await.unwrap();

    let mut checked = 0;
    for client in [alice, bob] {
        let keys = client.private_keys_for_tests();
        assert!(keys.len() > 50, "identity, device and the pre-key pool: {}", keys.len());
        let profile = client.dir().to_owned();
        client.close().await;
        for key in &keys {
            assert!(files_containing(&profile, key).is_empty(), "a private key in raw form on disk");
            assert!(files_containing(&profile, hex(key).as_bytes()).is_empty(), "a private key in hex on disk");
            checked += 1;
        }
        assert!(files_containing(&profile, b"BLUEHERON").is_empty(), "message plaintext on disk");
        // And the profile still opens with its passphrase (the scan looked at a live profile).
        let pass = if profile.ends_with("alice") { "alice passphrase" } else { "bob passphrase" };
        let reopened = Client::open(&profile, pass).await.unwrap();
        let texts = reopened.messages(None).await.unwrap();
        assert!(texts
            .iter()
            .any(|m| matches!(&m.content, strongroom_crypto::content::Content::Text(t) if t.contains("BLUEHERON"))));
        reopened.close().await;
    }
    assert!(checked > 100);
}
