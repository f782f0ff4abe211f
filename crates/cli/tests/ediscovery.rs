//! eDiscovery exports read back by an independent reader: a conversation
//! with a reply, an edit, a reaction, a recall, an image, a document, a
//! rename and membership changes, exported in every format, then checked by
//! `fixtures/check_export.py` (Python's csv with þ and 0x14, email, zipfile,
//! ElementTree; Ed25519 and AES-GCM from `cryptography`): the manifest's
//! signature, every file's hash, DAT/OPT, EML, EDRM XML and RSMF, and every
//! record's inclusion proof against the archive's signed checkpoint.
#![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic, clippy::indexing_slicing)]

mod common;

use common::*;
use serde_json::Value;
use strongroom_crypto::content::{Content, Control};

/// `fixtures/check_export.py OUT KEY`; `None` when there is no python3.
fn run_checker(out: &std::path::Path, key: &str) -> Option<std::process::Output> {
    let script = std::path::Path::new(env!("CARGO_MANIFEST_DIR")).join("tests/fixtures/check_export.py");
    match std::process::Command::new("python3").arg(&script).arg(out).arg(key).output() {
        Ok(run) => Some(run),
        Err(e) => {
            assert!(
                std::env::var_os("STRONGROOM_TEST_REQUIRE_MOTO").is_none(),
                "the export checker needs python3: {e}"
            );
            eprintln!("SKIPPED the independent export check: python3 cannot start ({e})");
            None
        }
    }
}

