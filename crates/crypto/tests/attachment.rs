//! Attachment streams: round trips at chunk boundaries and every attack on
//! chunk order and integrity.
#![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic, clippy::indexing_slicing)]

use strongroom_crypto::attachment::*;
use strongroom_crypto::content::FileRef;
use strongroom_crypto::ids::BlobId;
use strongroom_crypto::keys::SecretBytes;

const CS: u32 = 1024;
const FULL: usize = CS as usize + 16;

fn key(b: u8) -> SecretBytes<32> {
    SecretBytes::new([b; 32])
}

fn data(n: usize) -> Vec<u8> {
    (0..n).map(|i| (i * 31 % 251) as u8).collect()
}

fn enc(k: u8, id: u8, plain: &[u8]) -> (Vec<u8>, StreamSummary) {
    let mut out = Vec::new();
    let s = encrypt(&key(k), [id; 16], CS, plain, &mut out).unwrap();
    (out, s)
}

fn dec(k: u8, blob: &[u8]) -> Result<Vec<u8>, AttachmentError> {
    let mut out = Vec::new();
    decrypt(&key(k), blob, &mut out).map(|_| out)
}

fn chunks(blob: &[u8]) -> (Vec<u8>, Vec<Vec<u8>>) {
    (blob[..STREAM_HEADER_LEN].to_vec(), blob[STREAM_HEADER_LEN..].chunks(FULL).map(<[u8]>::to_vec).collect())
}

#[test]
fn round_trips_at_every_boundary() {
    for n in [0, 1, 1023, 1024, 1025, 2048, 3 * 1024 + 7] {
        let plain = data(n);
        let (blob, s) = enc(1, 2, &plain);
        assert_eq!(s.plaintext_len, n as u64);
        assert_eq!(s.ciphertext_len, blob.len() as u64);
        let expected_chunks = if n == 0 { 1 } else { n.div_ceil(1024) };
        assert_eq!(blob.len(), STREAM_HEADER_LEN + n + 16 * expected_chunks, "n={n}");
        assert_eq!(dec(1, &blob).unwrap(), plain, "n={n}");
    }
}

#[test]
fn summary_checks_the_file_reference() {
    let plain = data(3000);
    let (blob, s) = enc(1, 2, &plain);
    let mut out = Vec::new();
    let d = decrypt(&key(1), &blob[..], &mut out).unwrap();
    assert_eq!(d, s);
    let mut file = FileRef {
        blob_id: BlobId::from_bytes([0; 16]),
        file_key: key(1),
        ciphertext_sha256: s.ciphertext_sha256,
        size: 3000,
        media_type: "text/plain".into(),
        name: "a.txt".into(),
    };
    d.check(&file).unwrap();
    file.size = 2999;
    assert!(matches!(d.check(&file), Err(AttachmentError::SizeMismatch { .. })));
    file.ciphertext_sha256[0] ^= 1;
    assert_eq!(d.check(&file), Err(AttachmentError::HashMismatch));
}

#[test]
fn truncation_is_detected() {
    let (blob, _) = enc(1, 2, &data(3 * 1024 + 100));
    // At each chunk boundary.
    for k in 1..=3 {
        let cut = STREAM_HEADER_LEN + k * FULL;
        assert_eq!(dec(1, &blob[..cut]), Err(AttachmentError::Truncated { chunks: k as u64 }), "cut after {k}");
    }
    // Mid-chunk and just the header.
    assert!(dec(1, &blob[..STREAM_HEADER_LEN + FULL + 10]).is_err());
    assert_eq!(dec(1, &blob[..STREAM_HEADER_LEN]), Err(AttachmentError::Truncated { chunks: 0 }));
    assert!(dec(1, &blob[..10]).is_err());
    // Exact multiple of the chunk size, cut at the boundary before the last.
    let (blob, _) = enc(1, 2, &data(2048));
    assert_eq!(dec(1, &blob[..STREAM_HEADER_LEN + FULL]), Err(AttachmentError::Truncated { chunks: 1 }));
}

