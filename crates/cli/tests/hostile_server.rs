//! A hostile relay: a proxy between the real client SDK and the real server
//! that tampers with what the server says. Every tampering must be refused
//! with a visible warning or error — never a crash, never a silent drop.
#![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic, clippy::indexing_slicing)]

mod common;

use std::sync::atomic::{AtomicBool, Ordering::Relaxed};
use std::sync::{Arc, Mutex};

use axum::body::{to_bytes, Body};
use axum::extract::{Request, State};
use axum::response::Response;
use base64::engine::general_purpose::STANDARD;
use base64::Engine as _;
use common::*;
use strongroom_client::ClientError;
use strongroom_crypto::certs::{DeviceEntry, DeviceList, NetworkPolicy, RetentionDevice};
use strongroom_crypto::content::Content;
use strongroom_crypto::ids::DeviceId;
use strongroom_crypto::keys::AgreementSecret;
use strongroom_crypto::keys::SigningKey;
use strongroom_wire::{Deliveries, Delivery, UserKeys, B64};

#[derive(Clone, Copy, PartialEq, Eq, Debug)]
enum Tamper {
    None,
    FlipCiphertext,
    ReplayOld,
    Reverse,
    InjectDevice,
    BumpPolicyVersion,
    /// A retention device the network key never certified, slipped into the policy.
    InjectRetention,
    /// The first policy seen (before retention was turned on) served again.
    RollbackPolicy,
    /// Acknowledgements fail (as in a crash between storing and acking): the
    /// server re-delivers what the client already stored.
    DropAck,
    /// The key directory is down: every key lookup answers 503.
    KeysUnavailable,
    /// An older policy (one that still names the retention device) served
    /// to a retention device that has seen a newer one.
    ServeOldPolicy,
    /// File downloads answer 503.
    BlobsUnavailable,
}

struct Proxy {
    upstream: String,
    http: reqwest::Client,
    mode: Mutex<Tamper>,
    served: Mutex<Vec<Delivery>>,
    first_policy: Mutex<Option<Vec<u8>>>,
    old_policy: Mutex<Option<Vec<u8>>>,
    /// `failing_acks`: what it heard (each ack frame's ids), and how many
    /// ack frames it fails before it passes them on.
    acks_heard: Mutex<Vec<Vec<strongroom_crypto::ids::MessageId>>>,
    acks_to_fail: std::sync::atomic::AtomicUsize,
    /// `failing_acks`: neither pass acks on nor answer them, and drop the
    /// socket at a `flush` (an ack that failed after the device stopped
    /// listening).
    swallow_acks: AtomicBool,
    /// `failing_acks`: answer a `flush` as a relay before flushes did (an
    /// `error` frame).
    flush_unknown: AtomicBool,
}

impl Proxy {
    /// A proxy to `server` that tampers with nothing until told to.
    fn to(server: &ServerProc) -> Arc<Self> {
        Arc::new(Proxy {
            upstream: server.url.clone(),
            http: reqwest::Client::new(),
            mode: Mutex::new(Tamper::None),
            served: Mutex::new(vec![]),
            first_policy: Mutex::new(None),
            old_policy: Mutex::new(None),
            acks_heard: Mutex::new(vec![]),
            acks_to_fail: std::sync::atomic::AtomicUsize::new(1),
            swallow_acks: AtomicBool::new(false),
            flush_unknown: AtomicBool::new(false),
        })
    }
}

