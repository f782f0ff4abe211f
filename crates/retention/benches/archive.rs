//! Archive throughput (records sealed, logged and written per second, in
//! 500-record segments as the service writes them) and verify time.
//!
//! `cargo bench -p strongroom-retention --bench archive`; the verify
//! archive's size is `STRONGROOM_BENCH_RECORDS` (default 100,000).
#![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic, clippy::indexing_slicing)]

use std::time::Duration;

use criterion::{criterion_group, criterion_main, Criterion, Throughput};
use rand_core::OsRng;
use strongroom_crypto::ids::{DeviceId, NetworkId};
use strongroom_crypto::keys::{SecretBytes, SigningKey};
use strongroom_retention::archive::{destination, Archive, Sealer};
use strongroom_retention::record::{Party, Record};
use strongroom_retention::verify::{verify, Trusted};

fn record(i: u64) -> Record {
    let party = |n: &str| Party { user_id: format!("{:032x}", n.len()), username: n.into(), ..Party::default() };
    Record {
        kind: "text".into(),
        archived_at: 1_700_000_000_000 + i,
        conversation_id: Some(format!("{:032x}", i % 20)),
        conversation_kind: Some("group".into()),
        seq: Some(i / 20 + 1),
        message_id: Some(format!("{i:032x}")),
        sender: Some(party("alice")),
        recipients: vec![party("alice"), party("bob"), party("carol")],
        sent_at: Some(1_700_000_000_000 + i),
        text: Some(format!("message number {i}: the quarterly figures are attached, please review by friday")),
        ..Record::default()
    }
}

fn bench(c: &mut Criterion) {
    let rt = tokio::runtime::Builder::new_multi_thread().worker_threads(2).enable_all().build().unwrap();
    let (network, device) = (NetworkId::from_bytes([1; 16]), DeviceId::from_bytes([2; 16]));
    let key = SecretBytes::<32>::random(&mut OsRng);
    let signer = SigningKey::generate(&mut OsRng);
    let batch: Vec<Record> = (0..500).map(record).collect();

    let mut group = c.benchmark_group("archive");
    group.sample_size(10).measurement_time(Duration::from_secs(10));
    group.throughput(Throughput::Elements(500));
    let dir = std::env::temp_dir().join(format!("sr-bench-archive-{}", std::process::id()));
    let mut archive = rt
        .block_on(Archive::open(
            destination(dir.to_str().unwrap()).unwrap(),
            &key,
            SigningKey::from_seed(SecretBytes::new(*signer.expose_seed().expose())).unwrap(),
            network,
            device,
        ))
        .unwrap();
    group.bench_function("append_500_records_local_dir", |b| b.iter(|| rt.block_on(archive.append(&batch)).unwrap()));
    // As `retention run` does on a directory: each segment and checkpoint
    // (and their directories) on disk before the append returns.
    archive.fsync_in(dir.clone());
    group.bench_function("append_500_records_local_dir_fsynced", |b| {
        b.iter(|| rt.block_on(archive.append(&batch)).unwrap())
    });
    group.finish();
    let _ = std::fs::remove_dir_all(&dir);

    let n: u64 = std::env::var("STRONGROOM_BENCH_RECORDS").ok().and_then(|v| v.parse().ok()).unwrap_or(100_000);
    let dir = std::env::temp_dir().join(format!("sr-bench-verify-{}", std::process::id()));
    let store = destination(dir.to_str().unwrap()).unwrap();
    let mut archive = rt
        .block_on(Archive::open(
            store.clone(),
            &key,
            SigningKey::from_seed(SecretBytes::new(*signer.expose_seed().expose())).unwrap(),
            network,
            device,
        ))
        .unwrap();
    for first in (0..n).step_by(500) {
        let recs: Vec<Record> = (first..(first + 500).min(n)).map(record).collect();
        rt.block_on(archive.append(&recs)).unwrap();
    }
    let sealer = Sealer::new(&key, network, device).unwrap();
    let trusted = Trusted { network, device, signing_key: signer.verifying_key(), sealer: &sealer };
    let mut group = c.benchmark_group("verify");
    group.sample_size(10).measurement_time(Duration::from_secs(20));
    group.throughput(Throughput::Elements(n));
    group.bench_function(format!("verify_{n}_records"), |b| {
        b.iter(|| {
            let report = rt.block_on(verify(store.as_ref(), &trusted, false)).unwrap();
            assert!(report.ok(), "{:?}", report.problems);
        })
    });
    group.finish();
    let _ = std::fs::remove_dir_all(&dir);
}

criterion_group!(benches, bench);
criterion_main!(benches);
