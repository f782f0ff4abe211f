//! How many pushes wait in connections' queues for their sockets: a room's
//! message hands a thousand of them over at once. While that many wait,
//! the SQLite committer holds acknowledgements back for a while
//! (`sqlite_committer.rs`): on a busy core the two share the CPU, and an
//! ack loses nothing by waiting a few milliseconds, where every push
//! behind it adds to a message's latency.
//!
//! A queue stops counting at its first push refused for want of room
//! (`hub/inbox.rs`) until it has drained: a socket that stopped taking
//! writes is not a fan-out going out.

use std::sync::atomic::{AtomicUsize, Ordering};

use tokio::sync::Notify;

/// From this many waiting pushes on, a fan-out is under way.
pub const BUSY_FROM: usize = 256;

/// Below this many, it has gone out (the held acks are written).
pub const CALM_BELOW: usize = 64;

/// Pushes queued for sockets and not yet taken by their connections.
#[derive(Debug, Default)]
pub struct Unpushed {
    count: AtomicUsize,
    calm: Notify,
}

impl Unpushed {
    /// `n` pushes were queued.
    pub fn queued(&self, n: usize) {
        self.count.fetch_add(n, Ordering::AcqRel);
    }

    /// `n` pushes were taken (or dropped with their connection).
    pub fn taken(&self, n: usize) {
        if n == 0 {
            return;
        }
        // Saturating: a miscount must never wrap into "busy for good".
        let before = self.count.fetch_update(Ordering::AcqRel, Ordering::Acquire, |c| Some(c.saturating_sub(n)));
        let before = before.unwrap_or(0);
        if before >= CALM_BELOW && before.saturating_sub(n) < CALM_BELOW {
            self.calm.notify_waiters();
        }
    }

    /// How many wait now.
    pub fn waiting(&self) -> usize {
        self.count.load(Ordering::Acquire)
    }

    /// Whether a fan-out is under way.
    pub fn busy(&self) -> bool {
        self.waiting() >= BUSY_FROM
    }

    /// Returns once fewer than [`CALM_BELOW`] wait.
    pub async fn calm(&self) {
        loop {
            let notified = self.calm.notified();
            tokio::pin!(notified);
            // Registered before the count is read: a drop in between still wakes it.
            notified.as_mut().enable();
            if self.waiting() < CALM_BELOW {
                return;
            }
            notified.await;
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::sync::Arc;
    use std::time::Duration;

    #[test]
    fn counts_and_never_wraps() {
        let u = Unpushed::default();
        u.queued(BUSY_FROM);
        assert!(u.busy());
        u.taken(1);
        assert!(!u.busy());
        u.taken(10 * BUSY_FROM);
        assert_eq!(u.waiting(), 0, "saturates at zero");
        u.taken(0);
        assert_eq!(u.waiting(), 0);
    }

    #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
    async fn calm_wakes_once_the_fan_out_went_out() {
        let u = Arc::new(Unpushed::default());
        u.queued(1000);
        let waiter = tokio::spawn({
            let u = u.clone();
            async move { u.calm().await }
        });
        tokio::time::sleep(Duration::from_millis(50)).await;
        assert!(!waiter.is_finished(), "calm while 1,000 wait");
        for _ in 0..(1000 - CALM_BELOW) {
            u.taken(1);
        }
        tokio::time::sleep(Duration::from_millis(50)).await;
        assert!(!waiter.is_finished(), "calm at exactly the threshold");
        u.taken(1);
        assert!(tokio::time::timeout(Duration::from_secs(5), waiter).await.is_ok(), "not woken below the threshold");
        // Already calm: returns at once.
        assert!(tokio::time::timeout(Duration::from_secs(1), u.calm()).await.is_ok());
    }

    #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
    async fn a_drop_of_many_at_once_wakes_too() {
        let u = Arc::new(Unpushed::default());
        u.queued(500);
        let waiter = tokio::spawn({
            let u = u.clone();
            async move { u.calm().await }
        });
        tokio::time::sleep(Duration::from_millis(20)).await;
        u.taken(480);
        assert!(tokio::time::timeout(Duration::from_secs(5), waiter).await.is_ok());
    }
}
