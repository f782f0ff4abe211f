//! # strongroom-server
//!
//! The relay: networks, accounts, the key directory, conversations, durable
//! delivery over HTTP and WebSocket, and encrypted blobs. It stores and
//! forwards ciphertext and public keys; it never decrypts anything.
//!
//! [`Server::bind`] prepares everything (data directory, database and its
//! migrations, blob store, bootstrap secret, listener); [`Server::run`] serves
//! until the shutdown future completes.

pub mod auth;
pub mod backup;
mod cluster;
pub mod config;
pub mod connections;
pub mod error;
pub mod hub;
pub mod metrics;
mod routes;
pub mod service;
pub mod state;
pub mod store;

use std::future::Future;
use std::net::SocketAddr;
use std::path::Path;
use std::sync::Arc;
use std::time::Duration;

use object_store::local::LocalFileSystem;
use object_store::memory::InMemory;
use object_store::ObjectStore;
use rand_core::{OsRng, RngCore};
use thiserror::Error;

pub use config::{Config, Limits, TrustedProxies};
pub use connections::source_key;
pub use routes::{paths, router};

use crate::auth::RateLimiter;
use crate::state::AppState;
use crate::store::{now_ms, Store, StoreError};

/// The OpenAPI document served at `/api/openapi.json`.
pub const OPENAPI: &str = include_str!("../openapi.json");

/// Why the server could not start.
#[derive(Debug, Error)]
#[non_exhaustive]
pub enum ServerError {
    /// The data directory could not be created or written.
    #[error("cannot use data directory {path}: {source}")]
    DataDir {
        /// The directory.
        path: String,
        /// The I/O error.
        source: std::io::Error,
    },
    /// The database could not be opened or migrated.
    #[error("{0}")]
    Store(#[from] StoreError),
    /// The blob store URL is not usable.
    #[error("cannot use blob store {url}: {reason}")]
    BlobStore {
        /// The configured URL.
        url: String,
        /// What is wrong.
        reason: String,
    },
    /// The listen address could not be bound.
    #[error("cannot listen on {addr}: {source} (is another server running there?)")]
    Bind {
        /// The address.
        addr: SocketAddr,
        /// The I/O error.
        source: std::io::Error,
    },
    /// Serving failed.
    #[error("server failed: {0}")]
    Serve(std::io::Error),
    /// A configuration value is unusable.
    #[error("configuration: {0}")]
    Config(String),
}

/// A server ready to run.
pub struct Server {
    state: AppState,
    listener: tokio::net::TcpListener,
    bootstrap_secret: Option<String>,
}

impl Server {
    /// Creates the data directory, opens the database, the blob store and
    /// the listener. On the first start it creates the bootstrap secret.
    pub async fn bind(config: Config) -> Result<Self, ServerError> {
        let dir = config.data_dir.clone();
        let dir_err = |source| ServerError::DataDir { path: dir.display().to_string(), source };
        private_dir(&dir).map_err(dir_err)?;
        let url = config.database_url();
        if let Some(file) = url.strip_prefix("sqlite://").and_then(|rest| rest.split('?').next()) {
            // SQLite gives its WAL and shared-memory files the database's mode.
            private_file(Path::new(file)).map_err(|source| ServerError::DataDir { path: file.to_owned(), source })?;
        }
        let store = Store::connect(&url).await?;
        let blobs = open_blob_store(&config)?;
        let bootstrap_secret = ensure_bootstrap_secret(&store, &dir).await?;
        let listener = tokio::net::TcpListener::bind(config.listen)
            .await
            .map_err(|source| ServerError::Bind { addr: config.listen, source })?;
        let addr = listener.local_addr().map_err(ServerError::Serve)?;
        let public_url = config.public_url.clone().unwrap_or_else(|| format!("http://{addr}"));
        let limits = &config.limits;
        let hub = Arc::new(hub::Hub::counting(store.unpushed()));
        let to_hub = hub.clone();
        store.deliver_to(Box::new(move |device, row| to_hub.deliver(device, row)));
        let state = AppState {
            store,
            blobs,
            hub,
            metrics: Arc::default(),
            auth_limiter: Arc::new(RateLimiter::new(
                f64::from(limits.auth_per_minute) / 60.0,
                f64::from(limits.auth_per_minute),
            )),
            send_limiter: Arc::new(RateLimiter::new(
                f64::from(limits.sends_per_second),
                f64::from(limits.sends_per_second) * 10.0,
            )),
            password_limiter: Arc::new(RateLimiter::new(
                f64::from(limits.password_checks_per_minute) / 60.0,
                f64::from(limits.password_checks_per_minute),
            )),
            claim_limiter: Arc::new(RateLimiter::new(
                f64::from(limits.one_time_claims_per_hour) / 3600.0,
                f64::from(limits.one_time_claims_per_hour),
            )),
            login_locks: Arc::default(),
            fetching: Arc::default(),
            public_url: Arc::new(public_url),
            config: Arc::new(config),
        };
        Ok(Self { state, listener, bootstrap_secret })
    }

