//! End-to-end: the real `strongroom` binary, driven over HTTP and WebSocket
//! by clients that seal and open real envelopes.
#![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic, clippy::indexing_slicing)]

mod common;

use std::sync::Arc;
use std::time::Duration;

use common::*;
use futures_util::{SinkExt, StreamExt};
use reqwest::StatusCode;
use strongroom_crypto::attachment;
use strongroom_crypto::content::Content;
use strongroom_crypto::envelope::Envelope;
use strongroom_crypto::ids::UserId;
use strongroom_crypto::keys::SecretBytes;
use strongroom_wire::*;
use tokio_tungstenite::tungstenite::client::IntoClientRequest;
use tokio_tungstenite::tungstenite::Message;

/// Server, network, and three users: Alice (admin, two devices), Bob, Carol.
struct World {
    server: ServerProc,
    _dir: std::path::PathBuf,
    alice: Device,
    alice2: Device,
    bob: Device,
    carol: Device,
}

async fn world(tag: &str, extra: &[&str]) -> World {
    let dir = temp_dir(tag);
    let server = ServerProc::start(&dir.join("data"), extra);
    let (network, invite) = create_network(&server, &dir, "acme");
    register(&server.url, &invite, "alice").await;
    let alice = Device::enrol(&server.url, network, "alice", None, &[], 20).await;
    let alice2 = Device::enrol(&server.url, network, "alice", Some(Arc::clone(&alice.identity)), &[&alice], 20).await;
    register(&server.url, &alice.invite(false).await, "bob").await;
    let bob = Device::enrol(&server.url, network, "bob", None, &[], 20).await;
    register(&server.url, &alice.invite(false).await, "carol").await;
    let carol = Device::enrol(&server.url, network, "carol", None, &[], 20).await;
    World { server, _dir: dir, alice, alice2, bob, carol }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn group_delivery_to_every_device_and_idempotent_resend() {
    let mut w = world("group", &[]).await;
    let conv = w.alice.create_conversation("group", &[w.bob.user, w.carol.user]).await;
    let recipients = w.alice.recipients(&conv.id).await;
    assert_eq!(recipients.len(), 3, "alice's other device, bob, carol");
    let env = w.alice.seal_to(conv.id, &Content::Text("hello group".into()), &recipients);
    let bytes = env.encode();
    let first: Accepted = w.alice.post_envelope(bytes.clone()).await.json().await.unwrap();
    let again: Accepted = w.alice.post_envelope(bytes).await.json().await.unwrap();
    assert_eq!((first.seq, first.duplicate), (1, false));
    assert_eq!((again.seq, again.duplicate), (1, true), "a resend is harmless");
    for d in [&mut w.bob, &mut w.carol, &mut w.alice2] {
        assert_eq!(d.receive_all().await, vec![(1, "hello group".to_owned())]);
    }
    // The sending device gets no copy; nothing is delivered twice.
    assert!(w.alice.receive_all().await.is_empty());
    for d in [&mut w.bob, &mut w.carol, &mut w.alice2] {
        assert!(d.receive_all().await.is_empty());
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn offline_queue_then_in_order_and_restart_loses_nothing() {
    let mut w = world("offline", &[]).await;
    let conv = w.alice.create_conversation("direct", &[w.bob.user]).await;
    let recipients = w.alice.recipients(&conv.id).await;
    // Bob is offline while Alice sends 60 messages (one-time keys run out: fallback to the medium-term key).
    for i in 0..60 {
        let env = w.alice.seal_to(conv.id, &Content::Text(format!("m{i}")), &recipients);
        let a: Accepted = w.alice.post_envelope(env.encode()).await.json().await.unwrap();
        assert_eq!(a.seq, i + 1);
    }
    w.server.restart();
    let got = w.bob.receive_all().await;
    assert_eq!(got.len(), 60);
    for (i, (seq, text)) in got.iter().enumerate() {
        assert_eq!((*seq, text.as_str()), (i as u64 + 1, format!("m{i}").as_str()));
    }
    assert!(w.bob.receive_all().await.is_empty(), "acknowledged messages are gone");
}

/// The next text frame, or `None` if none comes within `wait`.
async fn next_frame<S>(ws: &mut S, wait: Duration) -> Option<WsFrame>
where
    S: futures_util::Stream<Item = Result<Message, tokio_tungstenite::tungstenite::Error>> + Unpin,
{
    tokio::time::timeout(wait, async {
        loop {
            if let Message::Text(t) = ws.next().await.unwrap().unwrap() {
                break serde_json::from_str::<WsFrame>(&t).unwrap();
            }
        }
    })
    .await
    .ok()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_websocket_is_pushed_at_most_its_window_until_it_acknowledges() {
    let dir = temp_dir("ws-window-config");
    std::fs::create_dir_all(&dir).unwrap();
    let config = dir.join("server.toml");
    std::fs::write(&config, "[limits]\npush_window = 5\n").unwrap();
    let mut w = world("ws-window", &["--config", s(&config)]).await;
    let conv = w.alice.create_conversation("direct", &[w.bob.user]).await;
    for i in 0..12 {
        w.alice.send_text(&conv.id, &format!("m{i}")).await;
    }
    let connect = || async {
        let mut req = format!("{}/v1/ws", w.server.url.replace("http://", "ws://")).into_client_request().unwrap();
        req.headers_mut().insert("Authorization", format!("Bearer {}", w.bob.token).parse().unwrap());
        tokio_tungstenite::connect_async(req).await.unwrap().0
    };
    let mut ws = connect().await;
    let mut got = Vec::new();
    while let Some(WsFrame::Message(d)) = next_frame(&mut ws, Duration::from_millis(700)).await {
        got.push(d.message_id);
    }
    assert_eq!(got.len(), 5, "the window, and no more until acknowledged");
    // Acknowledging two makes room for two more.
    let ack = serde_json::to_string(&WsFrame::Ack { message_ids: got[..2].to_vec() }).unwrap();
    ws.send(Message::Text(ack.into())).await.unwrap();
    let mut more = Vec::new();
    while let Some(WsFrame::Message(d)) = next_frame(&mut ws, Duration::from_millis(700)).await {
        more.push(d.message_id);
    }
    assert_eq!(more.len(), 2, "{more:?}");
    // Gone without acknowledging: a new connection gets what was in flight (5), then the rest.
    drop(ws);
    let mut ws = connect().await;
    let mut again = Vec::new();
    while let Some(WsFrame::Message(d)) = next_frame(&mut ws, Duration::from_millis(700)).await {
        again.push(d.message_id);
        let ack = serde_json::to_string(&WsFrame::Ack { message_ids: vec![d.message_id] }).unwrap();
        ws.send(Message::Text(ack.into())).await.unwrap();
    }
    assert_eq!(again.len(), 10, "the 10 not acknowledged, each once");
    assert_eq!(&again[..5], &[&got[2..], &more[..]].concat()[..], "in flight first, in order");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn websocket_pushes_and_takes_acks() {
    let mut w = world("ws", &[]).await;
    let conv = w.alice.create_conversation("direct", &[w.bob.user]).await;
    let mut req = format!("{}/v1/ws", w.server.url.replace("http://", "ws://")).into_client_request().unwrap();
    req.headers_mut().insert("Authorization", format!("Bearer {}", w.bob.token).parse().unwrap());
    let (mut ws, _) = tokio_tungstenite::connect_async(req).await.unwrap();
    // Unauthenticated sockets are refused.
    let bare = format!("{}/v1/ws", w.server.url.replace("http://", "ws://")).into_client_request().unwrap();
    assert!(tokio_tungstenite::connect_async(bare).await.is_err());

    w.alice.send_text(&conv.id, "pushed").await;
    let frame = tokio::time::timeout(Duration::from_secs(10), async {
        loop {
            match ws.next().await.unwrap().unwrap() {
                Message::Text(t) => break serde_json::from_str::<WsFrame>(&t).unwrap(),
                _ => continue,
            }
        }
    })
    .await
    .expect("push within 10 s");
    let WsFrame::Message(d) = frame else { panic!("expected a message frame") };
    let opened = w.bob.open(&d).await.unwrap();
    assert_eq!(opened.content, Content::Text("pushed".into()));
    let ack = serde_json::to_string(&WsFrame::Ack { message_ids: vec![d.message_id] }).unwrap();
    ws.send(Message::Text(ack.into())).await.unwrap();
    // A flush is answered once the ack before it is committed.
    ws.send(Message::Text(serde_json::to_string(&WsFrame::Flush).unwrap().into())).await.unwrap();
    assert_eq!(next_frame(&mut ws, Duration::from_secs(10)).await, Some(WsFrame::Flushed));
    let queued: Deliveries = w.bob.get("/v1/messages").await.json().await.unwrap();
    assert!(queued.messages.is_empty(), "acknowledged over WebSocket before the flush was answered");
    // A malformed frame gets an error frame, not a dropped connection.
    ws.send(Message::Text("{\"type\":\"nonsense\"}".into())).await.unwrap();
    let reply = next_frame(&mut ws, Duration::from_secs(10)).await;
    assert!(matches!(reply, Some(WsFrame::Error { .. })), "{reply:?}");
    // A device cannot make the relay send it frames only the relay sends.
    ws.send(Message::Text("{\"type\":\"flushed\"}".into())).await.unwrap();
    let reply = next_frame(&mut ws, Duration::from_secs(10)).await;
    assert!(matches!(reply, Some(WsFrame::Error { .. })), "{reply:?}");

    // A burst far larger than a connection's push channel, sent concurrently
    // while nobody reads the socket: every message arrives once, in order.
    let recipients = w.alice.recipients(&conv.id).await;
    let burst: Vec<Vec<u8>> =
        (0..600).map(|i| w.alice.seal_to(conv.id, &Content::Text(format!("b{i}")), &recipients).encode()).collect();
    for chunk in burst.chunks(60) {
        for r in futures_util::future::join_all(chunk.iter().map(|e| w.alice.post_envelope(e.clone()))).await {
            assert!(r.status().is_success());
        }
    }
    let mut seqs = Vec::new();
    tokio::time::timeout(Duration::from_secs(30), async {
        while seqs.len() < 600 {
            if let Message::Text(t) = ws.next().await.unwrap().unwrap() {
                if let WsFrame::Message(d) = serde_json::from_str::<WsFrame>(&t).unwrap() {
                    seqs.push(d.seq);
                }
            }
        }
    })
    .await
    .unwrap_or_else(|_| panic!("only {} of 600 pushed", seqs.len()));
    assert_eq!(seqs, (2..=601).collect::<Vec<u64>>(), "each once, in order");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn concurrent_prekey_claims_never_share_a_one_time_key() {
    let w = world("claims", &[]).await;
    let target = DeviceAddress { user: w.bob.user, device: w.bob.device };
    let mut tasks = Vec::new();
    for d in [&w.alice, &w.alice2, &w.carol] {
        for _ in 0..10 {
            let (http, url, token, t) = (d.http.clone(), d.url.clone(), d.token.clone(), target);
            tasks.push(tokio::spawn(async move {
                let r = http
                    .post(format!("{url}/v1/keys/claim"))
                    .bearer_auth(token)
                    .json(&ClaimPreKeys { devices: vec![t], medium_term: vec![] })
                    .send()
                    .await
                    .unwrap();
                assert_eq!(r.status(), StatusCode::OK);
                r.json::<ClaimedPreKeys>().await.unwrap().prekeys.remove(0).0
            }));
        }
    }
    let mut seen = std::collections::HashMap::new();
    for t in tasks {
        *seen.entry(t.await.unwrap()).or_insert(0) += 1;
    }
    // Bob uploaded 20 one-time keys and one medium-term key: 20 distinct one-time keys and 10 fallbacks.
    let repeated: Vec<_> = seen.values().filter(|n| **n > 1).collect();
    assert_eq!(seen.len(), 21, "20 one-time keys plus the medium-term key");
    assert_eq!(repeated, vec![&10], "only the medium-term key repeats");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn blob_round_trip_and_access_control() {
    let dir = temp_dir("blobcfg");
    let cfg = dir.join("server.toml");
    std::fs::write(&cfg, "[limits]\nmax_blob_bytes = 1000000\n").unwrap();
    let w = world("blob", &["--config", cfg.to_str().unwrap()]).await;
    let conv = w.alice.create_conversation("direct", &[w.bob.user]).await;
    let key = SecretBytes::new([9u8; 32]);
    let plain: Vec<u8> = (0..300_000).map(|i| (i % 251) as u8).collect();
    let mut blob = Vec::new();
    let summary = attachment::encrypt(&key, [1; 16], 65_536, &plain[..], &mut blob).unwrap();
    let sha = summary.ciphertext_sha256.iter().map(|b| format!("{b:02x}")).collect::<String>();
    let upload = |d: &Device, body: Vec<u8>, sha: String| {
        d.http
            .post(format!("{}/v1/blobs?conversation={}&sha256={sha}", d.url, conv.id))
            .bearer_auth(&d.token)
            .body(body)
            .send()
    };
    let r = upload(&w.alice, blob.clone(), sha.clone()).await.unwrap();
    assert_eq!(r.status(), StatusCode::CREATED, "{}", r.text().await.unwrap());
    let created: BlobCreated = r.json().await.unwrap();
    assert_eq!(created.size, blob.len() as u64);
    let got = w.bob.get(&format!("/v1/blobs/{}", created.blob_id)).await;
    assert_eq!(got.status(), StatusCode::OK);
    let bytes = got.bytes().await.unwrap();
    let mut back = Vec::new();
    attachment::decrypt(&key, &bytes[..], &mut back).unwrap();
    assert_eq!(back, plain);
    // Carol is not in the conversation.
    assert_eq!(w.carol.get(&format!("/v1/blobs/{}", created.blob_id)).await.status(), StatusCode::FORBIDDEN);
    assert_eq!(upload(&w.carol, blob.clone(), sha.clone()).await.unwrap().status(), StatusCode::FORBIDDEN);
    // Wrong hash, oversize, unknown blob.
    let bad = upload(&w.alice, blob.clone(), "00".repeat(32)).await.unwrap();
    assert_eq!(bad.status(), StatusCode::BAD_REQUEST);
    assert_eq!(bad.json::<ErrorBody>().await.unwrap().error, "hash_mismatch");
    assert_eq!(
        upload(&w.alice, vec![0u8; 1_000_001], sha.clone()).await.unwrap().status(),
        StatusCode::PAYLOAD_TOO_LARGE
    );
    assert_eq!(w.bob.get(&format!("/v1/blobs/{}", "ab".repeat(16))).await.status(), StatusCode::NOT_FOUND);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn networks_are_isolated() {
    let mut w = world("iso", &[]).await;
    let dir = temp_dir("iso-b");
    let (net_b, invite_b) = create_network(&w.server, &dir, "globex");
    register(&w.server.url, &invite_b, "mallory").await;
    let mut mallory = Device::enrol(&w.server.url, net_b, "mallory", None, &[], 2).await;
    register(&w.server.url, &mallory.invite(false).await, "trent").await;
    let trent = Device::enrol(&w.server.url, net_b, "trent", None, &[], 2).await;
    let conv = w.alice.create_conversation("direct", &[w.bob.user]).await;
    w.alice.send_text(&conv.id, "secret plans").await;

    assert_eq!(mallory.get(&format!("/v1/keys/{}", w.alice.user)).await.status(), StatusCode::NOT_FOUND);
    assert_eq!(mallory.get("/v1/users?username=alice").await.status(), StatusCode::NOT_FOUND);
    assert_eq!(mallory.get(&format!("/v1/users?id={}", w.alice.user)).await.status(), StatusCode::NOT_FOUND);
    let bob: UserInfo = w.alice.get("/v1/users?username=bob").await.json().await.unwrap();
    assert_eq!(bob, UserInfo { user_id: w.bob.user, username: "bob".into(), guest: false, expired: false });
    assert_eq!(w.alice.get("/v1/users").await.status(), StatusCode::BAD_REQUEST);
    // Network info is public: a new client checks the key against its invite's fingerprint.
    let info: NetworkInfo =
        reqwest::get(format!("{}/v1/networks/{net_b}", w.server.url)).await.unwrap().json().await.unwrap();
    assert_eq!(info.name, "globex");
    assert_eq!(
        reqwest::get(format!("{}/v1/networks/{}", w.server.url, "00".repeat(16))).await.unwrap().status(),
        StatusCode::NOT_FOUND
    );
    assert_eq!(mallory.get(&format!("/v1/conversations/{}", conv.id)).await.status(), StatusCode::NOT_FOUND);
    let r = mallory
        .post_json(
            "/v1/conversations",
            &CreateConversation { kind: ConversationKind::Direct, members: vec![w.alice.user] },
        )
        .await;
    assert_eq!(r.status(), StatusCode::NOT_FOUND);
    let r = mallory
        .post_json(
            "/v1/keys/claim",
            &ClaimPreKeys {
                devices: vec![DeviceAddress { user: w.bob.user, device: w.bob.device }],
                medium_term: vec![],
            },
        )
        .await;
    assert_eq!(r.status(), StatusCode::NOT_FOUND);
    // An envelope aimed at network A's conversation from network B.
    let own = mallory.create_conversation("direct", &[trent.user]).await;
    let recipients = mallory.recipients(&own.id).await;
    let env = mallory.seal_to(conv.id, &Content::Text("x".into()), &recipients);
    assert_eq!(mallory.post_envelope(env.encode()).await.status(), StatusCode::NOT_FOUND);
    assert!(mallory.receive_all().await.is_empty());
    assert_eq!(w.bob.receive_all().await.len(), 1);
    // Same username in both networks is fine; logins stay apart.
    assert_eq!(
        login(&w.server.url, net_b, "alice", strongroom_crypto::ids::DeviceId::random(&mut rand_core::OsRng))
            .await
            .status(),
        StatusCode::UNAUTHORIZED
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn bad_input_gets_precise_errors() {
    let mut w = world("bad", &[]).await;
    let conv = w.alice.create_conversation("group", &[w.bob.user]).await;
    let url = w.server.url.clone();
    let http = reqwest::Client::new();
    // 401 without or with a bad token.
    assert_eq!(http.get(format!("{url}/v1/messages")).send().await.unwrap().status(), StatusCode::UNAUTHORIZED);
    assert_eq!(
        http.get(format!("{url}/v1/messages")).bearer_auth("nope").send().await.unwrap().status(),
        StatusCode::UNAUTHORIZED
    );
    // 400 malformed envelope, with a typed body.
    let r = w.alice.post_envelope(b"not an envelope".to_vec()).await;
    assert_eq!(r.status(), StatusCode::BAD_REQUEST);
    assert_eq!(r.json::<ErrorBody>().await.unwrap().error, "malformed_envelope");
    // 400 malformed JSON and ids.
    let r = w
        .alice
        .http
        .post(format!("{url}/v1/conversations"))
        .bearer_auth(&w.alice.token)
        .header("content-type", "application/json")
        .body("{")
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), StatusCode::BAD_REQUEST);
    assert_eq!(r.json::<ErrorBody>().await.unwrap().error, "bad_request", "every refusal is a JSON body");
    assert_eq!(w.alice.get("/v1/conversations/xyz").await.status(), StatusCode::BAD_REQUEST);
    // Ids in bodies are typed: anything but 32 hex digits (or user:device) is
    // refused before anything is looked up, with the field named; nothing is stored.
    let good = "ab".repeat(16);
    let before = w.alice.get("/v1/conversations").await.json::<Vec<serde_json::Value>>().await.unwrap().len();
    for (path, body, field) in [
        ("/v1/conversations", serde_json::json!({"kind": "group", "members": ["ab"]}), "members"),
        ("/v1/conversations", serde_json::json!({"kind": "group", "members": [format!("{good}0")]}), "members"),
        ("/v1/conversations", serde_json::json!({"kind": "group", "members": [12]}), "members"),
        ("/v1/conversations", serde_json::json!({"kind": "channel", "members": []}), ""),
        ("/v1/keys/claim", serde_json::json!({"devices": [good.clone()]}), "devices"),
        ("/v1/keys/claim", serde_json::json!({"devices": [format!("{good}:{good}:{good}")]}), "devices"),
        ("/v1/keys/claim", serde_json::json!({"devices": [format!("{good}:zz")]}), "devices"),
        ("/v1/messages/ack", serde_json::json!({"message_ids": ["../x"]}), "message_ids"),
        (
            "/v1/login",
            serde_json::json!({"network_id": "", "username": "a", "password": "b", "device_id": good}),
            "network_id",
        ),
    ] {
        let r = w.alice.post_json(path, &body).await;
        let status = r.status();
        let e: ErrorBody = r.json().await.unwrap();
        if field.is_empty() {
            // An unknown kind reads as Unknown and is refused by name.
            assert_eq!((status, e.error.as_str()), (StatusCode::BAD_REQUEST, "bad_kind"), "{body}");
        } else {
            assert_eq!((status, e.error.as_str()), (StatusCode::UNPROCESSABLE_ENTITY, "bad_json"), "{body}");
            assert!(e.message.contains(field), "{body}: {}", e.message);
        }
    }
    let r =
        w.alice.http.post(format!("{url}/v1/keys/claim")).bearer_auth(&w.alice.token).body("{}").send().await.unwrap();
    assert_eq!(r.status(), StatusCode::UNSUPPORTED_MEDIA_TYPE);
    assert_eq!(r.json::<ErrorBody>().await.unwrap().error, "bad_content_type");
    let after = w.alice.get("/v1/conversations").await.json::<Vec<serde_json::Value>>().await.unwrap().len();
    assert_eq!(before, after, "nothing was created");
    // An unknown path and a wrong method answer JSON too; the 405 keeps its Allow.
    let r = w.alice.get("/v1/no-such-thing").await;
    assert_eq!(r.status(), StatusCode::NOT_FOUND);
    assert_eq!(r.json::<ErrorBody>().await.unwrap().error, "not_found");
    let r = w.alice.http.delete(format!("{url}/v1/login")).send().await.unwrap();
    assert_eq!(r.status(), StatusCode::METHOD_NOT_ALLOWED);
    assert!(r.headers().get("allow").is_some_and(|v| v.to_str().unwrap().contains("POST")), "{:?}", r.headers());
    assert_eq!(r.json::<ErrorBody>().await.unwrap().error, "method_not_allowed");
    // 404 unknown conversation, 403 not a member.
    assert_eq!(w.alice.get(&format!("/v1/conversations/{}", "00".repeat(16))).await.status(), StatusCode::NOT_FOUND);
    assert_eq!(w.carol.get(&format!("/v1/conversations/{}", conv.id)).await.status(), StatusCode::FORBIDDEN);
    // 409 recipient mismatch: Bob's device missing, Carol's extra; the body lists both.
    let mut recipients = w.alice.recipients(&conv.id).await;
    let bob_addr = (w.bob.network, w.bob.user, w.bob.device);
    recipients.retain(|r| r.address() != bob_addr);
    let carol_conv = w.carol.create_conversation("direct", &[w.alice.user]).await;
    let carol_recipients = w.alice.recipients(&carol_conv.id).await;
    recipients.extend(carol_recipients.into_iter().filter(|r| r.address().1 == w.carol.user));
    let env = w.alice.seal_to(conv.id, &Content::Text("x".into()), &recipients);
    let r = w.alice.post_envelope(env.encode()).await;
    assert_eq!(r.status(), StatusCode::CONFLICT);
    let body: ErrorBody = r.json().await.unwrap();
    assert_eq!(body.error, "recipient_mismatch");
    assert_eq!(body.missing, vec![DeviceAddress { user: w.bob.user, device: w.bob.device }]);
    assert_eq!(body.extra, vec![DeviceAddress { user: w.carol.user, device: w.carol.device }]);
    // 403 an envelope claiming another sender.
    let recipients = w.alice.recipients(&conv.id).await;
    let env = w.alice2.seal_to(conv.id, &Content::Text("x".into()), &recipients);
    assert_eq!(w.alice.post_envelope(env.encode()).await.status(), StatusCode::FORBIDDEN);
    // 413 an oversized envelope.
    // (Its own connection: the server closes a connection after refusing an oversized body.)
    let oversized = reqwest::Client::new()
        .post(format!("{url}/v1/messages"))
        .bearer_auth(&w.alice.token)
        .body(vec![0u8; 3 * 1024 * 1024])
        .send()
        .await
        .unwrap();
    assert_eq!(oversized.status(), StatusCode::PAYLOAD_TOO_LARGE);
    // 403 invalid invite, 409 username taken, 400 weak password and bad username.
    let post = |path: &str, body: serde_json::Value| http.post(format!("{url}{path}")).json(&body).send();
    let r = post("/v1/register", serde_json::json!({"invite": "sr1-AAAA", "username": "x", "password": PASSWORD}))
        .await
        .unwrap();
    assert_eq!(r.status(), StatusCode::BAD_REQUEST);
    let invite = w.alice.invite(false).await;
    assert_eq!(
        post("/v1/register", serde_json::json!({"invite": invite, "username": "bob", "password": PASSWORD}))
            .await
            .unwrap()
            .status(),
        StatusCode::CONFLICT
    );
    assert_eq!(
        post("/v1/register", serde_json::json!({"invite": invite, "username": "dave", "password": "short"}))
            .await
            .unwrap()
            .status(),
        StatusCode::BAD_REQUEST
    );
    assert_eq!(
        post("/v1/register", serde_json::json!({"invite": invite, "username": "Dave!", "password": PASSWORD}))
            .await
            .unwrap()
            .status(),
        StatusCode::BAD_REQUEST
    );
    // Non-admins cannot invite.
    assert_eq!(
        w.bob.post_json("/v1/invites", &CreateInvite { admin: false, ttl_secs: None }).await.status(),
        StatusCode::FORBIDDEN
    );
    // Room moderation: a plain member cannot add people.
    let room = w.alice.create_conversation("room", &[w.bob.user]).await;
    let r = w
        .bob
        .post_json(
            &format!("/v1/conversations/{}/members", room.id),
            &ChangeMembers { add: vec![w.carol.user], ..Default::default() },
        )
        .await;
    assert_eq!(r.status(), StatusCode::FORBIDDEN);
    let r = w
        .alice
        .post_json(
            &format!("/v1/conversations/{}/members", room.id),
            &ChangeMembers { add: vec![w.carol.user], ..Default::default() },
        )
        .await;
    assert_eq!(r.status(), StatusCode::OK);
    let _ = &mut w;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn login_lockout_and_rate_limit() {
    let dir = temp_dir("lock");
    let cfg = dir.join("server.toml");
    std::fs::write(&cfg, "[limits]\nauth_per_minute = 12\nlockout_threshold = 3\n").unwrap();
    let server = ServerProc::start(&dir.join("data"), &["--config", cfg.to_str().unwrap()]);
    let (network, invite) = create_network(&server, &dir, "acme");
    register(&server.url, &invite, "alice").await;
    let http = reqwest::Client::new();
    let attempt = |password: &str| {
        http.post(format!("{}/v1/login", server.url))
            .json(&serde_json::json!({"network_id": network.to_string(), "username": "alice", "password": password, "device_id": "11".repeat(16)}))
            .send()
    };
    for _ in 0..3 {
        assert_eq!(attempt("wrong password!!").await.unwrap().status(), StatusCode::UNAUTHORIZED);
    }
    // This address must wait now, even with the right password (others need not: tests/logins.rs).
    let r = attempt(PASSWORD).await.unwrap();
    assert_eq!(r.status(), StatusCode::TOO_MANY_REQUESTS);
    assert!(r.json::<ErrorBody>().await.unwrap().message.contains("too many failed logins"));
    // The address is rate limited after 12 attempts a minute.
    let mut limited = false;
    for _ in 0..12 {
        if attempt("wrong password!!").await.unwrap().status() == StatusCode::TOO_MANY_REQUESTS {
            limited = true;
        }
    }
    assert!(limited);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn ops_endpoints_and_openapi_match_the_routes() {
    let mut w = world("ops", &[]).await;
    let conv = w.alice.create_conversation("direct", &[w.bob.user]).await;
    w.alice.send_text(&conv.id, "count me").await;
    let http = reqwest::Client::new();
    let url = &w.server.url;
    assert_eq!(http.get(format!("{url}/healthz")).send().await.unwrap().text().await.unwrap(), "ok\n");
    let metrics = http.get(format!("{url}/metrics")).send().await.unwrap().text().await.unwrap();
    assert!(metrics.contains("strongroom_messages_in_total 1"), "{metrics}");
    assert!(metrics.contains("strongroom_queue_depth{kind=\"device\"} 2"), "{metrics}");
    assert!(metrics.contains("strongroom_queue_depth{kind=\"retention\"} 0"));
    assert!(metrics.contains("strongroom_http_request_duration_seconds_bucket"));
    // The write path's steps: the one send, on disk and answered.
    assert!(metrics.contains("strongroom_store_send_durable_seconds_count 1\n"), "{metrics}");
    assert!(metrics.contains("strongroom_store_send_wait_seconds_count 1\n"), "{metrics}");
    for step in ["commit", "log_sync", "write_lock_wait", "handoff"] {
        assert!(metrics.contains(&format!("# TYPE strongroom_store_{step}_seconds histogram")), "{metrics}");
        assert!(!metrics.contains(&format!("strongroom_store_{step}_seconds_count 0\n")), "{step}: {metrics}");
    }
    let doc: serde_json::Value =
        http.get(format!("{url}/api/openapi.json")).send().await.unwrap().json().await.unwrap();
    assert_eq!(doc["openapi"], "3.1.0");
    let paths = doc["paths"].as_object().unwrap();
    assert!(paths.len() >= 20);
    for (path, ops) in paths {
        for method in ops.as_object().unwrap().keys() {
            let concrete = path.replace("{user}", &"ab".repeat(16)).replace("{id}", &"ab".repeat(16));
            let req = http.request(method.to_uppercase().parse().unwrap(), format!("{url}{concrete}"));
            let status = req.send().await.unwrap().status();
            assert!(
                status != StatusCode::NOT_FOUND || concrete.contains("abab"),
                "{method} {path} is documented but not routed"
            );
            assert_ne!(status, StatusCode::METHOD_NOT_ALLOWED, "{method} {path} is documented but not routed");
        }
    }
    assert_eq!(http.get(format!("{url}/v1/nonexistent")).send().await.unwrap().status(), StatusCode::NOT_FOUND);
    let _ = w.bob.receive_all().await;
    let _ = UserId::RETENTION;
    let _ = Envelope::decode(&[]).is_err();
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn send_rate_limit_logout_and_password_change() {
    let dir = temp_dir("rate");
    let cfg = dir.join("server.toml");
    std::fs::write(&cfg, "[limits]\nsends_per_second = 1\n").unwrap();
    let mut w = world("rate", &["--config", cfg.to_str().unwrap()]).await;
    let conv = w.alice.create_conversation("direct", &[w.bob.user]).await;
    let recipients = w.alice.recipients(&conv.id).await;
    // Bursts of 10 are allowed at 1 per second; the rest get 429.
    let mut statuses = Vec::new();
    for _ in 0..15 {
        let env = w.alice.seal_to(conv.id, &Content::Text("spam".into()), &recipients);
        statuses.push(w.alice.post_envelope(env.encode()).await.status());
    }
    assert!(statuses.iter().filter(|s| **s == StatusCode::OK).count() <= 11, "{statuses:?}");
    assert!(statuses.contains(&StatusCode::TOO_MANY_REQUESTS), "{statuses:?}");

    // Changing the password ends the user's other sessions at once.
    let r = w
        .alice
        .post_json(
            "/v1/password",
            &ChangePassword { old_password: "wrong one!!".into(), new_password: "another long password".into() },
        )
        .await;
    assert_eq!(r.status(), StatusCode::FORBIDDEN);
    assert_eq!(new_password(&w.alice, PASSWORD).await, StatusCode::NO_CONTENT);
    assert_eq!(w.alice2.get("/v1/conversations").await.status(), StatusCode::UNAUTHORIZED);
    assert_eq!(w.alice.get("/v1/conversations").await.status(), StatusCode::OK);
    // Logout ends this session.
    assert_eq!(w.bob.post_json("/v1/logout", &serde_json::json!({})).await.status(), StatusCode::NO_CONTENT);
    assert_eq!(w.bob.get("/v1/messages").await.status(), StatusCode::UNAUTHORIZED);
    let _ = &mut w;
}

type Socket = tokio_tungstenite::WebSocketStream<tokio_tungstenite::MaybeTlsStream<tokio::net::TcpStream>>;

/// A socket for `d`, with `query` (`""` or `"?pushes=…"`).
async fn socket_with(w: &World, d: &Device, query: &str) -> Result<Socket, tokio_tungstenite::tungstenite::Error> {
    let mut req = format!("{}/v1/ws{query}", w.server.url.replace("http://", "ws://")).into_client_request().unwrap();
    req.headers_mut().insert("Authorization", format!("Bearer {}", d.token).parse().unwrap());
    Ok(tokio_tungstenite::connect_async(req).await?.0)
}

async fn socket(w: &World, d: &Device) -> Socket {
    socket_with(w, d, "").await.unwrap()
}

/// The next binary push, or `None` if none comes within `wait`.
async fn next_push(ws: &mut Socket, wait: Duration) -> Option<Delivery> {
    tokio::time::timeout(wait, async {
        loop {
            match ws.next().await.unwrap().unwrap() {
                Message::Binary(b) => break Delivery::from_push_frame(&b).unwrap(),
                Message::Text(t) => panic!("a binary socket was pushed text: {t}"),
                _ => continue,
            }
        }
    })
    .await
    .ok()
}

fn send_frame(request: u64, tag: Option<&str>, envelope: &[u8]) -> Message {
    Message::Binary(SendFrame { request, settings_tag: tag, envelope }.encode().unwrap().into())
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn sends_over_the_websocket_are_answered_by_request_and_checked_like_http() {
    let mut w = world("wssend", &[]).await;
    let conv = w.alice.create_conversation("direct", &[w.bob.user]).await;
    let recipients = w.alice.recipients(&conv.id).await;
    let mut alice_ws = socket(&w, &w.alice).await;
    // Bob reads binary pushes; an unknown push form is refused before the upgrade.
    let mut bob_ws = socket_with(&w, &w.bob, "?pushes=binary").await.unwrap();
    match socket_with(&w, &w.bob, "?pushes=xml").await {
        Err(tokio_tungstenite::tungstenite::Error::Http(r)) => assert_eq!(r.status(), StatusCode::BAD_REQUEST),
        other => panic!("expected 400, got {:?}", other.map(|_| ())),
    }

    // Twenty sends written at once, answered in any order, each once by its request id.
    let sealed: Vec<Envelope> =
        (0..20).map(|i| w.alice.seal_to(conv.id, &Content::Text(format!("w{i}")), &recipients)).collect();
    for (i, env) in sealed.iter().enumerate() {
        alice_ws.feed(send_frame(100 + i as u64, None, &env.encode())).await.unwrap();
    }
    alice_ws.flush().await.unwrap();
    let mut answers = std::collections::BTreeMap::new();
    while answers.len() < 20 {
        match next_frame(&mut alice_ws, Duration::from_secs(10)).await.expect("an answer") {
            WsFrame::Sent { request, message_id, seq, duplicate } => {
                assert!(!duplicate);
                assert_eq!(message_id, sealed[(request - 100) as usize].header().message_id);
                assert!(answers.insert(request, seq).is_none(), "request {request} answered twice");
            }
            other => panic!("expected sent, got {other:?}"),
        }
    }
    let mut seqs: Vec<u64> = answers.values().copied().collect();
    seqs.sort_unstable();
    assert_eq!(seqs, (1..=20).collect::<Vec<_>>());
    // Bob is pushed all twenty, as binary frames, and can open them.
    let mut texts = Vec::new();
    while texts.len() < 20 {
        let Some(d) = next_push(&mut bob_ws, Duration::from_secs(10)).await else {
            panic!("only {} pushed", texts.len())
        };
        assert_eq!(
            answers.get(&(100 + sealed.iter().position(|e| e.header().message_id == d.message_id).unwrap() as u64)),
            Some(&d.seq)
        );
        assert!(d.received_at > 0);
        let Content::Text(t) = w.bob.open(&d).await.unwrap().content else { panic!("text") };
        texts.push(t);
    }
    texts.sort();
    let mut want: Vec<String> = (0..20).map(|i| format!("w{i}")).collect();
    want.sort();
    assert_eq!(texts, want);

    // A replayed send frame is a duplicate with the same seq, not a second message.
    alice_ws.send(send_frame(7, None, &sealed[3].encode())).await.unwrap();
    match next_frame(&mut alice_ws, Duration::from_secs(10)).await {
        Some(WsFrame::Sent { request: 7, seq, duplicate: true, .. }) => assert_eq!(seq, answers[&103]),
        other => panic!("expected a duplicate, got {other:?}"),
    }
    assert!(next_push(&mut bob_ws, Duration::from_millis(300)).await.is_none(), "nothing pushed twice");

    // Hostile and malformed frames: an answer that says what was wrong, and the socket stays.
    let other_env = w.alice.seal_to(conv.id, &Content::Text("as alice".into()), &recipients).encode();
    let missing_device = w.alice.seal_to(conv.id, &Content::Text("short".into()), &recipients[..1]).encode();
    let cases: Vec<(Message, Option<u64>, u16, &str)> = vec![
        (Message::Binary(vec![1, 2, 3].into()), None, 0, "bad_frame"),
        (Message::Binary(vec![9; 40].into()), None, 0, "bad_frame"),
        (Message::Binary([&[1u8, 0, 0, 0, 0, 0, 0, 0, 42, 200][..], b"x"].concat().into()), Some(42), 400, "bad_frame"),
        (send_frame(43, None, b"not an envelope"), Some(43), 400, "malformed_envelope"),
        (send_frame(44, Some("stale"), &other_env), Some(44), 409, "settings_changed"),
        (send_frame(45, None, &missing_device), Some(45), 409, "recipient_mismatch"),
        // Over the envelope limit, within the frame's: refused as HTTP refuses it.
        (send_frame(48, None, &vec![0u8; 2 * 1024 * 1024 + 100]), Some(48), 413, "too_large"),
    ];
    for (frame, request, status, code) in cases {
        alice_ws.send(frame).await.unwrap();
        match (next_frame(&mut alice_ws, Duration::from_secs(10)).await, request) {
            (Some(WsFrame::Error { error, message }), None) => {
                assert_eq!(error, code);
                assert!(message.contains("0x01"), "{message}");
            }
            (Some(WsFrame::SendFailed { request: r, status: s, body }), Some(want)) => {
                assert_eq!((r, s, body.error.as_str()), (want, status, code), "{}", body.message);
                if code == "recipient_mismatch" {
                    assert!(!body.missing.is_empty(), "names the devices it lacks");
                }
            }
            (other, _) => panic!("{code}: got {other:?}"),
        }
    }
    // Someone else's envelope on Bob's socket is refused: a socket sends only as its own device.
    bob_ws.send(send_frame(1, None, &other_env)).await.unwrap();
    match next_frame(&mut bob_ws, Duration::from_secs(10)).await {
        Some(WsFrame::SendFailed { request: 1, status: 403, body }) => assert_eq!(body.error, "sender_mismatch"),
        other => panic!("expected sender_mismatch, got {other:?}"),
    }
    // The socket still sends after all that.
    alice_ws.send(send_frame(46, None, &other_env)).await.unwrap();
    assert!(matches!(
        next_frame(&mut alice_ws, Duration::from_secs(10)).await,
        Some(WsFrame::Sent { request: 46, duplicate: false, .. })
    ));

    // A frame past the envelope limit (2 MiB) closes the socket; nothing is stored.
    let huge = vec![0u8; 2 * 1024 * 1024 + 512];
    let _ = alice_ws.send(send_frame(47, None, &huge)).await;
    assert!(closes(&mut alice_ws, Duration::from_secs(10)).await, "an oversized frame ends the connection");

    // Logging out closes the device's socket at once: its token can no longer send on it.
    assert_eq!(w.bob.post_json("/v1/logout", &serde_json::json!({})).await.status(), StatusCode::NO_CONTENT);
    assert!(closes(&mut bob_ws, Duration::from_secs(5)).await, "logout closes the socket");
}

/// Whether the server ends the connection within `wait` (frames before that are skipped).
async fn closes<S>(ws: &mut S, wait: Duration) -> bool
where
    S: futures_util::Stream<Item = Result<Message, tokio_tungstenite::tungstenite::Error>> + Unpin,
{
    tokio::time::timeout(wait, async {
        while let Some(Ok(frame)) = ws.next().await {
            if let Message::Close(_) = frame {
                break;
            }
        }
    })
    .await
    .is_ok()
}

/// The frames a socket receives within `wait`: the JSON text frames, and how
/// many were binary.
async fn frames_within(ws: &mut Socket, wait: Duration) -> (Vec<WsFrame>, usize) {
    let (mut text, mut binary) = (Vec::new(), 0);
    let _ = tokio::time::timeout(wait, async {
        while let Some(Ok(frame)) = ws.next().await {
            match frame {
                Message::Text(t) => text.push(serde_json::from_str::<WsFrame>(&t).unwrap()),
                Message::Binary(_) => binary += 1,
                _ => {}
            }
        }
    })
    .await;
    (text, binary)
}

/// `?pushes=notice`, the app's doorbell: the socket of a device that fetches
/// over HTTP is told only that something is queued (one notice for what the
/// connection takes at once), never the message; what it fetches is all
/// there; an acknowledged queue rings no more; logout closes it.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_notice_socket_is_told_that_something_is_queued_and_never_what() {
    let mut w = world("wsnotice", &[]).await;
    let conv = w.alice.create_conversation("direct", &[w.bob.user]).await;
    let recipients = w.alice.recipients(&conv.id).await;
    // Queued before the socket opened: no notice (the device fetches after opening).
    let early = w.alice.seal_to(conv.id, &Content::Text("early".into()), &recipients);
    assert!(w.alice.post_envelope(early.encode()).await.status().is_success());
    let mut bell = socket_with(&w, &w.bob, "?pushes=notice").await.unwrap();
    let (frames, binary) = frames_within(&mut bell, Duration::from_millis(400)).await;
    assert!(frames.is_empty() && binary == 0, "{frames:?}");

    for i in 0..5 {
        let env = w.alice.seal_to(conv.id, &Content::Text(format!("n{i}")), &recipients);
        assert!(w.alice.post_envelope(env.encode()).await.status().is_success());
    }
    assert_eq!(next_frame(&mut bell, Duration::from_secs(10)).await, Some(WsFrame::Queued));
    let (frames, binary) = frames_within(&mut bell, Duration::from_millis(500)).await;
    assert_eq!(binary, 0, "no message is pushed");
    assert!(frames.iter().all(|f| *f == WsFrame::Queued), "{frames:?}");
    assert!(frames.len() < 5, "at most a notice a message: {}", frames.len() + 1);

    let queued: Deliveries = w.bob.get("/v1/messages").await.json().await.unwrap();
    assert_eq!(queued.messages.len(), 6, "everything is fetched over HTTP");
    let ids: Vec<_> = queued.messages.iter().map(|d| d.message_id).collect();
    assert_eq!(w.bob.post_json("/v1/messages/ack", &Ack { message_ids: ids }).await.status(), StatusCode::NO_CONTENT);
    let (frames, binary) = frames_within(&mut bell, Duration::from_millis(400)).await;
    assert!(frames.is_empty() && binary == 0, "nothing rings after the ack: {frames:?}");

    // Acks and sends on the socket still work as on any other.
    let to = w.bob.recipients(&conv.id).await;
    let env = w.bob.seal_to(conv.id, &Content::Text("from the bell".into()), &to);
    bell.send(send_frame(9, None, &env.encode())).await.unwrap();
    match next_frame(&mut bell, Duration::from_secs(10)).await {
        Some(WsFrame::Sent { request: 9, duplicate: false, .. }) => {}
        other => panic!("expected sent, got {other:?}"),
    }
    assert_eq!(w.bob.post_json("/v1/logout", &serde_json::json!({})).await.status(), StatusCode::NO_CONTENT);
    assert!(closes(&mut bell, Duration::from_secs(5)).await, "logout closes the doorbell");
}

/// A session can end with no disconnect: a password change ends the
/// account's other sessions. Their sockets close at the next sweep of open
/// sockets (every 10 s, a statement per 200 sockets, instead of a query per
/// socket per ping); the socket of the session that changed it stays.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_socket_whose_session_ended_closes_at_the_next_sweep() {
    let w = world("wssweep", &[]).await;
    let mut other = socket(&w, &w.alice2).await;
    let mut own = socket(&w, &w.alice).await;
    assert_eq!(new_password(&w.alice, PASSWORD).await, StatusCode::NO_CONTENT);
    assert!(closes(&mut other, Duration::from_secs(25)).await, "the ended session's socket is closed");
    // The sweep has run since: the changing session's socket still answers.
    own.send(Message::Text("not json".into())).await.unwrap();
    match next_frame(&mut own, Duration::from_secs(10)).await {
        Some(WsFrame::Error { error, .. }) => assert_eq!(error, "bad_frame"),
        other => panic!("expected an error frame on a live socket, got {other:?}"),
    }
}

/// Changes `d`'s account password from `old` to another.
async fn new_password(d: &Device, old: &str) -> StatusCode {
    let change = ChangePassword { old_password: old.into(), new_password: "another long password".into() };
    d.post_json("/v1/password", &change).await.status()
}
