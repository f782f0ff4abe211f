//! Test harness: the real `strongroom` binary on a free port, and a small
//! client that enrols devices and seals and opens real envelopes.
#![allow(dead_code, clippy::unwrap_used, clippy::expect_used, clippy::panic, clippy::indexing_slicing)]

pub mod browser;

use std::collections::HashMap;
use std::io::{BufRead, BufReader};
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

use rand_core::OsRng;
use reqwest::StatusCode;
use serde_json::Value;
use strongroom_crypto::certs::*;
use strongroom_crypto::content::Content;
use strongroom_crypto::envelope::*;
use strongroom_crypto::ids::*;
use strongroom_crypto::keys::*;
use strongroom_wire::*;

pub const PASSWORD: &str = "correct horse battery staple";

pub fn bin() -> &'static str {
    env!("CARGO_BIN_EXE_strongroom")
}

pub fn temp_dir(tag: &str) -> PathBuf {
    let d = std::env::temp_dir().join(format!(
        "sr-e2e-{tag}-{}-{}",
        std::process::id(),
        rand_core::RngCore::next_u64(&mut OsRng)
    ));
    std::fs::create_dir_all(&d).unwrap();
    d
}

/// SHA-256 in hex (the relay's blob upload names the body's hash).
pub fn sha256_hex(bytes: &[u8]) -> String {
    aws_lc_rs::digest::digest(&aws_lc_rs::digest::SHA256, bytes).as_ref().iter().map(|b| format!("{b:02x}")).collect()
}

pub fn now_ms() -> u64 {
    std::time::SystemTime::now().duration_since(std::time::UNIX_EPOCH).unwrap().as_millis() as u64
}

/// A running `strongroom server`, killed on drop.
pub struct ServerProc {
    pub child: Child,
    pub url: String,
    pub data_dir: PathBuf,
    pub bootstrap: Option<String>,
    pub extra: Vec<String>,
}

impl ServerProc {
    pub fn start(data_dir: &Path, extra: &[&str]) -> Self {
        Self::start_on(data_dir, "127.0.0.1:0", extra)
    }

    pub fn start_on(data_dir: &Path, listen: &str, extra: &[&str]) -> Self {
        let mut child = Command::new(bin())
            .args(["server", "--listen", listen, "--data-dir"])
            .arg(data_dir)
            .args(extra)
            .env("STRONGROOM_LOG", "warn")
            .stdout(Stdio::piped())
            .stderr(Stdio::inherit())
            .spawn()
            .expect("start strongroom server");
        let stdout = child.stdout.take().unwrap();
        let (tx, rx) = std::sync::mpsc::channel();
        std::thread::spawn(move || {
            // Keep draining after start-up so the server never writes into a closed pipe.
            for line in BufReader::new(stdout).lines().map_while(Result::ok) {
                let _ = tx.send(line);
            }
        });
        let deadline = Instant::now() + Duration::from_secs(30);
        let (mut url, mut bootstrap) = (None, None);
        while url.is_none() || (bootstrap.is_none() && Instant::now() < deadline) {
            let Ok(line) = rx.recv_timeout(deadline.saturating_duration_since(Instant::now())) else { break };
            if let Some(u) = line.strip_prefix("Strongroom relay listening on ") {
                url = Some(u.trim().to_owned());
            }
            if let Some(rest) = line.strip_prefix("Bootstrap secret") {
                bootstrap = rest.rsplit(": ").next().map(|s| s.trim().to_owned());
            }
            if line.starts_with("Next:") {
                break;
            }
        }
        let url = url.expect("server did not print its URL within 30 s");
        Self {
            child,
            url,
            data_dir: data_dir.to_owned(),
            bootstrap,
            extra: extra.iter().map(|s| s.to_string()).collect(),
        }
    }

    /// SIGTERM and wait (graceful shutdown), bounded.
    pub fn stop(&mut self) {
        let _ = Command::new("kill").arg("-TERM").arg(self.child.id().to_string()).status();
        let deadline = Instant::now() + Duration::from_secs(15);
        while Instant::now() < deadline {
            if let Ok(Some(_)) = self.child.try_wait() {
                return;
            }
            std::thread::sleep(Duration::from_millis(50));
        }
        let _ = self.child.kill();
        let _ = self.child.wait();
    }

