//! The receive path: sync and watch, opening deliveries, storing before
//! acknowledging, refusals kept as evidence, gaps; the stored conversation
//! view.

use crate::client::*;
use crate::error::ClientError;
use crate::rules::delivery::{on_failure, Known, OnFailure};
use crate::state::ONE_TIME;
use crate::store::{hex, StoredRow};
use std::collections::{HashMap, HashSet};
use strongroom_crypto::certs::*;
use strongroom_crypto::content::Content;
use strongroom_crypto::envelope::*;
use strongroom_crypto::ids::*;
use strongroom_wire::*;

/// Most messages `watch` acknowledges in one frame.
const ACK_BATCH: usize = 64;
/// How long `watch` holds an ack for more of a burst: one frame and one
/// commit at the relay for all of it. A crash meanwhile costs only their
/// delivery again (stored already, they are not shown twice).
const ACK_DELAY: std::time::Duration = std::time::Duration::from_millis(200);

/// How many of the ids `watch` acknowledged it remembers, for a relay's
/// `ack_failed`: the relay's default push window, so every id a socket can
/// have in flight (the relay answers within seconds).
const SENT_ACKS_KEPT: usize = 4096;

/// `watch` asks the relay to confirm its acks (a `flush`) once this many
/// await it, or `CONFIRM_EVERY` after the first of them, and as it leaves.
/// Until the relay answers, they are noted as not acknowledged: a relay
/// whose ack fails after the socket is gone delivers them again, and that
/// re-delivery is honest, not a replay.
const CONFIRM_BATCH: usize = 1024;
const CONFIRM_EVERY: std::time::Duration = std::time::Duration::from_secs(10);
/// How long `watch`, leaving, waits for the relay to confirm its last acks.
const CONFIRM_WAIT: std::time::Duration = std::time::Duration::from_secs(3);
/// Most ids awaiting confirmation `watch` keeps; older ones stay noted as
/// not acknowledged (a relay that never answers costs only that).
const CONFIRM_KEPT: usize = 65_536;

/// Longest wait before acks the relay failed go again (doubling from
/// `ACK_DELAY` while it keeps failing them).
const ACK_RETRY_MAX: std::time::Duration = std::time::Duration::from_millis(6400);

/// Ids `watch` acknowledged lately, oldest first. A relay's `ack_failed` is
/// honoured for these only.
#[derive(Default)]
struct SentAcks {
    /// Each id with the count of its latest noting: an id noted again
    /// (sent again after a failure) moves to the back.
    order: std::collections::VecDeque<(MessageId, u64)>,
    ids: HashMap<MessageId, u64>,
    noted: u64,
}

impl SentAcks {
    fn note(&mut self, ids: &[MessageId]) {
        for id in ids {
            self.noted += 1;
            self.ids.insert(*id, self.noted);
            self.order.push_back((*id, self.noted));
        }
        while self.ids.len() > SENT_ACKS_KEPT || self.order.len() > 2 * SENT_ACKS_KEPT {
            let Some((old, at)) = self.order.pop_front() else { break };
            if self.ids.get(&old) == Some(&at) {
                self.ids.remove(&old);
            }
        }
    }

    fn contains(&self, id: &MessageId) -> bool {
        self.ids.contains_key(id)
    }
}

/// Acks `watch` sent, waiting for the relay to confirm them (`flush`,
/// answered `flushed` once every ack before it settled).
#[derive(Default)]
struct Unconfirmed {
    /// Sent since the last flush.
    awaiting: Vec<MessageId>,
    /// When a flush is due for them (`CONFIRM_EVERY` after the first).
    due: Option<tokio::time::Instant>,
    /// Each flush sent and not yet answered: the ids it confirms.
    flushes: std::collections::VecDeque<Vec<MessageId>>,
}

impl Unconfirmed {
    fn sent(&mut self, ids: &[MessageId], now: tokio::time::Instant) {
        if self.awaiting.is_empty() {
            self.due = Some(now + CONFIRM_EVERY);
        }
        self.awaiting.extend_from_slice(ids);
        let over = self.awaiting.len().saturating_sub(CONFIRM_KEPT);
        self.awaiting.drain(..over);
    }

    /// Ids the relay failed: no flush confirms them.
    fn failed(&mut self, ids: &HashSet<MessageId>) {
        self.awaiting.retain(|m| !ids.contains(m));
        for f in &mut self.flushes {
            f.retain(|m| !ids.contains(m));
        }
    }

