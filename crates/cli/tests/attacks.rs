//! The device-ownership attacks an outside penetration test found, each
//! played against the real binary with two networks on one relay and each
//! refused: a device id belongs to one account of one network for good.
//!
//! 1. Taking over another device's queue by logging in with its id, across
//!    networks, the retention device's queue included.
//! 2. A signed device list naming other people's devices as revoked.
//! 3. An administrator of another network remote-wiping a device.
//! 4. A device-id collision making conversations unsendable; confirming
//!    someone else's wipe; replacing someone's link request; a revoked id
//!    logging in again.
//!
//! And `retention verify` compares the archive with what the relay queued
//! for the retention device, so messages that left its queue without being
//! archived no longer pass unseen.
#![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic, clippy::indexing_slicing)]

mod common;

use common::*;
use reqwest::StatusCode;
use serde_json::Value;
use strongroom_crypto::certs::*;
use strongroom_crypto::content::Content;
use strongroom_crypto::ids::*;
use strongroom_wire::*;

/// The status and error code of a response.
async fn code(r: reqwest::Response) -> (StatusCode, String) {
    let status = r.status();
    let body: Value = r.json().await.unwrap_or_default();
    (status, body["error"].as_str().unwrap_or_default().to_owned())
}

fn taken() -> (StatusCode, String) {
    (StatusCode::FORBIDDEN, "device_taken".into())
}

/// One relay with two networks: Acme (Alice its administrator, Bob and
/// Carol) and Globex (Mallory its administrator).
struct World {
    _dir: std::path::PathBuf,
    server: ServerProc,
    acme: NetworkId,
    alice: Device,
    bob: Device,
    carol: Device,
    mallory: Device,
}

impl World {
    async fn new(tag: &str) -> Self {
        Self::configured(tag, None).await
    }

    /// With a server configuration file holding `config`.
    async fn configured(tag: &str, config: Option<&str>) -> Self {
        let dir = temp_dir(tag);
        let path = dir.join("relay.toml");
        std::fs::write(&path, config.unwrap_or_default()).unwrap();
        let server = ServerProc::start(&dir.join("data"), &["--config", path.to_str().unwrap()]);
        let (acme, invite) = create_network(&server, &dir, "acme");
        register(&server.url, &invite, "alice").await;
        let alice = Device::enrol(&server.url, acme, "alice", None, &[], 20).await;
        let mut others = Vec::new();
        for name in ["bob", "carol"] {
            register(&server.url, &alice.invite(false).await, name).await;
            others.push(Device::enrol(&server.url, acme, name, None, &[], 20).await);
        }
        let (globex, invite) = create_network(&server, &dir, "globex");
        register(&server.url, &invite, "mallory").await;
        let mallory = Device::enrol(&server.url, globex, "mallory", None, &[], 5).await;
        let carol = others.pop().unwrap();
        let bob = others.pop().unwrap();
        Self { _dir: dir, server, acme, alice, bob, carol, mallory }
    }

    async fn login(&self, who: &Device, device: DeviceId) -> reqwest::Response {
        let name = if who.user == self.mallory.user { "mallory" } else { self.name(who) };
        login(&self.server.url, who.network, name, device).await
    }

    fn name(&self, who: &Device) -> &'static str {
        [(&self.alice, "alice"), (&self.bob, "bob"), (&self.carol, "carol"), (&self.mallory, "mallory")]
            .into_iter()
            .find(|(d, _)| d.user == who.user)
            .map(|(_, n)| n)
            .unwrap()
    }
}

/// Signs and publishes `device`'s account list with `entries`.
async fn publish_list(device: &Device, entries: Vec<DeviceEntry>) -> reqwest::Response {
    let list = device.next_list(entries).await;
    device.put_bytes("/v1/keys/device-list", list.encode()).await
}

fn entry(d: &Device, revoked: bool) -> DeviceEntry {
    DeviceEntry {
        device_id: d.device,
        signing_key: d.device_key.verifying_key(),
        created_at: 0,
        revoked,
        versions: strongroom_crypto::suite::SUPPORTED_VERSIONS,
        name: "x".into(),
    }
}

/// Finding 1: a login with another device's id (same network, another
/// network, the retention device's) is refused, so nobody reads or acks
/// away someone else's queue, and what Alice sends reaches Bob and the archive.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn nobody_logs_in_as_another_device_not_even_the_retention_device() {
    let dir = temp_dir("attack-takeover");
    let server = ServerProc::start(&dir.join("data"), &[]);
    let (alice, mut bob) = two_clients(&dir, &server).await;
    let (rdir, mut alice) = turn_retention_on(&server, &dir, alice).await;
    let network = alice.network_id();
    register(&server.url, &alice.create_invite(false).await.unwrap().invite, "carol").await;
    let carol = Device::enrol(&server.url, network, "carol", None, &[], 2).await;
    let (globex, invite) = create_network(&server, &dir, "globex");
    register(&server.url, &invite, "mallory").await;

    // The retention device's id is public to every member of the network.
    let policy = NetworkPolicy::decode(&carol.get("/v1/policy").await.bytes().await.unwrap()).unwrap();
    let retention_device = policy.retention[0].device_id;
    for target in [bob.device_id(), alice.device_id(), retention_device] {
        assert_eq!(code(login(&server.url, network, "carol", target).await).await, taken(), "carol as {target}");
        assert_eq!(code(login(&server.url, globex, "mallory", target).await).await, taken(), "mallory as {target}");
    }

    let direct = alice.direct_with("bob").await.unwrap();
    alice.send_text(direct, "minutes of the board meeting").await.unwrap();
    let got = bob.sync().await.unwrap();
    assert_eq!(got.received.len(), 1, "{:?}", got.warnings);
    let run = ok_json(&["retention", "--dir", s(&rdir), "--json", "run", "--once"]);
    assert_eq!((run["run"]["archived"].as_u64(), run["run"]["membership"].as_u64()), (Some(1), Some(1)), "{run}");
    let v = ok_json(&["retention", "--dir", s(&rdir), "--json", "verify"]);
    assert_eq!((v["problem_count"].as_u64(), v["relay_checked"].as_bool()), (Some(0), Some(true)), "{v}");
}

