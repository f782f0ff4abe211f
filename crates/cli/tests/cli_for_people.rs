//! The CLI as a person uses it: named conversations, reading with names,
//! times and short ids, ids typed as their first digits, an inbox of unread
//! messages, membership changes, replies, recalls and forwards in words, a
//! clamped timer explained, prompts that refuse short or unconfirmed
//! secrets, readable audit times and plain-text log files.
#![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic, clippy::indexing_slicing)]

mod common;

use std::path::Path;
use std::process::{Command, Output, Stdio};

use common::*;
use serde_json::Value;

/// The binary as `who` (profile `dir/who`, passphrase "<who> passphrase").
fn as_(dir: &Path, who: &str, args: &[&str]) -> Output {
    Command::new(bin())
        .args(args)
        .args(["--profile", s(&dir.join(who))])
        .env("STRONGROOM_PASSPHRASE", format!("{who} passphrase"))
        .env_remove("STRONGROOM_PASSWORD")
        .stdin(Stdio::null())
        .output()
        .unwrap()
}

fn ok(dir: &Path, who: &str, args: &[&str]) -> String {
    let out = as_(dir, who, args);
    assert!(out.status.success(), "{who} {args:?}: {}", String::from_utf8_lossy(&out.stderr));
    String::from_utf8_lossy(&out.stdout).into_owned()
}

fn fails(dir: &Path, who: &str, args: &[&str]) -> String {
    let out = as_(dir, who, args);
    assert!(!out.status.success(), "{who} {args:?} should fail: {}", String::from_utf8_lossy(&out.stdout));
    String::from_utf8_lossy(&out.stderr).into_owned()
}

fn json(dir: &Path, who: &str, args: &[&str]) -> Value {
    let mut all = args.to_vec();
    all.push("--json");
    serde_json::from_str(&ok(dir, who, &all)).unwrap()
}

/// The short id `read` printed for the message whose line contains `text`.
fn short_id_of(read: &str, text: &str) -> String {
    let line = read.lines().find(|l| l.contains(text)).unwrap_or_else(|| panic!("no {text:?} in {read}"));
    line.split('[').nth(1).unwrap().split(']').next().unwrap().to_owned()
}