    /// When the next flush falls due, if one can be sent (none unanswered).
    fn wake(&self) -> Option<tokio::time::Instant> {
        if self.flushes.is_empty() && !self.awaiting.is_empty() {
            self.due
        } else {
            None
        }
    }

    /// Whether to send a flush now, for everything awaiting: when one is
    /// due or a batch awaits, and no other is unanswered (one at a time, so
    /// a relay that never answers gets no more); `leaving`: always.
    fn flush(&mut self, now: tokio::time::Instant, leaving: bool) -> bool {
        let due = self.due.is_some_and(|d| now >= d) || self.awaiting.len() >= CONFIRM_BATCH;
        if self.awaiting.is_empty() || !(leaving || (due && self.flushes.is_empty())) {
            return false;
        }
        self.flushes.push_back(std::mem::take(&mut self.awaiting));
        self.due = None;
        true
    }

    /// The relay answered the oldest flush: the ids it confirms.
    fn flushed(&mut self) -> Vec<MessageId> {
        self.flushes.pop_front().unwrap_or_default()
    }
}

/// Sends one JSON frame on `watch`'s socket.
async fn send_text<S>(ws: &mut S, frame: &WsFrame) -> Result<(), ClientError>
where
    S: futures_util::Sink<tokio_tungstenite::tungstenite::Message> + Unpin,
    S::Error: std::fmt::Display,
{
    use futures_util::SinkExt;
    let text = serde_json::to_string(frame).map_err(|_| ClientError::Corrupt("frame"))?;
    ws.send(tokio_tungstenite::tungstenite::Message::Text(text.into()))
        .await
        .map_err(|e| ClientError::Usage(format!("live connection lost: {e}")))
}

impl Client {
    /// Fetches, verifies, decrypts, stores and acknowledges everything queued
    /// for this device. Envelopes that fail verification become warnings,
    /// are kept (sealed) as evidence, and are then acknowledged so they do
    /// not block the queue; an error a retry could fix (relay, key directory
    /// or local store) stops the sync with that message and everything after
    /// it unacknowledged. Once the queue is drained, sequence numbers that
    /// never arrived are reported as gaps. Nothing panics.
    pub async fn sync(&mut self) -> Result<SyncReport, ClientError> {
        let r = self.sync_pass().await;
        self.noting_wipe(r).await
    }

