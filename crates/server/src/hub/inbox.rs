//! A connection's bounded queue of pushes. tokio's bounded channel
//! allocates a block of 32 slots and its bookkeeping (about 1 KiB) when it
//! is made; most sockets are idle, and this holds nothing until a push
//! arrives (and gives back what a burst grew once it has drained).

use std::collections::VecDeque;
use std::sync::{Arc, Mutex};

use tokio::sync::Notify;

use super::Push;
use crate::store::Unpushed;

/// Capacity kept after a burst drains: a few pushes' worth.
const KEEP: usize = 8;

struct Slots {
    items: VecDeque<Push>,
    /// One end is gone: the sender's, so the connection was closed (its
    /// session ended, its device was suspended or wiped) and pushes nothing
    /// more, not even what was queued (it stays in the store); or the
    /// receiver's, so nothing more is queued (a socket task that ended
    /// without unregistering pins no rows).
    closed: bool,
    /// Whether `items` count in the shared gauge: not from the first push
    /// refused for want of room until the queue has drained. A socket that
    /// stopped taking writes is not a fan-out going out, and its full
    /// queue must not keep the committer holding acks.
    counted: bool,
}

struct Shared {
    slots: Mutex<Slots>,
    notify: Notify,
    capacity: usize,
    /// Every connection's queue counts into this (the committer reads it).
    unpushed: Arc<Unpushed>,
}

/// The hub's end: one per connection.
pub struct Sender(Arc<Shared>);

/// The connection's end.
pub struct Receiver(Arc<Shared>);

/// Nothing is waiting (or the sender is gone and everything was taken).
#[derive(Debug, PartialEq, Eq)]
pub struct Empty;

/// A queue of at most `capacity` pushes, counted in `unpushed`.
pub fn inbox(capacity: usize, unpushed: Arc<Unpushed>) -> (Sender, Receiver) {
    let shared = Arc::new(Shared {
        slots: Mutex::new(Slots { items: VecDeque::new(), closed: false, counted: true }),
        notify: Notify::new(),
        capacity,
        unpushed,
    });
    (Sender(shared.clone()), Receiver(shared))
}

impl Sender {
    /// Queues `push`, or gives it back when the queue is full.
    pub fn try_send(&self, push: Push) -> Result<(), Push> {
        {
            let Ok(mut s) = self.0.slots.lock() else { return Err(push) };
            if s.closed {
                return Err(push);
            }
            if s.items.len() >= self.0.capacity {
                if s.counted {
                    s.counted = false;
                    self.0.unpushed.taken(s.items.len());
                }
                return Err(push);
            }
            s.items.push_back(push);
            if s.counted {
                self.0.unpushed.queued(1);
            }
        }
        // A permit is kept if the receiver is not waiting yet: no lost wake-up.
        self.0.notify.notify_one();
        Ok(())
    }
}

impl Drop for Sender {
    fn drop(&mut self) {
        if let Ok(mut s) = self.0.slots.lock() {
            s.closed = true;
            if s.counted {
                self.0.unpushed.taken(s.items.len());
            }
            s.items = VecDeque::new();
        }
        self.0.notify.notify_one();
    }
}

impl Drop for Receiver {
    fn drop(&mut self) {
        if let Ok(mut s) = self.0.slots.lock() {
            s.closed = true;
            if s.counted {
                self.0.unpushed.taken(s.items.len());
            }
            s.items = VecDeque::new();
        }
    }
}

impl Receiver {
    /// Whether the connection was closed (the hub let go of it): it must
    /// push nothing more, nor read the store to push.
    pub fn is_closed(&self) -> bool {
        self.0.slots.lock().map(|s| s.closed).unwrap_or(true)
    }

    /// The next push; `None` once the sender is gone.
    pub async fn recv(&mut self) -> Option<Push> {
        loop {
            match self.take() {
                Some(Ok(p)) => return Some(p),
                Some(Err(Empty)) => return None,
                None => self.0.notify.notified().await,
            }
        }
    }

    /// The next push if one is waiting.
    pub fn try_recv(&mut self) -> Result<Push, Empty> {
        self.take().unwrap_or(Err(Empty))
    }

