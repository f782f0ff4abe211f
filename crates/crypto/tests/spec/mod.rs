//! An independent implementation of the envelope and attachment formats,
//! written from docs/PROTOCOL.md alone and calling aws-lc-rs directly (none of
//! the crate's own code), used to check the test vectors.
#![allow(clippy::unwrap_used, clippy::indexing_slicing)]

use aws_lc_rs::{aead, agreement, digest, hkdf, signature::Ed25519KeyPair, signature::KeyPair};
use serde_json::Value;

fn hx(v: &Value, k: &str) -> Vec<u8> {
    hex::decode(v[k].as_str().unwrap()).unwrap()
}
fn n(v: &Value, k: &str) -> u64 {
    v[k].as_u64().unwrap()
}
fn ed_public(seed: &[u8]) -> Vec<u8> {
    Ed25519KeyPair::from_seed_unchecked(seed).unwrap().public_key().as_ref().to_vec()
}
fn x_public(private: &[u8]) -> Vec<u8> {
    agreement::PrivateKey::from_private_key(&agreement::X25519, private)
        .unwrap()
        .compute_public_key()
        .unwrap()
        .as_ref()
        .to_vec()
}
fn sha256(data: &[u8]) -> Vec<u8> {
    digest::digest(&digest::SHA256, data).as_ref().to_vec()
}
fn gcm(key: &[u8], nonce: [u8; 12], aad: &[u8], data: &[u8]) -> Vec<u8> {
    let k = aead::LessSafeKey::new(aead::UnboundKey::new(&aead::AES_256_GCM, key).unwrap());
    let mut buf = data.to_vec();
    k.seal_in_place_append_tag(aead::Nonce::assume_unique_for_key(nonce), aead::Aad::from(aad), &mut buf).unwrap();
    buf
}
fn hkdf32(salt: &[u8], ikm: &[u8], info: &[u8]) -> Vec<u8> {
    let mut out = [0u8; 32];
    hkdf::Salt::new(hkdf::HKDF_SHA256, salt)
        .extract(ikm)
        .expand(&[info], hkdf::HKDF_SHA256)
        .unwrap()
        .fill(&mut out)
        .unwrap();
    out.to_vec()
}
/// RFC 6962 Merkle tree hash, recursive as in the RFC.
fn mth(leaves: &[Vec<u8>]) -> Vec<u8> {
    if leaves.len() == 1 {
        return leaves[0].clone();
    }
    let mut k = 1;
    while k * 2 < leaves.len() {
        k *= 2;
    }
    let mut node = vec![1u8];
    node.extend(mth(&leaves[..k]));
    node.extend(mth(&leaves[k..]));
    sha256(&node)
}

struct R {
    network: Vec<u8>,
    user: Vec<u8>,
    device: Vec<u8>,
    identity: Vec<u8>,
    kind: u8,
    id: u32,
    public: Vec<u8>,
}

