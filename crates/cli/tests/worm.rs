//! The archive on S3 with Object Lock (WORM), against moto's S3 server
//! started here on 127.0.0.1 (`pip install 'moto[server]'`; `.ci/run`
//! installs it and sets STRONGROOM_TEST_REQUIRE_MOTO=1, so CI never skips).
//! A locked version cannot be deleted, not even with the governance
//! bypass; a write over an archived key makes a second version, the first
//! still reads back byte-identical, and `verify` names the second; a purge
//! never rewrites a segment.
#![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic, clippy::indexing_slicing)]

mod common;

use std::path::Path;
use std::process::{Child, Command, Stdio};

use common::*;
use serde_json::Value;
use strongroom_retention::aws::{AwsConfig, Retention, S3Bucket};

/// moto's server on a free port, stopped when dropped.
pub struct Moto {
    child: Child,
    pub endpoint: String,
    /// A KMS key every write is to be encrypted under (SSE-KMS).
    pub sse_key: Option<String>,
}

impl Moto {
    /// `None` (after saying why) when moto is not installed and CI did not ask for it.
    pub fn start() -> Option<Self> {
        let port = std::net::TcpListener::bind("127.0.0.1:0").unwrap().local_addr().unwrap().port();
        let child = match Command::new("moto_server")
            .args(["-H", "127.0.0.1", "-p", &port.to_string()])
            .stdout(Stdio::null())
            .stderr(Stdio::null())
            .spawn()
        {
            Ok(c) => c,
            Err(e) => {
                assert!(
                    std::env::var_os("STRONGROOM_TEST_REQUIRE_MOTO").is_none(),
                    "moto_server is required here but cannot start: {e}"
                );
                eprintln!("SKIPPED: moto_server not found ({e}); pip install 'moto[server]' to run the S3 tests");
                return None;
            }
        };
        let deadline = std::time::Instant::now() + std::time::Duration::from_secs(30);
        while std::net::TcpStream::connect(("127.0.0.1", port)).is_err() {
            assert!(std::time::Instant::now() < deadline, "moto_server did not start");
            std::thread::sleep(std::time::Duration::from_millis(100));
        }
        Some(Self { child, endpoint: format!("http://127.0.0.1:{port}"), sse_key: None })
    }

    fn envs(&self) -> Vec<(&'static str, String)> {
        let sse = self
            .sse_key
            .iter()
            .flat_map(|k| [("AWS_SERVER_SIDE_ENCRYPTION", "aws:kms".to_owned()), ("AWS_SSE_KMS_KEY_ID", k.clone())]);
        sse.chain([
            ("AWS_ACCESS_KEY_ID", "testing".into()),
            ("AWS_SECRET_ACCESS_KEY", "testing".into()),
            ("AWS_REGION", "us-east-1".into()),
            ("AWS_ENDPOINT_URL", self.endpoint.clone()),
            ("AWS_ENDPOINT", self.endpoint.clone()),
            ("AWS_ALLOW_HTTP", "true".into()),
        ])
        .collect()
    }

    fn config(&self) -> AwsConfig {
        AwsConfig::new("us-east-1", "testing", "testing", Some(&self.endpoint))
    }
}