    /// Restarts on the same port and data directory.
    pub fn restart(&mut self) {
        self.stop();
        let listen = self.url.trim_start_matches("http://").to_owned();
        let extra: Vec<String> = self.extra.clone();
        let refs: Vec<&str> = extra.iter().map(String::as_str).collect();
        let mut next = Self::start_on(&self.data_dir, &listen, &refs);
        std::mem::swap(&mut self.child, &mut next.child);
        std::mem::forget(next);
    }
}

impl Drop for ServerProc {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

/// Creates a network with the CLI; returns (network id, admin invite).
pub fn create_network(server: &ServerProc, dir: &Path, name: &str) -> (NetworkId, String) {
    let out = Command::new(bin())
        .args(["admin", "network", "create", "--json", "--name", name, "--server", &server.url, "--data-dir"])
        .arg(&server.data_dir)
        .arg("--key-file")
        .arg(dir.join(format!("{name}.key")))
        .env("STRONGROOM_NETWORK_KEY_PASSPHRASE", "network key passphrase")
        .output()
        .unwrap();
    assert!(out.status.success(), "network create failed: {}", String::from_utf8_lossy(&out.stderr));
    let v: Value = serde_json::from_slice(&out.stdout).unwrap();
    (NetworkId::parse_hex(v["network_id"].as_str().unwrap()).unwrap(), v["admin_invite"].as_str().unwrap().to_owned())
}

/// One enrolled device of one user.
pub struct Device {
    pub http: reqwest::Client,
    pub url: String,
    pub token: String,
    pub network: NetworkId,
    pub user: UserId,
    pub device: DeviceId,
    pub identity: std::sync::Arc<SigningKey>,
    pub device_key: SigningKey,
    pub prekeys: HashMap<PreKeyRef, AgreementSecret>,
    pub replay: MemoryReplayGuard,
    pub lists: HashMap<UserId, VerifiedDeviceList>,
}

pub async fn register(url: &str, invite: &str, username: &str) -> UserId {
    let r = reqwest::Client::new()
        .post(format!("{url}/v1/register"))
        .json(&Register { invite: invite.into(), username: username.into(), password: PASSWORD.into() })
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), StatusCode::CREATED, "{}", r.text().await.unwrap());
    r.json::<Registered>().await.unwrap().user_id
}

pub async fn login(url: &str, network: NetworkId, username: &str, device: DeviceId) -> reqwest::Response {
    reqwest::Client::new()
        .post(format!("{url}/v1/login"))
        .json(&Login { network_id: network, username: username.into(), password: PASSWORD.into(), device_id: device })
        .send()
        .await
        .unwrap()
}

impl Device {
    /// Logs in a new device and publishes keys. `others` are the user's
    /// existing devices (they stay in the signed list).
    pub async fn enrol(
        url: &str,
        network: NetworkId,
        username: &str,
        identity: Option<std::sync::Arc<SigningKey>>,
        others: &[&Device],
        one_time: u32,
    ) -> Device {
        let device = DeviceId::random(&mut OsRng);
        let r = login(url, network, username, device).await;
        assert_eq!(r.status(), StatusCode::OK, "{}", r.text().await.unwrap());
        let s: Session = r.json().await.unwrap();
        let mut d = Device {
            http: reqwest::Client::new(),
            url: url.to_owned(),
            token: s.token,
            network,
            user: s.user_id,
            device,
            identity: identity.unwrap_or_else(|| std::sync::Arc::new(SigningKey::generate(&mut OsRng))),
            device_key: SigningKey::generate(&mut OsRng),
            prekeys: HashMap::new(),
            replay: MemoryReplayGuard::default(),
            lists: HashMap::new(),
        };
        // The SDK's key rules, with the keys kept here in memory.
        use strongroom_client::rules::keys::device_entry;
        let mut entries: Vec<DeviceEntry> =
            others.iter().map(|o| device_entry(o.device, o.device_key.verifying_key(), "old", 0)).collect();
        entries.push(device_entry(device, d.device_key.verifying_key(), "new", now_ms()));
        let list = d.next_list(entries).await;
        let r = d.put_bytes("/v1/keys/device-list", list.encode()).await;
        assert_eq!(r.status(), StatusCode::NO_CONTENT, "{}", r.text().await.unwrap());
        d.upload_prekeys(one_time).await;
        d
    }

