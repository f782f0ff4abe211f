//! `strongroom bench`: a load generator. Simulated clients with real keys
//! seal real envelopes, send them over their WebSocket (or HTTP, `--sends
//! http`; a device with no socket open sends over HTTP) and receive them
//! over WebSocket from a running server (or cluster), for a fixed time or a fixed count,
//! then report accepted and delivered envelopes per second, end-to-end
//! latency and the server processes' CPU time per delivered envelope.
//!
//! With `--count`, every envelope is sealed before the clock starts, so the
//! generator's own X25519 and Ed25519 work does not compete with the server
//! for the same cores while it is measured.
//!
//! It creates its own network with the server's bootstrap secret (each
//! secret creates one network: pass `--data-dir` to read the current one).
//! Every simulated client comes from 127.0.0.1, so run the server with
//! generous `[limits]`: `auth_per_minute`, `sends_per_second`,
//! `max_connections_per_ip` (one WebSocket per simulated device, plus HTTP)
//! and `one_time_claims_per_hour` (docs/PERFORMANCE.md).

use std::collections::HashMap;
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use anyhow::{bail, Context};
use clap::{Args, ValueEnum};
use futures_util::{SinkExt, StreamExt};
use rand_core::{OsRng, RngCore};
use strongroom_client::rules::keys;
use strongroom_client::RelayApi;
use strongroom_crypto::certs::{DeviceList, DeviceListExpectation, NetworkPolicy, PreKeyKind};
use strongroom_crypto::content::Content;
use strongroom_crypto::envelope::{seal, MessageMeta, Recipient, Sender};
use strongroom_crypto::ids::{ConversationId, DeviceId, MessageId, NetworkId, UserId};
use strongroom_crypto::keys::SigningKey;
use strongroom_wire::*;
use tokio_tungstenite::tungstenite::client::IntoClientRequest;
use tokio_tungstenite::tungstenite::Message as Frame;

mod yardstick;

#[derive(Clone, Copy, ValueEnum, PartialEq, Eq, Debug)]
pub enum Scenario {
    /// N/2 pairs, each side sending to the other.
    Pairs,
    /// One group of N members, every member sending.
    Group,
    /// One room: N users with --devices devices each; one member sends.
    Room,
    /// N idle WebSocket connections, held for the duration.
    Idle,
    /// N/2 pairs; each receiver is offline while its sender queues
    /// `--count`/pairs messages for it; then the receivers connect and the
    /// drain is measured until every message is delivered and acknowledged,
    /// and a reconnect counts what the relay pushes again.
    Backlog,
}

/// How simulated devices send.
#[derive(Clone, Copy, ValueEnum, PartialEq, Eq, Debug)]
pub enum Sends {
    /// Binary send frames on the device's open WebSocket.
    Websocket,
    /// `POST /v1/messages`, one request per message.
    Http,
}

/// How simulated devices are pushed messages (`GET /v1/ws?pushes=`).
#[derive(Clone, Copy, ValueEnum, PartialEq, Eq, Debug)]
pub enum Pushes {
    /// Binary push frames: the envelope's own bytes.
    Binary,
    /// JSON `message` frames, the envelope in base64.
    Json,
}

/// When simulated devices acknowledge what they were pushed.
#[derive(Clone, Copy, ValueEnum, PartialEq, Eq, Debug)]
pub enum Acks {
    /// As `strongroom watch` acknowledges: one frame for what arrived within
    /// 200 ms of the first id waiting, or at 64. The app is close to it (one
    /// request per page it fetches, at most every 200 ms while its doorbell
    /// rings). A busy room's devices acknowledge every 200 ms, a few ids each.
    Batched,
    /// One frame per 64 messages, or for what was read once the socket was
    /// quiet for 200 ms: the fewest frames, and what `batched` did before the
    /// thirteenth sitting. In a room busier than one message per 200 ms no
    /// socket is ever quiet, so every device acknowledges at its 64th message,
    /// all at the same push: bigger waves than clients make.
    Full,
    /// One frame per message as soon as it is read, as `strongroom watch`
    /// did before it held acks for 200 ms: a room's message brings a frame
    /// from every device.
    Each,
    /// What was read since the last tick, every 0.7 s from a phase of the
    /// device's own, as the app acknowledged each page it fetched while it
    /// polled every 0.7 s: a room's devices do not all acknowledge at the
    /// same moment.
    Timed,
    /// As `full`, but each frame's size drawn anew between 32 and 64: a
    /// room's devices, which all reach 64 at the same push, drift apart and
    /// stop acknowledging in waves (an experiment: not what clients do).
    Jittered,
}

/// How long `--acks batched` holds the first id waiting, as `strongroom watch` does.
const ACK_DELAY: Duration = Duration::from_millis(200);

/// How often `--acks timed` acknowledges, as the app fetches.
const ACK_TICK: Duration = Duration::from_millis(700);

impl Acks {
    /// Acknowledges what waits once the socket was quiet for `ACK_DELAY`,
    /// not `ACK_DELAY` after the first id waiting.
    fn when_quiet(self) -> bool {
        matches!(self, Acks::Full | Acks::Jittered)
    }

    /// Pending ids that make a frame (timed: at the tick, or at this many,
    /// well within the relay's push window).
    fn batch(self) -> usize {
        match self {
            Acks::Batched | Acks::Full => 64,
            Acks::Jittered => 32 + (OsRng.next_u32() % 33) as usize,
            Acks::Each => 1,
            Acks::Timed => 1024,
        }
    }
}

impl Pushes {
    fn url(self, base: &str) -> String {
        let mode = if self == Pushes::Binary { "binary" } else { "json" };
        format!("{}/v1/ws?pushes={mode}", base.replacen("http", "ws", 1))
    }
}

/// The message id of a pushed frame of either form.
fn pushed_id(frame: &Frame) -> Option<MessageId> {
    match frame {
        Frame::Text(t) => match serde_json::from_str::<WsFrame>(t) {
            Ok(WsFrame::Message(d)) => Some(d.message_id),
            _ => None,
        },
        Frame::Binary(b) => Delivery::from_push_frame(b).ok().map(|d| d.message_id),
        _ => None,
    }
}

