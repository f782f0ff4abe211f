//! Fault injection against the real server and the real client SDK: a relay
//! whose key directory answers 503, acknowledgements that fail, and a local
//! store that cannot be written (another connection holds its write lock),
//! under a 1,000-message backlog. Nothing may be acknowledged before it is
//! stored; once the faults stop every message is delivered exactly once.
//! Also the client's smaller promises: no false gap warnings, a real gap
//! reported, all-or-nothing enrolment, note to self, forwarding the edited
//! text, history readable offline, and one process per profile.
#![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic, clippy::indexing_slicing)]

mod common;

use std::collections::{HashMap, HashSet};
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Mutex};

use axum::body::{to_bytes, Body};
use axum::extract::{Request, State};
use axum::response::Response;
use common::*;
use strongroom_client::{Client, ClientError};
use strongroom_crypto::content::Content;
use strongroom_crypto::ids::MessageId;
use strongroom_wire::{Ack, Deliveries};

/// A relay in front of the real one that fails on command.
#[derive(Default)]
struct Faults {
    /// Every key lookup (GET /v1/keys/…) answers 503.
    keys: AtomicBool,
    /// Only lookups of this user's keys answer 503.
    keys_of: Mutex<Option<String>>,
    /// Acknowledgements answer 503 (after reaching nobody).
    acks: AtomicBool,
    /// The network policy answers 503.
    policy: AtomicBool,
    /// Pre-key uploads answer 503.
    prekeys: AtomicBool,
    /// Conversations are all labelled a note to self.
    relabel_notes: AtomicBool,
    /// Messages (by sequence number) the relay loses: served to nobody,
    /// acknowledged upstream on the device's behalf.
    lose_seq: Mutex<Option<u64>>,
    /// Every message id acknowledged upstream, and how often.
    acked: Mutex<HashMap<String, usize>>,
}

struct Proxy {
    upstream: String,
    http: reqwest::Client,
    faults: Faults,
}

