//! Seal and open costs, and attachment streaming throughput.
//!
//! `seal/bare_per_recipient/1000` is the floor: 1000 × (X25519 + HKDF-SHA256 +
//! AES-256-GCM key wrap) straight on aws-lc-rs. `seal/1000` should stay within
//! 1.3× of it.
#![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic, clippy::indexing_slicing, missing_docs)]

#[path = "../tests/common/mod.rs"]
mod common;

use aws_lc_rs::{aead, agreement, hkdf};
use common::*;
use criterion::{criterion_group, criterion_main, BatchSize, Criterion, Throughput};
use rand_chacha::rand_core::{RngCore, SeedableRng};
use rand_chacha::ChaCha20Rng;
use strongroom_crypto::attachment::{self, AttachmentOpener, AttachmentSealer, DEFAULT_CHUNK_SIZE};
use strongroom_crypto::content::Content;
use strongroom_crypto::envelope::*;
use strongroom_crypto::keys::SecretBytes;

fn kib_text() -> Content {
    Content::Text("x".repeat(1024))
}

fn bare_per_recipient(publics: &[[u8; 32]], ephemeral: &agreement::PrivateKey, key: &[u8; 32]) {
    struct Len;
    impl hkdf::KeyType for Len {
        fn len(&self) -> usize {
            32
        }
    }
    let info = [0u8; 250];
    for p in publics {
        let shared = agreement::agree(ephemeral, agreement::UnparsedPublicKey::new(&agreement::X25519, p), (), |s| {
            let mut o = [0u8; 32];
            o.copy_from_slice(s);
            Ok(o)
        })
        .unwrap();
        let mut kek = [0u8; 32];
        hkdf::Salt::new(hkdf::HKDF_SHA256, &[]).extract(&shared).expand(&[&info], Len).unwrap().fill(&mut kek).unwrap();
        let k = aead::LessSafeKey::new(aead::UnboundKey::new(&aead::AES_256_GCM, &kek).unwrap());
        let mut buf = *key;
        let tag = k
            .seal_in_place_separate_tag(aead::Nonce::assume_unique_for_key([0; 12]), aead::Aad::empty(), &mut buf)
            .unwrap();
        let _ = std::hint::black_box((buf, tag));
    }
}

fn seal_benches(c: &mut Criterion) {
    let mut g = c.benchmark_group("seal");
    g.sample_size(20);
    for n in [1usize, 10, 100, 1000] {
        let w = World::new(100 + n as u64, &vec![1; n + 1], false);
        let users: Vec<usize> = (1..=n).collect();
        let recipients = w.recipients(&users);
        let mut rng = ChaCha20Rng::seed_from_u64(1);
        let content = kib_text();
        g.bench_function(format!("{n}"), |b| {
            b.iter(|| seal(&w.sender(0, 0), &w.meta(), &content, &recipients, &mut rng).unwrap())
        });
        if n == 1000 {
            let publics: Vec<[u8; 32]> = (0..n)
                .map(|_| strongroom_crypto::keys::AgreementSecret::generate(&mut rng).public().as_bytes().to_owned())
                .collect();
            let mut seed = [0u8; 32];
            rng.fill_bytes(&mut seed);
            let eph = agreement::PrivateKey::from_private_key(&agreement::X25519, &seed).unwrap();
            g.bench_function("bare_per_recipient/1000", |b| b.iter(|| bare_per_recipient(&publics, &eph, &seed)));
        }
    }
    g.finish();
}

fn open_benches(c: &mut Criterion) {
    let mut g = c.benchmark_group("open");
    for n in [1usize, 1000] {
        let w = World::new(200 + n as u64, &vec![1; n + 1], false);
        let users: Vec<usize> = (1..=n).collect();
        let env =
            seal(&w.sender(0, 0), &w.meta(), &kib_text(), &w.recipients(&users), &mut ChaCha20Rng::seed_from_u64(2))
                .unwrap();
        let wire = env.for_device(w.net, w.users[1].id, w.users[1].devices[0].id).unwrap().encode();
        let (me, keys, list) = (w.me(1, 0), &w.users[1].devices[0].prekeys, w.verified_list(0));
        g.bench_function(format!("decode_and_open/1KiB_of_{n}_recipients"), |b| {
            b.iter_batched(
                MemoryReplayGuard::default,
                |mut guard| DeliveredEnvelope::decode(&wire).unwrap().open(&me, keys, &list, &mut guard, NOW).unwrap(),
                BatchSize::SmallInput,
            )
        });
    }
    g.finish();
}