    async fn sync_pass(&mut self) -> Result<SyncReport, ClientError> {
        let mut report = SyncReport::default();
        // What waited in the outbox goes first (in order, same ids).
        match self.flush_outbox().await {
            Ok(warnings) => report.warnings.extend(warnings),
            Err(e) => report.warnings.push(format!("queued messages were not sent (retried at the next sync): {e}")),
        }
        let mut lists = HashMap::new();
        let mut handled: std::collections::HashSet<MessageId> = std::collections::HashSet::new();
        let mut drained = false;
        loop {
            let batch: Deliveries = self.api.get("/v1/messages?limit=500").await?;
            if batch.messages.is_empty() {
                drained = true;
                break;
            }
            // A relay that keeps serving what this pass already handled
            // (acknowledged or refused) would keep us here forever.
            if batch.messages.iter().all(|d| handled.contains(&d.message_id)) {
                report.warnings.push("the server keeps resending messages already handled; stopping this sync".into());
                break;
            }
            let fresh: std::collections::HashSet<MessageId> =
                batch.messages.iter().filter(|d| !handled.contains(&d.message_id)).map(|d| d.message_id).collect();
            handled.extend(fresh.iter().cloned());
            let mut ack = Vec::with_capacity(batch.messages.len());
            let mut stop = None;
            let mut opened = Vec::with_capacity(batch.messages.len());
            let mut refusals = Vec::new();
            let mut in_batch = std::collections::HashSet::new();
            let mut one_time_used = Vec::new();
            for d in &batch.messages {
                // Handled earlier in this pass (a relay re-serving it): acknowledged
                // again, neither opened nor kept as evidence a second time.
                if !fresh.contains(&d.message_id) {
                    ack.push(d.message_id);
                    continue;
                }
                let reason = match self.open_delivery(d, &mut lists).await {
                    Ok((m, row, plain, expires, one_time)) if in_batch.insert(m.message_id) => {
                        one_time_used.extend(one_time);
                        opened.push((row, plain, expires));
                        report.received.push(m);
                        None
                    }
                    Ok(_) => Some("delivered twice (replay)".to_owned()),
                    Err(ClientError::AlreadyStored) => None,
                    // A retry could succeed (relay or key directory down, local
                    // store failing): stop here, acknowledge nothing from this
                    // message on, and let the next sync take it again.
                    Err(e) => match on_failure(e.is_transient()) {
                        OnFailure::Retry => {
                            stop = Some(e);
                            break;
                        }
                        OnFailure::Refuse => Some(e.to_string()),
                    },
                };
                if let Some(reason) = reason {
                    report.warnings.push(format!("message {} refused: {reason}", d.message_id));
                    refusals.push(self.refusal(d, reason));
                }
                ack.push(d.message_id);
            }
            // Durable before acknowledged: one commit for the whole batch,
            // refusals (the evidence) included. A refused delivery's sequence
            // number is the relay's unverified claim, so it is not counted as
            // delivered: if the real message never arrives, that is a gap.
            let start = report.received.len().saturating_sub(opened.len());
            let events: Vec<_> = report
                .received
                .get(start..)
                .unwrap_or_default()
                .iter()
                .map(crate::rules::events::for_message)
                .collect();
            self.store.put_batch(&self.vault, &opened, &refusals, &events).await?;
            self.forget_one_time(&one_time_used);
            self.apply_recalls(report.received.get(start..).unwrap_or_default()).await?;
            self.save().await?;
            if !ack.is_empty() {
                self.api.post_empty("/v1/messages/ack", &Ack { message_ids: ack.clone() }).await?;
                let acked: Vec<[u8; 16]> = ack.iter().map(|m| *m.as_bytes()).collect();
                self.store.mark_acked(&acked).await?;
            }
            if let Some(e) = stop {
                return Err(e);
            }
        }
        if drained {
            // Nothing more is queued: a number still missing will not come.
            // Every conversation with news, received here or while watching.
            for conversation in self.store.conversations_to_check().await?.into_iter().map(ConversationId::from_bytes) {
                let (mark, seen) = self.store.unchecked(conversation.as_bytes()).await?;
                let (checked_to, gaps) = crate::rules::sequence::check(mark, &seen);
                for g in gaps {
                    report.warnings.push(if g.first == g.last {
                        format!(
                            "conversation {conversation}: message #{} never reached this device (withheld or lost by the relay, or expired before delivery)",
                            g.first
                        )
                    } else {
                        format!(
                            "conversation {conversation}: messages #{}..#{} never reached this device (withheld or lost by the relay, or expired before delivery)",
                            g.first, g.last
                        )
                    });
                }
                if checked_to != mark {
                    self.store.set_checked(conversation.as_bytes(), checked_to).await?;
                }
            }
        }
        self.upkeep().await?;
        report.warnings.extend(self.check_commitments().await);
        self.remove_expired_guests_now(&mut report).await;
        report.notices = self.take_notices();
        Ok(report)
    }

    /// The evidence kept for a refused delivery.
    pub(crate) fn refusal(&self, d: &Delivery, reason: String) -> crate::store::Refusal {
        crate::store::Refusal {
            message_id: d_id(d).unwrap_or([0; 16]),
            conversation: *d.conversation_id.as_bytes(),
            seq: d.seq,
            received_at: now_ms(),
            reason,
            envelope: d.envelope.0.clone(),
        }
    }

    /// Envelopes this device refused, kept as evidence: (message id the
    /// relay gave, relay's sequence number, why, the envelope as received).
    pub async fn refused(&self) -> Result<Vec<(MessageId, u64, String, Vec<u8>)>, ClientError> {
        Ok(self
            .store
            .refusals(&self.vault)
            .await?
            .into_iter()
            .map(|r| (MessageId::from_bytes(r.message_id), r.seq, r.reason, r.envelope))
            .collect())
    }

    /// Streams messages as the server pushes them over WebSocket, storing,
    /// acknowledging and handing each to `on_message`; refused envelopes go
    /// to `on_warning`. Messages handed to `on_message` count as displayed
    /// (their burn-on-read clock starts); receipts are stored, not handed on.
    /// Returns after `max` messages or `timeout`.
    pub async fn watch(
        &mut self,
        max: Option<usize>,
        timeout: Option<std::time::Duration>,
        on_message: impl FnMut(&Message),
        on_warning: impl FnMut(&str),
    ) -> Result<usize, ClientError> {
        let r = self.watch_socket(max, timeout, on_message, on_warning).await;
        self.noting_wipe(r).await
    }

