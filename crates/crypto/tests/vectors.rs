//! Known-answer test vectors under `tests/vectors/`.
//!
//! Each file is `{"description", "inputs", "outputs"}` with every private
//! input in hex. The test recomputes the outputs from the inputs and requires
//! byte equality; for envelopes it also recomputes them with `spec`, an
//! independent implementation written from docs/PROTOCOL.md directly on
//! aws-lc-rs, so the document and the code cannot drift apart.
//!
//! Regenerate (only after a deliberate format change):
//! `STRONGROOM_WRITE_VECTORS=1 cargo test -p strongroom-crypto --test vectors`
#![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic, clippy::indexing_slicing)]

use std::path::PathBuf;

use rand_chacha::rand_core::{RngCore, SeedableRng};
use rand_chacha::ChaCha20Rng;
use serde_json::{json, Value};
use strongroom_crypto::attachment;
use strongroom_crypto::certs::*;
use strongroom_crypto::content::Content;
use strongroom_crypto::envelope::*;
use strongroom_crypto::ids::*;
use strongroom_crypto::keys::*;
use strongroom_crypto::link::{open_transfer, seal_transfer_with, LinkCode, LinkTarget};
use strongroom_crypto::safety_number::SafetyNumber;
use strongroom_crypto::suite::SUPPORTED_VERSIONS;

mod spec;

// ---------- JSON helpers ----------

fn h(b: &[u8]) -> Value {
    Value::String(hex::encode(b))
}
fn get<'a>(v: &'a Value, k: &str) -> &'a Value {
    v.get(k).unwrap_or_else(|| panic!("vector field {k} missing"))
}
fn bytes(v: &Value, k: &str) -> Vec<u8> {
    hex::decode(get(v, k).as_str().unwrap()).unwrap()
}
fn arr<const N: usize>(v: &Value, k: &str) -> [u8; N] {
    bytes(v, k).try_into().unwrap_or_else(|_| panic!("{k} must be {N} bytes"))
}
fn num(v: &Value, k: &str) -> u64 {
    get(v, k).as_u64().unwrap()
}
fn text(v: &Value, k: &str) -> String {
    get(v, k).as_str().unwrap().to_owned()
}
fn signing(v: &Value, k: &str) -> SigningKey {
    SigningKey::from_seed(SecretBytes::new(arr(v, k))).unwrap()
}
fn agreement(v: &Value, k: &str) -> AgreementSecret {
    AgreementSecret::from_bytes(SecretBytes::new(arr(v, k))).unwrap()
}
fn rand<const N: usize>(rng: &mut ChaCha20Rng) -> Value {
    let mut b = [0u8; N];
    rng.fill_bytes(&mut b);
    h(&b)
}
/// The stable name of an error: its variant name (and the inner variant for wrappers).
pub fn error_name(e: &impl std::fmt::Debug) -> String {
    let s = format!("{e:?}");
    let name: String = s.chars().take_while(|c| c.is_alphanumeric()).collect();
    if !matches!(name.as_str(), "Version" | "Sender" | "Decode" | "Content" | "Key") {
        return name;
    }
    // `Wrapper(Inner…)`, or a struct variant `Decode { what, source: Inner… }`.
    let rest = &s[name.len()..];
    let inner_at = if rest.starts_with('(') { Some(1) } else { rest.find("source: ").map(|i| i + 8) };
    match inner_at {
        Some(at) => format!("{name}({})", rest[at..].chars().take_while(|c| c.is_alphanumeric()).collect::<String>()),
        None => name,
    }
}

const T0: u64 = 1_767_225_600_000;

// ---------- envelopes ----------

struct Party {
    user: UserId,
    identity: SigningKey,
    device: DeviceId,
    device_key: SigningKey,
}

fn party(v: &Value) -> Party {
    Party {
        user: UserId::from_bytes(arr(v, "user_id")),
        identity: signing(v, "identity_seed"),
        device: DeviceId::from_bytes(arr(v, "device_id")),
        device_key: signing(v, "device_seed"),
    }
}

fn single_device_list(p: &Party, net: NetworkId, at: u64) -> VerifiedDeviceList {
    let entry = DeviceEntry {
        device_id: p.device,
        signing_key: p.device_key.verifying_key(),
        created_at: at,
        revoked: false,
        versions: SUPPORTED_VERSIONS,
        name: String::new(),
    };
    let list = DeviceList::first(&p.identity, net, p.user, at, vec![entry]).unwrap();
    list.verify(&DeviceListExpectation { network_id: net, user_id: p.user, pinned_identity: None, seen: None }).unwrap()
}

struct Built {
    env: Envelope,
    /// (recipient device, its keys) per recipient in input order (retention last)
    openers: Vec<(RecipientDevice, Vec<(PreKeyRef, AgreementSecret)>)>,
    sender_list: VerifiedDeviceList,
    recipients: Vec<Recipient>,
}

fn build_envelope(i: &Value) -> Built {
    build_envelope_with(i, SecretBytes::new(arr(i, "message_key")))
}

fn build_envelope_with(i: &Value, message_key: SecretBytes<32>) -> Built {
    let net = NetworkId::from_bytes(arr(i, "network_id"));
    let ts = num(i, "timestamp");
    let sender = party(get(i, "sender"));
    let sender_list = single_device_list(&sender, net, ts);
    let mut recipients = Vec::new();
    let mut openers = Vec::new();
    for r in get(i, "recipients").as_array().unwrap() {
        let p = party(r);
        let list = single_device_list(&p, net, ts);
        let secret = agreement(r, "prekey_private");
        let kind = match text(r, "prekey_kind").as_str() {
            "medium-term" => PreKeyKind::MediumTerm,
            _ => PreKeyKind::OneTime,
        };
        let key_ref = PreKeyRef { kind, id: num(r, "prekey_id") as u32 };
        let signed =
            SignedPreKey::sign(&p.device_key, net, p.user, p.device, key_ref, secret.public(), ts, ts + 86_400_000)
                .unwrap();
        recipients.push(Recipient::from(&signed.verify(&list.device(p.device).unwrap(), ts).unwrap()));
        openers.push((
            RecipientDevice {
                network_id: net,
                user_id: p.user,
                identity_key: p.identity.verifying_key(),
                device_id: p.device,
            },
            vec![(key_ref, secret)],
        ));
    }
    if let Some(ret) = i.get("retention") {
        let network_key = signing(ret, "network_seed");
        let secret = agreement(ret, "agreement_private");
        let device = RetentionDevice {
            device_id: DeviceId::from_bytes(arr(ret, "device_id")),
            signing_key: signing(ret, "signing_seed").verifying_key(),
            agreement_key: secret.public(),
            agreement_key_id: num(ret, "agreement_key_id") as u32,
            versions: SUPPORTED_VERSIONS,
            state: RetentionState::Active,
            name: text(ret, "name"),
        };
        let policy = NetworkPolicy::sign(&network_key, net, 1, ts, vec![device.clone()]).unwrap();
        let verified = PolicyTracker::new(network_key.verifying_key(), net).verify(&policy).unwrap();
        recipients.extend(verified.retention_recipients());
        openers.push((
            RecipientDevice {
                network_id: net,
                user_id: UserId::RETENTION,
                identity_key: network_key.verifying_key(),
                device_id: device.device_id,
            },
            vec![(PreKeyRef { kind: PreKeyKind::Retention, id: device.agreement_key_id }, secret)],
        ));
    }
    let meta = MessageMeta {
        host_network_id: NetworkId::from_bytes(arr(i, "host_network_id")),
        conversation_id: ConversationId::from_bytes(arr(i, "conversation_id")),
        message_id: MessageId::from_bytes(arr(i, "message_id")),
        timestamp: ts,
        ttl_secs: num(i, "ttl_secs") as u32,
        burn_on_read_secs: num(i, "burn_on_read_secs") as u32,
        membership: MembershipCommitment { version: num(i, "membership_version"), hash: arr(i, "membership_hash") },
    };
    let s = Sender {
        network_id: net,
        user_id: sender.user,
        identity_key: sender.identity.verifying_key(),
        device_id: sender.device,
        signing_key: &sender.device_key,
    };
    let randomness = SealRandomness { message_key, ephemeral: SecretBytes::new(arr(i, "ephemeral_private")) };
    let env = seal_with(&s, &meta, &Content::Text(text(i, "text")), &recipients, randomness).unwrap();
    Built { env, openers, sender_list, recipients }
}