/// `retention verify` asks the relay what it queued: an archive missing
/// messages that left the retention queue (here: rolled back to an earlier,
/// consistent and signed state) passes offline but not against the relay.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn retention_verify_reports_messages_that_left_the_queue_unarchived() {
    let dir = temp_dir("attack-verify");
    let server = ServerProc::start(&dir.join("data"), &[]);
    let (alice, _bob) = two_clients(&dir, &server).await;
    let (rdir, mut alice) = turn_retention_on(&server, &dir, alice).await;
    let direct = alice.direct_with("bob").await.unwrap();
    alice.send_text(direct, "first item").await.unwrap();
    ok_json(&["retention", "--dir", s(&rdir), "--json", "run", "--once"]);
    let archive = rdir.join("archive");
    let copy = dir.join("archive-before");
    copy_dir(&archive, &copy);
    alice.send_text(direct, "second item").await.unwrap();
    alice.send_text(direct, "third item").await.unwrap();
    // One still waits on the relay: pending, not a problem.
    let pending = ok_json(&["retention", "--dir", s(&rdir), "--json", "verify"]);
    assert_eq!((pending["problem_count"].as_u64(), pending["relay_pending"].as_u64()), (Some(0), Some(2)), "{pending}");
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

    // With the relay unreachable, verify says so instead of passing.
    drop(server);
    let out = cli(&["retention", "--dir", s(&rdir), "verify"]);
    assert!(!out.status.success());
    assert!(String::from_utf8_lossy(&out.stderr).contains("--offline"), "{}", String::from_utf8_lossy(&out.stderr));
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

/// Finding 2: a signed list naming Bob's device (as revoked) is refused,
/// from another network and from Bob's own; his pre-keys and queue survive.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_device_list_cannot_name_someone_elses_device() {
    let mut w = World::new("attack-list").await;
    for attacker in [&w.mallory, &w.carol] {
        let r = publish_list(attacker, vec![entry(attacker, false), entry(&w.bob, true)]).await;
        assert_eq!(code(r).await, (StatusCode::FORBIDDEN, "device_not_yours".into()), "{}", w.name(attacker));
    }
    let keys: UserKeys = w.alice.get(&format!("/v1/keys/{}", w.bob.user)).await.json().await.unwrap();
    assert_eq!(keys.one_time_remaining[0].count, 20, "{:?}", keys.one_time_remaining);
    assert!(keys.revoked_devices.is_empty());
    let conversation = w.alice.create_conversation("direct", &[w.bob.user]).await;
    w.alice.send_text(&conversation.id, "still here?").await;
    assert_eq!(w.bob.receive_all().await.len(), 1);
}

/// Finding 3: Mallory, administrator of Globex, cannot order a wipe of
/// Bob's (Acme) device, under her user or his; Acme's audit log shows nothing.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_administrator_of_another_network_cannot_wipe_a_device() {
    let w = World::new("attack-wipe").await;
    let audit_before = w.alice.get("/v1/admin/audit").await.json::<Vec<Value>>().await.unwrap();
    // Her own list naming his device would be the way in: refused (finding 2).
    let r = publish_list(&w.mallory, vec![entry(&w.mallory, false), entry(&w.bob, false)]).await;
    assert_eq!(r.status(), StatusCode::FORBIDDEN);
    let wipe = |user: UserId| format!("/v1/admin/users/{user}/devices/{}/wipe", w.bob.device);
    let r = w.mallory.post_json(&wipe(w.mallory.user), &()).await;
    assert_eq!(code(r).await, (StatusCode::NOT_FOUND, "unknown_device".into()), "not a device of her user");
    let r = w.mallory.post_json(&wipe(w.bob.user), &()).await;
    assert_eq!(code(r).await, (StatusCode::NOT_FOUND, "unknown_user".into()), "not a user of her network");
    assert_eq!(w.bob.get("/v1/messages").await.status(), StatusCode::OK, "bob's device is not being wiped");
    let audit_after = w.alice.get("/v1/admin/audit").await.json::<Vec<Value>>().await.unwrap();
    assert_eq!(audit_after, audit_before);
}

/// Finding 4: a device-id collision (Carol claiming Bob's id) cannot happen,
/// so a conversation with both stays sendable.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_device_id_cannot_collide_so_conversations_stay_sendable() {
    let mut w = World::new("attack-collision").await;
    assert_eq!(code(w.login(&w.carol, w.bob.device).await).await, taken());
    let r = publish_list(&w.carol, vec![entry(&w.carol, false), entry(&w.bob, false)]).await;
    assert_eq!(r.status(), StatusCode::FORBIDDEN);
    let group = w.alice.create_conversation("group", &[w.bob.user, w.carol.user]).await;
    w.alice.send_text(&group.id, "no collision").await;
    assert_eq!(w.bob.receive_all().await.len(), 1);
}

