//! Cross-node delivery over NATS: when this process commits a message for a
//! device connected to another process, that process must push it at once.
//! Each process subscribes to `strongroom.dev.<device>` for every device
//! connected to it, and publishes each committed queue row (the delivered
//! form: ciphertext, signed by the sender, exactly what the socket gets) on
//! its device's subject, so NATS routes it only to the process holding that
//! socket, which pushes it without reading the queue. Rows too large for a
//! NATS message, and rows the link cannot take at once, go out as wake-ups
//! (`strongroom.wake`: device ids only) and the socket reads its queue. A lost
//! row or wake-up costs latency, never a message: the row is in the queue,
//! and connections re-read it periodically and whenever the link comes back,
//! so core NATS (at-most-once) is exactly enough.
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

use std::collections::HashSet;

use crate::hub::{ClusterLink, Hub, Presence, MAX_ROW_BYTES};
use crate::store::QueuedRow;

const SUBJECT: &str = "strongroom.wake";
const CHANGED: &str = "strongroom.changed";
const DEVICE: &str = "strongroom.dev.";
const DISCONNECT: &str = "strongroom.disconnect";
/// Most device ids in one published wake-up (a 1,000-device room fits).
const MAX_IDS: usize = 4096;
/// Fixed part of a row on the wire: queue id, message id, conversation id, sequence.
const ROW_HEADER: usize = 8 + 16 + 16 + 8;
/// Largest message this process accepts from NATS.
const MAX_MSG: usize =
    if MAX_IDS * 16 > MAX_ROW_BYTES + ROW_HEADER { MAX_IDS * 16 } else { MAX_ROW_BYTES + ROW_HEADER };

fn encode_row(row: &QueuedRow) -> Vec<u8> {
    let mut out = Vec::with_capacity(ROW_HEADER + row.envelope.len());
    out.extend_from_slice(&row.queue_id.to_be_bytes());
    out.extend_from_slice(&row.message_id);
    out.extend_from_slice(&row.conversation_id);
    out.extend_from_slice(&row.seq.to_be_bytes());
    out.extend_from_slice(&row.envelope);
    out
}

fn decode_row(b: &[u8]) -> Option<QueuedRow> {
    Some(QueuedRow {
        queue_id: i64::from_be_bytes(b.get(..8)?.try_into().ok()?),
        message_id: b.get(8..24)?.try_into().ok()?,
        conversation_id: b.get(24..40)?.try_into().ok()?,
        seq: u64::from_be_bytes(b.get(40..48)?.try_into().ok()?),
        envelope: b.get(ROW_HEADER..).filter(|e| !e.is_empty())?.to_vec(),
    })
}

fn hex16(id: &[u8; 16]) -> String {
    crate::error::hex(id)
}

fn parse_hex16(s: &str) -> Option<[u8; 16]> {
    crate::error::parse_id(s, "device id").ok()
}

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
    rows: mpsc::Receiver<([u8; 16], Arc<QueuedRow>)>,
    presence: mpsc::UnboundedReceiver<Presence>,
    disconnects: mpsc::UnboundedReceiver<[u8; 16]>,
    changes: mpsc::Receiver<()>,
}

/// Starts the link; returns the hub's side of it and the sender for the
/// store's change announcements.
pub fn start(url: &str, local: Local) -> Result<(ClusterLink, mpsc::Sender<()>), String> {
    let addr = address(url)?;
    let (outbox, link, changes) = outbox();
    tokio::spawn(run(addr, local, outbox));
    Ok((link, changes))
}

