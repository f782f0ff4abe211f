//! Guests with the real binary: invited by a member whose security group
//! allows it, enrolled, talking in a direct conversation and a group,
//! archived by retention with a guest mark; every limit refused by the relay
//! itself (raw calls with the guest's own session); administrators list,
//! suspend and see who invited whom (CLI, REST, console, audit log); and
//! expiry after inactivity revokes the guest and members remove them, saying
//! why.
#![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic, clippy::indexing_slicing)]

mod common;

use std::path::Path;
use std::process::Command;
use std::time::{Duration, Instant};

use common::*;
use reqwest::Method;
use serde_json::{json, Value};
use strongroom_client::{Client, ClientError};
use strongroom_wire::{ClaimPreKeys, DeviceAddress};

fn admin(args: &[&str], dir: &Path) -> Value {
    let profile = dir.join("alice");
    let mut all = vec!["admin"];
    all.extend_from_slice(args);
    all.extend_from_slice(&["--json", "--profile", s(&profile)]);
    ok_json(&all)
}

/// The binary as `who` (profile passphrase "<who> passphrase").
fn cli_as(who: &str, args: &[&str]) -> std::process::Output {
    Command::new(bin()).args(args).env("STRONGROOM_PASSPHRASE", format!("{who} passphrase")).output().unwrap()
}

fn refused<T: std::fmt::Debug>(r: Result<T, ClientError>) -> (u16, String) {
    match r {
        Err(ClientError::Refused { status, code, .. }) => (status, code),
        other => panic!("expected a refusal, got {other:?}"),
    }
}

async fn texts(c: &mut Client) -> Vec<String> {
    c.sync().await.unwrap();
    c.view(None)
        .await
        .unwrap()
        .iter()
        .filter_map(|i| match &i.message.content {
            strongroom_crypto::content::Content::Text(t) => Some(t.clone()),
            _ => None,
        })
        .collect()
}

