//! Streams a 256 MiB attachment through encrypt → pipe → decrypt and checks
//! the process's peak memory grew by a small fraction of that. Its own test
//! binary, so no other test shares the process's peak-RSS figure.
#![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic, clippy::indexing_slicing)]

use std::io::{Read, Write};

use strongroom_crypto::attachment::{self, DEFAULT_CHUNK_SIZE};
use strongroom_crypto::keys::SecretBytes;

const SIZE: u64 = 256 * 1024 * 1024;

fn peak_rss_kib() -> Option<u64> {
    let status = std::fs::read_to_string("/proc/self/status").ok()?;
    let line = status.lines().find(|l| l.starts_with("VmHWM:"))?;
    line.split_whitespace().nth(1)?.parse().ok()
}

/// A period-251 byte pattern, 2 × 64 KiB long so any window of up to
/// 64 KiB starting at any phase is one slice of it.
fn table() -> &'static [u8] {
    static T: std::sync::OnceLock<Vec<u8>> = std::sync::OnceLock::new();
    T.get_or_init(|| (0..128 * 1024).map(|i| (i % 251) as u8).collect())
}

fn window(offset: u64, len: usize) -> &'static [u8] {
    let phase = (offset % 251) as usize;
    &table()[phase..phase + len]
}

/// Deterministic plaintext generated on the fly, never held in memory.
struct Pattern(u64);
impl Read for Pattern {
    fn read(&mut self, buf: &mut [u8]) -> std::io::Result<usize> {
        let n = (buf.len() as u64).min(SIZE - self.0).min(64 * 1024) as usize;
        buf[..n].copy_from_slice(window(self.0, n));
        self.0 += n as u64;
        Ok(n)
    }
}

/// Checks the plaintext against the pattern as it streams past.
struct Verify(u64);
impl Write for Verify {
    fn write(&mut self, buf: &[u8]) -> std::io::Result<usize> {
        let n = buf.len().min(64 * 1024);
        assert!(buf[..n] == *window(self.0, n), "plaintext differs near offset {}", self.0);
        self.0 += n as u64;
        Ok(n)
    }
    fn flush(&mut self) -> std::io::Result<()> {
        Ok(())
    }
}

#[test]
fn large_attachment_streams_in_flat_memory() {
    let Some(before) = peak_rss_kib() else {
        eprintln!("skipped: /proc/self/status not available on this platform");
        return;
    };
    let key = SecretBytes::new([5u8; 32]);
    let (reader, writer) = std::io::pipe().unwrap();
    let k2 = key.clone();
    let producer =
        std::thread::spawn(move || attachment::encrypt(&k2, [1; 16], DEFAULT_CHUNK_SIZE, Pattern(0), writer).unwrap());
    let mut out = Verify(0);
    let dec = attachment::decrypt(&key, reader, &mut out).unwrap();
    let enc = producer.join().unwrap();
    assert_eq!(dec, enc);
    assert_eq!(out.0, SIZE);
    let growth_mib = (peak_rss_kib().unwrap() - before) / 1024;
    eprintln!("256 MiB streamed; peak RSS grew {growth_mib} MiB");
    assert!(growth_mib < 32, "peak memory grew {growth_mib} MiB for a 256 MiB file");
}
