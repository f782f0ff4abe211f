//! `GET /v1/ws`: pushes queued messages as they arrive, takes acks, and
//! takes sends (binary frames, `strongroom_wire::SendFrame`) as `POST
//! /v1/messages` would, answering each by its request id.

use std::collections::HashSet;
use std::sync::atomic::Ordering;
use std::sync::Arc;
use std::time::Duration;

use axum::extract::ws::{Message, WebSocket, WebSocketUpgrade};
use axum::extract::{Query, State};
use axum::response::Response;
use futures_util::future::BoxFuture;
use futures_util::stream::FuturesUnordered;
use futures_util::{FutureExt, SinkExt, StreamExt};
use strongroom_wire::{MessageId, SendFrame, WsFrame};

use super::messages::parse_ack;
use crate::auth::Caller;
use crate::error::ApiError;
use crate::hub::Push;
use crate::service::delivery::delivery;
use crate::state::AppState;
use crate::store::QueuedRow;

const BATCH: i64 = 500;
/// Most pushes taken from a connection's channel before one flush.
const WRITE_BATCH: usize = 64;
/// Acks a connection may have waiting for their commit before it stops reading frames.
const ACKS_IN_FLIGHT: usize = 16;
/// PostgreSQL: how often a woken connection re-reads its whole queue.
const FULL_READ_EVERY: Duration = Duration::from_secs(1);
/// Sends a connection may have being stored before it stops reading frames
/// (as many as a client would have HTTP requests in flight).
const SENDS_IN_FLIGHT: usize = 32;

/// How a device reads pushes: JSON `message` frames, binary push frames
/// (`?pushes=binary`, `strongroom_wire::PUSH_KIND`), or only a `queued`
/// notice when something may be queued, fetched then over HTTP
/// (`?pushes=notice`: the app, which would otherwise poll).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default, serde::Deserialize)]
#[serde(rename_all = "lowercase")]
pub(super) enum Pushes {
    #[default]
    Json,
    Binary,
    Notice,
}

/// `GET /v1/ws` query parameters.
#[derive(serde::Deserialize)]
pub(super) struct Options {
    #[serde(default)]
    pushes: Pushes,
}

pub(super) async fn connect(
    State(state): State<AppState>,
    caller: Caller,
    Query(options): Query<Options>,
    ws: WebSocketUpgrade,
) -> Response {
    // An idle socket keeps a small read buffer (it grows to a frame's length
    // when one needs more); a frame is at most a send of the largest envelope.
    // The closure is kept beside the socket's task for as long as it runs:
    // it holds one pointer, not the state and caller themselves.
    let max_frame = state.config.limits.max_envelope_bytes.saturating_add(strongroom_wire::SEND_OVERHEAD);
    let parts = Box::new((state, caller));
    ws.max_message_size(max_frame).max_frame_size(max_frame).read_buffer_size(512).write_buffer_size(4096).on_upgrade(
        move |socket| {
            let (state, caller) = *parts;
            serve(state, caller, socket, options.pushes)
        },
    )
}

