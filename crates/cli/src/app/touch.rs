//! Keeping the app's device in touch with the relay. The app fetches when
//! the relay rings its doorbell (a `?pushes=notice` socket, see
//! `strongroom_client::Doorbell`) and otherwise only now and then, as a
//! safety net; it polls as it always did while the doorbell cannot be
//! opened (a relay that predates it, or one that is unreachable). Between
//! fetches it does only local work: the expiry purge and the event log.

use std::sync::Arc;
use std::time::Duration;

use strongroom_client::Doorbell;
use tokio::time::{timeout, Instant};

use super::App;

/// Local work, and the poll without a doorbell.
const TICK: Duration = Duration::from_millis(700);
/// A fetch even without a ring: a notice lost between relay processes,
/// guests' expiry, the contacts' key commitments.
const SAFETY_NET: Duration = Duration::from_secs(30);
/// After a doorbell that would not open, polling until the next try.
const DOORBELL_RETRY: Duration = Duration::from_secs(15);
/// A doorbell that heard nothing this long (the relay pings every 10 s)
/// died silently: it is opened again.
const DOORBELL_SILENCE: std::time::Duration = std::time::Duration::from_secs(25);
/// Fetches at most this often, however fast the relay rings (a burst of
/// messages rings more than once; a hostile relay could ring without end).
const MIN_GAP: Duration = Duration::from_millis(200);
/// The network policy (retention on or off) is read again this often.
const POLICY_EVERY: Duration = Duration::from_secs(63);

/// Fetches from the relay while the app runs and rings `changed` when the
/// event log grows; an unreachable relay is retried (sends queue meanwhile).
pub(super) async fn keep_in_touch(app: Arc<App>) {
    let mut last = 0u64;
    let mut bell: Option<Doorbell> = None;
    let mut bell_retry = Instant::now();
    let mut fetch_by = Instant::now();
    let mut policy_by = Instant::now();
    let mut fetched_at = Instant::now();
    loop {
        let rung = match bell.as_mut() {
            Some(b) => match timeout(TICK, b.rung()).await {
                Ok(Ok(())) => true,
                // Gone (the relay restarted, the session ended): fetch what
                // came meanwhile, then open another or poll.
                Ok(Err(_)) => {
                    bell = None;
                    true
                }
                Err(_) => {
                    if b.silent_for() > DOORBELL_SILENCE {
                        bell = None;
                    }
                    false
                }
            },
            None => {
                tokio::time::sleep(TICK).await;
                false
            }
        };
        if rung {
            tokio::time::sleep_until(fetched_at + MIN_GAP).await;
        }
        let mut guard = app.client.lock().await;
        let Some(client) = guard.as_mut() else {
            bell = None;
            continue;
        };
        let now = Instant::now();
        if bell.is_none() && now >= bell_retry {
            // Opened before the fetch: whatever is queued after the fetch rings it.
            match timeout(Duration::from_secs(5), client.doorbell()).await {
                Ok(Ok(b)) => {
                    bell = Some(b);
                    fetch_by = now;
                }
                Ok(Err(e)) => {
                    tracing::debug!(error = %e, "no doorbell; polling");
                    bell_retry = now + DOORBELL_RETRY;
                }
                Err(_) => bell_retry = now + DOORBELL_RETRY,
            }
        }
        if rung || bell.is_none() || now >= fetch_by {
            if now >= policy_by {
                let _ = timeout(Duration::from_secs(15), client.policy()).await;
                policy_by = now + POLICY_EVERY;
            }
            // Bounded: a relay that answers slowly must not hold the app.
            match timeout(Duration::from_secs(20), client.sync()).await {
                Ok(Err(e)) if !e.is_transient() => tracing::warn!(error = %e, "fetching messages failed"),
                _ => {}
            }
            fetched_at = Instant::now();
            fetch_by = fetched_at + SAFETY_NET;
        } else if let Err(e) = client.purge_expired().await {
            tracing::warn!(error = %e, "removing expired messages failed");
        }
        let newest = client.events(last, strongroom_client::MAX_EVENTS).await.ok().and_then(|e| e.last().map(|e| e.id));
        drop(guard);
        if let Some(id) = newest {
            last = id;
            let _ = app.changed.send(id);
        }
    }
}
