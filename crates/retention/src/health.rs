//! The running service's health, pushed to a webhook the operator names:
//! `start` and `stop`, a `verify_failed` from the verify it runs on a
//! schedule, and a `backlog` when more than a threshold waits on the relay.
//! Alerts are best effort: a webhook that is down never stops archiving.

use std::time::Duration;

use serde_json::{json, Value};

/// What to watch and where to say it.
#[derive(Debug, Clone, Default)]
pub struct HealthOptions {
    /// Where alerts are POSTed (JSON).
    pub webhook: Option<String>,
    /// Verify the archive this often (records, checkpoints, signatures; not files).
    pub verify_every: Option<Duration>,
    /// Alert when more messages than this wait for the device on the relay.
    pub backlog_alert: Option<u64>,
}

/// Sends alerts.
pub(crate) struct Alerts {
    url: Option<String>,
    http: reqwest::Client,
    device: String,
}

impl Alerts {
    pub(crate) fn new(url: Option<String>, device: String) -> Self {
        let http = reqwest::Client::builder().timeout(Duration::from_secs(5)).build().unwrap_or_default();
        Self { url, http, device }
    }

    /// POSTs `{"event", "device", "at", "detail"}`; a failure is logged only.
    pub(crate) async fn send(&self, event: &str, detail: Value) {
        tracing::info!(event, %detail, "health");
        let Some(url) = &self.url else { return };
        let body = json!({"event": event, "device": self.device, "at": crate::now_ms(), "detail": detail});
        match self.http.post(url).json(&body).send().await {
            Ok(r) if r.status().is_success() => {}
            Ok(r) => tracing::warn!(status = r.status().as_u16(), "the health webhook refused an alert"),
            Err(e) => tracing::warn!("the health webhook is unreachable: {e}"),
        }
    }
}