#[derive(Args)]
pub struct BenchArgs {
    /// The server URL; several, comma-separated, spread the simulated
    /// clients over cluster nodes (client i uses node i mod n).
    #[arg(long, default_value = "http://127.0.0.1:8080")]
    server: String,
    /// The server's data directory (for the bootstrap secret).
    #[arg(long)]
    data_dir: Option<std::path::PathBuf>,
    /// Or the bootstrap secret itself.
    #[arg(long, env = "STRONGROOM_BOOTSTRAP_SECRET", hide_env_values = true)]
    bootstrap_secret: Option<String>,
    /// What to run.
    #[arg(long, value_enum, default_value = "pairs")]
    scenario: Scenario,
    /// Simulated users (idle: connections).
    #[arg(long, default_value_t = 20)]
    clients: usize,
    /// Devices per user (room).
    #[arg(long, default_value_t = 1)]
    devices: usize,
    /// Seconds of load (with --count: the most to wait for it).
    #[arg(long, default_value_t = 10)]
    duration: u64,
    /// Send exactly this many envelopes in all, sealed before the clock
    /// starts, and measure until every copy is delivered.
    #[arg(long)]
    count: Option<u64>,
    /// Message text size in bytes (the envelope pads it to a power of two).
    #[arg(long, default_value_t = 1000)]
    size: usize,
    /// Sends in flight per sender.
    #[arg(long, default_value_t = 4)]
    concurrency: usize,
    /// How senders send.
    #[arg(long, value_enum, default_value = "websocket")]
    sends: Sends,
    /// How sockets are pushed messages.
    #[arg(long, value_enum, default_value = "binary")]
    pushes: Pushes,
    /// When devices acknowledge.
    #[arg(long, value_enum, default_value = "batched")]
    acks: Acks,
    /// Fixed total send rate (messages/s, spread over the senders) instead of
    /// as fast as possible: latency at a known load.
    #[arg(long)]
    rate: Option<f64>,
    /// The server processes' ids (comma-separated), to report their resident
    /// memory and the CPU time they spent per delivered envelope.
    #[arg(long, value_delimiter = ',')]
    server_pid: Vec<u32>,
    /// Spread WebSockets over this many loopback source addresses
    /// (127.0.0.1 … 127.0.0.N; a plain-HTTP server on loopback only).
    #[arg(long, default_value_t = 1)]
    source_addrs: u8,
    /// Also run against a server on a private address (10/8, 172.16/12,
    /// 192.168/16, fd00::/8): a second host or network namespace of your own,
    /// where the server's machine does not also run the generator's receive
    /// path (docs/PERFORMANCE.md, "Two hosts on one machine").
    #[arg(long)]
    private_host: bool,
    /// After the run, this many seconds each of static responses and of
    /// one-query requests, with the server's CPU for each: a yardstick
    /// measured on the same machine in the same run (0: none).
    #[arg(long, default_value_t = 0)]
    yardstick: u64,
    /// Print the result as JSON.
    #[arg(long)]
    json: bool,
}

/// Where `--server` points.
#[derive(Debug, PartialEq, Eq)]
enum Target {
    Loopback,
    /// A private (RFC 1918, unique-local) address: taken with `--private-host`.
    Private,
    Elsewhere,
}

/// Where the URL `server` points, as the HTTP client will read it (a user
/// name before an `@` would otherwise hide the real host). Names are not
/// resolved: only `localhost` and literal addresses are known.
fn target(server: &str) -> Target {
    let Ok(url) = reqwest::Url::parse(server) else { return Target::Elsewhere };
    if !matches!(url.scheme(), "http" | "https") || !url.username().is_empty() || url.password().is_some() {
        return Target::Elsewhere;
    }
    // The parsed host: lower-cased, IPv4 in dotted form, IPv6 in brackets.
    let host = url.host_str().unwrap_or("");
    if host == "localhost" {
        return Target::Loopback;
    }
    let literal = host.strip_prefix('[').and_then(|h| h.strip_suffix(']')).unwrap_or(host);
    match literal.parse::<std::net::IpAddr>() {
        Ok(ip) if ip.is_loopback() => Target::Loopback,
        Ok(std::net::IpAddr::V4(v4)) if v4.is_private() => Target::Private,
        Ok(std::net::IpAddr::V6(v6)) if matches!(v6.octets(), [0xfd, ..]) => Target::Private,
        _ => Target::Elsewhere,
    }
}

const PASSWORD: &str = "bench password 0123456789";

struct Sim {
    /// The hot path's own client: sends and sockets are measured raw.
    http: reqwest::Client,
    /// Set-up calls, through the SDK's relay API.
    api: RelayApi,
    base: String,
    token: String,
    user: UserId,
    device: DeviceId,
    identity: Arc<SigningKey>,
    device_key: SigningKey,
    /// Its open WebSocket, for sends over it (see [`Link`]).
    link: Link,
}

/// A device's way to send over its open WebSocket: frames go to the
/// socket's writer; answers come back by request id.
#[derive(Default)]
struct Link {
    /// The writer's queue while the socket is open.
    frames: Mutex<Option<tokio::sync::mpsc::UnboundedSender<Frame>>>,
    /// Sends waiting for their answer: accepted, or the refusal's status.
    waiting: Mutex<HashMap<u64, tokio::sync::oneshot::Sender<Outcome>>>,
    next: AtomicU64,
}

impl Link {
    /// Sends `body` over the socket and waits for the answer; `None` when
    /// no socket is open (send over HTTP instead).
    async fn send(&self, body: &[u8]) -> Option<Outcome> {
        let frames = self.frames.lock().ok()?.clone()?;
        let request = self.next.fetch_add(1, Ordering::Relaxed);
        let frame = SendFrame { request, settings_tag: None, envelope: body }.encode().ok()?;
        let (tx, rx) = tokio::sync::oneshot::channel();
        self.waiting.lock().ok()?.insert(request, tx);
        if frames.send(Frame::Binary(frame.into())).is_err() {
            self.waiting.lock().ok()?.remove(&request);
            return None;
        }
        // A socket that closes first drops the waiting senders: refused;
        // so does a relay that never answers (bounded, so the run ends).
        let answer = tokio::time::timeout(Duration::from_secs(60), rx).await;
        Some(answer.ok().and_then(Result::ok).unwrap_or(Err(None)))
    }

    /// An answer came.
    fn answered(&self, request: u64, outcome: Outcome) {
        if let Some(tx) = self.waiting.lock().ok().and_then(|mut w| w.remove(&request)) {
            let _ = tx.send(outcome);
        }
    }

    /// The socket is gone: nothing more goes through it.
    fn close(&self) {
        if let Ok(mut f) = self.frames.lock() {
            *f = None;
        }
        if let Ok(mut w) = self.waiting.lock() {
            w.clear();
        }
    }
}

/// A send's outcome: accepted, or refused with the relay's status (none
/// when no answer came).
type Outcome = Result<(), Option<u16>>;

fn now_ms() -> u64 {
    std::time::SystemTime::now().duration_since(std::time::UNIX_EPOCH).map(|d| d.as_millis() as u64).unwrap_or(0)
}

/// Logs a new device of `username` in: its session and ids.
async fn login(base: &str, network: NetworkId, username: &str) -> anyhow::Result<(RelayApi, String, UserId, DeviceId)> {
    let device = DeviceId::random(&mut OsRng);
    let mut api = RelayApi::new(base, None);
    let s = api.login(network, username, PASSWORD, device).await?;
    Ok((api, s.token, s.user_id, device))
}

/// A user with `devices` devices: registered, logged in, device list and a
/// medium-term pre-key each (made by the SDK's key rules, kept in memory).
async fn make_user(
    http: &reqwest::Client,
    base: &str,
    network: NetworkId,
    invite: &str,
    name: String,
    devices: usize,
) -> anyhow::Result<Vec<Sim>> {
    let name = name.as_str();
    let reg = Register { invite: invite.into(), username: name.into(), password: PASSWORD.into() };
    let _: Registered = RelayApi::new(base, None).post("/v1/register", &reg).await?;
    let identity = Arc::new(SigningKey::generate(&mut OsRng));
    let mut sims = Vec::new();
    for _ in 0..devices {
        let (api, token, user, device) = login(base, network, name).await?;
        sims.push(Sim {
            http: http.clone(),
            api,
            base: base.into(),
            token,
            user,
            device,
            identity: identity.clone(),
            device_key: SigningKey::generate(&mut OsRng),
            link: Link::default(),
        });
    }
    let first = sims.first().context("no device")?;
    let now = now_ms();
    let entries =
        sims.iter().map(|s| keys::device_entry(s.device, s.device_key.verifying_key(), "bench", now)).collect();
    let list = DeviceList::first(&identity, network, first.user, now, entries).map_err(|e| anyhow::anyhow!("{e}"))?;
    first.api.put_bytes("/v1/keys/device-list", list.encode()).await?;
    for s in &sims {
        let made = keys::new_prekeys(
            &s.device_key,
            (network, s.user, s.device),
            &[PreKeyKind::MediumTerm],
            0,
            now,
            &mut OsRng,
        )
        .map_err(|e| anyhow::anyhow!("{e}"))?;
        let prekeys = made.iter().map(|k| B64(k.signed.encode())).collect();
        s.api.put_json("/v1/keys/prekeys", &UploadPreKeys { prekeys }).await?;
    }
    Ok(sims)
}

