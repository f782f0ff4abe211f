//! What the app and bots stand on: the durable outbox (a send while the
//! relay is down is sealed, kept, and sent once when it is back, under the
//! same id, even if an answer is lost), the event log (read from a cursor
//! across restarts, nothing missed or repeated) and read state.
#![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic, clippy::indexing_slicing)]

mod common;

use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::Arc;

use axum::body::{to_bytes, Body};
use axum::extract::{Request, State};
use axum::response::Response;
use common::*;
use strongroom_client::{Client, EventKind};
use strongroom_crypto::content::Content;
use strongroom_crypto::ids::MessageId;

struct Flaky {
    upstream: String,
    http: reqwest::Client,
    /// Passes a send on to the relay, then answers 504: the answer is lost.
    lose_answer: AtomicBool,
    /// Whether the relay took the send whose answer was lost.
    took: AtomicBool,
    /// Answers every request 503, as a gateway with no relay behind it.
    down: AtomicBool,
    /// Answers sends 401, as for an expired session.
    expired: AtomicBool,
}

async fn relay(State(p): State<Arc<Flaky>>, req: Request) -> Response {
    let method = req.method().clone();
    let path = req.uri().path_and_query().map(|x| x.as_str().to_owned()).unwrap_or_default();
    let headers = req.headers().clone();
    let body = to_bytes(req.into_body(), 64 << 20).await.unwrap();
    if p.down.load(Ordering::SeqCst) {
        return Response::builder().status(503).body(Body::empty()).unwrap();
    }
    if method == "POST" && path == "/v1/messages" && p.expired.load(Ordering::SeqCst) {
        return Response::builder()
            .status(401)
            .header("content-type", "application/json")
            .body(Body::from(r#"{"error":"unauthenticated","message":"your session has ended; log in again"}"#))
            .unwrap();
    }
    let mut up = p.http.request(method.as_str().parse().unwrap(), format!("{}{path}", p.upstream)).body(body.to_vec());
    for name in ["authorization", "content-type", strongroom_wire::SETTINGS_TAG_HEADER] {
        if let Some(v) = headers.get(name) {
            up = up.header(name, v.to_str().unwrap());
        }
    }
    // The relay down: a gateway error, as a load balancer in front would say.
    let Ok(r) = up.send().await else {
        return Response::builder().status(502).body(Body::empty()).unwrap();
    };
    if method == "POST" && path == "/v1/messages" && p.lose_answer.swap(false, Ordering::SeqCst) {
        p.took.store(r.status().is_success(), Ordering::SeqCst);
        return Response::builder().status(504).body(Body::empty()).unwrap();
    }
    let mut out = Response::builder().status(r.status().as_u16()).header("content-type", "application/json");
    if let Some(tag) = r.headers().get(strongroom_wire::SETTINGS_TAG_HEADER) {
        out = out.header(strongroom_wire::SETTINGS_TAG_HEADER, tag.to_str().unwrap());
    }
    out.body(Body::from(r.bytes().await.unwrap())).unwrap()
}

fn texts(messages: &[strongroom_client::Message]) -> Vec<(MessageId, String)> {
    messages
        .iter()
        .filter_map(|m| match &m.content {
            Content::Text(t) => Some((m.message_id, t.clone())),
            _ => None,
        })
        .collect()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_send_during_an_outage_goes_once_under_its_id_when_the_relay_is_back() {
    let dir = temp_dir("outbox");
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let proxy_url = format!("http://{}", listener.local_addr().unwrap());
    let mut server = ServerProc::start(&dir.join("data"), &["--public-url", &proxy_url]);
    let p = Arc::new(Flaky {
        upstream: server.url.clone(),
        http: reqwest::Client::new(),
        lose_answer: false.into(),
        took: false.into(),
        down: false.into(),
        expired: false.into(),
    });
    let app = axum::Router::new().fallback(relay).with_state(Arc::clone(&p));
    tokio::spawn(async move { axum::serve(listener, app).await.unwrap() });
    let (mut alice, mut bob) = two_clients(&dir, &server).await;
    let direct = alice.direct_with("bob").await.unwrap();
    // One send, sealed to Bob's one-time key: the next needs his medium-term
    // key, which cannot be claimed while the relay is down. It is queued
    // anyway and sealed when the relay is back.
    alice.send_text(direct, "before").await.unwrap();

    // The relay goes down: sends are sealed and queued, in order.
    server.stop();
    let first = alice.send_text(direct, "while down 1").await.unwrap();
    let second = alice.send_text(direct, "while down 2").await.unwrap();
    assert!(first.queued && second.queued && first.seq == 0, "{first:?}");
    assert!(!serde_json::to_string(&first).unwrap().contains("duplicate\":true"));
    let ids = [first.message_id, second.message_id];
    assert_eq!(alice.queued().await.unwrap().iter().map(|q| q.1).collect::<Vec<_>>(), ids);
    // This device shows them already.
    let mine = texts(&alice.messages(Some(direct)).await.unwrap());
    assert!(mine.contains(&(ids[0], "while down 1".into())), "{mine:?}");

    // Queued across a restart of the app, with the relay still down.
    let alice_dir = alice.dir().to_owned();
    alice.close().await;
    let mut alice = Client::open(&alice_dir, "alice passphrase").await.unwrap();
    assert_eq!(alice.queued().await.unwrap().len(), 2);
    assert!(alice.sync().await.is_err(), "still down");
    assert_eq!(alice.queued().await.unwrap().len(), 2, "nothing lost or dropped while down");

    // Back: the next sync sends both, in order, under their ids.
    server.restart();
    let report = alice.sync().await.unwrap();
    assert!(report.warnings.is_empty(), "{:?}", report.warnings);
    assert!(alice.queued().await.unwrap().is_empty());

    // An answer lost after the relay stored the message: queued, then sent
    // again with the same bytes; the relay takes the id once.
    p.lose_answer.store(true, Ordering::SeqCst);
    let lost = alice.send_text(direct, "answer lost").await.unwrap();
    assert!(lost.queued && p.took.load(Ordering::SeqCst), "the relay took it; the answer was lost");
    alice.sync().await.unwrap();
    assert!(alice.queued().await.unwrap().is_empty());

    bob.sync().await.unwrap();
    let got = texts(&bob.messages(Some(direct)).await.unwrap());
    let lost_id = lost.message_id;
    for (id, text) in [(ids[0], "while down 1"), (ids[1], "while down 2"), (lost_id, "answer lost")] {
        assert_eq!(got.iter().filter(|(_, t)| t == text).count(), 1, "{text} once: {got:?}");
        assert!(got.contains(&(id, text.into())), "{text} under the id the send returned");
    }
    let order: Vec<&str> = got.iter().map(|(_, t)| t.as_str()).collect();
    assert_eq!(order, ["before", "while down 1", "while down 2", "answer lost"]);
    // Alice's own copies took the relay's numbers.
    let seqs: Vec<u64> = alice.messages(Some(direct)).await.unwrap().iter().map(|m| m.seq).collect();
    assert_eq!(seqs, [1, 2, 3, 4]);

    // An expired session is no refusal of the message: it stays queued.
    p.expired.store(true, Ordering::SeqCst);
    let waiting = alice.send_text(direct, "after the session ended").await.unwrap();
    assert!(waiting.queued);
    let report = alice.sync().await.unwrap();
    assert!(report.warnings.is_empty(), "not removed: {:?}", report.warnings);
    assert_eq!(alice.queued().await.unwrap().len(), 1, "kept");
    p.expired.store(false, Ordering::SeqCst);
    alice.sync().await.unwrap();
    assert!(alice.queued().await.unwrap().is_empty());

    // A location queued while sharing was allowed, then an administrator
    // turns it off: it is checked again when it would go, and removed.
    p.down.store(true, Ordering::SeqCst);
    let here = Content::Location(strongroom_crypto::content::Location {
        latitude: 1.0,
        longitude: 2.0,
        accuracy_m: 5.0,
        live_until: None,
    });
    let located = alice.send(direct, &here, 0).await.unwrap();
    assert!(located.queued);
    p.down.store(false, Ordering::SeqCst);
    let mut settings = alice.admin().settings().await.unwrap();
    settings.location_enabled = false;
    alice.admin().put_settings(&settings).await.unwrap();
    let report = alice.sync().await.unwrap();
    assert!(
        report.warnings.iter().any(|w| w.contains("removed from the outbox") && w.contains("location")),
        "{:?}",
        report.warnings
    );
    assert!(alice.queued().await.unwrap().is_empty());
    let located = located.message_id;
    assert!(alice.messages(Some(direct)).await.unwrap().iter().all(|m| m.message_id != located), "not kept as sent");
    let failed = alice.events(0, 1000).await.unwrap();
    assert!(failed
        .iter()
        .any(|e| matches!(&e.kind, EventKind::SendFailed { message_id, .. } if *message_id == located)));
    bob.sync().await.unwrap();
    assert!(bob.messages(Some(direct)).await.unwrap().iter().all(|m| m.message_id != located));
    alice.close().await;
    bob.close().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_event_log_resumes_from_a_cursor_after_a_restart_and_read_state_counts() {
    let dir = temp_dir("events");
    let server = ServerProc::start(&dir.join("data"), &[]);
    let (mut alice, mut bob) = two_clients(&dir, &server).await;
    let direct = alice.direct_with("bob").await.unwrap();
    let hello = alice.send_text(direct, "hello").await.unwrap();
    let hello = hello.message_id;
    bob.sync().await.unwrap();
    let first = bob.events(0, 1000).await.unwrap();
    assert!(
        first.iter().any(|e| matches!(e.kind, EventKind::Message { message_id, .. } if message_id == hello)),
        "{first:?}"
    );
    let cursor = first.last().unwrap().id;

    // Bob's app stops; meanwhile Alice edits, reacts, recalls and writes.
    let bob_dir = bob.dir().to_owned();
    bob.close().await;
    let later = alice.send_text(direct, "second").await.unwrap();
    let later = later.message_id;
    alice.send(direct, &Content::Edit { target: hello, text: "hello!".into() }, 0).await.unwrap();
    alice.send(direct, &Content::Reaction { target: hello, emoji: "👍".into(), remove: false }, 0).await.unwrap();
    alice.send(direct, &Content::Recall { target: later }, 0).await.unwrap();
    alice.send_text(direct, "third").await.unwrap();
    let mut bob = Client::open(&bob_dir, "bob passphrase").await.unwrap();
    bob.sync().await.unwrap();

    let next = bob.events(cursor, 1000).await.unwrap();
    assert!(next.iter().all(|e| e.id > cursor), "nothing repeated");
    assert!(next.windows(2).all(|w| w[0].id < w[1].id), "ids increase");
    let all = bob.events(0, 1000).await.unwrap();
    assert_eq!(all.len(), first.len() + next.len(), "nothing missed");
    let kinds: Vec<&str> = next
        .iter()
        .map(|e| match e.kind {
            EventKind::Message { .. } => "message",
            EventKind::Edited { .. } => "edited",
            EventKind::Reaction { .. } => "reaction",
            EventKind::Recalled { .. } => "recalled",
            _ => "other",
        })
        .collect();
    assert_eq!(kinds, ["message", "edited", "reaction", "recalled", "message"], "{next:?}");
    // Paging: one at a time reads the same sequence.
    let mut paged = Vec::new();
    let mut at = cursor;
    while let Some(e) = bob.events(at, 1).await.unwrap().pop() {
        at = e.id;
        paged.push(e);
    }
    assert_eq!(paged, next);

    // Read state: "hello" and "third" are unread ("second" was recalled;
    // edits, reactions and recalls are not counted).
    let state = bob.read_states().await.unwrap();
    let direct_state = state.iter().find(|s| s.conversation == direct).unwrap();
    assert_eq!((direct_state.unread, direct_state.read_to, direct_state.muted), (2, 0, false));
    let top = bob.messages(Some(direct)).await.unwrap().iter().map(|m| m.seq).max().unwrap();
    assert_eq!(bob.mark_read(direct, top).await.unwrap(), top);
    assert_eq!(bob.mark_read(direct, 1).await.unwrap(), top, "never moves back");
    bob.set_muted(direct, true).await.unwrap();
    let direct_state = bob.read_states().await.unwrap().into_iter().find(|s| s.conversation == direct).unwrap();
    assert_eq!((direct_state.unread, direct_state.read_to, direct_state.muted), (0, top, true));
    let read = bob.events(all.last().unwrap().id, 10).await.unwrap();
    assert!(matches!(read.as_slice(), [e] if e.kind == EventKind::Read { conversation: direct, read_to: top }));

    // Alice's own log has what she sent.
    let sent = alice.events(0, 1000).await.unwrap();
    assert!(sent.iter().any(|e| matches!(e.kind, EventKind::Sent { message_id, .. } if message_id == hello)));
    // Bad cursors are harmless.
    assert!(bob.events(u64::MAX, 10).await.unwrap().is_empty());
    assert_eq!(bob.events(0, 0).await.unwrap().len(), 1, "a limit of 0 reads one");
    alice.close().await;
    bob.close().await;
}

/// A wipe order is the event log's last event: an application tailing the
/// log learns of it (once), then erases the profile, log and all.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_wipe_order_is_the_last_event_before_the_profile_is_erased() {
    let dir = temp_dir("wipe-event");
    let server = ServerProc::start(&dir.join("data"), &[]);
    let (mut alice, mut bob) = two_clients(&dir, &server).await;
    let conv = alice.direct_with("bob").await.unwrap();
    alice.send_text(conv, "before the wipe").await.unwrap();
    bob.sync().await.unwrap();
    let cursor = bob.events(0, 1000).await.unwrap().last().unwrap().id;
    alice.admin().wipe_device(bob.user_id(), bob.device_id()).await.unwrap();

    assert!(matches!(bob.sync().await, Err(strongroom_client::ClientError::Wiped(_))));
    assert!(matches!(bob.send_text(conv, "after").await, Err(strongroom_client::ClientError::Wiped(_))));
    let after = bob.events(cursor, 1000).await.unwrap();
    let kinds: Vec<&EventKind> = after.iter().map(|e| &e.kind).collect();
    assert!(
        matches!(kinds.as_slice(), [EventKind::Wiped { reason }] if reason.contains("administrator")),
        "one wipe event, logged once: {kinds:?}"
    );
    let bob_dir = dir.join("bob");
    bob.erase_after_wipe().await.unwrap();
    assert!(!bob_dir.exists(), "the profile, its event log included, is erased");
}

/// Bots watch: a burst is shown once each, in order, and acknowledged (the
/// acks are held for a moment and sent together, the last ones as the
/// watch ends): the relay's queue is empty afterwards and a second watch
/// shows nothing again.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_watched_burst_is_shown_once_and_all_of_it_acknowledged() {
    let dir = temp_dir("watch-burst");
    let server = ServerProc::start(&dir.join("data"), &[]);
    let (mut alice, mut bob) = two_clients(&dir, &server).await;
    let to_bob = alice.direct_with("bob").await.unwrap();
    for i in 0..150 {
        alice.send_text(to_bob, &format!("burst {i}")).await.unwrap();
    }
    let mut shown = Vec::new();
    let n = bob
        .watch(
            Some(150),
            Some(std::time::Duration::from_secs(60)),
            |m| match &m.content {
                Content::Text(t) => shown.push(t.clone()),
                other => panic!("{other:?}"),
            },
            |w| panic!("warning: {w}"),
        )
        .await
        .unwrap();
    assert_eq!(n, 150);
    assert_eq!(shown, (0..150).map(|i| format!("burst {i}")).collect::<Vec<_>>());
    let depth = || async {
        let text = reqwest::get(format!("{}/metrics", server.url)).await.unwrap().text().await.unwrap();
        text.lines()
            .find_map(|l| l.strip_prefix("strongroom_queue_depth{kind=\"device\"} "))
            .unwrap()
            .parse::<u64>()
            .unwrap()
    };
    let deadline = tokio::time::Instant::now() + std::time::Duration::from_secs(10);
    while depth().await > 0 {
        assert!(tokio::time::Instant::now() < deadline, "{} still queued after the watch", depth().await);
        tokio::time::sleep(std::time::Duration::from_millis(100)).await;
    }
    let again = bob
        .watch(None, Some(std::time::Duration::from_millis(1500)), |m| panic!("shown twice: {m:?}"), |w| panic!("{w}"))
        .await
        .unwrap();
    assert_eq!(again, 0);
}
