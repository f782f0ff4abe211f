//! Passwords (Argon2id), session tokens (random, stored hashed), the
//! authenticated-caller extractor and rate limiting.

use std::collections::HashMap;
use std::net::IpAddr;
use std::sync::Mutex;
use std::time::Instant;

use argon2::password_hash::{PasswordHash, SaltString};
use argon2::Argon2;
use aws_lc_rs::digest;
use axum::extract::FromRequestParts;
use axum::http::request::Parts;
use rand_core::{OsRng, RngCore};

use crate::error::{ApiError, ApiResult};
use crate::state::AppState;
use crate::store::{now_ms, SessionRow};

/// Argon2id (19 MiB and tens of milliseconds each) runs on two dedicated
/// threads: a burst of logins queues instead of taking a blocking thread and
/// a fresh 19 MiB allocation each, so memory and CPU stay bounded.
type Job = Box<dyn FnOnce() + Send>;

fn argon2_pool() -> Option<&'static std::sync::mpsc::SyncSender<Job>> {
    static POOL: std::sync::OnceLock<Option<std::sync::mpsc::SyncSender<Job>>> = std::sync::OnceLock::new();
    POOL.get_or_init(|| {
        let (tx, rx) = std::sync::mpsc::sync_channel::<Job>(1024);
        let rx = std::sync::Arc::new(Mutex::new(rx));
        for i in 0..2 {
            let rx = rx.clone();
            let spawned = std::thread::Builder::new().name(format!("argon2-{i}")).spawn(move || loop {
                let job = match rx.lock() {
                    Ok(r) => r.recv(),
                    Err(_) => return,
                };
                match job {
                    Ok(job) => job(),
                    Err(_) => return,
                }
            });
            if spawned.is_err() {
                return None;
            }
        }
        Some(tx)
    })
    .as_ref()
}

async fn on_argon2_thread<T: Send + 'static>(f: impl FnOnce() -> T + Send + 'static) -> Option<T> {
    let (tx, rx) = tokio::sync::oneshot::channel();
    let job: Job = Box::new(move || {
        let _ = tx.send(f());
    });
    match argon2_pool() {
        Some(pool) => {
            let pool = pool.clone();
            // The queue is bounded; waiting for room happens off the async threads.
            tokio::task::spawn_blocking(move || pool.send(job)).await.ok()?.ok()?;
        }
        None => {
            tokio::task::spawn_blocking(job).await.ok()?;
        }
    }
    rx.await.ok()
}

thread_local! {
    /// Each Argon2 thread keeps one work area and reuses it, instead of
    /// allocating (and the allocator keeping) 19 MiB per login.
    static WORK: std::cell::RefCell<Vec<argon2::Block>> = const { std::cell::RefCell::new(Vec::new()) };
}

/// Argon2id over `password` and `salt` with `params`, into `out`, in the thread's work area.
fn argon2_into(params: argon2::Params, password: &[u8], salt: &[u8], out: &mut [u8]) -> Result<(), argon2::Error> {
    let a = Argon2::new(argon2::Algorithm::Argon2id, argon2::Version::V0x13, params);
    WORK.with(|w| {
        let mut w = w.borrow_mut();
        let need = a.params().block_count();
        if need > 4 * 19 * 1024 {
            // Parameters far beyond ours (a foreign hash): a one-off area.
            return a.hash_password_into_with_memory(password, salt, out, vec![argon2::Block::default(); need]);
        }
        if w.len() < need {
            w.resize(need, argon2::Block::default());
        }
        let area = w.get_mut(..need).ok_or(argon2::Error::MemoryTooLittle)?;
        a.hash_password_into_with_memory(password, salt, out, area)
    })
}