/// Finding 4: only the wiped device confirms its wipe; it may log in again
/// only to hear the order, and after confirming its id is revoked for good.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn only_the_wiped_device_confirms_its_wipe() {
    let mut w = World::new("attack-confirm").await;
    let r = w.alice.post_json(&format!("/v1/admin/users/{}/devices/{}/wipe", w.bob.user, w.bob.device), &()).await;
    assert_eq!(r.status(), StatusCode::ACCEPTED);
    for attacker in [&w.carol, &w.mallory] {
        let r = attacker.post_json("/v1/devices/wipe/confirm", &()).await;
        assert_eq!(code(r).await, (StatusCode::BAD_REQUEST, "no_wipe".into()), "{}", w.name(attacker));
        assert_eq!(code(w.login(attacker, w.bob.device).await).await, taken(), "nor logs in as bob's device");
    }
    assert_eq!(code(w.bob.get("/v1/messages").await).await, (StatusCode::GONE, "device_wiped".into()), "still ordered");
    let again: Session = w.login(&w.bob, w.bob.device).await.json().await.unwrap();
    w.bob.token = again.token;
    assert_eq!(code(w.bob.get("/v1/messages").await).await, (StatusCode::GONE, "device_wiped".into()));
    assert_eq!(w.bob.post_json("/v1/devices/wipe/confirm", &()).await.status(), StatusCode::NO_CONTENT);
    assert_eq!(code(w.login(&w.bob, w.bob.device).await).await, (StatusCode::FORBIDDEN, "device_revoked".into()));
    let audit: Vec<AuditEntry> = w.alice.get("/v1/admin/audit").await.json().await.unwrap();
    assert!(audit.iter().any(|e| e.action == "device.wipe_confirmed" && e.actor == "bob"), "{audit:?}");
}

/// Finding 4: a device revoked in its owner's signed list cannot log in again.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_revoked_device_cannot_log_in_again() {
    let w = World::new("attack-revoked").await;
    let acme = w.acme;
    let second = Device::enrol(&w.server.url, acme, "alice", Some(w.alice.identity.clone()), &[&w.alice], 2).await;
    let r = publish_list(&w.alice, vec![entry(&w.alice, false), entry(&second, true)]).await;
    assert_eq!(r.status(), StatusCode::NO_CONTENT);
    assert_eq!(second.get("/v1/messages").await.status(), StatusCode::UNAUTHORIZED, "logged out at once");
    let r = w.login(&w.alice, second.device).await;
    assert_eq!(code(r).await, (StatusCode::FORBIDDEN, "device_revoked".into()));
    // Listing it as active again is refused (peers would refuse it too), and
    // does not bring it back.
    let r = publish_list(&w.alice, vec![entry(&w.alice, false), entry(&second, false)]).await;
    assert_eq!(code(r).await, (StatusCode::CONFLICT, "device_revived".into()));
    assert_eq!(code(w.login(&w.alice, second.device).await).await, (StatusCode::FORBIDDEN, "device_revoked".into()));
}

/// Finding 4: a pending link request is replaced only by its own account.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn nobody_replaces_someone_elses_link_request() {
    let w = World::new("attack-link").await;
    let new_device = DeviceId::random(&mut rand_core::OsRng);
    let s: Session = w.login(&w.carol, new_device).await.json().await.unwrap();
    let link_key = vec![7u8; 32];
    let request = LinkRequest { device_id: None, signing_key: B64(vec![1; 32]), link_key: B64(link_key.clone()) };
    let r = reqwest::Client::new()
        .post(format!("{}/v1/devices/link", w.server.url))
        .bearer_auth(&s.token)
        .json(&request)
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), StatusCode::ACCEPTED);
    for attacker in [&w.mallory, &w.bob] {
        assert_eq!(code(w.login(attacker, new_device).await).await, taken(), "{}", w.name(attacker));
    }
    let pending: Vec<LinkRequest> = w.carol.get("/v1/devices/link").await.json().await.unwrap();
    assert_eq!(pending.len(), 1);
    assert_eq!(pending[0].link_key.0, link_key, "carol's request is intact");
}

/// The console's cookie session (bound to the reserved console device id)
/// is not an API session: it cannot receive, send or request a link, and no
/// device can log in with the console's id.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_console_session_is_not_a_device() {
    let w = World::new("attack-console").await;
    // The login form needs its own CSRF cookie and field: a bare POST (as
    // another site could make a browser send) starts no session.
    let http = reqwest::Client::builder().redirect(reqwest::redirect::Policy::none()).build().unwrap();
    let forged = http
        .post(format!("{}/admin/login", w.server.url))
        .form(&[("network", w.acme.to_string()), ("username", "alice".into()), ("password", PASSWORD.into())])
        .send()
        .await
        .unwrap();
    assert_eq!(forged.status(), StatusCode::UNAUTHORIZED);
    assert!(!forged.headers().get_all("set-cookie").iter().any(|v| v.to_str().unwrap().starts_with("sr_console=")));
    assert!(forged.text().await.unwrap().contains("did not come from this console"));
    let (http, r, cookie) = console_login(&w.server.url, &w.acme.to_string(), "alice").await;
    assert_eq!(r.status(), StatusCode::SEE_OTHER);
    let token = cookie.split_once('=').unwrap().1.to_owned();
    for (method, path) in [("GET", "/v1/messages"), ("POST", "/v1/devices/link"), ("GET", "/v1/admin/users")] {
        let req = http.request(method.parse().unwrap(), format!("{}{path}", w.server.url)).bearer_auth(&token);
        let req = if method == "POST" {
            req.json(&LinkRequest { device_id: None, signing_key: B64(vec![1; 32]), link_key: B64(vec![2; 32]) })
        } else {
            req
        };
        assert_eq!(req.send().await.unwrap().status(), StatusCode::UNAUTHORIZED, "{method} {path}");
    }
    let console_id = DeviceId::from_bytes([0xcc; 16]);
    assert_eq!(code(w.login(&w.alice, console_id).await).await, taken(), "the console's id is reserved");
    let dashboard =
        http.get(format!("{}/admin/dashboard", w.server.url)).header("cookie", &cookie).send().await.unwrap();
    assert_eq!(dashboard.status(), StatusCode::OK, "the console itself still works");
}

