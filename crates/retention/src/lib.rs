//! Strongroom data retention.
//!
//! The retention device is a recipient of every conversation in a network,
//! certified by the network key in the signed network policy. This crate is
//! everything it does:
//!
//! - [`keys`]: its keys, kept in a passphrase-sealed file the organisation holds;
//! - [`service`]: logging in to the relay with its policy-certified key,
//!   receiving, verifying and decrypting every envelope and file;
//! - [`archive`]: an append-only, encrypted, Merkle-logged archive with
//!   signed checkpoints, on a local directory or S3-compatible storage;
//! - [`verify`]: checking every leaf, checkpoint, signature and sequence;
//! - [`export`] (JSON Lines, EML, eDiscovery CSV, each with a manifest),
//!   [`search`], and [`holds`] (legal holds, retention periods, purging).

pub mod archive;
pub mod aws;
pub mod custody;
mod error;
pub mod export;
pub mod health;
pub mod holds;
pub mod keys;
pub mod locked_store;
mod membership;
pub mod record;
pub mod replica;
pub mod search;
pub mod service;
pub mod verify;
mod witness;
mod worm;

pub use error::RetentionError;

/// Milliseconds since the Unix epoch.
pub fn now_ms() -> u64 {
    std::time::SystemTime::now().duration_since(std::time::UNIX_EPOCH).map(|d| d.as_millis() as u64).unwrap_or(0)
}

pub(crate) fn hex(b: &[u8]) -> String {
    b.iter().map(|x| format!("{x:02x}")).collect()
}

pub(crate) fn unhex<const N: usize>(s: &str) -> Option<[u8; N]> {
    if s.len() != 2 * N {
        return None;
    }
    let mut out = [0u8; N];
    for (o, pair) in out.iter_mut().zip(s.as_bytes().chunks_exact(2)) {
        *o = u8::from_str_radix(std::str::from_utf8(pair).ok()?, 16).ok()?;
    }
    Some(out)
}
