//! Cross-node delivery over NATS: when this process commits a message for a
//! device connected to another process, that process must push it at once.
//! Each process subscribes to `strongroom.dev.<device>` for every device
//! connected to it, and publishes each committed queue row (the delivered
//! form: ciphertext, signed by the sender, exactly what the socket gets) on
//! its device's subject, so NATS routes it only to the process holding that
//! socket, which pushes it without reading the queue. Rows too large for a
//! NATS message, and rows the link cannot take at once, go out as wake-ups
//! (`strongroom.wake`: device ids only) and the socket reads its queue. A lost
//! row or wake-up costs latency, never a message: the row is in the queue,
//! and connections re-read it periodically and whenever the link comes back,
//! so core NATS (at-most-once) is exactly enough.
//!
//! The same link carries "something changed" announcements: each process
//! remembers sessions, members and policies until a write (`store/cache.rs`);
//! a write committed by one process makes the others forget too. A lost
//! announcement is bounded by the cache's two-second entry lifetime, and a
//! link that comes back up forgets everything it may have missed.
//!
//! The link is the maintained `async-nats` client: reconnection with
//! re-subscription, TLS (`tls://` URLs, a private CA, client certificates)
//! and credentials (user and password or token in the URL, or a `.creds` file).

use std::collections::HashMap;
use std::sync::Arc;
use std::time::Duration;

use futures_util::StreamExt;
use tokio::sync::mpsc;

use crate::config::NatsConfig;
use crate::hub::{ClusterLink, Hub, Presence, MAX_ROW_BYTES};
use crate::store::QueuedRow;

const SUBJECT: &str = "strongroom.wake";
const CHANGED: &str = "strongroom.changed";
const DEVICE: &str = "strongroom.dev.";
const DISCONNECT: &str = "strongroom.disconnect";
/// Most device ids in one published wake-up (a 1,000-device room fits).
const MAX_IDS: usize = 4096;
/// Fixed part of a row on the wire: queue id, message id, conversation id,
/// sequence, relay receive time.
const ROW_HEADER: usize = 8 + 16 + 16 + 8 + 8;
const _FITS: () = assert!(MAX_IDS * 16 <= 1024 * 1024 && MAX_ROW_BYTES + ROW_HEADER <= 1024 * 1024);

fn encode_row(row: &QueuedRow) -> Vec<u8> {
    let mut out = Vec::with_capacity(ROW_HEADER + row.envelope.len());
    out.extend_from_slice(&row.queue_id.to_be_bytes());
    out.extend_from_slice(&row.message_id);
    out.extend_from_slice(&row.conversation_id);
    out.extend_from_slice(&row.seq.to_be_bytes());
    out.extend_from_slice(&row.received_at.to_be_bytes());
    out.extend_from_slice(&row.envelope);
    out
}

fn decode_row(b: &[u8]) -> Option<QueuedRow> {
    Some(QueuedRow {
        queue_id: i64::from_be_bytes(b.get(..8)?.try_into().ok()?),
        message_id: b.get(8..24)?.try_into().ok()?,
        conversation_id: b.get(24..40)?.try_into().ok()?,
        seq: u64::from_be_bytes(b.get(40..48)?.try_into().ok()?),
        received_at: u64::from_be_bytes(b.get(48..56)?.try_into().ok()?),
        envelope: b.get(ROW_HEADER..).filter(|e| !e.is_empty())?.to_vec(),
    })
}

fn hex16(id: &[u8; 16]) -> String {
    crate::error::hex(id)
}

/// What arrives from the other processes is applied to.
pub struct Local {
    /// Wakes local connections.
    pub hub: Arc<Hub>,
    /// Forgets what this process remembered from the database.
    pub invalidate: Box<dyn Fn() + Send + Sync>,
}

/// What this process tells the others.
pub struct Outbox {
    wakes: mpsc::Receiver<Vec<[u8; 16]>>,
    rows: mpsc::Receiver<([u8; 16], Arc<QueuedRow>)>,
    presence: mpsc::UnboundedReceiver<Presence>,
    disconnects: mpsc::UnboundedReceiver<[u8; 16]>,
    changes: mpsc::Receiver<()>,
}

