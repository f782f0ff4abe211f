//! Accepting connections: HTTP/1.1 with timers, and caps per source and in
//! total, so slow or idle clients cannot hold sockets (and file descriptors)
//! until the server stops answering anyone.
//!
//! - Headers (and the wait for the next request on a kept-alive connection)
//!   must arrive within `header_timeout_secs`.
//! - A request body must arrive at a minimum pace: `body_timeout_secs`, plus
//!   one second per `body_min_bytes_per_sec` bytes received (the
//!   `mod_reqtimeout` rule), so a 4 GiB upload on a slow link completes and a
//!   byte every few seconds does not.
//! - A response (or WebSocket push) whose writes make no progress for
//!   `write_timeout_secs` ends the connection: a client that stops reading
//!   a download holds nothing for long.
//! - At most `max_connections_per_ip` connections per source address (IPv6
//!   grouped by /64; configured trusted proxies are exempt) and
//!   `max_connections` in all, which defaults to the process's open-file limit
//!   less a reserve for the database, blobs and logs. A WebSocket keeps its
//!   connection's place until it closes.

use std::collections::HashMap;
use std::future::Future;
use std::net::{IpAddr, SocketAddr};
use std::pin::Pin;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Mutex};
use std::task::{Context, Poll};
use std::time::Duration;

use axum::body::{Body, Bytes};
use axum::extract::ConnectInfo;
use axum::http::{header, HeaderValue, Request, Response, StatusCode};
use axum::Router;
use http_body::{Body as HttpBody, Frame, SizeHint};
use hyper_util::rt::{TokioIo, TokioTimer};
use tokio::net::TcpListener;
use tower::ServiceExt;

use crate::config::{Limits, TrustedProxies};

/// File descriptors kept free of connections for the database, blobs and logs.
const FD_RESERVE: u64 = 128;
/// How long graceful shutdown waits for requests in flight.
const DRAIN: Duration = Duration::from_secs(30);

/// The TCP peer a request arrived from, before `X-Forwarded-For` (which
/// `ConnectInfo` reflects for trusted proxies).
#[derive(Debug, Clone, Copy)]
pub struct Peer {
    /// The socket address.
    pub addr: SocketAddr,
    /// Whether it is a configured trusted proxy.
    pub trusted_proxy: bool,
}

/// A socket that holds its connection's place for as long as it is open,
/// also after a WebSocket upgrade hands it out of the HTTP connection, and
/// fails a write that makes no progress for `write_timeout` (a client that
/// stops reading a download, or a dead WebSocket peer, lets it go).
struct Counted {
    io: tokio::net::TcpStream,
    _place: Admitted,
    write_timeout: Duration,
    stalled: Option<Pin<Box<tokio::time::Sleep>>>,
}

impl Counted {
    /// Turns a pending write into an error once it has waited too long.
    fn pace<T>(&mut self, cx: &mut Context<'_>, polled: Poll<std::io::Result<T>>) -> Poll<std::io::Result<T>> {
        match polled {
            Poll::Pending => {
                let timeout = self.write_timeout;
                let timer = self.stalled.get_or_insert_with(|| Box::pin(tokio::time::sleep(timeout)));
                match timer.as_mut().poll(cx) {
                    Poll::Ready(()) => Poll::Ready(Err(std::io::Error::new(
                        std::io::ErrorKind::TimedOut,
                        "the client stopped reading",
                    ))),
                    Poll::Pending => Poll::Pending,
                }
            }
            ready => {
                self.stalled = None;
                ready
            }
        }
    }
}

impl tokio::io::AsyncRead for Counted {
    fn poll_read(
        mut self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        buf: &mut tokio::io::ReadBuf<'_>,
    ) -> Poll<std::io::Result<()>> {
        Pin::new(&mut self.io).poll_read(cx, buf)
    }
}