/// The full-form envelope for a vector's inputs.
pub fn envelope(i: &Value) -> Vec<u8> {
    let s = &i["sender"];
    let e_pub = x_public(&hx(i, "ephemeral_private"));
    let k = hx(i, "message_key");
    let mut commitment_input = b"strongroom/v2/key-commitment\0".to_vec();
    commitment_input.extend(&k);
    let mut header = vec![2u8, 0, 1];
    for f in ["network_id", "host_network_id", "conversation_id", "message_id"] {
        header.extend(hx(i, f));
    }
    header.extend(hx(s, "user_id"));
    header.extend(hx(s, "device_id"));
    header.extend(n(i, "timestamp").to_be_bytes());
    header.extend((n(i, "ttl_secs") as u32).to_be_bytes());
    header.extend((n(i, "burn_on_read_secs") as u32).to_be_bytes());
    header.extend(n(i, "membership_version").to_be_bytes());
    header.extend(hx(i, "membership_hash"));
    header.extend(sha256(&commitment_input));
    header.extend(&e_pub);
    assert_eq!(header.len(), 219);

    // Content: version 1, type 1 (text), u32 body length, body = u32 length | UTF-8.
    let t = i["text"].as_str().unwrap().as_bytes();
    let mut content = vec![1u8, 0, 1];
    content.extend((t.len() as u32 + 4).to_be_bytes());
    content.extend((t.len() as u32).to_be_bytes());
    content.extend(t);
    // Padding: u32 length | content | zeros, to the next power of two >= 256.
    let bucket = (content.len() + 4).max(256).next_power_of_two();
    let mut padded = (content.len() as u32).to_be_bytes().to_vec();
    padded.extend(&content);
    padded.resize(bucket, 0);
    let ciphertext = gcm(&k, [0; 12], &header, &padded);

    let mut rs: Vec<R> = i["recipients"]
        .as_array()
        .unwrap()
        .iter()
        .map(|r| R {
            network: hx(i, "network_id"),
            user: hx(r, "user_id"),
            device: hx(r, "device_id"),
            identity: ed_public(&hx(r, "identity_seed")),
            kind: if r["prekey_kind"] == "medium-term" { 0 } else { 1 },
            id: n(r, "prekey_id") as u32,
            public: x_public(&hx(r, "prekey_private")),
        })
        .collect();
    if let Some(ret) = i.get("retention") {
        rs.push(R {
            network: hx(i, "network_id"),
            user: vec![0xff; 16],
            device: hx(ret, "device_id"),
            identity: ed_public(&hx(ret, "network_seed")),
            kind: 2,
            id: n(ret, "agreement_key_id") as u32,
            public: x_public(&hx(ret, "agreement_private")),
        });
    }
    rs.sort_by(|a, b| (&a.network, &a.user, &a.device).cmp(&(&b.network, &b.user, &b.device)));

    let e = agreement::PrivateKey::from_private_key(&agreement::X25519, &hx(i, "ephemeral_private")).unwrap();
    let mut wraps = Vec::new();
    for r in &rs {
        let shared = agreement::agree(&e, agreement::UnparsedPublicKey::new(&agreement::X25519, &r.public), (), |s| {
            Ok(s.to_vec())
        })
        .unwrap();
        let mut info = b"strongroom/v2/kek\0".to_vec();
        info.extend([0, 1]);
        info.extend(hx(i, "network_id"));
        info.extend(hx(i, "host_network_id"));
        info.extend(hx(i, "message_id"));
        info.extend(&e_pub);
        info.extend(hx(s, "user_id"));
        info.extend(hx(s, "device_id"));
        info.extend(ed_public(&hx(s, "identity_seed")));
        info.extend(&r.network);
        info.extend(&r.user);
        info.extend(&r.device);
        info.extend(&r.identity);
        info.push(r.kind);
        info.extend(r.id.to_be_bytes());
        info.extend(&r.public);
        let kek = hkdf32(&[], &shared, &info);
        let mut w = r.network.clone();
        w.extend(&r.user);
        w.extend(&r.device);
        w.push(r.kind);
        w.extend(r.id.to_be_bytes());
        w.extend(gcm(&kek, [0; 12], &[], &k));
        assert_eq!(w.len(), 101);
        wraps.push(w);
    }
    let leaves: Vec<Vec<u8>> = wraps.iter().map(|w| sha256(&[&[0u8][..], w].concat())).collect();
    let mut to_sign = b"strongroom/v2/envelope\0".to_vec();
    to_sign.extend(&header);
    to_sign.extend(sha256(&ciphertext));
    to_sign.extend((wraps.len() as u32).to_be_bytes());
    to_sign.extend(mth(&leaves));
    let sig = Ed25519KeyPair::from_seed_unchecked(&hx(s, "device_seed")).unwrap().sign(&to_sign);

    let mut out = header;
    out.push(1);
    out.extend((ciphertext.len() as u32).to_be_bytes());
    out.extend(&ciphertext);
    out.extend((wraps.len() as u32).to_be_bytes());
    for w in &wraps {
        out.extend(w);
    }
    out.extend(sig.as_ref());
    out
}

