//! Ghost members (PROTOCOL.md §3.4): a conversation's members are what its
//! members signed. A relay that claims someone no member added is a member
//! (refusing envelopes without a wrap for them) never makes a client encrypt
//! to them: the client refuses to send and says who the relay claims.
#![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic, clippy::indexing_slicing)]

mod common;

use std::sync::{Arc, Mutex};

use axum::body::{to_bytes, Body};
use axum::extract::{Request, State};
use axum::response::Response;
use common::*;
use strongroom_client::{Client, ClientError};
use strongroom_crypto::ids::DeviceId;

struct Relay {
    upstream: String,
    http: reqwest::Client,
    /// `user:device` the hostile relay says every message must also reach.
    ghost: Mutex<Option<strongroom_wire::DeviceAddress>>,
    /// Lists every conversation as a note to self.
    relabel: std::sync::atomic::AtomicBool,
    /// Shows no membership statement newer than what was asked after.
    withhold: std::sync::atomic::AtomicBool,
}

async fn relay(State(p): State<Arc<Relay>>, req: Request) -> Response {
    let method = req.method().clone();
    let path = req.uri().path_and_query().map(|x| x.as_str().to_owned()).unwrap_or_default();
    let headers = req.headers().clone();
    let body = to_bytes(req.into_body(), 64 << 20).await.unwrap();
    if let Some(ghost) = *p.ghost.lock().unwrap() {
        if method == "POST" && path == "/v1/messages" {
            let refusal = strongroom_wire::ErrorBody {
                error: "recipient_mismatch".into(),
                message: "the envelope's recipient devices differ from the conversation's current devices".into(),
                missing: vec![ghost],
                extra: vec![],
            };
            return Response::builder()
                .status(409)
                .header("content-type", "application/json")
                .body(Body::from(serde_json::to_vec(&refusal).unwrap()))
                .unwrap();
        }
    }
    if method == "GET" && path.contains("/membership?") && p.withhold.load(std::sync::atomic::Ordering::SeqCst) {
        return Response::builder()
            .status(200)
            .header("content-type", "application/json")
            .body(Body::from(r#"{"statements":[]}"#))
            .unwrap();
    }
    let r = pass_on(&p.http, &p.upstream, &method, &path, &headers, &body).await;
    let status = r.status().as_u16();
    let mut bytes = r.bytes().await.unwrap().to_vec();
    if status == 200 && path == "/v1/conversations" && p.relabel.load(std::sync::atomic::Ordering::SeqCst) {
        let mut list: Vec<strongroom_wire::Conversation> = serde_json::from_slice(&bytes).unwrap();
        for c in &mut list {
            c.kind = strongroom_wire::ConversationKind::Notes;
        }
        bytes = serde_json::to_vec(&list).unwrap();
    }
    Response::builder().status(status).header("content-type", "application/json").body(Body::from(bytes)).unwrap()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_member_no_member_added_gets_nothing() {
    let dir = temp_dir("ghost-members");
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let proxy_url = format!("http://{}", listener.local_addr().unwrap());
    let server = ServerProc::start(&dir.join("data"), &["--public-url", &proxy_url]);
    let hostile = Arc::new(Relay {
        upstream: server.url.clone(),
        http: reqwest::Client::new(),
        ghost: Mutex::new(None),
        relabel: false.into(),
        withhold: false.into(),
    });
    let app = axum::Router::new().fallback(relay).with_state(Arc::clone(&hostile));
    tokio::spawn(async move { axum::serve(listener, app).await.unwrap() });
    let (mut alice, mut bob) = two_clients(&dir, &server).await;
    let invite = alice.create_invite(false).await.unwrap().invite;
    let mut mallory =
        Client::enrol(&dir.join("mallory"), "mallory passphrase", &invite, "mallory", PASSWORD).await.unwrap();
    let group = alice.create_conversation("group", &["bob"]).await.unwrap();
    let conv = group.id;
    alice.send_text(conv, "before").await.unwrap();
    let signed = bob.membership(conv).await.unwrap();
    assert_eq!(signed.members, [alice.user_id(), bob.user_id()].into());
    assert_eq!(signed.commitment.version, 1);

    // An honest relay takes no unsigned change to a signed conversation.
    let r = login(&server.url, alice.network_id(), "bob", DeviceId::random(&mut rand_core::OsRng)).await;
    let token = r.json::<strongroom_wire::Session>().await.unwrap().token;
    let r = reqwest::Client::new()
        .post(format!("{}/v1/conversations/{conv}/members", server.url))
        .bearer_auth(token)
        .json(&strongroom_wire::ChangeMembers { add: vec![mallory.user_id()], ..Default::default() })
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), 409);
    assert!(r.text().await.unwrap().contains("signed_membership"));

    // A hostile one says Mallory is a member. Neither client encrypts to her,
    // and both say why.
    *hostile.ghost.lock().unwrap() =
        Some(strongroom_wire::DeviceAddress { user: mallory.user_id(), device: mallory.device_id() });
    let claim = format!(
        "the relay says mallory (user {}) is a member of this conversation; no member added",
        mallory.user_id()
    );
    let err = alice.send_text(conv, "secret plans").await.unwrap_err();
    match err {
        ClientError::Trust(m) => assert!(m.contains(&claim), "{m}"),
        other => panic!("expected a refusal naming mallory, got {other:?}"),
    }
    let err = bob.send_text(conv, "more plans").await.unwrap_err();
    assert!(matches!(err, ClientError::Trust(ref m) if m.contains(&claim)), "{err}");
    *hostile.ghost.lock().unwrap() = None;
    let got = mallory.sync().await.unwrap();
    assert!(got.received.iter().all(|m| m.conversation != conv), "mallory got nothing: {:?}", got.received);
    assert_eq!(bob.membership(conv).await.unwrap().members, [alice.user_id(), bob.user_id()].into());

    // Once a member signs her in, she is a member like any other.
    alice.change_members(conv, &["mallory"], &[], &[], &[]).await.unwrap();
    alice.send_text(conv, "welcome, mallory").await.unwrap();
    let got = mallory.sync().await.unwrap();
    assert!(got.received.iter().any(|m| m.conversation == conv), "{:?}", got.received);
    let signed = bob.membership(conv).await.unwrap();
    assert_eq!(signed.commitment.version, 2);
    assert!(signed.members.contains(&mallory.user_id()));

    // The relay withholds Mallory's removal from Bob: Alice's next message
    // commits to a change Bob cannot reach, and Bob is told.
    hostile.withhold.store(true, std::sync::atomic::Ordering::SeqCst);
    alice.change_members(conv, &[], &["mallory"], &[], &[]).await.unwrap();
    alice.send_text(conv, "mallory has left").await.unwrap();
    let r = bob.sync().await.unwrap();
    assert!(
        r.warnings
            .iter()
            .any(|w| w.contains("sealed to membership change #3 that the relay has not shown this device")),
        "{:?}",
        r.warnings
    );
    hostile.withhold.store(false, std::sync::atomic::Ordering::SeqCst);
    assert!(bob.sync().await.unwrap().warnings.is_empty());
    assert_eq!(bob.membership(conv).await.unwrap().commitment.version, 3);

    // A conversation of Mallory's that the relay labels Alice's "note to
    // self" is not taken for one: notes go only where Alice alone signed.
    let trap = mallory.create_conversation("group", &["alice"]).await.unwrap();
    hostile.relabel.store(true, std::sync::atomic::Ordering::SeqCst);
    let notes = alice.notes_to_self().await.unwrap();
    assert_ne!(notes, trap.id);
    assert_ne!(notes, conv);
    assert_eq!(alice.membership(notes).await.unwrap().members, [alice.user_id()].into());
}

/// What a member may sign is what their role allows: the relay checks it as
/// members do, so a group member cannot use a room's rules and a member of
/// a room cannot add people.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn statements_follow_roles_and_the_chain() {
    let dir = temp_dir("membership-roles");
    let server = ServerProc::start(&dir.join("data"), &[]);
    let (mut alice, mut bob) = two_clients(&dir, &server).await;
    let invite = alice.create_invite(false).await.unwrap().invite;
    let carol = Client::enrol(&dir.join("carol"), "carol passphrase", &invite, "carol", PASSWORD).await.unwrap();
    let room = alice.create_conversation("room", &["bob"]).await.unwrap();
    let conv = room.id;
    let err = bob.change_members(conv, &["carol"], &[], &[], &[]).await.unwrap_err();
    assert!(
        matches!(err, ClientError::Refused { ref code, .. } if code == "membership_refused"),
        "a plain member of a room cannot add: {err}"
    );
    alice.change_members(conv, &[], &[], &["bob"], &[]).await.unwrap();
    bob.change_members(conv, &["carol"], &[], &[], &[]).await.unwrap();
    let signed = alice.membership(conv).await.unwrap();
    assert_eq!(signed.members, [alice.user_id(), bob.user_id(), carol.user_id()].into());
    assert_eq!(signed.moderators, [alice.user_id(), bob.user_id()].into());
    // Bob leaves; Alice's next statement follows his, which she fetches first.
    bob.change_members(conv, &[], &["bob"], &[], &[]).await.unwrap();
    alice.change_members(conv, &[], &["carol"], &[], &[]).await.unwrap();
    let signed = alice.membership(conv).await.unwrap();
    assert_eq!(signed.members, [alice.user_id()].into());
    assert_eq!(signed.commitment.version, 5);
    // The relay's listing of a direct conversation is only a hint.
    let direct = alice.direct_with("bob").await.unwrap();
    assert_eq!(alice.membership(direct).await.unwrap().members, [alice.user_id(), bob.user_id()].into());
    assert_eq!(bob.direct_with("alice").await.unwrap(), direct, "both find the same signed conversation");
}

