//! Backup and restore of the relay under load: the relay holds the only copy
//! of messages the retention service has not archived yet. A backup taken
//! while messages stream in, restored, lets the retention service archive
//! every message queued in it exactly once, and the archive verifies
//! against the restored relay.
#![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic, clippy::indexing_slicing)]

mod common;

use std::path::Path;
use std::process::Command;

use common::*;
use serde_json::Value;

fn retention(rdir: &Path, args: &[&str]) -> Value {
    let mut all = vec!["retention", "--dir", s(rdir), "--json"];
    all.extend_from_slice(args);
    ok_json(&all)
}

async fn retention_depth(url: &str) -> u64 {
    let text = reqwest::get(format!("{url}/metrics")).await.unwrap().text().await.unwrap();
    text.lines()
        .find_map(|l| l.strip_prefix("strongroom_queue_depth{kind=\"retention\"} "))
        .and_then(|v| v.trim().parse().ok())
        .unwrap()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_backup_taken_under_load_restores_and_retention_archives_each_queued_message_once() {
    let dir = temp_dir("backup");
    let mut server = ServerProc::start(&dir.join("data"), &[]);
    let (alice, mut bob) = two_clients(&dir, &server).await;
    let (rdir, mut alice) = turn_retention_on(&server, &dir, alice).await;
    bob.sync().await.unwrap();
    let direct = alice.create_conversation("direct", &["bob"]).await.unwrap().id;
    // A file, so the backup carries blobs too.
    let report = dir.join("report.bin");
    std::fs::write(&report, vec![42u8; 200_000]).unwrap();
    alice.send_file(direct, &report, &|_, _| {}).await.unwrap();

    // Alice sends 120 messages; the backup is taken while she does.
    let total = 120;
    let sending = tokio::spawn(async move {
        for i in 0..total {
            alice.send_text(direct, &format!("message {i}")).await.unwrap();
        }
        alice
    });
    while retention_depth(&server.url).await < 40 {
        tokio::time::sleep(std::time::Duration::from_millis(20)).await;
    }
    let backup = dir.join("backup");
    let out = Command::new(bin())
        .args(["backup", "--json", "--data-dir", s(&server.data_dir), "--to", s(&backup)])
        .output()
        .unwrap();
    assert!(out.status.success(), "{}", String::from_utf8_lossy(&out.stderr));
    let made: Value = serde_json::from_slice(&out.stdout).unwrap();
    assert!(made["blob_files"].as_u64().unwrap() >= 1, "{made}");
    let _alice = sending.await.unwrap();
    let live_depth = retention_depth(&server.url).await;
    assert_eq!(live_depth, total + 1, "everything reached the live relay");

    // Disaster: the live relay is gone; restore the backup on the same address.
    let listen = server.url.trim_start_matches("http://").to_owned();
    server.stop();
    let restored = ServerProc::start_on(&backup, &listen, &[]);
    let queued = retention_depth(&restored.url).await;
    eprintln!("backup under load: {queued} of {} queued messages in the snapshot", total + 1);
    assert!((40..=total + 1).contains(&queued), "the snapshot holds what was queued when it was taken: {queued}");

    let run = retention(&rdir, &["run", "--once"]);
    assert_eq!(run["run"]["archived"], queued, "every message queued in the backup, archived");
    assert_eq!(run["run"]["files"], 1, "the file came back with the backup");
    assert_eq!(run["run"]["unreadable"], 0);
    assert_eq!(retention(&rdir, &["run", "--once"])["run"]["archived"], 0, "and only once");
    assert_eq!(retention_depth(&restored.url).await, 0);
    let v = retention(&rdir, &["verify"]);
    assert_eq!(v["problem_count"], 0, "{v}");
    assert_eq!(v["records"], queued + 1, "and the conversation's creation");
    // Each message once: the archived texts are distinct and in order.
    let hits = retention(&rdir, &["search", "message"]);
    let texts: Vec<String> =
        hits["hits"].as_array().unwrap().iter().map(|h| h["text"].as_str().unwrap_or_default().to_owned()).collect();
    let mut distinct = texts.clone();
    distinct.dedup();
    assert_eq!(texts, distinct, "no message archived twice");
    assert_eq!(texts.len() as u64, queued - 1, "all but the file are texts");

    // A backup refuses a non-empty target and a missing database, and says why.
    let again = Command::new(bin()).args(["backup", "--data-dir", s(&backup), "--to", s(&backup)]).output().unwrap();
    assert!(!again.status.success());
    assert!(String::from_utf8_lossy(&again.stderr).contains("not empty"));
    let missing = Command::new(bin())
        .args(["backup", "--data-dir", s(&dir.join("nothing")), "--to", s(&dir.join("b2"))])
        .output()
        .unwrap();
    assert!(String::from_utf8_lossy(&missing.stderr).contains("no relay database"));
}