    async fn watch_socket(
        &mut self,
        max: Option<usize>,
        timeout: Option<std::time::Duration>,
        mut on_message: impl FnMut(&Message),
        mut on_warning: impl FnMut(&str),
    ) -> Result<usize, ClientError> {
        use futures_util::StreamExt;
        use tokio_tungstenite::tungstenite::Message as Frame;
        // Binary pushes: the envelope's own bytes, no base64 (a relay that
        // predates them ignores the parameter and pushes JSON; both are read).
        let mut ws = self.open_socket("binary", "the live connection", crate::doorbell::socket_config()).await?;
        let deadline = timeout.map(|t| tokio::time::Instant::now() + t);
        let mut count = 0;
        // Stored and not yet acknowledged, and when they must be (ACK_DELAY
        // after the first of them).
        let mut unacked: Vec<MessageId> = Vec::new();
        let mut ack_by = tokio::time::Instant::now();
        let mut sent = SentAcks::default();
        let mut unconfirmed = Unconfirmed::default();
        // Ack frames the relay failed: each waits longer before going again.
        let mut ack_failures = 0u32;
        // Of `unacked`, ids going again: they wait for the back-off, or go
        // along with the next frame of new ones, but do not fill one.
        let mut retrying = 0usize;
        // Upkeep at once, then every UPKEEP_EVERY: a device that only
        // watches must not run out of pre-keys or keep expired messages.
        let mut upkeep_at = tokio::time::Instant::now();
        while max.is_none_or(|m| count < m) {
            // Checked here too: a relay that keeps sending frames never
            // lets the wait below run out.
            if deadline.is_some_and(|d| tokio::time::Instant::now() >= d) {
                break;
            }
            if tokio::time::Instant::now() >= upkeep_at {
                match self.flush_outbox().await {
                    Ok(warnings) => warnings.iter().for_each(|w| on_warning(w)),
                    Err(e) => on_warning(&format!("queued messages were not sent (retried in a while): {e}")),
                }
                if let Err(e) = self.upkeep().await {
                    on_warning(&format!("key upkeep failed (retried in a while): {e}"));
                }
                for w in self.check_commitments().await {
                    on_warning(&w);
                }
                upkeep_at = tokio::time::Instant::now() + UPKEEP_EVERY;
            }
            let mut wake = deadline.map_or(upkeep_at, |d| d.min(upkeep_at));
            if !unacked.is_empty() {
                if tokio::time::Instant::now() >= ack_by {
                    self.acknowledge(&mut ws, &mut unacked, &mut sent, &mut unconfirmed).await?;
                    retrying = 0;
                } else {
                    wake = wake.min(ack_by);
                }
            }
            if unconfirmed.flush(tokio::time::Instant::now(), false) {
                send_text(&mut ws, &WsFrame::Flush).await?;
            }
            if let Some(due) = unconfirmed.wake() {
                wake = wake.min(due);
            }
            let next = match tokio::time::timeout_at(wake, ws.next()).await {
                Ok(n) => n,
                Err(_) if deadline.is_some_and(|d| tokio::time::Instant::now() >= d) => break,
                Err(_) => continue,
            };
            let d = match next {
                Some(Ok(Frame::Text(text))) => match serde_json::from_str::<WsFrame>(&text) {
                    Ok(WsFrame::Message(d)) => d,
                    // Claims are using up this device's one-time pre-keys: upload more now.
                    Ok(WsFrame::PrekeysLow { .. }) => {
                        if let Err(e) = self.top_up().await {
                            on_warning(&format!("cannot upload more one-time pre-keys: {e}"));
                        }
                        continue;
                    }
                    // The relay could not store an ack: those ids go out again
                    // (they stay queued there, and fill its push window, until
                    // they do). Only ids this device acknowledged, each once: a
                    // relay cannot make it acknowledge what it never stored,
                    // nor swell its acks. Noted as not acknowledged meanwhile,
                    // so a later re-delivery is an honest one, not a replay.
                    Ok(WsFrame::AckFailed { message_ids, .. }) => {
                        // Whatever it names, no flush confirms (withholding the
                        // mark costs nothing but a quiet re-delivery).
                        unconfirmed.failed(&message_ids.iter().copied().collect());
                        let mut have: HashSet<MessageId> = unacked.iter().copied().collect();
                        let again: Vec<MessageId> =
                            message_ids.into_iter().filter(|m| sent.contains(m) && have.insert(*m)).collect();
                        if again.is_empty() {
                            continue;
                        }
                        let ids: Vec<[u8; 16]> = again.iter().map(|m| *m.as_bytes()).collect();
                        self.store.set_acked(&ids, false).await?;
                        ack_failures = ack_failures.saturating_add(1);
                        let retry = ACK_DELAY.saturating_mul(1 << ack_failures.min(5)).min(ACK_RETRY_MAX);
                        if unacked.is_empty() {
                            ack_by = tokio::time::Instant::now() + retry;
                        }
                        retrying += again.len();
                        unacked.extend(again);
                        continue;
                    }
                    // Every ack before the flush is committed: a re-delivery
                    // of those messages from now on is a replay.
                    Ok(WsFrame::Flushed) => {
                        self.confirmed(unconfirmed.flushed()).await?;
                        continue;
                    }
                    // `watch` sends only well-formed acks and flushes: an error
                    // while a flush is out is a relay that predates flushes
                    // answering it. Those ids stay noted as not acknowledged.
                    Ok(WsFrame::Error { .. }) => {
                        unconfirmed.flushed();
                        continue;
                    }
                    _ => continue,
                },
                Some(Ok(Frame::Binary(frame))) => match Delivery::from_push_frame(&frame) {
                    Ok(d) => d,
                    // Not acknowledged: it stays queued for a fetch.
                    Err(e) => {
                        on_warning(&format!("the relay sent a frame this device cannot read: {e}"));
                        continue;
                    }
                },
                Some(Ok(Frame::Close(_))) | None => break,
                Some(Ok(_)) => continue,
                Some(Err(e)) => return Err(ClientError::Usage(format!("live connection lost: {e}"))),
            };
            match self.receive(&d).await {
                // Receipts are stored (the view shows "read by") but are not messages to show.
                Ok(Some(m)) if matches!(m.content, Content::Receipt { .. }) => {}
                Ok(Some(m)) => {
                    count += 1;
                    on_message(&m);
                    // Handed to the application = shown: burn-on-read starts.
                    self.mark_displayed(&[m.message_id]).await?;
                }
                Ok(None) | Err(ClientError::AlreadyStored) => {}
                // Not acknowledged: the relay delivers it again after a retry.
                Err(e) if e.is_transient() => return Err(e),
                Err(e) => {
                    on_warning(&format!("message {} refused: {e}", d.message_id));
                    // The evidence is durable before the refusal is acknowledged.
                    let r = self.refusal(&d, e.to_string());
                    self.store.put_batch(&self.vault, &[], std::slice::from_ref(&r), &[]).await?;
                }
            }
            if unacked.is_empty() {
                ack_by = tokio::time::Instant::now() + ACK_DELAY;
            }
            unacked.push(d.message_id);
            if unacked.len().saturating_sub(retrying) >= ACK_BATCH {
                self.acknowledge(&mut ws, &mut unacked, &mut sent, &mut unconfirmed).await?;
                retrying = 0;
            }
        }
        // A socket the relay closed takes no ack: those come again and are
        // acknowledged then (stored already, they are not shown twice).
        match self.acknowledge(&mut ws, &mut unacked, &mut sent, &mut unconfirmed).await {
            Err(_) if !unacked.is_empty() => {}
            r => r?,
        }
        // What the relay has not confirmed stays noted as not acknowledged.
        if !unconfirmed.flush(tokio::time::Instant::now(), true) || send_text(&mut ws, &WsFrame::Flush).await.is_ok() {
            self.await_confirmations(&mut ws, &mut unconfirmed, &sent).await?;
        }
        let _ = ws.close(None).await;
        Ok(count)
    }

