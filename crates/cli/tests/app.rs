//! `strongroom app` against the real relay, as an attacker on the same
//! machine would try it: a rebinding `Host`, no cookie, a reused or wrong
//! launch link, a write without the CSRF token, a token without the scope,
//! a WebSocket from a foreign page; then the owner's way in, unlock, a live
//! exchange with Bob (his message arrives over the event WebSocket), HTML
//! kept as text, one process per profile, and the CLI again once it stops.
#![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic, clippy::indexing_slicing)]

mod common;

use std::io::BufRead;
use std::process::{Child, Command, Stdio};
use std::time::Duration;

use common::*;
use futures_util::StreamExt;
use serde_json::{json, Value};
use strongroom_crypto::content::Content;

struct AppProc {
    child: Child,
    port: u16,
    secret: String,
}

impl Drop for AppProc {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

fn start_app(profile: &std::path::Path) -> AppProc {
    let mut child = Command::new(bin())
        .args(["app", "--profile", s(profile), "--no-open"])
        .stdout(Stdio::piped())
        .stderr(Stdio::null())
        .spawn()
        .unwrap();
    let mut line = String::new();
    let mut out = std::io::BufReader::new(child.stdout.take().unwrap());
    out.read_line(&mut line).unwrap();
    // Keep reading whatever else it prints.
    std::thread::spawn(move || std::io::copy(&mut out, &mut std::io::sink()));
    let url = line.split_whitespace().find(|w| w.starts_with("http://127.0.0.1:")).unwrap_or_else(|| panic!("{line}"));
    let rest = url.trim_start_matches("http://127.0.0.1:");
    let (port, query) = rest.split_once('/').unwrap();
    let secret = query.trim_start_matches("?k=").to_owned();
    AppProc { child, port: port.parse().unwrap(), secret }
}

/// The launch link once: the session cookie and the session secret the
/// redirect's fragment hands the page.
async fn sign_in(h: &reqwest::Client, app: &AppProc) -> (String, String) {
    let r = h.get(format!("http://127.0.0.1:{}/?k={}", app.port, app.secret)).send().await.unwrap();
    let cookie = r.headers()["set-cookie"].to_str().unwrap().split(';').next().unwrap().to_owned();
    let csrf = r.headers()["location"].to_str().unwrap().trim_start_matches("/#t=").to_owned();
    (cookie, csrf)
}

fn http() -> reqwest::Client {
    reqwest::Client::builder().redirect(reqwest::redirect::Policy::none()).build().unwrap()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_app_lets_only_its_owner_in_and_chats_live() {
    let dir = temp_dir("app");
    let mut server = ServerProc::start(&dir.join("data"), &[]);
    let (alice, mut bob) = two_clients(&dir, &server).await;
    // Retention on: the app says so wherever it applies.
    let (_rdir, alice) = turn_retention_on(&server, &dir, alice).await;
    let to_alice = bob.direct_with("alice").await.unwrap();
    bob.send_text(to_alice, "before the app").await.unwrap();
    alice.close().await;
    let app = start_app(&dir.join("alice"));
    let base = format!("http://127.0.0.1:{}", app.port);
    let h = http();

    // DNS rebinding: another Host is refused.
    let r = h
        .get(format!("{base}/api/v1/session"))
        .header("Host", format!("evil.example:{}", app.port))
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), 403);
    // No cookie, no token.
    let r = h.get(format!("{base}/api/v1/session")).send().await.unwrap();
    assert_eq!(r.status(), 401);
    assert!(r.headers().get("access-control-allow-origin").is_none(), "no CORS");
    assert_eq!(r.headers()["cache-control"], "no-store");
    assert!(r.headers()["content-security-policy"].to_str().unwrap().contains("script-src 'self'"));
    // A wrong launch link.
    assert_eq!(h.get(format!("{base}/?k=00")).send().await.unwrap().status(), 401);
    // The right one, once: a cookie that scripts cannot read.
    let r = h.get(format!("{base}/?k={}", app.secret)).send().await.unwrap();
    assert_eq!(r.status(), 303);
    let set = r.headers()["set-cookie"].to_str().unwrap().to_owned();
    assert!(set.contains("HttpOnly") && set.contains("SameSite=Strict"), "{set}");
    let cookie = set.split(';').next().unwrap().to_owned();
    // The session secret comes in the fragment, for the page's sessionStorage.
    let location = r.headers()["location"].to_str().unwrap().to_owned();
    let csrf = location.strip_prefix("/#t=").unwrap_or_else(|| panic!("{location}")).to_owned();
    // The cookie alone (which other ports of 127.0.0.1 also receive) opens nothing.
    let r = h.get(format!("{base}/api/v1/session")).header("Cookie", &cookie).send().await.unwrap();
    assert_eq!(r.status(), 403);
    assert_eq!(h.get(format!("{base}/?k={}", app.secret)).send().await.unwrap().status(), 401, "used once");
    // The page itself: our script only, no inline script.
    let page = h.get(format!("{base}/")).send().await.unwrap().text().await.unwrap();
    assert!(page.contains("<script src=\"/app.js\"") && !page.contains("<script>"));

