//! `GET /v1/ws`: pushes queued messages as they arrive and takes acks.

use std::collections::HashSet;
use std::time::Duration;

use axum::extract::ws::{Message, WebSocket, WebSocketUpgrade};
use axum::extract::State;
use axum::response::Response;
use strongroom_wire::WsFrame;

use super::messages::{delivery, parse_ack};
use crate::auth::Caller;
use crate::state::AppState;

const BATCH: i64 = 500;

pub(super) async fn connect(State(state): State<AppState>, caller: Caller, ws: WebSocketUpgrade) -> Response {
    ws.max_message_size(64 * 1024)
        .read_buffer_size(4096)
        .write_buffer_size(4096)
        .on_upgrade(move |socket| serve(state, caller, socket))
}

async fn serve(state: AppState, caller: Caller, mut socket: WebSocket) {
    let device = caller.session.device_id;
    let (conn, mut wake) = state.hub.register(device);
    // Queue ids pushed on this connection and not yet acknowledged.
    let mut pushed: HashSet<i64> = HashSet::new();
    // On SQLite (one writer) queue ids become visible in increasing order, so
    // each wake-up reads only past the last one pushed. PostgreSQL sequences
    // can commit out of order across processes: there, read the whole queue.
    let watermark = state.store.backend() == crate::store::Backend::Sqlite;
    let mut last = 0i64;
    let mut ping = tokio::time::interval(Duration::from_secs(10));
    let mut pending = true;
    'serve: loop {
        while pending {
            match push(&state, &device, &mut socket, &mut pushed, if watermark { last } else { 0 }).await {
                Ok((high, more)) => {
                    last = high.unwrap_or(last);
                    pending = more;
                }
                Err(()) => break 'serve,
            }
        }
        tokio::select! {
            w = wake.recv() => {
                if w.is_none() { break; }
                pending = true;
            }
            msg = socket.recv() => {
                match msg {
                    Some(Ok(Message::Text(text))) => {
                        if handle(&state, &device, text.as_str(), &mut socket).await.is_err() { break; }
                    }
                    Some(Ok(Message::Ping(_) | Message::Pong(_))) => {}
                    Some(Ok(Message::Binary(_))) => {
                        let _ = send(&mut socket, &WsFrame::Error { error: "bad_frame".into(), message: "frames are JSON text".into() }).await;
                    }
                    _ => break,
                }
            }
            _ = ping.tick() => {
                if socket.send(Message::Ping(Default::default())).await.is_err() { break; }
                // A lost wake-up (another process, a NATS hiccup) costs at most this long.
                pending = true;
            }
        }
    }
    state.hub.unregister(device, conn);
}

async fn send(socket: &mut WebSocket, frame: &WsFrame) -> Result<(), ()> {
    let text = serde_json::to_string(frame).map_err(|_| ())?;
    socket.send(Message::Text(text.into())).await.map_err(|_| ())
}

/// Pushes queued messages after queue position `after` not yet pushed on
/// this connection. Returns the highest position read, and whether to read
/// again at once (a full batch with something new in it).
async fn push(
    state: &AppState,
    device: &[u8; 16],
    socket: &mut WebSocket,
    pushed: &mut HashSet<i64>,
    after: i64,
) -> Result<(Option<i64>, bool), ()> {
    let rows = state.store.queued(device, after, BATCH).await.map_err(|_| ())?;
    let high = rows.last().map(|r| r.queue_id);
    let full = rows.len() >= usize::try_from(BATCH).unwrap_or(usize::MAX);
    if after == 0 {
        let live: HashSet<i64> = rows.iter().map(|r| r.queue_id).collect();
        pushed.retain(|id| live.contains(id));
    } else {
        pushed.retain(|id| *id > after);
    }
    let mut new = 0;
    for row in rows {
        if pushed.insert(row.queue_id) {
            new += 1;
            state.metrics.deliveries_out.fetch_add(1, std::sync::atomic::Ordering::Relaxed);
            send(socket, &WsFrame::Message(delivery(row))).await?;
        }
    }
    Ok((high, full && new > 0))
}

async fn handle(state: &AppState, device: &[u8; 16], text: &str, socket: &mut WebSocket) -> Result<(), ()> {
    match serde_json::from_str::<WsFrame>(text) {
        Ok(WsFrame::Ack { message_ids }) => match parse_ack(&message_ids) {
            Ok(ids) => {
                if state.store.ack(device, &ids).await.is_err() {
                    return send(
                        socket,
                        &WsFrame::Error {
                            error: "storage_unavailable".into(),
                            message: "ack failed; resend it".into(),
                        },
                    )
                    .await;
                }
                Ok(())
            }
            Err(_) => {
                send(
                    socket,
                    &WsFrame::Error {
                        error: "bad_ack".into(),
                        message: "message ids are 32 hex digits, at most 1000".into(),
                    },
                )
                .await
            }
        },
        _ => {
            send(
                socket,
                &WsFrame::Error {
                    error: "bad_frame".into(),
                    message: "expected {\"type\":\"ack\",\"message_ids\":[…]}".into(),
                },
            )
            .await
        }
    }
}
