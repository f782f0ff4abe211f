//! Which devices have a WebSocket open on this process, and how to wake them
//! when something is queued for them. A wake-up carries no data: the
//! connection reads its queue from the store, so a missed wake-up costs
//! latency, never a message.

use std::collections::HashMap;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::Mutex;

use tokio::sync::mpsc;

type Wakers = HashMap<[u8; 16], Vec<(u64, mpsc::Sender<()>)>>;

/// Connected devices.
#[derive(Default)]
pub struct Hub {
    next: AtomicU64,
    conns: Mutex<Wakers>,
    /// Wake-ups for the other server processes (cluster mode).
    cluster: std::sync::OnceLock<mpsc::Sender<Vec<[u8; 16]>>>,
}

impl Hub {
    /// Registers a connection of `device`; the receiver gets wake-ups.
    pub fn register(&self, device: [u8; 16]) -> (u64, mpsc::Receiver<()>) {
        let id = self.next.fetch_add(1, Ordering::Relaxed);
        let (tx, rx) = mpsc::channel(1);
        if let Ok(mut c) = self.conns.lock() {
            c.entry(device).or_default().push((id, tx));
        }
        (id, rx)
    }

    /// Removes a connection.
    pub fn unregister(&self, device: [u8; 16], id: u64) {
        if let Ok(mut c) = self.conns.lock() {
            if let Some(v) = c.get_mut(&device) {
                v.retain(|(i, _)| *i != id);
                if v.is_empty() {
                    c.remove(&device);
                }
            }
        }
    }

    /// Wakes every connection of `device` (coalesced: one pending wake-up each).
    pub fn notify(&self, device: &[u8; 16]) {
        if let Ok(c) = self.conns.lock() {
            for (_, tx) in c.get(device).into_iter().flatten() {
                let _ = tx.try_send(());
            }
        }
    }

    /// Closes every connection of `device` (suspension, wipe, deletion):
    /// dropping its wakers ends each connection's loop.
    pub fn disconnect(&self, device: &[u8; 16]) {
        if let Ok(mut c) = self.conns.lock() {
            c.remove(device);
        }
    }

    /// Connects this hub to the other processes' (set once, at start).
    pub fn set_cluster(&self, tx: mpsc::Sender<Vec<[u8; 16]>>) {
        let _ = self.cluster.set(tx);
    }

    /// Wakes these devices here and, in cluster mode, on every other process.
    pub fn notify_everywhere(&self, devices: Vec<[u8; 16]>) {
        for d in &devices {
            self.notify(d);
        }
        if let Some(tx) = self.cluster.get() {
            // Never block a request on the link; connections poll as a fallback.
            let _ = tx.try_send(devices);
        }
    }

    /// Open connections.
    pub fn connections(&self) -> usize {
        self.conns.lock().map(|c| c.values().map(Vec::len).sum()).unwrap_or(0)
    }
}
