//! Cross-node wake-ups over NATS: when this process stores a message for a
//! device connected to another process, that process must push it at once.
//! Every process publishes the device ids it queued for on one subject and
//! wakes the ones connected to it. A wake-up carries no data and a lost one
//! costs latency, never a message (connections also re-check their queue
//! periodically), so core NATS (at-most-once) is exactly enough.
//!
//! The client speaks the NATS text protocol directly (`CONNECT`, `SUB`,
//! `PUB`, `MSG`, `PING`/`PONG`): a few lines, no extra dependency.

use std::sync::Arc;
use std::time::Duration;

use tokio::io::{AsyncBufReadExt, AsyncReadExt, AsyncWriteExt, BufReader};
use tokio::net::TcpStream;
use tokio::sync::mpsc;

use crate::hub::Hub;

const SUBJECT: &str = "strongroom.wake";
/// Most device ids in one published wake-up (a 1,000-device room fits).
const MAX_IDS: usize = 4096;

/// `nats://host:port` → `host:port`.
fn address(url: &str) -> Result<String, String> {
    let rest = url.strip_prefix("nats://").ok_or_else(|| format!("{url}: a NATS URL starts with nats://"))?;
    let hostport = rest.trim_end_matches('/');
    if hostport.is_empty() || hostport.contains('@') {
        return Err(format!("{url}: give nats://HOST:PORT (credentials are not supported)"));
    }
    Ok(if hostport.contains(':') { hostport.to_owned() } else { format!("{hostport}:4222") })
}

/// Starts the link; returns the sender the hub publishes wake-ups into.
pub fn start(url: &str, hub: Arc<Hub>) -> Result<mpsc::Sender<Vec<[u8; 16]>>, String> {
    let addr = address(url)?;
    let (tx, rx) = mpsc::channel::<Vec<[u8; 16]>>(1024);
    tokio::spawn(run(addr, hub, rx));
    Ok(tx)
}

async fn run(addr: String, hub: Arc<Hub>, mut outgoing: mpsc::Receiver<Vec<[u8; 16]>>) {
    let mut backoff = Duration::from_millis(200);
    loop {
        match session(&addr, &hub, &mut outgoing).await {
            Ok(()) => return, // the server is shutting down
            Err(e) => {
                tracing::warn!(%addr, "NATS link down ({e}); cross-node wake-ups wait, connections poll meanwhile");
                tokio::time::sleep(backoff).await;
                backoff = (backoff * 2).min(Duration::from_secs(5));
            }
        }
    }
}

