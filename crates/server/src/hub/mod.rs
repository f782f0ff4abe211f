//! Which devices have a WebSocket open on this process, and how to tell
//! them something is queued. A wake-up carries no data: the connection reads
//! its queue from the store, so a missed wake-up costs latency, never a
//! message. On SQLite the committer also hands over the committed rows
//! themselves, so a connection pushes without reading them back; when its
//! channel is full the row is dropped and the connection is marked to read
//! the store instead (see `routes/ws.rs`).
//!
//! Connections are keyed by device id alone: a device id has exactly one
//! owner for good (`store/devices.rs`), and a connection registers only
//! after its session was checked against that owner.

use std::collections::HashMap;
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::{Arc, Mutex};

use tokio::sync::mpsc;

use crate::store::{QueuedRow, Unpushed};

mod inbox;

/// What a connection is told.
#[derive(Debug)]
pub enum Push {
    /// Something may be queued: read the store.
    Wake,
    /// This row was just committed to the device's queue.
    Row(Arc<QueuedRow>),
    /// A frame for the device itself (its pre-keys are running out).
    Notice(Arc<strongroom_wire::WsFrame>),
}

/// Rows and wake-ups a connection may have waiting before it reads the store instead.
const CHANNEL: usize = 256;

/// One connection's side of the hub.
pub struct Conn {
    /// Pushes for it.
    pub rx: inbox::Receiver,
    /// Set when a push could not be queued: read the store before the next row.
    pub missed: Arc<AtomicBool>,
    id: u64,
}

struct Waker {
    id: u64,
    tx: inbox::Sender,
    missed: Arc<AtomicBool>,
    /// The session's token hash, for a connection the sweep checks
    /// (`service/socket_sweep.rs`); none for one that checks itself.
    swept: Option<[u8; 32]>,
}

impl Waker {
    fn send(&self, push: Push) {
        if self.tx.try_send(push).is_err() {
            // Before anything sent later, so the connection sees it in time.
            self.missed.store(true, Ordering::Release);
        }
    }
}

type Wakers = HashMap<[u8; 16], Vec<Waker>>;

/// Connected devices.
#[derive(Default)]
pub struct Hub {
    next: AtomicU64,
    conns: Mutex<Wakers>,
    /// The other server processes (cluster mode).
    cluster: std::sync::OnceLock<ClusterLink>,
    /// Pushes waiting in every connection's queue.
    unpushed: Arc<Unpushed>,
}

/// A device's first connection here opened, or its last one closed.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Presence {
    /// Rows for this device should come here.
    Up([u8; 16]),
    /// They need not any more.
    Down([u8; 16]),
}

/// What the hub tells the other processes through (`cluster.rs`).
pub struct ClusterLink {
    /// Device ids to wake wherever they are connected.
    pub wakes: mpsc::Sender<Vec<[u8; 16]>>,
    /// Committed rows, for whichever process holds the device's socket.
    pub rows: mpsc::Sender<([u8; 16], Arc<QueuedRow>)>,
    /// Which devices are connected here.
    pub presence: mpsc::UnboundedSender<Presence>,
    /// Devices whose connections must close everywhere (suspension, wipe…).
    pub disconnects: mpsc::UnboundedSender<[u8; 16]>,
}

/// Rows larger than this go to other processes as a wake-up instead (NATS
/// caps a message at 1 MiB by default).
pub const MAX_ROW_BYTES: usize = 256 * 1024;

impl Hub {
    /// A hub whose connections count their waiting pushes into `unpushed`
    /// (the store's, which its committer reads).
    pub fn counting(unpushed: Arc<Unpushed>) -> Self {
        Self { unpushed, ..Self::default() }
    }

    /// Registers a connection of `device`; with `swept`, its session's
    /// token hash, the sweep checks its session (`service/socket_sweep.rs`).
    pub fn register(&self, device: [u8; 16], swept: Option<[u8; 32]>) -> Conn {
        let id = self.next.fetch_add(1, Ordering::Relaxed);
        let (tx, rx) = inbox::inbox(CHANNEL, self.unpushed.clone());
        let missed = Arc::new(AtomicBool::new(false));
        if let Ok(mut c) = self.conns.lock() {
            let conns = c.entry(device).or_default();
            conns.push(Waker { id, tx, missed: missed.clone(), swept });
            if conns.len() == 1 {
                self.presence(Presence::Up(device));
            }
        }
        Conn { rx, missed, id }
    }

    /// Removes a connection.
    pub fn unregister(&self, device: [u8; 16], conn: &Conn) {
        self.close(&device, conn.id);
    }

    /// Sends `frame` to every connection of `device` on this process; a
    /// device elsewhere learns the same at its next sync.
    pub fn notice(&self, device: &[u8; 16], frame: strongroom_wire::WsFrame) {
        let frame = Arc::new(frame);
        if let Ok(c) = self.conns.lock() {
            for w in c.get(device).into_iter().flatten() {
                // Dropped if the connection is backed up: it is advice, not a message.
                let _ = w.tx.try_send(Push::Notice(frame.clone()));
            }
        }
    }

