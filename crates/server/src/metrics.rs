//! Prometheus metrics in the text exposition format. No labels carry user
//! data: only route templates and status classes.

use std::fmt::Write;
use std::sync::atomic::{AtomicU64, Ordering};

const BUCKETS_MS: [f64; 10] = [1.0, 2.5, 5.0, 10.0, 25.0, 50.0, 100.0, 250.0, 1000.0, 5000.0];

/// A latency histogram, rendered as Prometheus does: cumulative counts at
/// each bound (ms), and the count and sum of what was observed. Each
/// observation adds to one bucket (the first bound it is within, or past
/// the last); the cumulative counts and the total are summed when rendered,
/// so a scrape always sees them in order and `+Inf` equal to the count.
pub struct Histogram<const N: usize> {
    bounds_ms: [f64; N],
    buckets: [AtomicU64; N],
    past_last: AtomicU64,
    sum_us: AtomicU64,
}

impl<const N: usize> Histogram<N> {
    /// Empty, with these upper bounds (ms, increasing).
    pub const fn new(bounds_ms: [f64; N]) -> Self {
        Self {
            bounds_ms,
            buckets: [const { AtomicU64::new(0) }; N],
            past_last: AtomicU64::new(0),
            sum_us: AtomicU64::new(0),
        }
    }

    /// Records one duration.
    pub fn observe(&self, elapsed: std::time::Duration) {
        let ms = elapsed.as_secs_f64() * 1000.0;
        let bucket = self.bounds_ms.iter().position(|&limit| ms <= limit).and_then(|i| self.buckets.get(i));
        bucket.unwrap_or(&self.past_last).fetch_add(1, Ordering::Relaxed);
        self.sum_us.fetch_add(u64::try_from(elapsed.as_micros()).unwrap_or(u64::MAX), Ordering::Relaxed);
    }

    /// The cumulative counts at each bound, then the total.
    fn cumulative(&self) -> ([u64; N], u64) {
        let mut at = [0u64; N];
        let mut total = 0u64;
        for (c, b) in at.iter_mut().zip(&self.buckets) {
            total = total.saturating_add(b.load(Ordering::Relaxed));
            *c = total;
        }
        (at, total.saturating_add(self.past_last.load(Ordering::Relaxed)))
    }

    /// How many were recorded.
    pub fn count(&self) -> u64 {
        self.cumulative().1
    }

    /// How many took at most `bound_ms` (one of the bounds; `None` otherwise).
    pub fn at_most(&self, bound_ms: f64) -> Option<u64> {
        let i = self.bounds_ms.iter().position(|&b| b == bound_ms)?;
        self.cumulative().0.get(i).copied()
    }

    /// Appends the histogram `name` (in seconds) in the exposition format.
    pub fn render(&self, s: &mut String, name: &str, help: &str) {
        let _ = writeln!(s, "# HELP {name} {help}\n# TYPE {name} histogram");
        let (at, count) = self.cumulative();
        for (n, limit) in at.iter().zip(self.bounds_ms) {
            let _ = writeln!(s, "{name}_bucket{{le=\"{}\"}} {n}", limit / 1000.0);
        }
        let _ = writeln!(s, "{name}_bucket{{le=\"+Inf\"}} {count}");
        let _ = writeln!(s, "{name}_sum {}", self.sum_us.load(Ordering::Relaxed) as f64 / 1e6);
        let _ = writeln!(s, "{name}_count {count}");
    }
}

/// Counters and a request latency histogram.
pub struct Metrics {
    /// Envelopes accepted.
    pub messages_in: AtomicU64,
    /// Deliveries sent (HTTP fetch and WebSocket push).
    pub deliveries_out: AtomicU64,
    /// Queue entries dropped by expiry.
    pub expired: AtomicU64,
    /// When a retention device last acknowledged archived messages (ms).
    pub retention_last_ack: AtomicU64,
    /// The retention backlog is over its alert threshold.
    pub retention_alert: std::sync::atomic::AtomicBool,
    latency: Histogram<10>,
    status_2xx: AtomicU64,
    status_4xx: AtomicU64,
    status_5xx: AtomicU64,
}

impl Default for Metrics {
    fn default() -> Self {
        Self {
            messages_in: AtomicU64::new(0),
            deliveries_out: AtomicU64::new(0),
            expired: AtomicU64::new(0),
            retention_last_ack: AtomicU64::new(0),
            retention_alert: std::sync::atomic::AtomicBool::new(false),
            latency: Histogram::new(BUCKETS_MS),
            status_2xx: AtomicU64::new(0),
            status_4xx: AtomicU64::new(0),
            status_5xx: AtomicU64::new(0),
        }
    }
}

impl Metrics {
    /// Records one request.
    pub fn observe(&self, status: u16, elapsed: std::time::Duration) {
        self.latency.observe(elapsed);
        match status {
            200..=399 => &self.status_2xx,
            400..=499 => &self.status_4xx,
            _ => &self.status_5xx,
        }
        .fetch_add(1, Ordering::Relaxed);
    }

    /// Renders the exposition text, the store's write timings included.
    pub fn render(
        &self,
        connections: usize,
        queue: (u64, u64),
        envelopes: u64,
        store: &crate::store::WriteTimings,
    ) -> String {
        let g = |a: &AtomicU64| a.load(Ordering::Relaxed);
        let mut s = String::new();
        let _ = writeln!(s, "# HELP strongroom_connections Open WebSocket connections.\n# TYPE strongroom_connections gauge\nstrongroom_connections {connections}");
        let _ = writeln!(s, "# HELP strongroom_messages_in_total Envelopes accepted.\n# TYPE strongroom_messages_in_total counter\nstrongroom_messages_in_total {}", g(&self.messages_in));
        let _ = writeln!(s, "# HELP strongroom_deliveries_out_total Envelopes delivered to devices.\n# TYPE strongroom_deliveries_out_total counter\nstrongroom_deliveries_out_total {}", g(&self.deliveries_out));
        let _ = writeln!(s, "# HELP strongroom_expired_total Undelivered queue entries dropped by expiry.\n# TYPE strongroom_expired_total counter\nstrongroom_expired_total {}", g(&self.expired));
        let _ = writeln!(s, "# HELP strongroom_queue_depth Queued deliveries by recipient kind; kind=\"retention\" is the retention backlog.\n# TYPE strongroom_queue_depth gauge\nstrongroom_queue_depth{{kind=\"device\"}} {}\nstrongroom_queue_depth{{kind=\"retention\"}} {}", queue.0, queue.1);
        let _ = writeln!(s, "# HELP strongroom_retention_backlog_alert 1 when the retention backlog is over retention_backlog_alert.\n# TYPE strongroom_retention_backlog_alert gauge\nstrongroom_retention_backlog_alert {}", u8::from(self.retention_alert.load(Ordering::Relaxed)));
        let _ = writeln!(s, "# HELP strongroom_envelopes_stored Envelopes stored (each once).\n# TYPE strongroom_envelopes_stored gauge\nstrongroom_envelopes_stored {envelopes}");
        let _ = writeln!(s, "# HELP strongroom_http_responses_total Responses by status class.\n# TYPE strongroom_http_responses_total counter");
        for (class, a) in [("2xx", &self.status_2xx), ("4xx", &self.status_4xx), ("5xx", &self.status_5xx)] {
            let _ = writeln!(s, "strongroom_http_responses_total{{class=\"{class}\"}} {}", g(a));
        }
        self.latency.render(&mut s, "strongroom_http_request_duration_seconds", "Request latency.");
        store.render(&mut s);
        s
    }
}
