//! Cluster mode with the real binary: two `strongroom server` processes on
//! one PostgreSQL database, one shared blob store and NATS, behind a plain
//! round-robin TCP balancer (no sticky sessions). A message accepted by one
//! node is pushed at once to a device connected to the other; files cross
//! nodes; one node is killed mid-stream and its clients carry on through the
//! other with nothing lost or duplicated.
//!
//! Needs `STRONGROOM_TEST_POSTGRES_URL` and `STRONGROOM_TEST_NATS_URL` (CI sets
//! both; this machine kind runs PostgreSQL and NATS); otherwise it says SKIPPED.
#![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic, clippy::indexing_slicing)]

mod common;

use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::Arc;
use std::time::{Duration, Instant};

use common::*;
use futures_util::StreamExt;
use rand_core::RngCore;
use strongroom_client::ClientError;
use strongroom_crypto::content::Content;
use strongroom_wire::WsFrame;
use tokio_tungstenite::tungstenite::client::IntoClientRequest;
use tokio_tungstenite::tungstenite::Message;

/// Round-robin over the backends; a dead one is skipped at connect time.
async fn balancer(backends: Vec<String>) -> String {
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let url = format!("http://{}", listener.local_addr().unwrap());
    let next = Arc::new(AtomicUsize::new(0));
    tokio::spawn(async move {
        loop {
            let Ok((mut inbound, _)) = listener.accept().await else { continue };
            let (backends, start) = (backends.clone(), next.fetch_add(1, Ordering::Relaxed));
            tokio::spawn(async move {
                for k in 0..backends.len() {
                    let addr = &backends[(start + k) % backends.len()];
                    if let Ok(mut out) = tokio::net::TcpStream::connect(addr).await {
                        let _ = tokio::io::copy_bidirectional(&mut inbound, &mut out).await;
                        return;
                    }
                }
            });
        }
    });
    url
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn two_nodes_share_everything_and_survive_losing_one() {
    let (Ok(pg), Ok(nats)) = (std::env::var("STRONGROOM_TEST_POSTGRES_URL"), std::env::var("STRONGROOM_TEST_NATS_URL"))
    else {
        eprintln!("SKIPPED: cluster test needs STRONGROOM_TEST_POSTGRES_URL and STRONGROOM_TEST_NATS_URL");
        return;
    };
    let dir = temp_dir("cluster");
    // A fresh schema: the nodes' tables do not meet any other test's.
    let schema = format!("sr_cluster_{}", rand_core::OsRng.next_u64());
    let mut admin = <sqlx::PgConnection as sqlx::Connection>::connect(&pg).await.unwrap();
    sqlx::Executor::execute(&mut admin, format!("CREATE SCHEMA {schema}").as_str()).await.unwrap();
    let sep = if pg.contains('?') { '&' } else { '?' };
    let db = format!("{pg}{sep}options=-c%20search_path%3D{schema}");
    let blobs = format!("file://{}", dir.join("shared-blobs").display());
    std::fs::create_dir_all(dir.join("shared-blobs")).unwrap();

    // Ports first, so the balancer knows both nodes.
    let port = || std::net::TcpListener::bind("127.0.0.1:0").unwrap().local_addr().unwrap().to_string();
    let (a_addr, b_addr) = (port(), port());
    let lb = balancer(vec![a_addr.clone(), b_addr.clone()]).await;
    let args = ["--database-url", &db, "--blob-store", &blobs, "--nats-url", &nats, "--public-url", &lb];
    let mut node_a = ServerProc::start_on(&dir.join("a"), &a_addr, &args);
    let node_b = ServerProc::start_on(&dir.join("b"), &b_addr, &args);

    // Users are enrolled through the balancer (the invites carry its URL).
    let (mut alice, mut bob) = two_clients(&dir, &node_a).await;
    let conv = alice.direct_with("bob").await.unwrap();
    alice.send_text(conv, "hello across the cluster").await.unwrap();
    assert_eq!(bob.sync().await.unwrap().received.len(), 1);

    // Cross-node push: a device connected to node B is woken by a message node A accepted.
    let invite = alice.create_invite(false).await.unwrap().invite;
    register(&node_b.url, &invite, "carol").await;
    let mut carol = Device::enrol(&node_b.url, alice.network_id(), "carol", None, &[], 5).await;
    let invite = alice.create_invite(false).await.unwrap().invite;
    register(&node_a.url, &invite, "dave").await;
    let mut dave = Device::enrol(&node_a.url, alice.network_id(), "dave", None, &[], 5).await;
    let c = dave.create_conversation("direct", &[carol.user]).await;
    let mut req = format!("{}/v1/ws", node_b.url.replace("http://", "ws://")).into_client_request().unwrap();
    req.headers_mut().insert("Authorization", format!("Bearer {}", carol.token).parse().unwrap());
    let (mut ws, _) = tokio_tungstenite::connect_async(req).await.unwrap();
    tokio::time::sleep(Duration::from_millis(300)).await;
    let sent_at = Instant::now();
    dave.send_text(&c.id, "via node A, to a socket on node B").await;
    let frame = tokio::time::timeout(Duration::from_secs(5), async {
        loop {
            if let Message::Text(t) = ws.next().await.unwrap().unwrap() {
                break serde_json::from_str::<WsFrame>(&t).unwrap();
            }
        }
    })
    .await
    .expect("pushed across nodes within 5 s (the fallback poll is 10 s)");
    let WsFrame::Message(d) = frame else { panic!("expected a message frame") };
    let pushed_in = sent_at.elapsed();
    assert_eq!(carol.open(&d).await.unwrap().content, Content::Text("via node A, to a socket on node B".into()));
    eprintln!("cross-node push latency: {pushed_in:?}");

    // Suspending carol (through the balancer: either node) refuses her on
    // both nodes within a second, although each had just remembered her
    // session (the other node hears of it over NATS; its memo alone would
    // hold for 2 s), and closes her socket on node B.
    let http = reqwest::Client::new();
    for node in [&node_a.url, &node_b.url] {
        let r = http.get(format!("{node}/v1/conversations")).bearer_auth(&carol.token).send().await.unwrap();
        assert!(r.status().is_success(), "{}", r.status());
    }
    let suspended_at = Instant::now();
    alice.admin_call(reqwest::Method::POST, &format!("/v1/admin/users/{}/suspend", carol.user), None).await.unwrap();
    for node in [&node_a.url, &node_b.url] {
        loop {
            let r = http.get(format!("{node}/v1/conversations")).bearer_auth(&carol.token).send().await.unwrap();
            if r.status() == 403 {
                break;
            }
            assert!(suspended_at.elapsed() < Duration::from_millis(1500), "{node} still serves a suspended user");
            tokio::time::sleep(Duration::from_millis(20)).await;
        }
    }
    let closed = tokio::time::timeout(Duration::from_secs(3), async {
        loop {
            match ws.next().await {
                None | Some(Err(_)) | Some(Ok(Message::Close(_))) => break,
                Some(Ok(_)) => continue,
            }
        }
    })
    .await;
    assert!(closed.is_ok(), "the suspended user's socket on node B is still open");

    // Files: uploaded through one node, downloaded through the other.
    let file = dir.join("deck.pdf");
    std::fs::write(&file, vec![7u8; 200_000]).unwrap();
    alice.send_file(conv, &file, &|_, _| {}).await.unwrap();
    let got = bob.sync().await.unwrap();
    let Content::File(f) = &got.received[0].content else { panic!("expected a file") };
    for _ in 0..2 {
        let out = dir.join(format!("deck-{}.pdf", rand_core::OsRng.next_u32()));
        bob.get_file(f, &out, &|_, _| {}).await.unwrap();
        assert_eq!(std::fs::read(&out).unwrap(), vec![7u8; 200_000]);
    }

    // Node A dies mid-stream; clients keep going through node B.
    let mut given_up = 0;
    for i in 0..200 {
        if i == 60 {
            node_a.child.kill().unwrap();
            node_a.child.wait().unwrap();
        }
        loop {
            match alice.send_text(conv, &format!("m{i}")).await {
                Ok(a) => {
                    assert!(!a.duplicate);
                    break;
                }
                Err(ClientError::Network(_)) if given_up < 20 => given_up += 1,
                Err(e) => panic!("send {i}: {e}"),
            }
        }
    }
    let r = bob.sync().await.unwrap();
    assert!(r.warnings.is_empty(), "{:?}", r.warnings);
    let texts: Vec<Content> = r.received.iter().map(|m| m.content.clone()).collect();
    let want: Vec<Content> = (0..200).map(|i| Content::Text(format!("m{i}"))).collect();
    assert_eq!(texts, want, "every message once, in order");
    drop(node_b);
    let mut admin = <sqlx::PgConnection as sqlx::Connection>::connect(&pg).await.unwrap();
    sqlx::Executor::execute(&mut admin, format!("DROP SCHEMA {schema} CASCADE").as_str()).await.unwrap();
}
