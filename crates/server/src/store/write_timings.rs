//! How long the relay's writes of messages and acknowledgements take, step
//! by step, on `/metrics`: what tells a busy committer from a slow disk or a
//! checkpoint holding writers off, without a profiler on the server.

use std::time::Instant;

use crate::metrics::Histogram;

/// From a quarter of a millisecond (a 1:1 group's commit) to five seconds.
const BOUNDS_MS: [f64; 12] = [0.25, 0.5, 1.0, 2.5, 5.0, 10.0, 25.0, 50.0, 100.0, 250.0, 1000.0, 5000.0];

type Steps = Histogram<12>;

/// The write path's steps, each a histogram.
pub struct WriteTimings {
    /// A send, from being handed to the committer (its bounded queue
    /// included) to its group's start.
    pub(super) send_wait: Steps,
    /// A group waiting for the store's writer lock (SQLite's committer:
    /// other writers and a checkpoint's final pass hold it).
    pub(super) write_lock: Steps,
    /// A committed group's transaction: envelopes, queue rows, acks (on
    /// PostgreSQL from taking a connection to its commit's own flush; on
    /// SQLite's committer without the sync). Failed ones are not counted.
    pub(super) commit: Steps,
    /// One sync of SQLite's write-ahead log by its committer.
    pub(super) sync: Steps,
    /// A send, from being handed to the committer until it is on disk and
    /// answered (its rows handed to the sockets), alone after its group
    /// failed included.
    pub(super) send_durable: Steps,
    /// Handing a synced group's queue rows to the connections (a room's
    /// message: a row per member device).
    pub(super) handoff: Steps,
}

impl Default for WriteTimings {
    fn default() -> Self {
        Self {
            send_wait: Histogram::new(BOUNDS_MS),
            write_lock: Histogram::new(BOUNDS_MS),
            commit: Histogram::new(BOUNDS_MS),
            sync: Histogram::new(BOUNDS_MS),
            send_durable: Histogram::new(BOUNDS_MS),
            handoff: Histogram::new(BOUNDS_MS),
        }
    }
}

impl WriteTimings {
    /// Appends every histogram in the exposition format.
    pub fn render(&self, s: &mut String) {
        let steps: [(&Steps, &str, &str); 6] = [
            (
                &self.send_wait,
                "send_wait",
                "A send from being handed to the committer to the start of its group's write.",
            ),
            (&self.write_lock, "write_lock_wait", "A group waiting for the store's writer lock (SQLite)."),
            (&self.commit, "commit", "A committed group's transaction: envelopes, queue rows and acknowledgements."),
            (&self.sync, "log_sync", "One sync of the write-ahead log by the SQLite committer."),
            (
                &self.send_durable,
                "send_durable",
                "A send from being handed to the committer until it is on disk and answered.",
            ),
            (&self.handoff, "handoff", "Handing a synced group's queue rows to the connections (SQLite)."),
        ];
        for (h, name, help) in steps {
            h.render(s, &format!("strongroom_store_{name}_seconds"), help);
        }
    }

    /// Records how long each send of a group waited for it to start.
    pub(super) fn group_started(&self, queued: impl Iterator<Item = Instant>, now: Instant) {
        for at in queued {
            self.send_wait.observe(now.saturating_duration_since(at));
        }
    }

    /// Records each send of a group as durable and answered now.
    pub(super) fn sends_durable(&self, queued: impl Iterator<Item = Instant>) {
        let now = Instant::now();
        for at in queued {
            self.send_durable.observe(now.saturating_duration_since(at));
        }
    }

    /// Records one step's duration, from `since`.
    pub(super) fn step(h: &Steps, since: Instant) {
        h.observe(since.elapsed());
    }
}

#[cfg(test)]
mod tests {
    #![allow(clippy::unwrap_used, clippy::indexing_slicing)]
    use super::*;
    use std::time::Duration;

    /// Buckets are cumulative, in seconds, and end with +Inf, the sum and the count.
    #[test]
    fn steps_render_as_cumulative_histograms_in_seconds() {
        let t = WriteTimings::default();
        t.commit.observe(Duration::from_micros(300));
        t.commit.observe(Duration::from_millis(7));
        t.commit.observe(Duration::from_secs(9));
        let mut s = String::new();
        t.render(&mut s);
        let line = |l: &str| s.lines().find(|x| x.starts_with(l)).map(str::to_owned);
        assert_eq!(
            line("strongroom_store_commit_seconds_bucket{le=\"0.00025\"}").unwrap().split(' ').nth(1),
            Some("0")
        );
        assert_eq!(line("strongroom_store_commit_seconds_bucket{le=\"0.0005\"}").unwrap().split(' ').nth(1), Some("1"));
        assert_eq!(line("strongroom_store_commit_seconds_bucket{le=\"0.01\"}").unwrap().split(' ').nth(1), Some("2"));
        assert_eq!(line("strongroom_store_commit_seconds_bucket{le=\"5\"}").unwrap().split(' ').nth(1), Some("2"));
        assert_eq!(line("strongroom_store_commit_seconds_bucket{le=\"+Inf\"}").unwrap().split(' ').nth(1), Some("3"));
        assert_eq!(line("strongroom_store_commit_seconds_count").unwrap(), "strongroom_store_commit_seconds_count 3");
        assert_eq!(line("strongroom_store_commit_seconds_sum").unwrap(), "strongroom_store_commit_seconds_sum 9.0073");
        for name in ["send_wait", "write_lock_wait", "log_sync", "send_durable", "handoff"] {
            assert!(s.contains(&format!("# TYPE strongroom_store_{name}_seconds histogram")), "{s}");
            assert!(s.contains(&format!("strongroom_store_{name}_seconds_count 0")), "{s}");
        }
    }

    #[test]
    fn a_send_waits_from_when_it_was_queued() {
        let t = WriteTimings::default();
        let now = Instant::now();
        let queued =
            [now - Duration::from_millis(30), now - Duration::from_micros(100), now + Duration::from_millis(1)];
        t.group_started(queued.into_iter(), now);
        assert_eq!(t.send_wait.count(), 3);
        // Under a quarter of a millisecond: 100 µs, and a clock read after `now` (as 0).
        assert_eq!(t.send_wait.at_most(0.25), Some(2));
        assert_eq!(t.send_wait.at_most(25.0), Some(2));
        assert_eq!(t.send_wait.at_most(50.0), Some(3));
    }
}