/// Argon2id PHC string for a password.
pub async fn hash_password(password: String) -> ApiResult<String> {
    use argon2::password_hash::{Output, ParamsString, PasswordHash as Phc};
    let failed = || ApiError::new(axum::http::StatusCode::INTERNAL_SERVER_ERROR, "internal", "password hashing failed");
    on_argon2_thread(move || -> Option<String> {
        let salt = SaltString::generate(&mut OsRng);
        let params = argon2::Params::default();
        let mut raw = [0u8; 64];
        let salt_bytes = salt.decode_b64(&mut raw).ok()?.to_vec();
        let mut out = [0u8; 32];
        argon2_into(params.clone(), password.as_bytes(), &salt_bytes, &mut out).ok()?;
        let phc = Phc {
            algorithm: argon2::ARGON2ID_IDENT,
            version: Some(0x13),
            params: ParamsString::try_from(&params).ok()?,
            salt: Some(salt.as_salt()),
            hash: Some(Output::new(&out).ok()?),
        };
        Some(phc.to_string())
    })
    .await
    .flatten()
    .ok_or_else(failed)
}

/// Checks a password against a PHC string, comparing in constant time.
pub async fn verify_password(hash: String, password: String) -> bool {
    on_argon2_thread(move || -> Option<bool> {
        let phc = PasswordHash::new(&hash).ok()?;
        if phc.algorithm != argon2::ARGON2ID_IDENT {
            return Some(false);
        }
        let params = argon2::Params::try_from(&phc).ok()?;
        let mut raw = [0u8; 64];
        let salt = phc.salt?.decode_b64(&mut raw).ok()?;
        let expected = phc.hash?;
        let mut out = vec![0u8; expected.len()];
        argon2_into(params, password.as_bytes(), salt, &mut out).ok()?;
        Some(bool::from(subtle::ConstantTimeEq::ct_eq(out.as_slice(), expected.as_bytes())))
    })
    .await
    .flatten()
    .unwrap_or(false)
}

/// The password rule until security groups set their own.
pub fn check_password_policy(password: &str) -> ApiResult<()> {
    check_password_length(password, 10)
}

/// The password rule of a security group: at least `min` characters (at most 1024).
pub fn check_password_length(password: &str, min: u32) -> ApiResult<()> {
    let n = password.chars().count();
    if n < min as usize || n > 1024 {
        return Err(ApiError::bad_request(
            "weak_password",
            format!("passwords must be {min} to 1024 characters long in this network"),
        ));
    }
    Ok(())
}

/// SHA-256 of a secret (tokens, invite secrets): only hashes are stored.
pub fn secret_hash(secret: &[u8]) -> [u8; 32] {
    let mut out = [0u8; 32];
    out.copy_from_slice(digest::digest(&digest::SHA256, secret).as_ref());
    out
}

/// A fresh session token (64 hex digits) and its hash.
pub fn new_token() -> (String, [u8; 32]) {
    let mut raw = [0u8; 32];
    OsRng.fill_bytes(&mut raw);
    let token = crate::error::hex(&raw);
    let hash = secret_hash(token.as_bytes());
    (token, hash)
}

/// The authenticated caller: a session bound to one device.
#[derive(Debug, Clone, Copy)]
pub struct Caller {
    /// The session.
    pub session: SessionRow,
    /// Hash of the bearer token (for logout).
    pub token_hash: [u8; 32],
}

impl FromRequestParts<AppState> for Caller {
    type Rejection = ApiError;

    async fn from_request_parts(parts: &mut Parts, state: &AppState) -> Result<Self, Self::Rejection> {
        let header = parts
            .headers
            .get(axum::http::header::AUTHORIZATION)
            .and_then(|v| v.to_str().ok())
            .ok_or_else(|| ApiError::unauthorized("log in first: send Authorization: Bearer <token>"))?;
        let token = header
            .strip_prefix("Bearer ")
            .ok_or_else(|| ApiError::unauthorized("the Authorization header must be Bearer <token>"))?;
        let token_hash = secret_hash(token.trim().as_bytes());
        let session = state.store.session(&token_hash, now_ms()).await?.ok_or_else(session_ended)?;
        if session.device_id == crate::store::CONSOLE_DEVICE {
            // The web console's cookie session is for the console only.
            return Err(ApiError::unauthorized("a web console session cannot call the API; log in as a device"));
        }
        if session.suspended {
            return Err(suspended());
        }
        let access = parts.extensions.get::<Access>().copied();
        if session.wipe_pending && access != Some(Access::WhileWiping) {
            return Err(ApiError::device_wiped());
        }
        if session.user_id == RETENTION_USER {
            if access != Some(Access::RetentionReceives) {
                return Err(retention_cannot_send());
            }
            if !crate::service::policy::names_retention_device(state, &session.network_id, &session.device_id).await? {
                return Err(ApiError::unauthorized(
                    "this retention device is no longer in the network policy; its session has ended",
                ));
            }
        }
        let caller = Caller { session, token_hash };
        crate::service::guests::touch(state, &caller).await?;
        Ok(caller)
    }
}