    /// `Some(Ok)`: a push; `Some(Err)`: closed; `None`: wait.
    fn take(&self) -> Option<Result<Push, Empty>> {
        let Ok(mut s) = self.0.slots.lock() else { return Some(Err(Empty)) };
        match s.items.pop_front() {
            Some(p) => {
                if s.counted {
                    self.0.unpushed.taken(1);
                }
                if s.items.is_empty() {
                    s.counted = true;
                }
                if s.items.is_empty() && s.items.capacity() > KEEP {
                    s.items.shrink_to(KEEP);
                }
                Some(Ok(p))
            }
            None if s.closed => Some(Err(Empty)),
            None => None,
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[tokio::test]
    async fn bounded_in_order_and_ends_after_the_sender() {
        let (tx, mut rx) = inbox(2, Arc::default());
        assert_eq!(rx.try_recv().err(), Some(Empty));
        assert!(tx.try_send(Push::Wake).is_ok());
        assert!(tx.try_send(Push::Wake).is_ok());
        assert!(tx.try_send(Push::Wake).is_err(), "full");
        assert!(matches!(rx.recv().await, Some(Push::Wake)));
        assert!(tx.try_send(Push::Wake).is_ok(), "room again");
        assert!(!rx.is_closed());
        drop(tx);
        // A closed connection pushes nothing more, not even what was
        // queued (it stays in the store).
        assert!(rx.is_closed());
        assert!(rx.recv().await.is_none());
        assert_eq!(rx.try_recv().err(), Some(Empty));
    }

    #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
    async fn a_waiting_receiver_is_woken_and_nothing_is_lost() {
        let (tx, mut rx) = inbox(64, Arc::default());
        let reader = tokio::spawn(async move {
            let mut n = 0u32;
            while rx.recv().await.is_some() {
                n += 1;
            }
            n
        });
        let mut sent = 0u32;
        for i in 0..10_000u32 {
            while tx.try_send(Push::Wake).is_err() {
                tokio::task::yield_now().await;
            }
            sent += 1;
            if i % 97 == 0 {
                tokio::task::yield_now().await;
            }
        }
        // Closing drops what is queued: close once all was taken.
        while tx.0.slots.lock().map(|s| !s.items.is_empty()).unwrap_or(false) {
            tokio::task::yield_now().await;
        }
        drop(tx);
        let got = tokio::time::timeout(std::time::Duration::from_secs(10), reader).await;
        assert_eq!(got.ok().and_then(Result::ok), Some(sent));
    }

    #[test]
    fn nothing_is_queued_for_a_receiver_that_is_gone() {
        let (tx, rx) = inbox(4, Arc::default());
        assert!(tx.try_send(Push::Wake).is_ok());
        let shared = rx.0.clone();
        drop(rx);
        assert!(tx.try_send(Push::Wake).is_err());
        assert_eq!(shared.slots.lock().map(|s| s.items.len()).unwrap_or(usize::MAX), 0);
    }

    /// Queued pushes count until taken, or until their connection goes.
    #[test]
    fn every_queue_counts_into_the_shared_gauge() {
        let unpushed = Arc::new(Unpushed::default());
        let (a, mut ra) = inbox(8, unpushed.clone());
        let (b, rb) = inbox(8, unpushed.clone());
        for _ in 0..3 {
            assert!(a.try_send(Push::Wake).is_ok());
            assert!(b.try_send(Push::Wake).is_ok());
        }
        assert_eq!(unpushed.waiting(), 6);
        assert!(ra.try_recv().is_ok());
        assert_eq!(unpushed.waiting(), 5);
        drop(a);
        assert_eq!(unpushed.waiting(), 3, "a closed connection's pushes no longer wait");
        assert!(ra.try_recv().is_err());
        drop(rb);
        assert_eq!(unpushed.waiting(), 0, "a gone connection's pushes no longer wait");
        assert!(b.try_send(Push::Wake).is_err());
        assert_eq!(unpushed.waiting(), 0, "a refused push is not counted");
    }

    /// A queue that filled up (its socket stopped taking writes) no longer
    /// counts, until it has drained.
    #[test]
    fn a_full_queue_stops_counting_until_it_drains() {
        let unpushed = Arc::new(Unpushed::default());
        let (tx, mut rx) = inbox(4, unpushed.clone());
        for _ in 0..4 {
            assert!(tx.try_send(Push::Wake).is_ok());
        }
        assert_eq!(unpushed.waiting(), 4);
        assert!(tx.try_send(Push::Wake).is_err(), "full");
        assert_eq!(unpushed.waiting(), 0, "a stalled queue does not count");
        assert!(rx.try_recv().is_ok());
        assert!(tx.try_send(Push::Wake).is_ok());
        assert_eq!(unpushed.waiting(), 0, "not before it drained");
        while rx.try_recv().is_ok() {}
        assert_eq!(unpushed.waiting(), 0);
        assert!(tx.try_send(Push::Wake).is_ok());
        assert_eq!(unpushed.waiting(), 1, "counted again once drained");
        drop(rx);
        assert_eq!(unpushed.waiting(), 0);
    }

    #[test]
    fn a_drained_burst_gives_its_memory_back() {
        let (tx, mut rx) = inbox(256, Arc::default());
        for _ in 0..200 {
            assert!(tx.try_send(Push::Wake).is_ok());
        }
        while rx.try_recv().is_ok() {}
        assert!(rx.0.slots.lock().map(|s| s.items.capacity()).unwrap_or(usize::MAX) <= KEEP);
    }
}