fn envelope_outputs(i: &Value) -> Value {
    let b = build_envelope(i);
    // Every recipient opens its delivery and reads the text.
    let mut deliveries = Vec::new();
    for (me, keys) in &b.openers {
        let d = b.env.for_device(me.network_id, me.user_id, me.device_id).unwrap();
        let wire = d.encode();
        let opened = DeliveredEnvelope::decode(&wire)
            .unwrap()
            .open(me, &keys[..], &b.sender_list, &mut MemoryReplayGuard::default(), num(i, "timestamp"))
            .unwrap();
        assert_eq!(opened.content, Content::Text(text(i, "text")));
        deliveries.push(h(&wire));
    }
    let _ = &b.recipients;
    json!({
        "header": h(&b.env.header().encode()),
        "content": h(&Content::Text(text(i, "text")).encode().unwrap()),
        "envelope": h(&b.env.encode()),
        "deliveries_in_recipient_order": deliveries,
    })
}

fn party_inputs(rng: &mut ChaCha20Rng) -> Value {
    json!({"user_id": rand::<16>(rng), "identity_seed": rand::<32>(rng), "device_id": rand::<16>(rng), "device_seed": rand::<32>(rng)})
}

fn envelope_inputs(seed: u64, recipients: usize, retention: bool, text: &str) -> Value {
    let mut rng = ChaCha20Rng::seed_from_u64(seed);
    let mut rs = Vec::new();
    for k in 0..recipients {
        let mut p = party_inputs(&mut rng);
        p["prekey_kind"] = json!(if k % 2 == 0 { "medium-term" } else { "one-time" });
        p["prekey_id"] = json!(1000 + k);
        p["prekey_private"] = rand::<32>(&mut rng);
        rs.push(p);
    }
    let network = rand::<16>(&mut rng);
    let mut v = json!({
        "network_id": network.clone(),
        "host_network_id": network,
        "conversation_id": rand::<16>(&mut rng),
        "message_id": rand::<16>(&mut rng),
        "timestamp": T0,
        "ttl_secs": 3600,
        "burn_on_read_secs": 0,
        "membership_version": seed,
        "membership_hash": rand::<32>(&mut rng),
        "text": text,
        "sender": party_inputs(&mut rng),
        "message_key": rand::<32>(&mut rng),
        "ephemeral_private": rand::<32>(&mut rng),
        "recipients": rs,
    });
    if retention {
        v["retention"] = json!({
            "network_seed": rand::<32>(&mut rng), "device_id": rand::<16>(&mut rng), "signing_seed": rand::<32>(&mut rng),
            "agreement_private": rand::<32>(&mut rng), "agreement_key_id": 7, "name": "Acme archive"});
    }
    v
}

// ---------- other structures ----------

fn policy_from(i: &Value) -> (SigningKey, NetworkId, NetworkPolicy) {
    let nk = signing(i, "network_seed");
    let retention = get(i, "retention")
        .as_array()
        .unwrap()
        .iter()
        .map(|d| RetentionDevice {
            device_id: DeviceId::from_bytes(arr(d, "device_id")),
            signing_key: VerifyingKey::from_bytes(arr(d, "signing_public")).unwrap(),
            agreement_key: AgreementPublic::from_bytes(arr(d, "agreement_public")).unwrap(),
            agreement_key_id: num(d, "agreement_key_id") as u32,
            versions: num(d, "versions") as u32,
            state: if text(d, "state") == "active" { RetentionState::Active } else { RetentionState::Draining },
            name: text(d, "name"),
        })
        .collect();
    let partners = get(i, "partners")
        .as_array()
        .unwrap()
        .iter()
        .map(|p| FederationPartner {
            network_id: NetworkId::from_bytes(arr(p, "network_id")),
            key_fingerprint: arr(p, "key_fingerprint"),
            relay_url: text(p, "relay_url"),
            relay_key: VerifyingKey::from_bytes(arr(p, "relay_public")).unwrap(),
            features: num(p, "features") as u32,
        })
        .collect();
    let floor = num(i, "retention_floor_days") as u32;
    let net = NetworkId::from_bytes(arr(i, "network_id"));
    let entries = PolicyEntries { retention, partners, retention_floor_days: Some(floor) };
    let p = NetworkPolicy::sign_entries(&nk, net, num(i, "version"), num(i, "issued_at"), entries).unwrap();
    (nk, net, p)
}

fn policy_outputs(i: &Value) -> Value {
    let (nk, net, p) = policy_from(i);
    let v = PolicyTracker::new(nk.verifying_key(), net).verify(&NetworkPolicy::decode(&p.encode()).unwrap()).unwrap();
    let wrapped: Vec<Value> = v.retention_recipients().iter().map(|r| h(r.address().2.as_bytes())).collect();
    json!({
        "network_public": h(nk.verifying_key().as_bytes()),
        "fingerprint": NetworkFingerprint::of(&nk.verifying_key()).to_string(),
        "policy": h(&p.encode()),
        "retention_devices_wrapped_to": wrapped,
    })
}

fn device_list_outputs(i: &Value) -> Value {
    let id = signing(i, "identity_seed");
    let devices: Vec<DeviceEntry> = get(i, "devices")
        .as_array()
        .unwrap()
        .iter()
        .map(|d| DeviceEntry {
            device_id: DeviceId::from_bytes(arr(d, "device_id")),
            signing_key: VerifyingKey::from_bytes(arr(d, "signing_public")).unwrap(),
            created_at: num(d, "created_at"),
            revoked: get(d, "revoked").as_bool().unwrap(),
            versions: num(d, "versions") as u32,
            name: text(d, "name"),
        })
        .collect();
    let net = NetworkId::from_bytes(arr(i, "network_id"));
    let user = UserId::from_bytes(arr(i, "user_id"));
    let l =
        DeviceList::sign(&id, net, user, num(i, "version"), arr(i, "previous"), num(i, "issued_at"), devices.clone())
            .unwrap();
    // The list after it: the active device with the lowest id revoked.
    let revoke = devices.iter().filter(|d| !d.revoked).map(|d| d.device_id).min().unwrap();
    let later: Vec<DeviceEntry> = devices
        .into_iter()
        .map(|mut d| {
            d.revoked |= d.device_id == revoke;
            d
        })
        .collect();
    let next = l.next(&id, num(i, "issued_at") + 1000, later).unwrap();
    let expect = DeviceListExpectation { network_id: net, user_id: user, pinned_identity: None, seen: None };
    let verified = l.verify(&expect).unwrap().successor(&DeviceList::decode(&next.encode()).unwrap()).unwrap();
    assert_eq!(verified.active_devices().count(), 1);
    json!({
        "identity_public": h(id.verifying_key().as_bytes()),
        "device_list": h(&l.encode()),
        "digest": h(&l.digest()),
        "next_device_list": h(&next.encode()),
    })
}

fn prekey_from(i: &Value) -> (AgreementSecret, SignedPreKey) {
    let secret = agreement(i, "prekey_private");
    let pk = SignedPreKey::sign(
        &signing(i, "device_seed"),
        NetworkId::from_bytes(arr(i, "network_id")),
        UserId::from_bytes(arr(i, "user_id")),
        DeviceId::from_bytes(arr(i, "device_id")),
        PreKeyRef { kind: PreKeyKind::MediumTerm, id: num(i, "prekey_id") as u32 },
        secret.public(),
        num(i, "created_at"),
        num(i, "expires_at"),
    )
    .unwrap();
    (secret, pk)
}

fn prekey_outputs(i: &Value) -> Value {
    let (secret, pk) = prekey_from(i);
    json!({"prekey_public": h(secret.public().as_bytes()), "signed_prekey": h(&pk.encode())})
}

fn attachment_outputs(i: &Value) -> Value {
    let key = SecretBytes::new(arr(i, "file_key"));
    let plain = bytes(i, "plaintext");
    let mut blob = Vec::new();
    let s = attachment::encrypt(&key, arr(i, "stream_id"), num(i, "chunk_size") as u32, &plain[..], &mut blob).unwrap();
    let mut back = Vec::new();
    attachment::decrypt(&key, &blob[..], &mut back).unwrap();
    assert_eq!(back, plain);
    json!({"blob": h(&blob), "blob_sha256": h(&s.ciphertext_sha256)})
}