/// What a retention session hears when it asks for more than receiving.
pub fn retention_cannot_send() -> ApiError {
    ApiError::forbidden("retention_read_only", "a retention device only receives: it cannot send, create or administer")
}

/// The user id retention sessions carry.
pub const RETENTION_USER: [u8; 16] = crate::store::RETENTION_OWNER;

/// Route metadata (set in `routes/mod.rs`) saying which sessions beyond
/// ordinary ones a route accepts.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Access {
    /// A retention device's receive-only session may call it: receiving its
    /// queue, conversation membership, sender keys, usernames, the policy,
    /// files, its periods, checkpoints and coverage. Nothing else.
    RetentionReceives,
    /// A device whose wipe was ordered may still call it (to confirm).
    WhileWiping,
}

fn session_ended() -> ApiError {
    ApiError::unauthorized("the session token is unknown or expired; log in again")
}

fn suspended() -> ApiError {
    ApiError::forbidden("account_suspended", "this account is suspended; ask your network administrator")
}

impl Caller {
    /// Checks again, as each request is checked, that this ordinary
    /// session may still act (a WebSocket checks each send it takes), and
    /// returns the caller as it is now.
    pub async fn recheck(&self, state: &AppState) -> ApiResult<Caller> {
        let session = state.store.session(&self.token_hash, now_ms()).await?.ok_or_else(session_ended)?;
        if session.suspended {
            return Err(suspended());
        }
        if session.wipe_pending {
            return Err(ApiError::device_wiped());
        }
        let now = Caller { session, token_hash: self.token_hash };
        if now.is_retention() {
            return Err(retention_cannot_send());
        }
        crate::service::guests::touch(state, &now).await?;
        Ok(now)
    }

    /// Whether this is a retention device's session.
    pub fn is_retention(&self) -> bool {
        self.session.user_id == RETENTION_USER
    }
}

/// Buckets a [`RateLimiter`] keeps before it prunes.
const MAX_BUCKETS: usize = 100_000;

/// Token buckets keyed by client address or device.
pub struct RateLimiter<K> {
    per_sec: f64,
    burst: f64,
    buckets: Mutex<HashMap<K, (f64, Instant)>>,
    pruned: Mutex<Instant>,
}

impl<K: std::hash::Hash + Eq + Clone> RateLimiter<K> {
    /// `per_sec` sustained, up to `burst` at once.
    pub fn new(per_sec: f64, burst: f64) -> Self {
        Self { per_sec, burst, buckets: Mutex::new(HashMap::new()), pruned: Mutex::new(Instant::now()) }
    }

    /// Takes one token; `false` when the caller is over its rate.
    pub fn allow(&self, key: &K) -> bool {
        let now = Instant::now();
        let Ok(mut map) = self.buckets.lock() else { return true };
        if map.len() > MAX_BUCKETS {
            // Bounded memory and work: forget full buckets, at most every 10 s
            // (a scan of every bucket on every call would be the attack); far
            // over the bound, forget them all.
            let due = self.pruned.lock().map(|mut at| {
                let due = now.duration_since(*at).as_secs() >= 10;
                if due {
                    *at = now;
                }
                due
            });
            if due.unwrap_or(true) {
                let (rate, burst) = (self.per_sec, self.burst);
                map.retain(|_, (tokens, at)| *tokens + now.duration_since(*at).as_secs_f64() * rate < burst);
            }
            if map.len() > 2 * MAX_BUCKETS {
                // Still far over (an attacker making keys): keep the recent
                // ones, and past that refuse new keys rather than forget
                // everyone's history (which would reset their limits).
                map.retain(|_, (_, at)| now.duration_since(*at).as_secs() < 60);
                if map.len() > 2 * MAX_BUCKETS && !map.contains_key(key) {
                    return false;
                }
            }
        }
        let (tokens, at) = map.entry(key.clone()).or_insert((self.burst, now));
        *tokens = (*tokens + now.duration_since(*at).as_secs_f64() * self.per_sec).min(self.burst);
        *at = now;
        if *tokens >= 1.0 {
            *tokens -= 1.0;
            true
        } else {
            false
        }
    }
}