fn python_check(out: &std::path::Path, key: &str) -> Option<Value> {
    let run = run_checker(out, key)?;
    let stdout = String::from_utf8_lossy(&run.stdout).into_owned();
    if run.status.code() == Some(3) {
        assert!(
            std::env::var_os("STRONGROOM_TEST_REQUIRE_MOTO").is_none(),
            "the export checker needs Python's cryptography package: {stdout}"
        );
        eprintln!("SKIPPED the independent export check: {stdout}");
        return None;
    }
    let v: Value = serde_json::from_str(stdout.trim())
        .unwrap_or_else(|_| panic!("check_export.py: {stdout} {}", String::from_utf8_lossy(&run.stderr)));
    assert!(run.status.success() && v["ok"] == true, "the independent reader found problems: {v}");
    Some(v)
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn every_export_format_reads_back_with_an_independent_reader() {
    let dir = temp_dir("ediscovery");
    let server = ServerProc::start(&dir.join("data"), &[]);
    let (alice, mut bob) = two_clients(&dir, &server).await;
    let (rdir, mut alice) = turn_retention_on(&server, &dir, alice).await;

    let c = alice.create_conversation("group", &["bob"]).await.unwrap();
    alice.send(c.id, &Content::Control(Control::Renamed("Deal room: Project Þor".into())), 0).await.unwrap();
    let first = alice.send_text(c.id, "Terms attached, see below").await.unwrap().message_id;
    alice
        .send(c.id, &Content::Reply { in_reply_to: first, text: "and the, \"final\" þ\r\nnumbers".into() }, 0)
        .await
        .unwrap();
    alice.send(c.id, &Content::Edit { target: first, text: "Terms attached (v2)".into() }, 0).await.unwrap();
    // A hostile member edits and recalls Alice's message: on the record as
    // Bob's attempts, never shown as Alice's words.
    bob.sync().await.unwrap();
    bob.send(c.id, &Content::Edit { target: first, text: "forged by bob".into() }, 0).await.unwrap();
    bob.send(c.id, &Content::Recall { target: first }, 0).await.unwrap();
    alice.send(c.id, &Content::Reaction { target: first, emoji: "👍".into(), remove: false }, 0).await.unwrap();
    let oops = alice.send_text(c.id, "wrong chat").await.unwrap().message_id;
    alice.send(c.id, &Content::Recall { target: oops }, 0).await.unwrap();
    let png = dir.join("chart.png");
    std::fs::write(&png, b"\x89PNG\r\n\x1a\n not really a chart").unwrap();
    let chart = alice.send_file(c.id, &png, &|_, _| {}).await.unwrap().0.message_id;
    let pdf = dir.join("terms.pdf");
    std::fs::write(&pdf, b"%PDF-1.4 terms").unwrap();
    alice.send_file(c.id, &pdf, &|_, _| {}).await.unwrap();
    // Alice compared safety numbers with Bob: on the record, in their direct conversation.
    alice.mark_verified("bob").await.unwrap();
    // Forwards carry where they came from: the text and the chart, to Bob directly.
    let direct = alice.direct_with("bob").await.unwrap();
    alice.forward(first, direct, &|_, _| {}).await.unwrap();
    alice.forward(chart, direct, &|_, _| {}).await.unwrap();
    // A forged provenance (a hostile client may claim any): shown as a claim the archive does not hold.
    let forged = strongroom_crypto::content::ForwardOrigin {
        conversation: c.id,
        message: strongroom_crypto::ids::MessageId::from_bytes([9; 16]),
        sender: bob.user_id(),
        sent_at: 1,
    };
    let claim = Content::Forwarded { origin: forged, content: Box::new(Content::Text("I never said this".into())) };
    alice.send(direct, &claim, 0).await.unwrap();
    alice.change_members(c.id, &[], &["bob"], &[], &[]).await.unwrap();
    alice.send_text(c.id, "bob has left the deal").await.unwrap();
    ok_json(&["retention", "--dir", s(&rdir), "--json", "run", "--once"]);

    let out = dir.join("export");
    let got = ok_json(&[
        "retention",
        "--dir",
        s(&rdir),
        "--json",
        "export",
        "--out",
        s(&out),
        "--email-domain",
        "acme.example",
    ]);
    let counts = &got["counts"];
    // Three files: the chart, the terms and the forwarded chart.
    assert_eq!(counts["attachments"], 3, "{got}");
    assert_eq!(counts["opt_images"], 2, "only the images are in the OPT: {got}");
    assert_eq!(counts["edrm_relationships"], 3, "{got}");
    assert_eq!(counts["dat_rows"].as_u64().unwrap(), counts["messages"].as_u64().unwrap() + 3, "{got}");
    assert_eq!(counts["proofs"], counts["records"], "{got}");

    let device: Value = serde_json::from_slice(&std::fs::read(rdir.join("retention-device.json")).unwrap()).unwrap();
    let key = device["signing_key"].as_str().unwrap();
    let Some(read) = python_check(&out, key) else { return };
    for k in [
        "dat_rows",
        "opt_images",
        "eml",
        "attachments",
        "edrm_documents",
        "edrm_relationships",
        "rsmf_events",
        "proofs",
    ] {
        assert_eq!(read[k], counts[k], "{k}: {read}");
    }
    assert_eq!(read["opened"], read["proofs"], "every record opened with its own key: {read}");
    let bodies = read["rsmf_bodies"].as_array().unwrap();
    assert!(bodies.iter().any(|b| b[0] == "alice" && b[1] == "Terms attached (v2)"), "{read}");
    assert!(!bodies.iter().any(|b| b[0] == "alice" && b[1] == "forged by bob"), "a forgery shown as Alice's: {read}");
    assert!(bodies.iter().any(|b| b[0] == "bob" && b[1].as_str().unwrap().contains("forged by bob")), "{read}");
    let features = read["rsmf_features"].to_string();
    for f in ["edits", "reactions", "deleted", "parent", "attachment", "join", "leave"] {
        assert!(features.contains(f), "RSMF lacks {f}: {read}");
    }
    let texts = read["dat_texts"].as_array().unwrap();
    assert!(
        texts.iter().any(|t| t.as_str().unwrap().contains("\"final\" þ®numbers")),
        "the qualifier, a quote and a newline survive the DAT: {read}"
    );
    assert!(
        texts.iter().any(|t| t.as_str().unwrap().starts_with("(verified the safety number with bob)")),
        "the safety-number verification is on the record: {read}"
    );
    assert!(texts.iter().any(|t| t.as_str().unwrap().starts_with("(renamed the conversation to")), "{read}");
    let forwarded: Vec<_> = texts
        .iter()
        .filter(|t| {
            t.as_str()
                .unwrap()
                .starts_with("(forwarded: the forwarder states it was first sent by alice in conversation ")
        })
        .collect();
    assert_eq!(forwarded.len(), 2, "both forwards say where they came from: {read}");
    assert!(
        texts.iter().any(|t| t.as_str().unwrap().contains("first sent by bob")
            && t.as_str().unwrap().contains("; not in this archive) I never said this")),
        "a forged origin is a claim the archive does not hold: {read}"
    );
    assert!(forwarded.iter().all(|t| t.as_str().unwrap().contains("; this archive holds it as SR")), "checked: {read}");
    let jsonl = std::fs::read_to_string(out.join("records.jsonl")).unwrap();
    let with_origin: Vec<Value> = jsonl
        .lines()
        .map(|l| serde_json::from_str::<Value>(l).unwrap())
        .filter(|r| r.get("forwarded_from").is_some())
        .collect();
    assert_eq!(with_origin.len(), 3);
    for r in with_origin.iter().filter(|r| r["text"] != "I never said this") {
        assert_eq!(r["forwarded_from"]["conversation_id"], c.id.to_string(), "{r}");
        assert_eq!(r["forwarded_from"]["sender"]["username"], "alice", "{r}");
    }
    assert!(with_origin.iter().any(|r| r["file"]["name"] == "chart.png" && r["file"]["stored"] == true));

    // Altered after the fact: the reader says so.
    let eml = std::fs::read_dir(out.join("eml")).unwrap().next().unwrap().unwrap().path();
    let mut bytes = std::fs::read(&eml).unwrap();
    bytes.push(b' ');
    std::fs::write(&eml, bytes).unwrap();
    let run = run_checker(&out, key).unwrap();
    assert_eq!(run.status.code(), Some(1));
    assert!(String::from_utf8_lossy(&run.stdout).contains(": size"), "{}", String::from_utf8_lossy(&run.stdout));

    // Without record keys: proofs still lead to the signed checkpoint.
    let bare = dir.join("export-bare");
    ok_json(&[
        "retention",
        "--dir",
        s(&rdir),
        "--json",
        "export",
        "--out",
        s(&bare),
        "--format",
        "jsonl",
        "--no-record-keys",
    ]);
    let proofs = std::fs::read_to_string(bare.join("proofs.jsonl")).unwrap();
    assert!(!proofs.contains("record_key"));

    // A bad e-mail domain is refused before anything is written.
    let bad = cli(&[
        "retention",
        "--dir",
        s(&rdir),
        "export",
        "--out",
        s(&dir.join("bad")),
        "--email-domain",
        "not a domain",
    ]);
    assert!(String::from_utf8_lossy(&bad.stderr).contains("is not an e-mail domain"));
}