    /// The bound address (useful with port 0).
    pub fn local_addr(&self) -> Option<SocketAddr> {
        self.listener.local_addr().ok()
    }

    /// The URL carried in invites.
    pub fn public_url(&self) -> &str {
        &self.state.public_url
    }

    /// The bootstrap secret, only on the start that created it.
    pub fn bootstrap_secret(&self) -> Option<&str> {
        self.bootstrap_secret.as_deref()
    }

    /// Serves until `shutdown` completes, then stops accepting, finishes
    /// in-flight requests and closes the database.
    pub async fn run(self, shutdown: impl Future<Output = ()> + Send + 'static) -> Result<(), ServerError> {
        let state = self.state.clone();
        if let Some(nats) = state.config.nats() {
            let store = state.store.clone();
            let local =
                cluster::Local { hub: state.hub.clone(), invalidate: Box::new(move || store.invalidate_cache()) };
            let (link, changes) = cluster::start(&nats, local).await.map_err(ServerError::Config)?;
            state.hub.set_cluster(link);
            state.store.announce_changes(changes);
        }
        let expiry = tokio::spawn(expiry_loop(state.clone()));
        let sweep = tokio::spawn(service::socket_sweep::sweep_loop(state.clone()));
        let limits = &state.config.limits;
        let gate = Arc::new(connections::Gate::new(limits, state.config.trusted_proxies.clone()));
        tracing::info!(
            max_connections = gate.total(),
            per_source = limits.max_connections_per_ip,
            "accepting connections"
        );
        connections::serve(self.listener, router(state.clone()), limits, gate, shutdown).await;
        expiry.abort();
        sweep.abort();
        state.store.close().await;
        Ok(())
    }
}

fn open_blob_store(config: &Config) -> Result<Arc<dyn ObjectStore>, ServerError> {
    let bad = |url: &str, reason: String| ServerError::BlobStore { url: url.to_owned(), reason };
    match config.blob_store.as_deref() {
        None => {
            let dir = config.data_dir.join("blobs");
            private_dir(&dir).map_err(|source| ServerError::DataDir { path: dir.display().to_string(), source })?;
            let fs =
                LocalFileSystem::new_with_prefix(&dir).map_err(|e| bad(&dir.display().to_string(), e.to_string()))?;
            Ok(Arc::new(fs))
        }
        Some("memory:") | Some("memory://") => Ok(Arc::new(InMemory::new())),
        Some(url) if url.starts_with("file://") => {
            let dir = Path::new(url.trim_start_matches("file://"));
            private_dir(dir).map_err(|source| ServerError::DataDir { path: dir.display().to_string(), source })?;
            Ok(Arc::new(LocalFileSystem::new_with_prefix(dir).map_err(|e| bad(url, e.to_string()))?))
        }
        Some(url) if url.starts_with("s3://") => {
            let s3 = object_store::aws::AmazonS3Builder::from_env()
                .with_url(url)
                .build()
                .map_err(|e| bad(url, e.to_string()))?;
            Ok(Arc::new(s3))
        }
        Some(url) => Err(bad(url, "use s3://bucket, file:///path or memory://".into())),
    }
}

/// On first start: a random secret, written to `data_dir/bootstrap-secret`
/// (owner-only) and stored hashed; it authorises creating networks.
async fn ensure_bootstrap_secret(store: &Store, dir: &Path) -> Result<Option<String>, ServerError> {
    if store.bootstrap_hash().await?.is_some() {
        return Ok(None);
    }
    let mut raw = [0u8; 32];
    OsRng.fill_bytes(&mut raw);
    let secret = crate::error::hex(&raw);
    let path = dir.join("bootstrap-secret");
    write_private(&path, secret.as_bytes())
        .map_err(|source| ServerError::DataDir { path: path.display().to_string(), source })?;
    if store.init_bootstrap_hash(&auth::secret_hash(secret.as_bytes())).await? {
        Ok(Some(secret))
    } else {
        // Another process initialised it first.
        let _ = std::fs::remove_file(&path);
        Ok(None)
    }
}

/// Creates `dir` (and missing parents) owner-only (0700), or tightens it:
/// the data directory holds the database, the blobs and the bootstrap secret.
pub(crate) fn private_dir(dir: &Path) -> std::io::Result<()> {
    let mut builder = std::fs::DirBuilder::new();
    builder.recursive(true);
    #[cfg(unix)]
    std::os::unix::fs::DirBuilderExt::mode(&mut builder, 0o700);
    builder.create(dir)?;
    #[cfg(unix)]
    std::fs::set_permissions(dir, std::os::unix::fs::PermissionsExt::from_mode(0o700))?;
    Ok(())
}

/// Creates `file` empty and owner-only (0600) if missing, or tightens it.
pub(crate) fn private_file(file: &Path) -> std::io::Result<()> {
    let mut opts = std::fs::OpenOptions::new();
    opts.create(true).append(true);
    #[cfg(unix)]
    std::os::unix::fs::OpenOptionsExt::mode(&mut opts, 0o600);
    opts.open(file)?;
    #[cfg(unix)]
    std::fs::set_permissions(file, std::os::unix::fs::PermissionsExt::from_mode(0o600))?;
    Ok(())
}

pub(crate) fn write_private(path: &Path, data: &[u8]) -> std::io::Result<()> {
    use std::io::Write;
    let mut opts = std::fs::OpenOptions::new();
    opts.write(true).create(true).truncate(true);
    #[cfg(unix)]
    std::os::unix::fs::OpenOptionsExt::mode(&mut opts, 0o600);
    opts.open(path)?.write_all(data)
}

async fn expiry_loop(state: AppState) {
    let every = Duration::from_secs(state.config.expiry_interval_secs.max(1));
    let horizon = i64::try_from(state.config.undelivered_horizon_days * 86_400_000).unwrap_or(i64::MAX);
    let mut tick = tokio::time::interval(every);
    loop {
        tick.tick().await;
        match state.store.expire(now_ms(), horizon).await {
            Ok(n) => {
                state.metrics.expired.fetch_add(n, std::sync::atomic::Ordering::Relaxed);
            }
            Err(e) => tracing::warn!(error = %e, "expiry pass failed; will retry"),
        }
        if let Err(e) = state.store.purge_sessions(now_ms()).await {
            tracing::warn!(error = %e, "purging expired sessions failed; will retry");
        }
        if let Err(e) = crate::service::guests::expire_inactive(&state, now_ms()).await {
            tracing::warn!(error = %e, "expiring inactive guests failed; will retry");
        }
        if let Err(e) = routes::remove_expired_blobs(&state, now_ms()).await {
            tracing::warn!(error = %e, "removing expired files failed; will retry");
        }
        // Failed logins are forgotten a day after the last one (and its wait).
        if let Err(e) = state.store.purge_login_failures(now_ms() - 86_400_000).await {
            tracing::warn!(error = %e, "purging old failed-login counts failed; will retry");
        }
        if let Ok((_, backlog)) = state.store.queue_depth().await {
            let limit = state.config.retention_backlog_alert;
            let was = state.metrics.retention_alert.swap(backlog > limit, std::sync::atomic::Ordering::Relaxed);
            if backlog > limit && !was {
                tracing::warn!(
                    backlog,
                    limit,
                    "retention backlog over its alert threshold: is `strongroom retention run` running and reaching the server?"
                );
            } else if backlog <= limit && was {
                tracing::info!(backlog, "retention backlog back under its alert threshold");
            }
        }
    }
}
