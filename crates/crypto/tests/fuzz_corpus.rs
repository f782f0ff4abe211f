//! Replays the committed fuzz corpus (fuzz/corpus/<target>/) through the same
//! checks the cargo-fuzz targets run, so every CI run covers them on stable.
#![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic, clippy::indexing_slicing)]

use strongroom_crypto::fuzz_checks;

fn replay(target: &str, check: fn(&[u8])) {
    let dir = std::path::Path::new(env!("CARGO_MANIFEST_DIR")).join("fuzz/corpus").join(target);
    let mut n = 0;
    for entry in std::fs::read_dir(&dir).unwrap() {
        let data = std::fs::read(entry.unwrap().path()).unwrap();
        check(&data);
        // Every prefix and a few single-byte corruptions of each input too.
        for len in (0..data.len()).step_by(7) {
            check(&data[..len]);
        }
        for i in (0..data.len()).step_by(13) {
            let mut bad = data.clone();
            bad[i] ^= 0x5a;
            check(&bad);
        }
        n += 1;
    }
    assert!(n > 0, "corpus for {target} is empty");
}

#[test]
fn envelope_corpus() {
    replay("envelope", fuzz_checks::envelope);
}
#[test]
fn policy_corpus() {
    replay("policy", fuzz_checks::policy);
}
#[test]
fn device_list_corpus() {
    replay("device_list", fuzz_checks::device_list);
}
#[test]
fn prekey_corpus() {
    replay("prekey", fuzz_checks::prekey);
}
#[test]
fn content_corpus() {
    replay("content", fuzz_checks::content);
}
#[test]
fn attachment_stream_corpus() {
    replay("attachment_stream", fuzz_checks::attachment_stream);
}
#[test]
fn link_corpus() {
    replay("link", fuzz_checks::link);
}
#[test]
fn membership_corpus() {
    replay("membership", fuzz_checks::membership);
}