/// Rate limiter for unauthenticated login and registration, by address.
pub type AddrLimiter = RateLimiter<IpAddr>;

/// One async lock per key, held while in use and forgotten after: login
/// attempts for one (network, username, source) run one at a time in this
/// process, so a burst of parallel guesses cannot all pass the wait check
/// before the first failure is counted.
pub struct KeyedLocks<K> {
    /// Each key's lock and how many hold or wait for it.
    locks: Mutex<HashMap<K, (SharedLock, usize)>>,
}

type SharedLock = std::sync::Arc<tokio::sync::Mutex<()>>;

impl<K> Default for KeyedLocks<K> {
    fn default() -> Self {
        Self { locks: Mutex::new(HashMap::new()) }
    }
}

/// A held (or awaited) [`KeyedLocks`] entry; dropping it, also while still
/// waiting (a cancelled request), releases the key.
pub struct KeyGuard<'a, K: std::hash::Hash + Eq + Clone> {
    owner: &'a KeyedLocks<K>,
    key: K,
    guard: Option<tokio::sync::OwnedMutexGuard<()>>,
}

impl<K: std::hash::Hash + Eq + Clone> KeyedLocks<K> {
    /// Waits for `key`'s lock.
    pub async fn lock(&self, key: K) -> KeyGuard<'_, K> {
        let lock = match self.locks.lock() {
            Ok(mut map) => {
                let entry = map.entry(key.clone()).or_insert_with(|| (std::sync::Arc::default(), 0));
                entry.1 += 1;
                entry.0.clone()
            }
            Err(_) => std::sync::Arc::default(),
        };
        // Counted from here: a cancelled wait still gives the key back.
        let mut held = KeyGuard { owner: self, key, guard: None };
        held.guard = Some(lock.lock_owned().await);
        held
    }
}

impl<K: std::hash::Hash + Eq + Clone> Drop for KeyGuard<'_, K> {
    fn drop(&mut self) {
        drop(self.guard.take());
        if let Ok(mut map) = self.owner.locks.lock() {
            if let Some(entry) = map.get_mut(&self.key) {
                entry.1 = entry.1.saturating_sub(1);
                if entry.1 == 0 {
                    map.remove(&self.key);
                }
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[tokio::test]
    async fn keyed_locks_serialise_one_key_and_forget_it_after() {
        let locks: KeyedLocks<u8> = KeyedLocks::default();
        let first = locks.lock(1).await;
        let other = locks.lock(2).await;
        let blocked = tokio::time::timeout(std::time::Duration::from_millis(50), locks.lock(1)).await;
        assert!(blocked.is_err(), "the same key waits");
        // That wait was cancelled: it must not leave the key behind.
        drop(first);
        drop(other);
        assert!(locks.locks.lock().map(|m| m.is_empty()).unwrap_or(false), "unused keys are forgotten");
        let _again = locks.lock(1).await;
    }

    #[test]
    fn rate_limiter_counts_per_key_and_stays_bounded() {
        let limiter: RateLimiter<u32> = RateLimiter::new(0.0, 2.0);
        assert!(limiter.allow(&1) && limiter.allow(&1));
        assert!(!limiter.allow(&1), "burst used");
        assert!(limiter.allow(&2), "per key");
        for k in 0..(2 * MAX_BUCKETS as u32 + 10) {
            limiter.allow(&k);
        }
        let len = limiter.buckets.lock().map(|m| m.len()).unwrap_or(usize::MAX);
        assert!(len <= 2 * MAX_BUCKETS + 1, "{len} buckets");
    }
}