impl Drop for Moto {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

/// `strongroom retention --dir RDIR --archive ARCHIVE --json ARGS` with moto's settings.
fn retention_out(moto: &Moto, rdir: &Path, archive: &str, args: &[&str]) -> std::process::Output {
    let mut all = vec!["retention", "--dir", s(rdir), "--archive", archive, "--json"];
    all.extend_from_slice(args);
    Command::new(bin())
        .args(&all)
        .envs(moto.envs())
        .env("STRONGROOM_RETENTION_PASSPHRASE", "retention passphrase")
        .output()
        .unwrap()
}

fn retention_ok(moto: &Moto, rdir: &Path, archive: &str, args: &[&str]) -> Value {
    let out = retention_out(moto, rdir, archive, args);
    assert!(
        out.status.success(),
        "{args:?}: {} {}",
        String::from_utf8_lossy(&out.stderr),
        String::from_utf8_lossy(&out.stdout)
    );
    serde_json::from_slice(&out.stdout).unwrap_or_else(|_| panic!("{args:?}: {}", String::from_utf8_lossy(&out.stdout)))
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_worm_archive_cannot_be_deleted_or_rewritten_and_verify_names_a_second_version() {
    let Some(mut moto) = Moto::start() else { return };
    // Every object is also encrypted at rest under a KMS key (SSE-KMS).
    let kms = strongroom_retention::aws::Kms::new(moto.config()).unwrap();
    moto.sse_key = Some(kms.create_key("archive at rest").await.unwrap());
    let dir = temp_dir("retention-worm");
    let server = ServerProc::start(&dir.join("data"), &[]);
    let (alice, _bob) = two_clients(&dir, &server).await;
    let (rdir, mut alice) = turn_retention_on(&server, &dir, alice).await;
    let archive = "s3://strongroom-worm/acme";
    let created = retention_ok(&moto, &rdir, archive, &["bucket-create", "--lock-days", "3"]);
    assert_eq!(created["mode"], "COMPLIANCE");
    // Not a bucket, or no lock at all: refused with what to do.
    let local = retention_out(&moto, &rdir, s(&dir.join("local")), &["bucket-create", "--lock-days", "1"]);
    assert!(String::from_utf8_lossy(&local.stderr).contains("is not an s3://bucket/prefix destination"));
    let zero = retention_out(&moto, &rdir, archive, &["bucket-create", "--lock-days", "0"]);
    assert!(String::from_utf8_lossy(&zero.stderr).contains("--lock-days is 1 to 36500"));

    let c = alice.create_conversation("group", &["bob"]).await.unwrap();
    // A time after the conversation's creation, before any message.
    tokio::time::sleep(std::time::Duration::from_millis(50)).await;
    let after_creation = strongroom_retention::now_ms().to_string();
    tokio::time::sleep(std::time::Duration::from_millis(50)).await;
    for i in 0..3 {
        alice.send_text(c.id, &format!("locked message {i}")).await.unwrap();
    }
    let file = dir.join("minutes.txt");
    std::fs::write(&file, b"minutes: approved").unwrap();
    alice.send_file(c.id, &file, &|_, _| {}).await.unwrap();
    let run = retention_ok(&moto, &rdir, archive, &["run", "--once"]);
    assert_eq!(run["run"]["archived"], 4, "{run}");
    assert_eq!(run["run"]["files"], 1, "{run}");
    // A second batch, in a segment of its own.
    for i in 0..2 {
        alice.send_text(c.id, &format!("later message {i}")).await.unwrap();
    }
    retention_ok(&moto, &rdir, archive, &["run", "--once"]);
    let v = retention_ok(&moto, &rdir, archive, &["verify"]);
    assert_eq!(v["problem_count"], 0, "{v}");
    // The bucket's lock (recorded first, in a segment of its own), a
    // creation and six messages.
    assert_eq!(v["records"], 8, "{v}");
    let bucket = S3Bucket::new(archive, moto.config()).unwrap();
    for version in bucket.versions().await.unwrap() {
        let (_, sse) = bucket.head(&version.key, &version.version_id).await.unwrap();
        assert_eq!(sse.as_deref(), Some("aws:kms"), "{} is not encrypted under the KMS key", version.key);
    }
    assert_eq!(v["files"], 1, "{v}");
    assert_eq!(v["worm"]["mode"], "COMPLIANCE", "{v}");
    assert_eq!(v["worm"]["default_days"], 3, "{v}");
    let log = retention_ok(&moto, &rdir, archive, &["access-log"]);
    let locked: Vec<_> =
        log["entries"].as_array().unwrap().iter().filter(|e| e["what"]["action"] == "storage_locked").collect();
    assert_eq!(locked.len(), 1, "the bucket's lock is recorded once: {log}");
    assert_eq!(locked[0]["what"]["days"], 3);
    assert!(v["worm"]["retention_checked"].as_u64().unwrap() >= 5, "{v}");

    // Purge everything past a zero-day period but the creation, under a
    // hold: nothing is rewritten. The second segment (messages only) is
    // retired; the first keeps the held creation, and its four deleted
    // messages stay locked in it, unread by search and export.
    retention_ok(&moto, &rdir, archive, &["hold", "place", "--name", "matter-1", "--until", &after_creation]);
    let purge = retention_ok(&moto, &rdir, archive, &["purge", "--period-days", "0", "--offline"]);
    assert_eq!(purge["deleted"], 6, "{purge}");
    assert_eq!(purge["held"], 1, "{purge}");
    assert_eq!(purge["files"], 1, "{purge}");
    let versions = bucket.versions().await.unwrap();
    let segment0 = "segments/0000000000000001.seg";
    let segment4 = "segments/0000000000000006.seg";
    let count = |key: &str, marker: bool| versions.iter().filter(|v| v.key == key && v.delete_marker == marker).count();
    assert_eq!(count(segment0, false), 1, "never rewritten: {versions:?}");
    assert_eq!(count(segment4, false), 1, "the locked version stays: {versions:?}");
    assert_eq!(count(segment4, true), 1, "retired behind a delete marker: {versions:?}");
    assert_eq!(count("retired/0000000000000006.leaves", false), 1, "{versions:?}");
    let file_key = versions.iter().find(|v| v.key.starts_with("files/")).unwrap().key.clone();
    assert_eq!(count(&file_key, false), 1, "the file's locked version stays: {versions:?}");
    assert_eq!(count(&file_key, true), 1, "{versions:?}");
    let v = retention_ok(&moto, &rdir, archive, &["verify", "--offline"]);
    assert_eq!(v["problem_count"], 0, "{v}");
    assert_eq!(v["deleted"], 2, "{v}");
    assert_eq!(v["deleted_kept"], 4, "{v}");
    let found = retention_ok(&moto, &rdir, archive, &["search", "message"]);
    assert_eq!(found["hits"].as_array().unwrap().len(), 0, "deleted records are not searchable: {found}");

    // A hostile administrator with the bucket's credentials.
    let original_v = versions.iter().find(|v| v.key == segment0 && !v.delete_marker).unwrap().version_id.clone();
    let original = bucket.get_version(segment0, &original_v).await.unwrap();
    for bypass in [false, true] {
        let e = bucket.delete_version(segment0, &original_v, bypass).await.unwrap_err();
        assert!(e.to_string().contains("AccessDenied"), "bypass {bypass}: {e}");
    }
    // Shortening a lock: compliance mode refuses it on S3. moto 5.2 accepts
    // it, so then verify must name the shortened version.
    let checkpoint = versions.iter().find(|v| v.key.starts_with("checkpoints/") && !v.delete_marker).unwrap();
    let until = bucket.retention(&checkpoint.key, &checkpoint.version_id).await.unwrap().unwrap();
    assert_eq!(until.mode, "COMPLIANCE");
    let shortened = Retention { mode: "COMPLIANCE".into(), until: until.until - 12 * 3_600_000 };
    let shorten = bucket.put_retention(&checkpoint.key, &checkpoint.version_id, &shortened, true).await;
    // Writing over the segment makes a new version; the locked one is intact.
    let forged = bucket.put(segment0, b"forged".to_vec()).await.unwrap();
    assert!(forged.is_some_and(|f| f != original_v));
    assert_eq!(bucket.get_version(segment0, &original_v).await.unwrap(), original, "the locked version changed");

    let out = retention_out(&moto, &rdir, archive, &["verify", "--offline"]);
    assert!(!out.status.success());
    let v: Value = serde_json::from_slice(&out.stdout).unwrap();
    let problems = v["problems"].to_string();
    assert!(problems.contains(&format!("{segment0} has 2 versions")), "{v}");
    assert!(problems.contains(&original_v), "names the original version: {v}");
    assert_eq!(v["worm"]["overwritten"][0], segment0, "{v}");
    // The archive moved to a bucket locked for less (or its default lowered:
    // compliance mode allows that for new objects; moto only on an empty
    // bucket) is named against the default the archive recorded.
    let weak = "s3://strongroom-weak/acme";
    retention_ok(&moto, &rdir, weak, &["bucket-create", "--lock-days", "1"]);
    let to = S3Bucket::new(weak, moto.config()).unwrap();
    for v in versions.iter().filter(|v| !versions.iter().any(|d| d.delete_marker && d.key == v.key)) {
        to.put(&v.key, bucket.get_version(&v.key, &v.version_id).await.unwrap().to_vec()).await.unwrap();
    }
    let out = retention_out(&moto, &rdir, weak, &["verify", "--offline"]);
    let moved: Value = serde_json::from_slice(&out.stdout).unwrap();
    assert!(moved["problems"].to_string().contains("default retention was lowered: 1 days now, 3 when"), "{moved}");
    if shorten.is_ok() {
        assert!(
            problems.contains(&format!("{} (version {}): its retention ends", checkpoint.key, checkpoint.version_id)),
            "{v}"
        );
    }
}

/// `strongroom retention ARGS` with moto's settings and these extra variables.
fn retention_env(moto: &Moto, args: &[impl AsRef<std::ffi::OsStr>], env: &[(&str, &str)]) -> std::process::Output {
    let mut cmd = Command::new(bin());
    cmd.args(args).envs(moto.envs());
    for (k, v) in env {
        cmd.env(k, v);
    }
    cmd.output().unwrap()
}

fn ok(out: std::process::Output) -> Value {
    assert!(out.status.success(), "{} {}", String::from_utf8_lossy(&out.stderr), String::from_utf8_lossy(&out.stdout));
    serde_json::from_slice(&out.stdout).unwrap()
}

fn refused(out: std::process::Output, says: &str) {
    assert!(!out.status.success(), "should have failed: {}", String::from_utf8_lossy(&out.stdout));
    let err = String::from_utf8_lossy(&out.stderr);
    assert!(err.contains(says), "expected {says:?} in: {err}");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_fresh_host_recovers_the_keys_from_kms_and_a_third_party_reader_exports() {
    let Some(moto) = Moto::start() else { return };
    let dir = temp_dir("retention-custody");
    let server = ServerProc::start(&dir.join("data"), &[]);
    let (alice, _bob) = two_clients(&dir, &server).await;
    let (rdir, mut alice) = turn_retention_on(&server, &dir, alice).await;
    // The archive outlives the host (a bucket in real life; a directory here).
    let store = dir.join("archive-store");
    let archive = s(&store);
    let c = alice.create_conversation("group", &["bob"]).await.unwrap();
    for i in 0..3 {
        alice.send_text(c.id, &format!("kept for the regulator {i}")).await.unwrap();
    }
    retention_ok(&moto, &rdir, archive, &["run", "--once"]);

    let kms = strongroom_retention::aws::Kms::new(moto.config()).unwrap();
    let key = kms.create_key("strongroom retention recovery").await.unwrap();
    let recovery = dir.join("recovery.json");
    retention_ok(&moto, &rdir, archive, &["custody", "kms-wrap", "--kms-key-id", &key, "--out", s(&recovery)]);
    let text = std::fs::read_to_string(&recovery).unwrap();
    assert!(!text.contains("archive_key") && !text.contains("signing_seed"), "no secret in the clear: {text}");

    // The retention host is lost with its key file.
    std::fs::remove_dir_all(&rdir).unwrap();
    let fresh = dir.join("fresh-host");
    let new_pass = [("STRONGROOM_RETENTION_PASSPHRASE", "a brand new host passphrase")];
    let base = ["retention", "--dir", s(&fresh), "--archive", archive, "--json"];
    let with = |extra: &[&str]| -> Vec<String> { base.iter().chain(extra).map(|a| a.to_string()).collect() };
    let got = ok(retention_env(&moto, &with(&["custody", "recover", "--from", s(&recovery)]), &new_pass));
    assert!(got["device_id"].is_string());
    let exported = ok(retention_env(&moto, &with(&["export", "--out", s(&dir.join("export"))]), &new_pass));
    let v = ok(retention_env(&moto, &with(&["verify", "--offline"]), &new_pass));
    assert_eq!(v["problem_count"], 0, "{v}");
    let log = ok(retention_env(&moto, &with(&["access-log"]), &new_pass));
    let actions: Vec<_> = log["entries"].as_array().unwrap().iter().map(|e| e["what"]["action"].clone()).collect();
    assert!(actions.contains(&"recovery_wrapped".into()) && actions.contains(&"keys_recovered".into()), "{log}");
    // The archive goes on: the recovered keys run the service.
    alice.send_text(c.id, "after the recovery").await.unwrap();
    let run = ok(retention_env(&moto, &with(&["run", "--once"]), &new_pass));
    assert_eq!(run["run"]["archived"], 1, "{run}");

    // Hostile or mistaken inputs: each refused with the reason.
    let mut forged: Value = serde_json::from_str(&text).unwrap();
    let ct = forged["wrap"]["ciphertext"].as_str().unwrap().to_owned();
    let flipped = format!("{}{}", if ct.starts_with('A') { 'B' } else { 'A' }, ct.get(1..).unwrap());
    forged["wrap"]["ciphertext"] = flipped.into();
    let forged_path = dir.join("forged.json");
    std::fs::write(&forged_path, forged.to_string()).unwrap();
    let other = dir.join("other-host");
    let args = ["retention", "--dir", s(&other), "--archive", archive, "custody", "recover", "--from", s(&forged_path)];
    refused(retention_env(&moto, &args, &new_pass), "KMS Decrypt refused");
    let mut swapped: Value = serde_json::from_str(&text).unwrap();
    swapped["device"]["device_id"] = "00".repeat(16).into();
    std::fs::write(&forged_path, swapped.to_string()).unwrap();
    refused(retention_env(&moto, &args, &new_pass), "KMS Decrypt refused");
    // Every public field is bound: a recovery file pointed at another relay
    // (or network key) does not open.
    let mut redirected: Value = serde_json::from_str(&text).unwrap();
    redirected["server_url"] = "https://relay.attacker.example".into();
    std::fs::write(&forged_path, redirected.to_string()).unwrap();
    refused(retention_env(&moto, &args, &new_pass), "KMS Decrypt refused");
    std::fs::write(&forged_path, b"{not json").unwrap();
    refused(retention_env(&moto, &args, &new_pass), "is not a Strongroom custody file");
    let args = ["retention", "--dir", s(&fresh), "--archive", archive, "custody", "recover", "--from", s(&recovery)];
    refused(retention_env(&moto, &args, &new_pass), "already exists");

    // A designated third party: read-only.
    let reader = dir.join("reader.json");
    let reader_pass = ("STRONGROOM_READER_PASSPHRASE", "the third party's passphrase");
    let env = [new_pass[0], reader_pass];
    ok(retention_env(&moto, &with(&["custody", "grant-reader", "--name", "Acme D3P LLC", "--out", s(&reader)]), &env));
    let as_reader = ["retention", "--reader", s(&reader), "--archive", archive, "--json"];
    let reader_with =
        |extra: &[&str]| -> Vec<String> { as_reader.iter().chain(extra).map(|a| a.to_string()).collect() };
    let out = retention_env(&moto, &reader_with(&["export", "--out", s(&dir.join("export-d3p"))]), &[reader_pass]);
    assert!(String::from_utf8_lossy(&out.stderr).contains("Acme D3P LLC"), "the reader is named");
    let theirs = ok(out);
    assert_eq!(theirs["counts"]["messages"].as_u64().unwrap(), exported["counts"]["messages"].as_u64().unwrap() + 1);
    let v = ok(retention_env(&moto, &reader_with(&["verify", "--offline"]), &[reader_pass]));
    assert_eq!(v["problem_count"], 0, "{v}");
    refused(retention_env(&moto, &reader_with(&["verify"]), &[reader_pass]), "add --offline");
    refused(retention_env(&moto, &reader_with(&["run", "--once"]), &[reader_pass]), "allows verify --offline, search");
    refused(retention_env(&moto, &reader_with(&["purge", "--period-days", "1"]), &[reader_pass]), "allows verify");
    refused(
        retention_env(
            &moto,
            &reader_with(&["search", "kept"]),
            &[("STRONGROOM_READER_PASSPHRASE", "not the passphrase")],
        ),
        "cannot unlock",
    );
    let as_recovery = ["retention", "--reader", s(&recovery), "--archive", archive, "search", "kept"];
    refused(retention_env(&moto, &as_recovery, &[reader_pass]), "not a reader file");
    let log = ok(retention_env(&moto, &with(&["access-log"]), &new_pass));
    assert!(log.to_string().contains("reader_granted") && log.to_string().contains("Acme D3P LLC"), "{log}");
}