    /// Wakes every connection of `device`.
    pub fn notify(&self, device: &[u8; 16]) {
        if let Ok(c) = self.conns.lock() {
            for w in c.get(device).into_iter().flatten() {
                w.send(Push::Wake);
            }
        }
    }

    /// Hands a just-committed row to every connection of `device` here
    /// (built only if needed) and, in cluster mode, to the process holding
    /// the device's socket.
    pub fn deliver(&self, device: &[u8; 16], row: &dyn Fn() -> QueuedRow) {
        let Some(link) = self.cluster.get() else {
            self.send_row(device, || Arc::new(row()));
            return;
        };
        let row = Arc::new(row());
        self.deliver_here(device, &row);
        if row.envelope.len() > MAX_ROW_BYTES || link.rows.try_send((*device, row)).is_err() {
            // Never block the committer on the link: the socket reads it instead.
            let _ = link.wakes.try_send(vec![*device]);
        }
    }

    /// Hands a row to this process's connections of `device` only.
    pub fn deliver_here(&self, device: &[u8; 16], row: &Arc<QueuedRow>) {
        self.send_row(device, || row.clone());
    }

    /// Sends a row to `device`'s connections here, built only if there are any.
    fn send_row(&self, device: &[u8; 16], row: impl FnOnce() -> Arc<QueuedRow>) {
        if let Ok(c) = self.conns.lock() {
            let Some(ws) = c.get(device).filter(|w| !w.is_empty()) else { return };
            let row = row();
            for w in ws {
                w.send(Push::Row(row.clone()));
            }
        }
    }

    /// Devices connected here.
    pub fn devices(&self) -> Vec<[u8; 16]> {
        self.conns.lock().map(|c| c.keys().copied().collect()).unwrap_or_default()
    }

    /// Wakes every connection here (after the cluster link was down: rows
    /// meant for them may have been lost).
    pub fn wake_all(&self) {
        for d in self.devices() {
            self.notify(&d);
        }
    }

    fn presence(&self, p: Presence) {
        if let Some(link) = self.cluster.get() {
            let _ = link.presence.send(p);
        }
    }

    /// Closes every connection of `device` (suspension, wipe, deletion),
    /// here and on every other process.
    pub fn disconnect(&self, device: &[u8; 16]) {
        self.disconnect_here(device);
        if let Some(link) = self.cluster.get() {
            let _ = link.disconnects.send(*device);
        }
    }

    /// Closes this process's connections of `device`: dropping its wakers
    /// ends each connection's loop.
    pub fn disconnect_here(&self, device: &[u8; 16]) {
        if let Ok(mut c) = self.conns.lock() {
            if c.remove(device).is_some() {
                self.presence(Presence::Down(*device));
            }
        }
    }

    /// The connections the sweep checks: (device, connection, token hash).
    pub fn swept(&self) -> Vec<([u8; 16], u64, [u8; 32])> {
        let Ok(c) = self.conns.lock() else { return Vec::new() };
        c.iter().flat_map(|(d, v)| v.iter().filter_map(move |w| w.swept.map(|t| (*d, w.id, t)))).collect()
    }

    /// Closes one connection of `device` on this process (dropping its
    /// waker ends its loop).
    pub fn close(&self, device: &[u8; 16], id: u64) {
        if let Ok(mut c) = self.conns.lock() {
            if let Some(v) = c.get_mut(device) {
                v.retain(|w| w.id != id);
                if v.is_empty() {
                    c.remove(device);
                    self.presence(Presence::Down(*device));
                }
            }
        }
    }

    /// Connects this hub to the other processes' (set once, at start).
    pub fn set_cluster(&self, link: ClusterLink) {
        let _ = self.cluster.set(link);
    }

    /// Open connections.
    pub fn connections(&self) -> usize {
        self.conns.lock().map(|c| c.values().map(Vec::len).sum()).unwrap_or(0)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn row(id: i64) -> QueuedRow {
        QueuedRow {
            queue_id: id,
            message_id: [1; 16],
            conversation_id: [2; 16],
            seq: 1,
            received_at: 2,
            envelope: vec![3],
        }
    }

    #[test]
    fn rows_reach_connected_devices_only_and_overflow_is_flagged() {
        let hub = Hub::default();
        let built = std::cell::Cell::new(0);
        hub.deliver(&[9; 16], &|| {
            built.set(built.get() + 1);
            row(1)
        });
        assert_eq!(built.get(), 0, "no row is built for a device not connected here");

        let mut conn = hub.register([9; 16], None);
        for i in 0..CHANNEL as i64 {
            hub.deliver(&[9; 16], &|| row(i));
        }
        assert!(!conn.missed.load(Ordering::Acquire));
        hub.deliver(&[9; 16], &|| row(999));
        assert!(conn.missed.load(Ordering::Acquire), "a dropped row makes the connection read the store");
        match conn.rx.try_recv() {
            Ok(Push::Row(r)) => assert_eq!(r.queue_id, 0),
            other => panic!("{other:?}"),
        }
        hub.unregister([9; 16], &conn);
        assert_eq!(hub.connections(), 0);
    }
}