    /// Leaving `watch`: waits (at most `CONFIRM_WAIT`) for the relay to
    /// answer the flushes sent. Pushes meanwhile are left for the next
    /// connection (neither stored nor acknowledged). A `watch` that ends on
    /// an error does not wait: its unconfirmed acks stay noted as not
    /// acknowledged (a re-delivery of them is taken quietly).
    async fn await_confirmations<S>(
        &self,
        ws: &mut S,
        unconfirmed: &mut Unconfirmed,
        sent: &SentAcks,
    ) -> Result<(), ClientError>
    where
        S: futures_util::Stream<
                Item = Result<tokio_tungstenite::tungstenite::Message, tokio_tungstenite::tungstenite::Error>,
            > + Unpin,
    {
        use futures_util::StreamExt;
        use tokio_tungstenite::tungstenite::Message as Frame;
        let until = tokio::time::Instant::now() + CONFIRM_WAIT;
        while !unconfirmed.flushes.is_empty() {
            let Ok(Some(Ok(frame))) = tokio::time::timeout_at(until, ws.next()).await else { break };
            match frame {
                Frame::Text(text) => match serde_json::from_str::<WsFrame>(&text) {
                    Ok(WsFrame::Flushed) => self.confirmed(unconfirmed.flushed()).await?,
                    Ok(WsFrame::AckFailed { message_ids, .. }) => {
                        unconfirmed.failed(&message_ids.iter().copied().collect());
                        let ids: Vec<[u8; 16]> =
                            message_ids.iter().filter(|m| sent.contains(m)).map(|m| *m.as_bytes()).collect();
                        self.store.set_acked(&ids, false).await?;
                    }
                    // A relay that predates flushes (see `watch_socket`).
                    Ok(WsFrame::Error { .. }) => drop(unconfirmed.flushed()),
                    _ => {}
                },
                Frame::Close(_) => break,
                _ => {}
            }
        }
        Ok(())
    }

