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

impl AppState {
    /// Defaults when no administrator has set any: the server's configured
    /// lockout and file size limits, everything else allowed.
    pub fn default_settings(&self) -> strongroom_wire::GroupSettings {
        strongroom_wire::GroupSettings {
            lockout_threshold: self.config.limits.lockout_threshold,
            max_file_size: self.config.limits.max_blob_bytes,
            ..Default::default()
        }
    }

    /// The settings that apply to a user.
    pub async fn settings_for_user(
        &self,
        user: &[u8; 16],
    ) -> Result<strongroom_wire::GroupSettings, crate::store::StoreError> {
        Ok(self.store.effective_settings(user).await?.unwrap_or_else(|| self.default_settings()))
    }

    /// A network's default settings.
    pub async fn settings_for_network(
        &self,
        network: &[u8; 16],
    ) -> Result<strongroom_wire::GroupSettings, crate::store::StoreError> {
        Ok(self.store.network_settings(network).await?.unwrap_or_else(|| self.default_settings()))
    }
}