/// Every device of the conversation but the sender's, as verified
/// recipients (the SDK's recipient rules; the relay's member list stands in
/// for signed membership, which bench conversations do not have).
async fn recipients(s: &Sim, network: NetworkId, conversation: &str) -> anyhow::Result<Vec<Recipient>> {
    let c: Conversation = s.api.get(&format!("/v1/conversations/{conversation}")).await?;
    let mut lists = Vec::new();
    for m in &c.members {
        let keys: UserKeys = s.api.get(&format!("/v1/keys/{}", m.user_id)).await?;
        let user = m.user_id;
        let list = DeviceList::decode(&keys.device_list.0)?
            .verify(&DeviceListExpectation { network_id: network, user_id: user, pinned_identity: None, seen: None })
            .map_err(|e| anyhow::anyhow!("{e}"))?;
        lists.push((list, Vec::new()));
    }
    let devices = strongroom_client::rules::recipients::targets(&lists, (s.user, s.device));
    let mut out = Vec::new();
    for chunk in devices.chunks(500) {
        let claim = ClaimPreKeys {
            devices: chunk.iter().map(strongroom_client::rules::recipients::device_key).collect(),
            medium_term: vec![],
        };
        let claimed: ClaimedPreKeys = s.api.post("/v1/keys/claim", &claim).await?;
        let raw: Vec<Vec<u8>> = claimed.prekeys.into_iter().map(|k| k.0).collect();
        let verified = strongroom_client::rules::recipients::verify_claimed(chunk, &raw, now_ms())
            .map_err(|e| anyhow::anyhow!("{e}"))?;
        out.extend(verified.iter().map(Recipient::from));
    }
    Ok(out)
}

#[derive(Default)]
struct Stats {
    /// WebSockets the server accepted (its 101 answer came back).
    connected: AtomicU64,
    /// Pushes that came to the same device a second time (a group's message
    /// reaches every member's device once each; each receiver keeps what it
    /// has seen itself, so no lock or one big set's growth is shared).
    duplicates: AtomicU64,
    /// Ack frames the devices sent.
    ack_frames: AtomicU64,
    accepted: AtomicU64,
    refused: AtomicU64,
    /// Of those, refused by the relay's sends-per-second limit (429).
    rate_limited: AtomicU64,
    /// Sends that went over the sender's socket (the rest over HTTP).
    over_socket: AtomicU64,
    delivered: AtomicU64,
    latencies_us: Mutex<Vec<u64>>,
    sent_at: Mutex<HashMap<MessageId, Sent>>,
}

/// When a message was sent, and when its first and last copies came (µs
/// after): a group's or a room's fan-out, apart from the relay's commit.
struct Sent {
    at: Instant,
    first_us: u64,
    last_us: u64,
    copies: usize,
    /// Devices it was sealed for.
    expected: usize,
}

/// Most latency samples room is made for before the clock starts (128 MiB).
const LATENCIES_RESERVED: u64 = 1 << 24;

/// Holds a WebSocket for a device: counts pushes, records latency, acknowledges.
/// With `source`, the socket comes from that loopback address (127.0.0.N),
/// past the ~28k ephemeral ports one address pair has.
async fn receive(
    s: &Sim,
    stats: Arc<Stats>,
    stop: Arc<AtomicBool>,
    source: Option<std::net::Ipv4Addr>,
    (sends, pushes, acks): (Sends, Pushes, Acks),
) -> anyhow::Result<()> {
    let url = pushes.url(&s.base);
    let mut req = url.clone().into_client_request()?;
    req.headers_mut().insert("Authorization", format!("Bearer {}", s.token).parse()?);
    let ws = match source {
        None => {
            tokio_tungstenite::connect_async_with_config(req, Some(strongroom_client::socket_config()), true).await?.0
        }
        Some(ip) => {
            let host = req.uri().host().context("no host")?.to_owned();
            let port = req.uri().port_u16().unwrap_or(80);
            let to = tokio::net::lookup_host((host.as_str(), port)).await?.next().context("no address")?;
            let socket = tokio::net::TcpSocket::new_v4()?;
            socket.bind(std::net::SocketAddr::from((ip, 0)))?;
            let stream = socket.connect(to).await?;
            let stream = tokio_tungstenite::MaybeTlsStream::Plain(stream);
            tokio_tungstenite::client_async_with_config(req, stream, Some(strongroom_client::socket_config())).await?.0
        }
    };
    // Counted only now: the server answered the upgrade.
    stats.connected.fetch_add(1, Ordering::Relaxed);
    // One writer: acks and the device's sends share the socket's writes
    // (frames waiting together go out in one).
    let (mut sink, mut ws) = ws.split();
    let (frames, mut queue) = tokio::sync::mpsc::unbounded_channel::<Frame>();
    let writer = tokio::spawn(async move {
        while let Some(f) = queue.recv().await {
            sink.feed(f).await?;
            while let Ok(f) = queue.try_recv() {
                sink.feed(f).await?;
            }
            sink.flush().await?;
        }
        sink.close().await
    });
    if sends == Sends::Websocket {
        if let Ok(mut f) = s.link.frames.lock() {
            *f = Some(frames.clone());
        }
    }
    // However this ends, sends waiting on the socket are answered (refused).
    let _closing = Closing(&s.link);
    let mut seen: std::collections::HashSet<MessageId> = std::collections::HashSet::new();
    let mut pending = Vec::new();
    let mut batch = acks.batch();
    let timed = acks == Acks::Timed;
    let mut tick = Instant::now() + ACK_TICK.mul_f64(f64::from(OsRng.next_u32()) / f64::from(u32::MAX));
    // Batched (and each): when the first id waiting must be acknowledged.
    let mut ack_by: Option<Instant> = None;
    while !stop.load(Ordering::Relaxed) {
        let wait = match (timed, ack_by) {
            (true, _) => tick.saturating_duration_since(Instant::now()),
            (false, Some(by)) if !acks.when_quiet() => by.saturating_duration_since(Instant::now()),
            _ => ACK_DELAY,
        };
        let next = tokio::time::timeout(wait, ws.next()).await;
        let idle = next.is_err();
        let frame = match next {
            Ok(Some(Ok(frame))) => Some(frame),
            Ok(_) => break,
            Err(_) => None,
        };
        if let Some(Frame::Text(t)) = &frame {
            match serde_json::from_str::<WsFrame>(t) {
                Ok(WsFrame::Sent { request, .. }) => s.link.answered(request, Ok(())),
                Ok(WsFrame::SendFailed { request, status, .. }) => s.link.answered(request, Err(Some(status))),
                _ => {}
            }
        }
        if let Some(id) = frame.as_ref().and_then(pushed_id) {
            let fresh = seen.insert(id);
            if !fresh {
                stats.duplicates.fetch_add(1, Ordering::Relaxed);
            }
            stats.delivered.fetch_add(u64::from(fresh), Ordering::Relaxed);
            let took = stats.sent_at.lock().ok().and_then(|mut m| {
                let sent = m.get_mut(&id)?;
                let us = u64::try_from(sent.at.elapsed().as_micros()).unwrap_or(u64::MAX);
                // A copy pushed again is not part of the fan-out.
                if fresh {
                    sent.first_us = if sent.copies == 0 { us } else { sent.first_us.min(us) };
                    sent.last_us = sent.last_us.max(us);
                    sent.copies += 1;
                }
                Some(us)
            });
            if let (Some(us), Ok(mut l)) = (took, stats.latencies_us.lock()) {
                l.push(us);
            }
            if pending.is_empty() {
                ack_by = Some(Instant::now() + ACK_DELAY);
            }
            pending.push(id);
        }
        // Timed: the tick has come (whether or not a frame came with it).
        let due = timed && Instant::now() >= tick;
        if due {
            while tick <= Instant::now() {
                tick += ACK_TICK;
            }
        }
        let late = match acks {
            Acks::Timed => due,
            _ if acks.when_quiet() => idle,
            _ => ack_by.is_some_and(|by| Instant::now() >= by),
        };
        if pending.len() >= batch || (!pending.is_empty() && late) {
            batch = acks.batch();
            ack_by = None;
            let ack = serde_json::to_string(&WsFrame::Ack { message_ids: std::mem::take(&mut pending) })?;
            frames.send(Frame::Text(ack.into()))?;
            stats.ack_frames.fetch_add(1, Ordering::Relaxed);
        }
    }
    // What was received is acknowledged before the socket goes.
    if !pending.is_empty() {
        let ack = serde_json::to_string(&WsFrame::Ack { message_ids: std::mem::take(&mut pending) })?;
        frames.send(Frame::Text(ack.into()))?;
        stats.ack_frames.fetch_add(1, Ordering::Relaxed);
    }
    s.link.close();
    drop(frames);
    let _ = writer.await;
    Ok(())
}