    pub async fn upload_prekeys(&mut self, one_time: u32) {
        let base = self.prekeys.len() as u32;
        let kinds: Vec<PreKeyKind> = (0..=one_time)
            .map(|i| if i == 0 && base == 0 { PreKeyKind::MediumTerm } else { PreKeyKind::OneTime })
            .collect();
        let who = (self.network, self.user, self.device);
        let made =
            strongroom_client::rules::keys::new_prekeys(&self.device_key, who, &kinds, base, now_ms(), &mut OsRng)
                .unwrap();
        let signed = made.iter().map(|k| B64(k.signed.encode())).collect();
        for k in made {
            self.prekeys.insert(k.key_ref, k.secret);
        }
        let r = self
            .http
            .put(format!("{}/v1/keys/prekeys", self.url))
            .bearer_auth(&self.token)
            .json(&UploadPreKeys { prekeys: signed })
            .send()
            .await
            .unwrap();
        assert_eq!(r.status(), StatusCode::NO_CONTENT, "{}", r.text().await.unwrap());
    }

    pub async fn put_bytes(&self, path: &str, body: Vec<u8>) -> reqwest::Response {
        self.http.put(format!("{}{path}", self.url)).bearer_auth(&self.token).body(body).send().await.unwrap()
    }

    /// The account's next device list with `entries`: chained to the list
    /// the relay holds, or the first one.
    pub async fn next_list(&self, entries: Vec<DeviceEntry>) -> DeviceList {
        let r = self.get(&format!("/v1/keys/{}", self.user)).await;
        if r.status() == StatusCode::NOT_FOUND {
            return DeviceList::first(&self.identity, self.network, self.user, now_ms(), entries).unwrap();
        }
        let keys: strongroom_wire::UserKeys = r.json().await.unwrap();
        DeviceList::decode(&keys.device_list.0).unwrap().next(&self.identity, now_ms(), entries).unwrap()
    }

    pub async fn get(&self, path: &str) -> reqwest::Response {
        self.http.get(format!("{}{path}", self.url)).bearer_auth(&self.token).send().await.unwrap()
    }

    pub async fn post_json(&self, path: &str, body: &impl serde::Serialize) -> reqwest::Response {
        self.http.post(format!("{}{path}", self.url)).bearer_auth(&self.token).json(body).send().await.unwrap()
    }

    pub async fn invite(&self, admin: bool) -> String {
        let r = self.post_json("/v1/invites", &CreateInvite { admin, ttl_secs: None }).await;
        assert_eq!(r.status(), StatusCode::CREATED, "{}", r.text().await.unwrap());
        r.json::<InviteCreated>().await.unwrap().invite
    }

    pub async fn create_conversation(&self, kind: &str, members: &[UserId]) -> Conversation {
        let kind = strongroom_wire::ConversationKind::parse(kind).unwrap();
        let r = self.post_json("/v1/conversations", &CreateConversation { kind, members: members.to_vec() }).await;
        assert_eq!(r.status(), StatusCode::CREATED, "{}", r.text().await.unwrap());
        r.json().await.unwrap()
    }

    /// A user's verified device list (trust on first use, then pinned).
    pub async fn device_list(&mut self, user: UserId) -> VerifiedDeviceList {
        let r = self.get(&format!("/v1/keys/{user}")).await;
        assert_eq!(r.status(), StatusCode::OK, "{}", r.text().await.unwrap());
        let keys: UserKeys = r.json().await.unwrap();
        let list = DeviceList::decode(&keys.device_list.0).unwrap();
        let pinned = self.lists.get(&user).map(|l| l.identity_key());
        let v = list
            .verify(&DeviceListExpectation {
                network_id: self.network,
                user_id: user,
                pinned_identity: pinned,
                seen: None,
            })
            .unwrap();
        self.lists.insert(user, v.clone());
        v
    }

