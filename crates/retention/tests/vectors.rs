//! The archive record vector (`crates/crypto/tests/vectors/archive_record.json`,
//! computed there by the spec implementation from PROTOCOL.md §10): this
//! crate's `Sealer` must open it and reproduce it byte for byte.
#![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic, clippy::indexing_slicing)]

use serde_json::Value;
use strongroom_crypto::ids::{DeviceId, NetworkId};
use strongroom_crypto::keys::SecretBytes;
use strongroom_retention::archive::{encode_segment, parse_segment, Entry, Sealer};

fn unhex<const N: usize>(v: &Value, k: &str) -> [u8; N] {
    let s = v[k].as_str().unwrap();
    let bytes: Vec<u8> = (0..s.len()).step_by(2).map(|i| u8::from_str_radix(&s[i..i + 2], 16).unwrap()).collect();
    bytes.try_into().unwrap()
}

fn unhex_vec(s: &str) -> Vec<u8> {
    (0..s.len()).step_by(2).map(|i| u8::from_str_radix(&s[i..i + 2], 16).unwrap()).collect()
}

#[test]
fn sealer_reproduces_the_archive_record_vector() {
    let path = concat!(env!("CARGO_MANIFEST_DIR"), "/../crypto/tests/vectors/archive_record.json");
    let v: Value = serde_json::from_str(&std::fs::read_to_string(path).unwrap()).unwrap();
    let (i, o) = (&v["inputs"], &v["outputs"]);
    let sealer = Sealer::new(
        &SecretBytes::new(unhex(i, "archive_key")),
        NetworkId::from_bytes(unhex(i, "network_id")),
        DeviceId::from_bytes(unhex(i, "device_id")),
    )
    .unwrap();
    let index = i["index"].as_u64().unwrap();
    let entry_bytes = unhex_vec(o["entry"].as_str().unwrap());
    let entries = parse_segment(&entry_bytes).unwrap();
    let [Entry::Sealed { salt, ciphertext }] = entries.as_slice() else { panic!("one sealed entry") };
    let record = sealer.open(index, salt, ciphertext).expect("the vector opens");
    assert_eq!(serde_json::to_string(&record).unwrap(), i["record_json"].as_str().unwrap());
    // Sealing the same record with the same salt gives the same bytes.
    let again = sealer.seal_with_salt(index, &record, unhex(i, "salt")).unwrap();
    assert_eq!(encode_segment(std::slice::from_ref(&again)), entry_bytes);
    assert_eq!(hex(&again.leaf(index)), o["leaf_hash"].as_str().unwrap());
    // At another index it does not open: the position is bound in.
    assert!(sealer.open(index + 1, salt, ciphertext).is_none());
}

fn hex(b: &[u8]) -> String {
    b.iter().map(|x| format!("{x:02x}")).collect()
}

/// An append retried at the same index (after a crash between sealing and
/// the segment landing) seals under a fresh key: the salt differs, so the
/// (key, nonce) pair of the first attempt is never used again, and each
/// attempt opens only with its own salt. (Version 1 used one key for the
/// whole archive with random 96-bit nonces.)
#[test]
fn every_record_is_sealed_under_its_own_key() {
    let sealer =
        Sealer::new(&SecretBytes::new([9; 32]), NetworkId::from_bytes([1; 16]), DeviceId::from_bytes([2; 16])).unwrap();
    let record: strongroom_retention::record::Record =
        serde_json::from_str(r#"{"kind":"text","archived_at":1,"text":"same words"}"#).unwrap();
    let Entry::Sealed { salt: s1, ciphertext: c1 } = sealer.seal(7, &record).unwrap() else { panic!() };
    let Entry::Sealed { salt: s2, ciphertext: c2 } = sealer.seal(7, &record).unwrap() else { panic!() };
    assert_ne!(s1, s2, "a fresh salt per seal");
    assert_ne!(c1, c2, "so a fresh key: the same record and nonce give other bytes");
    assert_eq!(sealer.open(7, &s1, &c1), Some(record.clone()));
    assert_eq!(sealer.open(7, &s2, &c2), Some(record));
    assert!(sealer.open(7, &s2, &c1).is_none(), "a ciphertext opens only under its own salt's key");
}
