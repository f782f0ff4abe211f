//! README's walkthrough, run as written: every `sr …` and `strongroom …`
//! line of its shell blocks, in order, with only the environment variables
//! README lists. The placeholders a reader fills in by hand (`'sr1-…'`,
//! `MESSAGE_ID`, `NETWORK_ID`, `FINGERPRINT`, `DEVICE_ID`) are filled from
//! what the earlier commands printed, as a reader would. The server is
//! started here (on a free port, which replaces `127.0.0.1:8080`); the app
//! (`app`, interactive) is the only line left out.
#![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic, clippy::indexing_slicing)]

mod common;

use std::path::Path;
use std::process::{Command, Stdio};

use common::*;

/// Shell words, with '…' and "…" quoting (enough for README's lines).
fn words(line: &str) -> Vec<String> {
    let mut out = Vec::new();
    let mut cur = String::new();
    let mut quote = None;
    let mut any = false;
    for ch in line.chars() {
        match (quote, ch) {
            (None, '#') if cur.is_empty() => break,
            (None, '\'' | '"') => {
                quote = Some(ch);
                any = true;
            }
            (Some(q), c) if c == q => quote = None,
            (None, c) if c.is_whitespace() => {
                if any || !cur.is_empty() {
                    out.push(std::mem::take(&mut cur));
                }
                any = false;
            }
            (_, c) => cur.push(c),
        }
    }
    if any || !cur.is_empty() {
        out.push(cur);
    }
    out
}

/// The walkthrough's commands: each block's `sr`/`strongroom` lines.
fn commands(readme: &str) -> Vec<Vec<String>> {
    let mut out = Vec::new();
    let mut in_sh = false;
    for line in readme.lines() {
        if line.starts_with("```") {
            in_sh = line == "```sh";
            continue;
        }
        let w = words(line);
        if !in_sh || w.is_empty() || !(w[0] == "sr" || w[0] == "strongroom") {
            continue;
        }
        out.push(w[1..].to_vec());
    }
    out
}

/// The last short or full message id printed on a line that contains `marker`.
fn id_on_line(printed: &str, marker: &str) -> Option<String> {
    let line = printed.lines().rev().find(|l| l.contains(marker))?;
    Some(line.split('[').nth(1)?.split(']').next()?.to_owned())
}

#[test]
fn the_readme_walkthrough_runs_as_written() {
    let dir = temp_dir("readme");
    let server = ServerProc::start(&dir.join("strongroom-data"), &[]);
    let readme = std::fs::read_to_string(Path::new(env!("CARGO_MANIFEST_DIR")).join("../../README.md")).unwrap();
    std::fs::write(dir.join("report.pdf"), b"%PDF-1.4 the quarterly report").unwrap();
    let cmds = commands(&readme);
    assert!(cmds.len() > 20, "README's walkthrough: {cmds:?}");

    let mut invite = String::new();
    let (mut network, mut fingerprint, mut message, mut device) = (String::new(), String::new(), None, String::new());
    let mut ran = 0;
    for cmd in cmds {
        if cmd[0] == "app" || cmd[0] == "server" {
            continue;
        }
        let args: Vec<String> = cmd
            .iter()
            .map(|a| {
                let a = a.replace("http://127.0.0.1:8080", &server.url);
                match a.as_str() {
                    "sr1-…" => invite.clone(),
                    "NETWORK_ID" => network.clone(),
                    "FINGERPRINT" => fingerprint.clone(),
                    "DEVICE_ID" => device.clone(),
                    "MESSAGE_ID" => message.clone().unwrap_or_else(|| panic!("no message id printed before {cmd:?}")),
                    _ => a.replace("NETWORK_ID", &network),
                }
            })
            .collect();
        // Only the variables README lists, with the values a reader chose.
        let out = Command::new(bin())
            .args(&args)
            .current_dir(&dir)
            .env_clear()
            .env("PATH", std::env::var("PATH").unwrap_or_default())
            .env("STRONGROOM_PASSPHRASE", "profile passphrase")
            .env("STRONGROOM_PASSWORD", PASSWORD)
            .env("STRONGROOM_NETWORK_KEY_PASSPHRASE", "network key passphrase")
            .env("STRONGROOM_RETENTION_PASSPHRASE", "retention passphrase")
            .stdin(Stdio::null())
            .output()
            .unwrap();
        let printed = String::from_utf8_lossy(&out.stdout).into_owned();
        assert!(
            out.status.success(),
            "`sr {}` failed: {}{printed}",
            args.join(" "),
            String::from_utf8_lossy(&out.stderr)
        );
        ran += 1;
        if let Some(code) = printed.split_whitespace().find(|w| w.starts_with("sr1-")) {
            invite = code.to_owned();
        }
        for line in printed.lines() {
            if let Some(rest) = line.strip_prefix("Network key fingerprint: ") {
                fingerprint = rest.trim().to_owned();
            }
            if let Some(rest) = line.split("created: ").nth(1) {
                network = rest.trim().to_owned();
            }
        }
        if args[0] == "read" {
            message = id_on_line(&printed, "(file)").or(message);
        }
        if args.starts_with(&["admin".into(), "users".into(), "list".into()]) {
            // The next device to wipe: bob's, from the administrator's view.
            let listed = Command::new(bin())
                .args(["admin", "devices", "list", "bob", "--json", "--profile", "alice"])
                .current_dir(&dir)
                .env("STRONGROOM_PASSPHRASE", "profile passphrase")
                .output()
                .unwrap();
            let v: serde_json::Value = serde_json::from_slice(&listed.stdout).unwrap();
            device = v[0]["device_id"].as_str().unwrap().to_owned();
        }
    }
    assert!(ran > 20, "{ran} commands ran");
    assert!(!network.is_empty() && message.is_some());
}