    /// Recipients for a conversation: every active device of every member but
    /// this one (claiming a pre-key for each), by the SDK's recipient rules.
    pub async fn recipients(&mut self, conversation: impl std::fmt::Display + Copy) -> Vec<Recipient> {
        use strongroom_client::rules::recipients::{device_key, targets, verify_claimed};
        let c: Conversation = self.get(&format!("/v1/conversations/{conversation}")).await.json().await.unwrap();
        let mut lists = Vec::new();
        for m in &c.members {
            lists.push((self.device_list(m.user_id).await, Vec::new()));
        }
        let devices = targets(&lists, (self.user, self.device));
        let claim = ClaimPreKeys { devices: devices.iter().map(device_key).collect(), medium_term: vec![] };
        let r = self.post_json("/v1/keys/claim", &claim).await;
        assert_eq!(r.status(), StatusCode::OK, "{}", r.text().await.unwrap());
        let claimed: ClaimedPreKeys = r.json().await.unwrap();
        let raw: Vec<Vec<u8>> = claimed.prekeys.into_iter().map(|k| k.0).collect();
        verify_claimed(&devices, &raw, now_ms()).unwrap().iter().map(Recipient::from).collect()
    }

    pub fn seal_to(
        &self,
        conversation: impl std::fmt::Display + Copy,
        content: &Content,
        recipients: &[Recipient],
    ) -> Envelope {
        self.seal_at(conversation, content, recipients, now_ms(), 0)
    }

    /// Seals with every header field chosen by the caller, the sender's
    /// network included (for envelopes a hostile client would make).
    pub fn seal_as(
        &self,
        sender_network: NetworkId,
        meta: &MessageMeta,
        content: &Content,
        recipients: &[Recipient],
    ) -> Envelope {
        let sender = Sender {
            network_id: sender_network,
            user_id: self.user,
            identity_key: self.identity.verifying_key(),
            device_id: self.device,
            signing_key: &self.device_key,
        };
        seal(&sender, meta, content, recipients, &mut OsRng).unwrap()
    }

    /// Like `seal_to`, with a chosen header timestamp and TTL.
    pub fn seal_at(
        &self,
        conversation: impl std::fmt::Display + Copy,
        content: &Content,
        recipients: &[Recipient],
        timestamp: u64,
        ttl_secs: u32,
    ) -> Envelope {
        let sender = Sender {
            network_id: self.network,
            user_id: self.user,
            identity_key: self.identity.verifying_key(),
            device_id: self.device,
            signing_key: &self.device_key,
        };
        let meta = MessageMeta {
            host_network_id: self.network,
            conversation_id: ConversationId::parse_hex(&conversation.to_string()).unwrap(),
            message_id: MessageId::random(&mut OsRng),
            timestamp,
            ttl_secs,
            burn_on_read_secs: 0,
            membership: Default::default(),
        };
        seal(&sender, &meta, content, recipients, &mut OsRng).unwrap()
    }

    pub async fn post_envelope(&self, bytes: Vec<u8>) -> reqwest::Response {
        self.http.post(format!("{}/v1/messages", self.url)).bearer_auth(&self.token).body(bytes).send().await.unwrap()
    }

    /// Seals text for the conversation's current devices and sends it.
    pub async fn send_text(&mut self, conversation: impl std::fmt::Display + Copy, text: &str) -> Accepted {
        let recipients = self.recipients(conversation).await;
        let env = self.seal_to(conversation, &Content::Text(text.into()), &recipients);
        let r = self.post_envelope(env.encode()).await;
        assert_eq!(r.status(), StatusCode::OK, "{}", r.text().await.unwrap());
        r.json().await.unwrap()
    }

    /// Like `send_text`, with wraps for the policy's retention devices too.
    pub async fn send_text_with_retention(
        &mut self,
        conversation: impl std::fmt::Display + Copy,
        text: &str,
        policy: &VerifiedPolicy,
    ) -> Accepted {
        let mut recipients = self.recipients(conversation).await;
        recipients.extend(policy.retention_recipients());
        let env = self.seal_to(conversation, &Content::Text(text.into()), &recipients);
        let r = self.post_envelope(env.encode()).await;
        assert_eq!(r.status(), StatusCode::OK, "{}", r.text().await.unwrap());
        r.json().await.unwrap()
    }