/// The encrypted blob for an attachment vector's inputs.
pub fn attachment(i: &Value) -> Vec<u8> {
    let cs = n(i, "chunk_size") as usize;
    let stream_id = hx(i, "stream_id");
    let mut header = b"SRAT".to_vec();
    header.extend([2, 0, 1]);
    header.extend((cs as u32).to_be_bytes());
    header.extend(&stream_id);
    let mut info = b"strongroom/v2/attachment\0".to_vec();
    info.extend(&header);
    let key = hkdf32(&stream_id, &hx(i, "file_key"), &info);
    let plain = hx(i, "plaintext");
    let chunks: Vec<&[u8]> = if plain.is_empty() { vec![&[][..]] } else { plain.chunks(cs).collect() };
    let mut out = header;
    for (idx, c) in chunks.iter().enumerate() {
        let mut nonce = [0u8; 12];
        nonce[..8].copy_from_slice(&(idx as u64).to_be_bytes());
        nonce[11] = u8::from(idx == chunks.len() - 1);
        out.extend(gcm(&key, nonce, &[], c));
    }
    out
}

/// An archive record sealed as its leaf (PROTOCOL.md §10): the record key,
/// the segment entry and the leaf hash.
pub fn archive_record(i: &Value) -> Value {
    let mut context = b"strongroom/v2/archive-record\0".to_vec();
    context.extend(hx(i, "network_id"));
    context.extend(hx(i, "device_id"));
    context.extend(n(i, "index").to_be_bytes());
    let salt = hx(i, "salt");
    let key = hkdf32(&salt, &hx(i, "archive_key"), &context);
    let ciphertext = gcm(&key, [0; 12], &context, i["record_json"].as_str().unwrap().as_bytes());
    let mut entry = vec![1u8];
    entry.extend(((salt.len() + ciphertext.len()) as u32).to_be_bytes());
    entry.extend(&salt);
    entry.extend(&ciphertext);
    let mut leaf = vec![0u8];
    leaf.extend(n(i, "index").to_be_bytes());
    leaf.extend(&salt);
    leaf.extend(&ciphertext);
    serde_json::json!({"record_key": hex::encode(key), "entry": hex::encode(entry), "leaf_hash": hex::encode(sha256(&leaf))})
}

fn sign(seed: &[u8], label: &str, input: &[u8]) -> Vec<u8> {
    let mut m = label.as_bytes().to_vec();
    m.push(0);
    m.extend(input);
    Ed25519KeyPair::from_seed_unchecked(seed).unwrap().sign(&m).as_ref().to_vec()
}
/// `input | Ed25519(seed, label | 0x00 | input)` (§1.2).
fn signed(seed: &[u8], label: &str, mut input: Vec<u8>) -> Vec<u8> {
    let sig = sign(seed, label, &input);
    input.extend(sig);
    input
}
fn bytes16(out: &mut Vec<u8>, s: &str) {
    out.extend((s.len() as u16).to_be_bytes());
    out.extend(s.as_bytes());
}
fn x25519(private: &[u8], public: &[u8]) -> Vec<u8> {
    let k = agreement::PrivateKey::from_private_key(&agreement::X25519, private).unwrap();
    agreement::agree(&k, agreement::UnparsedPublicKey::new(&agreement::X25519, public), (), |s| Ok(s.to_vec())).unwrap()
}
/// `u8 2 | u16 1` (§1.1).
const VERSION_SUITE: [u8; 3] = [2, 0, 1];

/// The signed medium-term pre-key (§3.1), 168 bytes.
pub fn signed_prekey(i: &Value) -> Vec<u8> {
    let mut b = VERSION_SUITE.to_vec();
    for f in ["network_id", "user_id", "device_id"] {
        b.extend(hx(i, f));
    }
    b.push(0); // kind: the vector is a medium-term pre-key (§11)
    b.extend((n(i, "prekey_id") as u32).to_be_bytes());
    b.extend(x_public(&hx(i, "prekey_private")));
    b.extend(n(i, "created_at").to_be_bytes());
    b.extend(n(i, "expires_at").to_be_bytes());
    assert_eq!(b.len(), 104);
    signed(&hx(i, "device_seed"), "strongroom/v2/prekey", b)
}