fn unavailable() -> Response {
    Response::builder()
        .status(503)
        .header("content-type", "application/json")
        .body(Body::from(r#"{"error":"unavailable","message":"try again later"}"#))
        .unwrap()
}

async fn relay(State(p): State<Arc<Proxy>>, req: Request) -> Response {
    let method = req.method().clone();
    let path = req.uri().path_and_query().map(|x| x.as_str().to_owned()).unwrap_or_default();
    let auth = req.headers().get("authorization").map(|v| v.to_str().unwrap().to_owned());
    let ctype = req.headers().get("content-type").map(|v| v.to_str().unwrap().to_owned());
    let body = to_bytes(req.into_body(), 64 << 20).await.unwrap();
    let f = &p.faults;
    let keys_down = path.starts_with("/v1/keys/")
        && method == "GET"
        && (f.keys.load(Ordering::SeqCst)
            || f.keys_of.lock().unwrap().as_ref().is_some_and(|u| path.starts_with(&format!("/v1/keys/{u}"))));
    if keys_down
        || (path == "/v1/messages/ack" && f.acks.load(Ordering::SeqCst))
        || (path == "/v1/policy" && method == "GET" && f.policy.load(Ordering::SeqCst))
        || (path == "/v1/keys/prekeys" && method == "PUT" && f.prekeys.load(Ordering::SeqCst))
    {
        return unavailable();
    }
    let send = |path: &str, body: Vec<u8>, ctype: Option<String>| {
        let mut up = p.http.request(method.as_str().parse().unwrap(), format!("{}{path}", p.upstream)).body(body);
        if let Some(a) = &auth {
            up = up.header("authorization", a);
        }
        if let Some(c) = ctype {
            up = up.header("content-type", c);
        }
        up.send()
    };
    let r = send(&path, body.to_vec(), ctype).await.unwrap();
    let status = r.status().as_u16();
    let rtype = r.headers().get("content-type").map(|v| v.to_str().unwrap().to_owned());
    let mut bytes = r.bytes().await.unwrap().to_vec();
    if status / 100 == 2 && path == "/v1/messages/ack" {
        let ack: Ack = serde_json::from_slice(&body).unwrap();
        let mut acked = f.acked.lock().unwrap();
        for id in ack.message_ids {
            *acked.entry(id.to_string()).or_default() += 1;
        }
    }
    if status == 200 && path.starts_with("/v1/conversations/") && f.relabel_notes.load(Ordering::SeqCst) {
        let mut c: serde_json::Value = serde_json::from_slice(&bytes).unwrap();
        c["kind"] = "notes".into();
        bytes = serde_json::to_vec(&c).unwrap();
    }
    let lose = *f.lose_seq.lock().unwrap();
    if let (Some(seq), 200, true) = (lose, status, path.starts_with("/v1/messages?")) {
        let mut d: Deliveries = serde_json::from_slice(&bytes).unwrap();
        let lost: Vec<MessageId> = d.messages.iter().filter(|m| m.seq == seq).map(|m| m.message_id).collect();
        d.messages.retain(|m| m.seq != seq);
        if !lost.is_empty() {
            let ack = serde_json::to_vec(&Ack { message_ids: lost }).unwrap();
            let mut up = p.http.post(format!("{}/v1/messages/ack", p.upstream)).body(ack);
            up = up.header("authorization", auth.clone().unwrap()).header("content-type", "application/json");
            assert!(up.send().await.unwrap().status().is_success());
        }
        bytes = serde_json::to_vec(&d).unwrap();
    }
    let mut res = Response::builder().status(status);
    if let Some(c) = rtype {
        res = res.header("content-type", c);
    }
    res.body(Body::from(bytes)).unwrap()
}

/// The real server behind a fault-injecting relay; invites name the relay.
async fn faulty_server(dir: &std::path::Path) -> (ServerProc, Arc<Proxy>) {
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let proxy_url = format!("http://{}", listener.local_addr().unwrap());
    let server = ServerProc::start(&dir.join("data"), &["--public-url", &proxy_url]);
    let proxy =
        Arc::new(Proxy { upstream: server.url.clone(), http: reqwest::Client::new(), faults: Faults::default() });
    let app = axum::Router::new().fallback(relay).with_state(proxy.clone());
    tokio::spawn(async move { axum::serve(listener, app).await.unwrap() });
    (server, proxy)
}

/// Every message acknowledged so far is in Bob's store: nothing was acked early.
async fn nothing_acked_early(proxy: &Proxy, bob: &Client) {
    let stored: HashSet<String> = bob.messages(None).await.unwrap().iter().map(|m| m.message_id.to_string()).collect();
    let acked = proxy.faults.acked.lock().unwrap().clone();
    let early: Vec<&String> = acked.keys().filter(|id| !stored.contains(*id)).collect();
    assert!(early.is_empty(), "{} messages acknowledged but not stored", early.len());
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_thousand_message_backlog_survives_every_fault_and_arrives_exactly_once() {
    let dir = temp_dir("faults");
    let (server, proxy) = faulty_server(&dir).await;
    let (mut alice, mut bob) = two_clients(&dir, &server).await;
    let invite = alice.create_invite(false).await.unwrap().invite;
    let mut carol = Client::enrol(&dir.join("carol"), "carol passphrase", &invite, "carol", PASSWORD).await.unwrap();
    let to_bob = alice.direct_with("bob").await.unwrap();
    let carol_to_bob = carol.direct_with("bob").await.unwrap();
    // 1,000 from Alice; Carol's one message lands at #700 of Bob's queue.
    for i in 0..1000 {
        if i == 700 {
            carol.send_text(carol_to_bob, "from carol").await.unwrap();
        }
        alice.send_text(to_bob, &format!("m{i}")).await.unwrap();
    }
    let f = &proxy.faults;

    // The key directory is down: nothing can be verified, nothing is acknowledged.
    f.keys.store(true, Ordering::SeqCst);
    let err = bob.sync().await.unwrap_err();
    assert!(err.is_transient(), "{err}");
    assert!(f.acked.lock().unwrap().is_empty());
    assert!(bob.messages(None).await.unwrap().is_empty());
    f.keys.store(false, Ordering::SeqCst);

    // The local store cannot be written (another connection holds the write
    // lock): messages are opened but not stored, so none is acknowledged.
    {
        use sqlx::Connection as _;
        let url = format!("sqlite://{}", dir.join("bob/store.db").display());
        let mut other = sqlx::SqliteConnection::connect(&url).await.unwrap();
        sqlx::query("BEGIN IMMEDIATE").execute(&mut other).await.unwrap();
        let err = bob.sync().await.unwrap_err();
        assert!(matches!(err, ClientError::Store(_)), "{err}");
        assert!(err.is_transient());
        sqlx::query("ROLLBACK").execute(&mut other).await.unwrap();
    }
    assert!(f.acked.lock().unwrap().is_empty());
    nothing_acked_early(&proxy, &bob).await;

    // Acknowledgements fail after the first batch is stored: stored, not acked.
    f.acks.store(true, Ordering::SeqCst);
    assert!(bob.sync().await.unwrap_err().is_transient());
    assert_eq!(bob.messages(None).await.unwrap().len(), 500);
    f.acks.store(false, Ordering::SeqCst);

    // Carol's keys cannot be fetched: Bob stores and acknowledges what came
    // before her message (re-deliveries of the 500 included) and stops there.
    *f.keys_of.lock().unwrap() = Some(carol.user_id().to_string());
    assert!(bob.sync().await.unwrap_err().is_transient());
    nothing_acked_early(&proxy, &bob).await;
    let stored = bob.messages(None).await.unwrap();
    assert_eq!(stored.len(), 700, "everything before Carol's message, nothing after");
    *f.keys_of.lock().unwrap() = None;

    // Faults over: everything else arrives.
    let report = bob.sync().await.unwrap();
    assert!(report.warnings.is_empty(), "{:?}", report.warnings);
    assert_eq!(report.received.len(), 301);
    nothing_acked_early(&proxy, &bob).await;
    assert!(bob.sync().await.unwrap().received.is_empty());

    // Exactly once: every text once in the store, every id acknowledged once
    // upstream (the 500 whose first ack failed were acked again, once).
    let all = bob.messages(None).await.unwrap();
    assert_eq!(all.len(), 1001);
    let mut texts: HashMap<String, usize> = HashMap::new();
    for m in &all {
        let Content::Text(t) = &m.content else { panic!("{:?}", m.content) };
        *texts.entry(t.clone()).or_default() += 1;
    }
    assert_eq!(texts.len(), 1001);
    assert!(texts.values().all(|n| *n == 1));
    let acked = f.acked.lock().unwrap().clone();
    assert_eq!(acked.len(), 1001);
    assert!(acked.values().all(|n| *n == 1), "a message was acknowledged twice");
    let in_order: Vec<u64> = bob.messages(Some(to_bob)).await.unwrap().iter().map(|m| m.seq).collect();
    assert_eq!(in_order, (1..=1000).collect::<Vec<u64>>());
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn out_of_order_arrival_is_normal_and_only_a_real_gap_is_reported() {
    let dir = temp_dir("gaps");
    let (server, proxy) = faulty_server(&dir).await;
    let (mut alice, mut bob) = two_clients(&dir, &server).await;
    let conv = alice.direct_with("bob").await.unwrap();
    // Bob answers before reading: his own message takes #2 while #1 waits
    // in his queue. Normal use, so no warning.
    alice.send_text(conv, "a1").await.unwrap();
    assert_eq!(bob.direct_with("alice").await.unwrap(), conv);
    assert_eq!(bob.send_text(conv, "b1").await.unwrap().seq, 2);
    let r = bob.sync().await.unwrap();
    assert_eq!(r.received.len(), 1);
    assert!(r.warnings.is_empty(), "{:?}", r.warnings);

    // The relay loses #4: reported once the queue is drained, and once only.
    *proxy.faults.lose_seq.lock().unwrap() = Some(4);
    for t in ["a2", "a3", "a4"] {
        alice.send_text(conv, t).await.unwrap();
    }
    let r = bob.sync().await.unwrap();
    assert_eq!(r.received.len(), 2);
    assert_eq!(r.warnings.len(), 1, "{:?}", r.warnings);
    assert!(r.warnings[0].contains("#4 never reached this device"), "{}", r.warnings[0]);
    *proxy.faults.lose_seq.lock().unwrap() = None;
    alice.send_text(conv, "a5").await.unwrap();
    let r = bob.sync().await.unwrap();
    assert!(r.warnings.is_empty(), "{:?}", r.warnings);

    // A relay calling the chat with Bob a "note to self" changes nothing:
    // the kind, like the members, comes from the signed creation.
    proxy.faults.relabel_notes.store(true, Ordering::SeqCst);
    assert!(alice.send_text(conv, "still to bob").await.unwrap().seq > 0);
    let r = bob.sync().await.unwrap();
    assert_eq!(r.received.last().unwrap().content, Content::Text("still to bob".into()));
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_failed_enrolment_leaves_nothing_behind_and_the_retry_succeeds() {
    let dir = temp_dir("enrol");
    let (server, proxy) = faulty_server(&dir).await;
    let (mut alice, _bob) = two_clients(&dir, &server).await;

    // A taken username: nothing is left, so the same directory takes another name.
    let invite = alice.create_invite(false).await.unwrap().invite;
    let target = dir.join("dave");
    let err = Client::enrol(&target, "dave passphrase", &invite, "alice", PASSWORD).await.err().unwrap();
    assert!(matches!(err, ClientError::Refused { status: 409, .. }), "{err}");
    assert!(!target.join("profile.json").exists() && !target.join("store.db").exists());
    Client::enrol(&target, "dave passphrase", &invite, "dave", PASSWORD).await.unwrap().close().await;

    // The relay fails after registering the account: the retry with the
    // same invite finishes that enrolment, and the account works.
    let invite = alice.create_invite(false).await.unwrap().invite;
    let target = dir.join("erin");
    proxy.faults.policy.store(true, Ordering::SeqCst);
    let err = Client::enrol(&target, "erin passphrase", &invite, "erin", PASSWORD).await.err().unwrap();
    assert!(err.is_transient(), "{err}");
    assert!(!target.join("profile.json").exists() && !target.join("store.db").exists());
    proxy.faults.policy.store(false, Ordering::SeqCst);
    let mut erin = Client::enrol(&target, "erin passphrase", &invite, "erin", PASSWORD).await.unwrap();
    let conv = erin.direct_with("alice").await.unwrap();
    erin.send_text(conv, "made it").await.unwrap();
    let r = alice.sync().await.unwrap();
    assert_eq!(r.received.last().unwrap().content, Content::Text("made it".into()));

    // The relay fails after the account is claimed (its device list is up,
    // the pre-key upload fails): the profile is kept, marked unfinished,
    // nothing else opens it, and the same enrol again finishes it.
    let invite = alice.create_invite(false).await.unwrap().invite;
    let target = dir.join("frank");
    proxy.faults.prekeys.store(true, Ordering::SeqCst);
    let err = Client::enrol(&target, "frank passphrase", &invite, "frank", PASSWORD).await.err().unwrap();
    assert!(err.is_transient(), "{err}");
    let err = Client::open(&target, "frank passphrase").await.err().unwrap();
    assert!(matches!(err, ClientError::Usage(ref m) if m.contains("did not finish")), "{err}");
    proxy.faults.prekeys.store(false, Ordering::SeqCst);
    let err = Client::enrol(&target, "frank passphrase", &invite, "someone", PASSWORD).await.err().unwrap();
    assert!(err.to_string().contains("unfinished enrolment of frank"), "{err}");
    let mut frank = Client::enrol(&target, "frank passphrase", &invite, "frank", PASSWORD).await.unwrap();
    let conv = frank.direct_with("alice").await.unwrap();
    frank.send_text(conv, "finished").await.unwrap();
    assert_eq!(alice.sync().await.unwrap().received.last().unwrap().content, Content::Text("finished".into()));
    frank.close().await;
    // A finished profile is not enrolled again.
    let err = Client::enrol(&target, "frank passphrase", &invite, "frank", PASSWORD).await.err().unwrap();
    assert!(matches!(err, ClientError::ProfileExists(_)), "{err}");

    // Re-running a used invite never takes over a working account.
    erin.close().await;
    let err = Client::enrol(&dir.join("thief"), "thief passphrase", &invite, "erin", PASSWORD).await.err().unwrap();
    assert!(matches!(err, ClientError::Usage(ref m) if m.contains("already has a device")), "{err}");
    assert!(!dir.join("thief/profile.json").exists());
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn notes_to_self_forwarding_offline_history_and_one_process_per_profile() {
    let dir = temp_dir("notes");
    let mut server = ServerProc::start(&dir.join("data"), &[]);
    let (mut alice, mut bob) = two_clients(&dir, &server).await;
    let to_bob = alice.direct_with("bob").await.unwrap();
    let draft = alice.send_text(to_bob, "draft").await.unwrap();
    let draft = draft.message_id;
    alice.send(to_bob, &Content::Edit { target: draft, text: "final".into() }, 0).await.unwrap();
    bob.sync().await.unwrap();

    // `send --to <myself>` is a note to self, not the chat with Bob.
    let notes = alice.direct_with("alice").await.unwrap();
    assert_ne!(notes, to_bob);
    assert_eq!(alice.conversation(notes).await.unwrap().kind, strongroom_wire::ConversationKind::Notes);
    assert_eq!(alice.notes_to_self().await.unwrap(), notes, "one note to self per account");
    // Nobody else gets into one: not at creation, not added later.
    let with_bob = alice.create_conversation("notes", &["bob"]).await.unwrap_err();
    assert!(
        matches!(with_bob, ClientError::Refused { status: 403, ref code, ref message } if code == "membership_refused" && message.contains("a note to self has one member")),
        "{with_bob}"
    );
    let added = alice.change_members(notes, &["bob"], &[], &[], &[]).await.unwrap_err();
    assert!(
        matches!(added, ClientError::Refused { status: 403, ref code, ref message } if code == "membership_refused" && message.contains("never changes members")),
        "{added}"
    );
    // With no other device it stays here.
    assert_eq!(alice.send_text(notes, "only here").await.unwrap().seq, 0);
    // A second device of Alice's receives later notes; Bob never does.
    let (network, url) = (alice.network_id(), server.url.clone());
    let pending =
        Client::link_begin(&dir.join("alice2"), "alice2 passphrase", &url, network, "alice", PASSWORD).await.unwrap();
    alice.approve_link(&pending.code().to_string()).await.unwrap();
    let mut alice2 = pending.wait(std::time::Duration::from_secs(30)).await.unwrap();
    assert!(alice.send_text(notes, "synced").await.unwrap().seq >= 1);
    let got = alice2.sync().await.unwrap();
    assert_eq!(got.received.len(), 1, "{:?}", got.warnings);
    assert_eq!((got.received[0].conversation, &got.received[0].content), (notes, &Content::Text("synced".into())));
    assert!(bob.sync().await.unwrap().received.is_empty());

    // Forwarding sends what the reader sees: the edited text.
    let bob_notes = bob.notes_to_self().await.unwrap();
    bob.forward(draft, bob_notes, &|_, _| {}).await.unwrap();
    let fwd = bob.view(Some(bob_notes)).await.unwrap();
    assert_eq!(fwd.len(), 1);
    // Without data retention a forward is marked, and says nothing of where it came from.
    let withheld = strongroom_crypto::content::ForwardOrigin::WITHHELD;
    assert_eq!(
        fwd[0].message.content,
        Content::Forwarded { origin: withheld, content: Box::new(Content::Text("final".into())) }
    );

    // One process per profile: the CLI refuses Bob's profile while it is open here.
    let bob_dir = dir.join("bob");
    let read = |dir: &std::path::Path| {
        std::process::Command::new(bin())
            .args(["read", "--json", "--no-receipts", "--profile"])
            .arg(dir)
            .env("STRONGROOM_PASSPHRASE", "bob passphrase")
            .output()
            .unwrap()
    };
    let busy = read(&bob_dir);
    assert!(!busy.status.success());
    assert!(String::from_utf8_lossy(&busy.stderr).contains("another Strongroom process"), "{busy:?}");
    bob.close().await;

    // The relay is down: stored history is still readable.
    server.stop();
    let out = read(&bob_dir);
    assert!(out.status.success(), "{}", String::from_utf8_lossy(&out.stderr));
    assert!(String::from_utf8_lossy(&out.stderr).contains("showing the messages stored on this device"));
    let v: serde_json::Value = serde_json::from_slice(&out.stdout).unwrap();
    assert_eq!(v["offline"], true);
    let texts: Vec<&str> = v["messages"].as_array().unwrap().iter().map(|m| m["text"].as_str().unwrap()).collect();
    assert!(texts.contains(&"final"), "{texts:?}");
    drop(alice2);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_device_that_only_watches_still_purges_expired_messages() {
    let dir = temp_dir("watch-upkeep");
    let server = ServerProc::start(&dir.join("data"), &[]);
    let (mut alice, mut bob) = two_clients(&dir, &server).await;
    let conv = alice.direct_with("bob").await.unwrap();
    alice.send(conv, &Content::Text("gone in 2 s".into()), 2).await.unwrap();
    let secs = std::time::Duration::from_secs;
    assert_eq!(bob.watch(Some(1), Some(secs(20)), |_| {}, |_| {}).await.unwrap(), 1);
    assert_eq!(bob.messages(None).await.unwrap().len(), 1);
    tokio::time::sleep(std::time::Duration::from_millis(2500)).await;
    // Watching only (no sync): the expired message is deleted from disk.
    bob.watch(None, Some(secs(1)), |_| {}, |_| {}).await.unwrap();
    assert!(bob.messages(None).await.unwrap().is_empty());
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_store_failure_after_opening_keeps_the_one_time_key_for_the_retry() {
    let dir = temp_dir("one-time");
    let server = ServerProc::start(&dir.join("data"), &[]);
    let (mut alice, mut bob) = two_clients(&dir, &server).await;
    // Bob already trusts Alice's keys, so opening her message writes nothing.
    bob.safety_number("alice").await.unwrap();
    let conv = alice.direct_with("bob").await.unwrap();
    // A first message: sealed to one of Bob's one-time pre-keys.
    alice.send_text(conv, "first contact").await.unwrap();
    {
        use sqlx::Connection as _;
        let url = format!("sqlite://{}", dir.join("bob/store.db").display());
        let mut other = sqlx::SqliteConnection::connect(&url).await.unwrap();
        sqlx::query("BEGIN IMMEDIATE").execute(&mut other).await.unwrap();
        // Opened (the one-time key used), then the store refuses the write.
        assert!(matches!(bob.sync().await.unwrap_err(), ClientError::Store(_)));
        sqlx::query("ROLLBACK").execute(&mut other).await.unwrap();
    }
    // Before, the key was already forgotten: the retry could not open the
    // message, refused it and acknowledged it — lost.
    let r = bob.sync().await.unwrap();
    assert!(r.warnings.is_empty(), "{:?}", r.warnings);
    assert_eq!(r.received.len(), 1);
    assert_eq!(r.received[0].content, Content::Text("first contact".into()));
}
