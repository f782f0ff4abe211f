//! Prometheus metrics in the text exposition format. No labels carry user
//! data: only route templates and status classes.

use std::fmt::Write;
use std::sync::atomic::{AtomicU64, Ordering};

const BUCKETS_MS: [f64; 10] = [1.0, 2.5, 5.0, 10.0, 25.0, 50.0, 100.0, 250.0, 1000.0, 5000.0];

/// Counters and a request latency histogram.
#[derive(Default)]
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
    latency_buckets: [AtomicU64; 10],
    latency_count: AtomicU64,
    latency_sum_us: AtomicU64,
    status_2xx: AtomicU64,
    status_4xx: AtomicU64,
    status_5xx: AtomicU64,
}

impl Metrics {
    /// Records one request.
    pub fn observe(&self, status: u16, elapsed: std::time::Duration) {
        let ms = elapsed.as_secs_f64() * 1000.0;
        for (b, limit) in self.latency_buckets.iter().zip(BUCKETS_MS) {
            if ms <= limit {
                b.fetch_add(1, Ordering::Relaxed);
            }
        }
        self.latency_count.fetch_add(1, Ordering::Relaxed);
        self.latency_sum_us.fetch_add(u64::try_from(elapsed.as_micros()).unwrap_or(u64::MAX), Ordering::Relaxed);
        match status {
            200..=399 => &self.status_2xx,
            400..=499 => &self.status_4xx,
            _ => &self.status_5xx,
        }
        .fetch_add(1, Ordering::Relaxed);
    }

    /// Renders the exposition text.
    pub fn render(&self, connections: usize, queue: (u64, u64), envelopes: u64) -> String {
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
        let _ = writeln!(s, "# HELP strongroom_http_request_duration_seconds Request latency.\n# TYPE strongroom_http_request_duration_seconds histogram");
        for (b, limit) in self.latency_buckets.iter().zip(BUCKETS_MS) {
            let _ =
                writeln!(s, "strongroom_http_request_duration_seconds_bucket{{le=\"{}\"}} {}", limit / 1000.0, g(b));
        }
        let count = g(&self.latency_count);
        let _ = writeln!(s, "strongroom_http_request_duration_seconds_bucket{{le=\"+Inf\"}} {count}");
        let _ = writeln!(s, "strongroom_http_request_duration_seconds_sum {}", g(&self.latency_sum_us) as f64 / 1e6);
        let _ = writeln!(s, "strongroom_http_request_duration_seconds_count {count}");
        s
    }
}