    /// The relay confirmed these acks: noted acknowledged, so a later
    /// re-delivery is taken as a replay.
    async fn confirmed(&self, ids: Vec<MessageId>) -> Result<(), ClientError> {
        let ids: Vec<[u8; 16]> = ids.iter().map(|m| *m.as_bytes()).collect();
        self.store.mark_acked(&ids).await
    }

    /// Acknowledges what `watch` stored, in frames of `ACK_BATCH` at most,
    /// and notes it (acknowledged once the relay confirms it).
    async fn acknowledge<S>(
        &self,
        ws: &mut S,
        unacked: &mut Vec<MessageId>,
        sent: &mut SentAcks,
        unconfirmed: &mut Unconfirmed,
    ) -> Result<(), ClientError>
    where
        S: futures_util::Sink<tokio_tungstenite::tungstenite::Message> + Unpin,
        S::Error: std::fmt::Display,
    {
        use futures_util::SinkExt;
        if unacked.is_empty() {
            return Ok(());
        }
        // Frames of ACK_BATCH at most (ids a relay failed can pile up).
        for chunk in unacked.chunks(ACK_BATCH) {
            let ack = serde_json::to_string(&WsFrame::Ack { message_ids: chunk.to_vec() })
                .map_err(|_| ClientError::Corrupt("ack"))?;
            ws.feed(tokio_tungstenite::tungstenite::Message::Text(ack.into()))
                .await
                .map_err(|e| ClientError::Usage(format!("live connection lost: {e}")))?;
        }
        ws.flush().await.map_err(|e| ClientError::Usage(format!("live connection lost: {e}")))?;
        sent.note(unacked);
        unconfirmed.sent(unacked, tokio::time::Instant::now());
        unacked.clear();
        Ok(())
    }

    pub(crate) async fn receive(&mut self, d: &Delivery) -> Result<Option<Message>, ClientError> {
        let (m, row, plain, expires, one_time) = self.open_delivery(d, &mut HashMap::new()).await?;
        let event = crate::rules::events::for_message(&m);
        self.store.put_messages(&self.vault, &[(row, plain, expires)], std::slice::from_ref(&event)).await?;
        self.forget_one_time(one_time.as_slice());
        self.apply_recalls(std::slice::from_ref(&m)).await?;
        self.save().await?;
        Ok(Some(m))
    }

    /// Verifies and decrypts one delivery (not yet stored), reusing sender
    /// device lists fetched earlier in the same pass unless the sending
    /// device is not in them. Returns the one-time pre-key it used, for the
    /// caller to forget once the message is stored: forgotten earlier, a
    /// store failure would leave a re-delivery that can no longer be opened.
    pub(crate) async fn open_delivery(
        &mut self,
        d: &Delivery,
        lists: &mut HashMap<UserId, VerifiedDeviceList>,
    ) -> Result<(Message, StoredRow, zeroize::Zeroizing<Vec<u8>>, Option<u64>, Option<u32>), ClientError> {
        let delivered = DeliveredEnvelope::decode(&d.envelope.0).map_err(|e| ClientError::Trust(e.to_string()))?;
        let h = *delivered.header();
        match crate::rules::delivery::known(self.store.seen(h.message_id.as_bytes()).await?) {
            Known::StoredUnacknowledged => return Err(ClientError::AlreadyStored),
            Known::Replayed => return Err(ClientError::Trust(EnvelopeError::Replay(h.message_id).to_string())),
            Known::New => {}
        }
        let sender = match lists.get(&h.sender_user_id) {
            Some(l) if l.device(h.sender_device_id).is_ok() => l.clone(),
            _ => {
                let l = self.device_list(h.sender_user_id).await?;
                lists.insert(h.sender_user_id, l.clone());
                l
            }
        };
        let me = RecipientDevice {
            network_id: self.network_id(),
            user_id: self.user_id(),
            identity_key: self.identity_public()?,
            device_id: self.device_id(),
        };
        let opened = delivered
            .open(&me, &self.prekey_secrets()?, &sender, &mut MemoryReplayGuard::default(), now_ms())
            .map_err(|e| ClientError::Trust(e.to_string()))?;
        let plain = zeroize::Zeroizing::new(opened.content.encode().map_err(|e| ClientError::Trust(e.to_string()))?);
        let row = StoredRow {
            message_id: *h.message_id.as_bytes(),
            conversation: *h.conversation_id.as_bytes(),
            seq: d.seq,
            sender: *h.sender_user_id.as_bytes(),
            timestamp: h.timestamp,
            burn_secs: h.burn_on_read_secs,
            sealed: Vec::new(),
            countable: false,
        };
        let one_time = (opened.prekey.kind == PreKeyKind::OneTime).then_some(opened.prekey.id);
        let seen = self.commitments.entry(h.conversation_id).or_default();
        // Two senders at one sequence with different digests is the fork to catch.
        if !seen.contains(&h.membership) && seen.len() < crate::membership::COMMITMENTS_KEPT {
            seen.push(h.membership);
        }
        let message = Message {
            message_id: h.message_id,
            conversation: h.conversation_id,
            seq: d.seq,
            sender: h.sender_user_id,
            timestamp: h.timestamp,
            content: opened.content,
        };
        let row = StoredRow { countable: crate::rules::events::countable(&message, self.user_id()), ..row };
        Ok((message, row, plain, h.expires_at(), one_time))
    }