fn safety_outputs(i: &Value) -> Value {
    let key = |k: &str| VerifyingKey::from_bytes(arr(i, k)).unwrap();
    let (na, nb) = (NetworkId::from_bytes(arr(i, "network_a")), NetworkId::from_bytes(arr(i, "network_b")));
    let (ua, ub) = (UserId::from_bytes(arr(i, "user_a")), UserId::from_bytes(arr(i, "user_b")));
    let (ka, kb) = (key("identity_a"), key("identity_b"));
    let sn = SafetyNumber::new((&na, &ua, &ka), (&nb, &ub, &kb));
    assert_eq!(sn, SafetyNumber::new((&nb, &ub, &kb), (&na, &ua, &ka)));
    json!({"digits": sn.digits(), "qr": sn.qr_string()})
}

fn link_target(i: &Value) -> LinkTarget {
    LinkTarget {
        network_id: NetworkId::from_bytes(arr(i, "network_id")),
        user_id: UserId::from_bytes(arr(i, "user_id")),
        device_id: DeviceId::from_bytes(arr(i, "device_id")),
    }
}

fn link_code(i: &Value) -> LinkCode {
    let device_key = signing(i, "device_seed").verifying_key();
    LinkCode::with_secret(arr(i, "link_secret"), &link_target(i), &device_key, &agreement(i, "link_private").public())
}

fn link_outputs(i: &Value) -> Value {
    let target = link_target(i);
    let device_key = signing(i, "device_seed").verifying_key();
    let link = agreement(i, "link_private");
    let network_key = signing(i, "network_seed").verifying_key();
    let identity = signing(i, "identity_seed").verifying_key();
    let code = link_code(i);
    let sealed = seal_transfer_with(
        &identity,
        &network_key,
        &target,
        &link.public(),
        &code,
        SecretBytes::new(arr(i, "ephemeral_private")),
    )
    .unwrap();
    assert_eq!(open_transfer(&sealed, &target, &link, &code).unwrap(), (identity, network_key));
    json!({
        "device_public": h(device_key.as_bytes()),
        "link_public": h(link.public().as_bytes()),
        "network_public": h(network_key.as_bytes()),
        "link_code": code.to_string(),
        "identity_public": h(identity.as_bytes()),
        "sealed_transfer": h(&sealed),
    })
}

/// Alice's device, with a one-device list, for the membership vectors.
fn membership_author(i: &Value) -> (Party, NetworkId) {
    let p = Party {
        user: UserId::from_bytes(arr(i, "alice_user")),
        identity: signing(i, "alice_identity_seed"),
        device: DeviceId::from_bytes(arr(i, "alice_device")),
        device_key: signing(i, "alice_device_seed"),
    };
    (p, NetworkId::from_bytes(arr(i, "network_id")))
}

fn membership_outputs(i: &Value) -> Value {
    let (alice, net) = membership_author(i);
    let (bob, carol) = (UserId::from_bytes(arr(i, "bob_user")), UserId::from_bytes(arr(i, "carol_user")));
    let author = (alice.user, alice.device);
    let at = num(i, "issued_at");
    let conv = MembershipStatement::creation_id(net, author, at, ConversationKind::Room, vec![alice.user, bob]);
    let create = MembershipStatement::sign(
        &alice.device_key,
        net,
        conv,
        None,
        author,
        at,
        MembershipAction::Create(ConversationKind::Room),
        vec![bob, alice.user],
    )
    .unwrap();
    let mut state = MembershipState::create(&create).unwrap();
    let add = MembershipStatement::sign(
        &alice.device_key,
        net,
        conv,
        Some(&state.commitment),
        author,
        at + 1000,
        MembershipAction::Add,
        vec![carol],
    )
    .unwrap();
    let device = single_device_list(&alice, net, T0).device(alice.device).unwrap();
    for s in [&create, &add] {
        MembershipStatement::decode(&s.encode()).unwrap().verify(&device).unwrap();
    }
    state.apply(&add).unwrap();
    json!({
        "alice_device_public": h(alice.device_key.verifying_key().as_bytes()),
        "conversation_id": h(conv.as_bytes()),
        "create": h(&create.encode()),
        "create_digest": h(&create.digest()),
        "add": h(&add.encode()),
        "add_digest": h(&add.digest()),
        "members": state.members.iter().map(|u| h(u.as_bytes())).collect::<Vec<_>>(),
        "moderators": state.moderators.iter().map(|u| h(u.as_bytes())).collect::<Vec<_>>(),
    })
}

fn retention_login_outputs(i: &Value) -> Value {
    let key = signing(i, "signing_seed");
    let login = RetentionLogin {
        network_id: NetworkId::from_bytes(arr(i, "network_id")),
        device_id: DeviceId::from_bytes(arr(i, "device_id")),
        timestamp: num(i, "timestamp"),
        nonce: arr(i, "nonce"),
    };
    let sig = login.sign(&key);
    login.verify(&key.verifying_key(), &sig).unwrap();
    json!({"signing_public": h(key.verifying_key().as_bytes()), "signed_bytes": h(&login.signed_bytes()), "signature": h(sig.as_bytes())})
}

fn checkpoint_outputs(i: &Value) -> Value {
    let key = signing(i, "signing_seed");
    let cp = ArchiveCheckpoint {
        network_id: NetworkId::from_bytes(arr(i, "network_id")),
        device_id: DeviceId::from_bytes(arr(i, "device_id")),
        tree_size: num(i, "tree_size"),
        root: arr(i, "root"),
        timestamp: num(i, "timestamp"),
    };
    let sig = cp.sign(&key);
    cp.verify(&key.verifying_key(), &sig).unwrap();
    let mut stored = Vec::new();
    stored.extend_from_slice(&cp.tree_size.to_be_bytes());
    stored.extend_from_slice(&cp.root);
    stored.extend_from_slice(&cp.timestamp.to_be_bytes());
    stored.extend_from_slice(sig.as_bytes());
    json!({"signing_public": h(key.verifying_key().as_bytes()), "signed_bytes": h(&cp.signed_bytes()), "signature": h(sig.as_bytes()), "stored": h(&stored)})
}

/// §10 record sealing. The implementation lives in strongroom-retention
/// (`Sealer`, which has its own test against this file); here the spec
/// implementation computes it.
fn archive_record_outputs(i: &Value) -> Value {
    spec::archive_record(i)
}

// ---------- negative vectors ----------

fn sha256(data: &[u8]) -> Vec<u8> {
    aws_lc_rs::digest::digest(&aws_lc_rs::digest::SHA256, data).as_ref().to_vec()
}

/// Signs `body` the way every labelled statement is signed (§1.2).
fn resign(label: &str, body: &[u8], key: &SigningKey) -> Vec<u8> {
    let mut input = label.as_bytes().to_vec();
    input.push(0);
    input.extend_from_slice(body);
    let mut out = body.to_vec();
    out.extend_from_slice(key.sign(&input).as_bytes());
    out
}

/// Re-signs a full-form envelope after its wraps changed (§4.3).
fn resign_envelope(wire: &[u8], key: &SigningKey) -> Vec<u8> {
    use strongroom_crypto::merkle::{leaf_hash, Tree};
    let ct_len = u32::from_be_bytes(wire[HEADER_LEN + 1..HEADER_LEN + 5].try_into().unwrap()) as usize;
    let ct = &wire[HEADER_LEN + 5..HEADER_LEN + 5 + ct_len];
    let n_at = HEADER_LEN + 5 + ct_len;
    let n = u32::from_be_bytes(wire[n_at..n_at + 4].try_into().unwrap()) as usize;
    let wraps = &wire[n_at + 4..n_at + 4 + n * WRAP_LEN];
    let root = Tree::new(wraps.chunks(WRAP_LEN).map(leaf_hash).collect()).unwrap().root();
    let mut signed = b"strongroom/v2/envelope\0".to_vec();
    signed.extend_from_slice(&wire[..HEADER_LEN]);
    signed.extend_from_slice(&sha256(ct));
    signed.extend_from_slice(&(n as u32).to_be_bytes());
    signed.extend_from_slice(&root);
    let mut out = wire[..wire.len() - 64].to_vec();
    out.extend_from_slice(key.sign(&signed).as_bytes());
    out
}

