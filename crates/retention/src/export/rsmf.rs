//! Relativity Short Message Format 2.0: one `.rsmf` per conversation and
//! day, so a reviewer reads a chat as a chat. An `.rsmf` is an RFC 5322
//! message with `X-RSMF-*` headers, a plain-text transcript, and an
//! `rsmf.zip` attachment holding `rsmf_manifest.json` (participants, the
//! conversation, and its events: messages with their edits, reactions,
//! recalls, replies and files; joins and leaves) and the files themselves.

use std::collections::BTreeMap;
use std::io::Write;

use base64::engine::general_purpose::STANDARD;
use base64::Engine as _;
use serde_json::{json, Value};

use super::{address, body_text, iso8601, rfc5322_date, wrap76};
use crate::record::{Party, Record};
use crate::RetentionError;

/// One conversation-day.
pub struct Thread<'a> {
    /// The conversation (hex).
    pub conversation: String,
    /// Its kind (direct, group, room).
    pub kind: String,
    /// Its name, when a member set one.
    pub name: Option<String>,
    /// The day (`YYYY-MM-DD`, UTC).
    pub day: String,
    /// Its records, in archive order, with their index.
    pub records: Vec<(u64, &'a Record)>,
}

/// What one `.rsmf` holds.
pub struct Rendered {
    /// Events in its manifest.
    pub events: u64,
}

fn participant(p: &Party, domain: &str) -> Value {
    json!({"id": p.user_id, "display": p.username, "email": super::email(p, domain)})
}

/// Renders a thread; `files` holds the plaintext of its stored attachments
/// by archive index.
pub fn render(
    t: &Thread<'_>,
    files: &BTreeMap<u64, std::path::PathBuf>,
    domain: &str,
    out: &std::path::Path,
) -> Result<Rendered, RetentionError> {
    let mut participants: BTreeMap<String, Value> = BTreeMap::new();
    let mut events: Vec<Value> = Vec::new();
    // Event position by message id, for edits, reactions and recalls.
    let mut by_id: BTreeMap<String, usize> = BTreeMap::new();
    let mut attachments: Vec<(String, &std::path::Path)> = Vec::new();
    for (index, r) in &t.records {
        for p in r.sender.iter().chain(&r.recipients) {
            participants.entry(p.user_id.clone()).or_insert_with(|| participant(p, domain));
        }
        let who = r.sender.as_ref().map(|s| s.user_id.clone()).unwrap_or_else(|| {
            participants
                .entry("unknown".into())
                .or_insert_with(|| json!({"id": "unknown", "display": "(unknown sender)"}));
            "unknown".into()
        });
        let when = iso8601(r.time());
        // Only a message's own sender edits or recalls it (as clients show it).
        let target = r.target.as_deref().and_then(|t| by_id.get(t).copied()).filter(|at| {
            !matches!(r.kind.as_str(), "edit" | "recall")
                || events.get(*at).and_then(|e| e.get("participant")).and_then(|p| p.as_str()) == Some(who.as_str())
        });
        match (r.kind.as_str(), target) {
            ("edit", Some(at)) => {
                if let Some(e) = events.get_mut(at) {
                    let previous = e.get("body").cloned().unwrap_or_default();
                    let new = r.text.clone().unwrap_or_default();
                    set(e, "body", new.clone());
                    push(e, "edits", json!({"participant": who, "timestamp": when, "previous": previous, "new": new}));
                }
            }
            ("recall", Some(at)) => {
                if let Some(e) = events.get_mut(at) {
                    set(e, "deleted", true);
                }
            }
            ("reaction", Some(at)) => {
                if let Some(e) = events.get_mut(at) {
                    react(e, r.emoji.as_deref().unwrap_or(""), &who, r.removed);
                }
            }
            ("receipt", _) => {}
            _ => {
                let action = r.control.as_ref().and_then(|c| c.get("action")).and_then(|a| a.as_str());
                let kind = match (r.kind.as_str(), action) {
                    ("membership" | "control", Some("created" | "members_added")) => "join",
                    ("membership" | "control", Some("members_removed" | "left")) => "leave",
                    _ => "message",
                };
                let id = r.message_id.clone().unwrap_or_else(|| format!("record-{index}"));
                // A join or leave is one event per person who joined or left.
                if kind != "message" {
                    let users: Vec<String> = match action {
                        Some("left") => vec![who.clone()],
                        _ => r
                            .control
                            .as_ref()
                            .and_then(|c| c.get("users"))
                            .and_then(|u| u.as_array())
                            .map(|a| a.iter().filter_map(|v| v.as_str().map(str::to_owned)).collect())
                            .unwrap_or_default(),
                    };
                    for (n, user) in users.iter().enumerate() {
                        participants.entry(user.clone()).or_insert_with(|| json!({"id": user, "display": user}));
                        events.push(json!({
                            "id": format!("{id}-{n}"),
                            "type": kind,
                            "participant": user,
                            "conversation": t.conversation,
                            "body": body_text(r),
                            "timestamp": when,
                            "custom": [{"name": "ArchiveIndex", "value": index.to_string()}, {"name": "By", "value": who}],
                        }));
                    }
                    continue;
                }
                let mut e = json!({
                    "id": id,
                    "type": kind,
                    "participant": who,
                    "conversation": t.conversation,
                    "body": body_text(r),
                    "timestamp": when,
                    "custom": [{"name": "ArchiveIndex", "value": index.to_string()}],
                });
                if let Some(p) = &r.forwarded_from {
                    push(
                        &mut e,
                        "custom",
                        json!({"name": "ForwardedFrom", "value": format!("{} {} {}", p.conversation_id, p.message_id, p.sender.user_id)}),
                    );
                }
                // A parent must be an event of this file; a reply to another
                // day's message names it in a custom field instead.
                if r.kind == "reply" {
                    match r.target.as_deref() {
                        Some(t) if by_id.contains_key(t) => set(&mut e, "parent", t.to_owned()),
                        Some(t) => push(&mut e, "custom", json!({"name": "InReplyTo", "value": t})),
                        None => {}
                    }
                }
                if let (Some(f), Some(path)) = (&r.file, files.get(index)) {
                    let name = format!("{index:010}_{}", super::safe_name(&f.name));
                    let size = std::fs::metadata(path).map(|m| m.len()).unwrap_or(f.size);
                    set(&mut e, "attachments", json!([{"id": name, "display": f.name, "size": size}]));
                    attachments.push((name, path.as_path()));
                }
                by_id.insert(id, events.len());
                events.push(e);
            }
        }
    }
    let display = t
        .name
        .clone()
        .unwrap_or_else(|| format!("{} conversation {}", t.kind, t.conversation.get(..8).unwrap_or(&t.conversation)));
    let kind = if t.kind == "direct" { "direct" } else { "channel" };
    let manifest = json!({
        "version": "2.0.0",
        "participants": participants.values().collect::<Vec<_>>(),
        "conversations": [{
            "id": t.conversation,
            "display": display,
            "platform": "Strongroom",
            "type": kind,
            "participants": participants.keys().collect::<Vec<_>>(),
        }],
        "events": events,
    });
    // The zip goes to disk first and into the message streamed: a day of
    // large files never sits in memory.
    let zip = out.with_extension("zip-part");
    let result = zip_of(&manifest, &attachments, &zip).and_then(|()| {
        let file = std::fs::File::create(out).map_err(crate::error::io(out))?;
        let mut w = std::io::BufWriter::new(file);
        eml(&mut w, t, &participants, &events, &zip, domain).and_then(|()| w.flush()).map_err(crate::error::io(out))
    });
    let _ = std::fs::remove_file(&zip);
    result?;
    Ok(Rendered { events: events.len() as u64 })
}