    /// Forward secrecy: one-time private keys are gone once the messages
    /// sealed to them are stored (the caller saves the state next).
    fn forget_one_time(&mut self, used: &[u32]) {
        self.state.prekeys.retain(|(k, id, _)| !(*k == ONE_TIME && used.contains(id)));
    }

    /// The conversation view: edits applied (only the original sender's),
    /// reactions gathered, recalled messages gone.
    pub async fn view(&self, conversation: Option<ConversationId>) -> Result<Vec<ViewItem>, ClientError> {
        Ok(crate::rules::view::fold(self.messages(conversation).await?))
    }

    /// The conversation a stored message belongs to.
    pub async fn conversation_of(&self, message: MessageId) -> Result<ConversationId, ClientError> {
        self.messages(None)
            .await?
            .into_iter()
            .find(|m| m.message_id == message)
            .map(|m| m.conversation)
            .ok_or_else(|| ClientError::Usage(format!("no stored message {message}; run `strongroom read` first")))
    }

    /// Applies recalls: a recall from a message's own sender deletes it from disk.
    pub(crate) async fn apply_recalls(&self, received: &[Message]) -> Result<(), ClientError> {
        for m in received {
            if let Content::Control(strongroom_crypto::content::Control::DefaultTimers {
                ttl_secs,
                burn_on_read_secs,
            }) = m.content
            {
                self.remember_timers(m.conversation, ttl_secs, burn_on_read_secs).await?;
            }
        }
        let recalls: Vec<&Message> = received.iter().filter(|m| matches!(m.content, Content::Recall { .. })).collect();
        if recalls.is_empty() {
            return Ok(());
        }
        let stored = self.messages(None).await?;
        for r in recalls {
            let Content::Recall { target } = r.content else { continue };
            if stored.iter().any(|m| m.message_id == target && m.sender == r.sender) {
                self.store.delete_message(target.as_bytes()).await?;
            }
        }
        Ok(())
    }

    /// Stored messages, in order; of one conversation or all.
    pub async fn messages(&self, conversation: Option<ConversationId>) -> Result<Vec<Message>, ClientError> {
        let rows = self.store.messages(conversation.as_ref().map(|c| c.as_bytes())).await?;
        rows.into_iter()
            .map(|r| {
                let plain = self.vault.open(&format!("msg:{}", hex(&r.message_id)), &r.sealed)?;
                Ok(Message {
                    message_id: MessageId::from_bytes(r.message_id),
                    conversation: ConversationId::from_bytes(r.conversation),
                    seq: r.seq,
                    sender: UserId::from_bytes(r.sender),
                    timestamp: r.timestamp,
                    content: Content::decode(&plain).map_err(|_| ClientError::Corrupt("stored message"))?,
                })
            })
            .collect()
    }

    /// Deletes stored messages past their expiry now, as every sync does:
    /// for a process that syncs only when the relay rings. Returns how many.
    pub async fn purge_expired(&self) -> Result<u64, ClientError> {
        self.store.purge_expired(now_ms()).await
    }