fn outbox() -> (Outbox, ClusterLink, mpsc::Sender<()>) {
    let (wake_tx, wakes) = mpsc::channel(1024);
    let (row_tx, rows) = mpsc::channel(8192);
    let (presence_tx, presence) = mpsc::unbounded_channel();
    let (disconnect_tx, disconnects) = mpsc::unbounded_channel();
    let (change_tx, changes) = mpsc::channel(1);
    let link = ClusterLink { wakes: wake_tx, rows: row_tx, presence: presence_tx, disconnects: disconnect_tx };
    (Outbox { wakes, rows, presence, disconnects, changes }, link, change_tx)
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
        "CONNECT {{\"verbose\":false,\"pedantic\":false,\"echo\":false,\"name\":\"strongroom\",\"lang\":\"rust\",\"version\":\"{}\"}}\r\nSUB {SUBJECT} 1\r\nSUB {CHANGED} 2\r\nSUB {DISCONNECT} 3\r\n",
        env!("CARGO_PKG_VERSION")
    );
    write.write_all(hello.as_bytes()).await.map_err(|e| e.to_string())?;
    // Rows for the devices connected here; presence changes queued before
    // this point replay harmlessly against this set.
    let mut subscribed: HashSet<[u8; 16]> = local.hub.devices().into_iter().collect();
    for d in &subscribed {
        let h = hex16(d);
        write.write_all(format!("SUB {DEVICE}{h} {h}\r\n").as_bytes()).await.map_err(|e| e.to_string())?;
    }
    // Rows published while the link was down never arrived: read the queues.
    local.hub.wake_all();
    tracing::info!(%addr, "NATS link up: cross-node delivery on");
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
                    let subject = rest.split(' ').next().unwrap_or_default();
                    if size > MAX_MSG {
                        return Err("oversized message".into());
                    }
                    let mut payload = vec![0u8; size + 2];
                    read.read_exact(&mut payload).await.map_err(|e| e.to_string())?;
                    let payload = payload.get(..size).unwrap_or_default();
                    if subject == CHANGED {
                        (local.invalidate)();
                        continue;
                    }
                    if let Some(device) = subject.strip_prefix(DEVICE) {
                        // A malformed row is dropped: the queue still has the real one.
                        if let (Some(device), Some(row)) = (parse_hex16(device), decode_row(payload)) {
                            local.hub.deliver_here(&device, &Arc::new(row));
                        }
                        continue;
                    }
                    for id in payload.chunks_exact(16) {
                        if let Ok(id) = <[u8; 16]>::try_from(id) {
                            if subject == DISCONNECT {
                                local.hub.disconnect_here(&id);
                            } else {
                                local.hub.notify(&id);
                            }
                        }
                    }
                } else if l.starts_with("-ERR") {
                    return Err(l.to_owned());
                }
            }
            p = outbox.presence.recv() => {
                let Some(p) = p else { return Ok(()) };
                let frame = match p {
                    Presence::Up(d) if subscribed.insert(d) => format!("SUB {DEVICE}{h} {h}\r\n", h = hex16(&d)),
                    Presence::Down(d) if subscribed.remove(&d) => format!("UNSUB {}\r\n", hex16(&d)),
                    _ => continue,
                };
                write.write_all(frame.as_bytes()).await.map_err(|e| e.to_string())?;
            }
            r = outbox.rows.recv() => {
                let Some((device, row)) = r else { return Ok(()) };
                let payload = encode_row(&row);
                let mut frame = format!("PUB {DEVICE}{} {}\r\n", hex16(&device), payload.len()).into_bytes();
                frame.extend_from_slice(&payload);
                frame.extend_from_slice(b"\r\n");
                write.write_all(&frame).await.map_err(|e| e.to_string())?;
            }
            d = outbox.disconnects.recv() => {
                let Some(d) = d else { return Ok(()) };
                let mut frame = format!("PUB {DISCONNECT} 16\r\n").into_bytes();
                frame.extend_from_slice(&d);
                frame.extend_from_slice(b"\r\n");
                write.write_all(&frame).await.map_err(|e| e.to_string())?;
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

    fn row(id: i64) -> QueuedRow {
        QueuedRow { queue_id: id, message_id: [1; 16], conversation_id: [2; 16], seq: 3, envelope: vec![4; 40] }
    }

    async fn next(conn: &mut crate::hub::Conn) -> crate::hub::Push {
        tokio::time::timeout(Duration::from_secs(2), conn.rx.recv()).await.unwrap().unwrap()
    }

    #[test]
    fn rows_round_trip_and_malformed_ones_are_refused() {
        assert_eq!(decode_row(&encode_row(&row(5))), Some(row(5)));
        assert_eq!(decode_row(&encode_row(&row(5))[..ROW_HEADER]), None, "no envelope");
        assert_eq!(decode_row(&[0; 10]), None);
        assert_eq!(parse_hex16(&hex16(&[0xab; 16])), Some([0xab; 16]));
        for bad in ["", "zz", &"0".repeat(31), &"g".repeat(32), "ü".repeat(16).as_str()] {
            assert_eq!(parse_hex16(bad), None, "{bad}");
        }
    }

    #[tokio::test]
    async fn wake_ups_rows_and_changes_from_other_nodes_apply_here() {
        let hub = Arc::new(Hub::default());
        let mut conn = hub.register([7; 16]);
        let mut frames = b"PING\r\nMSG strongroom.wake 1 32\r\n".to_vec();
        frames.extend_from_slice(&[9u8; 16]);
        frames.extend_from_slice(&[7u8; 16]);
        frames.extend_from_slice(b"\r\nMSG strongroom.changed 2 0\r\n\r\n");
        let payload = encode_row(&row(11));
        frames.extend_from_slice(format!("MSG strongroom.dev.{} x {}\r\n", hex16(&[7; 16]), payload.len()).as_bytes());
        frames.extend_from_slice(&payload);
        frames.extend_from_slice(b"\r\n");
        // Malformed rows and subjects are dropped, and the link goes on.
        frames.extend_from_slice(format!("MSG strongroom.dev.{} x 3\r\nabc\r\n", hex16(&[7; 16])).as_bytes());
        frames.extend_from_slice(b"MSG strongroom.dev.nothex x 3\r\nabc\r\n");
        // Another process suspended device 5: its socket here closes.
        frames.extend_from_slice(b"MSG strongroom.disconnect 3 16\r\n");
        frames.extend_from_slice(&[5u8; 16]);
        frames.extend_from_slice(b"\r\n");
        let mut suspended = hub.register([5; 16]);
        let (addr, server) = fake_nats(frames).await;
        let (local, invalidated) = local(hub.clone());
        let (mut out, link, changes) = outbox();
        hub.set_cluster(link);
        let task = tokio::spawn(async move { session(&addr, &local, &mut out).await });
        // The link came up (read the queue: rows may have been missed), the wake-up, the row.
        assert!(matches!(next(&mut conn).await, crate::hub::Push::Wake));
        assert!(matches!(next(&mut conn).await, crate::hub::Push::Wake));
        match next(&mut conn).await {
            crate::hub::Push::Row(r) => assert_eq!(*r, row(11)),
            other => panic!("{other:?}"),
        }
        // Here: a change is announced, a device connects, a row is published.
        changes.send(()).await.unwrap();
        let second = hub.register([8; 16]);
        hub.deliver(&[6; 16], &|| row(12));
        hub.unregister([8; 16], &second);
        hub.disconnect(&[4; 16]);
        let said = String::from_utf8_lossy(&server.await.unwrap()).into_owned();
        assert!(said.contains("\"echo\":false") && said.contains("SUB strongroom.wake 1"), "{said}");
        assert!(said.contains("SUB strongroom.changed 2") && said.contains("PUB strongroom.changed 0\r\n"), "{said}");
        let (h7, h8, h6) = (hex16(&[7; 16]), hex16(&[8; 16]), hex16(&[6; 16]));
        assert!(said.contains(&format!("SUB strongroom.dev.{h7} {h7}\r\n")), "{said}");
        assert!(said.contains(&format!("SUB strongroom.dev.{h8} {h8}\r\n")), "{said}");
        assert!(said.contains(&format!("UNSUB {h8}\r\n")), "{said}");
        assert!(
            said.contains("SUB strongroom.disconnect 3") && said.contains("PUB strongroom.disconnect 16\r\n"),
            "{said}"
        );
        assert!(said.contains(&format!("PUB strongroom.dev.{h6} {}\r\n", ROW_HEADER + 40)), "{said}");
        assert_eq!(invalidated.load(Ordering::SeqCst), 1);
        assert!(conn.rx.try_recv().is_err(), "nothing from the malformed rows");
        while let Ok(Some(p)) = tokio::time::timeout(Duration::from_secs(2), suspended.rx.recv()).await {
            assert!(matches!(p, crate::hub::Push::Wake), "{p:?}");
        }
        assert!(!hub.devices().contains(&[5; 16]), "the suspended device's connection was closed");
        task.abort();
    }

    #[tokio::test]
    async fn hostile_frames_end_the_link_without_panicking() {
        for frames in [
            b"MSG strongroom.wake 1 999999999\r\n".to_vec(),
            b"MSG strongroom.dev.00 1 2000000\r\n".to_vec(),
            b"MSG strongroom.wake 1 notanumber\r\n".to_vec(),
            b"-ERR 'Authorization Violation'\r\n".to_vec(),
            b"".to_vec(),
        ] {
            let (local, _) = local(Arc::new(Hub::default()));
            let (addr, _server) = fake_nats(frames).await;
            let (mut out, _link, _c) = outbox();
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
        let (mut out, _link, _c) = outbox();
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