/// L, the order of the Ed25519 base point, little-endian.
const L: [u8; 32] = [
    0xed, 0xd3, 0xf5, 0x5c, 0x1a, 0x63, 0x12, 0x58, 0xd6, 0x9c, 0xf7, 0xa2, 0xde, 0xf9, 0xde, 0x14, 0, 0, 0, 0, 0, 0,
    0, 0, 0, 0, 0, 0, 0, 0, 0, 0x10,
];

/// The vectors every negative case refers to.
struct Context {
    group: Value,
    device_list: Value,
    prekey: Value,
    policy: Value,
    attachment: Value,
    link: Value,
    membership: Value,
}

/// Runs one negative case and names the error it fails with (it must fail).
fn run_case(c: &Value, ctx: &Context) -> String {
    let input = bytes(c, "bytes");
    let name = text(c, "name");
    let err = match text(c, "kind").as_str() {
        "delivered" => {
            let b = build_envelope(get(&ctx.group, "inputs"));
            let (me, keys) = &b.openers[num(c, "open_as_recipient") as usize];
            let keys: &[(PreKeyRef, AgreementSecret)] = if c.get("without_prekey").is_some() { &[] } else { &keys[..] };
            let now = num(c, "now");
            let mut guard = MemoryReplayGuard::default();
            let sender_list = if c.get("sender_revoked").is_some() {
                // The sender's user revoked the sending device (list version 2).
                let gi = get(&ctx.group, "inputs");
                let p = party(get(gi, "sender"));
                let entry = DeviceEntry {
                    device_id: p.device,
                    signing_key: p.device_key.verifying_key(),
                    created_at: num(gi, "timestamp"),
                    revoked: true,
                    versions: SUPPORTED_VERSIONS,
                    name: String::new(),
                };
                let net = NetworkId::from_bytes(arr(gi, "network_id"));
                let expect =
                    DeviceListExpectation { network_id: net, user_id: p.user, pinned_identity: None, seen: None };
                DeviceList::first(&p.identity, net, p.user, num(gi, "timestamp"), vec![entry])
                    .unwrap()
                    .verify(&expect)
                    .unwrap()
            } else {
                b.sender_list.clone()
            };
            if c.get("replayed").is_some() {
                DeliveredEnvelope::decode(&input).unwrap().open(me, keys, &sender_list, &mut guard, now).unwrap();
            }
            let r = DeliveredEnvelope::decode(&input).and_then(|d| d.open(me, keys, &sender_list, &mut guard, now));
            error_name(&r.expect_err(&name))
        }
        "device_list" => {
            let i = get(&ctx.device_list, "inputs");
            let pinned = c.get("pinned_identity").map(|_| VerifyingKey::from_bytes(arr(c, "pinned_identity")).unwrap());
            let expect = DeviceListExpectation {
                network_id: NetworkId::from_bytes(arr(i, "network_id")),
                user_id: UserId::from_bytes(arr(i, "user_id")),
                pinned_identity: pinned,
                seen: c.get("seen_version").map(|v| (v.as_u64().unwrap(), arr(c, "seen_digest"))),
            };
            error_name(&DeviceList::decode(&input).and_then(|l| l.verify(&expect)).expect_err(&name))
        }
        "prekey" => {
            let i = get(&ctx.prekey, "inputs");
            let (net, user, device) = (
                NetworkId::from_bytes(arr(i, "network_id")),
                UserId::from_bytes(arr(i, "user_id")),
                DeviceId::from_bytes(arr(i, "device_id")),
            );
            let owner = Party {
                user,
                identity: signing(c, "list_identity_seed"),
                device,
                device_key: signing(i, "device_seed"),
            };
            let list = single_device_list(&owner, net, T0);
            let now = num(c, "now");
            let r = SignedPreKey::decode(&input).and_then(|p| p.verify(&list.device(device).unwrap(), now));
            error_name(&r.expect_err(&name))
        }
        "policy" => {
            let (nk, net, _) = policy_from(get(&ctx.policy, "inputs"));
            let mut t = PolicyTracker::new(nk.verifying_key(), net);
            if c.get("seen_policy").is_some() {
                t.verify(&NetworkPolicy::decode(&bytes(c, "seen_policy")).unwrap()).unwrap();
            }
            error_name(&NetworkPolicy::decode(&input).and_then(|p| t.verify(&p)).expect_err(&name))
        }
        "attachment" => {
            let key = SecretBytes::new(arr(get(&ctx.attachment, "inputs"), "file_key"));
            error_name(&attachment::decrypt(&key, &input[..], std::io::sink()).expect_err(&name))
        }
        "link" => {
            let i = get(&ctx.link, "inputs");
            let (target, key, code) = (link_target(i), agreement(i, "link_private"), link_code(i));
            error_name(&open_transfer(&input, &target, &key, &code).expect_err(&name))
        }
        "membership" => {
            // Verified as Alice's device's, then applied after the vector's creation.
            let (alice, net) = membership_author(get(&ctx.membership, "inputs"));
            let device = single_device_list(&alice, net, T0).device(alice.device).unwrap();
            let create = bytes(get(&ctx.membership, "outputs"), "create");
            let run = || -> Result<(), CertError> {
                let st = MembershipStatement::decode(&input)?;
                st.verify(&device)?;
                MembershipState::create(&MembershipStatement::decode(&create)?)?.apply(&st)
            };
            error_name(&run().expect_err(&name))
        }
        other => panic!("unknown negative kind {other}"),
    };
    err
}