    /// Starts the burn-on-read clock of messages the user has now seen.
    pub async fn mark_displayed(&self, ids: &[MessageId]) -> Result<(), ClientError> {
        let raw: Vec<[u8; 16]> = ids.iter().map(|m| *m.as_bytes()).collect();
        self.store.mark_displayed(&raw, now_ms()).await
    }
}

#[cfg(test)]
mod tests {
    #![allow(clippy::unwrap_used)]
    use super::*;

    fn id(n: u32) -> MessageId {
        let mut b = [0u8; 16];
        b[..4].copy_from_slice(&n.to_be_bytes());
        MessageId::from_bytes(b)
    }

    /// Acks wait for the relay's confirmation: one flush at a time, when
    /// due or a batch awaits; leaving always flushes; an answer confirms the
    /// oldest flush's ids except those the relay failed meanwhile.
    #[test]
    fn acks_are_confirmed_a_flush_at_a_time_and_failed_ids_never() {
        let t0 = tokio::time::Instant::now();
        let mut u = Unconfirmed::default();
        assert!(!u.flush(t0, true), "nothing to confirm");
        u.sent(&[id(1), id(2)], t0);
        assert_eq!(u.wake(), Some(t0 + CONFIRM_EVERY));
        assert!(!u.flush(t0, false), "not due yet");
        assert!(u.flush(t0 + CONFIRM_EVERY, false));
        assert_eq!(u.wake(), None);
        // A batch awaits, but the first flush is unanswered: no second one.
        let batch: Vec<MessageId> = (10..10 + CONFIRM_BATCH as u32).map(id).collect();
        u.sent(&batch, t0);
        assert!(!u.flush(t0 + 2 * CONFIRM_EVERY, false));
        assert_eq!(u.wake(), None, "nothing to wake for while a flush is unanswered");
        // The relay failed id 2 and one of the batch before answering.
        u.failed(&[id(2), id(10)].into_iter().collect());
        assert_eq!(u.flushed(), vec![id(1)]);
        assert!(!u.flush(t0, false), "one short of a batch, not due");
        assert!(u.flush(t0 + CONFIRM_EVERY, false), "due");
        assert_eq!(u.flushed(), batch[1..].to_vec());
        // Leaving flushes whatever awaits, even beside an unanswered flush.
        u.sent(&[id(3)], t0);
        assert!(!u.flush(t0, false), "not due");
        assert!(u.flush(t0, true), "leaving");
        u.sent(&[id(4)], t0);
        assert!(u.flush(t0, true), "leaving");
        assert_eq!((u.flushed(), u.flushed()), (vec![id(3)], vec![id(4)]));
        // A whole batch is flushed at once, not CONFIRM_EVERY later.
        let mut b = Unconfirmed::default();
        b.sent(&batch, t0);
        assert!(b.flush(t0, false));
        // An answer to no flush (a confused or hostile relay) confirms nothing.
        assert!(u.flushed().is_empty());
        // Bounded: the oldest ids beyond CONFIRM_KEPT stay unconfirmed.
        let many: Vec<MessageId> = (0..CONFIRM_KEPT as u32 + 5).map(id).collect();
        u.sent(&many, t0);
        assert_eq!(u.awaiting.len(), CONFIRM_KEPT);
        assert_eq!(u.awaiting[0], id(5));
    }

    /// The ids a relay's `ack_failed` may name: the last SENT_ACKS_KEPT
    /// acknowledged, an id sent again counting from its latest sending.
    #[test]
    fn sent_acks_keep_the_latest_ids_and_an_id_sent_again_moves_back() {
        let mut sent = SentAcks::default();
        let first: Vec<MessageId> = (0..SENT_ACKS_KEPT as u32).map(id).collect();
        sent.note(&first);
        assert!(first.iter().all(|m| sent.contains(m)));
        // Id 0 sent again (its ack failed), then one more new id: id 1,
        // now the oldest, goes; id 0 stays.
        sent.note(&[id(0)]);
        sent.note(&[id(u32::MAX)]);
        assert!(sent.contains(&id(0)) && sent.contains(&id(u32::MAX)));
        assert!(!sent.contains(&id(1)));
        assert_eq!(sent.ids.len(), SENT_ACKS_KEPT);
        // Re-noting the same ids over and over keeps the memory bounded.
        for _ in 0..10 {
            sent.note(&first[..1000]);
        }
        assert!(sent.ids.len() <= SENT_ACKS_KEPT && sent.order.len() <= 2 * SENT_ACKS_KEPT);
        assert!(first[..1000].iter().all(|m| sent.contains(m)));
    }
}