// Account rules from the same attack run (relay security 2).

/// A password reset stops the old password at once (not when the code is
/// redeemed), and its sessions end; the code then sets a new one.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_password_reset_stops_the_old_password_at_once() {
    let w = World::new("abuse-reset").await;
    let r = w.alice.post_json(&format!("/v1/admin/users/{}/reset-password", w.bob.user), &()).await;
    assert_eq!(r.status(), StatusCode::CREATED);
    let reset: ResetCode = r.json().await.unwrap();
    assert_eq!(w.bob.get("/v1/messages").await.status(), StatusCode::UNAUTHORIZED, "sessions ended");
    let r = w.login(&w.bob, w.bob.device).await;
    assert_eq!(code(r).await, (StatusCode::UNAUTHORIZED, "unauthorized".into()), "the old password no longer works");
    let redeem = RedeemReset {
        network_id: w.acme,
        username: "bob".into(),
        code: reset.code,
        new_password: "a brand new passphrase".into(),
    };
    let r =
        reqwest::Client::new().post(format!("{}/v1/password/reset", w.server.url)).json(&redeem).send().await.unwrap();
    assert_eq!(r.status(), StatusCode::NO_CONTENT);
    let r = reqwest::Client::new()
        .post(format!("{}/v1/login", w.server.url))
        .json(&Login {
            network_id: w.acme,
            username: "bob".into(),
            password: "a brand new passphrase".into(),
            device_id: w.bob.device,
        })
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), StatusCode::OK);
}

/// Unsuspending does not revive tokens issued before the suspension.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn unsuspending_does_not_revive_old_sessions() {
    let w = World::new("abuse-suspend").await;
    let path = |what: &str| format!("/v1/admin/users/{}/{what}", w.bob.user);
    assert_eq!(w.alice.post_json(&path("suspend"), &()).await.status(), StatusCode::NO_CONTENT);
    assert_eq!(code(w.bob.get("/v1/messages").await).await, (StatusCode::FORBIDDEN, "account_suspended".into()));
    assert_eq!(w.alice.post_json(&path("unsuspend"), &()).await.status(), StatusCode::NO_CONTENT);
    assert_eq!(w.bob.get("/v1/messages").await.status(), StatusCode::UNAUTHORIZED, "he logs in again");
    assert_eq!(w.login(&w.bob, w.bob.device).await.status(), StatusCode::OK);
}

/// One claim naming a device many times would empty its one-time pool.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_claim_cannot_name_a_device_twice() {
    let w = World::new("abuse-claim").await;
    let pair = DeviceAddress { user: w.bob.user, device: w.bob.device };
    let r = w.carol.post_json("/v1/keys/claim", &ClaimPreKeys { devices: vec![pair; 20], medium_term: vec![] }).await;
    assert_eq!(code(r).await, (StatusCode::BAD_REQUEST, "duplicate_device".into()));
    let keys: UserKeys = w.alice.get(&format!("/v1/keys/{}", w.bob.user)).await.json().await.unwrap();
    assert_eq!(keys.one_time_remaining[0].count, 20, "nothing was taken");
    let r = w.carol.post_json("/v1/keys/claim", &ClaimPreKeys { devices: vec![pair], medium_term: vec![] }).await;
    assert_eq!(r.status(), StatusCode::OK);
}

/// A wipe order closes the device's WebSocket at once (not at its next
/// 10-second session check), so it hears the order now.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_wipe_order_closes_the_devices_socket_at_once() {
    use futures_util::StreamExt;
    use tokio_tungstenite::tungstenite::client::IntoClientRequest;
    let w = World::new("abuse-wipe-socket").await;
    let mut req = format!("{}/v1/ws", w.server.url.replace("http://", "ws://")).into_client_request().unwrap();
    req.headers_mut().insert("Authorization", format!("Bearer {}", w.bob.token).parse().unwrap());
    let (mut ws, _) = tokio_tungstenite::connect_async(req).await.unwrap();
    tokio::time::sleep(std::time::Duration::from_millis(200)).await;
    let r = w.alice.post_json(&format!("/v1/admin/users/{}/devices/{}/wipe", w.bob.user, w.bob.device), &()).await;
    assert_eq!(r.status(), StatusCode::ACCEPTED);
    let closed = tokio::time::timeout(std::time::Duration::from_secs(3), async {
        loop {
            match ws.next().await {
                None | Some(Err(_)) | Some(Ok(tokio_tungstenite::tungstenite::Message::Close(_))) => return,
                Some(Ok(_)) => {}
            }
        }
    })
    .await;
    assert!(closed.is_ok(), "the socket is still open 3 s after the wipe order");
}