async fn forward(State(p): State<Arc<Proxy>>, req: Request) -> Response {
    let method = req.method().clone();
    let path = req.uri().path_and_query().map(|x| x.as_str().to_owned()).unwrap_or_default();
    let headers = req.headers().clone();
    let body = to_bytes(req.into_body(), 64 << 20).await.unwrap();
    if path == "/v1/messages/ack" && *p.mode.lock().unwrap() == Tamper::DropAck {
        return Response::builder().status(503).body(Body::empty()).unwrap();
    }
    let blobs_down = path.starts_with("/v1/blobs/") && *p.mode.lock().unwrap() == Tamper::BlobsUnavailable;
    if blobs_down
        || (path.starts_with("/v1/keys/") && method == "GET" && *p.mode.lock().unwrap() == Tamper::KeysUnavailable)
    {
        return Response::builder()
            .status(503)
            .header("content-type", "application/json")
            .body(Body::from(r#"{"error":"unavailable","message":"the key directory is down"}"#))
            .unwrap();
    }
    let forging = matches!(
        *p.mode.lock().unwrap(),
        Tamper::InjectDevice | Tamper::BumpPolicyVersion | Tamper::InjectRetention | Tamper::RollbackPolicy
    );
    if forging && method == "POST" && path == "/v1/messages" {
        return make_sender_refetch();
    }
    let r = pass_on(&p.http, &p.upstream, &method, &path, &headers, &body).await;
    let status = r.status().as_u16();
    let ctype = r.headers().get("content-type").map(|v| v.to_str().unwrap().to_owned());
    let mut bytes = r.bytes().await.unwrap().to_vec();
    let mode = *p.mode.lock().unwrap();
    if status == 200 && method == "GET" {
        if path.starts_with("/v1/messages") {
            let mut d: Deliveries = serde_json::from_slice(&bytes).unwrap();
            match mode {
                Tamper::FlipCiphertext => {
                    for m in &mut d.messages {
                        m.envelope.0[250] ^= 0x01; // inside the ciphertext (after the 219-byte header)
                    }
                }
                Tamper::ReplayOld => d.messages.extend(p.served.lock().unwrap().iter().cloned()),
                Tamper::Reverse => d.messages.reverse(),
                _ => {}
            }
            if mode != Tamper::ReplayOld {
                p.served.lock().unwrap().extend(d.messages.iter().cloned());
            }
            bytes = serde_json::to_vec(&d).unwrap();
        } else if path.starts_with("/v1/keys/") && mode == Tamper::InjectDevice {
            // Add a device the server controls, keeping the user's signature.
            let mut k: UserKeys = serde_json::from_slice(&bytes).unwrap();
            let mut list = DeviceList::decode(&k.device_list.0).unwrap();
            list.devices.push(DeviceEntry {
                device_id: DeviceId::from_bytes([0xee; 16]),
                signing_key: SigningKey::generate(&mut rand_core::OsRng).verifying_key(),
                created_at: 0,
                revoked: false,
                versions: strongroom_crypto::suite::SUPPORTED_VERSIONS,
                name: "server-added".into(),
            });
            // Kept in canonical order, so only the signature can give it away.
            list.devices.sort_by_key(|d| d.device_id);
            k.device_list = B64(list.encode());
            bytes = serde_json::to_vec(&k).unwrap();
        } else if path == "/v1/policy" {
            p.first_policy.lock().unwrap().get_or_insert_with(|| bytes.clone());
            let mut policy = NetworkPolicy::decode(&bytes).unwrap();
            match mode {
                // A "newer" policy the network key never signed.
                Tamper::BumpPolicyVersion => {
                    policy.version += 1;
                    bytes = policy.encode();
                }
                // A reader the organisation never approved.
                Tamper::InjectRetention => {
                    policy.retention.push(RetentionDevice {
                        device_id: DeviceId::from_bytes([0xdd; 16]),
                        signing_key: SigningKey::generate(&mut rand_core::OsRng).verifying_key(),
                        agreement_key: AgreementSecret::generate(&mut rand_core::OsRng).public(),
                        agreement_key_id: 1,
                        versions: strongroom_crypto::suite::SUPPORTED_VERSIONS,
                        state: strongroom_crypto::certs::RetentionState::Active,
                        name: "server's own archive".into(),
                    });
                    policy.retention.sort_by_key(|d| d.device_id);
                    policy.version += 1;
                    bytes = policy.encode();
                }
                Tamper::RollbackPolicy => bytes = p.first_policy.lock().unwrap().clone().unwrap(),
                Tamper::ServeOldPolicy => bytes = p.old_policy.lock().unwrap().clone().unwrap(),
                _ => {}
            }
        }
    }
    let mut res = Response::builder().status(status);
    if let Some(c) = ctype {
        res = res.header("content-type", c);
    }
    res.body(Body::from(bytes)).unwrap()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn every_tampering_is_refused_visibly() {
    let dir = temp_dir("hostile");
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let proxy_url = format!("http://{}", listener.local_addr().unwrap());
    let server = ServerProc::start(&dir.join("data"), &["--public-url", &proxy_url]);
    let proxy = Proxy::to(&server);
    let app = axum::Router::new().fallback(forward).with_state(proxy.clone());
    tokio::spawn(async move { axum::serve(listener, app).await.unwrap() });
    let set = |m: Tamper| *proxy.mode.lock().unwrap() = m;

    // Invites carry the proxy's URL, so both clients talk only to the hostile relay.
    let (mut alice, mut bob) = two_clients(&dir, &server).await;
    let conv = alice.direct_with("bob").await.unwrap();
    alice.send_text(conv, "m1").await.unwrap();
    let r = bob.sync().await.unwrap();
    assert_eq!(r.received.len(), 1);
    assert!(r.warnings.is_empty(), "{:?}", r.warnings);

    // 1. Flipped ciphertext: refused with a warning, nothing stored.
    alice.send_text(conv, "m2").await.unwrap();
    set(Tamper::FlipCiphertext);
    let r = bob.sync().await.unwrap();
    assert!(r.received.is_empty());
    assert_eq!(r.warnings.len(), 1, "{:?}", r.warnings);
    assert!(r.warnings[0].contains("altered"), "{}", r.warnings[0]);
    // Kept as evidence (sealed in Bob's store) before it was acknowledged.
    let evidence = bob.refused().await.unwrap();
    assert_eq!(evidence.len(), 1);
    assert!(evidence[0].2.contains("altered") && evidence[0].1 == 2 && !evidence[0].3.is_empty());

    // 2. Replayed envelopes (already received): refused as replays.
    set(Tamper::ReplayOld);
    let r = bob.sync().await.unwrap();
    assert!(r.received.is_empty());
    assert!(r.warnings.iter().any(|w| w.contains("replay")), "{:?}", r.warnings);
    assert!(
        r.warnings.iter().any(|w| w.contains("keeps resending")),
        "a re-serving relay cannot trap the client: {:?}",
        r.warnings
    );
    // Evidence is kept once per message id, however often it is replayed.
    assert_eq!(bob.refused().await.unwrap().len(), 2, "the tampered #2 and the replayed #1");
    set(Tamper::ReplayOld);
    bob.sync().await.unwrap();
    assert_eq!(bob.refused().await.unwrap().len(), 2);

    // 3. Reordered delivery: stored in sequence order. Arrival order alone
    // is not an attack (the view orders by the relay's numbers); what is
    // reported is that the real #2 never arrived (only a tampered copy did).
    set(Tamper::None);
    for t in ["m3", "m4", "m5"] {
        alice.send_text(conv, t).await.unwrap();
    }
    proxy.served.lock().unwrap().clear();
    set(Tamper::Reverse);
    let r = bob.sync().await.unwrap();
    assert_eq!(r.received.len(), 3);
    assert_eq!(r.warnings.len(), 1, "{:?}", r.warnings);
    assert!(r.warnings[0].contains("#2 never reached this device"), "{}", r.warnings[0]);
    let texts: Vec<Content> = bob.messages(Some(conv)).await.unwrap().into_iter().map(|m| m.content).collect();
    assert_eq!(texts, ["m1", "m3", "m4", "m5"].map(|t| Content::Text(t.into())), "stored in sequence order");

    // 4. A device injected into Bob's signed device list: Alice refuses to send to it.
    set(Tamper::InjectDevice);
    let err = alice.send_text(conv, "to a fake device?").await.unwrap_err();
    assert!(matches!(err, ClientError::Trust(ref m) if m.contains("signature")), "{err}");

    // 5. A policy with a higher version but no valid network signature.
    set(Tamper::BumpPolicyVersion);
    let err = alice.send_text(conv, "under a forged policy?").await.unwrap_err();
    assert!(matches!(err, ClientError::Trust(ref m) if m.contains("policy")), "{err}");

    // 6. Lost acknowledgements: the honest re-delivery is absorbed silently, stored once.
    set(Tamper::None);
    alice.send_text(conv, "ack me").await.unwrap();
    set(Tamper::DropAck);
    assert!(bob.sync().await.is_err(), "the failed ack is reported");
    set(Tamper::None);
    let r = bob.sync().await.unwrap();
    assert!(r.received.is_empty() && r.warnings.is_empty(), "{:?}", r.warnings);
    let acks = bob
        .messages(Some(conv))
        .await
        .unwrap()
        .into_iter()
        .filter(|m| m.content == Content::Text("ack me".into()))
        .count();
    assert_eq!(acks, 1);

    // 6b. The key directory is down while a message waits: the sync fails
    // and acknowledges nothing, so the message arrives once it is back
    // (before, it was refused with a warning, acknowledged and lost).
    alice.send_text(conv, "while keys are down").await.unwrap();
    set(Tamper::KeysUnavailable);
    let err = bob.sync().await.unwrap_err();
    assert!(err.is_transient(), "{err}");
    set(Tamper::None);
    let r = bob.sync().await.unwrap();
    assert_eq!(r.received.len(), 1, "{:?}", r.warnings);
    assert_eq!(r.received[0].content, Content::Text("while keys are down".into()));

    // Honest again: everything works, nothing was lost from the store.
    set(Tamper::None);
    alice.send_text(conv, "m6").await.unwrap();
    let r = bob.sync().await.unwrap();
    assert_eq!(r.received.len(), 1);

    // 7. Retention turned on by the organisation (signed with the network key):
    // messages now carry a wrap for the retention device.
    let retention_dir = dir.join("retention");
    let network = alice.network_id().to_string();
    let public = reqwest::get(format!("{}/v1/networks/{network}", server.url)).await.unwrap();
    let info: strongroom_wire::NetworkInfo = public.json().await.unwrap();
    let key = strongroom_crypto::keys::VerifyingKey::from_bytes(info.network_public.0.try_into().unwrap()).unwrap();
    let fp = strongroom_crypto::certs::NetworkFingerprint::of(&key).to_string();
    run_cli(&[
        "retention",
        "init",
        "--dir",
        retention_dir.to_str().unwrap(),
        "--server",
        &proxy_url,
        "--network",
        &network,
        "--fingerprint",
        &fp,
    ]);
    // Signs the retention device into a new policy (again, the second time).
    let enable_retention = || {
        run_cli(&[
            "admin",
            "retention",
            "enable",
            "--key-file",
            dir.join("acme.key").to_str().unwrap(),
            "--device",
            retention_dir.join("retention-device.json").to_str().unwrap(),
            "--profile",
            dir.join("alice").to_str().unwrap(),
        ])
    };
    let rdir = retention_dir.to_str().unwrap();
    let retention_run = || {
        std::process::Command::new(bin())
            .args(["retention", "--dir", rdir, "--json", "run", "--once"])
            .env("STRONGROOM_RETENTION_PASSPHRASE", "retention passphrase")
            .output()
            .unwrap()
    };
    // One process per profile: Alice's is closed here while the CLI signs.
    let (mut alice, ()) = with_profile_closed(alice, "alice passphrase", enable_retention).await;
    assert!(alice.policy().await.unwrap().retention_enabled());
    alice.send_text(conv, "archived").await.unwrap();

    // 8. A retention device not signed by the network key: refused, loudly.
    set(Tamper::InjectRetention);
    let err = alice.send_text(conv, "to the server's reader?").await.unwrap_err();
    assert!(matches!(err, ClientError::Trust(ref m) if m.contains("policy") && m.contains("signature")), "{err}");

    // 9. The old policy without retention served again to a client that has
    // seen the new one: a rollback, refused.
    set(Tamper::None);
    assert!(bob.policy().await.unwrap().retention_enabled());
    set(Tamper::RollbackPolicy);
    let err = bob.send_text(conv, "quietly unarchived?").await.unwrap_err();
    assert!(matches!(err, ClientError::Trust(ref m) if m.contains("rollback")), "{err}");
    set(Tamper::None);
    bob.send_text(conv, "honest again").await.unwrap();

    // 10. The retention service during a key-directory outage: the run fails
    // and archives nothing as "unreadable" (before, each waiting message
    // became a permanent unreadable record and was acknowledged); once the
    // directory is back, every message is archived readable.
    set(Tamper::KeysUnavailable);
    let out = retention_run();
    assert!(!out.status.success(), "the outage stops the run: {}", String::from_utf8_lossy(&out.stdout));
    set(Tamper::None);
    let out = retention_run();
    assert!(out.status.success(), "{}", String::from_utf8_lossy(&out.stderr));
    let run: serde_json::Value = serde_json::from_slice(&out.stdout).unwrap();
    assert_eq!(run["run"]["unreadable"], 0, "{run}");
    assert_eq!(run["run"]["archived"], 2, "\"archived\" and \"honest again\": {run}");

    // 11. The retention device remembers the newest policy across restarts:
    // after it has seen a newer policy, an older one that still names it
    // (say, from before a second retention device was added) is a rollback
    // and the service refuses to start. (Before, every start trusted
    // whatever validly signed policy the relay served.)
    let older = alice.policy().await.unwrap().policy().encode();
    *proxy.old_policy.lock().unwrap() = Some(older);
    let (mut alice, ()) = with_profile_closed(alice, "alice passphrase", enable_retention).await;
    assert!(retention_run().status.success(), "the newer policy is seen");
    set(Tamper::ServeOldPolicy);
    let out = retention_run();
    assert!(!out.status.success(), "an older policy is refused: {}", String::from_utf8_lossy(&out.stdout));
    assert!(String::from_utf8_lossy(&out.stderr).contains("rollback"), "{}", String::from_utf8_lossy(&out.stderr));
    set(Tamper::None);
    assert!(retention_run().status.success(), "the current policy is accepted again");

    // 12. A file the relay cannot hand out for a moment: the run stops and
    // acknowledges nothing (before, the record said "not stored" and the
    // message was acknowledged, so the file was never archived); after the
    // outage the file is archived with its message.
    let file = dir.join("board-minutes.pdf");
    std::fs::write(&file, vec![0x42u8; 300_000]).unwrap();
    alice.send_file(conv, &file, &|_, _| {}).await.unwrap();
    set(Tamper::BlobsUnavailable);
    let out = retention_run();
    assert!(!out.status.success(), "the outage stops the run: {}", String::from_utf8_lossy(&out.stdout));
    set(Tamper::None);
    let out = retention_run();
    assert!(out.status.success(), "{}", String::from_utf8_lossy(&out.stderr));
    let run: serde_json::Value = serde_json::from_slice(&out.stdout).unwrap();
    assert_eq!((run["run"]["archived"].as_u64(), run["run"]["files"].as_u64()), (Some(1), Some(1)), "{run}");

    // 13. Running as a service, the retention device rides out an outage:
    // it pauses and retries instead of exiting, and archives the waiting
    // message once the key directory is back.
    alice.send_text(conv, "during the outage").await.unwrap();
    set(Tamper::KeysUnavailable);
    let service = tokio::process::Command::new(bin())
        .args(["retention", "--dir", rdir, "--json", "run", "--for-secs", "8"])
        .env("STRONGROOM_RETENTION_PASSPHRASE", "retention passphrase")
        .output();
    let restore = async {
        tokio::time::sleep(std::time::Duration::from_secs(2)).await;
        set(Tamper::None);
    };
    let (out, ()) = tokio::join!(service, restore);
    let out = out.unwrap();
    assert!(out.status.success(), "{}", String::from_utf8_lossy(&out.stderr));
    assert!(String::from_utf8_lossy(&out.stderr).contains("will retry"), "{}", String::from_utf8_lossy(&out.stderr));
    let run: serde_json::Value = serde_json::from_slice(&out.stdout).unwrap();
    assert_eq!((run["run"]["archived"].as_u64(), run["run"]["unreadable"].as_u64()), (Some(1), Some(0)), "{run}");
    let _ = STANDARD.encode([0u8]);
}

fn run_cli(args: &[&str]) {
    let out = std::process::Command::new(bin())
        .args(args)
        .env("STRONGROOM_PASSPHRASE", "alice passphrase")
        .env("STRONGROOM_NETWORK_KEY_PASSPHRASE", "network key passphrase")
        .env("STRONGROOM_RETENTION_PASSPHRASE", "retention passphrase")
        .output()
        .unwrap();
    assert!(out.status.success(), "{args:?}: {}", String::from_utf8_lossy(&out.stderr));
}

/// What the forging relay learned from the new device's requests.
#[derive(Default)]
struct LinkSeen {
    network: Option<String>,
    device: Option<String>,
    user: Option<String>,
    link_key: Option<Vec<u8>>,
}

struct Forger {
    upstream: String,
    http: reqwest::Client,
    seen: Mutex<LinkSeen>,
}

/// Forwards everything, and answers the new device's "link result" itself
/// with a transfer of the relay's own identity key and network key.
async fn forge_link(State(p): State<Arc<Forger>>, req: Request) -> Response {
    let method = req.method().clone();
    let path = req.uri().path_and_query().map(|x| x.as_str().to_owned()).unwrap_or_default();
    let headers = req.headers().clone();
    let body = to_bytes(req.into_body(), 64 << 20).await.unwrap();
    if path == "/v1/devices/link/result" {
        let seen = p.seen.lock().unwrap();
        let (Some(network), Some(user), Some(device), Some(link_key)) =
            (&seen.network, &seen.user, &seen.device, &seen.link_key)
        else {
            return Response::builder().status(404).body(Body::empty()).unwrap();
        };
        use strongroom_crypto::ids::{NetworkId, UserId};
        use strongroom_crypto::link::{seal_transfer, LinkCode, LinkTarget};
        let target = LinkTarget {
            network_id: NetworkId::parse_hex(network).unwrap(),
            user_id: UserId::parse_hex(user).unwrap(),
            device_id: DeviceId::parse_hex(device).unwrap(),
        };
        let link_key =
            strongroom_crypto::keys::AgreementPublic::from_bytes(link_key.as_slice().try_into().unwrap()).unwrap();
        let rogue_identity = SigningKey::generate(&mut rand_core::OsRng).verifying_key();
        let rogue_network = SigningKey::generate(&mut rand_core::OsRng).verifying_key();
        // Every input is known to the relay except the code's secret: it guesses one.
        let any_signing = SigningKey::generate(&mut rand_core::OsRng).verifying_key();
        let guess = LinkCode::generate(&target, &any_signing, &link_key, &mut rand_core::OsRng);
        let sealed =
            seal_transfer(&rogue_identity, &rogue_network, &target, &link_key, &guess, &mut rand_core::OsRng).unwrap();
        let approval = strongroom_wire::LinkApproval {
            device_id: strongroom_crypto::ids::DeviceId::parse_hex(device).unwrap(),
            sealed_transfer: B64(sealed),
        };
        return Response::builder()
            .status(200)
            .header("content-type", "application/json")
            .body(Body::from(serde_json::to_vec(&approval).unwrap()))
            .unwrap();
    }
    if path == "/v1/login" {
        let login: strongroom_wire::Login = serde_json::from_slice(&body).unwrap();
        let mut seen = p.seen.lock().unwrap();
        seen.network = Some(login.network_id.to_string());
        seen.device = Some(login.device_id.to_string());
    }
    if path == "/v1/devices/link" && method == "POST" {
        let r: strongroom_wire::LinkRequest = serde_json::from_slice(&body).unwrap();
        p.seen.lock().unwrap().link_key = Some(r.link_key.0);
    }
    let r = pass_on(&p.http, &p.upstream, &method, &path, &headers, &body).await;
    let status = r.status().as_u16();
    let bytes = r.bytes().await.unwrap().to_vec();
    if path == "/v1/login" && status == 200 {
        let session: strongroom_wire::Session = serde_json::from_slice(&bytes).unwrap();
        p.seen.lock().unwrap().user = Some(session.user_id.to_string());
    }
    Response::builder().status(status).header("content-type", "application/json").body(Body::from(bytes)).unwrap()
}

/// PROTOCOL §8: the relay knows the new device's network, account, device id
/// and link key, so before the link code carried a secret it could seal its
/// own identity key and network key to the new device, which accepted them
/// (and then a policy signed by that network key naming the relay's
/// "retention device"). Now the transfer is keyed by the code's secret,
/// which never reaches the relay: the forgery is refused, and nothing is left.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_forged_link_transfer_is_refused() {
    let dir = temp_dir("forged-link");
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let proxy_url = format!("http://{}", listener.local_addr().unwrap());
    let server = ServerProc::start(&dir.join("data"), &["--public-url", &proxy_url]);
    let forger =
        Arc::new(Forger { upstream: server.url.clone(), http: reqwest::Client::new(), seen: Default::default() });
    let app = axum::Router::new().fallback(forge_link).with_state(forger);
    tokio::spawn(async move { axum::serve(listener, app).await.unwrap() });
    let (alice, _bob) = two_clients(&dir, &server).await;

    let new_device = dir.join("alice-phone");
    let pending = strongroom_client::Client::link_begin(
        &new_device,
        "phone passphrase",
        &proxy_url,
        alice.network_id(),
        "alice",
        PASSWORD,
    )
    .await
    .unwrap();
    let err = pending.wait(std::time::Duration::from_secs(10)).await.err().unwrap();
    assert!(
        matches!(err, ClientError::Trust(ref m) if m.contains("link refused") && m.contains("not made by a device that saw this link code")),
        "{err}"
    );
    assert!(!new_device.join("profile.json").exists(), "nothing of the forged transfer is kept");
}

/// The real server behind a proxy that serves `/v1/ws` with `socket` and
/// passes everything else on (invites carry the proxy's URL).
async fn behind_proxy(
    dir: &std::path::Path,
    socket: axum::routing::MethodRouter<Arc<Proxy>>,
) -> (ServerProc, Arc<Proxy>) {
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let proxy_url = format!("http://{}", listener.local_addr().unwrap());
    let server = ServerProc::start(&dir.join("data"), &["--public-url", &proxy_url]);
    let proxy = Proxy::to(&server);
    let app = axum::Router::new().route("/v1/ws", socket).fallback(forward).with_state(proxy.clone());
    tokio::spawn(async move { axum::serve(listener, app).await.unwrap() });
    (server, proxy)
}

/// Set once the test wants the bell to send notices only.
static BELL_QUIET: AtomicBool = AtomicBool::new(false);

/// A hostile relay's doorbell that sends a 64 KiB frame where a notice is
/// 17 bytes, then a real notice: the app's doorbell takes frames of 16 KiB
/// at most, so the big one ends the connection (the app falls back to
/// polling) instead of being buffered. A relay that sends only notices rings.
async fn loud_bell(ws: axum::extract::ws::WebSocketUpgrade, req: Request) -> Response {
    use axum::extract::ws::Message;
    let big = req.uri().query().is_some_and(|q| q.contains("pushes=notice")) && !BELL_QUIET.load(Relaxed);
    ws.on_upgrade(move |mut socket| async move {
        if big {
            let pad = "x".repeat(64 * 1024);
            let _ = socket.send(Message::Text(format!(r#"{{"type":"queued","pad":"{pad}"}}"#).into())).await;
        }
        let _ = socket.send(Message::Text(r#"{"type":"queued"}"#.into())).await;
        tokio::time::sleep(std::time::Duration::from_secs(5)).await;
    })
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_doorbell_takes_no_large_frames() {
    let dir = temp_dir("loud-bell");
    let (server, _) = behind_proxy(&dir, axum::routing::get(loud_bell)).await;
    let (alice, _bob) = two_clients(&dir, &server).await;
    let within = std::time::Duration::from_secs(10);
    let mut bell = alice.doorbell().await.unwrap();
    let rung = tokio::time::timeout(within, bell.rung()).await.unwrap();
    let err = rung.expect_err("a 64 KiB frame was taken as a ring");
    assert!(err.to_string().contains("notice connection ended"), "{err}");
    assert!(tokio::time::timeout(within, bell.rung()).await.unwrap().is_err(), "closed for good");
    // The same relay sending only notices: the bell rings.
    BELL_QUIET.store(true, Relaxed);
    let mut bell = alice.doorbell().await.unwrap();
    assert!(tokio::time::timeout(within, bell.rung()).await.unwrap().is_ok());
}

/// A relay whose storage fails acks: it pushes what the real relay queued
/// for the device (noting it as served), answers the first `acks_to_fail`
/// ack frames `ack_failed` with their ids (each twice) and one the device
/// never acknowledged, and passes every later ack on to the real relay,
/// answering a `flush` once it has. With `swallow_acks`, see [`Proxy`].
async fn failing_acks(State(p): State<Arc<Proxy>>, ws: axum::extract::ws::WebSocketUpgrade, req: Request) -> Response {
    use axum::extract::ws::Message;
    use futures_util::StreamExt;
    use strongroom_wire::WsFrame;
    let auth = req.headers().get("authorization").unwrap().clone();
    ws.on_upgrade(move |mut socket| async move {
        let queued: Deliveries = p
            .http
            .get(format!("{}/v1/messages", p.upstream))
            .header("authorization", auth.clone())
            .send()
            .await
            .unwrap()
            .json()
            .await
            .unwrap();
        p.served.lock().unwrap().extend(queued.messages.iter().cloned());
        for d in queued.messages {
            let frame = serde_json::to_string(&WsFrame::Message(d)).unwrap();
            socket.send(Message::Text(frame.into())).await.unwrap();
        }
        let swallow = p.swallow_acks.load(Relaxed);
        while let Some(Ok(Message::Text(text))) = socket.next().await {
            let message_ids = match serde_json::from_str::<WsFrame>(&text) {
                Ok(WsFrame::Ack { message_ids }) => message_ids,
                Ok(WsFrame::Flush) if swallow => break,
                Ok(WsFrame::Flush) if p.flush_unknown.load(Relaxed) => {
                    let error = WsFrame::Error { error: "bad_frame".into(), message: "expected an ack".into() };
                    socket.send(Message::Text(serde_json::to_string(&error).unwrap().into())).await.unwrap();
                    continue;
                }
                // Acks are passed on (or failed) as they come: all before it settled.
                Ok(WsFrame::Flush) => {
                    let flushed = serde_json::to_string(&WsFrame::Flushed).unwrap();
                    socket.send(Message::Text(flushed.into())).await.unwrap();
                    continue;
                }
                _ => continue,
            };
            let fail = {
                let mut heard = p.acks_heard.lock().unwrap();
                heard.push(message_ids.clone());
                heard.len() <= p.acks_to_fail.load(Relaxed)
            };
            if swallow {
                continue;
            }
            if fail {
                // Each id twice, and one the device never acknowledged.
                let mut ids = message_ids.clone();
                ids.extend(message_ids);
                ids.push(strongroom_crypto::ids::MessageId::from_bytes([0xee; 16]));
                let failed = WsFrame::AckFailed {
                    message_ids: ids,
                    error: "storage_unavailable".into(),
                    message: "down".into(),
                };
                socket.send(Message::Text(serde_json::to_string(&failed).unwrap().into())).await.unwrap();
            } else {
                let ack = strongroom_wire::Ack { message_ids };
                let r = p
                    .http
                    .post(format!("{}/v1/messages/ack", p.upstream))
                    .header("authorization", auth.clone())
                    .json(&ack)
                    .send()
                    .await
                    .unwrap();
                assert!(r.status().is_success());
            }
        }
    })
}

/// `watch` sends an ack the relay could not store again, and only the ids
/// it acknowledged itself (the relay cannot make it acknowledge others).
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn watch_sends_a_failed_ack_again_and_only_its_own_ids() {
    let dir = temp_dir("ack-failed");
    let (server, proxy) = behind_proxy(&dir, axum::routing::get(failing_acks)).await;
    let (mut alice, mut bob) = two_clients(&dir, &server).await;
    let conv = alice.direct_with("bob").await.unwrap();
    for n in 0..3 {
        alice.send_text(conv, &format!("m{n}")).await.unwrap();
    }
    let shown = bob.watch(None, Some(std::time::Duration::from_secs(2)), |_| {}, |w| panic!("warning: {w}")).await;
    assert_eq!(shown.unwrap(), 3);
    let heard = proxy.acks_heard.lock().unwrap().clone();
    // The first frame failed; its ids came again, each once, with the rest.
    let mut later: Vec<_> = heard.iter().skip(1).flatten().copied().collect();
    later.sort();
    assert_eq!(later.len(), 3, "{heard:?}");
    later.dedup();
    assert_eq!(later.len(), 3, "an id acknowledged twice after the failure: {heard:?}");
    assert!(heard[0].iter().all(|m| later.contains(m)), "{heard:?}");
    let stranger = strongroom_crypto::ids::MessageId::from_bytes([0xee; 16]);
    assert!(!later.contains(&stranger), "acknowledged an id the relay made up: {heard:?}");
    // Stored upstream now: nothing is queued for Bob any more.
    assert!(bob.sync().await.unwrap().received.is_empty());
}

/// Alice sends Bob one message; Bob watches for a second through a
/// `failing_acks` relay set up by `setup`, and is shown it.
async fn watched_once(tag: &str, setup: impl FnOnce(&Proxy)) -> (ServerProc, Arc<Proxy>, strongroom_client::Client) {
    let dir = temp_dir(tag);
    let (server, proxy) = behind_proxy(&dir, axum::routing::get(failing_acks)).await;
    setup(&proxy);
    let (mut alice, mut bob) = two_clients(&dir, &server).await;
    let conv = alice.direct_with("bob").await.unwrap();
    alice.send_text(conv, "m").await.unwrap();
    let shown = bob.watch(None, Some(std::time::Duration::from_secs(1)), |_| {}, |w| panic!("warning: {w}")).await;
    assert_eq!(shown.unwrap(), 1);
    (server, proxy, bob)
}

/// An ack whose failure the device never heard (the relay failed it as the
/// socket went) leaves the message queued; its re-delivery on the next fetch
/// is honest, not a replay: `watch` notes acks as acknowledged only once
/// the relay confirms them (`flush`, answered `flushed`).
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_ack_failure_the_device_never_heard_is_an_honest_redelivery() {
    let (_server, proxy, mut bob) = watched_once("ack-unheard", |p| p.swallow_acks.store(true, Relaxed)).await;
    assert_eq!(proxy.acks_heard.lock().unwrap().len(), 1, "acknowledged on the socket");
    // Still queued at the relay: delivered again, taken quietly, acknowledged.
    let r = bob.sync().await.unwrap();
    assert!(r.warnings.is_empty(), "a false replay alarm: {:?}", r.warnings);
    assert!(r.received.is_empty(), "shown twice");
    assert!(bob.refused().await.unwrap().is_empty(), "kept as evidence of a replay that never was");
    let served = proxy.served.lock().unwrap().len();
    assert!(bob.sync().await.unwrap().warnings.is_empty());
    assert_eq!(proxy.served.lock().unwrap().len(), served, "nothing queued once acknowledged over HTTP");
}

/// Acks the relay confirmed are noted as acknowledged: serving those
/// messages again is caught as a replay.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_confirmed_ack_makes_a_later_redelivery_a_replay() {
    let (_server, proxy, mut bob) = watched_once("ack-confirmed", |p| p.acks_to_fail.store(0, Relaxed)).await;
    *proxy.mode.lock().unwrap() = Tamper::ReplayOld;
    let r = bob.sync().await.unwrap();
    assert!(r.received.is_empty());
    assert!(r.warnings.iter().any(|w| w.contains("replay")), "{:?}", r.warnings);
}

/// A relay that predates flushes answers one with an error: `watch` stops
/// waiting for it, and what it acknowledged stays noted as not
/// acknowledged (a re-delivery is then taken quietly, not as a replay).
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_relay_without_flushes_leaves_acks_unconfirmed() {
    let (_server, proxy, mut bob) = watched_once("ack-old-relay", |p| {
        p.acks_to_fail.store(0, Relaxed);
        p.flush_unknown.store(true, Relaxed);
    })
    .await;
    assert_eq!(proxy.acks_heard.lock().unwrap().len(), 1);
    *proxy.mode.lock().unwrap() = Tamper::ReplayOld;
    let r = bob.sync().await.unwrap();
    assert!(r.received.is_empty(), "shown twice");
    assert!(r.warnings.iter().all(|w| !w.contains("replay")), "{:?}", r.warnings);
}

/// While a relay keeps failing acks, `watch` sends them again less and
/// less often (0.4 s, 0.8 s, 1.6 s …), not every 200 ms.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn watch_backs_off_while_acks_keep_failing() {
    let dir = temp_dir("acks-keep-failing");
    let (server, proxy) = behind_proxy(&dir, axum::routing::get(failing_acks)).await;
    proxy.acks_to_fail.store(usize::MAX, Relaxed);
    let (mut alice, mut bob) = two_clients(&dir, &server).await;
    let conv = alice.direct_with("bob").await.unwrap();
    alice.send_text(conv, "m").await.unwrap();
    let shown = bob.watch(None, Some(std::time::Duration::from_secs(3)), |_| {}, |w| panic!("warning: {w}")).await;
    assert_eq!(shown.unwrap(), 1);
    let heard = proxy.acks_heard.lock().unwrap().clone();
    // At 0.2 s, then 0.6, 1.4 and 3.0 (past the end): every 200 ms would be 14.
    assert!((2..=4).contains(&heard.len()), "{heard:?}");
    assert!(heard.iter().all(|ids| ids.len() == 1), "{heard:?}");
}
