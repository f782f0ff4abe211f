//! A read-through memo of what every request reads and almost nothing
//! writes: sessions, a conversation's members and their devices, the current
//! network policy and a user's security-group settings. On the send path
//! these reads were most of the database round trips per message.
//!
//! Invalidation is coarse and therefore simple to get right: every committed
//! write transaction except the message hot path (envelopes, queues, acks)
//! bumps one generation number, and an entry is valid only for the
//! generation it was read under. The generation is read *before* the
//! database and bumped *after* the commit, so a reader racing a writer at
//! worst caches a value that is already stale and never used.
//!
//! Other server processes change the same database; they announce their
//! commits over NATS (`cluster.rs`), which bumps the generation here too.
//! Entries also expire after [`MAX_AGE`], which bounds staleness if such an
//! announcement is lost (NATS is at-most-once).

use std::collections::HashMap;
use std::hash::Hash;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Mutex, OnceLock};
use std::time::{Duration, Instant};

/// The longest any entry is trusted, whatever the generation says.
pub const MAX_AGE: Duration = Duration::from_secs(2);

/// Most entries per memo; beyond it the memo starts over (no LRU needed:
/// refilling costs one read per key).
const MAX_ENTRIES: usize = 100_000;

/// One memo: key → (generation, when read, value).
pub(crate) struct Memo<K, V> {
    map: Mutex<HashMap<K, (u64, Instant, V)>>,
}

impl<K: Eq + Hash, V: Clone> Memo<K, V> {
    fn new() -> Self {
        Self { map: Mutex::new(HashMap::new()) }
    }

    /// The value for `key` if it was read under `generation` less than [`MAX_AGE`] ago.
    pub(crate) fn get(&self, key: &K, generation: u64) -> Option<V> {
        let map = self.map.lock().ok()?;
        let (g, at, v) = map.get(key)?;
        (*g == generation && at.elapsed() < MAX_AGE).then(|| v.clone())
    }

    /// Remembers `value`, read from the database under `generation`.
    pub(crate) fn put(&self, key: K, generation: u64, value: V) {
        if let Ok(mut map) = self.map.lock() {
            if map.len() >= MAX_ENTRIES {
                map.clear();
            }
            map.insert(key, (generation, Instant::now(), value));
        }
    }
}

type Id = [u8; 16];
/// A conversation's members' active devices: (user, device), sorted.
pub(crate) type MemberDevices = std::sync::Arc<Vec<(Id, Id)>>;
/// A network's current signed policy: (version, encoded).
pub(crate) type CurrentPolicy = Option<(u64, std::sync::Arc<Vec<u8>>)>;

/// The memos and their generation.
pub(crate) struct Cache {
    generation: AtomicU64,
    /// Told after each local invalidating commit (cluster mode: to NATS).
    announce: OnceLock<tokio::sync::mpsc::Sender<()>>,
    /// Token hash → (session, expires at ms).
    pub(crate) sessions: Memo<[u8; 32], (super::SessionRow, i64)>,
    /// (conversation, user) → (network, is a member), or no such conversation.
    pub(crate) membership: Memo<(Id, Id), Option<(Id, bool)>>,
    /// Conversation → its members' active devices, sorted.
    pub(crate) member_devices: Memo<Id, MemberDevices>,
    /// Network → (version, encoded signed policy).
    pub(crate) policies: Memo<Id, CurrentPolicy>,
    /// User → effective security-group settings.
    pub(crate) settings: Memo<[u8; 16], Option<strongroom_wire::GroupSettings>>,
}

impl Cache {
    pub(crate) fn new() -> Self {
        Self {
            generation: AtomicU64::new(0),
            announce: OnceLock::new(),
            sessions: Memo::new(),
            membership: Memo::new(),
            member_devices: Memo::new(),
            policies: Memo::new(),
            settings: Memo::new(),
        }
    }

    /// The generation to tag a read with; take it before reading.
    pub(crate) fn generation(&self) -> u64 {
        self.generation.load(Ordering::Acquire)
    }

    /// Everything read so far is stale (a write committed somewhere).
    pub(crate) fn invalidate(&self) {
        self.generation.fetch_add(1, Ordering::AcqRel);
    }

    /// A write committed here: invalidate, and tell the other processes.
    pub(crate) fn committed(&self) {
        self.invalidate();
        if let Some(tx) = self.announce.get() {
            // Coalesced: one pending announcement covers any number of commits.
            let _ = tx.try_send(());
        }
    }

    pub(crate) fn set_announce(&self, tx: tokio::sync::mpsc::Sender<()>) {
        let _ = self.announce.set(tx);
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn entries_hold_only_for_their_generation() {
        let c = Cache::new();
        let g = c.generation();
        c.settings.put([1; 16], g, None);
        assert_eq!(c.settings.get(&[1; 16], g), Some(None));
        assert_eq!(c.settings.get(&[2; 16], g), None);
        c.committed();
        assert_eq!(c.settings.get(&[1; 16], c.generation()), None, "a commit makes every entry stale");
        // A value read under an older generation (racing a writer) is never served.
        c.settings.put([1; 16], g, None);
        assert_eq!(c.settings.get(&[1; 16], c.generation()), None);
    }

    #[test]
    fn the_memo_starts_over_when_full() {
        let m: Memo<u32, u32> = Memo::new();
        for i in 0..(MAX_ENTRIES as u32 + 1) {
            m.put(i, 0, i);
        }
        assert_eq!(m.get(&0, 0), None);
        assert_eq!(m.get(&(MAX_ENTRIES as u32), 0), Some(MAX_ENTRIES as u32));
    }

    #[tokio::test]
    async fn commits_are_announced_coalesced() {
        let c = Cache::new();
        let (tx, mut rx) = tokio::sync::mpsc::channel(1);
        c.set_announce(tx);
        c.committed();
        c.committed();
        assert_eq!(c.generation(), 2);
        assert!(rx.try_recv().is_ok());
        assert!(rx.try_recv().is_err(), "one pending announcement covers both");
    }
}