/// Alice's app (`strongroom app`), unlocked: its conversation list and one
/// conversation's messages, as the page gets them.
async fn app_view(profile: &Path, conversation: &str) -> (Value, Value) {
    use std::io::BufRead;
    let mut child = Command::new(bin())
        .args(["app", "--profile", s(profile), "--no-open"])
        .stdout(std::process::Stdio::piped())
        .stderr(std::process::Stdio::null())
        .spawn()
        .unwrap();
    let mut line = String::new();
    std::io::BufReader::new(child.stdout.take().unwrap()).read_line(&mut line).unwrap();
    let url = line.split_whitespace().find(|w| w.starts_with("http://127.0.0.1:")).unwrap().to_owned();
    let base = url.split("/?").next().unwrap().to_owned();
    let h = reqwest::Client::builder().redirect(reqwest::redirect::Policy::none()).build().unwrap();
    let r = h.get(&url).send().await.unwrap();
    let cookie = r.headers()["set-cookie"].to_str().unwrap().split(';').next().unwrap().to_owned();
    let csrf = r.headers()["location"].to_str().unwrap().trim_start_matches("/#t=").to_owned();
    let ui = |r: reqwest::RequestBuilder| r.header("Cookie", &cookie).header("X-CSRF-Token", &csrf);
    let unlocked = ui(h.post(format!("{base}/api/v1/unlock"))).json(&json!({"passphrase": "alice passphrase"})).send();
    assert_eq!(unlocked.await.unwrap().status(), 200);
    let list = ui(h.get(format!("{base}/api/v1/conversations"))).send().await.unwrap().json().await.unwrap();
    let url = format!("{base}/api/v1/conversations/{conversation}/messages");
    let messages = ui(h.get(url)).send().await.unwrap().json().await.unwrap();
    let _ = child.kill();
    let _ = child.wait();
    (list, messages)
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_guest_is_limited_by_the_relay_archived_listed_and_expires() {
    let dir = temp_dir("guests");
    let config = dir.join("server.toml");
    std::fs::write(&config, "expiry_interval_secs = 1\n").unwrap();
    let server = ServerProc::start(&dir.join("data"), &["--config", s(&config)]);
    let (alice, mut bob) = two_clients(&dir, &server).await;
    let invite = alice.create_invite(false).await.unwrap().invite;
    let carol = Client::enrol(&dir.join("carol"), "carol passphrase", &invite, "carol", PASSWORD).await.unwrap();
    let (rdir, alice) = turn_retention_on(&server, &dir, alice).await;

    // Guests are off by default: nobody may invite one, with a reason.
    assert_eq!(refused(bob.create_guest_invite(None).await), (403, "guests_disabled".into()));
    let (alice, out) = with_profile_closed(alice, "alice passphrase", || {
        cli(&["invite", "--guest", "--profile", s(&dir.join("alice"))])
    })
    .await;
    assert!(!out.status.success());
    assert!(String::from_utf8_lossy(&out.stderr).contains("does not allow guests"), "{out:?}");
    let mut alice = alice;

    // A group that allows guests; Bob is in it and invites Dave.
    admin(&["groups", "create", "partners", "--set", "guests_enabled=true"], &dir);
    admin(&["users", "group", "bob", "--group", "partners"], &dir);
    let code = bob.create_guest_invite(None).await.unwrap().invite;
    let mut dave = Client::enrol(&dir.join("dave"), "dave passphrase", &code, "dave", PASSWORD).await.unwrap();
    assert!(Client::enrol(&dir.join("dave2"), "x passphrase", &code, "dave2", PASSWORD).await.is_err(), "one use");
    // A guest invite is never reissued as a member's.
    let spare = bob.create_guest_invite(Some(3600)).await.unwrap().invite;
    let out = cli(&["admin", "users", "reinvite", "--invite", &spare, "--profile", s(&dir.join("alice"))]);
    assert!(String::from_utf8_lossy(&out.stderr).contains("guest invite is not reissued"), "{out:?}");
    // At most 100 unused guest invites per member.
    for _ in 0..99 {
        bob.create_guest_invite(Some(60)).await.unwrap();
    }
    assert_eq!(refused(bob.create_guest_invite(None).await), (429, "rate_limited".into()));

    // A direct conversation and a group with the guest.
    let direct = bob.direct_with("dave").await.unwrap();
    bob.send_text(direct, "welcome, dave").await.unwrap();
    assert_eq!(texts(&mut dave).await, ["welcome, dave"]);
    dave.send_text(direct, "thanks, bob").await.unwrap();
    let group = bob.create_conversation("group", &["alice", "dave"]).await.unwrap();
    dave.sync().await.unwrap();
    dave.send_text(group.id, "hello from outside").await.unwrap();
    let seen = texts(&mut alice).await;
    assert!(seen.contains(&"hello from outside".to_owned()), "{seen:?}");
    let listed = alice.conversation(group.id).await.unwrap();
    let member = listed.members.iter().find(|m| m.user_id == dave.user_id()).unwrap();
    assert!(member.guest && !member.expired && member.username == "dave", "{member:?}");

    // Every limit, refused by the relay itself (the guest's own session).
    let call = |m: Method, p: String, b: Option<Value>| {
        let dave = &dave;
        async move { dave.admin_call(m, &p, b.as_ref()).await }
    };
    let bob_id = bob.user_id().to_string();
    let carol_id = carol.user_id().to_string();
    let checks: Vec<(Method, String, Option<Value>, u16, &str)> = vec![
        (
            Method::POST,
            "/v1/conversations".into(),
            Some(json!({"kind": "group", "members": [bob_id]})),
            403,
            "guest_limited",
        ),
        (
            Method::POST,
            "/v1/conversations".into(),
            Some(json!({"kind": "direct", "members": [bob_id]})),
            403,
            "guest_limited",
        ),
        (Method::GET, "/v1/users?username=carol".into(), None, 404, "unknown_user"),
        (Method::GET, format!("/v1/users?id={carol_id}"), None, 404, "unknown_user"),
        (Method::GET, format!("/v1/keys/{carol_id}"), None, 404, "unknown_user"),
        (Method::GET, format!("/v1/keys/{carol_id}/history?after=0"), None, 404, "unknown_user"),
        (
            Method::POST,
            "/v1/keys/claim".into(),
            Some(
                serde_json::to_value(ClaimPreKeys {
                    devices: vec![DeviceAddress { user: carol.user_id(), device: carol.device_id() }],
                    medium_term: vec![],
                })
                .unwrap(),
            ),
            404,
            "unknown_device",
        ),
        (Method::POST, "/v1/guests/invites".into(), Some(json!({})), 403, "guest_limited"),
        (Method::POST, "/v1/invites".into(), Some(json!({})), 403, "not_admin"),
        (Method::GET, "/v1/admin/users".into(), None, 403, "not_admin"),
        (Method::GET, "/v1/admin/guests".into(), None, 403, "not_admin"),
        (
            Method::POST,
            format!("/v1/conversations/{}/members", group.id),
            Some(json!({"remove": [bob_id]})),
            403,
            "guest_limited",
        ),
    ];
    for (m, p, b, status, code) in checks {
        let what = format!("{m} {p}");
        assert_eq!(refused(call(m, p, b).await), (status, code.to_owned()), "{what}");
    }
    // Who they share a conversation with, they may see.
    assert_eq!(call(Method::GET, "/v1/users?username=alice".into(), None).await.unwrap().unwrap()["username"], "alice");
    // Signed statements too: no group, no removal, no moderation.
    assert_eq!(refused(dave.create_conversation("group", &["bob"]).await), (403, "guest_limited".into()));
    assert_eq!(refused(dave.change_members(group.id, &[], &["alice"], &[], &[]).await), (403, "guest_limited".into()));
    let room = bob.create_conversation("room", &["dave"]).await.unwrap();
    assert_eq!(refused(bob.change_members(room.id, &[], &[], &["dave"], &[]).await), (403, "guest_limited".into()));
    // Alice's group (the network defaults) has guests off: she cannot add one.
    assert_eq!(refused(alice.create_conversation("group", &["dave"]).await), (403, "guests_disabled".into()));
    let staff = alice.create_conversation("group", &["carol"]).await.unwrap();
    assert_eq!(
        refused(alice.change_members(staff.id, &["dave"], &[], &[], &[]).await),
        (403, "guests_disabled".into())
    );
    let out = cli(&["admin", "users", "role", "dave", "user", "--profile", s(&dir.join("alice"))]);
    assert!(String::from_utf8_lossy(&out.stderr).contains("keeps the guest role"), "{out:?}");

    // Retention keeps the guest's words like anyone's, marked as a guest.
    ok_json(&["retention", "--dir", s(&rdir), "--json", "run", "--once"]);
    let hits = ok_json(&["retention", "--dir", s(&rdir), "--json", "search", "outside"]);
    assert_eq!(hits["hits"][0]["sender"]["username"], "dave", "{hits}");
    assert_eq!(hits["hits"][0]["sender"]["guest"], true, "{hits}");
    let from_dave = ok_json(&["retention", "--dir", s(&rdir), "--json", "search", "thanks"]);
    assert_eq!(from_dave["hits"].as_array().unwrap().len(), 1, "the direct conversation too: {from_dave}");

    // Administrators: who invited whom, in the CLI, REST, console and audit log.
    let guests = admin(&["users", "guests"], &dir);
    assert_eq!(guests.as_array().unwrap().len(), 1, "{guests}");
    assert_eq!((guests[0]["username"].as_str(), guests[0]["invited_by"].as_str()), (Some("dave"), Some("bob")));
    assert_eq!(guests[0]["role"], "guest");
    let out = cli(&["admin", "users", "guests", "--profile", s(&dir.join("alice"))]);
    assert!(String::from_utf8_lossy(&out.stdout).contains("dave (guest, invited by bob"), "{out:?}");
    let audit = admin(&["audit", "list"], &dir);
    let entry = |action: &str| audit.as_array().unwrap().iter().find(|e| e["action"] == action).cloned();
    assert_eq!(entry("guest.invite").unwrap()["actor"], "bob", "{audit}");
    let enrolled = entry("guest.enrol").unwrap();
    assert!(enrolled["details"].as_str().unwrap().contains("\"invited_by\":\"bob\""), "{enrolled}");
    let network = alice.network_id().to_string();
    let (http, _, cookie) = console_login(&server.url, &network, "alice").await;
    let page = http.get(format!("{}/admin/users", server.url)).header("cookie", &cookie).send().await.unwrap();
    let html = page.text().await.unwrap();
    assert!(html.contains("<span class=\"badge guest\">guest</span>"), "{html}");
    assert!(html.contains("invited by bob"), "{html}");

    // Suspended, the guest is refused; lifted, they talk again.
    admin(&["users", "suspend", "dave"], &dir);
    assert_eq!(refused(dave.send_text(group.id, "am I here?").await).1, "account_suspended");
    admin(&["users", "unsuspend", "dave"], &dir);
    dave.login(PASSWORD).await.unwrap();
    dave.send_text(group.id, "back again").await.unwrap();

    // The CLI shows the badge.
    let (alice, out) = with_profile_closed(alice, "alice passphrase", || {
        cli(&["conversations", "list", "--profile", s(&dir.join("alice"))])
    })
    .await;
    assert!(String::from_utf8_lossy(&out.stdout).contains("dave (guest)"), "{out:?}");
    alice.close().await;
    // And the app: the group carries a guest badge, and so do Dave's messages.
    let (conversations, messages) = app_view(&dir.join("alice"), &group.id.to_string()).await;
    let listed = conversations["conversations"].as_array().unwrap().iter().find(|c| c["id"] == group.id.to_string());
    assert_eq!(listed.unwrap()["guests"], 1, "{conversations}");
    let from_dave =
        messages["messages"].as_array().unwrap().iter().find(|m| m["text"] == "hello from outside").unwrap();
    assert_eq!(
        (from_dave["sender_guest"].as_bool(), from_dave["sender_name"].as_str()),
        (Some(true), Some("dave (guest)"))
    );

    // Expiry: the partners' guests expire after 1 s of inactivity.
    admin(&["groups", "edit", "partners", "--set", "guest_expiry_secs=1"], &dir);
    let deadline = Instant::now() + Duration::from_secs(20);
    loop {
        let g = admin(&["users", "guests"], &dir);
        if g[0]["expired_at"].is_u64() {
            break;
        }
        assert!(Instant::now() < deadline, "the guest never expired: {g}");
        tokio::time::sleep(Duration::from_millis(200)).await;
    }
    let audit = admin(&["audit", "list", "--action", "guest.expire"], &dir);
    assert_eq!((audit[0]["actor"].as_str(), audit[0]["target"].as_str()), (Some("relay"), Some("dave")), "{audit}");
    // The guest is out: the session is gone and a new login says why.
    assert_eq!(refused(dave.admin_call(Method::GET, "/v1/conversations", None).await).0, 401);
    let login = reqwest::Client::new()
        .post(format!("{}/v1/login", server.url))
        .json(&json!({"network_id": network, "username": "dave", "password": PASSWORD, "device_id": dave.device_id()}))
        .send()
        .await
        .unwrap();
    assert_eq!(login.status(), 403);
    assert!(login.text().await.unwrap().contains("guest_expired"));
    let dave_id = dave.user_id();
    dave.close().await;

    // The next member to sync removes the guest with a signed statement and says why.
    let (mut bob, out) =
        with_profile_closed(bob, "bob passphrase", || cli_as("bob", &["read", "--profile", s(&dir.join("bob"))])).await;
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert!(out.status.success(), "{stderr}");
    assert!(
        stderr.contains("removed dave (guest) from conversation") && stderr.contains("guest access expired"),
        "{stderr}"
    );
    let now = bob.conversation(group.id).await.unwrap();
    assert!(now.members.iter().all(|m| m.user_id != dave_id), "{now:?}");
    bob.send_text(group.id, "carrying on without dave").await.unwrap();
    bob.close().await;
    let out = cli(&["read", "--profile", s(&dir.join("alice"))]);
    let stdout = String::from_utf8_lossy(&out.stdout);
    assert!(
        stdout.contains("(removed dave (guest, expired): guest access expired after inactivity)"),
        "members see why: {stdout}"
    );
    assert!(stdout.contains("carrying on without dave"), "{stdout}");

    // An administrator removes the guest for good: gone from the guest list, on the record.
    admin(&["users", "delete", "dave"], &dir);
    assert_eq!(admin(&["users", "guests"], &dir), json!([]));
    let audit = admin(&["audit", "list", "--action", "user.delete"], &dir);
    assert_eq!(audit[0]["target"], "dave", "{audit}");
}
