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

/// Enrols Alice with the administrator's invite, and Bob with one she makes; returns Bob's (now used) invite.
fn enrol_alice_and_bob(alice: &Path, bob: &Path, admin_invite: &str) -> String {
    ok_json(cli(alice, &["enrol", "--json", "--invite", admin_invite, "--username", "alice"]));
    let invite = ok_json(cli(alice, &["invite", "--json"]))["invite"].as_str().unwrap().to_owned();
    ok_json(cli(bob, &["enrol", "--json", "--invite", &invite, "--username", "bob"]));
    invite
}

#[test]
fn two_people_exchange_messages_with_the_cli() {
    let dir = temp_dir("cli");
    let server = ServerProc::start(&dir.join("data"), &[]);
    let (_, admin_invite) = create_network(&server, &dir, "acme");
    let (alice, bob) = (dir.join("alice"), dir.join("bob"));

    let invite = enrol_alice_and_bob(&alice, &bob, &admin_invite);
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
    // Alice's view: her own two messages (kept locally when sent) and Bob's reply, in order.
    let read = ok_json(cli(&alice, &["read", "--json"]));
    let view: Vec<(String, String, u64)> = read["messages"]
        .as_array()
        .unwrap()
        .iter()
        .map(|m| {
            (
                m["sender"].as_str().unwrap().to_owned(),
                m["text"].as_str().unwrap().to_owned(),
                m["seq"].as_u64().unwrap(),
            )
        })
        .collect();
    assert_eq!(
        view,
        vec![
            ("alice".into(), secret.into(), 1),
            ("alice".into(), "second message".into(), 2),
            // #3 is Bob's read receipt: sequenced like every message, folded into the view.
            ("bob".into(), "got it".into(), 4)
        ]
    );
    let convs = ok_json(cli(&alice, &["conversations", "list", "--json"]));
    assert_eq!(convs.as_array().unwrap().len(), 1);

    // Live: Bob watches while Alice sends; each message is printed as it arrives.
    let watcher = Command::new(bin())
        .args(["watch", "--json", "--count", "2", "--timeout", "30", "--profile"])
        .arg(&bob)
        .env("STRONGROOM_PASSPHRASE", "profile passphrase")
        .stdout(std::process::Stdio::piped())
        .spawn()
        .unwrap();
    std::thread::sleep(std::time::Duration::from_millis(1500));
    ok_json(cli(&alice, &["send", "--json", "--to", "bob", "live one"]));
    ok_json(cli(&alice, &["send", "--json", "--to", "bob", "live two"]));
    let out = watcher.wait_with_output().unwrap();
    assert!(out.status.success());
    let live: Vec<String> = String::from_utf8(out.stdout)
        .unwrap()
        .lines()
        .map(|l| serde_json::from_str::<Value>(l).unwrap()["text"].as_str().unwrap().to_owned())
        .collect();
    assert_eq!(live, vec!["live one", "live two"]);

    // Both sides see the same safety number.
    let a = ok_json(cli(&alice, &["verify", "--json", "bob"]));
    let b = ok_json(cli(&bob, &["verify", "--json", "alice"]));
    assert_eq!(a["safety_number"], b["safety_number"]);
    assert_eq!(a["qr"], b["qr"]);
    assert_eq!(a["safety_number"].as_str().unwrap().len(), 71);
    // Verified only once the person says they compared it; remembered.
    assert_eq!(a["verified"], "unverified");
    let confirmed = ok_json(cli(&alice, &["verify", "--json", "--confirm", "bob"]));
    assert_eq!((confirmed["verified"].as_str(), &confirmed["safety_number"]), (Some("verified"), &a["safety_number"]));
    assert_eq!(ok_json(cli(&alice, &["verify", "--json", "bob"]))["verified"], "verified");

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

/// Runs the CLI and samples its peak RSS (VmHWM) until it exits.
fn cli_peak_mib(profile: &Path, args: &[&str]) -> (std::process::Output, u64) {
    let child = Command::new(bin())
        .args(args)
        .arg("--profile")
        .arg(profile)
        .env("STRONGROOM_PASSPHRASE", "profile passphrase")
        .stdout(std::process::Stdio::piped())
        .stderr(std::process::Stdio::piped())
        .spawn()
        .unwrap();
    let status = format!("/proc/{}/status", child.id());
    let peak = std::sync::Arc::new(std::sync::atomic::AtomicU64::new(0));
    let p2 = peak.clone();
    let sampler = std::thread::spawn(move || {
        while let Ok(s) = std::fs::read_to_string(&status) {
            if let Some(kib) = s
                .lines()
                .find(|l| l.starts_with("VmHWM:"))
                .and_then(|l| l.split_whitespace().nth(1))
                .and_then(|v| v.parse::<u64>().ok())
            {
                p2.fetch_max(kib, std::sync::atomic::Ordering::Relaxed);
            }
            std::thread::sleep(std::time::Duration::from_millis(20));
        }
    });
    let out = child.wait_with_output().unwrap();
    sampler.join().unwrap();
    (out, peak.load(std::sync::atomic::Ordering::Relaxed) / 1024)
}

#[test]
fn a_100_mib_file_streams_through_in_flat_memory() {
    const SIZE: usize = 100 * 1024 * 1024;
    let dir = temp_dir("file");
    let server = ServerProc::start(&dir.join("data"), &[]);
    let (_, admin_invite) = create_network(&server, &dir, "acme");
    let (alice, bob) = (dir.join("alice"), dir.join("bob"));
    enrol_alice_and_bob(&alice, &bob, &admin_invite);

    let source = dir.join("report.bin");
    {
        use std::io::Write;
        let mut f = std::io::BufWriter::new(std::fs::File::create(&source).unwrap());
        let block: Vec<u8> = (0..1024 * 1024).map(|i| ((i * 7) % 253) as u8).collect();
        for i in 0..SIZE / block.len() {
            let mut b = block.clone();
            b[0] = i as u8; // every MiB differs
            f.write_all(&b).unwrap();
        }
    }
    let (out, send_peak) = cli_peak_mib(&alice, &["file", "send", "--json", "--to", "bob", source.to_str().unwrap()]);
    assert!(out.status.success(), "{}", String::from_utf8_lossy(&out.stderr));
    let sent: Value = serde_json::from_slice(&out.stdout).unwrap();
    assert_eq!(sent["size"], SIZE as u64);

    let read = ok_json(cli(&bob, &["read", "--json"]));
    let msg = &read["messages"][0];
    assert!(msg["text"].as_str().unwrap().starts_with("(file) report.bin"), "{msg}");
    let dest = dir.join("received.bin");
    let (out, get_peak) = cli_peak_mib(
        &bob,
        &["file", "get", "--json", msg["message_id"].as_str().unwrap(), "--out", dest.to_str().unwrap()],
    );
    assert!(out.status.success(), "{}", String::from_utf8_lossy(&out.stderr));
    // Unlocking a profile costs 64 MiB by itself (Argon2id); measure what the
    // file adds on top of a command that only unlocks and lists.
    let (out, baseline) = cli_peak_mib(&bob, &["conversations", "list", "--json"]);
    assert!(out.status.success());
    eprintln!("100 MiB file: peak RSS sender {send_peak} MiB, receiver {get_peak} MiB, baseline (unlock + list) {baseline} MiB");
    let growth = send_peak.max(get_peak).saturating_sub(baseline);
    assert!(growth < 25, "a 100 MiB file raised peak memory by {growth} MiB over the {baseline} MiB baseline");

    // Byte-identical, compared in chunks.
    use std::io::Read;
    let (mut a, mut b) = (std::fs::File::open(&source).unwrap(), std::fs::File::open(&dest).unwrap());
    let (mut x, mut y) = (vec![0u8; 1 << 20], vec![0u8; 1 << 20]);
    loop {
        let n = a.read(&mut x).unwrap();
        let m = b.read(&mut y).unwrap();
        assert_eq!(x[..n], y[..m]);
        if n == 0 {
            break;
        }
    }
    // The profiles' scratch space (ciphertext in transit) is cleaned up.
    assert_eq!(std::fs::read_dir(alice.join("tmp")).unwrap().count(), 0);
    assert_eq!(std::fs::read_dir(bob.join("tmp")).unwrap().count(), 0);
    // Asking for it again refuses to overwrite.
    let again = cli(&bob, &["file", "get", msg["message_id"].as_str().unwrap(), "--out", dest.to_str().unwrap()]);
    assert!(!again.status.success());
}

#[test]
fn replies_edits_recalls_and_reactions() {
    let dir = temp_dir("edits");
    let server = ServerProc::start(&dir.join("data"), &[]);
    let (_, admin_invite) = create_network(&server, &dir, "acme");
    let (alice, bob) = (dir.join("alice"), dir.join("bob"));
    enrol_alice_and_bob(&alice, &bob, &admin_invite);

    let draft =
        ok_json(cli(&alice, &["send", "--json", "--to", "bob", "draft"]))["message_id"].as_str().unwrap().to_owned();
    let oops = ok_json(cli(&alice, &["send", "--json", "--to", "bob", "oops, wrong chat"]))["message_id"]
        .as_str()
        .unwrap()
        .to_owned();
    ok_json(cli(&bob, &["read", "--json"]));

    ok_json(cli(&alice, &["edit", "--json", &draft, "final text"]));
    ok_json(cli(&alice, &["recall", "--json", &oops]));
    ok_json(cli(&bob, &["react", "--json", &draft, "👍"]));
    ok_json(cli(&bob, &["send", "--json", "--reply-to", &draft, "looks good"]));
    // Bob cannot edit Alice's message: the edit is ignored where it is applied.
    ok_json(cli(&bob, &["edit", "--json", &draft, "forged by bob"]));

    let shown = |v: &Value| -> Vec<(String, String, bool)> {
        v["messages"]
            .as_array()
            .unwrap()
            .iter()
            .map(|m| {
                (
                    m["sender"].as_str().unwrap().to_owned(),
                    m["text"].as_str().unwrap().to_owned(),
                    m["edited"].as_bool().unwrap(),
                )
            })
            .collect()
    };
    let bob_view = ok_json(cli(&bob, &["read", "--json"]));
    assert_eq!(
        shown(&bob_view),
        vec![
            ("alice".into(), "final text".into(), true),
            ("alice".into(), "(message recalled)".into(), false),
            ("bob".into(), "(reply to alice \"final text\") looks good".into(), false)
        ],
        "edit applied, the recalled message a placeholder, the reply says what it answers"
    );
    let alice_view = ok_json(cli(&alice, &["read", "--json"]));
    assert_eq!(shown(&alice_view)[0], ("alice".into(), "final text".into(), true), "bob's forged edit is ignored");
    assert_eq!(alice_view["messages"][0]["reactions"][0]["emoji"], "👍");
    assert_eq!(alice_view["messages"][0]["reactions"][0]["user"], "bob");
    assert_eq!(shown(&alice_view)[2].1, "(reply to alice \"final text\") looks good");
}

#[test]
fn rooms_moderation_devices_and_login() {
    let dir = temp_dir("rooms");
    let server = ServerProc::start(&dir.join("data"), &[]);
    let (_, admin_invite) = create_network(&server, &dir, "acme");
    let (alice, bob, carol) = (dir.join("alice"), dir.join("bob"), dir.join("carol"));
    ok_json(cli(&alice, &["enrol", "--json", "--invite", &admin_invite, "--username", "alice"]));
    for (p, name) in [(&bob, "bob"), (&carol, "carol")] {
        let invite = ok_json(cli(&alice, &["invite", "--json"]))["invite"].as_str().unwrap().to_owned();
        ok_json(cli(p, &["enrol", "--json", "--invite", &invite, "--username", name]));
    }
    let room = ok_json(cli(&alice, &["conversations", "create", "--json", "--kind", "room", "bob"]))["id"]
        .as_str()
        .unwrap()
        .to_owned();

    // A plain member cannot change a room.
    let denied = cli(&bob, &["members", "--conversation", &room, "--add", "carol"]);
    assert!(!denied.status.success());
    assert!(
        String::from_utf8_lossy(&denied.stderr).contains("moderators"),
        "{}",
        String::from_utf8_lossy(&denied.stderr)
    );
    // The moderator adds Carol and promotes Bob; now Bob may change it.
    let m = ok_json(cli(&alice, &["members", "--json", "--conversation", &room, "--add", "carol", "--promote", "bob"]));
    let roles: Vec<(String, String)> = m["members"]
        .as_array()
        .unwrap()
        .iter()
        .map(|x| (x["username"].as_str().unwrap().into(), x["role"].as_str().unwrap().into()))
        .collect();
    assert!(
        roles.contains(&("bob".into(), "moderator".into())) && roles.contains(&("carol".into(), "member".into())),
        "{roles:?}"
    );

    ok_json(cli(&alice, &["send", "--json", "--conversation", &room, "welcome to the room"]));
    for p in [&bob, &carol] {
        let read = ok_json(cli(p, &["read", "--json"]));
        let texts: Vec<&str> =
            read["messages"].as_array().unwrap().iter().map(|x| x["text"].as_str().unwrap()).collect();
        assert!(texts.contains(&"welcome to the room"), "{texts:?}");
        assert!(texts.iter().any(|t| t.starts_with("(added ")), "membership changes are announced in-band: {texts:?}");
    }
    ok_json(cli(&bob, &["members", "--json", "--conversation", &room, "--remove", "carol"]));
    // Removed, Carol no longer sees the room.
    let gone = cli(&carol, &["members", "--conversation", &room]);
    assert!(!gone.status.success());
    assert!(String::from_utf8_lossy(&gone.stderr).contains("not a member"));

    let devices = ok_json(cli(&alice, &["devices", "--json"]));
    assert_eq!(devices.as_array().unwrap().len(), 1);
    assert_eq!(devices[0]["this_device"], true);
    ok_json(cli(&alice, &["login", "--json"]));
    ok_json(cli(&alice, &["conversations", "list", "--json"]));
}

#[test]
fn a_second_device_is_linked_by_approval_and_gets_everything() {
    use std::io::BufRead;
    let dir = temp_dir("link");
    let server = ServerProc::start(&dir.join("data"), &[]);
    let (network, admin_invite) = create_network(&server, &dir, "acme");
    let (alice, alice2, bob) = (dir.join("alice"), dir.join("alice2"), dir.join("bob"));
    enrol_alice_and_bob(&alice, &bob, &admin_invite);

    // The new device asks and shows a code; it needs the password but cannot join by password alone.
    let mut new_device = Command::new(bin())
        .args([
            "link",
            "start",
            "--json",
            "--server",
            &server.url,
            "--network",
            &network.to_string(),
            "--username",
            "alice",
            "--timeout",
            "60",
            "--profile",
        ])
        .arg(&alice2)
        .env("STRONGROOM_PASSPHRASE", "profile passphrase")
        .env("STRONGROOM_PASSWORD", "account password 123")
        .stdout(std::process::Stdio::piped())
        .spawn()
        .unwrap();
    let mut lines = std::io::BufReader::new(new_device.stdout.take().unwrap()).lines();
    let first: Value = serde_json::from_str(&lines.next().unwrap().unwrap()).unwrap();
    let code = first["link_code"].as_str().unwrap().to_owned();

    // A wrong code approves nothing.
    let wrong = cli(&alice, &["link", "approve", "0000-0000-0000-0000-0000-0000-0000-0000"]);
    assert!(!wrong.status.success());
    assert!(String::from_utf8_lossy(&wrong.stderr).contains("shows that code"));
    // The right secret with one digit of the check changed binds no keys either.
    let mut tampered = code.clone();
    let last = if tampered.ends_with('0') { "1" } else { "0" };
    tampered.replace_range(tampered.len() - 1.., last);
    assert!(String::from_utf8_lossy(&cli(&alice, &["link", "approve", &tampered]).stderr).contains("shows that code"));
    let short = cli(&alice, &["link", "approve", "0000-0000-0000-0000-0000"]);
    assert!(String::from_utf8_lossy(&short.stderr).contains("32 hex digits"));
    ok_json(cli(&alice, &["link", "approve", "--json", &code]));
    let done: Value = serde_json::from_str(&lines.next().unwrap().unwrap()).unwrap();
    // The new device shows the network key it pinned, to compare.
    let admin_view = Command::new(bin())
        .args(["admin", "network", "fingerprint", "--key-file"])
        .arg(dir.join("acme.key"))
        .env("STRONGROOM_NETWORK_KEY_PASSPHRASE", "network key passphrase")
        .output()
        .unwrap();
    let pinned = done["network_fingerprint"].as_str().unwrap();
    assert!(pinned.len() > 40 && String::from_utf8_lossy(&admin_view.stdout).contains(pinned), "{pinned}");
    assert_eq!(done["linked"], true);
    assert!(new_device.wait().unwrap().success());

    let devices = ok_json(cli(&alice, &["devices", "--json"]));
    assert_eq!(devices.as_array().unwrap().len(), 2);
    // Bob's message reaches both of Alice's devices; the new device's message reaches Bob and Alice's first device.
    ok_json(cli(&bob, &["send", "--json", "--to", "alice", "to both devices"]));
    ok_json(cli(&alice2, &["send", "--json", "--to", "bob", "from the new device"]));
    for p in [&alice, &alice2] {
        let read = ok_json(cli(p, &["read", "--json"]));
        let texts: Vec<&str> =
            read["messages"].as_array().unwrap().iter().map(|m| m["text"].as_str().unwrap()).collect();
        assert!(texts.contains(&"to both devices"), "{texts:?}");
        assert!(texts.contains(&"from the new device"), "{texts:?}");
    }
    let read = ok_json(cli(&bob, &["read", "--json"]));
    assert!(read["messages"].as_array().unwrap().iter().any(|m| m["text"] == "from the new device"));
    // Both of Alice's devices show Bob the same safety number: one identity.
    let one = ok_json(cli(&alice, &["verify", "--json", "bob"]));
    let two = ok_json(cli(&alice2, &["verify", "--json", "bob"]));
    assert_eq!(one["safety_number"], two["safety_number"]);

    // Removing the new device: it is logged out at once and gets nothing more.
    let second = devices.as_array().unwrap().iter().find(|d| d["this_device"] == false).unwrap()["device_id"]
        .as_str()
        .unwrap()
        .to_owned();
    let after = ok_json(cli(&alice, &["devices", "--json", "--remove", &second]));
    assert_eq!(after.as_array().unwrap().iter().filter(|d| d["revoked"] == true).count(), 1);
    let out = cli(&alice2, &["read", "--json"]);
    assert!(!out.status.success());
    assert!(String::from_utf8_lossy(&out.stderr).contains("401"), "{}", String::from_utf8_lossy(&out.stderr));
    ok_json(cli(&bob, &["send", "--json", "--to", "alice", "only the first device now"]));
    let read = ok_json(cli(&alice, &["read", "--json"]));
    assert!(read["messages"].as_array().unwrap().iter().any(|m| m["text"] == "only the first device now"));
}

#[test]
fn read_receipts_locations_and_forwarding() {
    let dir = temp_dir("receipts");
    let server = ServerProc::start(&dir.join("data"), &[]);
    let (_, admin_invite) = create_network(&server, &dir, "acme");
    let (alice, bob, carol) = (dir.join("alice"), dir.join("bob"), dir.join("carol"));
    enrol_alice_and_bob(&alice, &bob, &admin_invite);
    let invite = ok_json(cli(&alice, &["invite", "--json"]))["invite"].as_str().unwrap().to_owned();
    ok_json(cli(&carol, &["enrol", "--json", "--invite", &invite, "--username", "carol"]));

    // Read receipts: Bob reads, Alice sees "read by bob"; Bob's --no-receipts read sends none.
    let hello = ok_json(cli(&alice, &["send", "--json", "--to", "bob", "hello bob"]))["message_id"]
        .as_str()
        .unwrap()
        .to_owned();
    ok_json(cli(&bob, &["read", "--json", "--no-receipts"]));
    let view = ok_json(cli(&alice, &["read", "--json"]));
    assert_eq!(view["messages"][0]["read_by"], serde_json::json!([]), "no receipt when turned off");
    ok_json(cli(&bob, &["read", "--json"]));
    ok_json(cli(&bob, &["read", "--json"])); // a second read receipts nothing new
    let view = ok_json(cli(&alice, &["read", "--json"]));
    assert_eq!(view["messages"][0]["read_by"], serde_json::json!(["bob"]));
    let human = cli(&alice, &["read"]);
    assert!(String::from_utf8_lossy(&human.stdout).contains("(read by bob)"));

    // Static and live locations; out-of-range ones are refused before sending.
    ok_json(cli(&alice, &["send", "--json", "--to", "bob", "--location", "51.501364,-0.14189", "--accuracy", "12"]));
    ok_json(cli(&alice, &["send", "--json", "--to", "bob", "--location", "-33.8568,151.2153", "--live-for", "900"]));
    let bad = cli(&alice, &["send", "--to", "bob", "--location", "91,0"]);
    assert!(!bad.status.success());
    assert!(String::from_utf8_lossy(&bad.stderr).contains("latitude"), "{}", String::from_utf8_lossy(&bad.stderr));
    let bad = cli(&alice, &["send", "--to", "bob", "--location", "north"]);
    assert!(String::from_utf8_lossy(&bad.stderr).contains("LATITUDE,LONGITUDE"));
    let texts: Vec<String> = ok_json(cli(&bob, &["read", "--json"]))["messages"]
        .as_array()
        .unwrap()
        .iter()
        .map(|m| m["text"].as_str().unwrap().to_owned())
        .collect();
    assert!(texts.contains(&"(location) 51.501364, -0.141890 ±12 m".to_owned()), "{texts:?}");
    assert!(texts.iter().any(|t| t.starts_with("(location) -33.856800, 151.215300 ±0 m, live until 20")), "{texts:?}");

    // Forwarding: Bob forwards Alice's text and a file to Carol, who has no
    // access to the original conversation; the file is re-encrypted and re-uploaded.
    let doc = dir.join("minutes.txt");
    std::fs::write(&doc, b"minutes of the board meeting").unwrap();
    let file_msg = ok_json(cli(&alice, &["file", "send", "--json", "--to", "bob", doc.to_str().unwrap()]))
        ["message_id"]
        .as_str()
        .unwrap()
        .to_owned();
    ok_json(cli(&bob, &["read", "--json"]));
    ok_json(cli(&bob, &["forward", "--json", &hello, "--to", "carol"]));
    ok_json(cli(&bob, &["forward", "--json", &file_msg, "--to", "carol"]));
    let bad = cli(&bob, &["forward", &"0".repeat(32), "--to", "carol"]);
    assert!(String::from_utf8_lossy(&bad.stderr).contains("no stored message"));
    let carol_view = ok_json(cli(&carol, &["read", "--json"]));
    let msgs = carol_view["messages"].as_array().unwrap();
    assert_eq!(msgs[0]["text"], "(forwarded) hello bob", "marked, with nothing of where it came from");
    assert_eq!(msgs[0]["sender"], "bob");
    let forwarded_file = msgs[1]["message_id"].as_str().unwrap();
    assert!(msgs[1]["text"].as_str().unwrap().contains("minutes.txt"));
    let out = dir.join("carol-minutes.txt");
    ok_json(cli(&carol, &["file", "get", "--json", forwarded_file, "--out", out.to_str().unwrap()]));
    assert_eq!(std::fs::read(&out).unwrap(), b"minutes of the board meeting");
    assert!(files_containing(&bob, b"minutes of the board").is_empty(), "no plaintext left in Bob's profile");
}