    /// Opens one delivery.
    pub async fn open(&mut self, d: &Delivery) -> Result<Opened, EnvelopeError> {
        let delivered = DeliveredEnvelope::decode(&d.envelope.0)?;
        let sender = delivered.header().sender_user_id;
        let list = match self.lists.get(&sender) {
            Some(l) if l.device(delivered.header().sender_device_id).is_ok() => l.clone(),
            _ => self.device_list(sender).await,
        };
        let me = RecipientDevice {
            network_id: self.network,
            user_id: self.user,
            identity_key: self.identity.verifying_key(),
            device_id: self.device,
        };
        delivered.open(&me, &self.prekeys, &list, &mut self.replay, now_ms())
    }

    /// Fetches, opens and acknowledges everything queued; returns (seq, text).
    pub async fn receive_all(&mut self) -> Vec<(u64, String)> {
        let mut out = Vec::new();
        loop {
            let r = self.get("/v1/messages?limit=500").await;
            assert_eq!(r.status(), StatusCode::OK);
            let batch: Deliveries = r.json().await.unwrap();
            if batch.messages.is_empty() {
                return out;
            }
            let mut ids = Vec::new();
            for d in &batch.messages {
                let opened = self.open(d).await.unwrap();
                let Content::Text(t) = opened.content else { panic!("expected text") };
                out.push((d.seq, t));
                ids.push(d.message_id);
            }
            let r = self.post_json("/v1/messages/ack", &Ack { message_ids: ids }).await;
            assert_eq!(r.status(), StatusCode::NO_CONTENT);
        }
    }
}

/// Alice (the network's first administrator) and Bob, enrolled through the SDK.
pub async fn two_clients(dir: &Path, server: &ServerProc) -> (strongroom_client::Client, strongroom_client::Client) {
    use strongroom_client::Client;
    let (_, admin_invite) = create_network(server, dir, "acme");
    let alice = Client::enrol(&dir.join("alice"), "alice passphrase", &admin_invite, "alice", PASSWORD).await.unwrap();
    let invite = alice.create_invite(false).await.unwrap().invite;
    let bob = Client::enrol(&dir.join("bob"), "bob passphrase", &invite, "bob", PASSWORD).await.unwrap();
    (alice, bob)
}

/// Files under `dir` (recursively) whose bytes contain `needle`.
pub fn files_containing(dir: &Path, needle: &[u8]) -> Vec<String> {
    let mut hits = Vec::new();
    for entry in std::fs::read_dir(dir).unwrap() {
        let path = entry.unwrap().path();
        if path.is_dir() {
            hits.extend(files_containing(&path, needle));
        } else if std::fs::read(&path).unwrap().windows(needle.len()).any(|w| w == needle) {
            hits.push(path.display().to_string());
        }
    }
    hits
}

// Data retention: the retention device made and signed into the policy with the CLI.

/// The binary with every passphrase these tests use.
pub fn cli(args: &[&str]) -> std::process::Output {
    Command::new(bin())
        .args(args)
        .env("STRONGROOM_PASSPHRASE", "alice passphrase")
        .env("STRONGROOM_NETWORK_KEY_PASSPHRASE", "network key passphrase")
        .env("STRONGROOM_RETENTION_PASSPHRASE", "retention passphrase")
        .output()
        .unwrap()
}

/// [`cli`], which must succeed and print JSON.
pub fn ok_json(args: &[&str]) -> Value {
    let out = cli(args);
    assert!(out.status.success(), "{args:?}: {}", String::from_utf8_lossy(&out.stderr));
    serde_json::from_slice(&out.stdout).unwrap_or_else(|_| panic!("{args:?}: {}", String::from_utf8_lossy(&out.stdout)))
}

/// A path as a CLI argument.
pub fn s(p: &Path) -> &str {
    p.to_str().unwrap()
}

/// `retention init` for the network, then `admin retention enable` by Alice (an administrator).
/// Runs `f` (a CLI command on `client`'s profile) with the profile closed
/// here, since one process at a time owns a profile; then reopens it.
pub async fn with_profile_closed<R>(
    client: strongroom_client::Client,
    passphrase: &str,
    f: impl FnOnce() -> R,
) -> (strongroom_client::Client, R) {
    let dir = client.dir().to_owned();
    client.close().await;
    let r = f();
    (strongroom_client::Client::open(&dir, passphrase).await.unwrap(), r)
}