fn attachment_benches(c: &mut Criterion) {
    const SIZE: usize = 64 * 1024 * 1024;
    let key = SecretBytes::new([7u8; 32]);
    let plain = vec![0x5au8; SIZE];
    let mut g = c.benchmark_group("attachment");
    g.sample_size(10);
    g.throughput(Throughput::Bytes(SIZE as u64));
    // The AEAD stream alone, chunk by chunk in place (what the sans-IO API costs).
    let cs = DEFAULT_CHUNK_SIZE as usize;
    let mut buf = Vec::with_capacity(cs + 16);
    g.bench_function("seal_stream/64MiB", |b| {
        b.iter(|| {
            let (mut s, _) = AttachmentSealer::new(&key, [1; 16], DEFAULT_CHUNK_SIZE).unwrap();
            let mut chunks = plain.chunks(cs).peekable();
            while let Some(chunk) = chunks.next() {
                buf.clear();
                buf.extend_from_slice(chunk);
                s.seal_chunk(&mut buf, chunks.peek().is_none()).unwrap();
            }
        })
    });
    let mut blob = Vec::with_capacity(SIZE + SIZE / 1000);
    let summary = attachment::encrypt(&key, [1; 16], DEFAULT_CHUNK_SIZE, &plain[..], &mut blob).unwrap();
    let header = &blob[..attachment::STREAM_HEADER_LEN];
    let body = &blob[attachment::STREAM_HEADER_LEN..];
    g.bench_function("open_stream/64MiB", |b| {
        b.iter(|| {
            let mut o = AttachmentOpener::new(&key, header).unwrap();
            let mut chunks = body.chunks(cs + 16).peekable();
            while let Some(chunk) = chunks.next() {
                buf.clear();
                buf.extend_from_slice(chunk);
                o.open_chunk(&mut buf, chunks.peek().is_none()).unwrap();
            }
            o.finish().unwrap();
        })
    });
    // The io helpers: AEAD plus the SHA-256 of the blob for the file reference.
    g.bench_function("encrypt_with_hash/64MiB", |b| {
        b.iter(|| attachment::encrypt(&key, [1; 16], DEFAULT_CHUNK_SIZE, &plain[..], std::io::sink()).unwrap())
    });
    g.bench_function("decrypt_with_hash/64MiB", |b| {
        b.iter(|| {
            let s = attachment::decrypt(&key, &blob[..], std::io::sink()).unwrap();
            assert_eq!(s, summary);
        })
    });
    g.finish();
}

/// The primitives an open is made of, for reading the open figure against.
fn primitive_benches(c: &mut Criterion) {
    let mut g = c.benchmark_group("primitive");
    let mut rng = ChaCha20Rng::seed_from_u64(3);
    let sk = strongroom_crypto::keys::SigningKey::generate(&mut rng);
    let msg = [0u8; 256];
    let sig = sk.sign(&msg);
    let vk = sk.verifying_key();
    g.bench_function("ed25519_verify", |b| b.iter(|| vk.verify(&msg, &sig).unwrap()));
    g.bench_function("ed25519_sign", |b| b.iter(|| sk.sign(&msg)));
    let a = strongroom_crypto::keys::AgreementSecret::generate(&mut rng);
    let p = strongroom_crypto::keys::AgreementSecret::generate(&mut rng).public();
    g.bench_function("x25519", |b| b.iter(|| a.diffie_hellman(&p).unwrap()));
    let bytes = a.expose_bytes().clone();
    g.bench_function("x25519_key_from_bytes", |b| {
        b.iter(|| strongroom_crypto::keys::AgreementSecret::from_bytes(bytes.clone()).unwrap())
    });
    let mut hot = vec![0u8; DEFAULT_CHUNK_SIZE as usize];
    let gcm = aead::LessSafeKey::new(aead::UnboundKey::new(&aead::AES_256_GCM, &[1u8; 32]).unwrap());
    g.throughput(Throughput::Bytes(hot.len() as u64));
    g.bench_function("aes256gcm_seal_in_place/256KiB", |b| {
        b.iter(|| {
            gcm.seal_in_place_separate_tag(aead::Nonce::assume_unique_for_key([0; 12]), aead::Aad::empty(), &mut hot)
                .unwrap()
        })
    });
    g.finish();
}

criterion_group!(benches, seal_benches, open_benches, attachment_benches, primitive_benches);
criterion_main!(benches);
