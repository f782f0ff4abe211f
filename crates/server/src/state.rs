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
    /// Current-password checks by account.
    pub password_limiter: Arc<RateLimiter<[u8; 16]>>,
    /// One-time pre-key claims by (claiming account, target device).
    pub claim_limiter: Arc<RateLimiter<([u8; 16], [u8; 16])>>,
    /// Login attempts in progress, by (network, username, source).
    pub login_locks: Arc<crate::auth::KeyedLocks<([u8; 16], String, String)>>,
    /// Devices with a fetch running (one at a time each bounds its memory).
    pub fetching: Arc<InFlight>,
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

/// A short tag naming one version of a user's effective settings (the
/// first 16 bytes of the SHA-256 of their JSON, hex). Clients keep the
/// settings under it and name it when they send
/// ([`strongroom_wire::SETTINGS_TAG_HEADER`]); a send naming another tag is
/// refused, so a changed rule applies at the next send with no extra
/// request in between.
pub fn settings_tag(settings: &strongroom_wire::GroupSettings) -> String {
    let json = serde_json::to_vec(settings).unwrap_or_default();
    let digest = aws_lc_rs::digest::digest(&aws_lc_rs::digest::SHA256, &json);
    crate::error::hex(digest.as_ref().get(..16).unwrap_or_default())
}

/// Devices with an operation running; at most one each.
#[derive(Default)]
pub struct InFlight(std::sync::Mutex<std::collections::HashSet<[u8; 16]>>);

/// Held while a device's operation runs.
pub struct InFlightGuard<'a> {
    set: &'a InFlight,
    device: [u8; 16],
}

impl InFlight {
    /// `None` while `device` already has one running.
    pub fn enter(&self, device: [u8; 16]) -> Option<InFlightGuard<'_>> {
        // The lock is released before a guard exists (its drop takes it).
        let inserted = self.0.lock().ok()?.insert(device);
        inserted.then(|| InFlightGuard { set: self, device })
    }
}

impl Drop for InFlightGuard<'_> {
    fn drop(&mut self) {
        if let Ok(mut set) = self.set.0.lock() {
            set.remove(&self.device);
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn one_operation_per_device_at_a_time() {
        let running = InFlight::default();
        let first = running.enter([1; 16]);
        assert!(first.is_some());
        assert!(running.enter([1; 16]).is_none(), "a second one for the same device waits");
        assert!(running.enter([2; 16]).is_some(), "other devices are not held up");
        drop(first);
        assert!(running.enter([1; 16]).is_some(), "released when the first ends");
    }
}
