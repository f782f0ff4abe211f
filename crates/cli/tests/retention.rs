//! Data retention with the real binaries: the retention device is made with
//! `strongroom retention init`, signed into the policy with `strongroom admin
//! retention enable`, and archives everything while clients show "data
//! retention on"; verify, search, export (EML parsed with a standard MIME
//! parser, checked against the manifest), holds and purge; a backlog of
//! 2,000 messages across 20 conversations with files, caught up after a
//! kill -9 in the middle of archiving with nothing lost or duplicated.
#![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic, clippy::indexing_slicing)]

mod common;

use std::path::{Path, PathBuf};
use std::process::{Command, Stdio};

use common::*;
use mail_parser::MimeHeaders;
use serde_json::Value;
use strongroom_crypto::content::{Content, Location};

fn retention(rdir: &Path, args: &[&str]) -> Value {
    let mut all = vec!["retention", "--dir", s(rdir), "--json"];
    all.extend_from_slice(args);
    ok_json(&all)
}

async fn metric(server: &ServerProc, name: &str) -> u64 {
    let text = reqwest::get(format!("{}/metrics", server.url)).await.unwrap().text().await.unwrap();
    let line = text.lines().find(|l| l.starts_with(name)).unwrap_or_else(|| panic!("no {name} in {text}"));
    line.rsplit(' ').next().unwrap().parse().unwrap()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn retention_archives_everything_and_proves_it() {
    let dir = temp_dir("retention");
    let server = ServerProc::start(&dir.join("data"), &[]);
    let (alice, mut bob) = two_clients(&dir, &server).await;
    let (rdir, mut alice) = turn_retention_on(&server, &dir, alice).await;
    assert!(alice.policy().await.unwrap().retention_enabled());

    // Everything people do, while the retention service is not even running.
    let direct = alice.direct_with("bob").await.unwrap();
    let hello = alice.send_text(direct, "the quarterly numbers are 42.7 million").await.unwrap();
    let hello_id = hello.message_id;
    bob.sync().await.unwrap();
    bob.send(direct, &Content::Reply { in_reply_to: hello_id, text: "confirmed".into() }, 0).await.unwrap();
    alice
        .send(direct, &Content::Edit { target: hello_id, text: "the quarterly numbers are 42.9 million".into() }, 0)
        .await
        .unwrap();
    bob.send(direct, &Content::Reaction { target: hello_id, emoji: "👍".into(), remove: false }, 0).await.unwrap();
    let oops = alice.send_text(direct, "wrong chat, sorry").await.unwrap();
    let oops_id = oops.message_id;
    alice.send(direct, &Content::Recall { target: oops_id }, 0).await.unwrap();
    let loc = Location { latitude: 40.7069, longitude: -74.0113, accuracy_m: 5.0, live_until: None };
    alice.send(direct, &Content::Location(loc), 0).await.unwrap();
    let report = dir.join("board-report.pdf");
    let report_bytes: Vec<u8> = (0..300_000u32).map(|i| (i % 251) as u8).collect();
    std::fs::write(&report, &report_bytes).unwrap();
    alice.send_file(direct, &report, &|_, _| {}).await.unwrap();
    let group = alice.create_conversation("group", &["bob"]).await.unwrap().id;
    alice.set_default_timers(group, 3600, 0).await.unwrap();
    alice.send_text(group, "group kickoff").await.unwrap();
    bob.sync().await.unwrap();
    bob.send_read_receipts(&bob.messages(Some(direct)).await.unwrap(), now_ms(), true).await.unwrap();
    let sent = 11;
    // And a record of each conversation's creation (its signed membership).
    let archived = sent + 2;

    // Clients say so: CLI text and --json (Bob's profile closed here meanwhile).
    let (mut bob, (bob_read, list)) = with_profile_closed(bob, "bob passphrase", || {
        let bob_read = Command::new(bin())
            .args(["read", "--json", "--no-receipts", "--profile", s(&dir.join("bob"))])
            .env("STRONGROOM_PASSPHRASE", "bob passphrase")
            .output()
            .unwrap();
        let list = Command::new(bin())
            .args(["conversations", "list", "--profile", s(&dir.join("bob"))])
            .env("STRONGROOM_PASSPHRASE", "bob passphrase")
            .output()
            .unwrap();
        (bob_read, list)
    })
    .await;
    let v: Value = serde_json::from_slice(&bob_read.stdout).unwrap();
    assert_eq!(v["retention"], true);
    assert!(String::from_utf8_lossy(&list.stdout).contains("data retention on"));

    // The relay holds them for the retention device: a visible backlog.
    assert_eq!(metric(&server, "strongroom_queue_depth{kind=\"retention\"}").await, sent);

    let run = retention(&rdir, &["run", "--once"]);
    assert_eq!((run["run"]["archived"].as_u64(), run["run"]["membership"].as_u64()), (Some(sent), Some(2)));
    assert_eq!(run["run"]["files"], 1);
    assert_eq!(run["run"]["unreadable"], 0);
    assert_eq!(metric(&server, "strongroom_queue_depth{kind=\"retention\"}").await, 0);
    let again = retention(&rdir, &["run", "--once"]);
    assert_eq!(again["run"]["archived"], 0, "nothing twice");
    // The relay recorded the retention device's full download of the file:
    // only now may it remove the file once it expires.
    {
        use sqlx::Connection;
        let db = format!("sqlite://{}?mode=ro", server.data_dir.join("strongroom.db").display());
        let mut conn = sqlx::SqliteConnection::connect(&db).await.unwrap();
        let deadline = std::time::Instant::now() + std::time::Duration::from_secs(5);
        loop {
            let (fetched,): (i64,) = sqlx::query_as("SELECT COUNT(*) FROM blobs WHERE retention_fetched = 1")
                .fetch_one(&mut conn)
                .await
                .unwrap();
            if fetched == 1 || std::time::Instant::now() > deadline {
                assert_eq!(fetched, 1, "the retention download was recorded");
                break;
            }
            tokio::time::sleep(std::time::Duration::from_millis(100)).await;
        }
    }

    // The signed checkpoint reached the relay: administrators see it on the console dashboard.
    let (http, _, cookie) = console_login(&server.url, &alice.network_id().to_string(), "alice").await;
    let dashboard = http.get(format!("{}/admin/dashboard", server.url)).header("cookie", cookie).send().await.unwrap();
    let page = dashboard.text().await.unwrap();
    assert!(
        page.contains(&format!("Last archive checkpoint: <span class=\"mono\">{archived} records, signed")),
        "{page}"
    );
    assert!(page.contains("on: Compliance archive"));

    let v = retention(&rdir, &["verify"]);
    assert_eq!(v["problem_count"], 0, "{v}");
    assert_eq!(v["records"], archived);
    assert_eq!(v["files"], 1);

    // Search by words, participant and conversation; keys never printed.
    let hits = retention(&rdir, &["search", "quarterly"]);
    assert_eq!(hits["hits"].as_array().unwrap().len(), 2, "{hits}"); // the text and its edit
    assert_eq!(hits["hits"][0]["sender"]["username"], "alice");
    let group_id = group.to_string();
    let in_group = retention(&rdir, &["search", "--conversation", &group_id]);
    // Its creation (signed membership), the timer change and the kickoff.
    assert_eq!(in_group["hits"].as_array().unwrap().len(), 3, "{in_group}");
    assert_eq!(in_group["hits"][0]["kind"], "membership");
    assert_eq!(in_group["hits"][2]["ttl_secs"], 3600, "the conversation's default timer is on record");
    let files = retention(&rdir, &["search", "board-report"]);
    assert_eq!(files["hits"][0]["file_name"], "board-report.pdf");
    assert!(!files.to_string().contains("file_key"));

    // Every kind of record, with sender and full recipients.
    let out = dir.join("export");
    let exported = retention(&rdir, &["export", "--out", s(&out)]);
    assert_eq!(exported["counts"]["records"], archived);
    let manifest: Value = serde_json::from_slice(&std::fs::read(out.join("manifest.json")).unwrap()).unwrap();
    for f in manifest["files"].as_array().unwrap() {
        let bytes = std::fs::read(out.join(f["path"].as_str().unwrap())).unwrap();
        assert_eq!(sha256_hex(&bytes), f["sha256"].as_str().unwrap(), "{}", f["path"]);
        assert_eq!(bytes.len() as u64, f["bytes"].as_u64().unwrap());
    }
    let jsonl = std::fs::read_to_string(out.join("records.jsonl")).unwrap();
    let records: Vec<Value> = jsonl.lines().map(|l| serde_json::from_str(l).unwrap()).collect();
    let kinds: Vec<&str> = records.iter().map(|r| r["kind"].as_str().unwrap()).collect();
    for k in ["text", "reply", "edit", "reaction", "recall", "location", "file", "control", "receipt"] {
        assert!(kinds.contains(&k), "{k} missing from {kinds:?}");
    }
    assert!(!jsonl.contains("file_key"));
    let first = records.iter().find(|r| r["kind"] == "text").unwrap();
    assert_eq!(first["recipients"].as_array().unwrap().len(), 2);
    assert!(first["sender"]["identity_key"].as_str().unwrap().len() == 64);
    assert!(first["sender"]["device_id"].is_string());
    assert_eq!(first["seq"], 1);
    // Three times on every message: the sender's, the relay's and the archive's.
    for r in records.iter().filter(|r| r["seq"].is_u64()) {
        let (sent, relayed, archived) = (
            r["sent_at"].as_u64().unwrap(),
            r["relay_received_at"].as_u64().unwrap(),
            r["archived_at"].as_u64().unwrap(),
        );
        assert!(sent.abs_diff(relayed) < 60_000 && relayed <= archived, "{r}");
        assert!(r.get("sent_at_behind_ms").is_none());
    }
    // Recalled message: still in the archive (that is the point).
    assert!(records.iter().any(|r| r["text"] == "wrong chat, sorry"));

    // EML: parsed with a standard MIME parser; counts match the manifest.
    let emls: Vec<PathBuf> = std::fs::read_dir(out.join("eml")).unwrap().map(|e| e.unwrap().path()).collect::<Vec<_>>();
    assert_eq!(emls.len() as u64, manifest["counts"]["eml"].as_u64().unwrap());
    let mut attachments = 0;
    for path in &emls {
        let raw = std::fs::read(path).unwrap();
        let msg = mail_parser::MessageParser::default().parse(&raw).unwrap();
        assert!(msg.from().unwrap().first().unwrap().address().unwrap().ends_with("@strongroom.invalid"));
        assert_eq!(msg.to().unwrap().iter().count(), 2, "both members by full identity");
        assert!(msg.header("X-Strongroom-Conversation").is_some());
        assert!(msg.header("X-Strongroom-Sender-Identity-Key").is_some());
        assert!(msg.date().is_some());
        for a in msg.attachments() {
            assert_eq!(a.attachment_name(), Some("board-report.pdf"));
            assert_eq!(a.contents(), &report_bytes[..], "attachment bytes intact");
            attachments += 1;
        }
        if msg.header("X-Strongroom-Kind").and_then(|h| h.as_text()) == Some("text") {
            let body = msg.body_text(0).unwrap();
            assert!(body.contains("quarterly") || body.contains("wrong chat") || body.contains("kickoff"), "{body}");
        }
    }
    assert_eq!(attachments, 1);
    let csv = std::fs::read_to_string(out.join("loadfile.csv")).unwrap();
    assert_eq!(csv.lines().count() as u64, 1 + manifest["counts"]["csv_rows"].as_u64().unwrap());
    let filtered = retention(
        &rdir,
        &["export", "--out", s(&dir.join("export2")), "--conversation", &group_id, "--format", "jsonl"],
    );
    assert_eq!(filtered["counts"]["records"], 3);

    // A hold on the group; a purge with a zero-day period deletes the rest,
    // and the log still verifies.
    retention(&rdir, &["hold", "place", "--name", "inquiry-7", "--conversation", &group_id]);
    let holds = retention(&rdir, &["hold", "list"]);
    assert_eq!(holds["holds"][0]["name"], "inquiry-7");
    // The network's period (set by an administrator, fetched from the relay) wins over the default.
    let settings = |days: &str| {
        let profile = dir.join("alice");
        ok_json(&[
            "admin",
            "settings",
            "set",
            "--json",
            "--set",
            &format!("retention_days={days}"),
            "--profile",
            s(&profile),
        ])
    };
    settings("3650");
    let kept = retention(&rdir, &["purge", "--period-days", "0"]);
    assert_eq!(kept["deleted"], 0, "ten years have not passed: {kept}");
    settings("0");
    // The signed policy's floor beats a zero-day operator period, online and
    // (remembered with the archive) offline.
    let (key_file, alice_profile) = (dir.join("acme.key"), dir.join("alice"));
    let floor = |days: &str| {
        let args = ["admin", "retention", "floor", "--json", "--key-file", s(&key_file), "--days", days];
        ok_json(&[&args[..], &["--profile", s(&alice_profile)][..]].concat())
    };
    assert_eq!(floor("3650")["retention_floor_days"], 3650);
    assert_eq!(retention(&rdir, &["purge", "--period-days", "0"])["deleted"], 0, "below the signed floor");
    assert_eq!(retention(&rdir, &["purge", "--offline", "--period-days", "0"])["deleted"], 0, "offline too");
    let too_long = cli(&[
        "admin",
        "retention",
        "floor",
        "--key-file",
        s(&dir.join("acme.key")),
        "--days",
        "40000",
        "--profile",
        s(&dir.join("alice")),
    ]);
    assert!(!too_long.status.success());
    floor("0");
    let offline = cli(&["retention", "--dir", s(&rdir), "purge", "--offline"]);
    assert!(!offline.status.success(), "--offline needs --period-days");
    let purged = retention(&rdir, &["purge", "--period-days", "0"]);
    // Held: the group's two messages and its creation.
    assert_eq!(purged["deleted"], archived - 3);
    assert_eq!(purged["held"], 3);
    assert_eq!(purged["files"], 1);
    let v = retention(&rdir, &["verify"]);
    assert_eq!(v["problem_count"], 0, "{v}");
    assert_eq!(v["deleted"], archived - 3);
    assert_eq!(
        retention(&rdir, &["search"])["hits"].as_array().unwrap().iter().filter(|h| h["kind"] == "text").count(),
        1
    );

    // Tampering on disk is caught by the CLI's verify, with the reason.
    let seg = std::fs::read_dir(rdir.join("archive/segments")).unwrap().next().unwrap().unwrap().path();
    let mut bytes = std::fs::read(&seg).unwrap();
    let last = bytes.len() - 1;
    bytes[last] ^= 1;
    std::fs::write(&seg, bytes).unwrap();
    let bad = cli(&["retention", "--dir", s(&rdir), "verify"]);
    assert!(!bad.status.success());
    let text = String::from_utf8_lossy(&bad.stdout);
    assert!(text.contains("PROBLEM:") && text.contains("record"), "{text}");

    // Turning retention off: signed by the network key too; clients see it.
    let off = ok_json(&[
        "admin",
        "retention",
        "disable",
        "--json",
        "--all",
        "--key-file",
        s(&dir.join("acme.key")),
        "--profile",
        s(&dir.join("alice")),
    ]);
    assert_eq!(off["retention"], false);
    alice.send_text(direct, "not archived").await.unwrap();
    assert!(!bob.policy().await.unwrap().retention_enabled());
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_backlog_of_2000_is_caught_up_across_a_kill_9() {
    let dir = temp_dir("retention-backlog");
    let config = dir.join("server.toml");
    std::fs::write(&config, "expiry_interval_secs = 1\nretention_backlog_alert = 1500\n").unwrap();
    let server = ServerProc::start(&dir.join("data"), &["--config", s(&config)]);
    let (alice, _bob) = two_clients(&dir, &server).await;
    let (rdir, mut alice) = turn_retention_on(&server, &dir, alice).await;

    // The service is down: 2,000 messages in 20 conversations, one file in each.
    let file = dir.join("minutes.txt");
    std::fs::write(&file, b"minutes: approved").unwrap();
    let mut conversations = Vec::new();
    for _ in 0..20 {
        let c = alice.create_conversation("group", &["bob"]).await.unwrap();
        conversations.push(c.id);
    }
    let mut sent = 0u64;
    for (n, c) in conversations.iter().enumerate() {
        alice.send_file(*c, &file, &|_, _| {}).await.unwrap();
        for i in 1..100 {
            alice.send_text(*c, &format!("conversation {n} message {i}")).await.unwrap();
        }
        sent += 100;
    }
    assert_eq!(sent, 2000);
    assert_eq!(metric(&server, "strongroom_queue_depth{kind=\"retention\"}").await, 2000);
    // Over the alert threshold: the metric says so (the server also logs a warning).
    let deadline = std::time::Instant::now() + std::time::Duration::from_secs(10);
    while metric(&server, "strongroom_retention_backlog_alert").await != 1 {
        assert!(std::time::Instant::now() < deadline, "no backlog alert");
        tokio::time::sleep(std::time::Duration::from_millis(100)).await;
    }

    // Start archiving, and kill -9 it in the middle (once a second segment is written).
    let mut child = Command::new(bin())
        .args(["retention", "--dir", s(&rdir), "run"])
        .env("STRONGROOM_RETENTION_PASSPHRASE", "retention passphrase")
        .stdout(Stdio::null())
        .stderr(Stdio::null())
        .spawn()
        .unwrap();
    let segments = rdir.join("archive/segments");
    let deadline = std::time::Instant::now() + std::time::Duration::from_secs(120);
    while std::fs::read_dir(&segments).map(|d| d.count()).unwrap_or(0) < 2 {
        assert!(std::time::Instant::now() < deadline, "the service archived nothing");
        std::thread::sleep(std::time::Duration::from_millis(20));
    }
    child.kill().unwrap();
    child.wait().unwrap();
    let backlog = metric(&server, "strongroom_queue_depth{kind=\"retention\"}").await;
    assert!(backlog > 0 && backlog < 2000, "killed mid-way: {backlog} left");

    let run = retention(&rdir, &["run", "--once"]);
    let v = retention(&rdir, &["verify"]);
    assert_eq!(v["problem_count"], 0, "{v}");
    // 2,000 messages and 20 creations.
    assert_eq!(v["records"], 2020, "no duplicate and no missing record (run after the kill: {run})");
    let status = retention(&rdir, &["status"]);
    assert_eq!(status["archive"]["records"], 2020);
    assert_eq!(status["last_verify"]["ok"], true);
    let text = cli(&["retention", "--dir", s(&rdir), "status"]);
    assert!(String::from_utf8_lossy(&text.stdout).contains("strongroom_retention_last_verify_ok 1"));
    assert_eq!(v["conversations"], 20);
    assert_eq!(v["files"], 20);
    assert_eq!(metric(&server, "strongroom_queue_depth{kind=\"retention\"}").await, 0);
    let deadline = std::time::Instant::now() + std::time::Duration::from_secs(10);
    while metric(&server, "strongroom_retention_backlog_alert").await != 0 {
        assert!(std::time::Instant::now() < deadline, "the alert did not clear");
        tokio::time::sleep(std::time::Duration::from_millis(100)).await;
    }
}

fn json_body(v: &Value) -> String {
    v.to_string()
}

fn refused(r: Result<Option<Value>, strongroom_client::ClientError>) -> (u16, String) {
    match r {
        Err(strongroom_client::ClientError::Refused { status, code, .. }) => (status, code),
        other => panic!("expected a refusal, got {other:?}"),
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn retention_sessions_are_policy_bound_and_receive_only_and_bad_envelopes_are_evidence() {
    use reqwest::Method;
    use strongroom_crypto::certs::{NetworkPolicy, PolicyTracker, RetentionLogin};
    use strongroom_crypto::ids::{DeviceId, UserId};
    use strongroom_crypto::keys::SigningKey;
    use strongroom_wire::{RetentionLoginRequest, B64};

    let dir = temp_dir("retention-login");
    let server = ServerProc::start(&dir.join("data"), &[]);
    let (alice, _bob) = two_clients(&dir, &server).await;
    let (rdir, mut alice) = turn_retention_on(&server, &dir, alice).await;
    let keys = strongroom_retention::keys::RetentionKeys::load(&rdir, "retention passphrase").unwrap();
    assert!(strongroom_retention::keys::RetentionKeys::load(&rdir, "wrong passphrase!!").is_err());
    let http = reqwest::Client::new();
    let network = keys.network().unwrap();
    let me = keys.device_id().unwrap();
    let login = |device: DeviceId, ts: u64, nonce: [u8; 16], key: &SigningKey| {
        let statement = RetentionLogin { network_id: network, device_id: device, timestamp: ts, nonce };
        RetentionLoginRequest {
            network_id: network,
            device_id: device,
            timestamp: ts,
            nonce: nonce.iter().map(|b| format!("{b:02x}")).collect(),
            signature: B64(statement.sign(key).as_bytes().to_vec()),
        }
    };
    let post = |req: RetentionLoginRequest| {
        let http = http.clone();
        let url = format!("{}/v1/retention/session", server.url);
        async move { http.post(url).json(&req).send().await.unwrap() }
    };
    let ok = post(login(me, now_ms(), [1; 16], &keys.signing)).await;
    assert_eq!(ok.status(), 200);
    let token = ok.json::<strongroom_wire::Session>().await.unwrap().token;
    let replay = post(login(me, now_ms(), [1; 16], &keys.signing)).await;
    assert_eq!(replay.status(), 401);
    assert!(replay.text().await.unwrap().contains("already used"));
    let forged = post(login(me, now_ms(), [2; 16], &SigningKey::generate(&mut rand_core::OsRng))).await;
    assert!(forged.text().await.unwrap().contains("does not verify"));
    let stale = post(login(me, now_ms() - 600_000, [3; 16], &keys.signing)).await;
    assert!(stale.text().await.unwrap().contains("clock"));
    let stranger = post(login(DeviceId::from_bytes([9; 16]), now_ms(), [4; 16], &keys.signing)).await;
    assert!(stranger.text().await.unwrap().contains("not in the network's current policy"));
    let garbage = http.post(format!("{}/v1/retention/session", server.url)).body("{\"network_id\": 5}").send().await;
    assert!(garbage.unwrap().status().is_client_error());

    // Receive-only: it reads any conversation's members, but cannot send, create or administer.
    let conv = alice.direct_with("bob").await.unwrap();
    let auth = |r: reqwest::RequestBuilder| r.bearer_auth(&token);
    let get = auth(http.get(format!("{}/v1/conversations/{conv}", server.url))).send().await.unwrap();
    assert_eq!(get.status(), 200);
    for (method, path) in [
        ("POST", "/v1/messages"),
        ("POST", "/v1/conversations"),
        ("PUT", "/v1/keys/device-list"),
        ("PUT", "/v1/policy"),
        ("POST", "/v1/invites"),
        ("POST", "/v1/blobs"),
    ] {
        let r = auth(http.request(method.parse().unwrap(), format!("{}{path}", server.url))).body("{}").send().await;
        let r = r.unwrap();
        assert_eq!(r.status(), 403, "{method} {path}");
        assert!(r.text().await.unwrap().contains("retention_read_only"));
    }

    // Checkpoint reports: only well-formed, correctly signed ones by this device are taken.
    let cp = strongroom_crypto::certs::ArchiveCheckpoint {
        network_id: network,
        device_id: me,
        tree_size: 5,
        root: [3; 32],
        timestamp: now_ms(),
    };
    let report = |root: String, sig: Vec<u8>| {
        json_body(&serde_json::json!({"tree_size": 5, "root": root, "timestamp": cp.timestamp, "signature": B64(sig)}))
    };
    let post_cp = |body: String| {
        auth(http.post(format!("{}/v1/retention/checkpoint", server.url)))
            .header("content-type", "application/json")
            .body(body)
            .send()
    };
    let good_sig = cp.sign(&keys.signing).as_bytes().to_vec();
    let r = post_cp(report("zz".repeat(32), good_sig.clone())).await.unwrap();
    assert_eq!(r.status(), 400, "a root that is not hex");
    let r = post_cp(report("03".repeat(32), vec![0; 64])).await.unwrap();
    assert_eq!(r.status(), 400, "a forged signature");
    let r = post_cp(report("03".repeat(32), vec![0; 7])).await.unwrap();
    assert_eq!(r.status(), 400, "a short signature");
    let r = post_cp(report("03".repeat(32), good_sig)).await.unwrap();
    assert_eq!(r.status(), 204);
    let malformed =
        refused(alice.admin_call(Method::POST, "/v1/retention/checkpoint", Some(&serde_json::json!({}))).await);
    assert_eq!(malformed.0, 422, "a malformed report");
    let shaped =
        serde_json::json!({"tree_size": 5, "root": "03".repeat(32), "timestamp": 1, "signature": B64(vec![0; 64])});
    let not_retention = refused(alice.admin_call(Method::POST, "/v1/retention/checkpoint", Some(&shaped)).await);
    assert_eq!(not_retention, (403, "not_retention".into()), "users cannot report checkpoints");

    // The relay refuses an envelope without the retention device's wrap, and says which is missing.
    let invite = alice.create_invite(false).await.unwrap().invite;
    register(&server.url, &invite, "mallory").await;
    let mut mallory = Device::enrol(&server.url, network, "mallory", None, &[], 5).await;
    let c = mallory.create_conversation("direct", &[alice.user_id()]).await;
    let recipients = mallory.recipients(&c.id).await;
    let env = mallory.seal_to(c.id, &Content::Text("no archive please".into()), &recipients);
    let r = mallory.post_envelope(env.encode()).await;
    assert_eq!(r.status(), 409);
    let body: strongroom_wire::ErrorBody = r.json().await.unwrap();
    assert_eq!(body.error, "recipient_mismatch");
    assert_eq!(body.missing, vec![strongroom_wire::DeviceAddress { user: UserId::RETENTION, device: me }]);

    // A wrap the retention device cannot open (sealed under a policy signed
    // by some other key) is archived as unreadable evidence, not skipped.
    let fake = SigningKey::generate(&mut rand_core::OsRng);
    let policy =
        NetworkPolicy::sign(&fake, network, 99, now_ms(), vec![keys.device.retention_device().unwrap()]).unwrap();
    let verified = PolicyTracker::new(fake.verifying_key(), network).verify(&policy).unwrap();
    let mut all = recipients.clone();
    all.extend(verified.retention_recipients());
    let env = mallory.seal_to(c.id, &Content::Text("hidden from the archive?".into()), &all);
    assert_eq!(mallory.post_envelope(env.encode()).await.status(), 200);
    mallory.send_text_with_retention(&c.id, "an honest one", &alice.policy().await.unwrap()).await;
    let run = retention(&rdir, &["run", "--once"]);
    assert_eq!(run["run"]["archived"], 2);
    assert_eq!(run["run"]["unreadable"], 1);
    let hits = retention(&rdir, &["search", "--user", "mallory"]);
    let kinds: Vec<&str> = hits["hits"].as_array().unwrap().iter().map(|h| h["kind"].as_str().unwrap()).collect();
    assert_eq!(kinds, ["unreadable", "text"]);
    assert!(hits["hits"][0]["error"].as_str().unwrap().contains("wrap"), "{}", hits["hits"][0]);
    assert!(hits["hits"][0]["raw"].as_str().unwrap().len() > 100, "the envelope itself is kept");
    assert_eq!(retention(&rdir, &["verify"])["problem_count"], 0);

    // Turned off: its session ends at once, and it cannot log in again.
    ok_json(&[
        "admin",
        "retention",
        "disable",
        "--json",
        "--device",
        s(&rdir.join("retention-device.json")),
        "--key-file",
        s(&dir.join("acme.key")),
        "--profile",
        s(&dir.join("alice")),
    ]);
    let after = auth(http.get(format!("{}/v1/messages", server.url))).send().await.unwrap();
    assert_eq!(after.status(), 401);
    assert_eq!(post(login(me, now_ms(), [5; 16], &keys.signing)).await.status(), 401);
    let run = cli(&["retention", "--dir", s(&rdir), "run", "--once"]);
    assert!(String::from_utf8_lossy(&run.stderr).contains("not in the network's current policy"));
}

/// Findings 1 and 5 of #19: the retention service was down while carol was
/// in a group and then removed. Archived afterwards, the message sent while
/// she was a member still names her (the member set its sender committed
/// to, not the relay's list at archive time), the group's creation and her
/// removal are records of their own, and a hold on carol covers what she
/// received.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn addressees_are_the_members_the_sender_committed_to_and_holds_follow_them() {
    let dir = temp_dir("retention-addressees");
    let server = ServerProc::start(&dir.join("data"), &[]);
    let (alice, mut bob) = two_clients(&dir, &server).await;
    let invite = alice.create_invite(false).await.unwrap().invite;
    let mut carol =
        strongroom_client::Client::enrol(&dir.join("carol"), "carol passphrase", &invite, "carol", PASSWORD)
            .await
            .unwrap();
    let (rdir, mut alice) = turn_retention_on(&server, &dir, alice).await;
    let group = alice.create_conversation("group", &["bob", "carol"]).await.unwrap().id;
    alice.send_text(group, "while carol was here").await.unwrap();
    alice.change_members(group, &[], &["carol"], &[], &[]).await.unwrap();
    alice.send_text(group, "after carol left").await.unwrap();
    bob.sync().await.unwrap();
    carol.sync().await.unwrap();

    // Only now does the retention service run (it was down until here).
    retention(&rdir, &["run", "--once"]);
    let all = retention(&rdir, &["search"]);
    let hits = all["hits"].as_array().unwrap();
    let names = |h: &Value| {
        let mut v: Vec<String> =
            h["recipients"].as_array().unwrap().iter().map(|p| p["username"].as_str().unwrap().to_owned()).collect();
        v.sort();
        v
    };
    let text = |t: &str| hits.iter().find(|h| h["text"] == t).unwrap_or_else(|| panic!("{t} not in {all}"));
    assert_eq!(names(text("while carol was here")), ["alice", "bob", "carol"], "{all}");
    assert_eq!(text("while carol was here")["recipients_source"], "committed");
    assert_eq!(names(text("after carol left")), ["alice", "bob"]);
    let membership: Vec<&Value> = hits.iter().filter(|h| h["kind"] == "membership").collect();
    let actions: Vec<&str> = membership.iter().map(|h| h["control"]["action"].as_str().unwrap()).collect();
    assert_eq!(actions, ["created", "members_removed"], "{all}");
    assert_eq!(membership[0]["sender"]["username"], "alice");
    assert!(membership[0]["sender"]["device_id"].is_string(), "the signing device is on record");

    // Archiving again (a restart) adds no second copy of the statements.
    retention(&rdir, &["run", "--once"]);
    let again = retention(&rdir, &["search"]);
    assert_eq!(again["hits"].as_array().unwrap().iter().filter(|h| h["kind"] == "membership").count(), 2);

    // A hold on carol keeps what she received; the rest goes.
    let carol_id = carol.user_id().to_string();
    retention(&rdir, &["hold", "place", "--name", "carol-inquiry", "--user", &carol_id]);
    let purged = retention(&rdir, &["purge", "--period-days", "0"]);
    let left = retention(&rdir, &["search"]);
    let texts: Vec<&str> = left["hits"].as_array().unwrap().iter().filter_map(|h| h["text"].as_str()).collect();
    assert!(texts.contains(&"while carol was here"), "held: {left}");
    assert!(!texts.contains(&"after carol left"), "not hers: {purged}");
    let v = retention(&rdir, &["verify", "--offline"]);
    assert_eq!(v["problem_count"], 0, "{v}");
}

/// Finding 7 of #19: `retention run` stops cleanly on SIGTERM (the batch in
/// hand archived and acknowledged, its scratch directory removed, exit 0),
/// and `retention status` is never behind: an idle service keeps
/// `updated_at` fresh, and a hold or purge updates the record count.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn sigterm_stops_the_service_cleanly_and_status_stays_current() {
    let dir = temp_dir("retention-sigterm");
    let server = ServerProc::start(&dir.join("data"), &[]);
    let (alice, _bob) = two_clients(&dir, &server).await;
    let (rdir, mut alice) = turn_retention_on(&server, &dir, alice).await;
    let direct = alice.direct_with("bob").await.unwrap();
    alice.send_text(direct, "before the service starts").await.unwrap();
    let tmp = dir.join("service-tmp");
    std::fs::create_dir_all(&tmp).unwrap();
    let mut child = Command::new(bin())
        .args(["retention", "--dir", s(&rdir), "run"])
        .env("STRONGROOM_RETENTION_PASSPHRASE", "retention passphrase")
        .env("TMPDIR", &tmp)
        .stdout(Stdio::null())
        .stderr(Stdio::piped())
        .spawn()
        .unwrap();
    let status = || -> Value {
        std::fs::read(rdir.join("status.json")).ok().and_then(|b| serde_json::from_slice(&b).ok()).unwrap_or_default()
    };
    let deadline = std::time::Instant::now() + std::time::Duration::from_secs(60);
    while status()["records"] != 2 {
        assert!(std::time::Instant::now() < deadline, "nothing archived: {}", status());
        std::thread::sleep(std::time::Duration::from_millis(50));
    }
    // Idle, it still says it is alive.
    let first = status()["updated_at"].as_u64().unwrap();
    std::thread::sleep(std::time::Duration::from_millis(1200));
    assert!(status()["updated_at"].as_u64().unwrap() > first, "an idle service keeps its status fresh");
    assert!(std::fs::read_dir(&tmp).unwrap().next().is_some(), "the scratch directory exists while running");

    let term = Command::new("kill").args(["-TERM", &child.id().to_string()]).status().unwrap();
    assert!(term.success());
    let deadline = std::time::Instant::now() + std::time::Duration::from_secs(20);
    let exit = loop {
        if let Some(e) = child.try_wait().unwrap() {
            break e;
        }
        assert!(std::time::Instant::now() < deadline, "SIGTERM did not stop the service");
        std::thread::sleep(std::time::Duration::from_millis(50));
    };
    let mut err = String::new();
    std::io::Read::read_to_string(&mut child.stderr.take().unwrap(), &mut err).unwrap();
    assert!(exit.success(), "a clean stop: {exit:?} {err}");
    assert!(std::fs::read_dir(&tmp).unwrap().next().is_none(), "no scratch directory left behind");

    // A hold appends a record, and its access record: status follows at once.
    let who = ["--operator", "records.officer", "--reason", "SEC inquiry 14"];
    retention(&rdir, &[&who[..], &["hold", "place", "--name", "h", "--conversation", &direct.to_string()]].concat());
    assert_eq!(status()["records"], 4);
    assert!(status()["last_archived_at"].as_u64().unwrap() > 0, "the last archive time stands");
    // #20: every search, export, hold and purge is in the archive's access log.
    let hits = retention(&rdir, &[&who[..], &["search", "before"]].concat());
    assert_eq!(hits["hits"].as_array().unwrap().len(), 1, "the access log is not searched: {hits}");
    let log = retention(&rdir, &["access-log"]);
    let entries = log["entries"].as_array().unwrap();
    let what: Vec<(&str, &str, &str)> = entries
        .iter()
        .map(|e| (e["what"]["action"].as_str().unwrap(), e["actor"].as_str().unwrap(), e["why"].as_str().unwrap()))
        .collect();
    assert_eq!(
        what,
        [("hold_place", "records.officer", "SEC inquiry 14"), ("search", "records.officer", "SEC inquiry 14")],
        "{log}"
    );
    assert_eq!(entries[1]["what"]["results"], 1);
    let v = retention(&rdir, &["verify"]);
    assert_eq!((v["problem_count"].as_u64(), v["access_records"].as_u64()), (Some(0), Some(2)), "{v}");

    // Finding 4: with a witness, deleting the newest segment together with
    // its checkpoint no longer goes unnoticed.
    let wdir = dir.join("witness");
    alice.send_text(direct, "witnessed").await.unwrap();
    retention(&rdir, &["--witness", s(&wdir), "run", "--once"]);
    let v = retention(&rdir, &["--witness", s(&wdir), "verify", "--offline"]);
    assert_eq!((v["problem_count"].as_u64(), v["witness_checked"].as_bool()), (Some(0), Some(true)), "{v}");
    let newest = |sub: &str| {
        let mut v: Vec<PathBuf> =
            std::fs::read_dir(rdir.join("archive").join(sub)).unwrap().map(|e| e.unwrap().path()).collect();
        v.sort();
        v.pop().unwrap()
    };
    std::fs::remove_file(newest("segments")).unwrap();
    std::fs::remove_file(newest("checkpoints")).unwrap();
    let alone = retention(&rdir, &["verify", "--offline"]);
    assert_eq!(alone["problem_count"], 0, "the archive alone cannot tell: {alone}");
    let out = cli(&["retention", "--dir", s(&rdir), "--witness", s(&wdir), "verify", "--offline"]);
    assert!(!out.status.success());
    let text = String::from_utf8_lossy(&out.stdout);
    assert!(text.contains("newer than the archive's newest"), "{text}");
}

/// Finding 6 of #19: replacing the retention device strands nothing.
/// `admin retention disable` refuses while messages wait for the device;
/// `admin retention rotate` makes the new one active and the old one drain:
/// senders stop sealing to the old one, it archives its backlog, records the
/// handover (last sequence per conversation) and stops, and may no longer
/// log in; `verify --predecessor` over both archives finds no gap.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn rotating_the_retention_device_drains_the_old_one_and_loses_nothing() {
    let dir = temp_dir("retention-rotate");
    let server = ServerProc::start(&dir.join("data"), &[]);
    let (alice, mut bob) = two_clients(&dir, &server).await;
    let (old_dir, mut alice) = turn_retention_on(&server, &dir, alice).await;
    let direct = alice.direct_with("bob").await.unwrap();
    for i in 0..3 {
        alice.send_text(direct, &format!("for the old archive {i}")).await.unwrap();
    }
    // A second retention device, made the same way.
    let network = alice.network_id().to_string();
    let info: strongroom_wire::NetworkInfo =
        reqwest::get(format!("{}/v1/networks/{network}", server.url)).await.unwrap().json().await.unwrap();
    let key = strongroom_crypto::keys::VerifyingKey::from_bytes(info.network_public.0.try_into().unwrap()).unwrap();
    let fingerprint = strongroom_crypto::certs::NetworkFingerprint::of(&key).to_string();
    let new_dir = dir.join("retention-new");
    let args = ["--server", &server.url, "--network", &network, "--fingerprint", &fingerprint, "--name", "New archive"];
    ok_json(&[&["retention", "init", "--json", "--dir", s(&new_dir)][..], &args[..]].concat());
    let (old_device, new_device) = (old_dir.join("retention-device.json"), new_dir.join("retention-device.json"));
    let key_file = dir.join("acme.key");
    let admin = |args: &[&str]| {
        let profile = dir.join("alice");
        cli(&[&["admin", "retention"][..], args, &["--key-file", s(&key_file), "--profile", s(&profile)][..]].concat())
    };
    let (alice, (refused, rotated)) = with_profile_closed(alice, "alice passphrase", || {
        let refused = admin(&["disable", "--device", s(&old_device)]);
        let rotated = admin(&["rotate", "--json", "--from", s(&old_device), "--to", s(&new_device)]);
        (refused, rotated)
    })
    .await;
    assert!(!refused.status.success());
    assert!(String::from_utf8_lossy(&refused.stderr).contains("3 message(s) still wait"), "{refused:?}");
    assert!(rotated.status.success(), "{}", String::from_utf8_lossy(&rotated.stderr));
    let mut alice = alice;

    // From now on messages are sealed to the new device only.
    for i in 0..2 {
        alice.send_text(direct, &format!("for the new archive {i}")).await.unwrap();
    }
    bob.sync().await.unwrap();
    let backlog = alice.admin().retention_backlog().await.unwrap();
    let mut queued: Vec<(String, u64)> = backlog.iter().map(|b| (b.state.clone(), b.queued)).collect();
    queued.sort();
    assert_eq!(queued, [("active".to_owned(), 2), ("draining".to_owned(), 3)], "{backlog:?}");

    // The new archive alone, before the old one drained: verify says so.
    let new_run = retention(&new_dir, &["run", "--once"]);
    assert_eq!(new_run["run"]["archived"], 2, "{new_run}");
    let early = cli(&["retention", "--dir", s(&new_dir), "--json", "verify", "--predecessor", s(&old_dir)]);
    assert!(!early.status.success());
    let text = String::from_utf8_lossy(&early.stdout);
    assert!(text.contains("no archive here") && text.contains("records no handover"), "{text}");

    // The old one archives its backlog, hands over and stops; then it may not log in.
    let old_run = retention(&old_dir, &["run", "--once"]);
    assert_eq!((old_run["run"]["archived"].as_u64(), old_run["run"]["handed_over"].as_bool()), (Some(3), Some(true)));
    let again = cli(&["retention", "--dir", s(&old_dir), "run", "--once"]);
    assert!(!again.status.success());
    assert!(String::from_utf8_lossy(&again.stderr).contains("may no longer log in"), "{again:?}");
    let handover = retention(&old_dir, &["search"])["hits"]
        .as_array()
        .unwrap()
        .iter()
        .find(|h| h["kind"] == "handover")
        .cloned()
        .unwrap();
    assert_eq!(handover["control"]["last_seq"][direct.to_string()], 3, "{handover}");

    let both = retention(&new_dir, &["verify", "--offline", "--predecessor", s(&old_dir)]);
    assert_eq!(both["problem_count"], 0, "{both}");
}

/// #20 health: `retention run` pushes start, backlog and stop to a webhook,
/// and a failed scheduled verify (a checkpoint's signature altered).
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_service_reports_its_health_to_a_webhook() {
    use std::sync::{Arc, Mutex};
    let dir = temp_dir("retention-health");
    let server = ServerProc::start(&dir.join("data"), &[]);
    let (alice, _bob) = two_clients(&dir, &server).await;
    let (rdir, mut alice) = turn_retention_on(&server, &dir, alice).await;
    let direct = alice.direct_with("bob").await.unwrap();
    for i in 0..3 {
        alice.send_text(direct, &format!("backlog {i}")).await.unwrap();
    }
    let got: Arc<Mutex<Vec<Value>>> = Arc::default();
    let sink = got.clone();
    let app = axum::Router::new().route(
        "/hook",
        axum::routing::post(move |axum::Json(v): axum::Json<Value>| {
            let sink = sink.clone();
            async move {
                sink.lock().unwrap().push(v);
                axum::http::StatusCode::NO_CONTENT
            }
        }),
    );
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let hook = format!("http://{}/hook", listener.local_addr().unwrap());
    tokio::spawn(async move { axum::serve(listener, app).await });
    let events = |got: &Arc<Mutex<Vec<Value>>>| -> Vec<String> {
        got.lock().unwrap().drain(..).map(|v| v["event"].as_str().unwrap().to_owned()).collect()
    };
    let run = |rdir: &Path, hook: &str| {
        let args = ["run", "--once", "--webhook", hook, "--verify-every-secs", "1", "--backlog-alert", "1"];
        tokio::task::block_in_place(|| retention(rdir, &args))
    };
    run(&rdir, &hook);
    assert_eq!(events(&got), ["start", "backlog", "stop"], "3 waited, more than 1");

    // A checkpoint's signature altered: the scheduled verify says so.
    let mut checkpoints: Vec<PathBuf> =
        std::fs::read_dir(rdir.join("archive/checkpoints")).unwrap().map(|e| e.unwrap().path()).collect();
    checkpoints.sort();
    let mut bytes = std::fs::read(&checkpoints[0]).unwrap();
    let last = bytes.len() - 1;
    bytes[last] ^= 1;
    std::fs::write(&checkpoints[0], bytes).unwrap();
    run(&rdir, &hook);
    let seen = got.lock().unwrap().clone();
    let kinds: Vec<&str> = seen.iter().map(|v| v["event"].as_str().unwrap()).collect();
    assert_eq!(kinds, ["start", "verify_failed", "stop"], "{seen:?}");
    assert!(seen[1]["detail"]["problems"][0].as_str().unwrap().contains("signature does not verify"), "{seen:?}");
}

/// The service dies (abort, as in a power cut) after a batch is durable in
/// the archive but before the relay is told: the relay still holds the
/// batch, and the next run acknowledges it without archiving it twice.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_crash_between_archive_and_ack_loses_and_duplicates_nothing() {
    let dir = temp_dir("retention-crash-ack");
    let server = ServerProc::start(&dir.join("data"), &[]);
    let (alice, _bob) = two_clients(&dir, &server).await;
    let (rdir, mut alice) = turn_retention_on(&server, &dir, alice).await;
    let c = alice.create_conversation("group", &["bob"]).await.unwrap();
    for i in 0..3 {
        alice.send_text(c.id, &format!("before the crash {i}")).await.unwrap();
    }
    assert_eq!(metric(&server, "strongroom_queue_depth{kind=\"retention\"}").await, 3);

    let out = Command::new(bin())
        .args(["retention", "--dir", s(&rdir), "run", "--once"])
        .env("STRONGROOM_RETENTION_PASSPHRASE", "retention passphrase")
        .env("STRONGROOM_FAULT", "abort-before-ack")
        .output()
        .unwrap();
    assert!(!out.status.success(), "the fault hook did not fire: {}", String::from_utf8_lossy(&out.stderr));
    // Written and on disk (fsynced before the hook), yet still queued.
    let archived = std::fs::read_dir(rdir.join("archive/segments")).unwrap().count();
    assert!(archived >= 1, "nothing reached the archive before the crash");
    assert_eq!(metric(&server, "strongroom_queue_depth{kind=\"retention\"}").await, 3, "acknowledged before the crash");
    let v = retention(&rdir, &["verify", "--offline"]);
    assert_eq!(v["problem_count"], 0, "{v}");
    assert_eq!(v["records"], 4, "three messages and the creation were archived before the crash: {v}");

    let run = retention(&rdir, &["run", "--once"]);
    assert_eq!(run["run"]["duplicates"], 3, "{run}");
    assert_eq!(run["run"]["archived"], 0, "{run}");
    assert_eq!(metric(&server, "strongroom_queue_depth{kind=\"retention\"}").await, 0);
    let v = retention(&rdir, &["verify"]);
    assert_eq!(v["problem_count"], 0, "{v}");
    assert_eq!(v["records"], 4, "nothing archived twice: {v}");
}

