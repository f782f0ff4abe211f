//! Network administration with the real binary: authorisation (non-admins,
//! auditors, other networks), security groups enforced by server and client,
//! suspension (tokens and WebSockets), password reset, remote wipe, deletion,
//! device reset, lockouts, and the hash-chained audit log with tampering caught.
#![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic, clippy::indexing_slicing)]

mod common;

use std::time::Duration;

use common::*;
use reqwest::Method;
use serde_json::{json, Value};
use strongroom_client::{Client, ClientError};
use strongroom_crypto::content::Content;

fn admin(args: &[&str], dir: &std::path::Path) -> Value {
    let profile = dir.join("alice");
    let mut all = vec!["admin"];
    all.extend_from_slice(args);
    all.extend_from_slice(&["--json", "--profile", s(&profile)]);
    ok_json(&all)
}

fn admin_fails(args: &[&str], dir: &std::path::Path) -> String {
    let profile = dir.join("alice");
    let mut all = vec!["admin"];
    all.extend_from_slice(args);
    all.extend_from_slice(&["--profile", s(&profile)]);
    let out = cli(&all);
    assert!(!out.status.success(), "{args:?} should fail");
    String::from_utf8_lossy(&out.stderr).into_owned()
}

async fn enrol(alice: &Client, dir: &std::path::Path, name: &str) -> Client {
    let invite = alice.create_invite(false).await.unwrap().invite;
    Client::enrol(&dir.join(name), &format!("{name} passphrase"), &invite, name, PASSWORD).await.unwrap()
}

fn refused(r: Result<Option<Value>, ClientError>) -> (u16, String) {
    match r {
        Err(ClientError::Refused { status, code, .. }) => (status, code),
        other => panic!("expected a refusal, got {other:?}"),
    }
}

const ADMIN_ROUTES: &[(&str, &str)] = &[
    ("GET", "/v1/admin/users"),
    ("DELETE", "/v1/admin/users/00000000000000000000000000000001"),
    ("POST", "/v1/admin/users/00000000000000000000000000000001/suspend"),
    ("POST", "/v1/admin/users/00000000000000000000000000000001/unsuspend"),
    ("POST", "/v1/admin/users/00000000000000000000000000000001/reset-password"),
    ("POST", "/v1/admin/users/00000000000000000000000000000001/role"),
    ("POST", "/v1/admin/users/00000000000000000000000000000001/group"),
    ("POST", "/v1/admin/users/00000000000000000000000000000001/devices/reset"),
    ("POST", "/v1/admin/users/00000000000000000000000000000001/devices/00000000000000000000000000000002/wipe"),
    ("POST", "/v1/admin/invites"),
    ("POST", "/v1/admin/invites/reissue"),
    ("GET", "/v1/admin/groups"),
    ("POST", "/v1/admin/groups"),
    ("PUT", "/v1/admin/groups/00000000000000000000000000000003"),
    ("DELETE", "/v1/admin/groups/00000000000000000000000000000003"),
    ("GET", "/v1/admin/settings"),
    ("PUT", "/v1/admin/settings"),
    ("GET", "/v1/admin/audit"),
    ("GET", "/v1/admin/audit/verify"),
    ("GET", "/v1/admin/retention/backlog"),
    ("POST", "/v1/invites"),
    ("POST", "/v1/invites/revoke"),
];

