//! The device core: the rules of a Strongroom device with no I/O of its
//! own (no HTTP, SQLite, clock or RNG: times and randomness come in as arguments), each in
//! the file named after it and unit-tested in memory. The async shell
//! ([`crate::Client`]) owns the store and the relay connection and calls
//! these. Cryptographic verification itself lives in `strongroom-crypto`.

pub mod delivery;
pub mod events;
pub mod group_policy;
pub mod keys;
pub mod prekeys;
pub mod recipients;
pub mod sequence;
pub mod timers;
pub mod trust;
pub mod view;
