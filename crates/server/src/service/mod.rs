//! The relay's rules, between the routes and the store.
//!
//! Routes (`routes/`, and the web console in `routes/console/`) extract
//! typed input — ids parsed, bodies decoded, the authenticated [`Caller`] —
//! call one function here, and map its result to HTTP or HTML. The rules
//! live here, one file per concern, so the JSON API and the console apply
//! the same ones; the store below runs SQL and nothing else.
//!
//! | file | the rule |
//! | --- | --- |
//! | [`devices`] | a device id belongs to one account of one network: claims at login, which ids a device list may name, wipe orders and their confirmation, link requests |
//! | [`sessions`] | password logins (API and console), logout, password change and reset |
//! | [`conversations`] | who sees and changes a conversation (members of the caller's network; retention devices see all of theirs) |
//! | [`keys`] | signed device lists and pre-keys: who may publish, who may claim |
//! | [`delivery`] | an envelope's recipients are exactly the conversation's devices plus the policy's retention devices; fetch and ack of the caller's own queue |
//! | [`policy`] | signed network policies, and the retention device ids they reserve |
//! | [`retention`] | the retention device's login, checkpoints, periods and coverage |
//! | [`guests`] | what a guest may not do (start conversations, change members, moderate, see the directory), guest invites, and expiry after inactivity |
//! | [`admin`] | administrators' and auditors' actions on their own network, each written to the audit log |
//!
//! Every id a request names is checked against the caller's network,
//! account and device before anything is read or changed.

pub mod admin;
pub mod conversations;
pub mod delivery;
pub mod devices;
pub mod guests;
pub mod keys;
pub mod policy;
pub mod retention;
pub mod sessions;
pub mod socket_sweep;

use std::net::IpAddr;

use crate::auth::Caller;

/// Who asks and from where (the audit log records both).
#[derive(Debug, Clone, Copy)]
pub struct Actor {
    /// The authenticated session.
    pub caller: Caller,
    /// The client's address.
    pub source: IpAddr,
}
