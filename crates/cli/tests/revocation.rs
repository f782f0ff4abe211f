//! Revocation that sticks (PROTOCOL.md §3.2, §8), played through the real
//! client SDK against the real relay, with a proxy in between that serves a
//! chosen device list in place of the relay's: the hostile relay, helped by
//! a revoked device or by someone who stole the identity key.
#![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic, clippy::indexing_slicing)]

mod common;

use std::sync::{Arc, Mutex};
use std::time::Duration;

use axum::body::{to_bytes, Body};
use axum::extract::{Request, State};
use axum::response::Response;
use common::*;
use strongroom_client::rules::trust::Verification;
use strongroom_client::{Client, ClientError};
use strongroom_crypto::certs::{DeviceEntry, DeviceList};
use strongroom_crypto::ids::{ConversationId, UserId};
use strongroom_crypto::keys::{SecretBytes, SigningKey};
use strongroom_wire::{UserKeys, B64};

struct Swap {
    upstream: String,
    http: reqwest::Client,
    /// (user, encoded list): served as that user's current device list.
    list: Mutex<Option<(UserId, Vec<u8>)>>,
}

async fn swap(State(p): State<Arc<Swap>>, req: Request) -> Response {
    let method = req.method().clone();
    let path = req.uri().path_and_query().map(|x| x.as_str().to_owned()).unwrap_or_default();
    let headers = req.headers().clone();
    let body = to_bytes(req.into_body(), 64 << 20).await.unwrap();
    if p.list.lock().unwrap().is_some() && method == "POST" && path == "/v1/messages" {
        return make_sender_refetch();
    }
    let r = pass_on(&p.http, &p.upstream, &method, &path, &headers, &body).await;
    let status = r.status().as_u16();
    let mut bytes = r.bytes().await.unwrap().to_vec();
    if let Some((user, list)) = p.list.lock().unwrap().clone() {
        if status == 200 && method == "GET" && path == format!("/v1/keys/{user}") {
            let mut keys: UserKeys = serde_json::from_slice(&bytes).unwrap();
            keys.device_list = B64(list);
            bytes = serde_json::to_vec(&keys).unwrap();
        }
    }
    Response::builder().status(status).header("content-type", "application/json").body(Body::from(bytes)).unwrap()
}

/// A relay behind the swapping proxy, and Alice and Bob enrolled through it.
async fn world(tag: &str) -> (std::path::PathBuf, ServerProc, String, Arc<Swap>, Client, Client) {
    let dir = temp_dir(tag);
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let proxy_url = format!("http://{}", listener.local_addr().unwrap());
    let server = ServerProc::start(&dir.join("data"), &["--public-url", &proxy_url]);
    let proxy = Arc::new(Swap { upstream: server.url.clone(), http: reqwest::Client::new(), list: Mutex::new(None) });
    let app = axum::Router::new().fallback(swap).with_state(Arc::clone(&proxy));
    tokio::spawn(async move { axum::serve(listener, app).await.unwrap() });
    let (alice, bob) = two_clients(&dir, &server).await;
    (dir, server, proxy_url, proxy, alice, bob)
}

/// Links a new device to Alice's account, approved by `primary`.
async fn link(primary: &mut Client, dir: &std::path::Path, url: &str, name: &str) -> Client {
    let pending = Client::link_begin(&dir.join(name), "phone passphrase", url, primary.network_id(), "alice", PASSWORD)
        .await
        .unwrap();
    let code = pending.code().to_string();
    let waiting = tokio::spawn(async move { pending.wait(Duration::from_secs(20)).await });
    primary.approve_link(&code).await.unwrap();
    waiting.await.unwrap().unwrap()
}

/// Alice's identity key as a thief of her primary device would have it.
fn stolen_identity(alice: &Client) -> SigningKey {
    let seed: [u8; 32] = alice.private_keys_for_tests()[0].as_slice().try_into().unwrap();
    SigningKey::from_seed(SecretBytes::new(seed)).unwrap()
}

async fn current_list(bob: &mut Client, alice: UserId) -> DeviceList {
    bob.device_list(alice).await.unwrap().list().clone()
}

async fn dm(bob: &mut Client) -> ConversationId {
    bob.direct_with("alice").await.unwrap()
}

fn trust_error(e: ClientError) -> String {
    match e {
        ClientError::Trust(m) => m,
        other => panic!("expected a security refusal, got {other:?}"),
    }
}

