//! The client SDK against the real server binary, at volume: Bob is offline
//! while Alice sends 1,000 messages, and the server is killed (SIGKILL) and
//! restarted mid-stream. Everything arrives once, in order.
#![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic, clippy::indexing_slicing)]

mod common;

use common::*;
use strongroom_client::ClientError;
use strongroom_crypto::content::Content;

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn thousand_messages_offline_with_a_server_crash_mid_stream() {
    let dir = temp_dir("volume");
    let mut server = ServerProc::start(&dir.join("data"), &[]);
    let (mut alice, mut bob) = two_clients(&dir, &server).await;
    let conv = alice.direct_with("bob").await.unwrap();

    let mut retries = 0;
    for i in 0..1000 {
        if i == 400 {
            // Crash: no graceful shutdown. Everything acknowledged so far must survive.
            server.child.kill().unwrap();
            server.child.wait().unwrap();
            let listen = server.url.trim_start_matches("http://").to_owned();
            let restarted = ServerProc::start_on(&server.data_dir, &listen, &[]);
            server = restarted;
        }
        loop {
            match alice.send_text(conv, &format!("m{i}")).await {
                Ok(a) => {
                    assert!(!a.duplicate);
                    break;
                }
                Err(ClientError::Network(_)) if retries < 200 => {
                    retries += 1;
                    tokio::time::sleep(std::time::Duration::from_millis(50)).await;
                }
                Err(e) => panic!("send {i} failed: {e}"),
            }
        }
    }

    let started = std::time::Instant::now();
    let report = bob.sync().await.unwrap();
    let secs = started.elapsed().as_secs_f64();
    eprintln!("receive path: 1000 messages fetched, verified, decrypted, stored and acknowledged in {secs:.2} s ({:.0}/s, debug build)", 1000.0 / secs);
    assert!(report.warnings.is_empty(), "{:?}", report.warnings);
    assert_eq!(report.received.len(), 1000);
    for (i, m) in report.received.iter().enumerate() {
        assert_eq!(m.seq, i as u64 + 1);
        assert_eq!(m.content, Content::Text(format!("m{i}")));
    }
    // Nothing more, and the local store has each message once.
    assert!(bob.sync().await.unwrap().received.is_empty());
    assert_eq!(bob.messages(Some(conv)).await.unwrap().len(), 1000);
    // One-time pre-keys were used up and topped up again.
    let again = alice.send_text(conv, "after").await.unwrap();
    assert_eq!(again.seq, 1001);
    assert_eq!(bob.sync().await.unwrap().received[0].content, Content::Text("after".into()));
}
