//! Durability under load with the real binary: four senders keep envelopes
//! in flight (so commits are grouped) while the server is killed with
//! SIGKILL and restarted. Every envelope the server acknowledged is
//! delivered afterwards, exactly once.
#![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic, clippy::indexing_slicing)]

mod common;

use std::collections::HashSet;
use std::sync::{Arc, Mutex};

use common::*;
use strongroom_client::{Client, ClientError};

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn every_acknowledged_message_survives_sigkill_under_load() {
    let dir = temp_dir("durability");
    let mut server = ServerProc::start(&dir.join("data"), &[]);
    let (alice, mut bob) = two_clients(&dir, &server).await;
    let mut senders = vec![alice];
    for name in ["carol", "dave", "erin"] {
        let invite = senders[0].create_invite(false).await.unwrap().invite;
        senders.push(Client::enrol(&dir.join(name), "passphrase!", &invite, name, PASSWORD).await.unwrap());
    }
    let acked: Arc<Mutex<HashSet<String>>> = Arc::default();
    let mut tasks = Vec::new();
    for (n, mut c) in senders.into_iter().enumerate() {
        let acked = acked.clone();
        tasks.push(tokio::spawn(async move {
            let conv = c.direct_with("bob").await.unwrap();
            for i in 0..150 {
                // The SDK resends the same bytes through a crash; only a long outage surfaces here.
                loop {
                    match c.send_text(conv, &format!("sender {n} message {i}")).await {
                        Ok(a) => {
                            acked.lock().unwrap().insert(a.message_id.to_string());
                            break;
                        }
                        Err(ClientError::Network(_)) => tokio::time::sleep(std::time::Duration::from_millis(100)).await,
                        Err(e) => panic!("sender {n}: {e}"),
                    }
                }
            }
        }));
    }
    // Kill -9 while all four are sending, then restart on the same port.
    while acked.lock().unwrap().len() < 150 {
        tokio::time::sleep(std::time::Duration::from_millis(10)).await;
    }
    server.child.kill().unwrap();
    server.child.wait().unwrap();
    let before_crash = acked.lock().unwrap().len();
    let listen = server.url.trim_start_matches("http://").to_owned();
    server = ServerProc::start_on(&server.data_dir, &listen, &[]);
    for t in tasks {
        t.await.unwrap();
    }
    let acked = acked.lock().unwrap().clone();
    assert_eq!(acked.len(), 600);
    let mut received = HashSet::new();
    loop {
        let r = bob.sync().await.unwrap();
        assert!(r.warnings.is_empty(), "{:?}", r.warnings);
        if r.received.is_empty() {
            break;
        }
        for m in r.received {
            assert!(received.insert(m.message_id.to_string()), "delivered twice: {}", m.message_id);
        }
    }
    let missing: Vec<&String> = acked.difference(&received).collect();
    assert!(missing.is_empty(), "{} acknowledged messages lost (of {before_crash} before the crash)", missing.len());
    assert_eq!(received.len(), 600);
    drop(server);
}