    let session: Value = h
        .get(format!("{base}/api/v1/session"))
        .header("Cookie", &cookie)
        .header("X-CSRF-Token", &csrf)
        .send()
        .await
        .unwrap()
        .json()
        .await
        .unwrap();
    assert_eq!(session["unlocked"], false);
    // Locked: nothing to read yet.
    assert_eq!(
        h.get(format!("{base}/api/v1/conversations"))
            .header("Cookie", &cookie)
            .header("X-CSRF-Token", &csrf)
            .send()
            .await
            .unwrap()
            .status(),
        423
    );
    // A forged write (no CSRF token) is refused.
    let unlock = |pass: &str, with_csrf: bool| {
        let mut r =
            h.post(format!("{base}/api/v1/unlock")).header("Cookie", &cookie).json(&json!({"passphrase": pass}));
        if with_csrf {
            r = r.header("X-CSRF-Token", &csrf);
        }
        r.send()
    };
    assert_eq!(unlock("alice passphrase", false).await.unwrap().status(), 403);
    let wrong = unlock("not it at all", true).await.unwrap();
    assert_eq!(wrong.status(), 401);
    assert_eq!(unlock("alice passphrase", true).await.unwrap().status(), 200);
    let session: Value = h
        .get(format!("{base}/api/v1/session"))
        .header("Cookie", &cookie)
        .header("X-CSRF-Token", &csrf)
        .send()
        .await
        .unwrap()
        .json()
        .await
        .unwrap();
    assert_eq!(session["retention"], true, "the banner shows: {session}");
    // Bad input: a clear JSON refusal, never a panic.
    let ui = |r: reqwest::RequestBuilder| r.header("Cookie", &cookie).header("X-CSRF-Token", &csrf);
    let r = ui(h.get(format!("{base}/api/v1/conversations/../../etc/messages"))).send().await.unwrap();
    assert!(r.status() == 400 || r.status() == 404, "{}", r.status());
    let r = ui(h.get(format!("{base}/api/v1/conversations/nothex/messages"))).send().await.unwrap();
    assert_eq!(r.status(), 400);
    assert_eq!(r.json::<Value>().await.unwrap()["error"], "bad_id");
    let r = ui(h.post(format!("{base}/api/v1/direct")).header("Content-Type", "application/json").body("{not json"))
        .send()
        .await
        .unwrap();
    assert!(r.status().is_client_error(), "{}", r.status());
    let r = ui(h.post(format!("{base}/api/v1/direct")).body("username=bob")).send().await.unwrap();
    assert_eq!(r.status(), 415, "a form post never reaches a handler");
    let r = ui(h.post(format!("{base}/api/v1/direct")).json(&json!({"username": "nobody-by-that-name"})))
        .send()
        .await
        .unwrap();
    assert!(r.status().is_client_error(), "{}", r.status());
    let r = ui(h.get(format!("{base}/api/v1/nowhere"))).send().await.unwrap();
    assert_eq!(r.status(), 404);
    assert_eq!(r.json::<Value>().await.unwrap()["error"], "not_found");
    assert!(page.contains("Data retention is on"), "the banner's words are in the page");