fn negative_outputs(ctx: &Context) -> Value {
    let gi = get(&ctx.group, "inputs");
    let b = build_envelope(gi);
    let ts = num(gi, "timestamp");
    let (me0, _) = &b.openers[0];
    let good = b.env.for_device(me0.network_id, me0.user_id, me0.device_id).unwrap().encode();
    let sender_key = signing(get(gi, "sender"), "device_seed");
    let mut cases: Vec<Value> = Vec::new();
    let mut delivered = |name: &str, input: &[u8], open_as: usize, now: u64, extra: Value| {
        let mut c =
            json!({"name": name, "kind": "delivered", "bytes": h(input), "open_as_recipient": open_as, "now": now});
        for (k, v) in extra.as_object().unwrap() {
            c[k] = v.clone();
        }
        cases.push(c);
    };
    let none = json!({});
    let mut header = good.clone();
    header[1 + 2 + 16 * 6 + 7] ^= 1; // the timestamp's last byte
    delivered("tampered header (timestamp)", &header, 0, ts, none.clone());
    // Delivered layout: header 219 | form 1 | ciphertext length 4 | ciphertext |
    // tree size 4 | leaf index 4 | wrap 101 (wrapped key last) | …
    let ct_len = u32::from_be_bytes(good[HEADER_LEN + 1..HEADER_LEN + 5].try_into().unwrap()) as usize;
    let after_ct = HEADER_LEN + 5 + ct_len;
    let mut wrap = good.clone();
    wrap[after_ct + 8 + WRAP_LEN - 1] ^= 1;
    delivered("tampered wrap", &wrap, 0, ts, none.clone());
    delivered("wrong recipient", &good, 1, ts, none.clone());
    delivered("replay (second delivery of the same message)", &good, 0, ts, json!({"replayed": true}));
    for (v, what) in [(0u8, "downgrade to version 0"), (1, "downgrade to version 1"), (3, "unknown version 3")] {
        let mut x = good.clone();
        x[0] = v;
        delivered(what, &x, 0, ts, none.clone());
    }
    let mut suite = good.clone();
    suite[2] = 2;
    delivered("unsupported suite 2", &suite, 0, ts, none.clone());
    let mut eph = good.clone();
    eph[HEADER_LEN - 32..HEADER_LEN].fill(0);
    delivered("small-order ephemeral key (u = 0)", &eph, 0, ts, none.clone());
    // S + L: the same signature with a non-canonical scalar.
    let mut s_plus_l = good.clone();
    let s_at = good.len() - 32;
    let mut carry = 0u16;
    for k in 0..32 {
        let sum = u16::from(s_plus_l[s_at + k]) + u16::from(L[k]) + carry;
        s_plus_l[s_at + k] = sum as u8;
        carry = sum >> 8;
    }
    delivered("signature with a non-canonical S (S + L)", &s_plus_l, 0, ts, none.clone());
    delivered("dated more than MAX_SKEW ahead of the opener's clock", &good, 0, ts - MAX_SKEW_MS - 1, none.clone());
    delivered("older than the 31-day replay window", &good, 0, ts + DEFAULT_REPLAY_WINDOW_MS + 1, none.clone());
    delivered("pre-key private half no longer held", &good, 0, ts, json!({"without_prekey": true}));
    delivered("truncated", &good[..good.len() - 1], 0, ts, none.clone());
    let mut trailing = good.clone();
    trailing.push(0);
    delivered("trailing byte", &trailing, 0, ts, none.clone());
    delivered("full form where a delivery is expected", &b.env.encode(), 0, ts, none.clone());
    let mut index = good.clone();
    index[after_ct + 4..after_ct + 8].copy_from_slice(&99u32.to_be_bytes());
    delivered("leaf index not below the tree size", &index, 0, ts, none.clone());
    // The sender gives recipient 1 and the retention device another message
    // key than the one its signed header commits to, and re-signs.
    let other = build_envelope_with(gi, SecretBytes::new([0x77; 32]));
    let (w1, w2) = (b.env.encode(), other.env.encode());
    let wraps_at = after_ct + 4;
    let mut forged = w1.clone();
    let keep =
        b.env.wraps().iter().position(|w| w.recipient() == (me0.network_id, me0.user_id, me0.device_id)).unwrap();
    for k in 0..b.env.wraps().len() {
        if k != keep {
            let at = wraps_at + k * WRAP_LEN;
            forged[at..at + WRAP_LEN].copy_from_slice(&w2[at..at + WRAP_LEN]);
        }
    }
    let forged = Envelope::decode(&resign_envelope(&forged, &sender_key)).unwrap();
    let retention = b.openers.len() - 1;
    for (who, what) in [
        (1, "recipient 1 given a key other than the committed one"),
        (retention, "retention device given a key other than the committed one"),
    ] {
        let (me, _) = &b.openers[who];
        let d = forged.for_device(me.network_id, me.user_id, me.device_id).unwrap().encode();
        delivered(what, &d, who, ts, none.clone());
    }

    // The sender's header names another sender: refused before the signature.
    let sender_at = 1 + 2 + 16 * 4;
    for (what, at) in [
        ("header names another sender network", 3),
        ("header names another sender user", sender_at),
        ("header names a sender device not in the list", sender_at + 16),
    ] {
        let mut x = good.clone();
        x[at] ^= 1;
        delivered(what, &x, 0, ts, none.clone());
    }
    delivered("the sending device was revoked", &good, 0, ts, json!({"sender_revoked": true}));

    // Validly signed by the sender, but the wrap, ciphertext, padding or
    // content inside is wrong: a hostile sender's envelopes.
    let k = arr::<32>(gi, "message_key");
    let full = b.env.encode();
    let header_bytes: Vec<u8> = full[..HEADER_LEN].to_vec();
    let with_ciphertext = |ct: &[u8]| -> Vec<u8> {
        let mut out = full[..HEADER_LEN + 1].to_vec();
        out.extend_from_slice(&(ct.len() as u32).to_be_bytes());
        out.extend_from_slice(ct);
        out.extend_from_slice(&full[HEADER_LEN + 5 + ct_len..]);
        resign_envelope(&out, &sender_key)
    };
    let seal_padded = |padded: &[u8]| -> Vec<u8> {
        let key = aws_lc_rs::aead::LessSafeKey::new(
            aws_lc_rs::aead::UnboundKey::new(&aws_lc_rs::aead::AES_256_GCM, &k).unwrap(),
        );
        let mut buf = padded.to_vec();
        key.seal_in_place_append_tag(
            aws_lc_rs::aead::Nonce::assume_unique_for_key([0; 12]),
            aws_lc_rs::aead::Aad::from(&header_bytes[..]),
            &mut buf,
        )
        .unwrap();
        buf
    };
    let delivery_of = |full_wire: &[u8]| {
        Envelope::decode(full_wire).unwrap().for_device(me0.network_id, me0.user_id, me0.device_id).unwrap().encode()
    };
    let mut bad_wrap = full.clone();
    let first_wrap_key = wraps_at + keep * WRAP_LEN + WRAP_LEN - 1;
    bad_wrap[first_wrap_key] ^= 1;
    delivered(
        "wrapped key altered, then signed by the sender",
        &delivery_of(&resign_envelope(&bad_wrap, &sender_key)),
        0,
        ts,
        none.clone(),
    );
    let mut ct = full[HEADER_LEN + 5..HEADER_LEN + 5 + ct_len].to_vec();
    ct[0] ^= 1;
    delivered(
        "ciphertext altered, then signed by the sender",
        &delivery_of(&with_ciphertext(&ct)),
        0,
        ts,
        none.clone(),
    );
    let content = Content::Text("x".into()).encode().unwrap();
    let mut padded = (content.len() as u32).to_be_bytes().to_vec();
    padded.extend_from_slice(&content);
    padded.resize(256, 0);
    let mut nonzero_padding = padded.clone();
    nonzero_padding[255] = 1;
    delivered(
        "padding bytes not all zero",
        &delivery_of(&with_ciphertext(&seal_padded(&nonzero_padding))),
        0,
        ts,
        none.clone(),
    );
    let mut content_v2 = padded.clone();
    content_v2[4] = 2;
    delivered("content version 2", &delivery_of(&with_ciphertext(&seal_padded(&content_v2))), 0, ts, none.clone());

    // Device lists (device_list.json's list, changed and re-signed by its identity key).
    let dli = get(&ctx.device_list, "inputs");
    let identity = signing(dli, "identity_seed");
    let list = bytes(get(&ctx.device_list, "outputs"), "device_list");
    let body = &list[..list.len() - 64];
    let first_key = 1 + 2 + 16 + 16 + 32 + 8 + 32 + 8 + 2 + 16;
    let mut weak = body.to_vec();
    weak[first_key..first_key + 32].copy_from_slice(&{
        let mut identity_point = [0u8; 32];
        identity_point[0] = 1;
        identity_point
    });
    let mut non_canonical = body.to_vec();
    let mut p_plus_2 = [0xffu8; 32];
    p_plus_2[0] = 0xef;
    p_plus_2[31] = 0x7f;
    non_canonical[first_key..first_key + 32].copy_from_slice(&p_plus_2);
    let mut no_versions = body.to_vec();
    let versions_at = first_key + 32 + 8 + 1;
    no_versions[versions_at..versions_at + 4].fill(0);
    let mut v1 = body.to_vec();
    v1[0] = 1;
    let stranger = SigningKey::from_seed(SecretBytes::new([0x5a; 32])).unwrap();
    let dl = |name: &str, input: Vec<u8>, extra: Value| {
        let mut c = json!({"name": name, "kind": "device_list", "bytes": h(&input)});
        for (k, v) in extra.as_object().unwrap() {
            c[k] = v.clone();
        }
        c
    };
    let label = "strongroom/v2/device-list";
    cases.push(dl(
        "device key is the Ed25519 identity point (small order)",
        resign(label, &weak, &identity),
        none.clone(),
    ));
    cases.push(dl("device key with y ≥ p (non-canonical)", resign(label, &non_canonical, &identity), none.clone()));
    cases.push(dl("device advertising no protocol version", resign(label, &no_versions, &identity), none.clone()));
    cases.push(dl("version 1 device list", resign(label, &v1, &identity), none.clone()));
    cases.push(dl("signed by another key", resign(label, body, &stranger), none.clone()));
    // The second entry given the first one's id (kept in order by the check).
    let mut duplicate = body.to_vec();
    let entry0 = first_key - 16;
    let entry1 = entry0 + 63 + (u16::from_be_bytes([body[entry0 + 61], body[entry0 + 62]]) as usize);
    let id0: Vec<u8> = body[entry0..entry0 + 16].to_vec();
    duplicate[entry1..entry1 + 16].copy_from_slice(&id0);
    cases.push(dl("a device listed twice", resign(label, &duplicate, &identity), none.clone()));
    let mut other_network = body.to_vec();
    other_network[3] ^= 1;
    cases.push(dl("a list for another network", resign(label, &other_network, &identity), none.clone()));
    cases.push(dl(
        "rollback below the highest version seen",
        list.clone(),
        json!({"seen_version": num(dli, "version") + 1, "seen_digest": h(&sha256(&list))}),
    ));
    // The same version, re-signed with another issued_at: a second view.
    let mut reissued = body.to_vec();
    let issued_at = 1 + 2 + 16 + 16 + 32 + 8 + 32;
    reissued[issued_at + 7] ^= 1;
    cases.push(dl(
        "another list under the version already seen",
        resign(label, &reissued, &identity),
        json!({"seen_version": num(dli, "version"), "seen_digest": h(&sha256(&list))}),
    ));
    // The next version, but chained to another list than the one seen.
    cases.push(dl(
        "the next version naming another previous list (fork)",
        list.clone(),
        json!({"seen_version": num(dli, "version") - 1, "seen_digest": h(&sha256(b"another list"))}),
    ));
    // Signed at the highest version: it follows nothing a peer has seen, so
    // it cannot make the account's real next list a rollback.
    let mut max_version = body.to_vec();
    let version_at = 1 + 2 + 16 + 16 + 32;
    max_version[version_at..version_at + 8].copy_from_slice(&u64::MAX.to_be_bytes());
    cases.push(dl(
        "a list at version 2^64-1 skipping the versions between",
        resign(label, &max_version, &identity),
        json!({"seen_version": num(dli, "version"), "seen_digest": h(&sha256(&list))}),
    ));
    let mut zero_previous = body.to_vec();
    zero_previous[version_at + 8..version_at + 40].fill(0);
    cases.push(dl(
        "a list after version 1 naming no previous list",
        resign(label, &zero_previous, &identity),
        none.clone(),
    ));
    cases.push(dl(
        "identity key differs from the pinned one",
        list.clone(),
        json!({"pinned_identity": h(stranger.verifying_key().as_bytes())}),
    ));

    // Pre-keys (prekey.json's, changed and re-signed by its device key).
    let pki = get(&ctx.prekey, "inputs");
    let device_key = signing(pki, "device_seed");
    let signed = bytes(get(&ctx.prekey, "outputs"), "signed_prekey");
    let pbody = &signed[..signed.len() - 64];
    let x_at = 1 + 2 + 16 * 3 + 1 + 4;
    let mut zero = pbody.to_vec();
    zero[x_at..x_at + 32].fill(0);
    let mut u_p = pbody.to_vec();
    let mut p = [0xffu8; 32];
    p[0] = 0xed;
    p[31] = 0x7f;
    u_p[x_at..x_at + 32].copy_from_slice(&p);
    let mut kind2 = pbody.to_vec();
    kind2[1 + 2 + 16 * 3] = 2;
    let list_identity = h(&[0x11; 32]);
    let pk = |name: &str, input: Vec<u8>, now: u64| json!({"name": name, "kind": "prekey", "bytes": h(&input), "now": now, "list_identity_seed": list_identity.clone()});
    let plabel = "strongroom/v2/prekey";
    cases.push(pk("expired pre-key", signed.clone(), num(pki, "expires_at")));
    for (what, at) in [
        ("pre-key naming another network", 3),
        ("pre-key naming another user", 3 + 16),
        ("pre-key naming another device", 3 + 32),
    ] {
        let mut x = pbody.to_vec();
        x[at] ^= 1;
        cases.push(pk(what, resign(plabel, &x, &device_key), T0));
    }
    cases.push(pk("all-zero X25519 pre-key (small order)", resign(plabel, &zero, &device_key), T0));
    cases.push(pk("X25519 pre-key u = p (non-canonical)", resign(plabel, &u_p, &device_key), T0));
    cases.push(pk("pre-key of kind 2 (retention) in a signed pre-key", resign(plabel, &kind2, &device_key), T0));

    // Policies (policy.json's network key).
    let (nk, net, current) = policy_from(get(&ctx.policy, "inputs"));
    let encoded = current.encode();
    let mut unknown = encoded[..encoded.len() - 64].to_vec();
    let count_at = 1 + 2 + 16 + 8 + 8;
    let count = u16::from_be_bytes([unknown[count_at], unknown[count_at + 1]]) + 1;
    unknown[count_at..count_at + 2].copy_from_slice(&count.to_be_bytes());
    unknown.extend_from_slice(&[9, 0, 1, 0xaa]);
    let older = NetworkPolicy::sign(&nk, net, current.version - 1, T0, vec![]).unwrap();
    let fork = NetworkPolicy::sign(&nk, net, current.version, T0 + 1, vec![]).unwrap();
    let forged_policy = resign("strongroom/v2/network-policy", &encoded[..encoded.len() - 64], &stranger);
    let pol = |name: &str, input: Vec<u8>, seen: Option<&[u8]>| {
        let mut c = json!({"name": name, "kind": "policy", "bytes": h(&input)});
        if let Some(s) = seen {
            c["seen_policy"] = h(s);
        }
        c
    };
    cases.push(pol("entry of unknown type 9", resign("strongroom/v2/network-policy", &unknown, &nk), None));
    // The floor entry (type 3, last) with a fifth body byte.
    let mut long_floor = encoded[..encoded.len() - 64].to_vec();
    let floor_len_at = long_floor.len() - 6;
    long_floor[floor_len_at..floor_len_at + 2].copy_from_slice(&5u16.to_be_bytes());
    long_floor.push(0);
    cases.push(pol(
        "an entry body with a trailing byte",
        resign("strongroom/v2/network-policy", &long_floor, &nk),
        None,
    ));
    // The first retention entry's state byte set to 3.
    let mut bad_state = encoded[..encoded.len() - 64].to_vec();
    let state_at = count_at + 2 + 1 + 2 + 16 + 32 + 32 + 4 + 4;
    bad_state[state_at] = 3;
    cases.push(pol(
        "a retention state other than active or draining",
        resign("strongroom/v2/network-policy", &bad_state, &nk),
        None,
    ));
    cases.push(pol("rollback to an older version", older.encode(), Some(&encoded)));
    cases.push(pol("different policy under the same version", fork.encode(), Some(&encoded)));
    cases.push(pol("signed by a key other than the pinned network key", forged_policy, None));

    // Attachments.
    let ai = get(&ctx.attachment, "inputs");
    let blob = bytes(get(&ctx.attachment, "outputs"), "blob");
    let cut = attachment::STREAM_HEADER_LEN + 2 * (num(ai, "chunk_size") as usize + 16);
    cases.push(
        json!({"name": "attachment truncated at a chunk boundary", "kind": "attachment", "bytes": h(&blob[..cut])}),
    );
    let mut swapped = blob.clone();
    let chunk = num(ai, "chunk_size") as usize + 16;
    let (a, b2) = (attachment::STREAM_HEADER_LEN, attachment::STREAM_HEADER_LEN + chunk);
    let first: Vec<u8> = swapped[a..a + chunk].to_vec();
    let second: Vec<u8> = swapped[b2..b2 + chunk].to_vec();
    swapped[a..a + chunk].copy_from_slice(&second);
    swapped[b2..b2 + chunk].copy_from_slice(&first);
    cases.push(json!({"name": "attachment chunks 0 and 1 swapped", "kind": "attachment", "bytes": h(&swapped)}));
    let mut small_chunks = blob.clone();
    small_chunks[7..11].copy_from_slice(&100u32.to_be_bytes());
    cases.push(json!({"name": "attachment chunk size below 1024", "kind": "attachment", "bytes": h(&small_chunks)}));
    let mut v1_blob = blob.clone();
    v1_blob[4] = 1;
    cases.push(json!({"name": "attachment stream version 1", "kind": "attachment", "bytes": h(&v1_blob)}));
    let mut magic = blob.clone();
    magic[0] = b'X';
    cases.push(json!({"name": "not an attachment (magic)", "kind": "attachment", "bytes": h(&magic)}));

    // Linking.
    let mut sealed = bytes(get(&ctx.link, "outputs"), "sealed_transfer");
    sealed[40] ^= 1;
    cases.push(json!({"name": "sealed link transfer altered", "kind": "link", "bytes": h(&sealed)}));
    cases.push(json!({"name": "sealed link transfer of the wrong length", "kind": "link", "bytes": h(&sealed[..100])}));

    // Membership (membership.json's statement 2, changed and re-signed by Alice's device).
    let mi = get(&ctx.membership, "inputs");
    let alice_device = signing(mi, "alice_device_seed");
    let add = bytes(get(&ctx.membership, "outputs"), "add");
    let body = &add[..add.len() - 64];
    let seq_at = 1 + 2 + 16 + 16;
    let action_at = seq_at + 8 + 32 + 16 + 16 + 8;
    let label = "strongroom/v2/membership";
    let ms = |name: &str, input: Vec<u8>| json!({"name": name, "kind": "membership", "bytes": h(&input)});
    cases.push(ms("membership statement signed by another key", resign(label, body, &stranger)));
    let mut fork = body.to_vec();
    fork[seq_at + 8] ^= 1;
    cases.push(ms("statement 2 naming another statement 1 (fork)", resign(label, &fork, &alice_device)));
    let mut gap = body.to_vec();
    gap[seq_at + 7] = 3;
    cases.push(ms("statement 3 applied after statement 1", resign(label, &gap, &alice_device)));
    let mut remove = body.to_vec();
    remove[action_at] = 3;
    cases.push(ms("removing someone who is not a member", resign(label, &remove, &alice_device)));
    let mut unknown = body.to_vec();
    unknown[action_at] = 9;
    cases.push(ms("an unknown membership action", resign(label, &unknown, &alice_device)));
    let mut creation_kind = body.to_vec();
    creation_kind[action_at + 1] = 2;
    cases.push(ms("a kind on a statement that creates nothing", resign(label, &creation_kind, &alice_device)));

    for c in &mut cases {
        c["expected_error"] = json!(run_case(c, ctx));
    }
    json!({"cases": cases})
}