/// Not an `async fn`: one of those moves its arguments into locals of its
/// own, so an idle socket's task would hold the socket, the state and the
/// caller twice (rust-lang/rust#62958). The block uses them in place.
#[allow(clippy::manual_async_fn)]
fn serve(
    state: AppState,
    caller: Caller,
    mut socket: WebSocket,
    pushes: Pushes,
) -> impl std::future::Future<Output = ()> + Send {
    async move {
        let device = caller.session.device_id;
        let owner = caller.session.device_ref();
        // Guests (whose activity is noted) and retention devices (named by
        // the current policy) check their session at each ping; everyone
        // else's is checked by the sweep, many at once (`service/socket_sweep.rs`).
        let checks_itself = caller.session.guest || caller.is_retention();
        let mut conn = state.hub.register(device, (!checks_itself).then_some(caller.token_hash));
        // Queue ids pushed on this connection and not yet acknowledged.
        let mut pushed: HashSet<i64> = HashSet::new();
        // Reads start past the last queue position pushed. On SQLite (one
        // writer) positions become visible in increasing order, so that is exact,
        // and rows the committer hands over are pushed as they come. PostgreSQL
        // sequences can commit out of order across processes, so there the whole
        // queue is read again on a wake-up at least FULL_READ_EVERY after the
        // last full read, and on every ping: a row committed out of order waits
        // for the next of those (10 s at worst), and is never lost. On SQLite
        // a push is lost only past a full channel, which sets `missed`.
        let exact = state.store.backend() == crate::store::Backend::Sqlite;
        let mut last = 0i64;
        let mut full_at = tokio::time::Instant::now();
        let mut force_full = false;
        let mut ping = tokio::time::interval(Duration::from_secs(10));
        // A notice-only socket never reads the queue: its device fetches.
        let reads = pushes != Pushes::Notice;
        let mut pending = reads;
        // Acks being committed and sends being stored: the connection keeps
        // pushing meanwhile (a burst of acks from a big room must not stall
        // delivery), up to the bounds in `InFlight`. One set for both, so an
        // idle socket holds one (its allocation is made up front).
        let mut working: FuturesUnordered<BoxFuture<'static, Done>> = FuturesUnordered::new();
        let mut flight = InFlight {
            max_send_bytes: state.config.limits.max_envelope_bytes.saturating_mul(2),
            window: state.config.limits.push_window.max(1),
            ..InFlight::default()
        };
        'serve: loop {
            while pending && reads && flight.unacked < flight.window {
                // Closed (the session ended, the device was suspended): no
                // read of the store pushes anything more.
                if conn.rx.is_closed() {
                    break 'serve;
                }
                // Rows that overflow from here on are read next time.
                conn.missed.store(false, Ordering::Release);
                let full = !exact && (force_full || full_at.elapsed() >= FULL_READ_EVERY);
                if full {
                    full_at = tokio::time::Instant::now();
                    force_full = false;
                }
                let room = flight.window - flight.unacked;
                // Boxed: a read of the queue is a big future, and idle sockets
                // (most of them) should not carry its state.
                match Box::pin(push(
                    &state,
                    &owner,
                    &mut socket,
                    &mut pushed,
                    if full { 0 } else { last },
                    pushes,
                    room,
                ))
                .await
                {
                    Ok((high, more, sent)) => {
                        flight.unacked += sent;
                        last = last.max(high.unwrap_or(0));
                        // After a full read, read on past the newest position too.
                        pending = more || full;
                    }
                    Err(()) => break 'serve,
                }
            }
            tokio::select! {
                p = conn.rx.recv() => {
                    // Whatever else is already waiting goes out in the same
                    // writes (one flush), not a write per frame. Bounded by what
                    // is taken, written or not, so acks and pings get their turn.
                    let (mut next, mut fed, mut taken, mut ring) = (p, 0usize, 0usize, false);
                    loop {
                        match next {
                            None => break 'serve,
                            // One notice for all that is taken at once.
                            Some(Push::Wake | Push::Row(_)) if !reads => ring = true,
                            Some(Push::Wake) => pending = true,
                            Some(Push::Notice(frame)) => {
                                if feed(&mut socket, &frame).await.is_err() { break 'serve; }
                                fed += 1;
                            }
                            // SQLite: a row after a dropped one: read the store, which has both.
                            Some(Push::Row(_)) if exact && conn.missed.load(Ordering::Acquire) => pending = true,
                            // Read from the store once acks make room.
                            Some(Push::Row(_)) if flight.unacked >= flight.window => pending = true,
                            Some(Push::Row(row)) => {
                                // PostgreSQL: rows come from every process, not always in
                                // queue order; push each once, and read the store too if
                                // one was dropped.
                                let new = if exact { row.queue_id > last } else { pushed.insert(row.queue_id) };
                                if !exact && conn.missed.load(Ordering::Acquire) {
                                    pending = true;
                                }
                                if new {
                                    flight.unacked += 1;
                                    last = last.max(row.queue_id);
                                    let row = Arc::try_unwrap(row).unwrap_or_else(|shared| (*shared).clone());
                                    state.metrics.deliveries_out.fetch_add(1, Ordering::Relaxed);
                                    if feed_row(&mut socket, row, pushes).await.is_err() { break 'serve; }
                                    fed += 1;
                                }
                            }
                        }
                        taken += 1;
                        if taken >= WRITE_BATCH {
                            break;
                        }
                        match conn.rx.try_recv() {
                            Ok(p) => next = Some(p),
                            Err(_) => break,
                        }
                    }
                    // A push dropped behind whatever was taken: read the store.
                    if reads && conn.missed.load(Ordering::Acquire) {
                        pending = true;
                    }
                    if ring {
                        if feed(&mut socket, &WsFrame::Queued).await.is_err() { break; }
                        fed += 1;
                    }
                    if fed > 0 && socket.flush().await.is_err() { break; }
                }
                Some(done) = working.next(), if !working.is_empty() => {
                    // Whatever else is done already goes out in the same write.
                    if Box::pin(settle(&mut socket, &mut working, &mut flight, Some(done))).await.is_err() { break; }
                }
                msg = socket.recv(), if flight.may_read() => {
                    match msg {
                        Some(Ok(Message::Text(text))) => match handle(text.as_str()) {
                            Text::Ack(ids) => {
                                let store = state.store.clone();
                                flight.acks += 1;
                                let seq = flight.take();
                                working.push(async move {
                                    let ok = store.ack(&owner, &ids).await.is_ok();
                                    Done::Acked { n: ids.len(), failed: (!ok).then_some(ids), seq }
                                }.boxed());
                            }
                            // Answered once every ack and send before it settled,
                            // without holding this socket's pushes back meanwhile.
                            Text::Flush => {
                                flight.flush();
                                if Box::pin(flushed(&mut socket, &mut flight)).await.is_err() { break; }
                            }
                            Text::Answer(reply) => {
                                // Any answer comes after every earlier ack is committed.
                                if Box::pin(settle(&mut socket, &mut working, &mut flight, None)).await.is_err() { break; }
                                if Box::pin(send(&mut socket, *reply)).await.is_err() { break; }
                            }
                        },
                        Some(Ok(Message::Ping(_) | Message::Pong(_))) => {}
                        Some(Ok(Message::Binary(frame))) => {
                            match take_send(&state, &caller, frame, flight.taken) {
                                Ok((job, len)) => {
                                    flight.take();
                                    flight.sends += 1;
                                    flight.send_bytes = flight.send_bytes.saturating_add(len);
                                    working.push(job);
                                }
                                Err(answer) => if Box::pin(send(&mut socket, *answer)).await.is_err() { break; },
                            }
                        }
                        _ => break,
                    }
                }
                _ = ping.tick() => {
                    // The session may have ended on another process (logout,
                    // suspension, wipe) while its disconnect was lost.
                    if checks_itself && !Box::pin(may_go_on(&state, &caller)).await { break; }
                    if socket.send(Message::Ping(Default::default())).await.is_err() { break; }
                    // PostgreSQL: a lost wake-up (another process, a NATS
                    // hiccup) costs at most this long. SQLite has one process,
                    // whose pushes are lost only past a full channel, which
                    // the connection notices itself (`missed`): an idle socket
                    // reads nothing.
                    if !exact {
                        pending = true;
                        force_full = true;
                    }
                }
            }
        }
        // Acks the client sent before it went are still committed: dropping
        // them would send those messages again on its next connection. Bounded,
        // so a store that hangs cannot keep the task forever. Sends already
        // taken run on as tasks of their own and are stored; their answers
        // go with the socket (the device sends again and hears `duplicate`).
        let _ = tokio::time::timeout(Duration::from_secs(10), async { while working.next().await.is_some() {} }).await;
        state.hub.unregister(device, &conn);
    }
}

/// Sends one frame now. Takes it by value, boxed by the caller: the
/// connection's own future then holds neither the frame nor the write.
async fn send(socket: &mut WebSocket, frame: WsFrame) -> Result<(), ()> {
    feed(socket, &frame).await?;
    socket.flush().await.map_err(|_| ())
}

/// What finished beside the connection; `seq`: its place among the acks
/// and sends the connection took in ([`InFlight::take`]).
enum Done {
    /// An ack of `n` messages was committed, or not (`failed`: its ids,
    /// for the device to send again).
    Acked { n: usize, failed: Option<Vec<[u8; 16]>>, seq: u64 },
    /// A send was stored or refused; its frame held `len` bytes.
    Answered { answer: Box<WsFrame>, len: usize, seq: u64 },
}

/// What a connection has under way, and its bounds.
#[derive(Default)]
struct InFlight {
    /// Acks being committed.
    acks: usize,
    /// Sends being stored, and the bytes of their frames.
    sends: usize,
    send_bytes: usize,
    max_send_bytes: usize,
    /// Pushed and not yet covered by a committed ack. At most `window`:
    /// past it, pushing waits for acks, which bounds what a client that
    /// drops the connection is sent again to what it had in flight, and
    /// keeps acks from falling behind pushes.
    unacked: usize,
    window: usize,
    /// Acks and sends taken in so far (the next one's `seq`).
    taken: u64,
    /// Flushes not answered yet: the `taken` each came at, how many acks
    /// and sends taken before it are still under way, and how many flushes
    /// came there (flushes with no ack or send between them wait for the
    /// same things: one entry, so a device sending nothing but flushes
    /// cannot grow this). Answered in order, each once its count is 0.
    flushes: std::collections::VecDeque<(u64, usize, usize)>,
}

impl InFlight {
    /// Whether the connection may read another frame.
    fn may_read(&self) -> bool {
        self.acks < ACKS_IN_FLIGHT && self.sends < SENDS_IN_FLIGHT && self.send_bytes < self.max_send_bytes
    }

    /// The next ack or send's place in order.
    fn take(&mut self) -> u64 {
        self.taken += 1;
        self.taken - 1
    }

    /// A flush came: it waits for the acks and sends under way.
    fn flush(&mut self) {
        match self.flushes.back_mut() {
            Some((at, _, n)) if *at == self.taken => *n = n.saturating_add(1),
            _ => self.flushes.push_back((self.taken, self.acks + self.sends, 1)),
        }
    }

    /// How many flushes may be answered now (taken off, in order).
    fn flushed(&mut self) -> usize {
        let mut n = 0;
        while let Some((_, 0, k)) = self.flushes.front() {
            n += k;
            self.flushes.pop_front();
        }
        n
    }

    /// Counts `done` off; the frame to answer with, if any.
    fn settle(&mut self, done: Done) -> Option<WsFrame> {
        let seq = match &done {
            Done::Acked { seq, .. } | Done::Answered { seq, .. } => *seq,
        };
        for (at, left, _) in &mut self.flushes {
            if seq < *at {
                *left = left.saturating_sub(1);
            }
        }
        match done {
            Done::Acked { n, failed, .. } => {
                self.acks = self.acks.saturating_sub(1);
                match failed {
                    None => {
                        self.unacked = self.unacked.saturating_sub(n);
                        None
                    }
                    Some(ids) => Some(ack_failed(ids)),
                }
            }
            Done::Answered { answer, len, .. } => {
                self.sends = self.sends.saturating_sub(1);
                self.send_bytes = self.send_bytes.saturating_sub(len);
                Some(*answer)
            }
        }
    }
}

/// Writes the answers for `first` and whatever else is done, in one flush.
/// Without `first`, waits for everything under way (an error frame must
/// follow every earlier ack's commit).
async fn settle(
    socket: &mut WebSocket,
    working: &mut FuturesUnordered<BoxFuture<'static, Done>>,
    flight: &mut InFlight,
    first: Option<Done>,
) -> Result<(), ()> {
    let wait = first.is_none();
    let mut next = first;
    let mut fed = false;
    loop {
        let done = match next.take() {
            Some(d) => d,
            None if wait => match working.next().await {
                Some(d) => d,
                None => break,
            },
            None => match working.next().now_or_never() {
                Some(Some(d)) => d,
                _ => break,
            },
        };
        if let Some(frame) = flight.settle(done) {
            feed(socket, &frame).await?;
            fed = true;
        }
        // After the frame of what settled: an `ack_failed` comes first.
        for _ in 0..flight.flushed() {
            feed(socket, &WsFrame::Flushed).await?;
            fed = true;
        }
    }
    if fed {
        socket.flush().await.map_err(|_| ())?;
    }
    Ok(())
}

/// Answers the flushes that nothing under way holds back any more.
async fn flushed(socket: &mut WebSocket, flight: &mut InFlight) -> Result<(), ()> {
    let n = flight.flushed();
    for _ in 0..n {
        feed(socket, &WsFrame::Flushed).await?;
    }
    if n > 0 {
        socket.flush().await.map_err(|_| ())?;
    }
    Ok(())
}

/// Queues a frame without flushing it (the socket writes once its buffer
/// fills): the caller flushes after the last of a batch.
async fn feed(socket: &mut WebSocket, frame: &WsFrame) -> Result<(), ()> {
    let text = serde_json::to_string(frame).map_err(|_| ())?;
    socket.feed(Message::Text(text.into())).await.map_err(|_| ())
}

/// Queues a row's push, in the form the device asked for, without flushing it.
async fn feed_row(socket: &mut WebSocket, row: QueuedRow, pushes: Pushes) -> Result<(), ()> {
    let d = delivery(row);
    match pushes {
        Pushes::Json | Pushes::Notice => feed(socket, &WsFrame::Message(d)).await,
        Pushes::Binary => socket.feed(Message::Binary(d.to_push_frame().into())).await.map_err(|_| ()),
    }
}

/// Pushes queued messages after queue position `after` not yet pushed on
/// this connection, at most `room`. Returns the highest position read,
/// whether to read again at once (a full batch with something new in it),
/// and how many were pushed.
async fn push(
    state: &AppState,
    owner: &crate::store::DeviceRef,
    socket: &mut WebSocket,
    pushed: &mut HashSet<i64>,
    after: i64,
    pushes: Pushes,
    room: usize,
) -> Result<(Option<i64>, bool, usize), ()> {
    let exact = state.store.backend() == crate::store::Backend::Sqlite;
    let max_bytes = state.config.limits.max_fetch_bytes;
    let limit = BATCH.min(i64::try_from(room).unwrap_or(BATCH)).max(1);
    let (rows, full) = state.store.queued_page(owner, after, limit, max_bytes).await.map_err(|_| ())?;
    let high = rows.last().map(|r| r.queue_id);
    if after == 0 {
        let live: HashSet<i64> = rows.iter().map(|r| r.queue_id).collect();
        pushed.retain(|id| live.contains(id));
    } else if exact {
        // Everything past `after` is new: nothing to remember.
        pushed.clear();
    }
    let mut new = 0;
    for row in rows {
        if pushed.insert(row.queue_id) {
            new += 1;
            state.metrics.deliveries_out.fetch_add(1, Ordering::Relaxed);
            feed_row(socket, row, pushes).await?;
        }
    }
    if new > 0 {
        socket.flush().await.map_err(|_| ())?;
    }
    Ok((high, full && new > 0, new))
}

/// Whether the connection's session still allows it to receive (and send).
/// A guest using the socket is active; an expired one is let go.
async fn may_go_on(state: &AppState, caller: &Caller) -> bool {
    still_valid(state, caller).await && crate::service::guests::touch(state, caller).await.is_ok()
}

/// Whether the connection's session still allows it to receive.
/// A retention device's, also only while the current policy names it.
async fn still_valid(state: &AppState, caller: &Caller) -> bool {
    match state.store.session(&caller.token_hash, crate::store::now_ms()).await {
        Ok(Some(s)) if s.suspended || s.wipe_pending => false,
        Ok(Some(s)) if caller.is_retention() => {
            let named = crate::service::policy::names_retention_device(state, &s.network_id, &s.device_id).await;
            // The database is unreachable: keep the socket, check next time.
            named.unwrap_or(true)
        }
        Ok(Some(_)) => true,
        Ok(None) => false,
        Err(_) => true,
    }
}

type SendJob = BoxFuture<'static, Done>;

/// A binary frame from the client: a send to store (with the frame's
/// length), else the frame to answer with at once.
fn take_send(
    state: &AppState,
    caller: &Caller,
    frame: axum::body::Bytes,
    seq: u64,
) -> Result<(SendJob, usize), Box<WsFrame>> {
    let len = frame.len();
    let send = SendFrame::decode(&frame).map_err(|e| match e.request() {
        Some(request) => Box::new(refused(request, ApiError::bad_request("bad_frame", e.to_string()))),
        None => Box::new(WsFrame::Error { error: "bad_frame".into(), message: e.to_string() }),
    })?;
    let request = send.request;
    // As `POST /v1/messages` refuses a body over the limit (the frame's
    // own limit leaves room for the tag).
    if send.envelope.len() > state.config.limits.max_envelope_bytes {
        return Err(Box::new(refused(request, too_large(state.config.limits.max_envelope_bytes))));
    }
    let tag = send.settings_tag.map(str::to_owned);
    // A view of the frame's own buffer: the envelope is not copied.
    let envelope = frame.slice_ref(send.envelope);
    let (state, caller) = (state.clone(), *caller);
    // A task of its own, as an HTTP request has: a send holding a database
    // connection goes on while this socket's task waits on a slow reader.
    let stored = tokio::spawn(async move {
        // Each send is authorised as a request would be (the session is
        // remembered in memory, so this is cheap): a session that ended since
        // the socket opened sends nothing more, and a retention one never sends.
        let sent = match caller.recheck(&state).await {
            Ok(now) => crate::service::delivery::send(&state, &now, &envelope, tag.as_deref()).await,
            Err(e) => Err(e),
        };
        match sent {
            Ok(a) => WsFrame::Sent { request, message_id: a.message_id, seq: a.seq, duplicate: a.duplicate },
            Err(e) => refused(request, e),
        }
    });
    let job = async move {
        let answer = stored.await.unwrap_or_else(|_| {
            refused(
                request,
                ApiError::new(
                    axum::http::StatusCode::INTERNAL_SERVER_ERROR,
                    "internal",
                    "the relay could not finish this send; send the same envelope again",
                ),
            )
        });
        Done::Answered { answer: Box::new(answer), len, seq }
    };
    Ok((job.boxed(), len))
}

fn too_large(limit: usize) -> ApiError {
    ApiError::new(
        axum::http::StatusCode::PAYLOAD_TOO_LARGE,
        "too_large",
        format!("an envelope is at most {limit} bytes on this relay; send large content as a file"),
    )
}

/// A send's refusal, as `POST /v1/messages` would have answered it.
fn refused(request: u64, e: ApiError) -> WsFrame {
    let (status, body) = e.into_parts();
    WsFrame::SendFailed { request, status: status.as_u16(), body }
}

fn ack_failed(ids: Vec<[u8; 16]>) -> WsFrame {
    WsFrame::AckFailed {
        message_ids: ids.into_iter().map(MessageId::from_bytes).collect(),
        error: "storage_unavailable".into(),
        message: "the relay could not store this acknowledgement; send these ids again".into(),
    }
}

/// A text frame from the client.
enum Text {
    /// A valid ack's ids.
    Ack(Vec<[u8; 16]>),
    /// Answer `flushed` once every ack and send before it settled.
    Flush,
    /// Answer this once every earlier frame settled (boxed: the
    /// connection's future holds it across a write).
    Answer(Box<WsFrame>),
}

fn handle(text: &str) -> Text {
    let frame = match serde_json::from_str::<WsFrame>(text) {
        Ok(WsFrame::Ack { message_ids }) => parse_ack(&message_ids).map_err(|_| WsFrame::Error {
            error: "bad_ack".into(),
            message: "message ids are 32 hex digits, at most 1000".into(),
        }),
        Ok(WsFrame::Flush) => return Text::Flush,
        Ok(_) => Err(WsFrame::Error {
            error: "bad_frame".into(),
            message: "expected {\"type\":\"ack\",\"message_ids\":[…]} or {\"type\":\"flush\"}".into(),
        }),
        // serde's text names what was wrong (e.g. an id that is not 32 hex digits).
        Err(e) => Err(WsFrame::Error {
            error: "bad_frame".into(),
            message: format!(
                "{e}: expected {{\"type\":\"ack\",\"message_ids\":[…]}} with 32-hex-digit ids, or {{\"type\":\"flush\"}}"
            ),
        }),
    };
    match frame {
        Ok(ids) => Text::Ack(ids),
        Err(reply) => Text::Answer(Box::new(reply)),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// A failed ack names its ids, so the device can send exactly those
    /// again, and leaves them counted against the window until it does.
    /// A flush waits for the acks and sends taken before it, whatever
    /// order they settle in, and for nothing taken after it; flushes are
    /// answered in order.
    #[test]
    fn a_flush_waits_for_what_came_before_it_only() {
        let mut f = InFlight { window: 8, ..InFlight::default() };
        f.flush();
        assert_eq!(f.flushed(), 1, "nothing under way: answered at once");
        let (a, b) = (f.take(), f.take());
        f.acks += 2;
        let c = f.take();
        f.sends += 1;
        f.flush();
        let d = f.take();
        f.acks += 1;
        assert_eq!(f.flushed(), 0);
        assert!(f.settle(Done::Acked { n: 1, failed: None, seq: d }).is_none());
        assert_eq!(f.flushed(), 0, "an ack after the flush does not answer it");
        let failed = f.settle(Done::Acked { n: 1, failed: Some(vec![[7; 16]]), seq: b });
        assert!(matches!(failed, Some(WsFrame::AckFailed { .. })));
        assert!(f.settle(Done::Answered { answer: Box::new(WsFrame::Queued), len: 10, seq: c }).is_some());
        assert_eq!(f.flushed(), 0, "one ack before it still under way");
        f.flush();
        assert!(f.settle(Done::Acked { n: 1, failed: None, seq: a }).is_none());
        assert_eq!(f.flushed(), 2, "both flushes, in order");
        // Flushes with nothing taken between them share one entry.
        f.acks += 1;
        let e = f.take();
        for _ in 0..100_000 {
            f.flush();
        }
        assert_eq!(f.flushes.len(), 1);
        assert!(f.settle(Done::Acked { n: 1, failed: None, seq: e }).is_none());
        assert_eq!(f.flushed(), 100_000);
        assert_eq!((f.acks, f.sends, f.flushes.len()), (0, 0, 0));
    }

    #[test]
    fn a_failed_ack_names_its_ids_and_keeps_them_in_the_window() {
        let mut flight = InFlight { window: 8, unacked: 5, acks: 2, ..InFlight::default() };
        let frame = flight.settle(Done::Acked { n: 2, failed: Some(vec![[1; 16], [2; 16]]), seq: 0 });
        let Some(WsFrame::AckFailed { message_ids, error, .. }) = frame else { panic!("{frame:?}") };
        assert_eq!(message_ids, vec![MessageId::from_bytes([1; 16]), MessageId::from_bytes([2; 16])]);
        assert_eq!(error, "storage_unavailable");
        assert_eq!((flight.unacked, flight.acks), (5, 1));
        // Sent again and committed: out of the window, nothing to answer.
        assert!(flight.settle(Done::Acked { n: 2, failed: None, seq: 1 }).is_none());
        assert_eq!((flight.unacked, flight.acks), (3, 0));
        let json = serde_json::to_string(&ack_failed(vec![[0xab; 16]])).unwrap();
        assert!(json.starts_with(r#"{"type":"ack_failed","message_ids":["abab"#), "{json}");
    }

    #[test]
    fn acks_read_typed_ids_and_anything_else_gets_an_error_frame() {
        let good = format!(r#"{{"type":"ack","message_ids":["{}"]}}"#, "ab".repeat(16));
        assert!(matches!(handle(&good), Text::Ack(ids) if ids == vec![[0xab; 16]]));
        // The same id three times counts once against the window.
        let thrice = format!(r#"{{"type":"ack","message_ids":["{0}","{0}","{0}"]}}"#, "cd".repeat(16));
        assert!(matches!(handle(&thrice), Text::Ack(ids) if ids == vec![[0xcd; 16]]));
        assert!(matches!(handle(r#"{"type":"flush"}"#), Text::Flush));
        let many: Vec<String> = (0..1001).map(|_| "ab".repeat(16)).collect();
        let too_many = serde_json::json!({"type": "ack", "message_ids": many}).to_string();
        for (bad, code) in [
            (r#"{"type":"ack","message_ids":["ab"]}"#.to_owned(), "bad_frame"),
            (r#"{"type":"ack","message_ids":[12]}"#.to_owned(), "bad_frame"),
            (r#"{"type":"prekeys_low","remaining":1}"#.to_owned(), "bad_frame"),
            (r#"{"type":"flushed"}"#.to_owned(), "bad_frame"),
            ("not json".to_owned(), "bad_frame"),
            (too_many, "bad_ack"),
        ] {
            let Text::Answer(reply) = handle(&bad) else { panic!("{bad:.80} was taken") };
            match *reply {
                WsFrame::Error { error, message } => {
                    assert_eq!(error, code, "{bad:.80}");
                    assert!(!message.is_empty());
                }
                other => panic!("{bad:.80} gave {other:?}"),
            }
        }
    }
}