/// Another local user of the machine can read nothing: every directory the
/// relay, a profile and the retention service create is 0700, and their
/// databases and keys 0600 (the WAL and journal files too), whatever the umask.
#[cfg(unix)]
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn everything_on_disk_is_owner_only() {
    use std::os::unix::fs::PermissionsExt;
    let dir = temp_dir("abuse-modes");
    // A world-readable data directory made beforehand is tightened too.
    std::fs::create_dir_all(dir.join("data")).unwrap();
    std::fs::set_permissions(dir.join("data"), std::fs::Permissions::from_mode(0o755)).unwrap();
    let server = ServerProc::start(&dir.join("data"), &[]);
    let (alice, _bob) = two_clients(&dir, &server).await;
    let (rdir, mut alice) = turn_retention_on(&server, &dir, alice).await;
    let direct = alice.direct_with("bob").await.unwrap();
    alice.send_text(direct, "on disk").await.unwrap();
    let file = dir.join("memo.txt");
    std::fs::write(&file, b"memo").unwrap();
    alice.send_file(direct, &file, &|_, _| {}).await.unwrap();
    ok_json(&["retention", "--dir", s(&rdir), "--json", "run", "--once"]);
    ok_json(&["retention", "--dir", s(&rdir), "--json", "export", "--out", s(&rdir.join("export"))]);

    fn walk(path: &std::path::Path, seen: &mut Vec<(std::path::PathBuf, u32, bool)>) {
        let meta = std::fs::metadata(path).unwrap();
        seen.push((path.to_owned(), meta.permissions().mode() & 0o777, meta.is_dir()));
        if meta.is_dir() {
            for e in std::fs::read_dir(path).unwrap() {
                walk(&e.unwrap().path(), seen);
            }
        }
    }
    let mut seen = Vec::new();
    for root in [dir.join("data"), dir.join("alice"), dir.join("bob"), rdir.clone()] {
        walk(&root, &mut seen);
    }
    // The roots' parent is the test's own directory: leave it out of "on the way".
    seen.push((dir.clone(), 0o755, true));
    let secret = |p: &std::path::Path| {
        let name = p.file_name().unwrap().to_string_lossy().into_owned();
        name.contains(".db") || name.ends_with(".key") || name == "bootstrap-secret"
    };
    assert!(seen.iter().any(|(p, _, _)| p.ends_with("strongroom.db-wal")), "the relay's WAL is checked too");
    let mode_of = |p: &std::path::Path| seen.iter().find(|(q, _, _)| q == p).map(|(_, m, _)| *m);
    // The directories Strongroom makes itself are 0700…
    let made = [
        dir.join("data"),
        dir.join("data/blobs"),
        dir.join("alice"),
        dir.join("bob"),
        rdir.clone(),
        rdir.join("archive"),
        rdir.join("export"),
        rdir.join("export/eml"),
    ];
    for d in &made {
        assert_eq!(mode_of(d), Some(0o700), "{} is a directory others can enter", d.display());
    }
    for (path, mode, _) in seen.iter().filter(|(p, _, _)| *p != dir) {
        // …its databases, WAL and keys 0600…
        if secret(path) {
            assert_eq!(*mode, 0o600, "{} is readable by others", path.display());
        }
        // …and nothing else (files a storage library wrote with the umask's
        // mode) can be reached: some directory on the way is owner-only.
        let shut = path.ancestors().any(|a| mode_of(a).is_some_and(|m| m & 0o077 == 0));
        assert!(shut, "{} can be reached by others", path.display());
    }
}

/// `/metrics` counts across every network: with a token configured, only
/// that token (or a loopback client sending none) reads it.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn metrics_need_the_token_when_one_is_set() {
    let dir = temp_dir("abuse-metrics");
    let server = ServerProc::start(&dir.join("data"), &["--metrics-token", "scrape-me-please"]);
    let get = |token: Option<&str>| {
        let req = reqwest::Client::new().get(format!("{}/metrics", server.url));
        let req = match token {
            Some(t) => req.bearer_auth(t),
            None => req,
        };
        async move { req.send().await.unwrap() }
    };
    assert_eq!(get(Some("scrape-me-please")).await.status(), StatusCode::OK);
    assert_eq!(code(get(Some("guess")).await).await, (StatusCode::FORBIDDEN, "metrics_forbidden".into()));
    let local = get(None).await;
    assert_eq!(local.status(), StatusCode::OK, "a scraper on the same host needs none");
    assert!(local.text().await.unwrap().contains("strongroom_queue_depth"));
}

/// A stolen session is not a password oracle: current-password checks are
/// limited per account.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_session_is_not_a_password_oracle() {
    let w = World::new("abuse-password").await;
    let guess =
        |n: u32| ChangePassword { old_password: format!("guess number {n}"), new_password: "a new passphrase".into() };
    for n in 0..5 {
        let r = w.bob.post_json("/v1/password", &guess(n)).await;
        assert_eq!(code(r).await, (StatusCode::FORBIDDEN, "wrong_password".into()), "guess {n}");
    }
    let r = w.bob.post_json("/v1/password", &guess(5)).await;
    assert_eq!(code(r).await, (StatusCode::TOO_MANY_REQUESTS, "rate_limited".into()));
    let right = ChangePassword { old_password: PASSWORD.into(), new_password: "a new passphrase".into() };
    assert_eq!(
        w.bob.post_json("/v1/password", &right).await.status(),
        StatusCode::TOO_MANY_REQUESTS,
        "even the right one, for now"
    );
    assert_eq!(w.carol.post_json("/v1/password", &guess(0)).await.status(), StatusCode::FORBIDDEN, "per account");
}