    // Tokens: stored hashed, scoped.
    let out =
        cli(&["app", "--profile", s(&dir.join("alice")), "token", "create", "--name", "reader", "--scope", "read"]);
    assert!(out.status.success(), "{}", String::from_utf8_lossy(&out.stderr));
    let token = String::from_utf8(out.stdout).unwrap().trim().to_owned();
    let stored = std::fs::read_to_string(dir.join("alice/app-tokens.json")).unwrap();
    assert!(!stored.contains(&token), "only the hash is kept");
    let r = h.get(format!("{base}/api/v1/conversations")).bearer_auth(&token).send().await.unwrap();
    assert_eq!(r.status(), 200);
    let list: Value = r.json().await.unwrap();
    let direct = list["conversations"].as_array().unwrap().iter().find(|c| c["title"] == "bob").unwrap().clone();
    let direct_id = direct["id"].as_str().unwrap().to_owned();
    let r = h
        .post(format!("{base}/api/v1/conversations/{direct_id}/messages"))
        .bearer_auth(&token)
        .json(&json!({"text": "hi"}))
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), 403, "a read token cannot send");
    assert_eq!(
        h.get(format!("{base}/api/v1/conversations")).bearer_auth("srt_wrong").send().await.unwrap().status(),
        401
    );
    let bad = cli(&["app", "--profile", s(&dir.join("alice")), "token", "create", "--name", "x", "--scope", "admin"]);
    assert!(String::from_utf8_lossy(&bad.stderr).contains("unknown scope"));

    // Account flows are the page's, never a token's.
    let r = h
        .post(format!("{base}/api/v1/unlock"))
        .bearer_auth(&token)
        .json(&json!({"passphrase": "x"}))
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), 403);

    // The event WebSocket: the cookie alone, or a foreign page, is refused;
    // a one-time ticket from our page is served once.
    let ws_url = format!("ws://127.0.0.1:{}/api/v1/events/ws", app.port);
    let ours = format!("http://127.0.0.1:{}", app.port);
    let ws = |url: String, origin: &str| {
        let mut req = tokio_tungstenite::tungstenite::client::IntoClientRequest::into_client_request(url).unwrap();
        req.headers_mut().insert("Origin", origin.parse().unwrap());
        req.headers_mut().insert("Cookie", cookie.parse().unwrap());
        tokio_tungstenite::connect_async(req)
    };
    assert!(ws(ws_url.clone(), &ours).await.is_err(), "the cookie alone opens no socket");
    let ticket = || async {
        let v: Value = h
            .post(format!("{base}/api/v1/events/ticket"))
            .header("Cookie", &cookie)
            .header("X-CSRF-Token", &csrf)
            .send()
            .await
            .unwrap()
            .json()
            .await
            .unwrap();
        v["ticket"].as_str().unwrap().to_owned()
    };
    let t = ticket().await;
    assert!(ws(format!("{ws_url}?ticket={t}"), "http://evil.example").await.is_err(), "a foreign Origin is refused");
    // From the newest event on: what arrives next is news.
    let log: Value = h
        .get(format!("{base}/api/v1/events"))
        .header("Cookie", &cookie)
        .header("X-CSRF-Token", &csrf)
        .send()
        .await
        .unwrap()
        .json()
        .await
        .unwrap();
    let newest = log["events"].as_array().unwrap().last().map(|e| e["id"].as_u64().unwrap()).unwrap_or(0);
    let t = ticket().await;
    let (mut events, _) = ws(format!("{ws_url}?after={newest}&ticket={t}"), &ours).await.unwrap();
    assert!(ws(format!("{ws_url}?ticket={t}"), &ours).await.is_err(), "a ticket is used once");

    // Alice sends HTML from the app; Bob reads it as the text it is.
    let html = "<script>alert(1)</script><b>bold?</b>";
    let r = h
        .post(format!("{base}/api/v1/conversations/{direct_id}/messages"))
        .header("Cookie", &cookie)
        .header("X-CSRF-Token", &csrf)
        .json(&json!({"text": html}))
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), 200, "{}", r.text().await.unwrap());
    let got = bob.sync().await.unwrap();
    assert!(got.received.iter().any(|m| m.content == Content::Text(html.into())));

    // Bob answers; Alice's app hears of it over the WebSocket, live.
    bob.send_text(to_alice, "live from bob").await.unwrap();
    let bob_id = bob.user_id().to_string();
    let heard = tokio::time::timeout(Duration::from_secs(20), async {
        while let Some(Ok(frame)) = events.next().await {
            if let tokio_tungstenite::tungstenite::Message::Text(t) = frame {
                let e: Value = serde_json::from_str(&t).unwrap();
                if e["kind"]["type"] == "message" && e["kind"]["sender"] == bob_id {
                    return e;
                }
            }
        }
        panic!("the event socket closed");
    })
    .await
    .expect("no event for Bob's message within 20 s");
    assert!(heard["id"].as_u64().unwrap() > newest);
    let deadline = tokio::time::Instant::now() + Duration::from_secs(20);
    loop {
        let msgs: Value = h
            .get(format!("{base}/api/v1/conversations/{direct_id}/messages"))
            .header("Cookie", &cookie)
            .header("X-CSRF-Token", &csrf)
            .send()
            .await
            .unwrap()
            .json()
            .await
            .unwrap();
        let texts: Vec<&str> =
            msgs["messages"].as_array().unwrap().iter().map(|m| m["text"].as_str().unwrap()).collect();
        if texts.contains(&"live from bob") {
            assert!(texts.contains(&html), "HTML is data: {texts:?}");
            assert!(texts.contains(&"before the app"));
            break;
        }
        assert!(tokio::time::Instant::now() < deadline, "bob's message is not in the timeline: {texts:?}");
        tokio::time::sleep(Duration::from_millis(200)).await;
    }

    // Idle, the app waits on its doorbell (a notice-only socket) instead of
    // polling: the relay answers next to no requests while nothing happens
    // (polling every 0.7 s, it answered at least one a poll), and Bob's
    // message above came at once, not at the 30 s safety-net fetch.
    let metric = |text: &str, name: &str| -> u64 {
        text.lines().filter(|l| l.starts_with(name)).filter_map(|l| l.rsplit(' ').next()?.parse::<u64>().ok()).sum()
    };
    let before = reqwest::get(format!("{}/metrics", server.url)).await.unwrap().text().await.unwrap();
    assert!(metric(&before, "strongroom_connections ") >= 1, "the doorbell is open: {before}");
    tokio::time::sleep(Duration::from_millis(4200)).await;
    let after = reqwest::get(format!("{}/metrics", server.url)).await.unwrap().text().await.unwrap();
    let answered =
        metric(&after, "strongroom_http_responses_total") - metric(&before, "strongroom_http_responses_total");
    assert!(answered <= 2, "an idle app made {answered} requests in 4.2 s");

    // The relay goes down: a send is kept and queued, and goes when it is back.
    server.stop();
    let r: Value = h
        .post(format!("{base}/api/v1/conversations/{direct_id}/messages"))
        .header("Cookie", &cookie)
        .header("X-CSRF-Token", &csrf)
        .json(&json!({"text": "sent while the relay was down"}))
        .send()
        .await
        .unwrap()
        .json()
        .await
        .unwrap();
    assert_eq!(r["queued"], true, "{r}");
    server.restart();
    let deadline = tokio::time::Instant::now() + Duration::from_secs(30);
    loop {
        let got = bob.sync().await.unwrap();
        if got.received.iter().any(|m| m.content == Content::Text("sent while the relay was down".into())) {
            break;
        }
        assert!(tokio::time::Instant::now() < deadline, "the queued message never went out");
        tokio::time::sleep(Duration::from_millis(300)).await;
    }

    // One process per profile: a second app and the CLI are told why.
    let second = Command::new(bin()).args(["app", "--profile", s(&dir.join("alice")), "--no-open"]).output().unwrap();
    assert!(!second.status.success());
    assert!(
        String::from_utf8_lossy(&second.stderr).contains("another Strongroom process"),
        "{}",
        String::from_utf8_lossy(&second.stderr)
    );
    let read = cli(&["read", "--profile", s(&dir.join("alice")), "--json"]);
    assert!(!read.status.success());
    drop(app);
    let read = cli(&["read", "--profile", s(&dir.join("alice")), "--json"]);
    assert!(read.status.success(), "the CLI works once the app stops: {}", String::from_utf8_lossy(&read.stderr));
}