// ---------- driver ----------

fn dir() -> PathBuf {
    PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("tests/vectors")
}

fn generated_inputs() -> Vec<(&'static str, &'static str, Value)> {
    let mut rng = ChaCha20Rng::seed_from_u64(0x0057_426f_6f6d);
    let attachment_plain: Vec<u8> = (0..3 * 1024 + 100).map(|i| (i % 251) as u8).collect();
    let public = |rng: &mut ChaCha20Rng| h(SigningKey::generate(rng).verifying_key().as_bytes());
    let record_json = r#"{"kind":"text","archived_at":1767225600500,"conversation_id":"6c1f0a3e9d2b47c8a5e4f3021b9d8c7e","conversation_kind":"group","seq":7,"message_id":"0f1e2d3c4b5a69788796a5b4c3d2e1f0","sender":{"user_id":"a1a2a3a4a5a6a7a8a9aaabacadaeafb0","username":"alice","device_id":"b1b2b3b4b5b6b7b8b9babbbcbdbebfc0"},"recipients":[{"user_id":"a1a2a3a4a5a6a7a8a9aaabacadaeafb0","username":"alice"},{"user_id":"c1c2c3c4c5c6c7c8c9cacbcccdcecfd0","username":"bob"}],"sent_at":1767225600000,"ttl_secs":3600,"text":"Q3 figures attached"}"#;
    vec![
        (
            "envelope_1to1",
            "1:1 text message from Alice's device to Bob's single device",
            envelope_inputs(1, 1, false, "Hello Bob"),
        ),
        (
            "envelope_group",
            "group message to 5 devices plus a retention device named by the network policy",
            envelope_inputs(2, 5, true, "Q3 figures attached"),
        ),
        (
            "attachment",
            "attachment stream of 3 full 1 KiB chunks and a final 100-byte chunk",
            json!({
            "file_key": rand::<32>(&mut rng), "stream_id": rand::<16>(&mut rng), "chunk_size": 1024, "plaintext": h(&attachment_plain)}),
        ),
        (
            "policy",
            "network policy version 3: an active and a draining retention device, a federation partner and a retention-period floor",
            json!({
            "network_seed": rand::<32>(&mut rng), "network_id": rand::<16>(&mut rng), "version": 3, "issued_at": T0,
            "retention": [
                {"device_id": rand::<16>(&mut rng), "signing_public": public(&mut rng),
                 "agreement_public": h(AgreementSecret::generate(&mut rng).public().as_bytes()), "agreement_key_id": 7,
                 "versions": SUPPORTED_VERSIONS, "state": "active", "name": "Acme archive"},
                {"device_id": rand::<16>(&mut rng), "signing_public": public(&mut rng),
                 "agreement_public": h(AgreementSecret::generate(&mut rng).public().as_bytes()), "agreement_key_id": 3,
                 "versions": SUPPORTED_VERSIONS, "state": "draining", "name": "Acme archive (old)"}],
            "partners": [{"network_id": rand::<16>(&mut rng), "key_fingerprint": rand::<32>(&mut rng),
                "relay_url": "https://relay.partner.example", "relay_public": public(&mut rng), "features": 3}],
            "retention_floor_days": 2555}),
        ),
        (
            "device_list",
            "device list version 4 with two active devices and one revoked",
            json!({
            "identity_seed": rand::<32>(&mut rng), "network_id": rand::<16>(&mut rng), "user_id": rand::<16>(&mut rng), "version": 4, "issued_at": T0,
            "devices": (0..3).map(|k| json!({"device_id": rand::<16>(&mut rng), "signing_public": public(&mut rng),
                "created_at": T0 - 1000 * k, "revoked": k == 2, "versions": SUPPORTED_VERSIONS, "name": format!("device {k}")})).collect::<Vec<_>>(),
            // Fixed, not drawn from the generator, so the other vectors keep their inputs.
            "previous": h(&sha256(b"strongroom device list version 3"))}),
        ),
        (
            "prekey",
            "signed medium-term pre-key",
            json!({
            "device_seed": rand::<32>(&mut rng), "network_id": rand::<16>(&mut rng), "user_id": rand::<16>(&mut rng), "device_id": rand::<16>(&mut rng),
            "prekey_id": 42, "prekey_private": rand::<32>(&mut rng), "created_at": T0, "expires_at": T0 + 7 * 86_400_000}),
        ),
        (
            "safety_number",
            "safety number of two identities in two networks (same from both sides)",
            json!({
            "network_a": rand::<16>(&mut rng), "user_a": rand::<16>(&mut rng), "identity_a": public(&mut rng),
            "network_b": rand::<16>(&mut rng), "user_b": rand::<16>(&mut rng), "identity_b": public(&mut rng)}),
        ),
        (
            "link",
            "linking a new device: its link code and the identity and network public keys sealed to it (section 8)",
            json!({
            "network_id": rand::<16>(&mut rng), "user_id": rand::<16>(&mut rng), "device_id": rand::<16>(&mut rng),
            "device_seed": rand::<32>(&mut rng), "link_private": rand::<32>(&mut rng), "identity_seed": rand::<32>(&mut rng),
            "network_seed": rand::<32>(&mut rng), "ephemeral_private": rand::<32>(&mut rng),
            // Fixed, not drawn: the vectors after this one keep their inputs.
            "link_secret": "5ec2e7000000000000a1"}),
        ),
        (
            "retention_login",
            "a retention device's login statement and signature (section 10)",
            json!({
            "network_id": rand::<16>(&mut rng), "device_id": rand::<16>(&mut rng), "timestamp": T0, "nonce": rand::<16>(&mut rng),
            "signing_seed": rand::<32>(&mut rng)}),
        ),
        (
            "checkpoint",
            "an archive checkpoint: signed statement and stored form (section 10)",
            json!({
            "network_id": rand::<16>(&mut rng), "device_id": rand::<16>(&mut rng), "tree_size": 1000, "root": rand::<32>(&mut rng),
            "timestamp": T0, "signing_seed": rand::<32>(&mut rng)}),
        ),
        (
            "archive_record",
            "one archive record sealed as leaf 41 under its own derived key (section 10)",
            json!({
            "archive_key": rand::<32>(&mut rng), "network_id": rand::<16>(&mut rng), "device_id": rand::<16>(&mut rng),
            "index": 41, "salt": rand::<32>(&mut rng), "record_json": record_json}),
        ),
        (
            "membership",
            "membership statements: alice creates a room with bob, then adds carol (section 3.4)",
            // Fixed, not drawn: the vectors before keep their inputs.
            json!({
            "network_id": "6d656d626572736869702d6e65742d31",
            "alice_user": "11111111111111111111111111111111", "alice_device": "a1a1a1a1a1a1a1a1a1a1a1a1a1a1a1a1",
            "alice_device_seed": h(&sha256(b"strongroom membership vector: alice device")),
            "alice_identity_seed": h(&sha256(b"strongroom membership vector: alice identity")),
            "bob_user": "22222222222222222222222222222222", "carol_user": "33333333333333333333333333333333",
            "issued_at": T0}),
        ),
        (
            "negative",
            "inputs that must fail, each with the error it fails with; built on the other vectors (see each case's kind)",
            json!({}),
        ),
    ]
}