/// One fetch returns at most the configured envelope bytes (at least one
/// message), so a deep queue of large envelopes cannot balloon the server's
/// memory; everything still arrives, page by page.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_fetch_returns_at_most_its_byte_budget() {
    let dir = temp_dir("abuse-fetch");
    std::fs::write(dir.join("limits.toml"), "[limits]\nmax_fetch_bytes = 20000\n").unwrap();
    let config = dir.join("limits.toml");
    let server = ServerProc::start(&dir.join("data"), &["--config", config.to_str().unwrap()]);
    let (acme, invite) = create_network(&server, &dir, "acme");
    register(&server.url, &invite, "alice").await;
    let mut alice = Device::enrol(&server.url, acme, "alice", None, &[], 5).await;
    register(&server.url, &alice.invite(false).await, "bob").await;
    let mut bob = Device::enrol(&server.url, acme, "bob", None, &[], 5).await;
    let conversation = alice.create_conversation("direct", &[bob.user]).await;
    for i in 0..10 {
        alice.send_text(&conversation.id, &format!("{i}:{}", "x".repeat(5000))).await;
    }
    let first: Deliveries = bob.get("/v1/messages?limit=500").await.json().await.unwrap();
    let bytes: usize = first.messages.iter().map(|m| m.envelope.0.len()).sum();
    assert!(!first.messages.is_empty() && first.messages.len() < 10, "{} messages", first.messages.len());
    assert!(bytes <= 20000, "{bytes} bytes in one fetch");
    assert_eq!(bob.receive_all().await.len(), 10, "all of it, page by page");
}

/// A bootstrap secret creates one network: one seen in a terminal or a
/// shell history creates nothing more; the next one is in the data directory.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_bootstrap_secret_works_once() {
    let dir = temp_dir("abuse-bootstrap");
    let server = ServerProc::start(&dir.join("data"), &[]);
    let first = server.bootstrap.clone().expect("the first start prints the secret");
    create_network(&server, &dir, "acme");
    let again = std::process::Command::new(bin())
        .args(["admin", "network", "create", "--name", "evil", "--server", &server.url, "--bootstrap-secret", &first])
        .args(["--key-file", dir.join("evil.key").to_str().unwrap()])
        .env("STRONGROOM_NETWORK_KEY_PASSPHRASE", "a long passphrase for the key")
        .output()
        .unwrap();
    assert!(!again.status.success(), "a used bootstrap secret must not create a second network");
    assert!(String::from_utf8_lossy(&again.stderr).contains("bootstrap secret is wrong"));
    let next = std::fs::read_to_string(server.data_dir.join("bootstrap-secret")).unwrap();
    assert_ne!(next.trim(), first);
    #[cfg(unix)]
    {
        use std::os::unix::fs::PermissionsExt;
        let mode = std::fs::metadata(server.data_dir.join("bootstrap-secret")).unwrap().permissions().mode();
        assert_eq!(mode & 0o777, 0o600);
    }
    // The operator, reading the data directory, creates the next network.
    create_network(&server, &dir, "globex");
}

/// Expiry is the header timestamp plus the TTL: a timestamp ten years ahead
/// would stretch a group's timer limit, so the relay refuses timestamps more
/// than MAX_SKEW ahead of its clock, and those too old to check for replay.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_timestamp_from_the_future_is_refused() {
    let mut w = World::new("abuse-skew").await;
    let direct = w.alice.create_conversation("direct", &[w.bob.user]).await;
    let recipients = w.alice.recipients(&direct.id).await;
    let text = Content::Text("dated later".into());
    let ten_years = 10 * 365 * 86_400_000;
    let env = w.alice.seal_at(direct.id, &text, &recipients, now_ms() + ten_years, 60);
    assert_eq!(code(w.alice.post_envelope(env.encode()).await).await, (StatusCode::BAD_REQUEST, "clock_skew".into()));
    let env = w.alice.seal_at(direct.id, &text, &recipients, now_ms() - 40 * 86_400_000, 0);
    assert_eq!(
        code(w.alice.post_envelope(env.encode()).await).await,
        (StatusCode::BAD_REQUEST, "stale_message".into())
    );
    // A minute of skew is normal.
    let env = w.alice.seal_at(direct.id, &text, &recipients, now_ms() + 60_000, 60);
    assert_eq!(w.alice.post_envelope(env.encode()).await.status(), StatusCode::OK);
    assert_eq!(w.bob.receive_all().await.len(), 1);
}

/// Once every recipient has acknowledged a message and the relay has swept
/// it, the same bytes sent again are a duplicate, not a new delivery.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_replay_after_delivery_is_not_queued_again() {
    let mut w = World::new("abuse-replay").await;
    let direct = w.alice.create_conversation("direct", &[w.bob.user]).await;
    let recipients = w.alice.recipients(&direct.id).await;
    let bytes = w.alice.seal_to(direct.id, &Content::Text("pay the invoice".into()), &recipients).encode();
    let first: Accepted = w.alice.post_envelope(bytes.clone()).await.json().await.unwrap();
    assert!(!first.duplicate);
    assert_eq!(w.bob.receive_all().await.len(), 1, "delivered and acknowledged: swept");
    let again = w.alice.post_envelope(bytes).await;
    assert_eq!(again.status(), StatusCode::OK);
    let again: Accepted = again.json().await.unwrap();
    assert!(again.duplicate, "a replay after the sweep is a duplicate");
    assert_eq!(again.seq, first.seq);
    let r = w.bob.get("/v1/messages?limit=10").await;
    let queued: Deliveries = r.json().await.unwrap();
    assert!(queued.messages.is_empty(), "nothing queued again");
}