impl tokio::io::AsyncWrite for Counted {
    fn poll_write(mut self: Pin<&mut Self>, cx: &mut Context<'_>, buf: &[u8]) -> Poll<std::io::Result<usize>> {
        let polled = Pin::new(&mut self.io).poll_write(cx, buf);
        self.pace(cx, polled)
    }
    fn poll_flush(mut self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<std::io::Result<()>> {
        let polled = Pin::new(&mut self.io).poll_flush(cx);
        self.pace(cx, polled)
    }
    fn poll_shutdown(mut self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<std::io::Result<()>> {
        Pin::new(&mut self.io).poll_shutdown(cx)
    }
    fn poll_write_vectored(
        mut self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        bufs: &[std::io::IoSlice<'_>],
    ) -> Poll<std::io::Result<usize>> {
        let polled = Pin::new(&mut self.io).poll_write_vectored(cx, bufs);
        self.pace(cx, polled)
    }
    fn is_write_vectored(&self) -> bool {
        self.io.is_write_vectored()
    }
}

/// Connection counts by source, with both caps.
pub(crate) struct Gate {
    per_source: usize,
    total: usize,
    open: Mutex<(usize, HashMap<IpAddr, usize>)>,
    trusted: TrustedProxies,
}

/// One admitted connection; leaving frees its place.
pub(crate) struct Admitted {
    gate: Arc<Gate>,
    key: Option<IpAddr>,
}

impl Gate {
    pub(crate) fn new(limits: &Limits, trusted: TrustedProxies) -> Self {
        let total = match limits.max_connections {
            0 => open_file_limit().map_or(4096, |n| n.saturating_sub(FD_RESERVE).max(64)),
            n => n,
        };
        Self {
            per_source: limits.max_connections_per_ip.max(1) as usize,
            total: usize::try_from(total).unwrap_or(usize::MAX),
            open: Mutex::new((0, HashMap::new())),
            trusted,
        }
    }

    /// The total cap in force.
    pub(crate) fn total(&self) -> usize {
        self.total
    }

    /// Admits a connection from `peer`, or refuses it when a cap is reached.
    pub(crate) fn admit(self: &Arc<Self>, peer: IpAddr) -> Option<Admitted> {
        let key = (!self.trusted.contains(peer)).then(|| source_key(peer));
        let mut open = self.open.lock().ok()?;
        if open.0 >= self.total {
            return None;
        }
        if let Some(k) = key {
            let n = open.1.entry(k).or_insert(0);
            if *n >= self.per_source {
                return None;
            }
            *n += 1;
        }
        open.0 += 1;
        Some(Admitted { gate: self.clone(), key })
    }
}

impl Drop for Admitted {
    fn drop(&mut self) {
        let Ok(mut open) = self.gate.open.lock() else { return };
        open.0 = open.0.saturating_sub(1);
        if let Some(k) = self.key {
            if let Some(n) = open.1.get_mut(&k) {
                *n -= 1;
                if *n == 0 {
                    open.1.remove(&k);
                }
            }
        }
    }
}

/// The key limits count by: the IPv4 address, or the IPv6 /64 (one
/// subscriber's allocation; a host can pick any address in it).
pub fn source_key(ip: IpAddr) -> IpAddr {
    match ip {
        IpAddr::V4(v4) => IpAddr::V4(v4),
        IpAddr::V6(v6) => match v6.to_ipv4_mapped() {
            Some(v4) => IpAddr::V4(v4),
            None => IpAddr::V6(std::net::Ipv6Addr::from(u128::from(v6) & !((1u128 << 64) - 1))),
        },
    }
}

/// The soft open-file limit, read from `/proc` (Linux) without unsafe code.
fn open_file_limit() -> Option<u64> {
    let text = std::fs::read_to_string("/proc/self/limits").ok()?;
    let line = text.lines().find(|l| l.starts_with("Max open files"))?;
    line.split_whitespace().nth(3)?.parse().ok()
}

/// Serves `app` on `listener` until `shutdown`, then lets requests in
/// flight finish (bounded by [`DRAIN`]).
pub(crate) async fn serve(
    listener: TcpListener,
    app: Router,
    limits: &Limits,
    gate: Arc<Gate>,
    shutdown: impl Future<Output = ()> + Send + 'static,
) {
    let mut http = hyper::server::conn::http1::Builder::new();
    http.timer(TokioTimer::new()).header_read_timeout(Duration::from_secs(limits.header_timeout_secs.max(1)));
    let pace = Pace {
        base: Duration::from_secs(limits.body_timeout_secs.max(1)),
        bytes_per_sec: limits.body_min_bytes_per_sec.max(1),
    };
    let write_timeout = Duration::from_secs(limits.write_timeout_secs.max(1));
    let (stop_tx, stop_rx) = tokio::sync::watch::channel(false);
    // Every connection task holds a sender: when all are gone, all are done.
    let (alive_tx, mut alive_rx) = tokio::sync::mpsc::channel::<()>(1);
    tokio::pin!(shutdown);
    loop {
        let (stream, peer) = tokio::select! {
            accepted = listener.accept() => match accepted {
                Ok(a) => a,
                Err(e) => {
                    // Out of descriptors or a reset during accept: pause, go on.
                    tracing::warn!(error = %e, "accept failed");
                    tokio::time::sleep(Duration::from_millis(50)).await;
                    continue;
                }
            },
            () = &mut shutdown => break,
        };
        let Some(admitted) = gate.admit(peer.ip()) else {
            // Closed at once: a refused connection holds no descriptor.
            drop(stream);
            continue;
        };
        // Small frames (pushes, acks) must not wait for the peer's delayed ACK (Nagle).
        let _ = stream.set_nodelay(true);
        let app = app.clone();
        let gate_ = gate.clone();
        let service = hyper::service::service_fn(move |req: Request<hyper::body::Incoming>| {
            // Behind a trusted proxy, limits and the audit log see the client it names.
            let forwarded: Vec<&str> =
                req.headers().get_all("x-forwarded-for").iter().filter_map(|v| v.to_str().ok()).collect();
            let client = SocketAddr::new(gate_.trusted.client(peer.ip(), forwarded.into_iter()), peer.port());
            let peer = Peer { addr: peer, trusted_proxy: gate_.trusted.contains(peer.ip()) };
            handle(app.clone(), client, peer, pace, req)
        });
        let io = Counted { io: stream, _place: admitted, write_timeout, stalled: None };
        let conn = http.serve_connection(TokioIo::new(io), service).with_upgrades();
        let mut stop = stop_rx.clone();
        let alive = alive_tx.clone();
        tokio::spawn(async move {
            let _alive = alive;
            tokio::pin!(conn);
            tokio::select! {
                _ = conn.as_mut() => {}
                _ = stop.changed() => {
                    conn.as_mut().graceful_shutdown();
                    let _ = conn.await;
                }
            }
        });
    }
    drop(listener);
    let _ = stop_tx.send(true);
    drop(alive_tx);
    let _ = tokio::time::timeout(DRAIN, alive_rx.recv()).await;
}

async fn handle(
    app: Router,
    client: SocketAddr,
    peer: Peer,
    pace: Pace,
    req: Request<hyper::body::Incoming>,
) -> Result<Response<Body>, std::convert::Infallible> {
    let too_slow = Arc::new(AtomicBool::new(false));
    let mut req = req.map(|body| Body::new(PacedBody::new(body, pace, too_slow.clone())));
    req.extensions_mut().insert(ConnectInfo(client));
    req.extensions_mut().insert(peer);
    let res = app.oneshot(req).await?;
    if too_slow.load(Ordering::Acquire) {
        let mut res = axum::response::IntoResponse::into_response(crate::error::ApiError::new(
            StatusCode::REQUEST_TIMEOUT,
            "body_timeout",
            "the request body arrived too slowly; send it again on a faster link",
        ));
        // Whatever is left of the body is not read: the connection ends here.
        res.headers_mut().insert(header::CONNECTION, HeaderValue::from_static("close"));
        return Ok(res);
    }
    Ok(res)
}

/// The minimum pace of a request body.
#[derive(Debug, Clone, Copy)]
struct Pace {
    base: Duration,
    bytes_per_sec: u64,
}

/// A request body that fails once it falls behind its [`Pace`].
struct PacedBody<B> {
    inner: B,
    pace: Pace,
    received: u64,
    start: tokio::time::Instant,
    timer: Pin<Box<tokio::time::Sleep>>,
    too_slow: Arc<AtomicBool>,
}

impl<B> PacedBody<B> {
    fn new(inner: B, pace: Pace, too_slow: Arc<AtomicBool>) -> Self {
        let start = tokio::time::Instant::now();
        Self { inner, pace, received: 0, start, timer: Box::pin(tokio::time::sleep_until(start + pace.base)), too_slow }
    }

    fn deadline(&self) -> tokio::time::Instant {
        let earned = Duration::from_secs_f64(self.received as f64 / self.pace.bytes_per_sec as f64);
        self.start + self.pace.base + earned
    }
}

/// The error a too-slow body ends with.
#[derive(Debug, thiserror::Error)]
#[error("the request body arrived too slowly")]
struct TooSlow;

impl<B> HttpBody for PacedBody<B>
where
    B: HttpBody<Data = Bytes> + Unpin,
    B::Error: Into<axum::BoxError>,
{
    type Data = Bytes;
    type Error = axum::BoxError;

    fn poll_frame(mut self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<Option<Result<Frame<Bytes>, Self::Error>>> {
        let this = &mut *self;
        match Pin::new(&mut this.inner).poll_frame(cx) {
            Poll::Ready(Some(Ok(frame))) => {
                if let Some(data) = frame.data_ref() {
                    this.received = this.received.saturating_add(data.len() as u64);
                    let deadline = this.deadline();
                    this.timer.as_mut().reset(deadline);
                }
                Poll::Ready(Some(Ok(frame)))
            }
            Poll::Ready(Some(Err(e))) => Poll::Ready(Some(Err(e.into()))),
            Poll::Ready(None) => Poll::Ready(None),
            Poll::Pending => match this.timer.as_mut().poll(cx) {
                Poll::Ready(()) => {
                    this.too_slow.store(true, Ordering::Release);
                    Poll::Ready(Some(Err(Box::new(TooSlow))))
                }
                Poll::Pending => Poll::Pending,
            },
        }
    }

    fn is_end_stream(&self) -> bool {
        self.inner.is_end_stream()
    }

    fn size_hint(&self) -> SizeHint {
        self.inner.size_hint()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn ipv6_counts_by_slash_64_and_mapped_v4_as_v4() {
        let a: IpAddr = "2001:db8:1:2:aaaa::1".parse().unwrap_or(IpAddr::V4([0, 0, 0, 0].into()));
        let b: IpAddr = "2001:db8:1:2:ffff::9".parse().unwrap_or(IpAddr::V4([0, 0, 0, 0].into()));
        let c: IpAddr = "2001:db8:1:3::1".parse().unwrap_or(IpAddr::V4([0, 0, 0, 0].into()));
        assert_eq!(source_key(a), source_key(b));
        assert_ne!(source_key(a), source_key(c));
        let mapped: IpAddr = "::ffff:192.0.2.7".parse().unwrap_or(IpAddr::V4([0, 0, 0, 0].into()));
        assert_eq!(source_key(mapped), IpAddr::V4([192, 0, 2, 7].into()));
    }

    #[test]
    fn caps_per_source_and_in_total_and_frees_on_drop() {
        let limits = Limits { max_connections_per_ip: 2, max_connections: 3, ..Limits::default() };
        let gate = Arc::new(Gate::new(&limits, TrustedProxies::default()));
        let one: IpAddr = [192, 0, 2, 1].into();
        let two: IpAddr = [192, 0, 2, 2].into();
        let a = gate.admit(one);
        let b = gate.admit(one);
        assert!(a.is_some() && b.is_some());
        assert!(gate.admit(one).is_none(), "third from one source");
        let c = gate.admit(two);
        assert!(c.is_some());
        assert!(gate.admit(two).is_none(), "total cap");
        drop(a);
        assert!(gate.admit(one).is_some(), "a place freed on drop");
    }

    #[test]
    fn trusted_proxies_are_not_capped_per_source() {
        let limits = Limits { max_connections_per_ip: 1, max_connections: 10, ..Limits::default() };
        let proxies = TrustedProxies::parse(&["10.0.0.0/8".to_owned()]).unwrap_or_default();
        let gate = Arc::new(Gate::new(&limits, proxies));
        let proxy: IpAddr = [10, 1, 2, 3].into();
        let held: Vec<_> = (0..5).filter_map(|_| gate.admit(proxy)).collect();
        assert_eq!(held.len(), 5);
    }

    #[test]
    fn the_default_total_follows_the_open_file_limit() {
        let gate = Gate::new(&Limits::default(), TrustedProxies::default());
        if let Some(n) = open_file_limit() {
            assert_eq!(gate.total() as u64, n.saturating_sub(FD_RESERVE).max(64));
        }
    }
}