async fn session(addr: &str, hub: &Hub, outgoing: &mut mpsc::Receiver<Vec<[u8; 16]>>) -> Result<(), String> {
    let stream = TcpStream::connect(addr).await.map_err(|e| e.to_string())?;
    let (read, mut write) = stream.into_split();
    let mut read = BufReader::new(read);
    let mut line = String::new();
    read.read_line(&mut line).await.map_err(|e| e.to_string())?;
    if !line.starts_with("INFO ") {
        return Err(format!("not a NATS server (said {:?})", line.trim()));
    }
    // echo=false: our own wake-ups were already delivered locally.
    let hello = format!(
        "CONNECT {{\"verbose\":false,\"pedantic\":false,\"echo\":false,\"name\":\"strongroom\",\"lang\":\"rust\",\"version\":\"{}\"}}\r\nSUB {SUBJECT} 1\r\n",
        env!("CARGO_PKG_VERSION")
    );
    write.write_all(hello.as_bytes()).await.map_err(|e| e.to_string())?;
    tracing::info!(%addr, "NATS link up: cross-node wake-ups on");
    loop {
        line.clear();
        tokio::select! {
            n = read.read_line(&mut line) => {
                if n.map_err(|e| e.to_string())? == 0 {
                    return Err("connection closed".into());
                }
                let l = line.trim_end();
                if l == "PING" {
                    write.write_all(b"PONG\r\n").await.map_err(|e| e.to_string())?;
                } else if let Some(rest) = l.strip_prefix("MSG ") {
                    let size: usize = rest.rsplit(' ').next().and_then(|s| s.parse().ok()).ok_or("malformed MSG")?;
                    if size > MAX_IDS * 16 {
                        return Err("oversized message".into());
                    }
                    let mut payload = vec![0u8; size + 2];
                    read.read_exact(&mut payload).await.map_err(|e| e.to_string())?;
                    for id in payload.get(..size).unwrap_or_default().chunks_exact(16) {
                        if let Ok(id) = <[u8; 16]>::try_from(id) {
                            hub.notify(&id);
                        }
                    }
                } else if l.starts_with("-ERR") {
                    return Err(l.to_owned());
                }
            }
            ids = outgoing.recv() => {
                let Some(ids) = ids else { return Ok(()) };
                for chunk in ids.chunks(MAX_IDS) {
                    let payload: Vec<u8> = chunk.iter().flatten().copied().collect();
                    let mut frame = format!("PUB {SUBJECT} {}\r\n", payload.len()).into_bytes();
                    frame.extend_from_slice(&payload);
                    frame.extend_from_slice(b"\r\n");
                    write.write_all(&frame).await.map_err(|e| e.to_string())?;
                }
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use tokio::net::TcpListener;

    /// A scripted NATS server: greets, reads the client's CONNECT/SUB, sends `frames`.
    async fn fake_nats(frames: Vec<u8>) -> (String, tokio::task::JoinHandle<Vec<u8>>) {
        let l = TcpListener::bind("127.0.0.1:0").await.unwrap();
        let addr = l.local_addr().unwrap().to_string();
        let task = tokio::spawn(async move {
            let (mut s, _) = l.accept().await.unwrap();
            s.write_all(b"INFO {\"server_id\":\"test\"}\r\n").await.unwrap();
            let mut got = vec![0u8; 4096];
            let n = tokio::time::timeout(Duration::from_secs(2), s.read(&mut got)).await.unwrap().unwrap();
            got.truncate(n);
            s.write_all(&frames).await.unwrap();
            tokio::time::sleep(Duration::from_millis(300)).await;
            got
        });
        (addr, task)
    }

    #[tokio::test]
    async fn wake_ups_from_other_nodes_reach_local_connections() {
        let hub = Hub::default();
        let (_, mut rx) = hub.register([7; 16]);
        let mut frames = b"PING\r\nMSG strongroom.wake 1 32\r\n".to_vec();
        frames.extend_from_slice(&[9u8; 16]);
        frames.extend_from_slice(&[7u8; 16]);
        frames.extend_from_slice(b"\r\n");
        let (addr, server) = fake_nats(frames).await;
        let (_tx, mut out) = mpsc::channel(1);
        let link = tokio::spawn(async move { session(&addr, &hub, &mut out).await });
        tokio::time::timeout(Duration::from_secs(2), rx.recv()).await.unwrap().unwrap();
        let hello = String::from_utf8(server.await.unwrap()).unwrap();
        assert!(hello.contains("\"echo\":false") && hello.contains("SUB strongroom.wake 1"), "{hello}");
        link.abort();
    }

    #[tokio::test]
    async fn hostile_frames_end_the_link_without_panicking() {
        for frames in [
            b"MSG strongroom.wake 1 999999999\r\n".to_vec(),
            b"MSG strongroom.wake 1 notanumber\r\n".to_vec(),
            b"-ERR 'Authorization Violation'\r\n".to_vec(),
            b"".to_vec(),
        ] {
            let hub = Hub::default();
            let (addr, _server) = fake_nats(frames).await;
            let (_tx, mut out) = mpsc::channel(1);
            let r = tokio::time::timeout(Duration::from_secs(3), session(&addr, &hub, &mut out)).await.unwrap();
            assert!(r.is_err());
        }
        // Not a NATS server at all.
        let l = TcpListener::bind("127.0.0.1:0").await.unwrap();
        let addr = l.local_addr().unwrap().to_string();
        tokio::spawn(async move {
            let (mut s, _) = l.accept().await.unwrap();
            let _ = s.write_all(b"HTTP/1.1 400 Bad Request\r\n\r\n").await;
        });
        let (_tx, mut out) = mpsc::channel(1);
        let err = session(&addr, &Hub::default(), &mut out).await.unwrap_err();
        assert!(err.contains("not a NATS server"), "{err}");
    }

    #[test]
    fn addresses() {
        assert_eq!(address("nats://127.0.0.1:4222"), Ok("127.0.0.1:4222".into()));
        assert_eq!(address("nats://nats.internal"), Ok("nats.internal:4222".into()));
        assert!(address("http://x").is_err());
        assert!(address("nats://user:pw@host").is_err());
    }
}