/// Two apps in one headless Chromium, a tab each: Alice enrols from the
/// app's first page (checking the network's name and fingerprint), Bob
/// unlocks his; they chat live; a burn-on-read message is gone afterwards
/// from both pages and from Chromium's profile directory. Screenshots go to
/// `$CARGO_TARGET_TMPDIR/app-screenshots/`.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn two_apps_in_a_real_browser_enrol_unlock_and_chat() {
    let dir = temp_dir("app-browser");
    let chromium_profile = dir.join("chromium");
    let Some(mut b) = common::browser::Browser::start("app-screenshots", Some(&chromium_profile)).await else { return };
    let server = ServerProc::start(&dir.join("data"), &[]);
    let (_, admin_invite) = create_network(&server, &dir, "acme");
    let bob = strongroom_client::Client::enrol(&dir.join("bob"), "bob passphrase", &admin_invite, "bob", PASSWORD)
        .await
        .unwrap();
    let invite = bob.create_invite(false).await.unwrap().invite;
    bob.close().await;

    let alice_app = start_app(&dir.join("alice"));
    let bob_app = start_app(&dir.join("bob"));

    // Alice: the first page enrols her.
    b.go(&format!("http://127.0.0.1:{}/?k={}", alice_app.port, alice_app.secret)).await;
    let alice_tab = b.tab().await;
    b.wait_for("Join your organisation").await;
    b.typ("#invite", &invite).await;
    b.click("#check-invite").await;
    b.wait_for("acme").await;
    let shown = b.text(&b.find("#network-fingerprint").await).await;
    assert!(!shown.is_empty(), "the fingerprint is shown before joining");
    b.shot("enrol").await;
    b.typ("#enrol-username", "alice").await;
    b.typ("#enrol-password", PASSWORD).await;
    b.typ("#enrol-passphrase", "alice passphrase").await;
    b.click("#enrol-submit").await;
    b.wait_for("— alice").await;

    // Bob: his tab, his app, locked until his passphrase.
    let bob_tab = b.new_tab().await;
    b.go(&format!("http://127.0.0.1:{}/?k={}", bob_app.port, bob_app.secret)).await;
    b.wait_for("Unlock").await;
    b.typ("#passphrase", "not bob's passphrase").await;
    b.click("#unlock").await;
    b.wait_for("wrong passphrase").await;
    b.typ("#passphrase", "bob passphrase").await;
    b.shot("unlock").await;
    b.click("#unlock").await;
    b.wait_for("— bob").await;

    // Alice starts the chat and writes; Bob sees it without reloading.
    b.switch_to(&alice_tab).await;
    b.typ("#new-chat-user", "bob").await;
    b.click("#new-chat button").await;
    b.wait_for("<h2 id=\"title\">bob</h2>").await;
    b.typ("#text", "<b>hello</b> from Alice's app").await;
    b.click("#send").await;
    b.wait_for("Delivered").await;
    b.switch_to(&bob_tab).await;
    let chats = b.wait_for("&lt;b&gt;hello&lt;/b&gt; from Alice").await;
    assert!(!chats.contains("<b>hello</b>"), "markup in a message is shown as text");
    b.click("#conversations li").await;
    b.wait_for("<h2 id=\"title\">alice</h2>").await;
    b.typ("#text", "hi Alice, got it").await;
    b.click("#send").await;
    b.shot("bob-chat").await;
    b.switch_to(&alice_tab).await;
    b.wait_for("hi Alice, got it").await;
    // Bob's page showed Alice's message: a read receipt came back.
    b.wait_for(">Read<").await;
    b.shot("alice-chat").await;

    // Burn on read: ten seconds after Bob's page shows it, it is gone everywhere.
    let secret = "the vault code is 7319";
    let burn = b.find("#burn option[value='10']").await;
    b.click_el(&burn).await;
    b.typ("#text", secret).await;
    b.click("#send").await;
    b.switch_to(&bob_tab).await;
    b.wait_for(secret).await;
    b.shot("burn-shown").await;
    let gone = |src: &str| !src.contains(secret);
    let deadline = std::time::Instant::now() + std::time::Duration::from_secs(40);
    for tab in [&bob_tab, &alice_tab] {
        b.switch_to(tab).await;
        while !gone(&b.source().await) {
            assert!(std::time::Instant::now() < deadline, "the burnt message is still on the page of tab {tab}");
            tokio::time::sleep(std::time::Duration::from_millis(500)).await;
        }
    }
    b.shot("burnt").await;
    b.quit().await;
    drop(b);
    // Nothing of it in Chromium's files either (no-store: nothing cached).
    let mut stack = vec![chromium_profile.clone()];
    while let Some(d) = stack.pop() {
        for entry in std::fs::read_dir(&d).into_iter().flatten().flatten() {
            let path = entry.path();
            if path.is_dir() {
                stack.push(path);
            } else if let Ok(bytes) = std::fs::read(&path) {
                assert!(
                    !bytes.windows(secret.len()).any(|w| w == secret.as_bytes()),
                    "the burnt text is in Chromium's {}",
                    path.display()
                );
            }
        }
    }
    drop(alice_app);
    drop(bob_app);
}