struct Closing<'a>(&'a Link);

impl Drop for Closing<'_> {
    fn drop(&mut self) {
        self.0.close();
    }
}

/// Connects `s` again and counts what the relay pushes within `wait`
/// (acknowledging nothing): what it would send a client twice.
async fn pushed_again(s: &Sim, wait: Duration, pushes: Pushes) -> anyhow::Result<u64> {
    let url = pushes.url(&s.base);
    let mut req = url.into_client_request()?;
    req.headers_mut().insert("Authorization", format!("Bearer {}", s.token).parse()?);
    let (mut ws, _) =
        tokio_tungstenite::connect_async_with_config(req, Some(strongroom_client::socket_config()), true).await?;
    let mut n = 0;
    let until = Instant::now() + wait;
    while let Ok(Some(Ok(frame))) =
        tokio::time::timeout(until.saturating_duration_since(Instant::now()), ws.next()).await
    {
        n += u64::from(pushed_id(&frame).is_some());
    }
    Ok(n)
}

/// A sealed envelope: (message id, encoded).
type Sealed = (MessageId, Vec<u8>);

/// One sending loop's setting.
struct Loop {
    network: NetworkId,
    conversation: ConversationId,
    recips: Arc<Vec<Recipient>>,
    text: String,
    /// Envelopes sealed in advance (--count), sent in order, then stop.
    sealed: Option<Vec<Sealed>>,
    stats: Arc<Stats>,
    stop: Arc<AtomicBool>,
    /// Fixed rate: one send per `pace`, starting `phase` into the first period
    /// (spread, so fixed-rate loops do not all fire together).
    pace: Option<(Duration, Duration)>,
}

async fn send_loop(s: Arc<Sim>, l: Loop) {
    let Loop { network, conversation, recips, text, sealed, stats, stop, pace } = l;
    let mut sealed = sealed.map(Vec::into_iter);
    let mut tick = match pace {
        Some((period, phase)) => {
            tokio::time::sleep(phase).await;
            let mut t = tokio::time::interval(period);
            t.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
            Some(t)
        }
        None => None,
    };
    while !stop.load(Ordering::Relaxed) {
        if let Some(t) = tick.as_mut() {
            t.tick().await;
        }
        let (id, body) = match sealed.as_mut() {
            Some(next) => match next.next() {
                Some(e) => e,
                None => break,
            },
            None => match seal_one(&s, network, conversation, &text, &recips) {
                Some(e) => e,
                None => break,
            },
        };
        if let Ok(mut m) = stats.sent_at.lock() {
            m.insert(id, Sent { at: Instant::now(), first_us: 0, last_us: 0, copies: 0, expected: recips.len() });
        }
        let outcome = match s.link.send(&body).await {
            Some(outcome) => {
                stats.over_socket.fetch_add(1, Ordering::Relaxed);
                outcome
            }
            None => {
                let r = s.http.post(format!("{}/v1/messages", s.base)).bearer_auth(&s.token).body(body).send().await;
                match r {
                    Ok(r) if r.status().is_success() => Ok(()),
                    Ok(r) => Err(Some(r.status().as_u16())),
                    Err(_) => Err(None),
                }
            }
        };
        match outcome {
            Ok(()) => stats.accepted.fetch_add(1, Ordering::Relaxed),
            Err(status) => {
                if status == Some(429) {
                    stats.rate_limited.fetch_add(1, Ordering::Relaxed);
                }
                stats.refused.fetch_add(1, Ordering::Relaxed)
            }
        };
    }
}

/// A fresh envelope from `s` to `recips`: (message id, encoded).
fn seal_one(
    s: &Sim,
    network: NetworkId,
    conversation: ConversationId,
    text: &str,
    recips: &[Recipient],
) -> Option<Sealed> {
    let sender = Sender {
        network_id: network,
        user_id: s.user,
        identity_key: s.identity.verifying_key(),
        device_id: s.device,
        signing_key: &s.device_key,
    };
    let now = now_ms();
    let meta = MessageMeta {
        host_network_id: network,
        conversation_id: conversation,
        message_id: MessageId::ordered(&mut OsRng, now),
        timestamp: now,
        ttl_secs: 0,
        burn_on_read_secs: 0,
        membership: Default::default(),
    };
    let env = seal(&sender, &meta, &Content::Text(text.to_owned()), recips, &mut OsRng).ok()?;
    Some((meta.message_id, env.encode()))
}

/// CPU time (user + system) a process has used so far, in seconds.
fn cpu_seconds(pid: u32) -> Option<f64> {
    let stat = std::fs::read_to_string(format!("/proc/{pid}/stat")).ok()?;
    // Fields after the parenthesised command name; utime and stime are the 12th and 13th.
    let rest = stat.rsplit_once(')')?.1;
    let f: Vec<&str> = rest.split_whitespace().collect();
    let ticks: f64 = f.get(11)?.parse::<f64>().ok()? + f.get(12)?.parse::<f64>().ok()?;
    Some(ticks / 100.0)
}