/// The statement endpoints with bad input: a clear refusal, nothing stored.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_relay_refuses_malformed_and_foreign_statements() {
    use strongroom_crypto::certs::{ConversationKind, MembershipAction, MembershipStatement};
    let dir = temp_dir("membership-input");
    let server = ServerProc::start(&dir.join("data"), &[]);
    let (mut alice, bob) = two_clients(&dir, &server).await;
    let group = alice.create_conversation("group", &["bob"]).await.unwrap();
    let conv = group.id;
    let r = login(&server.url, alice.network_id(), "bob", DeviceId::random(&mut rand_core::OsRng)).await;
    let token = r.json::<strongroom_wire::Session>().await.unwrap().token;
    let http = reqwest::Client::new();
    let post = |body: Vec<u8>, id: String| {
        http.post(format!("{}/v1/conversations/{id}/membership", server.url)).bearer_auth(&token).body(body).send()
    };
    let code = |r: reqwest::Response| async move {
        let status = r.status().as_u16();
        let body: strongroom_wire::ErrorBody = r.json().await.unwrap();
        (status, body.error)
    };
    // Garbage, truncated, and an oversized count.
    assert_eq!(code(post(vec![2, 0, 1, 9], group.id.to_string()).await.unwrap()).await, (400, "bad_statement".into()));
    let stranger = strongroom_crypto::keys::SigningKey::generate(&mut rand_core::OsRng);
    let author = (alice.user_id(), alice.device_id());
    let id =
        MembershipStatement::creation_id(alice.network_id(), author, 1, ConversationKind::Group, vec![alice.user_id()]);
    let forged = MembershipStatement::sign(
        &stranger,
        alice.network_id(),
        id,
        None,
        author,
        1,
        MembershipAction::Create(ConversationKind::Group),
        vec![alice.user_id()],
    )
    .unwrap()
    .encode();
    let mut truncated = forged.clone();
    truncated.truncate(forged.len() - 1);
    assert_eq!(code(post(truncated, id.to_string()).await.unwrap()).await, (400, "bad_statement".into()));
    // Another conversation in the URL than in the statement.
    assert_eq!(code(post(forged.clone(), group.id.to_string()).await.unwrap()).await, (400, "bad_statement".into()));
    // Bob's session posting Alice's statement.
    assert_eq!(code(post(forged, id.to_string()).await.unwrap()).await, (403, "not_author".into()));
    // A bad id and a bad cursor.
    assert_eq!(code(post(vec![0], "zz".into()).await.unwrap()).await.0, 400);
    let r = http
        .get(format!("{}/v1/conversations/{}/membership?after=-1", server.url, group.id))
        .bearer_auth(&token)
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), 400);
    let r = http
        .get(format!("{}/v1/keys/{}/history?after=x", server.url, bob.user_id()))
        .bearer_auth(&token)
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), 400);
    // Nothing was stored: the group still has only its creation.
    assert_eq!(alice.membership(conv).await.unwrap().commitment.version, 1);
}