/// Connects (waiting for NATS if it is not up yet, in the background) and
/// starts the link; returns the hub's side of it and the sender for the
/// store's change announcements. Fails at once on unusable settings (a bad
/// URL, a missing credentials or certificate file).
pub async fn start(nats: &NatsConfig, local: Local) -> Result<(ClusterLink, mpsc::Sender<()>), String> {
    let local = Arc::new(local);
    let options = options(nats, local.clone()).await?;
    let (outbox, link, changes) = outbox();
    let server = nats.url.host();
    // The first connection is retried in the background like any reconnection.
    let client = options.connect(server.as_str()).await.map_err(|e| format!("NATS at {server}: {e}"))?;
    tokio::spawn(run(client, local, outbox));
    Ok((link, changes))
}

async fn options(nats: &NatsConfig, local: Arc<Local>) -> Result<async_nats::ConnectOptions, String> {
    let mut o = match &nats.credentials {
        Some(path) => async_nats::ConnectOptions::with_credentials_file(path)
            .await
            .map_err(|e| format!("cannot read NATS credentials {}: {e}", path.display()))?,
        None => async_nats::ConnectOptions::new(),
    };
    // async-nats reads no credentials from the URL: pass them (and connect to the bare host).
    match nats.url.credentials() {
        Some((user, Some(password))) => o = o.user_and_password(user, password),
        Some((token, None)) => o = o.token(token),
        None => {}
    }
    if let Some(tls) = tls_config(nats)? {
        o = o.tls_client_config(tls).require_tls(true);
    }
    let server = nats.url.host();
    Ok(o.name("strongroom")
        // Our own wake-ups and changes were already applied locally.
        .no_echo()
        .retry_on_initial_connect()
        .max_reconnects(None)
        .connection_timeout(Duration::from_secs(5))
        .reconnect_delay_callback(|attempts| Duration::from_millis((200u64 << attempts.min(5)).min(5000)))
        .event_callback(move |event| {
            let local = local.clone();
            let server = server.clone();
            async move {
                match event {
                    async_nats::Event::Connected => {
                        // Whatever changed, and every row published, while the link was down never arrived.
                        (local.invalidate)();
                        local.hub.wake_all();
                        tracing::info!(%server, "NATS link up: cross-node delivery on");
                    }
                    async_nats::Event::Disconnected => {
                        tracing::warn!(%server, "NATS link down; cross-node wake-ups wait, connections poll meanwhile");
                    }
                    other => tracing::warn!(%server, event = %other, "NATS"),
                }
            }
        }))
}

/// The TLS settings, when TLS is asked for (a `tls://` URL, a CA or a
/// client certificate): the system's trust roots plus the configured CA, on
/// aws-lc-rs (the process may link rustls with more than one provider, so
/// the link names its own).
fn tls_config(nats: &NatsConfig) -> Result<Option<rustls::ClientConfig>, String> {
    use rustls::pki_types::pem::PemObject;
    use rustls::pki_types::{CertificateDer, PrivateKeyDer};
    let wanted = nats.url.expose().starts_with("tls://") || nats.tls_ca.is_some() || nats.tls_cert.is_some();
    if !wanted {
        return Ok(None);
    }
    let mut roots = rustls::RootCertStore::empty();
    roots.add_parsable_certificates(rustls_native_certs::load_native_certs().certs);
    if let Some(ca) = &nats.tls_ca {
        let bad = |e: &dyn std::fmt::Display| format!("cannot read the NATS CA certificate {}: {e}", ca.display());
        let certs: Vec<CertificateDer<'static>> =
            CertificateDer::pem_file_iter(ca).map_err(|e| bad(&e))?.collect::<Result<_, _>>().map_err(|e| bad(&e))?;
        if certs.is_empty() {
            return Err(bad(&"no certificate in it"));
        }
        for cert in certs {
            roots.add(cert).map_err(|e| bad(&e))?;
        }
    }
    let provider = Arc::new(rustls::crypto::aws_lc_rs::default_provider());
    let builder = rustls::ClientConfig::builder_with_provider(provider)
        .with_safe_default_protocol_versions()
        .map_err(|e| e.to_string())?
        .with_root_certificates(roots);
    let config = match (&nats.tls_cert, &nats.tls_key) {
        (Some(cert), Some(key)) => {
            let chain: Vec<CertificateDer<'static>> = CertificateDer::pem_file_iter(cert)
                .and_then(|i| i.collect::<Result<_, _>>())
                .map_err(|e| format!("cannot read the NATS client certificate {}: {e}", cert.display()))?;
            let key = PrivateKeyDer::from_pem_file(key)
                .map_err(|e| format!("cannot read the NATS client key {}: {e}", key.display()))?;
            builder.with_client_auth_cert(chain, key).map_err(|e| format!("NATS client certificate: {e}"))?
        }
        (None, None) => builder.with_no_client_auth(),
        _ => return Err("give both nats_tls_cert and nats_tls_key, or neither".into()),
    };
    Ok(Some(config))
}

