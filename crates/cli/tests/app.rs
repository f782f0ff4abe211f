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
    std::io::BufReader::new(child.stdout.take().unwrap()).read_line(&mut line).unwrap();
    let url = line.split_whitespace().find(|w| w.starts_with("http://127.0.0.1:")).unwrap_or_else(|| panic!("{line}"));
    let rest = url.trim_start_matches("http://127.0.0.1:");
    let (port, query) = rest.split_once('/').unwrap();
    let secret = query.trim_start_matches("?k=").to_owned();
    AppProc { child, port: port.parse().unwrap(), secret }
}

fn http() -> reqwest::Client {
    reqwest::Client::builder().redirect(reqwest::redirect::Policy::none()).build().unwrap()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_app_lets_only_its_owner_in_and_chats_live() {
    let dir = temp_dir("app");
    let server = ServerProc::start(&dir.join("data"), &[]);
    let (alice, mut bob) = two_clients(&dir, &server).await;
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
    assert_eq!(h.get(format!("{base}/?k={}", app.secret)).send().await.unwrap().status(), 401, "used once");
    // The page itself: our script only, no inline script.
    let page = h.get(format!("{base}/")).send().await.unwrap().text().await.unwrap();
    assert!(page.contains("<script src=\"/app.js\"") && !page.contains("<script>"));

    let session: Value =
        h.get(format!("{base}/api/v1/session")).header("Cookie", &cookie).send().await.unwrap().json().await.unwrap();
    assert_eq!(session["unlocked"], false);
    let csrf = session["csrf"].as_str().unwrap().to_owned();
    // Locked: nothing to read yet.
    assert_eq!(
        h.get(format!("{base}/api/v1/conversations")).header("Cookie", &cookie).send().await.unwrap().status(),
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

    // The event WebSocket: a foreign page is refused; ours is served.
    let ws_url = format!("ws://127.0.0.1:{}/api/v1/events/ws", app.port);
    let mut req = tokio_tungstenite::tungstenite::client::IntoClientRequest::into_client_request(&ws_url).unwrap();
    req.headers_mut().insert("Origin", "http://evil.example".parse().unwrap());
    req.headers_mut().insert("Cookie", cookie.parse().unwrap());
    assert!(tokio_tungstenite::connect_async(req).await.is_err(), "a foreign Origin is refused");
    // From the newest event on: what arrives next is news.
    let log: Value =
        h.get(format!("{base}/api/v1/events")).header("Cookie", &cookie).send().await.unwrap().json().await.unwrap();
    let newest = log["events"].as_array().unwrap().last().map(|e| e["id"].as_u64().unwrap()).unwrap_or(0);
    let mut req = tokio_tungstenite::tungstenite::client::IntoClientRequest::into_client_request(format!(
        "{ws_url}?after={newest}"
    ))
    .unwrap();
    req.headers_mut().insert("Origin", format!("http://127.0.0.1:{}", app.port).parse().unwrap());
    req.headers_mut().insert("Cookie", cookie.parse().unwrap());
    let (mut events, _) = tokio_tungstenite::connect_async(req).await.unwrap();

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