/// The signed device list (§3.2).
pub fn device_list(i: &Value) -> Vec<u8> {
    let revoked: Vec<Vec<u8>> = i["devices"]
        .as_array()
        .unwrap()
        .iter()
        .filter(|d| d["revoked"].as_bool().unwrap())
        .map(|d| hx(d, "device_id"))
        .collect();
    device_list_with(i, n(i, "version"), &hx(i, "previous"), n(i, "issued_at"), &revoked)
}

/// The list that follows `list` (§3.2): version + 1, chained to SHA-256 of
/// `list`, with the active device of lowest id revoked, 1 s later.
pub fn next_device_list(i: &Value, list: &[u8]) -> Vec<u8> {
    let mut devices: Vec<&Value> = i["devices"].as_array().unwrap().iter().collect();
    devices.sort_by_key(|d| hx(d, "device_id"));
    let mut revoked: Vec<Vec<u8>> =
        devices.iter().filter(|d| d["revoked"].as_bool().unwrap()).map(|d| hx(d, "device_id")).collect();
    revoked.push(hx(devices.iter().find(|d| !d["revoked"].as_bool().unwrap()).unwrap(), "device_id"));
    device_list_with(i, n(i, "version") + 1, &sha256(list), n(i, "issued_at") + 1000, &revoked)
}

fn device_list_with(i: &Value, version: u64, previous: &[u8], issued_at: u64, revoked: &[Vec<u8>]) -> Vec<u8> {
    let seed = hx(i, "identity_seed");
    let mut b = VERSION_SUITE.to_vec();
    b.extend(hx(i, "network_id"));
    b.extend(hx(i, "user_id"));
    b.extend(ed_public(&seed));
    b.extend(version.to_be_bytes());
    assert_eq!(previous.len(), 32);
    b.extend(previous);
    b.extend(issued_at.to_be_bytes());
    let mut devices: Vec<&Value> = i["devices"].as_array().unwrap().iter().collect();
    devices.sort_by_key(|d| hx(d, "device_id"));
    b.extend((devices.len() as u16).to_be_bytes());
    for d in devices {
        b.extend(hx(d, "device_id"));
        b.extend(hx(d, "signing_public"));
        b.extend(n(d, "created_at").to_be_bytes());
        b.push(u8::from(revoked.contains(&hx(d, "device_id"))));
        b.extend((n(d, "versions") as u32).to_be_bytes());
        bytes16(&mut b, d["name"].as_str().unwrap());
    }
    signed(&seed, "strongroom/v2/device-list", b)
}

/// Membership statements (§3.4): Alice creates a room with Bob, then adds
/// Carol. The conversation id is derived from the creation.
pub fn membership(i: &Value) -> (Vec<u8>, Vec<u8>) {
    let body =
        |conversation: &[u8], seq: u64, previous: &[u8], at: u64, action: u8, kind: u8, mut users: Vec<Vec<u8>>| {
            let mut b = VERSION_SUITE.to_vec();
            b.extend(hx(i, "network_id"));
            b.extend(conversation);
            b.extend(seq.to_be_bytes());
            b.extend(previous);
            b.extend(hx(i, "alice_user"));
            b.extend(hx(i, "alice_device"));
            b.extend(at.to_be_bytes());
            b.push(action);
            b.push(kind);
            users.sort();
            b.extend((users.len() as u16).to_be_bytes());
            for u in users {
                b.extend(u);
            }
            b
        };
    let at = n(i, "issued_at");
    let members = vec![hx(i, "alice_user"), hx(i, "bob_user")];
    let mut m = b"strongroom/v2/conversation-id\0".to_vec();
    m.extend(body(&[0; 16], 1, &[0; 32], at, 1, 3, members.clone()));
    let conversation = sha256(&m)[..16].to_vec();
    let seed = hx(i, "alice_device_seed");
    let create = signed(&seed, "strongroom/v2/membership", body(&conversation, 1, &[0; 32], at, 1, 3, members));
    let add = signed(
        &seed,
        "strongroom/v2/membership",
        body(&conversation, 2, &sha256(&create), at + 1000, 2, 0, vec![hx(i, "carol_user")]),
    );
    (create, add)
}

