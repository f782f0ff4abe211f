//! The README's path for people, with the real binaries: a server, a
//! network, two people enrolled with the CLI exchanging messages; their
//! profiles hold no plaintext.
#![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic, clippy::indexing_slicing)]

mod common;

use std::path::Path;
use std::process::Command;

use common::*;
use serde_json::Value;

fn cli(profile: &Path, args: &[&str]) -> std::process::Output {
    Command::new(bin())
        .args(args)
        .arg("--profile")
        .arg(profile)
        .env("STRONGROOM_PASSPHRASE", "profile passphrase")
        .env("STRONGROOM_PASSWORD", "account password 123")
        .output()
        .unwrap()
}

fn ok_json(out: std::process::Output) -> Value {
    assert!(out.status.success(), "{}", String::from_utf8_lossy(&out.stderr));
    serde_json::from_slice(&out.stdout).unwrap()
}

fn files_containing(dir: &Path, needle: &[u8]) -> Vec<String> {
    let mut hits = Vec::new();
    for entry in std::fs::read_dir(dir).unwrap() {
        let path = entry.unwrap().path();
        if path.is_dir() {
            hits.extend(files_containing(&path, needle));
        } else if std::fs::read(&path).unwrap().windows(needle.len()).any(|w| w == needle) {
            hits.push(path.display().to_string());
        }
    }
    hits
}

#[test]
fn two_people_exchange_messages_with_the_cli() {
    let dir = temp_dir("cli");
    let server = ServerProc::start(&dir.join("data"), &[]);
    let (_, admin_invite) = create_network(&server, &dir, "acme");
    let (alice, bob) = (dir.join("alice"), dir.join("bob"));

    ok_json(cli(&alice, &["enrol", "--json", "--invite", &admin_invite, "--username", "alice"]));
    let invite = ok_json(cli(&alice, &["invite", "--json"]))["invite"].as_str().unwrap().to_owned();
    ok_json(cli(&bob, &["enrol", "--json", "--invite", &invite, "--username", "bob"]));
    // The invite was used up.
    let again = cli(&dir.join("eve"), &["enrol", "--invite", &invite, "--username", "eve"]);
    assert!(!again.status.success());
    assert!(
        String::from_utf8_lossy(&again.stderr).contains("already used"),
        "{}",
        String::from_utf8_lossy(&again.stderr)
    );

    let secret = "the quarterly numbers are 42.7 million";
    let sent = ok_json(cli(&alice, &["send", "--json", "--to", "bob", secret]));
    assert_eq!(sent["seq"], 1);
    assert_eq!(sent["retention"], false);
    ok_json(cli(&alice, &["send", "--json", "--to", "bob", "second message"]));

    let read = ok_json(cli(&bob, &["read", "--json"]));
    let texts: Vec<&str> = read["messages"].as_array().unwrap().iter().map(|m| m["text"].as_str().unwrap()).collect();
    assert_eq!(texts, vec![secret, "second message"]);
    assert_eq!(read["messages"][0]["sender"], "alice");
    assert!(read["warnings"].as_array().unwrap().is_empty());
    // Reading again shows the stored messages without fetching duplicates.
    let again = ok_json(cli(&bob, &["read", "--json"]));
    assert_eq!(again["messages"].as_array().unwrap().len(), 2);

    ok_json(cli(&bob, &["send", "--json", "--to", "alice", "got it"]));
    let read = ok_json(cli(&alice, &["read", "--json"]));
    assert_eq!(read["messages"][0]["text"], "got it");
    let convs = ok_json(cli(&alice, &["conversations", "list", "--json"]));
    assert_eq!(convs.as_array().unwrap().len(), 1);

    // Nothing readable at rest: not in the profiles, not on the server.
    for needle in [secret.as_bytes(), b"account password 123", b"profile passphrase"] {
        assert!(files_containing(&alice, needle).is_empty());
        assert!(files_containing(&bob, needle).is_empty());
        assert!(files_containing(&server.data_dir, needle).is_empty());
    }
    // A wrong passphrase is a clear one-line error.
    let out = Command::new(bin())
        .args(["read", "--profile"])
        .arg(&bob)
        .env("STRONGROOM_PASSPHRASE", "wrong")
        .output()
        .unwrap();
    assert!(!out.status.success());
    let err = String::from_utf8_lossy(&out.stderr);
    assert!(err.starts_with("error: ") && err.contains("wrong passphrase") && err.lines().count() == 1, "{err}");
}
