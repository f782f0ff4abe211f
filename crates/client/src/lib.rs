//! # strongroom-client
//!
//! The client SDK (async, no UI): enrol with an invite (pinning the network
//! key by the invite's fingerprint), publish and top up keys, send and
//! receive end-to-end encrypted messages, and keep everything in a local
//! store encrypted under a key derived from the profile passphrase.

mod admin;
mod api;
mod cache;
mod client;
mod conversations;
mod doorbell;
mod enrol;
mod error;
mod events;
mod files;
mod guests;
mod link;
mod membership;
mod outbox;
mod own_keys;
pub mod private_fs;
pub mod profile_lock;
mod receipts;
mod receive;
pub mod rules;
mod schema;
pub mod sealed_secret;
mod send;
mod state;
mod store;
mod trust;
mod vault;
mod wipe;

pub use admin::Admin;
pub use api::Api as RelayApi;
pub use client::{Client, SyncReport, PROFILE_KDF_KIB};
pub use conversations::check_name as check_conversation_name;
pub use doorbell::{socket_config, Doorbell};
pub use error::ClientError;
pub use events::{ReadState, MAX_EVENTS};
pub use files::Progress;
pub use guests::display_name;
pub use link::PendingLink;
pub use rules::events::{Event, EventKind};
pub use rules::prekeys::{GRACE_MS, ROTATE_AFTER_MS};
pub use rules::view::{Message, ViewItem};