/// A linked device never holds the identity key, so once revoked it cannot
/// sign itself back in; and even the identity key cannot un-revoke it, since
/// peers check every list against the one before.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_revoked_device_stays_revoked_even_for_the_identity_key() {
    let (dir, server, url, proxy, mut alice, mut bob) = world("revoked-sticks").await;
    let alice_id = alice.user_id();
    let conv = dm(&mut bob).await;
    bob.send_text(conv, "hello").await.unwrap();
    bob.mark_verified("alice").await.unwrap();

    let mut phone = link(&mut alice, &dir, &url, "alice-phone").await;
    assert!(alice.is_primary() && !phone.is_primary());
    let seed = alice.private_keys_for_tests()[0].clone();
    assert!(
        phone.private_keys_for_tests().iter().all(|k| k.as_slice() != seed.as_slice()),
        "the identity key never leaves the primary device"
    );
    assert!(matches!(phone.remove_device(alice.device_id()).await, Err(ClientError::NotPrimary)));
    bob.send_text(conv, "to both of alice's devices").await.unwrap();
    assert!(bob.take_notices().iter().any(|n| n.starts_with("alice added a device")), "the new device is shown");
    assert_eq!(bob.device_list(alice_id).await.unwrap().active_devices().count(), 2);

    alice.remove_device(phone.device_id()).await.unwrap();
    bob.send_text(conv, "after the phone was removed").await.unwrap();
    let notices = bob.take_notices();
    assert!(
        notices.iter().any(|n| n.starts_with("alice removed a device") && n.contains(&phone.device_id().to_string())),
        "{notices:?}"
    );
    assert_eq!(bob.verification("alice").await.unwrap(), Verification::Verified, "a removed device keeps the mark");
    let revoked = current_list(&mut bob, alice_id).await;

    // What the revoked phone itself holds: its device key. A list it signs is
    // not signed by Alice's identity key.
    let mut back = revoked.devices.clone();
    for d in &mut back {
        d.revoked = false;
    }
    let phone_key =
        SigningKey::from_seed(SecretBytes::new(phone.private_keys_for_tests()[0].as_slice().try_into().unwrap()))
            .unwrap();
    let by_phone = revoked.next(&phone_key, now_ms(), back.clone()).unwrap();
    *proxy.list.lock().unwrap() = Some((alice_id, by_phone.encode()));
    let err = trust_error(bob.send_text(conv, "x").await.unwrap_err());
    assert!(err.contains("identity key of user") && err.contains("changed"), "{err}");

    // Even the identity key itself (stolen from the primary, or held by a
    // device linked before linking stopped handing it out) cannot bring the
    // phone back: it stays revoked in every later list.
    let by_thief = revoked.next(&stolen_identity(&alice), now_ms(), back).unwrap();
    *proxy.list.lock().unwrap() = Some((alice_id, by_thief.encode()));
    let err = trust_error(bob.send_text(conv, "x").await.unwrap_err());
    assert!(err.contains("was revoked and cannot return"), "{err}");
    // A profile that kept only the version and digest seen fetches that list
    // from the history and checks against it all the same.
    bob.forget_known_lists_for_tests();
    let err = trust_error(bob.send_text(conv, "x").await.unwrap_err());
    assert!(err.contains("was revoked and cannot return"), "{err}");
    // Nor by leaving it out of the list.
    let dropped: Vec<DeviceEntry> =
        revoked.devices.iter().filter(|d| d.device_id != phone.device_id()).cloned().collect();
    let by_thief = revoked.next(&stolen_identity(&alice), now_ms(), dropped).unwrap();
    *proxy.list.lock().unwrap() = Some((alice_id, by_thief.encode()));
    let err = trust_error(bob.send_text(conv, "x").await.unwrap_err());
    assert!(err.contains("was revoked and cannot return"), "{err}");

    // The relay itself does not store such a list either.
    let session = login(&server.url, alice.network_id(), "alice", alice.device_id()).await;
    let token = session.json::<strongroom_wire::Session>().await.unwrap().token;
    let revive: Vec<DeviceEntry> =
        revoked.devices.iter().map(|d| DeviceEntry { revoked: false, ..d.clone() }).collect();
    let r = reqwest::Client::new()
        .put(format!("{}/v1/keys/device-list", server.url))
        .bearer_auth(token)
        .body(revoked.next(&stolen_identity(&alice), now_ms(), revive).unwrap().encode())
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), 409);
    assert!(r.text().await.unwrap().contains("device_revived"));

    // The honest relay again: Bob sends to Alice's one device.
    *proxy.list.lock().unwrap() = None;
    bob.send_text(conv, "only to the primary").await.unwrap();
    let list = bob.device_list(alice_id).await.unwrap();
    assert_eq!(list.active_devices().map(|d| d.device_id()).collect::<Vec<_>>(), vec![alice.device_id()]);
    // The revoked phone is logged out and cannot log in again.
    assert!(phone.sync().await.is_err());
}

/// A list signed at version 2^64 − 1 would once have made every later list
/// of the account a "rollback". Now a list must follow the one a peer saw,
/// version by version: the bogus list is refused, and the account's real
/// next list is still accepted.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_list_at_the_highest_version_cannot_brick_an_account() {
    let (dir, server, url, proxy, mut alice, mut bob) = world("max-version").await;
    let alice_id = alice.user_id();
    let conv = dm(&mut bob).await;
    bob.send_text(conv, "hello").await.unwrap();
    let seen = current_list(&mut bob, alice_id).await;
    let thief = stolen_identity(&alice);
    let max =
        DeviceList::sign(&thief, seen.network_id, alice_id, u64::MAX, seen.digest(), now_ms(), seen.devices.clone())
            .unwrap();

    // The relay does not store it…
    let session = login(&server.url, alice.network_id(), "alice", alice.device_id()).await;
    let token = session.json::<strongroom_wire::Session>().await.unwrap().token;
    let r = reqwest::Client::new()
        .put(format!("{}/v1/keys/device-list", server.url))
        .bearer_auth(token)
        .body(max.encode())
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), 409);
    assert!(r.text().await.unwrap().contains("cannot skip versions"));

    // …and a relay that serves it anyway is refused by peers.
    *proxy.list.lock().unwrap() = Some((alice_id, max.encode()));
    let err = trust_error(bob.send_text(conv, "x").await.unwrap_err());
    assert!(err.contains("cannot skip versions"), "{err}");
    *proxy.list.lock().unwrap() = None;

    // Alice's real next list (linking a device) goes through everywhere.
    let phone = link(&mut alice, &dir, &url, "alice-phone").await;
    bob.send_text(conv, "to both").await.unwrap();
    let list = bob.device_list(alice_id).await.unwrap();
    assert_eq!(list.list().version, seen.version + 1);
    assert!(list.device(phone.device_id()).is_ok());
}