/// Uploads `len` bytes to `conversation`; the status and error code.
async fn upload(
    device: &Device,
    conversation: &ConversationId,
    len: usize,
    expires_in: Option<u64>,
) -> (StatusCode, String) {
    let bytes = vec![7u8; len];
    let mut url = format!("{}/v1/blobs?conversation={conversation}&sha256={}", device.url, sha256_hex(&bytes));
    if let Some(s) = expires_in {
        url.push_str(&format!("&expires_in_secs={s}"));
    }
    let r = device.http.post(url).bearer_auth(&device.token).body(bytes).send().await.unwrap();
    let status = r.status();
    let body: Value = r.json().await.unwrap_or_default();
    (status, body["error"].as_str().or(body["blob_id"].as_str()).unwrap_or_default().to_owned())
}

/// Files had no quota and were never deleted. Now each account and network
/// has a quota, and files are removed once expired (here after 1 s, as the
/// uploader asked), giving their room back.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn files_have_quotas_and_expire() {
    let config = "expiry_interval_secs = 1\n[limits]\nmax_blob_bytes_per_user = 100000\n";
    let w = World::configured("abuse-blobs", Some(config)).await;
    let direct = w.alice.create_conversation("direct", &[w.bob.user]).await;
    let (status, first) = upload(&w.alice, &direct.id, 60_000, Some(1)).await;
    assert_eq!(status, StatusCode::CREATED, "{first}");
    assert_eq!(
        upload(&w.alice, &direct.id, 60_000, None).await,
        (StatusCode::INSUFFICIENT_STORAGE, "quota_exceeded".into())
    );
    let (status, _) = upload(&w.bob, &direct.id, 60_000, None).await;
    assert_eq!(status, StatusCode::CREATED, "the quota is per account");
    let on_disk = || std::fs::read_dir(w.server.data_dir.join("blobs").join("blobs")).map(|d| d.count()).unwrap_or(0);
    assert_eq!(on_disk(), 2);
    // Expired and removed within a few expiry passes: bytes and record.
    let deadline = std::time::Instant::now() + std::time::Duration::from_secs(10);
    while on_disk() > 1 && std::time::Instant::now() < deadline {
        tokio::time::sleep(std::time::Duration::from_millis(200)).await;
    }
    assert_eq!(on_disk(), 1, "the expired file is removed from disk");
    let r = w.bob.get(&format!("/v1/blobs/{first}")).await;
    assert_eq!(r.status(), StatusCode::NOT_FOUND);
    let (status, _) = upload(&w.alice, &direct.id, 60_000, None).await;
    assert_eq!(status, StatusCode::CREATED, "the room came back");
}

/// One account cannot empty another device's one-time pre-keys: past its
/// hourly allowance for that device it gets the medium-term pre-key (not an
/// error), and the device is told on its socket when its pool runs low.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn pre_keys_cannot_be_drained_and_the_owner_is_told() {
    use futures_util::StreamExt;
    use tokio_tungstenite::tungstenite::client::IntoClientRequest;
    let w = World::configured("abuse-drain", Some("[limits]\none_time_claims_per_hour = 5\n")).await;
    let mut req = format!("{}/v1/ws", w.server.url.replace("http://", "ws://")).into_client_request().unwrap();
    req.headers_mut().insert("Authorization", format!("Bearer {}", w.bob.token).parse().unwrap());
    let (mut ws, _) = tokio_tungstenite::connect_async(req).await.unwrap();
    let pair = DeviceAddress { user: w.bob.user, device: w.bob.device };
    let mut kinds = Vec::new();
    for claimer in [&w.carol, &w.alice] {
        for _ in 0..8 {
            let r =
                claimer.post_json("/v1/keys/claim", &ClaimPreKeys { devices: vec![pair], medium_term: vec![] }).await;
            assert_eq!(r.status(), StatusCode::OK);
            let claimed: ClaimedPreKeys = r.json().await.unwrap();
            let key = SignedPreKey::decode(&claimed.prekeys[0].0).unwrap();
            kinds.push(key.key_ref.kind == PreKeyKind::OneTime);
        }
    }
    let per_claimer = [true, true, true, true, true, false, false, false];
    assert_eq!(kinds, [per_claimer, per_claimer].concat(), "five one-time keys each, then the medium-term key");
    let keys: UserKeys = w.alice.get(&format!("/v1/keys/{}", w.bob.user)).await.json().await.unwrap();
    assert_eq!(keys.one_time_remaining[0].count, 10, "20 uploaded, 10 taken");
    // Bob's socket heard that his pool is low.
    let frame = tokio::time::timeout(std::time::Duration::from_secs(5), async {
        loop {
            match ws.next().await {
                Some(Ok(tokio_tungstenite::tungstenite::Message::Text(t))) => {
                    if let Ok(WsFrame::PrekeysLow { remaining }) = serde_json::from_str::<WsFrame>(&t) {
                        return Some(remaining);
                    }
                }
                Some(Ok(_)) => {}
                _ => return None,
            }
        }
    })
    .await
    .unwrap();
    assert_eq!(frame, Some(10));
}