/// Data retention on, with Alice (an administrator, passphrase "alice
/// passphrase") signing the policy from the CLI; returns the retention
/// directory and Alice's reopened client.
pub async fn turn_retention_on(
    server: &ServerProc,
    dir: &Path,
    alice: strongroom_client::Client,
) -> (PathBuf, strongroom_client::Client) {
    let network = alice.network_id().to_string();
    let info: strongroom_wire::NetworkInfo =
        reqwest::get(format!("{}/v1/networks/{network}", server.url)).await.unwrap().json().await.unwrap();
    let fingerprint = strongroom_crypto::certs::NetworkFingerprint::of(
        &VerifyingKey::from_bytes(info.network_public.0.try_into().unwrap()).unwrap(),
    );
    let rdir = dir.join("retention");
    let init = |fp: &str| {
        let args = ["--server", &server.url, "--network", &network, "--fingerprint", fp];
        cli(&[&["retention", "init", "--json", "--dir", s(&rdir)][..], &args[..]].concat())
    };
    let wrong = init("0000");
    assert!(!wrong.status.success());
    assert!(String::from_utf8_lossy(&wrong.stderr).contains("do not use this server"));
    let made = init(&fingerprint.to_string());
    assert!(made.status.success(), "{}", String::from_utf8_lossy(&made.stderr));
    let device = rdir.join("retention-device.json");
    let (alice, on) = with_profile_closed(alice, "alice passphrase", || {
        ok_json(&[
            "admin",
            "retention",
            "enable",
            "--json",
            "--key-file",
            s(&dir.join("acme.key")),
            "--device",
            s(&device),
            "--profile",
            s(&dir.join("alice")),
        ])
    })
    .await;
    assert_eq!(on["retention"], true);
    (rdir, alice)
}

/// Logs in to the web console as a browser would: the login page's CSRF
/// cookie and hidden field, then the form. Returns the client (no redirects
/// followed), the login response and the session cookie (`name=value`).
pub async fn console_login(url: &str, network: &str, username: &str) -> (reqwest::Client, reqwest::Response, String) {
    let http = reqwest::Client::builder().redirect(reqwest::redirect::Policy::none()).build().unwrap();
    let page = http.get(format!("{url}/admin/login")).send().await.unwrap();
    let login_cookie = page.headers()["set-cookie"].to_str().unwrap().split(';').next().unwrap().to_owned();
    let html = page.text().await.unwrap();
    let csrf = html.split("name=\"csrf\" value=\"").nth(1).unwrap().split('"').next().unwrap().to_owned();
    let r = http
        .post(format!("{url}/admin/login"))
        .header("cookie", login_cookie)
        .form(&[("csrf", csrf.as_str()), ("network", network), ("username", username), ("password", PASSWORD)])
        .send()
        .await
        .unwrap();
    let cookie = r
        .headers()
        .get_all("set-cookie")
        .iter()
        .filter_map(|v| v.to_str().ok())
        .find(|v| v.starts_with("sr_console="))
        .map(|v| v.split(';').next().unwrap().to_owned())
        .unwrap_or_default();
    (http, r, cookie)
}

/// Sends a request a test proxy received on to the real relay, with its
/// credentials.
pub async fn pass_on(
    http: &reqwest::Client,
    upstream: &str,
    method: &axum::http::Method,
    path: &str,
    headers: &axum::http::HeaderMap,
    body: &[u8],
) -> reqwest::Response {
    let mut up = http.request(method.as_str().parse().unwrap(), format!("{upstream}{path}")).body(body.to_vec());
    for name in ["authorization", "content-type", strongroom_wire::SETTINGS_TAG_HEADER] {
        if let Some(v) = headers.get(name) {
            up = up.header(name, v.to_str().unwrap());
        }
    }
    up.send().await.unwrap()
}

/// What a hostile relay answers a send with to make the sender fetch device
/// lists and policy again (so that it sees what the relay serves): a
/// recipient-set refusal. Senders keep what they verified until the relay
/// says something changed.
pub fn make_sender_refetch() -> axum::response::Response {
    let refusal = strongroom_wire::ErrorBody {
        error: "recipient_mismatch".into(),
        message: "the envelope's recipient devices differ from the conversation's current devices".into(),
        missing: vec![],
        extra: vec![],
    };
    axum::response::Response::builder()
        .status(409)
        .header("content-type", "application/json")
        .body(axum::body::Body::from(serde_json::to_vec(&refusal).unwrap()))
        .unwrap()
}
