//! The device-ownership attacks an outside penetration test found, each
//! played against the real binary with two networks and retention on, and
//! each refused: a device id belongs to one account of one network for good.
//!
//! 1. Taking over another device's queue (across networks, the retention
//!    queue included) by logging in with its id.
//! 2. A signed device list naming other people's devices as revoked.
//! 3. An administrator of another network remote-wiping a device.
//! 4. Device-id collisions, confirming someone else's wipe, replacing
//!    someone's link request, and revoked ids logging in again.
//!
//! Plus: `retention verify` compares the archive with what the relay queued
//! for the retention device, so an archive missing messages that left the
//! queue no longer passes.
#![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic, clippy::indexing_slicing)]

mod common;

use common::*;
use reqwest::StatusCode;
use serde_json::Value;
use strongroom_crypto::certs::*;
use strongroom_crypto::ids::*;
use strongroom_crypto::keys::SigningKey;
use strongroom_wire::*;

/// The error code of a refused response.
async fn code(r: reqwest::Response) -> (StatusCode, String) {
    let status = r.status();
    let body: Value = r.json().await.unwrap_or_default();
    (status, body["error"].as_str().unwrap_or_default().to_owned())
}

/// A second network on the same relay with one enrolled user (its administrator).
async fn other_network(server: &ServerProc, dir: &std::path::Path, name: &str, user: &str) -> Device {
    let (network, invite) = create_network(server, dir, name);
    register(&server.url, &invite, user).await;
    Device::enrol(&server.url, network, user, None, &[], 5).await
}

/// Signs and publishes `device`'s account list with `entries`.
async fn publish_list(device: &Device, version: u64, entries: Vec<DeviceEntry>) -> reqwest::Response {
    let list = DeviceList::sign(&device.identity, device.network, device.user, version, now_ms(), entries).unwrap();
    device.put_bytes("/v1/keys/device-list", list.encode()).await
}