/// A new device linked from the app's first page: it shows a code, the
/// primary device approves it, and the app is that account's.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_app_links_a_new_device_approved_by_the_primary() {
    let dir = temp_dir("app-link");
    let server = ServerProc::start(&dir.join("data"), &[]);
    let (mut alice, _bob) = two_clients(&dir, &server).await;
    let app = start_app(&dir.join("alice-laptop"));
    let base = format!("http://127.0.0.1:{}", app.port);
    let h = http();
    let (cookie, csrf) = sign_in(&h, &app).await;
    let session: Value = h
        .get(format!("{base}/api/v1/session"))
        .header("Cookie", &cookie)
        .header("X-CSRF-Token", &csrf)
        .send()
        .await
        .unwrap()
        .json()
        .await
        .unwrap();
    assert_eq!((session["enrolled"].clone(), session["unlocked"].clone()), (json!(false), json!(false)));
    let body = json!({
        "server": server.url, "network": alice.network_id().to_string(), "username": "alice",
        "password": PASSWORD, "passphrase": "laptop passphrase",
    });
    let bad = h
        .post(format!("{base}/api/v1/link"))
        .header("Cookie", &cookie).header("X-CSRF-Token", &csrf)
        .json(&json!({"server": server.url, "network": "nothex", "username": "alice", "password": "x", "passphrase": "y"}))
        .send()
        .await
        .unwrap();
    assert_eq!(bad.status(), 400);
    let r: Value = h
        .post(format!("{base}/api/v1/link"))
        .header("Cookie", &cookie)
        .header("X-CSRF-Token", &csrf)
        .json(&body)
        .send()
        .await
        .unwrap()
        .json()
        .await
        .unwrap();
    let code = r["code"].as_str().unwrap_or_else(|| panic!("{r}")).to_owned();
    alice.approve_link(&code).await.unwrap();
    let deadline = tokio::time::Instant::now() + Duration::from_secs(30);
    loop {
        let s: Value = h
            .get(format!("{base}/api/v1/session"))
            .header("Cookie", &cookie)
            .header("X-CSRF-Token", &csrf)
            .send()
            .await
            .unwrap()
            .json()
            .await
            .unwrap();
        if s["unlocked"] == true {
            assert_eq!(s["username"], "alice");
            break;
        }
        assert!(s["link_error"].is_null(), "{s}");
        assert!(tokio::time::Instant::now() < deadline, "never linked: {s}");
        tokio::time::sleep(Duration::from_millis(300)).await;
    }
    let list = h
        .get(format!("{base}/api/v1/conversations"))
        .header("Cookie", &cookie)
        .header("X-CSRF-Token", &csrf)
        .send()
        .await
        .unwrap();
    assert_eq!(list.status(), 200);
}

