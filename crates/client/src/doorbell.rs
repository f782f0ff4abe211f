//! The doorbell: a WebSocket on which the relay says only that something may
//! be queued for this device (`GET /v1/ws?pushes=notice`). A process that
//! fetches with [`Client::sync`] waits on it instead of polling: an idle
//! device then costs the relay a socket, not a request every poll, and a
//! message is fetched as soon as it is queued.
//!
//! The bell carries no content and is not trusted for any: a hostile relay
//! that rings for nothing costs a fetch, one that never rings delays
//! messages until the caller's own safety-net fetch.

use crate::client::Client;
use crate::error::ClientError;
use futures_util::{FutureExt, StreamExt};
use tokio_tungstenite::tungstenite::protocol::WebSocketConfig;
use tokio_tungstenite::tungstenite::Message as Frame;

/// The largest frame a doorbell takes (a notice is 17 bytes; an error or a
/// `prekeys_low` frame a few hundred).
const NOTICE_MAX: usize = 16 * 1024;

/// How much a socket to the relay reads at a time. tungstenite zero-fills
/// its whole read buffer before every read (128 KiB by default), so with a
/// 2 KiB push per read most of a receiver's CPU went on the fill (48 % of the
/// load generator's in a busy room). 16 KiB takes a typical push in one
/// read and a large one in a few.
const READ_CHUNK: usize = 16 * 1024;

/// The settings for a WebSocket to the relay: the live connection, the
/// doorbell (which narrows them further) and the load generator's sockets.
pub fn socket_config() -> WebSocketConfig {
    WebSocketConfig::default().read_buffer_size(READ_CHUNK)
}

pub(crate) type Socket = tokio_tungstenite::WebSocketStream<tokio_tungstenite::MaybeTlsStream<tokio::net::TcpStream>>;

/// An open doorbell; see the module documentation.
pub struct Doorbell {
    socket: Socket,
    /// The relay closed it, noticed while draining a ring.
    closed: bool,
    /// When the relay was last heard from (it pings every 10 s).
    heard: tokio::time::Instant,
}

impl std::fmt::Debug for Doorbell {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Doorbell").field("closed", &self.closed).finish_non_exhaustive()
    }
}

impl Client {
    /// Opens the doorbell. Open it before a [`Client::sync`], so that nothing
    /// queued between the two goes unrung. A relay that predates notices
    /// refuses it (an error): poll instead.
    pub async fn doorbell(&self) -> Result<Doorbell, ClientError> {
        // A notice is a few bytes: a relay that sends megabytes gets the socket closed.
        let small = socket_config().max_message_size(Some(NOTICE_MAX)).max_frame_size(Some(NOTICE_MAX));
        let socket = self.open_socket("notice", "the relay's notice connection", small).await?;
        Ok(Doorbell { socket, closed: false, heard: tokio::time::Instant::now() })
    }

    /// `GET /v1/ws?pushes=…` as this device (`what` names it in errors).
    pub(crate) async fn open_socket(
        &self,
        pushes: &str,
        what: &str,
        config: WebSocketConfig,
    ) -> Result<Socket, ClientError> {
        use tokio_tungstenite::tungstenite::client::IntoClientRequest;
        let url =
            format!("{}/v1/ws?pushes={pushes}", self.state.server_url.trim_end_matches('/')).replacen("http", "ws", 1);
        let mut req = url.into_client_request().map_err(|e| ClientError::Usage(format!("bad server URL: {e}")))?;
        let auth = format!("Bearer {}", self.state.token.expose())
            .parse()
            .map_err(|_| ClientError::Corrupt("session token"))?;
        req.headers_mut().insert("Authorization", auth);
        // No Nagle: acks are small frames that must not wait for the server's delayed ACK.
        let (socket, _) = tokio_tungstenite::connect_async_with_config(req, Some(config), true)
            .await
            .map_err(|e| ClientError::Usage(format!("cannot open {what}: {e}")))?;
        Ok(socket)
    }
}

impl Doorbell {
    /// Waits for a ring, then takes every ring already waiting with it, so
    /// one fetch answers them all. An error once the connection has ended
    /// (the relay went away, or the session ended): open another, or poll.
    pub async fn rung(&mut self) -> Result<(), ClientError> {
        if self.closed {
            return Err(lost("closed by the relay"));
        }
        loop {
            let next = self.socket.next().await;
            self.heard = tokio::time::Instant::now();
            match next {
                // Pings are answered by the socket itself.
                Some(Ok(Frame::Ping(_) | Frame::Pong(_) | Frame::Frame(_))) => continue,
                // A notice, or any other frame the relay has for this device
                // (pre-keys running low: the sync's upkeep tops them up).
                Some(Ok(Frame::Text(_) | Frame::Binary(_))) => break,
                Some(Ok(Frame::Close(_))) | None => {
                    self.closed = true;
                    return Err(lost("closed by the relay"));
                }
                Some(Err(e)) => {
                    self.closed = true;
                    return Err(lost(&e.to_string()));
                }
            }
        }
        while let Some(next) = self.socket.next().now_or_never() {
            match next {
                Some(Ok(Frame::Close(_))) | Some(Err(_)) | None => {
                    self.closed = true;
                    break;
                }
                Some(Ok(_)) => {}
            }
        }
        Ok(())
    }

    /// How long since the relay was last heard from on this socket. The
    /// relay pings every 10 s; a connection that died silently (a laptop
    /// that slept, a NAT that forgot it) hears nothing: reopen it.
    pub fn silent_for(&self) -> std::time::Duration {
        self.heard.elapsed()
    }
}

fn lost(why: &str) -> ClientError {
    ClientError::Usage(format!("the relay's notice connection ended: {why}"))
}
