//! Round trips per send (PROTOCOL.md §4.7): a steady-state send to a known
//! conversation is one request, `POST /v1/messages`, with no pre-key claim;
//! counted by a proxy in front of the real relay, for a 1:1 conversation and
//! a 50-member group. A change the relay reports (a new device, changed
//! settings) is picked up at the next send.
#![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic, clippy::indexing_slicing)]

mod common;

use std::sync::{Arc, Mutex};

use axum::body::{to_bytes, Body};
use axum::extract::{Request, State};
use axum::response::Response;
use common::*;
use strongroom_client::{Client, ClientError};
use strongroom_crypto::content::{Content, Location};
use strongroom_crypto::ids::ConversationId;

struct Counter {
    upstream: String,
    http: reqwest::Client,
    seen: Mutex<Vec<String>>,
}

async fn relay(State(p): State<Arc<Counter>>, req: Request) -> Response {
    let method = req.method().clone();
    let path = req.uri().path_and_query().map(|x| x.as_str().to_owned()).unwrap_or_default();
    let headers = req.headers().clone();
    let body = to_bytes(req.into_body(), 64 << 20).await.unwrap();
    p.seen.lock().unwrap().push(format!("{method} {}", path.split('?').next().unwrap_or_default()));
    let r = pass_on(&p.http, &p.upstream, &method, &path, &headers, &body).await;
    let mut out = Response::builder().status(r.status().as_u16()).header("content-type", "application/json");
    if let Some(tag) = r.headers().get(strongroom_wire::SETTINGS_TAG_HEADER) {
        out = out.header(strongroom_wire::SETTINGS_TAG_HEADER, tag.to_str().unwrap());
    }
    out.body(Body::from(r.bytes().await.unwrap())).unwrap()
}

fn take(p: &Counter) -> Vec<String> {
    std::mem::take(&mut *p.seen.lock().unwrap())
}