/// A second copy: every write goes to the replica too; one added later is
/// filled when the archive is opened; `verify --replica` checks both and
/// names a segment missing from either.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_replica_holds_a_second_copy_and_verify_names_what_either_lacks() {
    let dir = temp_dir("retention-replica");
    let server = ServerProc::start(&dir.join("data"), &[]);
    let (alice, _bob) = two_clients(&dir, &server).await;
    let (rdir, mut alice) = turn_retention_on(&server, &dir, alice).await;
    let c = alice.create_conversation("group", &["bob"]).await.unwrap();
    let file = dir.join("minutes.txt");
    std::fs::write(&file, b"minutes: approved").unwrap();
    alice.send_file(c.id, &file, &|_, _| {}).await.unwrap();
    alice.send_text(c.id, "first batch").await.unwrap();
    // Archived before there was a replica.
    retention(&rdir, &["run", "--once"]);
    let replica = dir.join("replica");
    let spec = s(&replica);
    alice.send_text(c.id, "second batch").await.unwrap();
    retention(&rdir, &["--replica", spec, "run", "--once"]);
    let seg = |root: &Path| {
        let mut v: Vec<_> = std::fs::read_dir(root.join("segments"))
            .unwrap()
            .map(|e| e.unwrap().file_name().into_string().unwrap())
            .collect();
        v.sort();
        v
    };
    assert_eq!(seg(&replica), seg(&rdir.join("archive")), "caught up, then written to both");
    assert_eq!(std::fs::read_dir(replica.join("files")).unwrap().count(), 1);
    let v = retention(&rdir, &["--replica", spec, "verify"]);
    assert_eq!(v["problem_count"], 0, "{v}");
    assert_eq!(v["replica"]["records"], v["records"], "{v}");
    assert_eq!(v["replica"]["root"], v["root"], "{v}");

    // Lost from the replica: named; the next opening copies it back.
    let first = seg(&replica)[0].clone();
    std::fs::remove_file(replica.join("segments").join(&first)).unwrap();
    let out = cli(&["retention", "--dir", s(&rdir), "--replica", spec, "--json", "verify", "--offline"]);
    assert!(!out.status.success());
    let v: Value = serde_json::from_slice(&out.stdout).unwrap();
    assert!(v["problems"].to_string().contains(&format!("segments/{first} is missing from the replica")), "{v}");
    assert_eq!(v["replica"]["missing_from_replica"][0], format!("segments/{first}"), "{v}");
    retention(&rdir, &["--replica", spec, "hold", "list"]);
    let v = retention(&rdir, &["--replica", spec, "verify", "--offline"]);
    assert_eq!(v["problem_count"], 0, "{v}");

    // Deleted from the archive: the replica still has it, and says so.
    let archive_segments = rdir.join("archive/segments");
    let last = seg(&rdir.join("archive")).pop().unwrap();
    std::fs::remove_file(archive_segments.join(&last)).unwrap();
    let out = cli(&["retention", "--dir", s(&rdir), "--replica", spec, "--json", "verify", "--offline"]);
    assert!(!out.status.success());
    let v: Value = serde_json::from_slice(&out.stdout).unwrap();
    assert!(
        v["problems"]
            .to_string()
            .contains(&format!("segments/{last} is missing from the archive but the replica has it")),
        "{v}"
    );
}