fn context(all: &[(String, Value)]) -> Context {
    let find = |n: &str| all.iter().find(|(k, _)| k == n).map(|(_, v)| v.clone()).unwrap();
    Context {
        group: find("envelope_group"),
        device_list: find("device_list"),
        prekey: find("prekey"),
        policy: find("policy"),
        attachment: find("attachment"),
        link: find("link"),
        membership: find("membership"),
    }
}

fn outputs(name: &str, inputs: &Value, all: &[(String, Value)]) -> Value {
    match name {
        "envelope_1to1" | "envelope_group" => envelope_outputs(inputs),
        "attachment" => attachment_outputs(inputs),
        "policy" => policy_outputs(inputs),
        "device_list" => device_list_outputs(inputs),
        "prekey" => prekey_outputs(inputs),
        "safety_number" => safety_outputs(inputs),
        "link" => link_outputs(inputs),
        "retention_login" => retention_login_outputs(inputs),
        "checkpoint" => checkpoint_outputs(inputs),
        "archive_record" => archive_record_outputs(inputs),
        "membership" => membership_outputs(inputs),
        "negative" => negative_outputs(&context(all)),
        other => panic!("unknown vector {other}"),
    }
}

fn load_all() -> Vec<(String, Value)> {
    generated_inputs()
        .into_iter()
        .map(|(name, _, _)| {
            let path = dir().join(format!("{name}.json"));
            (name.to_owned(), serde_json::from_str(&std::fs::read_to_string(&path).unwrap()).unwrap())
        })
        .collect()
}