/// The network fingerprint (§2): 16 groups of 4 lower-case hex digits.
pub fn fingerprint(network_public: &[u8]) -> String {
    let mut m = b"strongroom/v2/network-fingerprint\0".to_vec();
    m.extend(network_public);
    let h = hex::encode(sha256(&m));
    h.as_bytes().chunks(4).map(|c| std::str::from_utf8(c).unwrap()).collect::<Vec<_>>().join(" ")
}

/// The signed network policy (§3.3) and the network key's fingerprint (§2).
pub fn policy(i: &Value) -> (Vec<u8>, String) {
    let seed = hx(i, "network_seed");
    let mut entries: Vec<(u8, Vec<u8>, Vec<u8>)> = Vec::new(); // (type, key, body)
    for r in i["retention"].as_array().unwrap() {
        let mut body = hx(r, "device_id");
        body.extend(hx(r, "signing_public"));
        body.extend(hx(r, "agreement_public"));
        body.extend((n(r, "agreement_key_id") as u32).to_be_bytes());
        body.extend((n(r, "versions") as u32).to_be_bytes());
        body.push(match r["state"].as_str().unwrap() {
            "active" => 1,
            "draining" => 2,
            s => panic!("state {s}"),
        });
        bytes16(&mut body, r["name"].as_str().unwrap());
        entries.push((1, hx(r, "device_id"), body));
    }
    for p in i["partners"].as_array().unwrap() {
        let mut body = hx(p, "network_id");
        body.extend(hx(p, "key_fingerprint"));
        bytes16(&mut body, p["relay_url"].as_str().unwrap());
        body.extend(hx(p, "relay_public"));
        body.extend((n(p, "features") as u32).to_be_bytes());
        entries.push((2, hx(p, "network_id"), body));
    }
    if let Some(days) = i["retention_floor_days"].as_u64() {
        entries.push((3, Vec::new(), (days as u32).to_be_bytes().to_vec()));
    }
    entries.sort_by(|a, b| (a.0, &a.1).cmp(&(b.0, &b.1)));
    let mut b = VERSION_SUITE.to_vec();
    b.extend(hx(i, "network_id"));
    b.extend(n(i, "version").to_be_bytes());
    b.extend(n(i, "issued_at").to_be_bytes());
    b.extend((entries.len() as u16).to_be_bytes());
    for (t, _, body) in entries {
        b.push(t);
        b.extend((body.len() as u16).to_be_bytes());
        b.extend(body);
    }
    (signed(&seed, "strongroom/v2/network-policy", b), fingerprint(&ed_public(&seed)))
}

/// One party's 30-byte safety-number fingerprint (§7).
fn safety_fp(network: &[u8], user: &[u8], identity: &[u8]) -> Vec<u8> {
    let mut d0 = b"strongroom/v2/safety-number\0".to_vec();
    d0.extend(2u16.to_be_bytes());
    d0.extend(network);
    d0.extend(user);
    d0.extend(identity);
    let mut d = digest::digest(&digest::SHA512, &d0).as_ref().to_vec();
    for _ in 0..5200 {
        d.extend(identity);
        d = digest::digest(&digest::SHA512, &d).as_ref().to_vec();
    }
    d.truncate(30);
    d
}