fn body_for(method: &str, path: &str) -> Option<Value> {
    match (method, path) {
        ("GET" | "DELETE", _) => None,
        (_, p) if p.ends_with("/role") => Some(json!({"role": "admin"})),
        (_, p) if p.ends_with("/group") => Some(json!({"group_id": null})),
        (_, "/v1/admin/invites") => Some(json!({"labels": ["x"]})),
        (_, p) if p.contains("invites") => Some(json!({"invite": "sr1-AAAA", "admin": false})),
        (_, p) if p.contains("groups") => Some(json!({"name": "g"})),
        (_, "/v1/admin/settings") => Some(serde_json::to_value(strongroom_wire::GroupSettings::default()).unwrap()),
        _ => Some(json!({})),
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn admin_routes_are_guarded_per_role_and_network_and_the_audit_log_proves_itself() {
    let dir = temp_dir("admin-authz");
    let server = ServerProc::start(&dir.join("data"), &[]);
    let (alice, bob) = two_clients(&dir, &server).await;
    let carol = enrol(&alice, &dir, "carol").await;

    // Every admin route: 403 for a plain user.
    for (m, p) in ADMIN_ROUTES {
        let (status, code) = refused(bob.admin_call(m.parse().unwrap(), p, body_for(m, p).as_ref()).await);
        assert_eq!((status, code.as_str()), (403, "not_admin"), "{m} {p}");
    }
    // An auditor reads but never changes.
    let carol_id = carol.user_id().to_string();
    admin(&["users", "role", "carol", "auditor"], &dir);
    for (m, p) in ADMIN_ROUTES {
        let r = carol.admin_call(m.parse().unwrap(), p, body_for(m, p).as_ref()).await;
        if *m == "GET" {
            assert!(r.is_ok(), "auditor reads {p}: {r:?}");
        } else {
            assert_eq!(refused(r).0, 403, "auditor may not {m} {p}");
        }
    }

    // Another network's administrator sees and touches nothing here.
    let other = dir.join("other");
    std::fs::create_dir_all(&other).unwrap();
    let (_, other_invite) = create_network(&server, &other, "globex");
    let dave = Client::enrol(&other.join("dave"), "dave passphrase", &other_invite, "dave", PASSWORD).await.unwrap();
    let seen = dave.admin_call(Method::GET, "/v1/admin/users", None).await.unwrap().unwrap();
    assert_eq!(seen.as_array().unwrap().len(), 1, "only dave: {seen}");
    let bob_id = bob.user_id().to_string();
    for path in [format!("/v1/admin/users/{bob_id}/suspend"), format!("/v1/admin/users/{bob_id}/reset-password")] {
        assert_eq!(refused(dave.admin_call(Method::POST, &path, None).await), (404, "unknown_user".into()));
    }
    assert_eq!(refused(dave.admin_call(Method::DELETE, &format!("/v1/admin/users/{carol_id}"), None).await).0, 404);

    // Actions leave a chained trail: who, what, on whom, from where.
    admin(&["groups", "create", "legal", "--set", "max_ttl_secs=86400"], &dir);
    admin(&["users", "group", "bob", "--group", "legal"], &dir);
    let invited = admin(&["users", "invite", "--count", "2"], &dir);
    assert_eq!(invited.as_array().unwrap().len(), 2);
    let csv = dir.join("new-staff.csv");
    std::fs::write(&csv, "name,department\nfrank,legal\ngrace,ops\n\n").unwrap();
    let invited = admin(&["users", "invite", "--csv", s(&csv)], &dir);
    let labels: Vec<&str> = invited.as_array().unwrap().iter().map(|i| i["label"].as_str().unwrap()).collect();
    assert_eq!(labels, ["frank", "grace"]);
    // Reinvite: the old code stops working, the new one works.
    let old = invited[0]["invite"].as_str().unwrap().to_owned();
    let new = admin(&["users", "reinvite", "--invite", &old], &dir)["invite"].as_str().unwrap().to_owned();
    assert!(Client::enrol(&dir.join("frank-old"), "frank passphrase", &old, "frank", PASSWORD).await.is_err());
    Client::enrol(&dir.join("frank"), "frank passphrase", &new, "frank", PASSWORD).await.unwrap();
    let entries = admin(&["audit", "list"], &dir);
    let actions: Vec<&str> = entries.as_array().unwrap().iter().map(|e| e["action"].as_str().unwrap()).collect();
    for a in ["network.create", "invite.create", "invite.reissue", "user.role", "group.create", "user.group"] {
        assert!(actions.contains(&a), "{a} missing from {actions:?}");
    }
    let group_entry = entries.as_array().unwrap().iter().find(|e| e["action"] == "user.group").unwrap();
    assert_eq!(group_entry["actor"], "alice");
    assert_eq!(group_entry["target"], "bob");
    assert_eq!(group_entry["source"], "127.0.0.1");
    let only_users = admin(&["audit", "list", "--action", "user."], &dir);
    assert!(only_users.as_array().unwrap().iter().all(|e| e["action"].as_str().unwrap().starts_with("user.")));
    assert_eq!(admin(&["audit", "verify"], &dir)["ok"], true);
    let export = dir.join("audit.jsonl");
    admin(&["audit", "export", "--out", s(&export)], &dir);
    assert_eq!(ok_json(&["admin", "audit", "verify", "--json", "--file", s(&export)])["ok"], true);
    // An export with a line removed: caught.
    let text = std::fs::read_to_string(&export).unwrap();
    let cut: Vec<&str> = text.lines().enumerate().filter(|(i, _)| *i != 1).map(|(_, l)| l).collect();
    std::fs::write(&export, cut.join("\n")).unwrap();
    let bad = cli(&["admin", "audit", "verify", "--file", s(&export)]);
    assert!(
        String::from_utf8_lossy(&bad.stderr).contains("entry 2 is missing"),
        "{}",
        String::from_utf8_lossy(&bad.stderr)
    );

    // Someone with database access edits an entry: verify names it.
    let db = format!("sqlite://{}", dir.join("data/strongroom.db").display());
    let pool = sqlx::SqlitePool::connect(&db).await.unwrap();
    sqlx::query("UPDATE audit_log SET target = 'mallory' WHERE seq = 3").execute(&pool).await.unwrap();
    pool.close().await;
    let msg = admin_fails(&["audit", "verify"], &dir);
    assert!(msg.contains("entry 3") && msg.contains("altered"), "{msg}");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn security_groups_are_enforced_by_server_and_client_and_change_live() {
    let dir = temp_dir("admin-groups");
    let server = ServerProc::start(&dir.join("data"), &[]);
    let (mut alice, mut bob) = two_clients(&dir, &server).await;
    let conv = alice.direct_with("bob").await.unwrap();

    let bad = admin_fails(&["groups", "create", "x", "--set", "read_receipts=sometimes"], &dir);
    assert!(bad.contains("read_receipts is off, on or forced"), "{bad}");
    let bad = admin_fails(&["groups", "create", "x", "--set", "colour=blue"], &dir);
    assert!(bad.contains("unknown setting"), "{bad}");
    admin(
        &[
            "groups",
            "create",
            "restricted",
            "--set",
            "files_enabled=false",
            "--set",
            "max_ttl_secs=3600",
            "--set",
            "location_enabled=false",
            "--set",
            "message_forwarding=false",
            "--set",
            "device_lockout=3",
        ],
        &dir,
    );
    admin(&["users", "group", "bob", "--group", "restricted"], &dir);

    // The client refuses what the group forbids, with a reason; timers are clamped.
    let file = dir.join("report.txt");
    std::fs::write(&file, b"quarterly report").unwrap();
    let err = bob.send_file(conv, &file, &|_, _| {}).await.unwrap_err();
    assert!(matches!(err, ClientError::Policy(ref m) if m.contains("files")), "{err}");
    let loc = strongroom_crypto::content::Location { latitude: 1.0, longitude: 2.0, accuracy_m: 0.0, live_until: None };
    assert!(matches!(bob.send(conv, &Content::Location(loc), 0).await, Err(ClientError::Policy(_))));
    bob.send_text(conv, "no timer asked for: the group's maximum applies").await.unwrap();
    alice.sync().await.unwrap();

    // The server refuses it too, for a client that does not honour the group.
    let bob_cli = |args: &[&str]| {
        std::process::Command::new(bin())
            .args(args)
            .args(["--profile", s(&dir.join("bob"))])
            .env("STRONGROOM_PASSPHRASE", "bob passphrase")
            .output()
            .unwrap()
    };
    let (mut bob, out) =
        with_profile_closed(bob, "bob passphrase", || bob_cli(&["file", "send", "--to", "alice", s(&file)])).await;
    assert!(String::from_utf8_lossy(&out.stderr).contains("does not allow sending files"));
    let invite = alice.create_invite(false).await.unwrap().invite;
    register(&server.url, &invite, "mallory").await;
    let mallory_id = alice.find_user("mallory").await.unwrap();
    admin(&["users", "group", "mallory", "--group", "restricted"], &dir);
    let mut mallory = Device::enrol(&server.url, alice.network_id(), "mallory", None, &[], 5).await;
    let c = mallory.create_conversation("direct", &[alice.user_id()]).await;
    let recipients = mallory.recipients(&c.id).await;
    let env = mallory.seal_to(c.id, &Content::Text("forever".into()), &recipients);
    let r = mallory.post_envelope(env.encode()).await;
    assert_eq!(r.status(), 403);
    assert!(r.text().await.unwrap().contains("timer_too_long"));
    let up = mallory
        .http
        .post(format!("{}/v1/blobs?conversation={}&sha256={}", server.url, c.id, "00".repeat(32)))
        .bearer_auth(&mallory.token)
        .body(vec![1u8; 10])
        .send()
        .await
        .unwrap();
    assert_eq!(up.status(), 403);
    assert!(up.text().await.unwrap().contains("files_disabled"));
    let _ = mallory_id;

    // A change applies at the next request, without restarting anything.
    admin(&["groups", "edit", "restricted", "--set", "files_enabled=true", "--set", "max_file_size=10"], &dir);
    let err = bob.send_file(conv, &file, &|_, _| {}).await.unwrap_err();
    assert!(matches!(err, ClientError::Policy(ref m) if m.contains("limited to 10 bytes")), "{err}");
    admin(&["groups", "edit", "restricted", "--set", "max_file_size=1000000"], &dir);
    bob.send_file(conv, &file, &|_, _| {}).await.unwrap();

    // Login lockout after the group's threshold (2 here).
    admin(&["groups", "edit", "restricted", "--set", "lockout_threshold=2"], &dir);
    let login = |password: &'static str| {
        let url = server.url.clone();
        let network = alice.network_id().to_string();
        async move {
            reqwest::Client::new()
                .post(format!("{url}/v1/login"))
                .json(&json!({"network_id": network, "username": "mallory", "password": password, "device_id": "22".repeat(16)}))
                .send()
                .await
                .unwrap()
                .status()
                .as_u16()
        }
    };
    assert_eq!(login("wrong password 1").await, 401);
    assert_eq!(login("wrong password 2").await, 401);
    assert_eq!(login(PASSWORD).await, 429, "locked after 2 failures");

    // Password rules from the network settings.
    admin(&["settings", "set", "--set", "password_min_length=20"], &dir);
    let invite = alice.create_invite(false).await.unwrap().invite;
    let short = Client::enrol(&dir.join("erin"), "erin passphrase", &invite, "erin", "only-17-characters").await;
    assert!(
        matches!(short, Err(ClientError::Refused { ref code, .. }) if code == "weak_password"),
        "{:?}",
        short.err()
    );

    // Device lockout: the third wrong passphrase erases the profile.
    bob.my_policy().await.unwrap();
    bob.close().await;
    for attempt in 1..=3 {
        let r = Client::open(&dir.join("bob"), "not bob's passphrase").await;
        match (attempt, r) {
            (1 | 2, Err(ClientError::WrongPassphrase)) => {}
            (3, Err(ClientError::Wiped(why))) => assert!(why.contains("3 failed unlocks"), "{why}"),
            (n, other) => panic!("attempt {n}: {:?}", other.err()),
        }
    }
    assert!(!dir.join("bob").exists(), "the profile is gone from disk");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn suspension_password_reset_wipe_deletion_and_device_reset() {
    let dir = temp_dir("admin-lifecycle");
    let server = ServerProc::start(&dir.join("data"), &[]);
    let (mut alice, mut bob) = two_clients(&dir, &server).await;
    let conv = alice.direct_with("bob").await.unwrap();

    // Suspension: the open WebSocket closes at once and every request is refused.
    // Bob's own client watches (one client per profile).
    let watch = tokio::spawn(async move {
        let started = std::time::Instant::now();
        let _ = bob.watch(None, Some(Duration::from_secs(60)), |_| {}, |_| {}).await;
        (started.elapsed(), bob)
    });
    tokio::time::sleep(Duration::from_millis(500)).await;
    admin(&["users", "suspend", "bob"], &dir);
    let (closed_after, mut bob) = tokio::time::timeout(Duration::from_secs(20), watch).await.unwrap().unwrap();
    assert!(closed_after < Duration::from_secs(30), "the WebSocket was closed by the suspension");
    let err = bob.sync().await.unwrap_err();
    assert!(matches!(err, ClientError::Refused { status: 403, ref code, .. } if code == "account_suspended"), "{err}");
    assert!(bob.login(PASSWORD).await.is_err(), "a suspended user cannot log in");
    admin(&["users", "unsuspend", "bob"], &dir);
    bob.login(PASSWORD).await.unwrap();

    // Password reset: logged out everywhere; a one-time code lets bob choose a new one.
    let code = admin(&["users", "reset-password", "bob"], &dir)["code"].as_str().unwrap().to_owned();
    assert!(bob.sync().await.is_err(), "sessions ended");
    assert!(bob.reset_password("0000", "a brand new password").await.is_err());
    bob.reset_password(&code, "a brand new password").await.unwrap();
    assert!(bob.reset_password(&code, "another new password").await.is_err(), "codes are single-use");
    assert!(bob.login(PASSWORD).await.is_err(), "the old password is gone");
    bob.sync().await.unwrap();

    // Remote wipe of Carol's (CLI) device: queue dropped, others stop encrypting
    // to it, and the profile is erased from disk the next time it runs.
    let invite = alice.create_invite(false).await.unwrap().invite;
    let carol_dir = dir.join("carol");
    let enrolled = std::process::Command::new(bin())
        .args(["enrol", "--json", "--invite", &invite, "--username", "carol", "--profile", s(&carol_dir)])
        .env("STRONGROOM_PASSPHRASE", "carol passphrase")
        .env("STRONGROOM_PASSWORD", PASSWORD)
        .output()
        .unwrap();
    let carol_device: Value = serde_json::from_slice(&enrolled.stdout).unwrap();
    let carol_device = carol_device["device_id"].as_str().unwrap().to_owned();
    let group = alice.create_conversation("group", &["bob", "carol"]).await.unwrap().id;
    alice.send_text(group, "for bob and carol").await.unwrap();
    // A device id goes into a URL path: anything but 32 hex digits is refused first.
    let bad = admin_fails(&["devices", "wipe", "carol", "../../users/x/suspend"], &dir);
    assert!(bad.contains("is not a device id"), "{bad}");
    admin(&["devices", "wipe", "carol", &carol_device], &dir);
    alice.send_text(group, "carol's wiped device gets no key to this").await.unwrap();
    let read = std::process::Command::new(bin())
        .args(["read", "--profile", s(&carol_dir)])
        .env("STRONGROOM_PASSPHRASE", "carol passphrase")
        .output()
        .unwrap();
    assert!(!read.status.success());
    assert!(String::from_utf8_lossy(&read.stderr).contains("wiped"), "{}", String::from_utf8_lossy(&read.stderr));
    assert!(!carol_dir.exists(), "the wiped profile is gone from disk");
    let devices = admin(&["devices", "list", "carol"], &dir);
    assert_eq!(devices[0]["wipe"], "confirmed");
    assert_eq!(devices[0]["revoked"], true);
    let r = bob.sync().await.unwrap();
    assert_eq!(r.received.len(), 2, "bob still gets the group's messages");

    // Deletion: what was queued for the user is purged.
    let erin = enrol(&alice, &dir, "erin").await;
    let to_erin = alice.direct_with("erin").await.unwrap();
    for i in 0..5 {
        alice.send_text(to_erin, &format!("unread {i}")).await.unwrap();
    }
    let queued = |server_url: String| async move {
        let text = reqwest::get(format!("{server_url}/metrics")).await.unwrap().text().await.unwrap();
        let line = text.lines().find(|l| l.starts_with("strongroom_queue_depth{kind=\"device\"}")).unwrap().to_owned();
        line.rsplit(' ').next().unwrap().parse::<u64>().unwrap()
    };
    let before = queued(server.url.clone()).await;
    admin(&["users", "delete", "erin"], &dir);
    assert_eq!(queued(server.url.clone()).await, before - 5, "erin's 5 queued messages are purged");
    assert!(erin.conversations().await.is_err(), "a deleted user's session is gone");
    assert!(admin(&["users", "list"], &dir).as_array().unwrap().iter().all(|u| u["username"] != "erin"));

    // Device reset: bob's devices are revoked; he enrols again with a re-enrolment invite, same account.
    let bob_id = bob.user_id();
    let reinvite = admin(&["devices", "reset", "bob"], &dir)["invite"].as_str().unwrap().to_owned();
    assert!(bob.sync().await.is_err());
    let again =
        Client::enrol(&dir.join("bob2"), "bob passphrase", &reinvite, "bob", "yet another password").await.unwrap();
    assert_eq!(again.user_id(), bob_id, "the same account, a new identity");
    let wrong = alice.create_invite(false).await.unwrap().invite;
    let _ = wrong;
    let err = alice.send_text(conv, "hello new bob").await.unwrap_err();
    assert!(matches!(err, ClientError::Trust(ref m) if m.contains("identity")), "a changed identity is loud: {err}");

    let actions: Vec<String> = admin(&["audit", "list"], &dir)
        .as_array()
        .unwrap()
        .iter()
        .map(|e| e["action"].as_str().unwrap().to_owned())
        .collect();
    for a in [
        "user.suspend",
        "user.unsuspend",
        "user.reset_password",
        "device.wipe",
        "device.wipe_confirmed",
        "user.delete",
        "device.reset_all",
    ] {
        assert!(actions.iter().any(|x| x == a), "{a} missing from {actions:?}");
    }
    assert_eq!(admin(&["audit", "verify"], &dir)["ok"], true);
}
