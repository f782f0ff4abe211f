//! Server configuration: defaults that just work, overridable by a TOML file,
//! environment variables and flags (merged by the `strongroom` binary).

use std::net::SocketAddr;
use std::path::PathBuf;

use serde::{Deserialize, Serialize};

/// Everything the server needs to start.
#[derive(Debug, Clone, Serialize, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct Config {
    /// Address to listen on.
    pub listen: SocketAddr,
    /// Where the SQLite database, blobs and bootstrap secret live.
    pub data_dir: PathBuf,
    /// `sqlite://…` or `postgres://…`; default: SQLite in `data_dir`.
    pub database_url: Option<String>,
    /// Blob storage URL (`s3://bucket/prefix`, `file:///path`); default: `data_dir/blobs`.
    pub blob_store: Option<String>,
    /// The URL clients use to reach this server, carried in invites.
    pub public_url: Option<String>,
    /// `nats://host:port`: cross-node delivery and cache invalidation when several server processes
    /// share one database (cluster mode).
    pub nats_url: Option<String>,
    /// Undelivered messages are dropped after this many days (never for retention devices).
    pub undelivered_horizon_days: u64,
    /// How often expiry runs, in seconds.
    pub expiry_interval_secs: u64,
    /// Session lifetime in days.
    pub session_days: u64,
    /// Alert (log line and `strongroom_retention_backlog_alert 1`) when more
    /// deliveries than this wait for retention devices.
    pub retention_backlog_alert: u64,
    /// Token a scraper sends (`Authorization: Bearer …`) to read `/metrics`
    /// from another host; without one, `/metrics` answers loopback clients only.
    pub metrics_token: Option<MetricsToken>,
    /// Request limits.
    pub limits: Limits,
}

/// The `/metrics` token: never printed (`Debug` shows `***`).
#[derive(Clone, Serialize, Deserialize, PartialEq, Eq)]
#[serde(transparent)]
pub struct MetricsToken(pub String);

impl std::fmt::Debug for MetricsToken {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("***")
    }
}

/// Size and rate limits.
#[derive(Debug, Clone, Serialize, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct Limits {
    /// Largest envelope accepted, bytes.
    pub max_envelope_bytes: usize,
    /// Largest blob accepted, bytes.
    pub max_blob_bytes: u64,
    /// Largest JSON request body, bytes.
    pub max_json_bytes: usize,
    /// Login and registration attempts per client address per minute.
    pub auth_per_minute: u32,
    /// Envelopes per device per second (sustained; bursts of 10× allowed).
    pub sends_per_second: u32,
    /// Failed logins before an account is locked.
    pub lockout_threshold: u32,
    /// How long a locked account stays locked, seconds.
    pub lockout_secs: u64,
    /// Current-password checks (password change) per account per minute:
    /// a stolen session is not a password-guessing oracle.
    pub password_checks_per_minute: u32,
    /// Most envelope bytes one fetch (or one WebSocket read of the queue)
    /// loads and returns; at least one message is always returned.
    pub max_fetch_bytes: usize,
}

impl Default for Config {
    fn default() -> Self {
        Self {
            listen: SocketAddr::from(([127, 0, 0, 1], 8080)),
            data_dir: PathBuf::from("strongroom-data"),
            database_url: None,
            blob_store: None,
            public_url: None,
            nats_url: None,
            undelivered_horizon_days: 30,
            expiry_interval_secs: 60,
            session_days: 30,
            retention_backlog_alert: 10_000,
            metrics_token: None,
            limits: Limits::default(),
        }
    }
}

impl Default for Limits {
    fn default() -> Self {
        Self {
            max_envelope_bytes: 2 * 1024 * 1024,
            max_blob_bytes: 4 * 1024 * 1024 * 1024,
            max_json_bytes: 1024 * 1024,
            auth_per_minute: 30,
            sends_per_second: 200,
            lockout_threshold: 5,
            lockout_secs: 900,
            password_checks_per_minute: 5,
            max_fetch_bytes: 4 * 1024 * 1024,
        }
    }
}

impl Config {
    /// The database URL, defaulting to SQLite in the data directory.
    pub fn database_url(&self) -> String {
        self.database_url
            .clone()
            .unwrap_or_else(|| format!("sqlite://{}?mode=rwc", self.data_dir.join("strongroom.db").display()))
    }
}