/// Two sends to warm up (a one-time key, then the medium-term key is
/// claimed), then one counted.
async fn steady_send(alice: &mut Client, p: &Counter, to: ConversationId) -> Vec<String> {
    for n in 0..2 {
        alice.send_text(to, &format!("warm-up {n}")).await.unwrap();
    }
    take(p);
    alice.send_text(to, "steady").await.unwrap();
    take(p)
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_steady_state_send_is_one_request_for_two_or_fifty() {
    let dir = temp_dir("round-trips");
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let proxy_url = format!("http://{}", listener.local_addr().unwrap());
    // 50 accounts register and log in from this one address.
    let config = dir.join("relay.toml");
    std::fs::write(&config, "[limits]\nauth_per_minute = 1000\n").unwrap();
    let server = ServerProc::start(&dir.join("data"), &["--public-url", &proxy_url, "--config", s(&config)]);
    let p = Arc::new(Counter { upstream: server.url.clone(), http: reqwest::Client::new(), seen: Mutex::new(vec![]) });
    let app = axum::Router::new().fallback(relay).with_state(Arc::clone(&p));
    tokio::spawn(async move { axum::serve(listener, app).await.unwrap() });
    let (mut alice, mut bob) = two_clients(&dir, &server).await;

    // 1:1.
    let direct = alice.direct_with("bob").await.unwrap();
    assert_eq!(steady_send(&mut alice, &p, direct).await, ["POST /v1/messages"]);

    // The same after a restart: what was verified is kept in the profile.
    let alice_dir = alice.dir().to_owned();
    alice.close().await;
    let mut alice = Client::open(&alice_dir, "alice passphrase").await.unwrap();
    // Opening asks once whether this device was wiped (and reads the settings).
    assert_eq!(take(&p), ["GET /v1/me/policy"]);
    alice.send_text(direct, "after a restart").await.unwrap();
    assert_eq!(take(&p), ["POST /v1/messages"]);

    // A 50-member group (48 more members, enrolled as bare test devices).
    let network = alice.network_id();
    let mut names = vec!["bob".to_owned()];
    let mut others = Vec::new();
    for i in 0..48 {
        let name = format!("member{i:02}");
        let invite = alice.create_invite(false).await.unwrap().invite;
        register(&server.url, &invite, &name).await;
        others.push(Device::enrol(&server.url, network, &name, None, &[], 2).await);
        names.push(name);
    }
    let refs: Vec<&str> = names.iter().map(String::as_str).collect();
    let group = alice.create_conversation("group", &refs).await.unwrap().id;
    assert_eq!(alice.membership(group).await.unwrap().members.len(), 50);
    assert_eq!(steady_send(&mut alice, &p, group).await, ["POST /v1/messages"]);
    // Everyone can read it.
    let got = others[47].receive_all().await;
    assert!(got.iter().any(|(_, t)| t == "steady"), "{got:?}");

    // A member adds a device: the relay's refusal names
    // it, and the next attempt fetches that member's list and claims a key.
    let member = &others[0];
    let second =
        Device::enrol(&server.url, network, "member00", Some(Arc::clone(&member.identity)), &[member], 2).await;
    take(&p);
    alice.send_text(group, "to the new device too").await.unwrap();
    let seen = take(&p);
    assert_eq!(seen.first().map(String::as_str), Some("POST /v1/messages"), "{seen:?}");
    assert_eq!(seen.last().map(String::as_str), Some("POST /v1/messages"), "{seen:?}");
    assert!(seen.iter().any(|r| r == "POST /v1/keys/claim"), "{seen:?}");
    let mut second = second;
    assert!(second.receive_all().await.iter().any(|(_, t)| t == "to the new device too"));
    // The new device's medium-term key is claimed once, then kept.
    assert_eq!(steady_send(&mut alice, &p, group).await, ["POST /v1/messages"]);

    // An administrator turns location sharing off: the relay refuses the
    // next send (its settings tag changed), the SDK reads the settings again
    // and the location is not sent.
    let mut current = alice.admin().settings().await.unwrap();
    current.location_enabled = false;
    alice.admin().put_settings(&current).await.unwrap();
    take(&p);
    let here = Content::Location(Location { latitude: 51.5, longitude: -0.12, accuracy_m: 10.0, live_until: None });
    match alice.send(direct, &here, 0).await {
        Err(ClientError::Policy(why)) => assert!(why.contains("location"), "{why}"),
        other => panic!("expected a policy refusal, got {other:?}"),
    }
    assert_eq!(take(&p), ["POST /v1/messages", "GET /v1/me/policy"]);
    // Text still goes, in one request again.
    alice.send_text(direct, "no location").await.unwrap();
    assert_eq!(take(&p), ["POST /v1/messages"]);
    bob.sync().await.unwrap();
    let texts: Vec<String> = bob
        .messages(Some(direct))
        .await
        .unwrap()
        .into_iter()
        .filter_map(|m| match m.content {
            Content::Text(t) => Some(t),
            _ => None,
        })
        .collect();
    assert!(texts.contains(&"no location".to_owned()) && texts.contains(&"after a restart".to_owned()), "{texts:?}");
    alice.close().await;
    bob.close().await;
}

/// The relay's settings-tag check on hostile input: a wrong, empty or
/// non-text tag is refused with `settings_changed` and nothing is stored or
/// delivered; the right tag (from `GET /v1/me/policy`) or none is accepted.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_send_naming_other_settings_is_refused_and_stores_nothing() {
    let dir = temp_dir("settings-tag");
    let server = ServerProc::start(&dir.join("data"), &[]);
    let (network, admin_invite) = create_network(&server, &dir, "acme");
    register(&server.url, &admin_invite, "alice").await;
    let alice = Device::enrol(&server.url, network, "alice", None, &[], 2).await;
    let invite = alice.invite(false).await;
    register(&server.url, &invite, "bob").await;
    let mut bob = Device::enrol(&server.url, network, "bob", None, &[], 2).await;
    let mut alice = alice;
    let conv = alice.create_conversation("direct", &[bob.user]).await.id;
    let recipients = alice.recipients(&conv).await;
    let envelope = alice.seal_to(conv, &Content::Text("tagged".into()), &recipients).encode();
    let post = |tag: reqwest::header::HeaderValue| {
        alice
            .http
            .post(format!("{}/v1/messages", alice.url))
            .bearer_auth(&alice.token)
            .header(strongroom_wire::SETTINGS_TAG_HEADER, tag)
            .body(envelope.clone())
            .send()
    };
    for bad in [
        reqwest::header::HeaderValue::from_static("0123456789abcdef0123456789abcdef"),
        reqwest::header::HeaderValue::from_static(""),
        reqwest::header::HeaderValue::from_bytes(&[0xff, 0xfe, b'x']).unwrap(),
        reqwest::header::HeaderValue::from_str(&"a".repeat(4000)).unwrap(),
    ] {
        let r = post(bad).await.unwrap();
        assert_eq!(r.status(), 409);
        let body: strongroom_wire::ErrorBody = r.json().await.unwrap();
        assert_eq!(body.error, "settings_changed", "{}", body.message);
    }
    assert!(bob.receive_all().await.is_empty(), "nothing stored or delivered");
    let r = alice.get("/v1/me/policy").await;
    let tag = r.headers()[strongroom_wire::SETTINGS_TAG_HEADER].clone();
    assert_eq!(tag.len(), 32, "16 bytes, hex");
    let ok = post(tag.clone()).await.unwrap();
    assert_eq!(ok.status(), 200);
    let again: strongroom_wire::Accepted = post(tag).await.unwrap().json().await.unwrap();
    assert!(again.duplicate && !again.queued, "the same id once; the relay never says queued");
    assert_eq!(bob.receive_all().await.iter().map(|(_, t)| t.as_str()).collect::<Vec<_>>(), ["tagged"]);
}
