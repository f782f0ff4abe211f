//! Closing the sockets whose session ended. Logout, suspension, wipe and
//! device removal close a device's sockets at once (`Hub::disconnect`, over
//! NATS to the other processes); a session can also end without that: it
//! expires, a password change ends the account's other sessions, or the
//! announcement to another process was lost. Every [`SWEEP_EVERY`] one
//! sweep asks the database about every open socket's session, a statement
//! per 200 of them, and closes those that may not go on. Before, each
//! socket asked at each of its pings: with the app waiting on a socket
//! instead of polling, that was most of an idle socket's cost to the relay.
//!
//! Guests (each ping notes their activity) and retention devices (each
//! ping checks that the current policy still names them) still check
//! themselves (`routes/ws.rs`).

use std::time::Duration;

use crate::state::AppState;
use crate::store::now_ms;

/// How often the open sockets' sessions are checked: a session that ended
/// without a disconnect keeps its socket at most this long (as the
/// per-socket check at each 10 s ping did).
pub const SWEEP_EVERY: Duration = Duration::from_secs(10);

/// Sweeps every [`SWEEP_EVERY`] until the task is dropped.
pub async fn sweep_loop(state: AppState) {
    let mut tick = tokio::time::interval(SWEEP_EVERY);
    tick.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
    loop {
        tick.tick().await;
        sweep(&state).await;
    }
}

/// Closes the open sockets whose session may not go on; returns how many.
/// A database that cannot answer closes none (they are checked next time).
pub async fn sweep(state: &AppState) -> usize {
    let open = state.hub.swept();
    if open.is_empty() {
        return 0;
    }
    let mut hashes: Vec<[u8; 32]> = open.iter().map(|(_, _, t)| *t).collect();
    hashes.sort_unstable();
    hashes.dedup();
    let live = match state.store.live_sessions(&hashes, now_ms()).await {
        Ok(live) => live,
        Err(e) => {
            tracing::warn!(error = %e, sockets = open.len(), "checking open sockets' sessions failed; checked again later");
            return 0;
        }
    };
    let mut closed = 0;
    for (device, id, token) in open {
        if !live.contains(&token) {
            state.hub.close(&device, id);
            closed += 1;
        }
    }
    closed
}