/// Failed unlocks in the app count toward the security group's lockout:
/// the third erases the device's data.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn failed_unlocks_in_the_app_count_toward_the_lockout() {
    let dir = temp_dir("app-lockout");
    let server = ServerProc::start(&dir.join("data"), &[]);
    let (alice, bob) = two_clients(&dir, &server).await;
    alice.close().await;
    let alice_dir = dir.join("alice");
    for args in [
        ["admin", "groups", "create", "strict", "--set", "device_lockout=3"].as_slice(),
        ["admin", "users", "group", "bob", "--group", "strict"].as_slice(),
    ] {
        let mut all = args.to_vec();
        all.extend_from_slice(&["--json", "--profile", s(&alice_dir)]);
        let out = cli(&all);
        assert!(out.status.success(), "{}", String::from_utf8_lossy(&out.stderr));
    }
    bob.my_policy().await.unwrap();
    bob.close().await;

    let app = start_app(&dir.join("bob"));
    let base = format!("http://127.0.0.1:{}", app.port);
    let h = http();
    let (cookie, csrf) = sign_in(&h, &app).await;
    for attempt in 1..=3 {
        let r = h
            .post(format!("{base}/api/v1/unlock"))
            .header("Cookie", &cookie)
            .header("X-CSRF-Token", &csrf)
            .json(&json!({"passphrase": "not bob's passphrase"}))
            .send()
            .await
            .unwrap();
        let status = r.status().as_u16();
        let body: Value = r.json().await.unwrap();
        match attempt {
            1 | 2 => assert_eq!(status, 401, "{body}"),
            _ => {
                assert_eq!(status, 410, "{body}");
                assert!(body["message"].as_str().unwrap().contains("3 failed unlocks"), "{body}");
            }
        }
    }
    assert!(!dir.join("bob/profile.json").exists(), "the device's data is erased");
}
