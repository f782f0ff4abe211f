//! Password guessing against the real binary: a stranger cannot lock an
//! account's owner out, cannot tell which usernames exist (by answer or by
//! time), and cannot escape the throttle by claiming another address unless
//! the relay trusts the proxy that says so.
#![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic, clippy::indexing_slicing)]

mod common;

use std::net::IpAddr;
use std::time::Instant;

use common::*;
use reqwest::StatusCode;
use serde_json::Value;
use strongroom_wire::Login;

struct Relay {
    _dir: std::path::PathBuf,
    server: ServerProc,
    network: strongroom_crypto::ids::NetworkId,
}

async fn relay(tag: &str, config: &str) -> Relay {
    let dir = temp_dir(tag);
    let path = dir.join("relay.toml");
    std::fs::write(&path, config).unwrap();
    let server = ServerProc::start(&dir.join("data"), &["--config", path.to_str().unwrap()]);
    let (network, invite) = create_network(&server, &dir, "acme");
    register(&server.url, &invite, "alice").await;
    Relay { _dir: dir, server, network }
}

/// A login from `from` (a loopback address), optionally claiming to be
/// forwarded for another address; the status and the response body.
async fn login(r: &Relay, from: &str, forwarded: Option<&str>, user: &str, password: &str) -> (StatusCode, Value) {
    let client = reqwest::Client::builder().local_address(from.parse::<IpAddr>().unwrap()).build().unwrap();
    let mut req = client.post(format!("{}/v1/login", r.server.url)).json(&Login {
        network_id: r.network,
        username: user.into(),
        password: password.into(),
        device_id: strongroom_crypto::ids::DeviceId::random(&mut rand_core::OsRng),
    });
    if let Some(f) = forwarded {
        req = req.header("X-Forwarded-For", f);
    }
    let res = req.send().await.unwrap();
    (res.status(), res.json().await.unwrap_or_default())
}

/// The error code, with any number (the seconds to wait) blanked out.
fn shape((status, body): &(StatusCode, Value)) -> (StatusCode, String, String) {
    let blank = |s: &str| s.chars().map(|c| if c.is_ascii_digit() { '#' } else { c }).collect::<String>();
    (
        *status,
        body["error"].as_str().unwrap_or_default().to_owned(),
        blank(body["message"].as_str().unwrap_or_default()),
    )
}

const CONFIG: &str = "[limits]\nlockout_threshold = 3\nlockout_secs = 60\nauth_per_minute = 1000\n";

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_stranger_cannot_lock_the_owner_out() {
    let r = relay("login-lockout", CONFIG).await;
    for n in 0..8 {
        login(&r, "127.0.0.1", None, "alice", &format!("guess {n}")).await;
    }
    let (status, body) = login(&r, "127.0.0.1", None, "alice", PASSWORD).await;
    assert_eq!(
        status,
        StatusCode::TOO_MANY_REQUESTS,
        "the guessing source waits, even with the right password: {body}"
    );
    let (status, body) = login(&r, "127.0.0.2", None, "alice", PASSWORD).await;
    assert_eq!(status, StatusCode::OK, "the owner, from elsewhere, logs in: {body}");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn answers_do_not_say_which_usernames_exist() {
    let r = relay("login-enumerate", CONFIG).await;
    let mut known = Vec::new();
    let mut unknown = Vec::new();
    for n in 0..6 {
        known.push(shape(&login(&r, "127.0.0.3", None, "alice", &format!("guess {n}")).await));
        unknown.push(shape(&login(&r, "127.0.0.3", None, "zelda", &format!("guess {n}")).await));
    }
    assert_eq!(known, unknown, "an existing and a missing account must be answered alike");
    assert_eq!(known[0].0, StatusCode::UNAUTHORIZED);
    assert_eq!(known[5].0, StatusCode::TOO_MANY_REQUESTS, "past the threshold both wait");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn unknown_usernames_cost_the_same_work() {
    let r = relay("login-timing", "[limits]\nlockout_threshold = 0\nauth_per_minute = 1000\n").await;
    let time = |user: &'static str| {
        let r = &r;
        async move {
            let mut t = Vec::new();
            for n in 0..7 {
                let started = Instant::now();
                login(r, "127.0.0.4", None, user, &format!("guess {n}")).await;
                t.push(started.elapsed());
            }
            t.sort();
            t[3]
        }
    };
    let known = time("alice").await;
    let unknown = time("zelda").await;
    // Both verify an Argon2id hash; without the dummy the unknown name answered ~30× faster.
    let ratio = unknown.as_secs_f64() / known.as_secs_f64();
    assert!(ratio > 0.5 && ratio < 2.0, "median known {known:?}, unknown {unknown:?}");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn forwarded_for_is_believed_only_from_a_trusted_proxy() {
    // Not trusted: a fresh X-Forwarded-For on every guess does not reset the count.
    let r = relay("login-xff-untrusted", CONFIG).await;
    for n in 0..6 {
        login(&r, "127.0.0.5", Some(&format!("203.0.113.{n}")), "alice", &format!("guess {n}")).await;
    }
    let (status, _) = login(&r, "127.0.0.5", Some("203.0.113.99"), "alice", "guess 6").await;
    assert_eq!(status, StatusCode::TOO_MANY_REQUESTS, "a spoofed header must not escape the throttle");

    // Trusted proxy 127.0.0.6: clients behind it are told apart by the address it appends.
    let r = relay("login-xff-trusted", &format!("trusted_proxies = [\"127.0.0.6\"]\n{CONFIG}")).await;
    for n in 0..6 {
        login(&r, "127.0.0.6", Some("203.0.113.1"), "alice", &format!("guess {n}")).await;
    }
    let (status, _) = login(&r, "127.0.0.6", Some("203.0.113.1"), "alice", PASSWORD).await;
    assert_eq!(status, StatusCode::TOO_MANY_REQUESTS, "the guessing client behind the proxy waits");
    let (status, body) = login(&r, "127.0.0.6", Some("198.51.100.1, 203.0.113.2"), "alice", PASSWORD).await;
    assert_eq!(status, StatusCode::OK, "another client behind the same proxy is not blocked: {body}");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_parallel_burst_of_guesses_is_counted_one_by_one() {
    let r = relay("login-burst", CONFIG).await;
    let guesses = (0..20).map(|n| {
        let r = &r;
        async move { login(r, "127.0.0.7", None, "alice", &format!("burst guess {n}")).await.0 }
    });
    let answers = futures_util::future::join_all(guesses).await;
    let checked = answers.iter().filter(|s| **s == StatusCode::UNAUTHORIZED).count();
    // Each attempt waits for the one before it: 3 checked passwords, then the source waits.
    assert_eq!(checked, 3, "{answers:?}");
}