#[test]
fn vectors_reproduce() {
    if std::env::var_os("STRONGROOM_WRITE_VECTORS").is_some() {
        let mut done: Vec<(String, Value)> = Vec::new();
        for (name, description, inputs) in generated_inputs() {
            let out = outputs(name, &inputs, &done);
            let v = json!({"description": description, "inputs": inputs, "outputs": out});
            std::fs::write(dir().join(format!("{name}.json")), serde_json::to_string_pretty(&v).unwrap() + "\n")
                .unwrap();
            done.push((name.to_owned(), v));
        }
    }
    let mut loaded: Vec<(String, Value)> = Vec::new();
    for (name, v) in load_all() {
        let got = outputs(&name, get(&v, "inputs"), &loaded);
        assert_eq!(&got, get(&v, "outputs"), "{name}.json outputs differ from what the inputs produce");
        loaded.push((name, v));
    }
}

/// The independent implementation written from docs/PROTOCOL.md alone agrees
/// with every positive vector byte for byte.
#[test]
fn spec_implementation_agrees() {
    for (name, v) in load_all() {
        let (i, o) = (get(&v, "inputs"), get(&v, "outputs"));
        match name.as_str() {
            "envelope_1to1" | "envelope_group" => {
                assert_eq!(hex::encode(spec::envelope(i)), text(o, "envelope"), "{name}: spec implementation disagrees")
            }
            "attachment" => assert_eq!(spec::attachment(i), bytes(o, "blob")),
            "archive_record" => assert_eq!(&spec::archive_record(i), o),
            "membership" => {
                let (create, add) = spec::membership(i);
                assert_eq!(hex::encode(&create), text(o, "create"), "{name}");
                assert_eq!(hex::encode(&add), text(o, "add"), "{name}");
            }
            "prekey" => assert_eq!(hex::encode(spec::signed_prekey(i)), text(o, "signed_prekey"), "{name}"),
            "device_list" => {
                let list = spec::device_list(i);
                assert_eq!(hex::encode(&list), text(o, "device_list"), "{name}");
                assert_eq!(hex::encode(spec::next_device_list(i, &list)), text(o, "next_device_list"), "{name}");
            }
            "policy" => {
                let (policy, fingerprint) = spec::policy(i);
                assert_eq!(hex::encode(policy), text(o, "policy"), "{name}");
                assert_eq!(fingerprint, text(o, "fingerprint"), "{name}");
            }
            "safety_number" => {
                let (digits, qr) = spec::safety_number(i);
                assert_eq!(digits, text(o, "digits"), "{name}");
                assert_eq!(qr, text(o, "qr"), "{name}");
            }
            "link" => {
                let (code, sealed) = spec::link(i);
                assert_eq!(code, text(o, "link_code"), "{name}");
                assert_eq!(hex::encode(sealed), text(o, "sealed_transfer"), "{name}");
            }
            "retention_login" => {
                let (signed_bytes, signature) = spec::retention_login(i);
                assert_eq!(hex::encode(signed_bytes), text(o, "signed_bytes"), "{name}");
                assert_eq!(hex::encode(signature), text(o, "signature"), "{name}");
            }
            "checkpoint" => {
                let (signed_bytes, signature, stored) = spec::checkpoint(i);
                assert_eq!(hex::encode(signed_bytes), text(o, "signed_bytes"), "{name}");
                assert_eq!(hex::encode(signature), text(o, "signature"), "{name}");
                assert_eq!(hex::encode(stored), text(o, "stored"), "{name}");
            }
            "negative" => {}
            other => panic!("no spec comparison for vector {other}"),
        }
    }
}

/// Every stored negative case, run from its stored bytes, fails with the
/// stated error; and every kind of refusal the document names has a case.
#[test]
fn negative_vectors_fail_as_stated() {
    let all = load_all();
    let ctx = context(&all);
    let neg = get(&all.iter().find(|(n, _)| n == "negative").unwrap().1, "outputs").clone();
    let mut seen = std::collections::BTreeSet::new();
    for c in get(&neg, "cases").as_array().unwrap() {
        assert_eq!(run_case(c, &ctx), text(c, "expected_error"), "{}", text(c, "name"));
        seen.insert(text(c, "expected_error"));
    }
    for must in [
        "BadSignature",
        "NotForThisDevice",
        "Replay",
        "Version(Downgrade)",
        "Version(UnknownVersion)",
        "Version(UnsupportedSuite)",
        "BadEphemeralKey",
        "KeyCommitment",
        "BadWrap",
        "BadCiphertext",
        "BadPadding",
        "Content(UnsupportedVersion)",
        "Sender(WrongNetwork)",
        "Sender(WrongUser)",
        "Sender(UnknownDevice)",
        "Sender(RevokedDevice)",
        "DuplicateDevice",
        "WrongNetwork",
        "WrongUser",
        "WrongDevice",
        "Invalid",
        "ChunkSize",
        "Decode(Invalid)",
        "Length",
        "FutureTimestamp",
        "Stale",
        "MissingPreKey",
        "WrongForm",
        "Decode(Truncated)",
        "Decode(TrailingBytes)",
        "Key(SmallOrderKey)",
        "Key(NonCanonicalKey)",
        "IdentityChanged",
        "DeviceListRollback",
        "DeviceListConflict",
        "DeviceListFork",
        "DeviceListGap",
        "MembershipFork",
        "MembershipGap",
        "MembershipRefused",
        "Expired",
        "UnknownPolicyEntry",
        "PolicyRollback",
        "PolicyConflict",
        "Truncated",
        "Tampered",
        "Open",
    ] {
        assert!(seen.contains(must), "no negative vector fails with {must}: {seen:?}");
    }
}