/// The numbers (`#n`) of a conversation's lines, in order.
fn numbers(read: &str) -> Vec<usize> {
    read.lines().filter_map(|l| l.strip_prefix('#')?.split(' ').next()?.parse().ok()).collect()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_cli_speaks_in_names_times_and_short_ids() {
    let dir = temp_dir("cli-people");
    let server = ServerProc::start(&dir.join("data"), &[]);
    let (alice, bob) = two_clients(&dir, &server).await;
    let invite = alice.create_invite(false).await.unwrap().invite;
    alice.close().await;
    bob.close().await;

    // Secrets: a short one exits non-zero, and the environment variable is named when there is no terminal.
    let carol = Command::new(bin())
        .args(["enrol", "--invite", &invite, "--username", "carol", "--profile", s(&dir.join("carol"))])
        .env("STRONGROOM_PASSPHRASE", "short")
        .env("STRONGROOM_PASSWORD", PASSWORD)
        .stdin(Stdio::null())
        .output()
        .unwrap();
    assert!(!carol.status.success());
    assert!(String::from_utf8_lossy(&carol.stderr).contains("at least 8 characters"), "{carol:?}");
    let carol = Command::new(bin())
        .args(["enrol", "--invite", &invite, "--username", "carol", "--profile", s(&dir.join("carol"))])
        .env_remove("STRONGROOM_PASSPHRASE")
        .stdin(Stdio::null())
        .output()
        .unwrap();
    assert!(String::from_utf8_lossy(&carol.stderr).contains("set STRONGROOM_PASSPHRASE"), "{carol:?}");
    let carol = Command::new(bin())
        .args(["enrol", "--invite", &invite, "--username", "carol", "--profile", s(&dir.join("carol"))])
        .env("STRONGROOM_PASSPHRASE", "carol passphrase")
        .env("STRONGROOM_PASSWORD", PASSWORD)
        .output()
        .unwrap();
    assert!(carol.status.success(), "{carol:?}");
    let help = Command::new(bin()).arg("--help").output().unwrap();
    let help = String::from_utf8_lossy(&help.stdout);
    for var in [
        "STRONGROOM_PASSPHRASE",
        "STRONGROOM_PASSWORD",
        "STRONGROOM_NETWORK_KEY_PASSPHRASE",
        "STRONGROOM_RETENTION_PASSPHRASE",
    ] {
        assert!(help.contains(var), "--help lists {var}: {help}");
    }

    // A named group; its id is typed as its first digits.
    let made = ok(&dir, "alice", &["conversations", "create", "--name", "Deal room", "bob"]);
    assert!(made.contains("Created group \"Deal room\""), "{made}");
    let id = made.split_whitespace().last().unwrap().to_owned();
    ok(&dir, "alice", &["send", "--conversation", &id[..6], "hello team"]);
    let read = ok(&dir, "bob", &["read"]);
    assert!(read.contains(&format!("== Deal room [{}] ==", &id[..8])), "{read}");
    assert!(read.contains(" UTC alice ["), "times and names: {read}");
    assert!(read.contains("(named the conversation \"Deal room\")"), "{read}");
    let hello = short_id_of(&read, "hello team");
    assert_eq!(hello.len(), 8);

    // Replies, edits, reactions by short id; replies show what they answer.
    ok(&dir, "bob", &["send", "--reply-to", &hello, "hi alice"]);
    ok(&dir, "alice", &["edit", &hello[..6], "hello, team"]);
    ok(&dir, "bob", &["react", &hello, "👍"]);
    ok(&dir, "alice", &["send", "--conversation", &id[..8], "wrong chat"]);
    let read = ok(&dir, "alice", &["read", "--conversation", &id[..8]]);
    assert!(read.contains("(reply to alice \"hello, team\") hi alice"), "{read}");
    assert!(read.contains("hello, team (edited) [👍 bob]"), "{read}");
    let oops = short_id_of(&read, "wrong chat");
    ok(&dir, "alice", &["recall", &oops]);
    // Bad ids: named, never guessed.
    assert!(fails(&dir, "alice", &["edit", "ffffff", "x"])
        .contains("no message on this device has a short id starting with ffffff"));
    assert!(fails(&dir, "alice", &["edit", "abcd", "x"]).contains("first 6"));
    assert!(fails(&dir, "alice", &["send", "--conversation", "zzzz", "x"]).contains("hex digits"));

    // Nobody's text can drive the terminal or fake a line.
    ok(
        &dir,
        "alice",
        &["send", "--conversation", &id[..8], "hi\u{1b}[2J\n#9 2026-01-01 00:00:00 UTC boss [deadbeef]: pay now"],
    );
    assert!(fails(&dir, "alice", &["conversations", "rename", &id[..8], "x\u{1b}[2J"]).contains("printable"));
    let read = ok(&dir, "bob", &["read", "--conversation", &id[..8]]);
    assert!(!read.contains('\u{1b}'), "{read:?}");
    assert!(read.contains("hi\\u{1b}[2J\n    #9 2026"), "escaped and indented: {read}");

    // Members change in words; read receipts leave no gaps in the numbers.
    ok(&dir, "alice", &["members", "--conversation", &id[..8], "--add", "carol"]);
    let read = ok(&dir, "bob", &["read"]);
    assert!(read.contains("(message recalled)"), "a placeholder where the message was: {read}");
    assert!(read.contains("(added carol)"), "{read}");
    let n = numbers(&read.replace("\n    #9", ""));
    assert_eq!(n, (1..=n.len()).collect::<Vec<_>>(), "no gaps: {read}");

    // An inbox of unread messages; --limit; then nothing unread.
    ok(&dir, "alice", &["send", "--conversation", &id[..8], "first new"]);
    ok(&dir, "alice", &["send", "--conversation", &id[..8], "second new"]);
    let list = ok(&dir, "bob", &["conversations", "list"]);
    assert!(list.contains("Deal room — group, 3 members, 2 unread: alice, bob, carol"), "{list}");
    // Oldest unread first: what --limit leaves out stays unread.
    let inbox = ok(&dir, "bob", &["read", "--unread", "--limit", "1"]);
    assert!(inbox.contains("first new") && !inbox.contains("second new") && !inbox.contains("hello"), "{inbox}");
    let inbox = ok(&dir, "bob", &["read", "--unread"]);
    assert!(inbox.contains("second new") && !inbox.contains("first new"), "{inbox}");
    assert!(ok(&dir, "bob", &["read", "--unread"]).contains("Nothing unread."));
    let v = json(&dir, "bob", &["conversations", "list"]);
    assert_eq!((v[0]["name"].as_str(), v[0]["unread"].as_u64()), (Some("Deal room"), Some(0)), "{v}");

    // Renamed; forwarded messages are marked.
    ok(&dir, "bob", &["conversations", "rename", &id[..8], "Closing room"]);
    assert!(ok(&dir, "alice", &["conversations", "list"]).contains("Closing room"));
    ok(&dir, "bob", &["forward", &hello, "--to", "carol"]);
    let read = ok(&dir, "carol", &["read"]);
    // Retention is off: marked forwarded, with nothing of where it came from.
    assert!(read.contains("bob [") && read.contains("(forwarded) hello, team"), "{read}");
    assert!(read.contains("== Closing room"), "{read}");

    // watch shows names.
    let watching = Command::new(bin())
        .args(["watch", "--count", "1", "--timeout", "20", "--profile", s(&dir.join("carol"))])
        .env("STRONGROOM_PASSPHRASE", "carol passphrase")
        .stdout(Stdio::piped())
        .stderr(Stdio::null())
        .spawn()
        .unwrap();
    std::thread::sleep(std::time::Duration::from_millis(1500));
    ok(&dir, "alice", &["send", "--conversation", &id[..8], "live"]);
    let watched = watching.wait_with_output().unwrap();
    let watched = String::from_utf8_lossy(&watched.stdout);
    assert!(watched.contains(" alice [") && watched.contains("live"), "{watched}");

    // A timer the group clamps is explained.
    ok(&dir, "alice", &["admin", "settings", "set", "--set", "max_ttl_secs=3600"]);
    let sent = as_(&dir, "alice", &["send", "--conversation", &id[..8], "--ttl", "86400", "soon gone"]);
    assert!(sent.status.success());
    let notice = String::from_utf8_lossy(&sent.stderr);
    assert!(notice.contains("up to 3600 s: this message expires after 3600 s, not 86400 s"), "{notice}");

    // Audit times are readable.
    assert!(ok(&dir, "alice", &["admin", "audit", "list"]).contains(" UTC "));
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn on_a_terminal_secrets_are_not_echoed_and_new_ones_are_asked_twice() {
    if Command::new("python3").arg("--version").output().is_err() {
        eprintln!("SKIPPED: python3 (for a pseudo-terminal) is not installed");
        return;
    }
    let dir = temp_dir("cli-tty");
    let server = ServerProc::start(&dir.join("data"), &[]);
    let (_, invite) = create_network(&server, &dir, "acme");
    let helper = Path::new(env!("CARGO_MANIFEST_DIR")).join("tests/fixtures/on_a_terminal.py");
    let enrol = |answers: &[&str]| {
        let mut c = Command::new("python3");
        c.arg(&helper).args(answers).arg("--").arg(bin());
        c.args(["enrol", "--invite", &invite, "--username", "erin", "--profile", s(&dir.join("erin"))]);
        c.env_remove("STRONGROOM_PASSPHRASE").env_remove("STRONGROOM_PASSWORD").output().unwrap()
    };
    // Typed differently the second time: refused, nothing made.
    let out = enrol(&["profile passphrase (8+ characters)=tty passphrase one", "Repeat=tty passphrase two"]);
    assert!(!out.status.success());
    assert!(String::from_utf8_lossy(&out.stdout).contains("differ"), "{out:?}");
    assert!(!dir.join("erin").exists());
    let out = enrol(&[
        "profile passphrase (8+ characters)=tty passphrase one",
        "Repeat a profile passphrase=tty passphrase one",
        "account password (10+ characters)=tty account password",
        "Repeat an account password=tty account password",
    ]);
    let shown = String::from_utf8_lossy(&out.stdout);
    assert!(out.status.success(), "{shown}");
    assert!(shown.contains("Enrolled erin"), "{shown}");
    assert!(!shown.contains("tty passphrase one") && !shown.contains("tty account password"), "echoed: {shown}");
}

#[test]
fn a_server_log_written_to_a_file_has_no_colour_codes() {
    let dir = temp_dir("cli-log");
    let log = std::fs::File::create(dir.join("server.log")).unwrap();
    let mut server = Command::new(bin())
        .args(["server", "--listen", "127.0.0.1:0", "--data-dir", s(&dir.join("data"))])
        .stdout(Stdio::null())
        .stderr(log)
        .spawn()
        .unwrap();
    let deadline = std::time::Instant::now() + std::time::Duration::from_secs(20);
    while !std::fs::read_to_string(dir.join("server.log")).unwrap().contains("accepting connections") {
        assert!(std::time::Instant::now() < deadline, "the server logged nothing");
        std::thread::sleep(std::time::Duration::from_millis(100));
    }
    let _ = server.kill();
    let _ = server.wait();
    let text = std::fs::read_to_string(dir.join("server.log")).unwrap();
    assert!(text.contains("INFO"), "{text}");
    assert!(!text.contains('\u{1b}'), "no escape codes in a file: {text:?}");
}
