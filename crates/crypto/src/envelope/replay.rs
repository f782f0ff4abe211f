use std::collections::HashMap;

use super::EnvelopeError;
use crate::ids::MessageId;

/// Remembers accepted message ids so a replayed envelope is refused.
///
/// Messages older than the guard's window are refused as stale: their ids
/// may already have been forgotten, so they cannot be checked.
pub trait ReplayGuard {
    /// Refuses a seen id or a stale timestamp (all times in ms).
    fn check(&self, id: &MessageId, timestamp: u64, now: u64) -> Result<(), EnvelopeError>;
    /// Records an accepted id.
    fn record(&mut self, id: MessageId, timestamp: u64, now: u64);
}

/// An in-memory guard; clients persist the same data in their store.
#[derive(Debug, Clone)]
pub struct MemoryReplayGuard {
    window_ms: u64,
    seen: HashMap<MessageId, u64>,
    prune_at: usize,
}

/// 31 days: the relay's 30-day undelivered horizon plus a day of clock skew.
pub const DEFAULT_REPLAY_WINDOW_MS: u64 = 31 * 24 * 3600 * 1000;

/// How far ahead of the relay's clock a header timestamp may be. Expiry is
/// the header timestamp plus the TTL, so a later timestamp would stretch a
/// group's timer limit; the relay refuses it (PROTOCOL.md §9).
pub const MAX_SKEW_MS: u64 = 5 * 60 * 1000;

impl Default for MemoryReplayGuard {
    fn default() -> Self {
        Self::new(DEFAULT_REPLAY_WINDOW_MS)
    }
}

impl MemoryReplayGuard {
    /// A guard that remembers ids for `window_ms`.
    pub fn new(window_ms: u64) -> Self {
        Self { window_ms, seen: HashMap::new(), prune_at: 1024 }
    }

    /// Number of ids remembered.
    pub fn len(&self) -> usize {
        self.seen.len()
    }

    /// Whether no ids are remembered.
    pub fn is_empty(&self) -> bool {
        self.seen.is_empty()
    }
}

impl ReplayGuard for MemoryReplayGuard {
    fn check(&self, id: &MessageId, timestamp: u64, now: u64) -> Result<(), EnvelopeError> {
        if self.seen.contains_key(id) {
            return Err(EnvelopeError::Replay(*id));
        }
        let age_ms = now.saturating_sub(timestamp);
        if age_ms > self.window_ms {
            return Err(EnvelopeError::Stale { age_ms });
        }
        Ok(())
    }

    fn record(&mut self, id: MessageId, timestamp: u64, now: u64) {
        self.seen.insert(id, timestamp);
        if self.seen.len() >= self.prune_at {
            let window = self.window_ms;
            self.seen.retain(|_, ts| now.saturating_sub(*ts) <= window);
            // Amortised: prune again only once the map has doubled.
            self.prune_at = (self.seen.len() * 2).max(1024);
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn refuses_replays_and_stale_and_prunes() {
        let mut g = MemoryReplayGuard::new(1000);
        let id = MessageId([1; 16]);
        g.check(&id, 5000, 5000).unwrap();
        g.record(id, 5000, 5000);
        assert_eq!(g.check(&id, 5000, 5001), Err(EnvelopeError::Replay(id)));
        assert_eq!(g.check(&MessageId([2; 16]), 1000, 5000), Err(EnvelopeError::Stale { age_ms: 4000 }));
        for i in 0..2000u32 {
            let mut b = [0u8; 16];
            b[..4].copy_from_slice(&i.to_be_bytes());
            g.record(MessageId(b), u64::from(i), 100_000);
        }
        assert!(g.len() < 1100, "old ids are pruned: {}", g.len());
    }
}