fn outbox() -> (Outbox, ClusterLink, mpsc::Sender<()>) {
    let (wake_tx, wakes) = mpsc::channel(1024);
    let (row_tx, rows) = mpsc::channel(8192);
    let (presence_tx, presence) = mpsc::unbounded_channel();
    let (disconnect_tx, disconnects) = mpsc::unbounded_channel();
    let (change_tx, changes) = mpsc::channel(1);
    let link = ClusterLink { wakes: wake_tx, rows: row_tx, presence: presence_tx, disconnects: disconnect_tx };
    (Outbox { wakes, rows, presence, disconnects, changes }, link, change_tx)
}

/// Applies what a subscription brings until it ends.
fn listen(
    mut sub: async_nats::Subscriber,
    apply: impl Fn(&async_nats::Message) + Send + 'static,
) -> tokio::task::AbortHandle {
    tokio::spawn(async move {
        while let Some(m) = sub.next().await {
            apply(&m);
        }
    })
    .abort_handle()
}

async fn run(client: async_nats::Client, local: Arc<Local>, mut outbox: Outbox) {
    if let Err(e) = link(&client, &local, &mut outbox).await {
        tracing::error!(error = %e, "NATS link stopped; cross-node delivery falls back to polling");
    }
}

async fn link(client: &async_nats::Client, local: &Arc<Local>, outbox: &mut Outbox) -> Result<(), String> {
    let sub = |subject: &'static str| async move { client.subscribe(subject).await.map_err(|e| e.to_string()) };
    let l = local.clone();
    let _changed = Guard(listen(sub(CHANGED).await?, move |_| (l.invalidate)()));
    let l = local.clone();
    let _wakes = Guard(listen(sub(SUBJECT).await?, move |m| {
        for id in m.payload.chunks_exact(16).filter_map(|c| <[u8; 16]>::try_from(c).ok()) {
            l.hub.notify(&id);
        }
    }));
    let l = local.clone();
    let _disconnects = Guard(listen(sub(DISCONNECT).await?, move |m| {
        for id in m.payload.chunks_exact(16).filter_map(|c| <[u8; 16]>::try_from(c).ok()) {
            l.hub.disconnect_here(&id);
        }
    }));
    // Rows for the devices connected here, one subscription each; presence
    // changes queued before this point replay harmlessly against this map.
    let mut devices: HashMap<[u8; 16], Guard> = HashMap::new();
    for d in local.hub.devices() {
        match subscribe_device(client, local, d).await {
            Ok(guard) => {
                devices.insert(d, guard);
            }
            Err(e) => tracing::warn!(error = %e, "NATS subscribe failed; that device reads its queue instead"),
        }
    }
    loop {
        let published = tokio::select! {
            p = outbox.presence.recv() => {
                match p {
                    None => return Ok(()),
                    Some(Presence::Up(d)) => {
                        if let std::collections::hash_map::Entry::Vacant(slot) = devices.entry(d) {
                            // Without its subscription the device still gets
                            // wake-ups and reads its queue: not worth the link.
                            match subscribe_device(client, local, d).await {
                                Ok(guard) => {
                                    slot.insert(guard);
                                }
                                Err(e) => tracing::warn!(error = %e, "NATS subscribe failed; that device reads its queue instead"),
                            }
                        }
                    }
                    Some(Presence::Down(d)) => {
                        devices.remove(&d);
                    }
                }
                Ok(())
            }
            r = outbox.rows.recv() => {
                let Some((device, row)) = r else { return Ok(()) };
                client.publish(format!("{DEVICE}{}", hex16(&device)), encode_row(&row).into()).await
            }
            d = outbox.disconnects.recv() => {
                let Some(d) = d else { return Ok(()) };
                client.publish(DISCONNECT, d.to_vec().into()).await
            }
            c = outbox.changes.recv() => {
                if c.is_none() { return Ok(()) }
                client.publish(CHANGED, Default::default()).await
            }
            ids = outbox.wakes.recv() => {
                let Some(ids) = ids else { return Ok(()) };
                let mut sent = Ok(());
                for chunk in ids.chunks(MAX_IDS) {
                    let payload: Vec<u8> = chunk.iter().flatten().copied().collect();
                    sent = sent.and(client.publish(SUBJECT, payload.into()).await);
                }
                sent
            }
        };
        if let Err(e) = published {
            // The client buffers across reconnections; an error here is a
            // full buffer or a closed client: that item is lost (the queue
            // still has it), the link goes on.
            tracing::warn!(error = %e, "NATS publish failed; connections will read their queues");
        }
    }
}

