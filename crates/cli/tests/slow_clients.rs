//! Slow and idle clients against the real binary: none of them holds a
//! socket past its timer, one source cannot take every connection, and
//! `/healthz` keeps answering everyone else throughout.
#![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic, clippy::indexing_slicing)]

mod common;

use std::io::{Read, Write};
use std::net::{SocketAddr, TcpStream};
use std::time::{Duration, Instant};

use common::*;

fn start(tag: &str) -> (std::path::PathBuf, ServerProc, SocketAddr) {
    let dir = temp_dir(tag);
    let config = dir.join("limits.toml");
    std::fs::write(
        &config,
        "[limits]\nheader_timeout_secs = 2\nbody_timeout_secs = 2\nbody_min_bytes_per_sec = 1024\nmax_connections_per_ip = 40\n",
    )
    .unwrap();
    let server = ServerProc::start(&dir.join("data"), &["--config", config.to_str().unwrap()]);
    let addr: SocketAddr = server.url.trim_start_matches("http://").parse().unwrap();
    (dir, server, addr)
}

/// Whether the server has closed `s` (EOF or reset) within `within`.
fn closed_within(s: &TcpStream, within: Duration) -> bool {
    let mut s = s;
    s.set_read_timeout(Some(within)).unwrap();
    let mut buf = [0u8; 4096];
    let deadline = Instant::now() + within;
    loop {
        match s.read(&mut buf) {
            Ok(0) => return true,
            Ok(_) => {
                if Instant::now() > deadline {
                    return false;
                }
            }
            Err(e) if matches!(e.kind(), std::io::ErrorKind::WouldBlock | std::io::ErrorKind::TimedOut) => {
                return false
            }
            Err(_) => return true,
        }
    }
}

/// GET /healthz from another loopback address (another "host"), answered within a second.
fn healthz_from_elsewhere(addr: SocketAddr) -> bool {
    let socket = tokio::net::TcpSocket::new_v4().unwrap();
    let rt = tokio::runtime::Builder::new_current_thread().enable_all().build().unwrap();
    rt.block_on(async {
        socket.bind("127.0.0.2:0".parse().unwrap()).unwrap();
        let Ok(Ok(mut s)) = tokio::time::timeout(Duration::from_secs(1), socket.connect(addr)).await else {
            return false;
        };
        use tokio::io::{AsyncReadExt, AsyncWriteExt};
        let req = format!("GET /healthz HTTP/1.1\r\nHost: {addr}\r\nConnection: close\r\n\r\n");
        if s.write_all(req.as_bytes()).await.is_err() {
            return false;
        }
        let mut out = Vec::new();
        matches!(tokio::time::timeout(Duration::from_secs(1), s.read_to_end(&mut out)).await, Ok(Ok(_)))
            && out.starts_with(b"HTTP/1.1 200")
    })
}

#[test]
fn slow_connections_are_capped_and_closed_and_healthz_still_answers() {
    let (_dir, _server, addr) = start("slowloris");
    // Three hundred connections from one address, each sending half a header.
    let mut held = Vec::new();
    for _ in 0..300 {
        if let Ok(mut s) = TcpStream::connect_timeout(&addr, Duration::from_secs(2)) {
            let _ = s.write_all(b"GET /healthz HTTP/1.1\r\nHost: x\r\n");
            held.push(s);
        }
    }
    // Past the cap of 40 per source the server closes them at once.
    let refused = held.iter().filter(|s| closed_within(s, Duration::from_millis(200))).count();
    assert!(refused >= 250, "only {refused} of 300 connections from one source were refused");
    assert!(healthz_from_elsewhere(addr), "/healthz must answer another host during the attack");
    // The header timer (2 s) closes the ones it took.
    std::thread::sleep(Duration::from_secs(3));
    let open = held.iter().filter(|s| !closed_within(s, Duration::from_millis(100))).count();
    assert_eq!(open, 0, "connections sending half a header must be closed by the header timeout");
    assert!(healthz_from_elsewhere(addr));
}

#[test]
fn an_idle_kept_alive_connection_is_closed() {
    let (_dir, _server, addr) = start("idle");
    let mut s = TcpStream::connect(addr).unwrap();
    s.write_all(format!("GET /healthz HTTP/1.1\r\nHost: {addr}\r\n\r\n").as_bytes()).unwrap();
    let mut buf = [0u8; 1024];
    s.set_read_timeout(Some(Duration::from_secs(2))).unwrap();
    let n = s.read(&mut buf).unwrap();
    assert!(buf[..n].starts_with(b"HTTP/1.1 200"), "{}", String::from_utf8_lossy(&buf[..n]));
    assert!(closed_within(&s, Duration::from_secs(4)), "an idle keep-alive connection must be closed");
}

#[test]
fn a_body_trickled_a_byte_at_a_time_is_cut_off() {
    let (_dir, _server, addr) = start("trickle");
    let mut s = TcpStream::connect(addr).unwrap();
    s.write_all(
        format!(
            "POST /v1/register HTTP/1.1\r\nHost: {addr}\r\nContent-Type: application/json\r\nContent-Length: 2000000\r\n\r\n"
        )
        .as_bytes(),
    )
    .unwrap();
    let started = Instant::now();
    s.set_read_timeout(Some(Duration::from_millis(500))).unwrap();
    let mut got = Vec::new();
    let mut buf = [0u8; 4096];
    while started.elapsed() < Duration::from_secs(8) {
        if s.write_all(b" ").is_err() {
            break;
        }
        match s.read(&mut buf) {
            Ok(0) => break,
            Ok(n) => got.extend_from_slice(&buf[..n]),
            Err(e) if matches!(e.kind(), std::io::ErrorKind::WouldBlock | std::io::ErrorKind::TimedOut) => {}
            Err(_) => break,
        }
    }
    let text = String::from_utf8_lossy(&got);
    assert!(started.elapsed() < Duration::from_secs(6), "the trickled body was not cut off: {text}");
    assert!(text.starts_with("HTTP/1.1 408"), "{text}");
    assert!(text.contains("body_timeout") && text.to_ascii_lowercase().contains("connection: close"), "{text}");
}