/// "server 123: RSS 80 MiB, CPU 9.8 s" per process, then CPU per delivery.
fn server_lines(pids: &[u32], rss: &[Option<u64>], cpu: &[Option<f64>], per_delivery_us: Option<f64>) -> String {
    let mut out = String::new();
    for ((pid, rss), cpu) in pids.iter().zip(rss).zip(cpu) {
        out.push_str(&format!("\n  server {pid}:"));
        if let Some(k) = rss {
            out.push_str(&format!(" RSS {:.0} MiB", *k as f64 / 1024.0));
        }
        if let Some(c) = cpu {
            out.push_str(&format!(", CPU {c:.1} s while measured"));
        }
    }
    if let Some(us) = per_delivery_us {
        out.push_str(&format!("\n  server CPU per delivered envelope: {us:.0} µs"));
    }
    out
}

/// Of messages that reached every device they were sealed for, when more
/// than one: when their first copy came (the relay's commit and one push)
/// and how long after it the last (pushing to the rest, and the generator
/// reading them), in ms. Messages still arriving when the run stopped are
/// counted apart, not in the spread.
struct FanOut {
    messages: usize,
    incomplete: usize,
    first: (f64, f64),
    spread: (f64, f64),
}

impl FanOut {
    fn of(stats: &Stats) -> Option<Self> {
        let m = stats.sent_at.lock().ok()?;
        let fanned = || m.values().filter(|s| s.expected > 1 && s.copies > 0);
        let incomplete = fanned().filter(|s| s.copies < s.expected).count();
        let (mut first, mut spread): (Vec<u64>, Vec<u64>) = fanned()
            .filter(|s| s.copies >= s.expected)
            .map(|s| (s.first_us, s.last_us.saturating_sub(s.first_us)))
            .unzip();
        if first.is_empty() {
            return None;
        }
        first.sort_unstable();
        spread.sort_unstable();
        let p = |v: &[u64]| (percentile(v, 0.50), percentile(v, 0.99));
        Some(FanOut { messages: first.len(), incomplete, first: p(&first), spread: p(&spread) })
    }

    fn json(&self) -> serde_json::Value {
        serde_json::json!({
            "messages": self.messages,
            "incomplete": self.incomplete,
            "first_ms": {"p50": self.first.0, "p99": self.first.1},
            "spread_ms": {"p50": self.spread.0, "p99": self.spread.1},
        })
    }
}

fn percentile(sorted: &[u64], p: f64) -> f64 {
    if sorted.is_empty() {
        return 0.0;
    }
    let i = ((sorted.len() as f64 - 1.0) * p).round() as usize;
    sorted.get(i).copied().unwrap_or(0) as f64 / 1000.0
}

/// CPU seconds the whole machine spent (all cores, not idle), from /proc/stat.
fn machine_cpu_seconds() -> Option<f64> {
    let stat = std::fs::read_to_string("/proc/stat").ok()?;
    let cpu = stat.lines().next()?.strip_prefix("cpu ")?;
    let f: Vec<f64> = cpu.split_whitespace().filter_map(|x| x.parse().ok()).collect();
    // user nice system idle iowait irq softirq steal: busy = all but idle and iowait.
    let busy = f.iter().take(8).enumerate().filter(|(i, _)| *i != 3 && *i != 4).map(|(_, v)| v).sum::<f64>();
    Some(busy / 100.0)
}

/// This process's open-files limit (what caps the sockets it can hold).
fn open_files_limit() -> Option<u64> {
    let limits = std::fs::read_to_string("/proc/self/limits").ok()?;
    limits.lines().find(|l| l.starts_with("Max open files"))?.split_whitespace().nth(3)?.parse().ok()
}

/// Median latency of 20 small fsyncs in `dir` (ms): what durable writes cost there.
fn fsync_latency_ms(dir: &std::path::Path) -> Option<f64> {
    use std::io::Write;
    let path = dir.join(".bench-fsync-probe");
    let mut times = Vec::new();
    for _ in 0..20 {
        let t = Instant::now();
        let mut f = std::fs::File::create(&path).ok()?;
        f.write_all(&[0u8; 4096]).ok()?;
        f.sync_all().ok()?;
        times.push(t.elapsed().as_secs_f64() * 1000.0);
    }
    let _ = std::fs::remove_file(&path);
    times.sort_by(|a, b| a.total_cmp(b));
    times.get(times.len() / 2).copied()
}

/// Server RSS the sockets added, per confirmed socket, summed over the
/// servers: none without a reading or a socket.
fn per_socket_kib(before: &[Option<u64>], after: &[Option<u64>], sockets: u64) -> Option<f64> {
    if sockets == 0 || before.is_empty() || before.len() != after.len() {
        return None;
    }
    let mut added = 0i64;
    for (b, a) in before.iter().zip(after) {
        added += i64::try_from((*a)?).ok()? - i64::try_from((*b)?).ok()?;
    }
    Some(added as f64 / sockets as f64)
}

fn rss_kib(pid: u32) -> Option<u64> {
    let status = std::fs::read_to_string(format!("/proc/{pid}/status")).ok()?;
    status.lines().find(|l| l.starts_with("VmRSS:"))?.split_whitespace().nth(1)?.parse().ok()
}