fn set(e: &mut Value, key: &str, value: impl Into<Value>) {
    if let Some(o) = e.as_object_mut() {
        o.insert(key.into(), value.into());
    }
}

fn push(e: &mut Value, key: &str, item: Value) {
    match e.get_mut(key).and_then(|v| v.as_array_mut()) {
        Some(list) => list.push(item),
        None => e[key] = json!([item]),
    }
}

fn react(e: &mut Value, emoji: &str, who: &str, removed: bool) {
    if e.get("reactions").and_then(|v| v.as_array()).is_none() {
        set(e, "reactions", json!([]));
    }
    let Some(list) = e.get_mut("reactions").and_then(|v| v.as_array_mut()) else { return };
    let pos = list.iter().position(|x| x.get("value").and_then(|v| v.as_str()) == Some(emoji));
    let entry = match pos {
        Some(p) => p,
        None if removed => return,
        None => {
            list.push(json!({"value": emoji, "count": 0, "participants": []}));
            list.len() - 1
        }
    };
    let Some(x) = list.get_mut(entry) else { return };
    let mut people: Vec<String> = x
        .get("participants")
        .and_then(|p| p.as_array())
        .map(|a| a.iter().filter_map(|v| v.as_str().map(str::to_owned)).collect())
        .unwrap_or_default();
    people.retain(|p| p != who);
    if !removed {
        people.push(who.to_owned());
    }
    set(x, "count", people.len());
    set(x, "participants", people);
    list.retain(|x| x.get("count").and_then(|c| c.as_u64()).unwrap_or(0) > 0);
}

fn zip_of(
    manifest: &Value,
    attachments: &[(String, &std::path::Path)],
    to: &std::path::Path,
) -> Result<(), RetentionError> {
    use zip::write::SimpleFileOptions;
    let bad = |e: &dyn std::fmt::Display| RetentionError::Corrupt(format!("rsmf.zip: {e}"));
    let file = std::fs::File::create(to).map_err(crate::error::io(to))?;
    let mut z = zip::ZipWriter::new(std::io::BufWriter::new(file));
    let options = SimpleFileOptions::default().compression_method(zip::CompressionMethod::Stored);
    z.start_file("rsmf_manifest.json", options).map_err(|e| bad(&e))?;
    z.write_all(&serde_json::to_vec_pretty(manifest).map_err(|e| bad(&e))?).map_err(|e| bad(&e))?;
    for (name, path) in attachments {
        let size = std::fs::metadata(path).map_err(|e| bad(&e))?.len();
        z.start_file(name.as_str(), options.large_file(size >= u64::from(u32::MAX))).map_err(|e| bad(&e))?;
        let mut f = std::fs::File::open(path).map_err(|e| bad(&e))?;
        std::io::copy(&mut f, &mut z).map_err(|e| bad(&e))?;
    }
    z.finish().map_err(|e| bad(&e))?.flush().map_err(crate::error::io(to))
}