/// A statement signed by a device that was revoked later: it counts for a
/// member folding afterwards only once a current device's later statement
/// follows it; at the tip of the chain it is not taken.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_statement_from_a_since_revoked_device_counts_once_vouched_for() {
    let dir = temp_dir("membership-revoked-author");
    let server = ServerProc::start(&dir.join("data"), &[]);
    let (mut alice, mut bob) = two_clients(&dir, &server).await;
    let invite = alice.create_invite(false).await.unwrap().invite;
    let mut carol = Client::enrol(&dir.join("carol"), "carol passphrase", &invite, "carol", PASSWORD).await.unwrap();
    let invite = alice.create_invite(false).await.unwrap().invite;
    let dave = Client::enrol(&dir.join("dave"), "dave passphrase", &invite, "dave", PASSWORD).await.unwrap();
    let pending = Client::link_begin(
        &dir.join("alice-phone"),
        "phone passphrase",
        &server.url,
        alice.network_id(),
        "alice",
        PASSWORD,
    )
    .await
    .unwrap();
    let code = pending.code().to_string();
    let waiting = tokio::spawn(async move { pending.wait(std::time::Duration::from_secs(20)).await });
    alice.approve_link(&code).await.unwrap();
    let mut phone = waiting.await.unwrap().unwrap();

    let group = alice.create_conversation("group", &["bob"]).await.unwrap();
    let conv = group.id;
    phone.change_members(conv, &["carol"], &[], &[], &[]).await.unwrap();
    assert_eq!(bob.membership(conv).await.unwrap().commitment.version, 2, "bob folds it while the phone is current");
    alice.remove_device(phone.device_id()).await.unwrap();

    // At the tip, nobody current vouches for it yet.
    let err = carol.membership(conv).await.unwrap_err();
    assert!(
        matches!(err, ClientError::Trust(ref m) if m.contains("statement 2 was signed by a device its owner has since revoked")),
        "{err}"
    );
    // Bob, who folded it, signs the next change: now it counts.
    bob.change_members(conv, &["dave"], &[], &[], &[]).await.unwrap();
    let signed = carol.membership(conv).await.unwrap();
    assert_eq!(signed.commitment.version, 3);
    assert_eq!(signed.members, [alice.user_id(), bob.user_id(), carol.user_id(), dave.user_id()].into());
}