/// A device that only watches (never syncs) uploads more one-time pre-keys
/// when the relay says its pool runs low, instead of draining to the
/// medium-term key.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_watching_device_tops_up_when_told() {
    let dir = temp_dir("abuse-topup");
    let config = dir.join("relay.toml");
    std::fs::write(&config, "[limits]\none_time_claims_per_hour = 1000\n").unwrap();
    let server = ServerProc::start(&dir.join("data"), &["--config", config.to_str().unwrap()]);
    let (mut alice, mut bob) = two_clients(&dir, &server).await;
    register(&server.url, &alice.create_invite(false).await.unwrap().invite, "carol").await;
    let carol = Device::enrol(&server.url, alice.network_id(), "carol", None, &[], 5).await;
    let (bob_user, bob_device) = (bob.user_id(), bob.device_id());
    let watching = tokio::spawn(async move {
        bob.watch(None, Some(std::time::Duration::from_secs(4)), |_| {}, |w| panic!("warning: {w}")).await.unwrap();
    });
    tokio::time::sleep(std::time::Duration::from_millis(500)).await;
    let left = || async {
        let keys: UserKeys = carol.get(&format!("/v1/keys/{bob_user}")).await.json().await.unwrap();
        keys.one_time_remaining.iter().find(|c| c.device_id == bob_device).map_or(0, |c| c.count)
    };
    let before = left().await;
    let pair = DeviceAddress { user: bob_user, device: bob_device };
    for _ in 0..before - 10 {
        let r = carol.post_json("/v1/keys/claim", &ClaimPreKeys { devices: vec![pair], medium_term: vec![] }).await;
        assert_eq!(r.status(), StatusCode::OK);
    }
    let deadline = std::time::Instant::now() + std::time::Duration::from_secs(3);
    while left().await <= 10 && std::time::Instant::now() < deadline {
        tokio::time::sleep(std::time::Duration::from_millis(100)).await;
    }
    assert!(left().await > 10, "the watching device uploaded more one-time pre-keys");
    watching.await.unwrap();
    let _ = alice.sync().await;
}

/// Until federation, an envelope names only its sender's network: as the
/// sender's network, as the conversation's host, and in every wrap (protocol
/// v2 scopes every id by network). Each other case is refused as
/// `wrong_network`, and nothing is queued.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_envelope_naming_another_network_is_refused() {
    use strongroom_crypto::envelope::{MembershipCommitment, MessageMeta, Recipient};
    use strongroom_crypto::keys::AgreementSecret;
    let mut w = World::new("attack-networks").await;
    let direct = w.alice.create_conversation("direct", &[w.bob.user]).await;
    let recipients = w.alice.recipients(&direct.id).await;
    let text = Content::Text("scoped".into());
    let elsewhere = NetworkId::from_bytes([0x5e; 16]);
    let meta = |host: NetworkId| MessageMeta {
        host_network_id: host,
        conversation_id: direct.id,
        message_id: MessageId::random(&mut rand_core::OsRng),
        timestamp: now_ms(),
        ttl_secs: 0,
        burn_on_read_secs: 0,
        membership: MembershipCommitment::default(),
    };
    let wrong = (StatusCode::FORBIDDEN, "wrong_network".to_string());
    let env = w.alice.seal_as(w.alice.network, &meta(elsewhere), &text, &recipients);
    assert_eq!(code(w.alice.post_envelope(env.encode()).await).await, wrong, "hosted elsewhere");
    let env = w.alice.seal_as(elsewhere, &meta(w.alice.network), &text, &recipients);
    assert_eq!(code(w.alice.post_envelope(env.encode()).await).await, wrong, "sent from elsewhere");
    // Bob's very user and device ids, but in another network: another device.
    let entry = DeviceEntry {
        device_id: w.bob.device,
        signing_key: w.bob.device_key.verifying_key(),
        created_at: 0,
        revoked: false,
        versions: strongroom_crypto::suite::SUPPORTED_VERSIONS,
        name: "look-alike".into(),
    };
    let list = DeviceList::first(&w.bob.identity, elsewhere, w.bob.user, 0, vec![entry])
        .unwrap()
        .verify(&DeviceListExpectation {
            network_id: elsewhere,
            user_id: w.bob.user,
            pinned_identity: None,
            seen: None,
        })
        .unwrap();
    let x = AgreementSecret::generate(&mut rand_core::OsRng);
    let key_ref = PreKeyRef { kind: PreKeyKind::MediumTerm, id: 1 };
    let pk =
        SignedPreKey::sign(&w.bob.device_key, elsewhere, w.bob.user, w.bob.device, key_ref, x.public(), 0, u64::MAX)
            .unwrap()
            .verify(&list.device(w.bob.device).unwrap(), now_ms())
            .unwrap();
    let mut look_alike: Vec<Recipient> = recipients.iter().filter(|r| r.address().1 != w.bob.user).cloned().collect();
    look_alike.push(Recipient::from(&pk));
    let env = w.alice.seal_as(w.alice.network, &meta(w.alice.network), &text, &look_alike);
    assert_eq!(code(w.alice.post_envelope(env.encode()).await).await, wrong, "a wrap in another network");
    assert!(w.bob.receive_all().await.is_empty(), "nothing was queued");
    // The same message addressed properly goes through.
    let env = w.alice.seal_as(w.alice.network, &meta(w.alice.network), &text, &recipients);
    assert_eq!(w.alice.post_envelope(env.encode()).await.status(), StatusCode::OK);
    assert_eq!(w.bob.receive_all().await.len(), 1);
}