fn eml(
    out: &mut impl Write,
    t: &Thread<'_>,
    participants: &BTreeMap<String, Value>,
    events: &[Value],
    zip: &std::path::Path,
    domain: &str,
) -> std::io::Result<()> {
    let times: Vec<u64> = t.records.iter().map(|(_, r)| r.time()).collect();
    let (begin, end) = (times.iter().min().copied().unwrap_or(0), times.iter().max().copied().unwrap_or(0));
    let parties: Vec<Party> = t.records.iter().flat_map(|(_, r)| r.sender.iter().chain(&r.recipients)).fold(
        Vec::new(),
        |mut acc: Vec<Party>, p| {
            if !acc.iter().any(|q| q.user_id == p.user_id) {
                acc.push(p.clone());
            }
            acc
        },
    );
    let boundary = format!("strongroom-rsmf-{}-{}", t.conversation, t.day);
    let from = parties
        .first()
        .map(|p| address(p, domain))
        .unwrap_or_else(|| "\"unknown\" <unknown@strongroom.invalid>".into());
    write!(out, "From: {from}\r\n")?;
    let to: Vec<String> = parties.iter().skip(1).map(|p| address(p, domain)).collect();
    if !to.is_empty() {
        write!(out, "To: {}\r\n", to.join(",\r\n "))?;
    }
    write!(out, "Date: {}\r\n", rfc5322_date(begin))?;
    write!(out, "Subject: Strongroom {} conversation {} on {}\r\n", t.kind, t.conversation, t.day)?;
    write!(out, "Message-ID: <rsmf-{}-{}@strongroom.invalid>\r\n", t.conversation, t.day)?;
    write!(out, "MIME-Version: 1.0\r\n")?;
    write!(out, "X-RSMF-Version: 2.0.0\r\nX-RSMF-Generator: Strongroom\r\n")?;
    write!(out, "X-RSMF-BeginDate: {}\r\nX-RSMF-EndDate: {}\r\n", iso8601(begin), iso8601(end))?;
    write!(out, "X-RSMF-EventCount: {}\r\n", events.len())?;
    let names: Vec<String> = participants
        .values()
        .filter_map(|p| p.get("display").and_then(|d| d.as_str()))
        .map(|d| d.chars().filter(|c| !c.is_control() && *c != ',').collect())
        .collect();
    write!(out, "X-RSMF-Participants: {}\r\n", super::encoded_header(&names.join(", ")))?;
    write!(out, "X-RSMF-EventCollectionID: {}\r\n", t.conversation)?;
    let attachments =
        events.iter().filter_map(|e| e.get("attachments").and_then(|a| a.as_array())).map(Vec::len).sum::<usize>();
    write!(out, "X-RSMF-AttachmentCount: {attachments}\r\n")?;
    write!(out, "Content-Type: multipart/mixed; boundary=\"{boundary}\"\r\n\r\n")?;
    // A transcript for any mail reader; the manifest is what review tools load.
    let mut transcript = String::new();
    for e in events {
        let who = e.get("participant").and_then(|p| p.as_str()).unwrap_or("");
        let name = participants.get(who).and_then(|p| p.get("display")).and_then(|d| d.as_str()).unwrap_or(who);
        let when = e.get("timestamp").and_then(|t| t.as_str()).unwrap_or("");
        let body = e.get("body").and_then(|b| b.as_str()).unwrap_or("");
        let deleted = if e.get("deleted").and_then(|d| d.as_bool()) == Some(true) { " (recalled)" } else { "" };
        // Continuation lines are indented: a body cannot forge a line of its own.
        let body = body.replace("\r\n", "\n").replace(['\r', '\n'], "\n    ");
        transcript.push_str(&format!("[{when}] {name}: {body}{deleted}\n"));
    }
    write!(
        out,
        "--{boundary}\r\nContent-Type: text/plain; charset=utf-8\r\nContent-Transfer-Encoding: base64\r\n\r\n{}",
        wrap76(&STANDARD.encode(transcript.as_bytes()))
    )?;
    write!(
        out,
        "--{boundary}\r\nContent-Type: application/zip\r\nContent-Disposition: attachment; filename=\"rsmf.zip\"\r\nContent-Transfer-Encoding: base64\r\n\r\n"
    )?;
    super::write_base64_file(out, zip)?;
    write!(out, "--{boundary}--\r\n")
}