pub async fn run(a: BenchArgs) -> anyhow::Result<()> {
    if a.scenario == Scenario::Backlog && a.count.is_none() {
        bail!("--scenario backlog needs --count (the messages queued while the receivers are offline)");
    }
    let nodes: Vec<String> = a.server.split(',').map(|u| u.trim().trim_end_matches('/').to_owned()).collect();
    let base = nodes.first().cloned().context("--server")?;
    // A load generator is not a tool to point at other people's servers.
    for n in &nodes {
        match target(n) {
            Target::Loopback => {}
            Target::Private if a.private_host => {
                if a.source_addrs > 1 {
                    bail!("--source-addrs spreads sockets over loopback addresses; it works only against a loopback server, not {n}");
                }
            }
            Target::Private => bail!(
                "the load generator runs against loopback servers (127.0.0.1, localhost, ::1); {n} is a private address: add --private-host if it is a host of your own"
            ),
            Target::Elsewhere => bail!(
                "the load generator only runs against loopback servers (127.0.0.1, localhost, ::1) or, with --private-host, private addresses (10/8, 172.16/12, 192.168/16, fd00::/8), given as http(s)://address[:port] with no user name; not {n}"
            ),
        }
    }
    if a.duration == 0 || a.duration > 600 || a.clients > 20_000 || a.devices > 1000 || a.concurrency > 64 {
        bail!("bounds: --duration 1..=600 s, --clients up to 20000, --devices up to 1000, --concurrency up to 64");
    }
    if a.yardstick > 60 {
        bail!("bounds: --yardstick 0..=60 s (each of its two kinds of request)");
    }
    // Sealed envelopes are held in memory: about 2 KiB plus 100 bytes per recipient each.
    let per_message = 2048 + 100 * (a.clients * a.devices) as u64;
    if a.count.is_some_and(|c| c == 0 || c > 1_000_000 || c.saturating_mul(per_message) > 4 << 30) {
        bail!("bounds: --count 1..=1000000, and at most about 4 GiB of sealed envelopes (fewer with many recipients)");
    }
    // --rate: what the run can send is sealed before the clock starts too.
    // Sealing inline took the generator's core for a whole room message at
    // a time (a thousand key wraps), and its sockets' pushes waited: the
    // latency measured was the generator's own.
    let rate = a.rate.filter(|r| *r > 0.0);
    if let Some(r) = rate {
        let ahead = (r * a.duration as f64).ceil();
        if !ahead.is_finite() || ahead > 1e6 || (ahead as u64).saturating_mul(per_message) > 4 << 30 {
            bail!(
                "bounds: --rate × --duration envelopes are sealed before the clock starts: at most 1000000, and about 4 GiB (fewer with many recipients)"
            );
        }
    }
    let secret = match (&a.bootstrap_secret, &a.data_dir) {
        (Some(s), _) => s.trim().to_owned(),
        (None, Some(d)) => std::fs::read_to_string(d.join("bootstrap-secret"))
            .context("cannot read the bootstrap secret (--data-dir)")?
            .trim()
            .to_owned(),
        (None, None) => bail!("the bench creates its own network: pass --data-dir or --bootstrap-secret"),
    };
    // No redirects: a host of one's own must not send the load elsewhere.
    let http =
        reqwest::Client::builder().pool_max_idle_per_host(256).redirect(reqwest::redirect::Policy::none()).build()?;
    let network = NetworkId::random(&mut OsRng);
    let key = SigningKey::generate(&mut OsRng);
    let policy = NetworkPolicy::sign(&key, network, 1, now_ms(), vec![]).map_err(|e| anyhow::anyhow!("{e}"))?;
    let create = CreateNetwork {
        name: "bench".into(),
        network_id: network,
        network_public: B64(key.verifying_key().as_bytes().to_vec()),
        policy: B64(policy.encode()),
    };
    let bootstrap = format!("Bootstrap {secret}");
    let admin_invite: InviteCreated =
        RelayApi::new(&base, None).post_with("/v1/admin/networks", &create, ("Authorization", &bootstrap)).await?;
    let admin = make_user(&http, &base, network, &admin_invite.invite, "bench-admin".into(), 1)
        .await?
        .pop()
        .context("admin")?;

    // Idle: many sockets over a few devices (a device may hold several), so
    // set-up is not a password hash per connection.
    let users = if a.scenario == Scenario::Idle { a.clients.clamp(2, 20) } else { a.clients.max(2) };
    let labels: Vec<String> = (0..users).map(|i| format!("u{i}")).collect();
    let mut invites: Vec<String> = Vec::new();
    for chunk in labels.chunks(1000) {
        let list: Vec<serde_json::Value> =
            admin.api.post("/v1/admin/invites", &serde_json::json!({"labels": chunk})).await?;
        invites.extend(list.iter().filter_map(|i| i["invite"].as_str().map(str::to_owned)));
    }
    let devices = if a.scenario == Scenario::Room { a.devices.max(1) } else { 1 };
    let setup = Instant::now();
    let made: Vec<anyhow::Result<Vec<Sim>>> = futures_util::stream::iter(invites.iter().enumerate())
        .map(|(i, inv)| {
            let node = nodes.get(i % nodes.len()).cloned().unwrap_or_default();
            let http = http.clone();
            async move { make_user(&http, &node, network, inv, format!("u{i}"), devices).await }
        })
        .buffer_unordered(16)
        .collect()
        .await;
    let sims: Vec<Vec<Sim>> = made.into_iter().collect::<anyhow::Result<_>>()?;
    eprintln!(
        "set up {} users / {} devices in {:.1} s",
        sims.len(),
        sims.len() * devices,
        setup.elapsed().as_secs_f64()
    );

    let stats = Arc::new(Stats::default());
    let stop = Arc::new(AtomicBool::new(false));
    // Sockets close only after the senders stopped: sends waiting on a
    // socket for their answers are answered, not cut off.
    let hang_up = Arc::new(AtomicBool::new(false));
    let all: Vec<Arc<Sim>> = sims.into_iter().flatten().map(Arc::new).collect();
    let mut tasks = Vec::new();
    let backlog = a.scenario == Scenario::Backlog;
    // Backlog: the receivers (the second of each pair) connect only later.
    let late: Vec<Arc<Sim>> = if backlog { all.iter().skip(1).step_by(2).cloned().collect() } else { Vec::new() };
    let sockets = match a.scenario {
        Scenario::Idle => a.clients,
        Scenario::Backlog => 0,
        _ => all.len(),
    };
    let failures = Arc::new(AtomicU64::new(0));
    let sources = a.source_addrs.max(1);
    // After the logins (their Argon2 work areas stay), before any socket:
    // what the sockets add is measured from here.
    let rss_before_sockets: Vec<Option<u64>> = a.server_pid.iter().map(|p| rss_kib(*p)).collect();
    // The i-th socket's task (from 127.0.0.(1 + i mod sources)).
    let modes = (a.sends, a.pushes, a.acks);
    let spawn_receiver = |i: usize, s: &Arc<Sim>| {
        let (s, stats, stop, failures) = (s.clone(), stats.clone(), hang_up.clone(), failures.clone());
        let source = (sources > 1).then(|| std::net::Ipv4Addr::new(127, 0, 0, 1 + (i % sources as usize) as u8));
        tokio::spawn(async move {
            if let Err(e) = receive(&s, stats, stop, source, modes).await {
                if failures.fetch_add(1, Ordering::Relaxed) < 3 {
                    eprintln!("receiver: {e}");
                }
            }
        })
    };
    for (i, s) in all.iter().cycle().take(sockets).enumerate() {
        tasks.push(spawn_receiver(i, s));
        if i % 500 == 499 {
            tokio::time::sleep(Duration::from_millis(50)).await;
        }
    }
    // Every socket answered (or failed) before anything is measured; bounded.
    let settle = Instant::now() + Duration::from_secs(60);
    while Instant::now() < settle
        && stats.connected.load(Ordering::Relaxed) + failures.load(Ordering::Relaxed) < sockets as u64
    {
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    tokio::time::sleep(Duration::from_millis(200)).await;
    let text = "x".repeat(a.size);
    // (sender, conversation)
    let mut plan: Vec<(Arc<Sim>, ConversationId)> = Vec::new();
    let first_devices: Vec<Arc<Sim>> = all.iter().step_by(devices).cloned().collect();
    match a.scenario {
        Scenario::Pairs | Scenario::Backlog => {
            for pair in first_devices.chunks(2) {
                let [x, y] = pair else { continue };
                let c: Conversation = x
                    .api
                    .post(
                        "/v1/conversations",
                        &CreateConversation { kind: ConversationKind::Direct, members: vec![y.user] },
                    )
                    .await?;
                let id = c.id;
                plan.push((x.clone(), id));
                if !backlog {
                    plan.push((y.clone(), id));
                }
            }
        }
        Scenario::Group | Scenario::Room => {
            let owner = first_devices.first().context("users")?;
            let members = first_devices.iter().skip(1).map(|s| s.user).collect();
            let kind = if a.scenario == Scenario::Group { ConversationKind::Group } else { ConversationKind::Room };
            let c: Conversation = owner.api.post("/v1/conversations", &CreateConversation { kind, members }).await?;
            let id = c.id;
            if a.scenario == Scenario::Group {
                plan.extend(first_devices.iter().map(|s| (s.clone(), id)));
            } else {
                plan.push((owner.clone(), id));
            }
        }
        Scenario::Idle => {}
    }
    // Recipients first (one claim per sender), then everyone starts at once.
    let mut prepared = Vec::new();
    for (s, conv) in &plan {
        prepared.push((s.clone(), *conv, Arc::new(recipients(s, network, &conv.to_string()).await?)));
    }
    let loops = prepared.len() * a.concurrency;
    let pace = rate.map(|r| Duration::from_secs_f64(loops as f64 / r));
    // --count, or --rate: each loop's share, sealed now (on the blocking
    // pool, in parallel). A paced loop ticks at most duration / pace + 1 times.
    let ahead = match (a.count, pace) {
        (Some(count), _) => Some(count),
        (None, Some(p)) => Some(loops as u64 * ((a.duration as f64 / p.as_secs_f64()).floor() as u64 + 1)),
        (None, None) => None,
    };
    let mut shares: Vec<Option<Vec<Sealed>>> = vec![None; loops];
    let mut expected = 0u64;
    if let Some(count) = ahead {
        let sealing = Instant::now();
        let mut jobs = Vec::new();
        for (k, (s, conv, recips)) in prepared.iter().flat_map(|p| std::iter::repeat_n(p, a.concurrency)).enumerate() {
            let n = count / loops as u64 + u64::from((k as u64) < count % loops as u64);
            expected += n * recips.len() as u64;
            let (s, conv, recips, text) = (s.clone(), *conv, recips.clone(), text.clone());
            jobs.push(tokio::task::spawn_blocking(move || {
                (0..n).filter_map(|_| seal_one(&s, network, conv, &text, &recips)).collect::<Vec<_>>()
            }));
        }
        for (k, j) in jobs.into_iter().enumerate() {
            if let Some(slot) = shares.get_mut(k) {
                *slot = Some(j.await?);
            }
        }
        eprintln!("sealed {count} envelopes in {:.1} s (before the clock starts)", sealing.elapsed().as_secs_f64());
        // Grown now, not while receivers wait on the lock: a doubling of
        // millions of entries stalled every receiver behind it.
        if let Ok(mut l) = stats.latencies_us.lock() {
            l.reserve(usize::try_from(expected.min(LATENCIES_RESERVED)).unwrap_or(0));
        }
        if let Ok(mut m) = stats.sent_at.lock() {
            m.reserve(usize::try_from(count).unwrap_or(0));
        }
    }
    let cpu_before: Vec<Option<f64>> = a.server_pid.iter().map(|p| cpu_seconds(*p)).collect();
    let own_before = cpu_seconds(std::process::id());
    let machine_before = machine_cpu_seconds();
    let started = Instant::now();
    let mut senders = Vec::new();
    let mut shares = shares.into_iter();
    for (s, conv, recips) in prepared {
        for _ in 0..a.concurrency {
            let phase = pace.map(|p| (p, p.mul_f64(senders.len() as f64 / loops.max(1) as f64)));
            let l = Loop {
                network,
                conversation: conv,
                recips: recips.clone(),
                text: text.clone(),
                sealed: shares.next().flatten(),
                stats: stats.clone(),
                stop: stop.clone(),
                pace: phase,
            };
            senders.push(tokio::spawn(send_loop(s.clone(), l)));
        }
    }
    let deadline = started + Duration::from_secs(a.duration);
    // Backlog: every message queued first; the clock restarts when the
    // receivers connect to drain it.
    let (mut started, mut cpu_before, mut own_before, mut machine_before) =
        (started, cpu_before, own_before, machine_before);
    let mut queued_in = None;
    if backlog {
        while Instant::now() < deadline && senders.iter().any(|s| !s.is_finished()) {
            tokio::time::sleep(Duration::from_millis(5)).await;
        }
        queued_in = Some(started.elapsed().as_secs_f64());
        eprintln!(
            "queued {} messages for offline receivers in {:.1} s",
            stats.accepted.load(Ordering::Relaxed),
            started.elapsed().as_secs_f64()
        );
        cpu_before = a.server_pid.iter().map(|p| cpu_seconds(*p)).collect();
        own_before = cpu_seconds(std::process::id());
        machine_before = machine_cpu_seconds();
        // Latency here would be time spent queued: the drain rate is the figure.
        if let Ok(mut m) = stats.sent_at.lock() {
            m.clear();
        }
        started = Instant::now();
        for (i, s) in late.iter().enumerate() {
            tasks.push(spawn_receiver(i, s));
        }
    }
    let deadline = if backlog { started + Duration::from_secs(a.duration) } else { deadline };
    if a.count.is_some() {
        // Until every copy is delivered (or the time is up).
        while Instant::now() < deadline
            && (stats.delivered.load(Ordering::Relaxed) < expected || senders.iter().any(|s| !s.is_finished()))
        {
            tokio::time::sleep(Duration::from_millis(2)).await;
        }
    } else {
        tokio::time::sleep_until(deadline.into()).await;
    }
    let elapsed = started.elapsed().as_secs_f64();
    let (accepted, delivered) = (stats.accepted.load(Ordering::Relaxed), stats.delivered.load(Ordering::Relaxed));
    let rss: Vec<Option<u64>> = a.server_pid.iter().map(|p| rss_kib(*p)).collect();
    let cpu: Vec<Option<f64>> =
        a.server_pid.iter().zip(&cpu_before).map(|(p, b)| Some(cpu_seconds(*p)? - (*b)?)).collect();
    let own_cpu = cpu_seconds(std::process::id()).zip(own_before).map(|(a, b)| a - b);
    // Everything else the machine did meanwhile: a busy neighbour skews the figures.
    let others_cpu = machine_cpu_seconds()
        .zip(machine_before)
        .map(|(a, b)| a - b)
        .map(|total| (total - own_cpu.unwrap_or(0.0) - cpu.iter().flatten().sum::<f64>()).max(0.0));
    stop.store(true, Ordering::Relaxed);
    for s in senders {
        let _ = s.await;
    }
    hang_up.store(true, Ordering::Relaxed);
    for t in tasks {
        let _ = t.await;
    }
    // Backlog: whatever the relay pushes again to a receiver reconnecting now.
    let mut again = None;
    if backlog {
        let mut n = 0;
        for s in &late {
            n += pushed_again(s, Duration::from_millis(1500), a.pushes).await.unwrap_or(0);
        }
        again = Some(n);
    }
    let mut lat = stats.latencies_us.lock().map(|l| l.clone()).unwrap_or_default();
    lat.sort_unstable();
    let fan_out = FanOut::of(&stats);
    let cpu_total: Option<f64> = cpu.iter().copied().sum();
    let cpu_per_delivery_us = cpu_total.filter(|_| delivered > 0).map(|c| c * 1e6 / delivered as f64);
    let connected = stats.connected.load(Ordering::Relaxed);
    let per_socket_kib = per_socket_kib(&rss_before_sockets, &rss, connected).filter(|_| a.scenario == Scenario::Idle);
    let fsync_ms = a.data_dir.as_deref().and_then(fsync_latency_ms);
    let open_files = open_files_limit();
    if lat.len() < 10_000 && !matches!(a.scenario, Scenario::Idle | Scenario::Backlog) {
        eprintln!("note: {} latency samples (fewer than 10,000): the high percentiles are rough", lat.len());
    }
    let rate_limited = stats.rate_limited.load(Ordering::Relaxed);
    if rate_limited > 0 {
        eprintln!(
            "note: the relay refused {rate_limited} sends over its sends-per-second limit (429): raise [limits] \
             sends_per_second in the server's config to measure throughput (see docs/PERFORMANCE.md)"
        );
    }
    // The yardstick, once the run's sockets are gone: a static response and
    // a request that reads one row (the network's public key).
    // A yardstick that fails is said, and the run's own result still printed.
    let mut yardstick = None;
    if a.yardstick > 0 {
        let fixed = yardstick::measure(&format!("{base}/admin/static/console.css"), &a.server_pid, a.yardstick).await;
        let query = yardstick::measure(&format!("{base}/v1/networks/{network}"), &a.server_pid, a.yardstick).await;
        match fixed.and_then(|f| Ok((f, query?))) {
            Ok(both) => yardstick = Some(both),
            Err(e) => eprintln!("note: the yardstick was not measured: {e:#}"),
        }
    }
    let in_static =
        yardstick.as_ref().and_then(|(f, _)| f.server_cpu_us_per_request).zip(cpu_per_delivery_us).map(|(f, d)| d / f);
    let mut result = serde_json::json!({
        "scenario": format!("{:?}", a.scenario).to_lowercase(),
        "sends": format!("{:?}", a.sends).to_lowercase(), "pushes": format!("{:?}", a.pushes).to_lowercase(), "acks": format!("{:?}", a.acks).to_lowercase(),
        "sent_over_websocket": stats.over_socket.load(Ordering::Relaxed),
        "users": users, "devices": all.len(), "connections": connected, "connections_asked": sockets, "failed_connections": failures.load(Ordering::Relaxed), "senders": plan.len(), "concurrency": a.concurrency,
        "generator_open_files_limit": open_files, "source_addrs": sources,
        "generator_cpu_seconds": own_cpu, "other_processes_cpu_seconds": others_cpu,
        "data_dir_fsync_ms": fsync_ms, "latency_samples": lat.len(),
        "duplicates": stats.duplicates.load(Ordering::Relaxed), "ack_frames": stats.ack_frames.load(Ordering::Relaxed),
        "queued_seconds": queued_in, "pushed_again_after_reconnect": again,
        "seconds": elapsed,
        "accepted": accepted, "refused": stats.refused.load(Ordering::Relaxed), "delivered": delivered,
        "refused_rate_limited": stats.rate_limited.load(Ordering::Relaxed),
        "rate_target": a.rate,
        "accepted_per_sec": accepted as f64 / elapsed, "delivered_per_sec": delivered as f64 / elapsed,
        "latency_ms": {"p50": percentile(&lat, 0.50), "p99": percentile(&lat, 0.99), "p999": percentile(&lat, 0.999)},
        "fan_out": fan_out.as_ref().map(FanOut::json),
        "count": a.count, "sealed_before_clock": ahead,
        "server_rss_mib": rss.iter().map(|r| r.map(|k| k as f64 / 1024.0)).collect::<Vec<_>>(),
        "server_rss_before_sockets_mib": rss_before_sockets.iter().map(|r| r.map(|k| k as f64 / 1024.0)).collect::<Vec<_>>(),
        "server_rss_per_socket_kib": per_socket_kib,
        "server_cpu_seconds": cpu,
        "server_cpu_us_per_delivery": cpu_per_delivery_us,
    });
    if let (Some((fixed, query)), Some(map)) = (&yardstick, result.as_object_mut()) {
        map.insert("yardstick".into(), serde_json::json!({"static": fixed.json(), "one_query": query.json()}));
        map.insert("delivery_in_static_requests".into(), serde_json::json!(in_static));
    }
    if a.json {
        println!("{result}");
    } else {
        if let Some(k) = per_socket_kib {
            println!("server RSS added per confirmed socket: {k:.2} KiB (since the logins, before the first socket)");
        }
        println!(
            "{} ({} sends, {} pushes, {} acks): {} users / {} devices / {} connections confirmed of {} asked ({} failed), {} senders × {} in flight, {:.1} s\n  accepted {:.0}/s, delivered {:.0}/s (refused {}; {} ack frames)\n  latency p50 {:.1} ms, p99 {:.1} ms, p999 {:.1} ms ({} samples){}\n  generator: CPU {}, open-files limit {}; other processes: CPU {}; data dir fsync {}",
            format!("{:?}", a.scenario).to_lowercase(), format!("{:?}", a.sends).to_lowercase(), format!("{:?}", a.pushes).to_lowercase(), format!("{:?}", a.acks).to_lowercase(), users, all.len(), connected, sockets, failures.load(Ordering::Relaxed), plan.len(), a.concurrency, elapsed,
            accepted as f64 / elapsed, delivered as f64 / elapsed, stats.refused.load(Ordering::Relaxed), stats.ack_frames.load(Ordering::Relaxed),
            percentile(&lat, 0.5), percentile(&lat, 0.99), percentile(&lat, 0.999), lat.len(),
            server_lines(&a.server_pid, &rss, &cpu, cpu_per_delivery_us),
            own_cpu.map(|c| format!("{c:.1} s")).unwrap_or_else(|| "?".into()),
            open_files.map(|n| n.to_string()).unwrap_or_else(|| "?".into()),
            others_cpu.map(|c| format!("{c:.1} s")).unwrap_or_else(|| "?".into()),
            fsync_ms.map(|m| format!("{m:.2} ms median")).unwrap_or_else(|| "not measured (give --data-dir)".into()),
        );
        if let Some(f) = &fan_out {
            println!(
                "  fan-out ({} messages, {} still arriving when the run stopped): first copy p50 {:.1} ms, p99 {:.1} ms; the last came p50 {:.1} ms, p99 {:.1} ms after it",
                f.messages, f.incomplete, f.first.0, f.first.1, f.spread.0, f.spread.1
            );
        }
        if let Some((fixed, query)) = &yardstick {
            let us = |r: &yardstick::Reading| {
                r.server_cpu_us_per_request
                    .map(|u| format!("{u:.0} µs"))
                    .unwrap_or_else(|| "? (give --server-pid)".into())
            };
            println!(
                "  yardstick: server CPU per static response {}, per one-query request {} ({} and {} requests){}",
                us(fixed),
                us(query),
                fixed.requests,
                query.requests,
                in_static.map(|r| format!("; a delivery costs {r:.2} static responses")).unwrap_or_default()
            );
        }
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::{target, Target};

    #[test]
    fn the_generator_points_only_at_loopback_or_private_hosts() {
        for u in
            ["http://127.0.0.1:8080", "http://127.0.0.9", "http://localhost:1", "http://LOCALHOST", "http://[::1]:80/"]
        {
            assert_eq!(target(u), Target::Loopback, "{u}");
        }
        for u in [
            "http://10.23.0.1:18181",
            "https://172.16.0.1",
            "http://172.31.255.255",
            "http://192.168.1.1/",
            "http://[fd00::1]:9",
        ] {
            assert_eq!(target(u), Target::Private, "{u}");
        }
        for u in [
            "http://192.0.2.1:8080",
            "http://8.8.8.8",
            "http://172.32.0.1",
            "http://[fe80::1]",
            "http://[2001:db8::1]",
            "http://example.com",
            "http://10.0.0.1.evil",
            "http://localhost.",
            "http://0.0.0.0",
            // The host is what follows the user name.
            "http://10.0.0.1:80@evil.com",
            "http://127.0.0.1:1@evil.com",
            "http://[fd00::1]@evil.com",
            "http://user@127.0.0.1",
            "ftp://127.0.0.1",
            "127.0.0.1:8080",
            "",
        ] {
            assert_eq!(target(u), Target::Elsewhere, "{u}");
        }
    }
}