fn entry(device: DeviceId, key: &SigningKey, revoked: bool) -> DeviceEntry {
    DeviceEntry { device_id: device, signing_key: key.verifying_key(), created_at: 0, revoked, name: "x".into() }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn nobody_takes_over_another_devices_queue_not_even_the_retention_devices() {
    let dir = temp_dir("attack-takeover");
    let server = ServerProc::start(&dir.join("data"), &[]);
    let (mut alice, mut bob) = two_clients(&dir, &server).await;
    let rdir = turn_retention_on(&server, &dir, &alice).await;
    let network = alice.network_id();
    let invite = alice.create_invite(false).await.unwrap().invite;
    register(&server.url, &invite, "carol").await;
    let mallory = other_network(&server, &dir, "globex", "mallory").await;

    // The retention device's id is public to every member of the network.
    let carol = Device::enrol(&server.url, network, "carol", None, &[], 2).await;
    let policy = NetworkPolicy::decode(&carol.get("/v1/policy").await.bytes().await.unwrap()).unwrap();
    let retention_device = policy.retention[0].device_id;

    // Carol (same network) and Mallory (another network) try Bob's device
    // id and the retention device's id with their own passwords.
    for target in [bob.device_id(), retention_device] {
        let r = login(&server.url, network, "carol", target).await;
        assert_eq!(code(r).await, (StatusCode::FORBIDDEN, "device_taken".into()), "carol as {target}");
        let r = login(&server.url, mallory.network, "mallory", target).await;
        assert_eq!(code(r).await, (StatusCode::FORBIDDEN, "device_taken".into()), "mallory as {target}");
    }

    // So what Alice sends reaches Bob and the archive, and verify (which
    // now also asks the relay what it queued) passes.
    let direct = alice.direct_with("bob").await.unwrap();
    alice.send_text(direct, "minutes of the board meeting").await.unwrap();
    let got = bob.sync().await.unwrap();
    assert_eq!(got.received.len(), 1, "{:?}", got.warnings);
    let run = ok_json(&["retention", "--dir", s(&rdir), "--json", "run", "--once"]);
    assert_eq!(run["run"]["archived"], 1, "{run}");
    let v = ok_json(&["retention", "--dir", s(&rdir), "--json", "verify"]);
    assert_eq!((v["problem_count"].as_u64(), v["relay_checked"].as_bool()), (Some(0), Some(true)), "{v}");

    // An archive rolled back to before later messages verifies on its own
    // (it is a consistent, signed prefix), but not against the relay.
    let archive = rdir.join("archive");
    let copy = dir.join("archive-before");
    copy_dir(&archive, &copy);
    alice.send_text(direct, "second item").await.unwrap();
    alice.send_text(direct, "third item").await.unwrap();
    ok_json(&["retention", "--dir", s(&rdir), "--json", "run", "--once"]);
    std::fs::remove_dir_all(&archive).unwrap();
    copy_dir(&copy, &archive);
    let offline = ok_json(&["retention", "--dir", s(&rdir), "--json", "verify", "--offline"]);
    assert_eq!(offline["problem_count"], 0, "the archive alone cannot tell: {offline}");
    let out = cli(&["retention", "--dir", s(&rdir), "verify"]);
    assert!(!out.status.success(), "verify against the relay must fail");
    let text = String::from_utf8_lossy(&out.stdout);
    assert!(text.contains("2 message(s) never reached the archive"), "{text}");
    assert!(text.contains(&direct.to_string()), "names the conversation: {text}");
}

fn copy_dir(from: &std::path::Path, to: &std::path::Path) {
    std::fs::create_dir_all(to).unwrap();
    for e in std::fs::read_dir(from).unwrap() {
        let e = e.unwrap();
        let target = to.join(e.file_name());
        if e.path().is_dir() {
            copy_dir(&e.path(), &target);
        } else {
            std::fs::copy(e.path(), &target).unwrap();
        }
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn device_lists_wipes_and_links_stay_within_their_account() {
    let dir = temp_dir("attack-devices");
    let server = ServerProc::start(&dir.join("data"), &[]);
    let (acme, acme_invite) = create_network(&server, &dir, "acme");
    register(&server.url, &acme_invite, "alice").await;
    let mut alice = Device::enrol(&server.url, acme, "alice", None, &[], 20).await;
    let bob_invite = alice.invite(false).await;
    register(&server.url, &bob_invite, "bob").await;
    let mut bob = Device::enrol(&server.url, acme, "bob", None, &[], 20).await;
    let carol_invite = alice.invite(false).await;
    register(&server.url, &carol_invite, "carol").await;
    let carol = Device::enrol(&server.url, acme, "carol", None, &[], 2).await;
    // Mallory administers another network on the same relay.
    let mallory = other_network(&server, &dir, "globex", "mallory").await;
    let audit_before = alice.get("/v1/admin/audit").await.json::<Vec<Value>>().await.unwrap().len();

    // 2. A signed list naming Bob's device (as revoked, or as her own) is refused,
    //    from another network and from Bob's own network.
    for (who, attacker) in [("mallory", &mallory), ("carol", &carol)] {
        let entries = vec![entry(attacker.device, &attacker.device_key, false), entry(bob.device, &bob.device_key, true)];
        let r = publish_list(attacker, 2, entries).await;
        assert_eq!(code(r).await, (StatusCode::FORBIDDEN, "device_not_yours".into()), "{who}");
    }
    // Bob's pre-keys and queue are untouched: Alice still claims his keys and reaches him.
    let conversation = alice.create_conversation("direct", &[bob.user]).await;
    alice.send_text(&conversation.id, "still here?").await;
    let keys: UserKeys = alice.get(&format!("/v1/keys/{}", bob.user)).await.json().await.unwrap();
    assert!(keys.one_time_remaining[0].count >= 19, "{:?}", keys.one_time_remaining);
    assert!(keys.revoked_devices.is_empty());
    assert_eq!(bob.receive_all().await.len(), 1);

    // 3. Mallory, an administrator of her network, orders a wipe of Bob's device.
    let r = mallory.post_json(&format!("/v1/admin/users/{}/devices/{}/wipe", mallory.user, bob.device), &()).await;
    assert_eq!(code(r).await, (StatusCode::NOT_FOUND, "unknown_device".into()), "not a device of her user");
    let r = mallory.post_json(&format!("/v1/admin/users/{}/devices/{}/wipe", bob.user, bob.device), &()).await;
    assert_eq!(code(r).await, (StatusCode::NOT_FOUND, "unknown_user".into()), "not a user of her network");
    assert_eq!(bob.get("/v1/messages").await.status(), StatusCode::OK, "bob's device is not being wiped");
    let audit: Vec<Value> = alice.get("/v1/admin/audit").await.json().await.unwrap();
    assert_eq!(audit.len(), audit_before, "nothing happened in acme's name: {audit:?}");

    // 4a. Confirming someone else's wipe: Alice (admin) orders Bob's device
    //     wiped; Carol and Mallory cannot confirm it for him.
    let r = alice.post_json(&format!("/v1/admin/users/{}/devices/{}/wipe", bob.user, bob.device), &()).await;
    assert_eq!(r.status(), StatusCode::ACCEPTED);
    for attacker in [&carol, &mallory] {
        let r = attacker.post_json("/v1/devices/wipe/confirm", &()).await;
        assert_eq!(code(r).await, (StatusCode::BAD_REQUEST, "no_wipe".into()));
    }
    assert_eq!(code(bob.get("/v1/messages").await).await, (StatusCode::GONE, "device_wiped".into()), "still ordered");
    // The wiped device can log in again only to hear its order; once it
    // confirms, its id is revoked for good.
    let r = login(&server.url, acme, "bob", bob.device).await;
    assert_eq!(r.status(), StatusCode::OK);
    let again: Session = r.json().await.unwrap();
    bob.token = again.token;
    assert_eq!(code(bob.get("/v1/messages").await).await, (StatusCode::GONE, "device_wiped".into()));
    assert_eq!(bob.post_json("/v1/devices/wipe/confirm", &()).await.status(), StatusCode::NO_CONTENT);
    let r = login(&server.url, acme, "bob", bob.device).await;
    assert_eq!(code(r).await, (StatusCode::FORBIDDEN, "device_revoked".into()));

    // 4b. A revoked device id logs in again: Alice revokes her second device in her signed list.
    let alice2 = Device::enrol(&server.url, acme, "alice", Some(alice.identity.clone()), &[&alice], 2).await;
    let entries = vec![entry(alice.device, &alice.device_key, false), entry(alice2.device, &alice2.device_key, true)];
    assert_eq!(publish_list(&alice, now_ms() + 1, entries).await.status(), StatusCode::NO_CONTENT);
    let r = login(&server.url, acme, "alice", alice2.device).await;
    assert_eq!(code(r).await, (StatusCode::FORBIDDEN, "device_revoked".into()));

    // 4c. A device-id collision no longer happens: nobody can claim Alice's
    //     id, so her conversations stay sendable (no 503).
    let r = login(&server.url, mallory.network, "mallory", alice.device).await;
    assert_eq!(code(r).await, (StatusCode::FORBIDDEN, "device_taken".into()));
    let dave_invite = alice.invite(false).await;
    register(&server.url, &dave_invite, "dave").await;
    let dave = Device::enrol(&server.url, acme, "dave", None, &[], 5).await;
    let group = alice.create_conversation("group", &[dave.user]).await;
    alice.send_text(&group.id, "no collision").await;

    // 4d. Someone else's link request: a new device of Carol asks to be
    //     linked; Mallory cannot log in with its id to replace the request.
    let carol_new = DeviceId::random(&mut rand_core::OsRng);
    let r = login(&server.url, acme, "carol", carol_new).await;
    let s: Session = r.json().await.unwrap();
    let link_key = [7u8; 32];
    let r = reqwest::Client::new()
        .post(format!("{}/v1/devices/link", server.url))
        .bearer_auth(&s.token)
        .json(&LinkRequest { device_id: carol_new.to_string(), signing_key: B64(vec![1; 32]), link_key: B64(link_key.to_vec()) })
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), StatusCode::ACCEPTED);
    let r = login(&server.url, mallory.network, "mallory", carol_new).await;
    assert_eq!(code(r).await, (StatusCode::FORBIDDEN, "device_taken".into()));
    let pending: Vec<LinkRequest> = carol.get("/v1/devices/link").await.json().await.unwrap();
    assert_eq!(pending.len(), 1);
    assert_eq!(pending[0].link_key.0, link_key, "carol's request is intact");
}