#[test]
fn reorder_splice_swap_and_flip_are_detected() {
    let (blob, _) = enc(1, 2, &data(4 * 1024));
    let (h, c) = chunks(&blob);
    let join = |parts: &[&Vec<u8>]| {
        let mut v = h.clone();
        for p in parts {
            v.extend_from_slice(p);
        }
        v
    };
    assert_eq!(dec(1, &join(&[&c[1], &c[0], &c[2], &c[3]])), Err(AttachmentError::Tampered { chunk: 0 }));
    assert_eq!(dec(1, &join(&[&c[0], &c[2], &c[3]])), Err(AttachmentError::Tampered { chunk: 1 }));
    assert_eq!(dec(1, &join(&[&c[0], &c[1], &c[1], &c[2], &c[3]])), Err(AttachmentError::Tampered { chunk: 2 }));
    // Same key, other stream id: chunk 1 from the other file.
    let (other, _) = enc(1, 3, &data(4 * 1024));
    let (_, oc) = chunks(&other);
    assert_eq!(dec(1, &join(&[&c[0], &oc[1], &c[2], &c[3]])), Err(AttachmentError::Tampered { chunk: 1 }));
    // Data after the final chunk.
    let mut long = blob.clone();
    long.extend_from_slice(&[0u8; 5]);
    assert!(dec(1, &long).is_err());
    // Wrong key.
    assert_eq!(dec(9, &blob), Err(AttachmentError::Tampered { chunk: 0 }));
    // Every byte.
    for i in 0..blob.len() {
        let mut bad = blob.clone();
        bad[i] ^= 0x04;
        assert!(dec(1, &bad).is_err(), "byte {i}");
    }
}

#[test]
fn bad_headers_are_refused() {
    let (blob, _) = enc(1, 2, &data(10));
    let mut magic = blob.clone();
    magic[0] = b'X';
    assert!(matches!(dec(1, &magic), Err(AttachmentError::Decode(_))));
    let mut cs = blob.clone();
    cs[7..11].copy_from_slice(&(u32::MAX).to_be_bytes());
    assert_eq!(dec(1, &cs), Err(AttachmentError::ChunkSize(u32::MAX)));
    assert!(encrypt(&key(1), [0; 16], 10, &[][..], Vec::new()).is_err());
}

#[test]
fn sans_io_sealer_enforces_chunk_rules() {
    let (mut s, header) = AttachmentSealer::new(&key(1), [0; 16], CS).unwrap();
    let mut short = vec![0u8; 10];
    assert!(matches!(s.seal_chunk(&mut short, false), Err(AttachmentError::ChunkLength { .. })));
    let mut last = vec![1u8; 10];
    s.seal_chunk(&mut last, true).unwrap();
    assert_eq!(s.seal_chunk(&mut vec![0u8; 1], true), Err(AttachmentError::TrailingData));
    let mut o = AttachmentOpener::new(&key(1), &header).unwrap();
    assert!(o.finish().is_err());
    o.open_chunk(&mut last, true).unwrap();
    assert_eq!(last, vec![1u8; 10]);
    o.finish().unwrap();
}

/// The final chunk carries at least one byte unless the file is empty: an
/// empty final chunk after full ones is a second encoding of the same file,
/// refused on both sides — even when the key holder made it.
#[test]
fn an_empty_final_chunk_after_full_ones_is_refused() {
    let (mut s, header) = AttachmentSealer::new(&key(1), [0; 16], CS).unwrap();
    let mut full = vec![7u8; CS as usize];
    s.seal_chunk(&mut full, false).unwrap();
    assert!(matches!(s.seal_chunk(&mut Vec::new(), true), Err(AttachmentError::ChunkLength { len: 0, .. })));
    // The opener refuses it by its length, before any key is tried.
    let mut o = AttachmentOpener::new(&key(1), &header).unwrap();
    o.open_chunk(&mut full, false).unwrap();
    let mut empty_tag_only = vec![0u8; 16];
    assert_eq!(o.open_chunk(&mut empty_tag_only, true), Err(AttachmentError::Tampered { chunk: 1 }));
    // An empty file is one empty final chunk, and fine.
    assert_eq!(dec(1, &enc(1, 1, &[]).0).unwrap(), Vec::<u8>::new());
}