#[test]
fn a_slow_but_steady_upload_completes() {
    // 6 KiB at 2 KiB/s takes about 3 s: longer than the 2 s base, within the pace.
    let (_dir, _server, addr) = start("steady");
    let body = format!("{{\"invite\":\"x\",\"username\":\"a\",\"password\":\"{}\"}}", "p".repeat(6 * 1024));
    let mut s = TcpStream::connect(addr).unwrap();
    s.write_all(
        format!(
            "POST /v1/register HTTP/1.1\r\nHost: {addr}\r\nContent-Type: application/json\r\nContent-Length: {}\r\nConnection: close\r\n\r\n",
            body.len()
        )
        .as_bytes(),
    )
    .unwrap();
    for chunk in body.as_bytes().chunks(512) {
        s.write_all(chunk).unwrap();
        std::thread::sleep(Duration::from_millis(250));
    }
    let mut out = String::new();
    s.set_read_timeout(Some(Duration::from_secs(5))).unwrap();
    let _ = s.read_to_string(&mut out);
    // The request is read whole and judged on its content (a bad invite), not cut off.
    assert!(out.starts_with("HTTP/1.1 400") || out.starts_with("HTTP/1.1 403"), "{out}");
    assert!(!out.contains("body_timeout"), "{out}");
}

/// A WebSocket holds its connection's place until it closes: upgrading does
/// not take it out of the per-source cap.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn websockets_count_against_the_per_source_cap() {
    use tokio_tungstenite::tungstenite::client::IntoClientRequest;
    let dir = temp_dir("ws-cap");
    let config = dir.join("limits.toml");
    std::fs::write(&config, "[limits]\nmax_connections_per_ip = 5\n").unwrap();
    let server = ServerProc::start(&dir.join("data"), &["--config", config.to_str().unwrap()]);
    let (network, invite) = create_network(&server, &dir, "acme");
    register(&server.url, &invite, "alice").await;
    let alice = Device::enrol(&server.url, network, "alice", None, &[], 1).await;
    let open = || async {
        let mut req = format!("{}/v1/ws", server.url.replace("http://", "ws://")).into_client_request().unwrap();
        req.headers_mut().insert("Authorization", format!("Bearer {}", alice.token).parse().unwrap());
        tokio::time::timeout(Duration::from_secs(3), tokio_tungstenite::connect_async(req))
            .await
            .ok()
            .and_then(Result::ok)
    };
    let mut sockets = Vec::new();
    for _ in 0..8 {
        if let Some((ws, _)) = open().await {
            sockets.push(ws);
        }
    }
    assert!(sockets.len() <= 5, "{} WebSockets open from one address with a cap of 5", sockets.len());
    assert!(sockets.len() >= 3, "the first ones open");
    drop(sockets);
    tokio::time::sleep(Duration::from_millis(300)).await;
    assert!(open().await.is_some(), "closing them gives the places back");
}

/// A client that stops reading a download does not hold its connection:
/// once writes make no progress for `write_timeout_secs`, it is closed.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_download_nobody_reads_is_let_go() {
    let dir = temp_dir("slow-read");
    let config = dir.join("limits.toml");
    std::fs::write(&config, "[limits]\nwrite_timeout_secs = 2\n").unwrap();
    let server = ServerProc::start(&dir.join("data"), &["--config", config.to_str().unwrap()]);
    let (network, invite) = create_network(&server, &dir, "acme");
    register(&server.url, &invite, "alice").await;
    let alice = Device::enrol(&server.url, network, "alice", None, &[], 1).await;
    register(&server.url, &alice.invite(false).await, "bob").await;
    let bob = Device::enrol(&server.url, network, "bob", None, &[], 1).await;
    let direct = alice.create_conversation("direct", &[bob.user]).await;
    let size = 48 * 1024 * 1024;
    let bytes = vec![9u8; size];
    let sha = sha256_hex(&bytes);
    let r = alice
        .http
        .post(format!("{}/v1/blobs?conversation={}&sha256={sha}", alice.url, direct.id))
        .bearer_auth(&alice.token)
        .body(bytes)
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), reqwest::StatusCode::CREATED);
    let blob: serde_json::Value = r.json().await.unwrap();
    let id = blob["blob_id"].as_str().unwrap().to_owned();

    let addr: SocketAddr = server.url.trim_start_matches("http://").parse().unwrap();
    let mut s = TcpStream::connect(addr).unwrap();
    s.write_all(
        format!("GET /v1/blobs/{id} HTTP/1.1\r\nHost: {addr}\r\nAuthorization: Bearer {}\r\n\r\n", bob.token)
            .as_bytes(),
    )
    .unwrap();
    // Read nothing while the server's writes stall, well past the timeout.
    std::thread::sleep(Duration::from_secs(5));
    s.set_read_timeout(Some(Duration::from_secs(10))).unwrap();
    let mut got = 0usize;
    let mut buf = vec![0u8; 1 << 20];
    loop {
        match s.read(&mut buf) {
            Ok(0) | Err(_) => break,
            Ok(n) => got += n,
        }
    }
    assert!(
        got < size,
        "the whole {size}-byte download arrived ({got}); the stalled connection should have been closed"
    );
}
