//! The client's receive path against the real server binary: messages
//! fetched, signature-checked, decrypted, stored (sealed, one commit per
//! batch) and acknowledged, per second. Sending is outside the timing.
//!
//! Also the retention service catching up: envelopes fetched, verified,
//! decrypted, sealed into the archive (one segment and signed checkpoint per
//! batch) and acknowledged, per second.
//!
//! `cargo bench -p strongroom --bench receive`
#![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic, clippy::indexing_slicing, dead_code)]

#[path = "../tests/common/mod.rs"]
mod common;

use std::time::{Duration, Instant};

use common::*;
use criterion::{criterion_group, criterion_main, Criterion, Throughput};

const BATCH: u64 = 200;

fn receive(c: &mut Criterion) {
    let rt = tokio::runtime::Builder::new_multi_thread().worker_threads(2).enable_all().build().unwrap();
    let dir = temp_dir("bench-receive");
    let server = ServerProc::start(&dir.join("data"), &[]);
    let (mut alice, mut bob) = rt.block_on(two_clients(&dir, &server));
    let conv = rt.block_on(alice.direct_with("bob")).unwrap();

    let mut group = c.benchmark_group("client_receive");
    group.sample_size(10).warm_up_time(Duration::from_secs(1)).measurement_time(Duration::from_secs(8));
    group.throughput(Throughput::Elements(BATCH));
    group.bench_function("sync_200_text_messages", |b| {
        b.iter_custom(|iters| {
            let mut total = Duration::ZERO;
            for _ in 0..iters {
                rt.block_on(async {
                    for i in 0..BATCH {
                        alice.send_text(conv, &format!("message {i} with a little body to it")).await.unwrap();
                    }
                    let start = Instant::now();
                    let report = bob.sync().await.unwrap();
                    total += start.elapsed();
                    assert_eq!(report.received.len() as u64, BATCH);
                    assert!(report.warnings.is_empty());
                });
            }
            total
        })
    });
    group.finish();
    drop(server);
    let _ = std::fs::remove_dir_all(&dir);
}

fn retention_catch_up(c: &mut Criterion) {
    use strongroom_retention::archive::{destination, Archive};
    use strongroom_retention::keys::RetentionKeys;
    use strongroom_retention::service::{RunOptions, Service};
    const N: u64 = 500;
    let rt = tokio::runtime::Builder::new_multi_thread().worker_threads(2).enable_all().build().unwrap();
    let dir = temp_dir("bench-retention");
    let server = ServerProc::start(&dir.join("data"), &[]);
    let (alice, _bob) = rt.block_on(two_clients(&dir, &server));
    let (rdir, mut alice) = rt.block_on(turn_retention_on(&server, &dir, alice));
    let conv = rt.block_on(alice.direct_with("bob")).unwrap();
    let keys = RetentionKeys::load(&rdir, "retention passphrase").unwrap();
    let signer = strongroom_crypto::keys::SigningKey::from_seed(strongroom_crypto::keys::SecretBytes::new(
        *keys.signing.expose_seed().expose(),
    ))
    .unwrap();
    let store = destination(rdir.join("archive").to_str().unwrap()).unwrap();
    let archive = rt
        .block_on(Archive::open(store, &keys.archive_key, signer, keys.network().unwrap(), keys.device_id().unwrap()))
        .unwrap();
    let mut service = rt.block_on(Service::start(keys, archive)).unwrap();
    let opts = RunOptions {
        status_file: None,
        until_empty: true,
        max_time: None,
        poll: Duration::from_millis(10),
        stop: None,
        health: Default::default(),
    };

    let mut group = c.benchmark_group("retention");
    group.sample_size(10).warm_up_time(Duration::from_secs(1)).measurement_time(Duration::from_secs(8));
    group.throughput(Throughput::Elements(N));
    group.bench_function("catch_up_500_messages", |b| {
        b.iter_custom(|iters| {
            let mut total = Duration::ZERO;
            for _ in 0..iters {
                rt.block_on(async {
                    for i in 0..N {
                        alice.send_text(conv, &format!("message {i} with a little body to it")).await.unwrap();
                    }
                    let start = Instant::now();
                    let report = service.run(opts.clone()).await.unwrap();
                    total += start.elapsed();
                    assert_eq!(report.archived, N);
                });
            }
            total
        })
    });
    group.finish();
    drop(server);
    let _ = std::fs::remove_dir_all(&dir);
}

criterion_group!(benches, receive, retention_catch_up);
criterion_main!(benches);