/// The safety number of two parties (§7): the 60 digits in groups of five,
/// and the QR-code string.
pub fn safety_number(i: &Value) -> (String, String) {
    let mut parties: Vec<(String, Vec<u8>)> = ["a", "b"]
        .iter()
        .map(|p| {
            let fp = safety_fp(
                &hx(i, &format!("network_{p}")),
                &hx(i, &format!("user_{p}")),
                &hx(i, &format!("identity_{p}")),
            );
            let digits: String = fp
                .chunks(5)
                .map(|g| format!("{:05}", g.iter().fold(0u64, |acc, b| (acc << 8) | u64::from(*b)) % 100_000))
                .collect();
            (digits, fp)
        })
        .collect();
    parties.sort();
    let all: String = parties.iter().map(|p| p.0.as_str()).collect();
    let digits = all.as_bytes().chunks(5).map(|c| std::str::from_utf8(c).unwrap()).collect::<Vec<_>>().join(" ");
    let qr = format!("SRSN2:{}", parties.iter().map(|p| hex::encode_upper(&p.1)).collect::<String>());
    (digits, qr)
}

/// The link code and the sealed link transfer (§8).
pub fn link(i: &Value) -> (String, Vec<u8>) {
    let target: Vec<u8> = ["network_id", "user_id", "device_id"].iter().flat_map(|f| hx(i, f)).collect();
    let link_key = x_public(&hx(i, "link_private"));
    let secret = hx(i, "link_secret");
    let mut m = b"strongroom/v2/link-code\0".to_vec();
    m.extend(&secret);
    m.extend(&target);
    m.extend(ed_public(&hx(i, "device_seed")));
    m.extend(&link_key);
    let mut shown = secret.clone();
    shown.extend(&sha256(&m)[..6]);
    let code = hex::encode(&shown);
    let code = code.as_bytes().chunks(4).map(|c| std::str::from_utf8(c).unwrap()).collect::<Vec<_>>().join("-");

    let e = hx(i, "ephemeral_private");
    let e_pub = x_public(&e);
    let shared = x25519(&e, &link_key);
    let mut info = b"strongroom/v2/link-transfer\0".to_vec();
    info.extend(&target);
    info.extend(&link_key);
    info.extend(&e_pub);
    let key = hkdf32(&secret, &shared, &info);
    let mut plain = ed_public(&hx(i, "identity_seed"));
    plain.extend(ed_public(&hx(i, "network_seed")));
    let mut sealed = e_pub;
    sealed.extend(gcm(&key, [0; 12], &target, &plain));
    assert_eq!(sealed.len(), 112);
    (code, sealed)
}

/// The retention login (§10.2): `label | 0x00 | statement` and its signature.
pub fn retention_login(i: &Value) -> (Vec<u8>, Vec<u8>) {
    let mut st = hx(i, "network_id");
    st.extend(hx(i, "device_id"));
    st.extend(n(i, "timestamp").to_be_bytes());
    st.extend(hx(i, "nonce"));
    assert_eq!(st.len(), 56);
    let mut m = b"strongroom/v2/retention-login\0".to_vec();
    m.extend(&st);
    (m, sign(&hx(i, "signing_seed"), "strongroom/v2/retention-login", &st))
}

/// An archive checkpoint (§10.7): `label | 0x00 | statement`, its signature
/// and the 112-byte stored form.
pub fn checkpoint(i: &Value) -> (Vec<u8>, Vec<u8>, Vec<u8>) {
    let mut st = hx(i, "network_id");
    st.extend(hx(i, "device_id"));
    st.extend(n(i, "tree_size").to_be_bytes());
    st.extend(hx(i, "root"));
    st.extend(n(i, "timestamp").to_be_bytes());
    assert_eq!(st.len(), 80);
    let mut m = b"strongroom/v2/archive-checkpoint\0".to_vec();
    m.extend(&st);
    let sig = sign(&hx(i, "signing_seed"), "strongroom/v2/archive-checkpoint", &st);
    let mut stored = st[32..].to_vec();
    stored.extend(&sig);
    assert_eq!(stored.len(), 112);
    (m, sig, stored)
}
