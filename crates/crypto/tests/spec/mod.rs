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
    let mut header = vec![1u8, 0, 1];
    for k in ["network_id", "conversation_id", "message_id"] {
        header.extend(hx(i, k));
    }
    header.extend(hx(s, "user_id"));
    header.extend(hx(s, "device_id"));
    header.extend(n(i, "timestamp").to_be_bytes());
    header.extend((n(i, "ttl_secs") as u32).to_be_bytes());
    header.extend((n(i, "burn_on_read_secs") as u32).to_be_bytes());
    header.extend(&e_pub);
    assert_eq!(header.len(), 131);

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
    let k = hx(i, "message_key");
    let ciphertext = gcm(&k, [0; 12], &header, &padded);

    let mut rs: Vec<R> = i["recipients"]
        .as_array()
        .unwrap()
        .iter()
        .map(|r| R {
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
            user: vec![0xff; 16],
            device: hx(ret, "device_id"),
            identity: ed_public(&hx(ret, "network_seed")),
            kind: 2,
            id: n(ret, "agreement_key_id") as u32,
            public: x_public(&hx(ret, "agreement_private")),
        });
    }
    rs.sort_by(|a, b| (&a.user, &a.device).cmp(&(&b.user, &b.device)));

    let e = agreement::PrivateKey::from_private_key(&agreement::X25519, &hx(i, "ephemeral_private")).unwrap();
    let mut wraps = Vec::new();
    for r in &rs {
        let shared = agreement::agree(&e, agreement::UnparsedPublicKey::new(&agreement::X25519, &r.public), (), |s| {
            Ok(s.to_vec())
        })
        .unwrap();
        let mut info = b"strongroom/v1/kek\0".to_vec();
        info.extend([0, 1]);
        info.extend(hx(i, "network_id"));
        info.extend(hx(i, "message_id"));
        info.extend(&e_pub);
        info.extend(hx(s, "user_id"));
        info.extend(hx(s, "device_id"));
        info.extend(ed_public(&hx(s, "identity_seed")));
        info.extend(&r.user);
        info.extend(&r.device);
        info.extend(&r.identity);
        info.push(r.kind);
        info.extend(r.id.to_be_bytes());
        info.extend(&r.public);
        let kek = hkdf32(&[], &shared, &info);
        let mut w = r.user.clone();
        w.extend(&r.device);
        w.push(r.kind);
        w.extend(r.id.to_be_bytes());
        w.extend(gcm(&kek, [0; 12], &[], &k));
        assert_eq!(w.len(), 85);
        wraps.push(w);
    }
    let leaves: Vec<Vec<u8>> = wraps.iter().map(|w| sha256(&[&[0u8][..], w].concat())).collect();
    let mut to_sign = b"strongroom/v1/envelope\0".to_vec();
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
    header.extend([1, 0, 1]);
    header.extend((cs as u32).to_be_bytes());
    header.extend(&stream_id);
    let mut info = b"strongroom/v1/attachment\0".to_vec();
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
