//! What every handler shares.

use std::sync::Arc;

use object_store::ObjectStore;

use crate::auth::{AddrLimiter, RateLimiter};
use crate::config::Config;
use crate::hub::Hub;
use crate::metrics::Metrics;
use crate::store::Store;

/// Shared server state (cheap to clone).
#[derive(Clone)]
pub struct AppState {
    /// The database.
    pub store: Store,
    /// Encrypted blobs.
    pub blobs: Arc<dyn ObjectStore>,
    /// Open WebSockets.
    pub hub: Arc<Hub>,
    /// Counters.
    pub metrics: Arc<Metrics>,
    /// Configuration.
    pub config: Arc<Config>,
    /// Login and registration attempts by address.
    pub auth_limiter: Arc<AddrLimiter>,
    /// Envelopes by device.
    pub send_limiter: Arc<RateLimiter<[u8; 16]>>,
    /// The URL carried in invites.
    pub public_url: Arc<String>,
}
