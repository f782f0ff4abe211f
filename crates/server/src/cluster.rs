//! Cross-node wake-ups over NATS: when this process stores a message for a
//! device connected to another process, that process must push it at once.
//! Every process publishes the device ids it queued for on one subject and
//! wakes the ones connected to it. A wake-up carries no data and a lost one
//! costs latency, never a message (connections also re-check their queue
//! periodically), so core NATS (at-most-once) is exactly enough.
//!
//! The same link carries "something changed" announcements: each process
//! remembers sessions, members and policies until a write (`store/cache.rs`);
//! a write committed by one process makes the others forget too. A lost
//! announcement is bounded by the cache's two-second entry lifetime, and a
//! link that comes back up forgets everything it may have missed.
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
const CHANGED: &str = "strongroom.changed";
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

/// What arrives from the other processes is applied to.
pub struct Local {
    /// Wakes local connections.
    pub hub: Arc<Hub>,
    /// Forgets what this process remembered from the database.
    pub invalidate: Box<dyn Fn() + Send + Sync>,
}

/// What this process tells the others.
pub struct Outbox {
    wakes: mpsc::Receiver<Vec<[u8; 16]>>,
    changes: mpsc::Receiver<()>,
}

/// Where wake-ups (the hub's) and change announcements (the store's) go out.
pub type Senders = (mpsc::Sender<Vec<[u8; 16]>>, mpsc::Sender<()>);

/// Starts the link; returns the senders for wake-ups and announcements.
pub fn start(url: &str, local: Local) -> Result<Senders, String> {
    let addr = address(url)?;
    let (wake_tx, wakes) = mpsc::channel::<Vec<[u8; 16]>>(1024);
    let (change_tx, changes) = mpsc::channel::<()>(1);
    tokio::spawn(run(addr, local, Outbox { wakes, changes }));
    Ok((wake_tx, change_tx))
}

async fn run(addr: String, local: Local, mut outbox: Outbox) {
    let mut backoff = Duration::from_millis(200);
    loop {
        // Whatever changed while the link was down was not announced.
        (local.invalidate)();
        match session(&addr, &local, &mut outbox).await {
            Ok(()) => return, // the server is shutting down
            Err(e) => {
                tracing::warn!(%addr, "NATS link down ({e}); cross-node wake-ups wait, connections poll meanwhile");
                tokio::time::sleep(backoff).await;
                backoff = (backoff * 2).min(Duration::from_secs(5));
            }
        }
    }
}

async fn session(addr: &str, local: &Local, outbox: &mut Outbox) -> Result<(), String> {
    let stream = TcpStream::connect(addr).await.map_err(|e| e.to_string())?;
    let (read, mut write) = stream.into_split();
    let mut read = BufReader::new(read);
    let mut line = String::new();
    read.read_line(&mut line).await.map_err(|e| e.to_string())?;
    if !line.starts_with("INFO ") {
        return Err(format!("not a NATS server (said {:?})", line.trim()));
    }
    // echo=false: our own wake-ups and changes were already applied locally.
    let hello = format!(
        "CONNECT {{\"verbose\":false,\"pedantic\":false,\"echo\":false,\"name\":\"strongroom\",\"lang\":\"rust\",\"version\":\"{}\"}}\r\nSUB {SUBJECT} 1\r\nSUB {CHANGED} 2\r\n",
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
                    let changed = rest.split(' ').next() == Some(CHANGED);
                    if size > MAX_IDS * 16 {
                        return Err("oversized message".into());
                    }
                    let mut payload = vec![0u8; size + 2];
                    read.read_exact(&mut payload).await.map_err(|e| e.to_string())?;
                    if changed {
                        (local.invalidate)();
                        continue;
                    }
                    for id in payload.get(..size).unwrap_or_default().chunks_exact(16) {
                        if let Ok(id) = <[u8; 16]>::try_from(id) {
                            local.hub.notify(&id);
                        }
                    }
                } else if l.starts_with("-ERR") {
                    return Err(l.to_owned());
                }
            }
            c = outbox.changes.recv() => {
                if c.is_none() { return Ok(()) }
                write.write_all(format!("PUB {CHANGED} 0\r\n\r\n").as_bytes()).await.map_err(|e| e.to_string())?;
            }
            ids = outbox.wakes.recv() => {
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
            // Then whatever the client publishes, for a while.
            let mut more = vec![0u8; 4096];
            while let Ok(Ok(n)) = tokio::time::timeout(Duration::from_millis(300), s.read(&mut more)).await {
                if n == 0 {
                    break;
                }
                got.extend_from_slice(&more[..n]);
            }
            got
        });
        (addr, task)
    }

    use std::sync::atomic::{AtomicUsize, Ordering};

    fn local(hub: Arc<Hub>) -> (Local, Arc<AtomicUsize>) {
        let count = Arc::new(AtomicUsize::new(0));
        let c = count.clone();
        (
            Local {
                hub,
                invalidate: Box::new(move || {
                    c.fetch_add(1, Ordering::SeqCst);
                }),
            },
            count,
        )
    }

    fn outbox() -> (mpsc::Sender<Vec<[u8; 16]>>, mpsc::Sender<()>, Outbox) {
        let (w, wakes) = mpsc::channel(1);
        let (c, changes) = mpsc::channel(1);
        (w, c, Outbox { wakes, changes })
    }

    #[tokio::test]
    async fn wake_ups_and_changes_from_other_nodes_apply_here() {
        let hub = Arc::new(Hub::default());
        let mut conn = hub.register([7; 16]);
        let mut frames = b"PING\r\nMSG strongroom.wake 1 32\r\n".to_vec();
        frames.extend_from_slice(&[9u8; 16]);
        frames.extend_from_slice(&[7u8; 16]);
        frames.extend_from_slice(b"\r\nMSG strongroom.changed 2 0\r\n\r\n");
        let (addr, server) = fake_nats(frames).await;
        let (local, invalidated) = local(hub);
        let (_w, changes, mut out) = outbox();
        let link = tokio::spawn(async move { session(&addr, &local, &mut out).await });
        let push = tokio::time::timeout(Duration::from_secs(2), conn.rx.recv()).await.unwrap().unwrap();
        assert!(matches!(push, crate::hub::Push::Wake));
        // A change committed here is announced to the others.
        changes.send(()).await.unwrap();
        let said = String::from_utf8(server.await.unwrap()).unwrap();
        assert!(said.contains("\"echo\":false") && said.contains("SUB strongroom.wake 1"), "{said}");
        assert!(said.contains("SUB strongroom.changed 2") && said.contains("PUB strongroom.changed 0\r\n"), "{said}");
        assert_eq!(invalidated.load(Ordering::SeqCst), 1);
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
            let (local, _) = local(Arc::new(Hub::default()));
            let (addr, _server) = fake_nats(frames).await;
            let (_w, _c, mut out) = outbox();
            let r = tokio::time::timeout(Duration::from_secs(3), session(&addr, &local, &mut out)).await.unwrap();
            assert!(r.is_err());
        }
        // Not a NATS server at all.
        let l = TcpListener::bind("127.0.0.1:0").await.unwrap();
        let addr = l.local_addr().unwrap().to_string();
        tokio::spawn(async move {
            let (mut s, _) = l.accept().await.unwrap();
            let _ = s.write_all(b"HTTP/1.1 400 Bad Request\r\n\r\n").await;
        });
        let (local, _) = local(Arc::new(Hub::default()));
        let (_w, _c, mut out) = outbox();
        let err = session(&addr, &local, &mut out).await.unwrap_err();
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