async fn subscribe_device(client: &async_nats::Client, local: &Arc<Local>, device: [u8; 16]) -> Result<Guard, String> {
    let sub = client.subscribe(format!("{DEVICE}{}", hex16(&device))).await.map_err(|e| e.to_string())?;
    let l = local.clone();
    Ok(Guard(listen(sub, move |m| {
        // A malformed row is dropped: the queue still has the real one.
        if let Some(row) = decode_row(&m.payload) {
            l.hub.deliver_here(&device, &Arc::new(row));
        }
    })))
}

/// Ends a subscription's task (and so the subscription) when dropped.
struct Guard(tokio::task::AbortHandle);

impl Drop for Guard {
    fn drop(&mut self) {
        self.0.abort();
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::sync::atomic::{AtomicUsize, Ordering};

    fn local(hub: Arc<Hub>) -> (Local, Arc<AtomicUsize>) {
        let count = Arc::new(AtomicUsize::new(0));
        let c = count.clone();
        (
            Local {
                hub,
                invalidate: Box::new(move || {
                    c.fetch_add(1, Ordering::SeqCst);
                }),
            },
            count,
        )
    }

    fn row(id: i64) -> QueuedRow {
        QueuedRow {
            queue_id: id,
            message_id: [1; 16],
            conversation_id: [2; 16],
            seq: 3,
            received_at: 5,
            envelope: vec![4; 40],
        }
    }

    fn nats(url: &str) -> NatsConfig {
        NatsConfig {
            url: crate::config::NatsUrl::parse(url).unwrap_or_else(|e| panic!("{e}")),
            credentials: None,
            tls_ca: None,
            tls_cert: None,
            tls_key: None,
        }
    }

    /// The NATS server CI provides; `None` (and a note) where there is none.
    fn test_nats() -> Option<String> {
        let url = std::env::var("STRONGROOM_TEST_NATS_URL").ok();
        if url.is_none() {
            eprintln!("SKIPPED: set STRONGROOM_TEST_NATS_URL=nats://127.0.0.1:4222 to run the NATS link tests");
        }
        url
    }

    async fn next(conn: &mut crate::hub::Conn) -> Option<crate::hub::Push> {
        tokio::time::timeout(Duration::from_secs(5), conn.rx.recv()).await.ok().flatten()
    }

    /// Publishes `row` for `device` from `from` until `conn` receives it (a
    /// subscription reaches the NATS server a moment after it is made; the
    /// relay covers that gap by reading queues, a test by publishing again).
    async fn delivered(from: &Hub, device: [u8; 16], row: QueuedRow, conn: &mut crate::hub::Conn) -> bool {
        for _ in 0..25 {
            from.deliver(&device, &|| row.clone());
            let got = tokio::time::timeout(Duration::from_millis(200), async {
                loop {
                    match conn.rx.recv().await {
                        Some(crate::hub::Push::Row(r)) => return Some((*r).clone()),
                        Some(_) => continue,
                        None => return None,
                    }
                }
            })
            .await;
            match got {
                Ok(Some(r)) if r == row => return true,
                Ok(None) => return false,
                _ => {}
            }
        }
        false
    }

    /// Drains wake-ups (a link coming up wakes everyone) until something else, or nothing.
    async fn next_row(conn: &mut crate::hub::Conn) -> Option<QueuedRow> {
        loop {
            match next(conn).await? {
                crate::hub::Push::Row(r) => return Some((*r).clone()),
                _ => continue,
            }
        }
    }

    /// Two processes' hubs on one NATS server (each link runs while its
    /// change sender, the store's in a server, is held).
    async fn pair(url: &NatsConfig) -> [(Arc<Hub>, Arc<AtomicUsize>, mpsc::Sender<()>); 2] {
        let mut out = Vec::new();
        for _ in 0..2 {
            let hub = Arc::new(Hub::default());
            let (l, invalidated) = local(hub.clone());
            let (link, changes) = start(url, l).await.unwrap_or_else(|e| panic!("{e}"));
            hub.set_cluster(link);
            out.push((hub, invalidated, changes));
        }
        let b = out.pop();
        let a = out.pop();
        match (a, b) {
            (Some(a), Some(b)) => [a, b],
            _ => panic!("two links"),
        }
    }

    #[test]
    fn rows_round_trip_and_malformed_ones_are_refused() {
        assert_eq!(decode_row(&encode_row(&row(5))), Some(row(5)));
        assert_eq!(decode_row(&encode_row(&row(5))[..ROW_HEADER]), None, "no envelope");
        assert_eq!(decode_row(&[0; 10]), None);
    }

    #[tokio::test]
    async fn rows_wakes_changes_and_disconnects_reach_the_other_process() {
        let Some(url) = test_nats() else { return };
        let [(a, _, a_changes), (b, b_invalidated, _b_changes)] = pair(&nats(&url)).await;
        let mut conn = b.register([7; 16], None);
        let mut doomed = b.register([5; 16], None);
        assert!(delivered(&a, [7; 16], row(11), &mut conn).await, "a row committed on A is pushed by B");
        let before = b_invalidated.load(Ordering::SeqCst);
        a_changes.send(()).await.unwrap_or_else(|e| panic!("{e}"));
        let deadline = tokio::time::Instant::now() + Duration::from_secs(5);
        while b_invalidated.load(Ordering::SeqCst) == before && tokio::time::Instant::now() < deadline {
            tokio::time::sleep(Duration::from_millis(20)).await;
        }
        assert!(b_invalidated.load(Ordering::SeqCst) > before, "a change on A makes B forget");
        a.disconnect(&[5; 16]);
        while next(&mut doomed).await.is_some() {}
        assert!(!b.devices().contains(&[5; 16]), "a disconnect on A closes B's socket");
        // A row for a device that left B is not delivered there any more.
        b.unregister([7; 16], &conn);
        tokio::time::sleep(Duration::from_millis(300)).await;
        let mut again = b.register([9; 16], None);
        assert!(delivered(&a, [9; 16], row(12), &mut again).await);
    }

    #[tokio::test]
    async fn unusable_settings_fail_at_start_and_say_why() {
        let cases: Vec<(NatsConfig, &str)> = vec![
            (
                NatsConfig { credentials: Some("/nonexistent/x.creds".into()), ..nats("nats://127.0.0.1:1") },
                "credentials",
            ),
            (NatsConfig { tls_ca: Some("/nonexistent/ca.pem".into()), ..nats("nats://127.0.0.1:1") }, "CA"),
            (NatsConfig { tls_cert: Some("/nonexistent/c.pem".into()), ..nats("nats://127.0.0.1:1") }, "both"),
        ];
        for (config, says) in cases {
            let (l, _) = local(Arc::new(Hub::default()));
            let err = start(&config, l).await.err().unwrap_or_default();
            assert!(err.contains(says), "{err}");
        }
    }

    /// A NATS server of our own with TLS and a password: the link connects
    /// only with the CA and the credentials. Needs `nats-server` and
    /// `openssl`, which CI installs (required when STRONGROOM_TEST_NATS_URL is set).
    #[tokio::test]
    async fn the_link_speaks_tls_with_credentials() {
        let have =
            |b: &str, arg: &str| std::process::Command::new(b).arg(arg).output().is_ok_and(|o| o.status.success());
        if !have("nats-server", "--version") || !have("openssl", "version") {
            assert!(
                std::env::var("STRONGROOM_TEST_NATS_URL").is_err(),
                "nats-server and openssl are needed for the NATS TLS test (apt-get install nats-server openssl)"
            );
            eprintln!("SKIPPED: the NATS TLS test needs nats-server and openssl");
            return;
        }
        let dir = std::env::temp_dir().join(format!("sr-nats-tls-{}", std::process::id()));
        let _ = std::fs::remove_dir_all(&dir);
        std::fs::create_dir_all(&dir).unwrap_or_else(|e| panic!("{e}"));
        let run = |args: &[&str]| {
            let out = std::process::Command::new("openssl").args(args).current_dir(&dir).output();
            assert!(out.as_ref().is_ok_and(|o| o.status.success()), "openssl {args:?}: {out:?}");
        };
        std::fs::write(dir.join("san.ext"), "subjectAltName=IP:127.0.0.1,DNS:localhost\n")
            .unwrap_or_else(|e| panic!("{e}"));
        let ec = ["-newkey", "ec", "-pkeyopt", "ec_paramgen_curve:P-256", "-nodes"];
        run(&[
            &["req", "-x509"][..],
            &ec,
            &["-keyout", "ca.key", "-out", "ca.pem", "-days", "1", "-subj", "/CN=strongroom-test-ca"],
        ]
        .concat());
        run(&[&["req"][..], &ec, &["-keyout", "server.key", "-out", "server.csr", "-subj", "/CN=localhost"]].concat());
        run(&[
            "x509",
            "-req",
            "-in",
            "server.csr",
            "-CA",
            "ca.pem",
            "-CAkey",
            "ca.key",
            "-CAcreateserial",
            "-out",
            "server.pem",
            "-days",
            "1",
            "-extfile",
            "san.ext",
        ]);
        let port =
            std::net::TcpListener::bind("127.0.0.1:0").and_then(|l| l.local_addr()).map(|a| a.port()).unwrap_or(14222);
        let mut server = std::process::Command::new("nats-server")
            .args(["-a", "127.0.0.1", "-p", &port.to_string(), "--user", "strongroom", "--pass", "s3cret-pass"])
            .args(["--tls", "--tlscert", "server.pem", "--tlskey", "server.key"])
            .current_dir(&dir)
            .stdout(std::process::Stdio::null())
            .stderr(std::process::Stdio::null())
            .spawn()
            .unwrap_or_else(|e| panic!("nats-server: {e}"));
        for _ in 0..50 {
            if std::net::TcpStream::connect(("127.0.0.1", port)).is_ok() {
                break;
            }
            tokio::time::sleep(Duration::from_millis(100)).await;
        }
        let good = NatsConfig {
            tls_ca: Some(dir.join("ca.pem")),
            ..nats(&format!("tls://strongroom:s3cret-pass@127.0.0.1:{port}"))
        };
        let [(a, _, _a_changes), (b, _, _b_changes)] = pair(&good).await;
        let mut conn = b.register([3; 16], None);
        let got = delivered(&a, [3; 16], row(21), &mut conn).await;
        // A link with the wrong password never gets a row.
        let bad = NatsConfig {
            tls_ca: Some(dir.join("ca.pem")),
            ..nats(&format!("tls://strongroom:wrong@127.0.0.1:{port}"))
        };
        let [(c, _, _c_changes), _d] = pair(&bad).await;
        tokio::time::sleep(Duration::from_millis(500)).await;
        c.deliver(&[3; 16], &|| row(22));
        // (Extra copies of row 21 from the retries above may still arrive.)
        let mut leaked = None;
        let until = tokio::time::Instant::now() + Duration::from_secs(1);
        while let Ok(Some(r)) = tokio::time::timeout_at(until, next_row(&mut conn)).await {
            if r == row(22) {
                leaked = Some(r);
            }
        }
        let _ = server.kill();
        let _ = server.wait();
        let _ = std::fs::remove_dir_all(&dir);
        assert!(got, "rows cross a TLS link with credentials");
        assert_eq!(leaked, None, "a link with a wrong password delivers nothing");
    }
}
