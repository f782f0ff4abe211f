//! Exports for compliance tools: JSON Lines (complete and native), one
//! RFC 5322 message per archived message (`X-Strongroom-*` headers, full
//! participant identities, files as MIME attachments), and a CSV eDiscovery
//! load file. Every export carries `manifest.json` with counts and the
//! SHA-256 of every file it wrote.

use std::collections::BTreeMap;
use std::io::Write;
use std::path::{Path, PathBuf};

use base64::engine::general_purpose::STANDARD;
use base64::Engine as _;
use serde::Serialize;

use crate::archive::{file_name, Archive};
use crate::error::io;
use crate::record::{Party, Record};
use crate::search::Filter;
use crate::{hex, now_ms, RetentionError};

/// Which formats.
#[derive(Debug, Clone, Copy)]
pub struct Formats {
    /// `records.jsonl`.
    pub jsonl: bool,
    /// `eml/*.eml`.
    pub eml: bool,
    /// `loadfile.csv`.
    pub csv: bool,
}

/// One exported file.
#[derive(Debug, Clone, Serialize, serde::Deserialize, PartialEq, Eq)]
pub struct ManifestFile {
    /// Path inside the export directory.
    pub path: String,
    /// Its size.
    pub bytes: u64,
    /// Its SHA-256 (hex).
    pub sha256: String,
}

/// `manifest.json`.
#[derive(Debug, Clone, Serialize, serde::Deserialize)]
pub struct Manifest {
    /// Format.
    pub format: String,
    /// When (ms).
    pub generated_at: u64,
    /// The filters applied.
    pub filter: serde_json::Value,
    /// Records in the archive when exported.
    pub archive_records: u64,
    /// Counts: records, messages, eml, attachments, csv_rows.
    pub counts: BTreeMap<String, u64>,
    /// Every file written, with its hash.
    pub files: Vec<ManifestFile>,
}

struct Hashing<W: Write> {
    inner: W,
    ctx: aws_lc_rs::digest::Context,
    bytes: u64,
}

impl<W: Write> Write for Hashing<W> {
    fn write(&mut self, buf: &[u8]) -> std::io::Result<usize> {
        let n = self.inner.write(buf)?;
        self.ctx.update(buf.get(..n).unwrap_or_default());
        self.bytes += n as u64;
        Ok(n)
    }
    fn flush(&mut self) -> std::io::Result<()> {
        self.inner.flush()
    }
}

fn create(dir: &Path, rel: &str) -> Result<Hashing<std::io::BufWriter<std::fs::File>>, RetentionError> {
    let path = dir.join(rel);
    let f = std::fs::File::create(&path).map_err(io(&path))?;
    Ok(Hashing {
        inner: std::io::BufWriter::new(f),
        ctx: aws_lc_rs::digest::Context::new(&aws_lc_rs::digest::SHA256),
        bytes: 0,
    })
}

fn finish(
    dir: &Path,
    rel: &str,
    mut h: Hashing<std::io::BufWriter<std::fs::File>>,
) -> Result<ManifestFile, RetentionError> {
    h.flush().map_err(io(&dir.join(rel)))?;
    Ok(ManifestFile { path: rel.into(), bytes: h.bytes, sha256: hex(h.ctx.finish().as_ref()) })
}

/// Exports the records `filter` selects into `dir` (created; must be empty).
/// `progress(done, total)` sees every record read.
pub async fn export(
    archive: &Archive,
    filter: &Filter,
    formats: Formats,
    dir: &Path,
    progress: &(dyn Fn(u64, u64) + Send + Sync),
) -> Result<Manifest, RetentionError> {
    strongroom_client::private_fs::private_dir(dir).map_err(io(dir))?;
    if std::fs::read_dir(dir).map_err(io(dir))?.next().is_some() {
        return Err(RetentionError::Usage(format!("{} is not empty: export into a new directory", dir.display())));
    }
    let total = archive.size();
    let mut selected = Vec::new();
    archive
        .for_each(|i, r| {
            progress(i + 1, total);
            if filter.matches(&r) {
                selected.push((i, r));
            }
        })
        .await?;

    let mut files = Vec::new();
    let mut counts = BTreeMap::new();
    counts.insert("records".to_owned(), selected.len() as u64);
    counts.insert("messages".to_owned(), selected.iter().filter(|(_, r)| r.is_message()).count() as u64);
    if formats.jsonl {
        let mut out = create(dir, "records.jsonl")?;
        for (i, r) in &selected {
            let mut v = serde_json::to_value(r).map_err(|e| RetentionError::Corrupt(e.to_string()))?;
            if let Some(obj) = v.as_object_mut() {
                obj.insert("index".into(), (*i).into());
                // Exports carry files in the clear (EML); their keys stay in the archive.
                if let Some(f) = obj.get_mut("file").and_then(|f| f.as_object_mut()) {
                    f.remove("file_key");
                }
            }
            serde_json::to_writer(&mut out, &v).map_err(|e| RetentionError::Corrupt(e.to_string()))?;
            out.write_all(b"\n").map_err(io(&dir.join("records.jsonl")))?;
        }
        files.push(finish(dir, "records.jsonl", out)?);
    }
    let mut eml_paths = BTreeMap::new();
    if formats.eml {
        strongroom_client::private_fs::private_dir(&dir.join("eml")).map_err(io(&dir.join("eml")))?;
        let (mut emls, mut attachments) = (0u64, 0u64);
        for (i, r) in selected.iter().filter(|(_, r)| r.is_message()) {
            let rel = format!("eml/{i:010}.eml");
            let attachment = match r.file.as_ref().filter(|f| f.stored) {
                Some(f) => Some(decrypt_file(archive, f).await?),
                None => None,
            };
            let mut out = create(dir, &rel)?;
            write_eml(&mut out, *i, r, attachment.as_deref()).map_err(io(&dir.join(&rel)))?;
            files.push(finish(dir, &rel, out)?);
            eml_paths.insert(*i, rel);
            emls += 1;
            attachments += u64::from(attachment.is_some());
        }
        counts.insert("eml".into(), emls);
        counts.insert("attachments".into(), attachments);
    }
    if formats.csv {
        let mut out = create(dir, "loadfile.csv")?;
        let path = dir.join("loadfile.csv");
        out.write_all(
            b"DocID,Kind,ConversationID,ConversationKind,Sequence,MessageID,SentAt,From,To,Text,AttachmentName,AttachmentSHA256,NativePath\r\n",
        )
        .map_err(io(&path))?;
        let mut rows = 0u64;
        for (i, r) in selected.iter().filter(|(_, r)| r.is_message()) {
            let fields = [
                format!("SR{i:010}"),
                r.kind.clone(),
                r.conversation_id.clone().unwrap_or_default(),
                r.conversation_kind.clone().unwrap_or_default(),
                r.seq.map(|s| s.to_string()).unwrap_or_default(),
                r.message_id.clone().unwrap_or_default(),
                iso8601(r.time()),
                r.sender.as_ref().map(party_label).unwrap_or_default(),
                r.recipients.iter().map(party_label).collect::<Vec<_>>().join("; "),
                body_text(r),
                r.file.as_ref().map(|f| f.name.clone()).unwrap_or_default(),
                r.file.as_ref().map(|f| f.sha256.clone()).unwrap_or_default(),
                eml_paths.get(i).cloned().unwrap_or_default(),
            ];
            let line: Vec<String> = fields.iter().map(|f| csv_field(f)).collect();
            out.write_all(line.join(",").as_bytes()).and_then(|()| out.write_all(b"\r\n")).map_err(io(&path))?;
            rows += 1;
        }
        counts.insert("csv_rows".into(), rows);
        files.push(finish(dir, "loadfile.csv", out)?);
    }
    let manifest = Manifest {
        format: "strongroom-export-v1".into(),
        generated_at: now_ms(),
        filter: serde_json::to_value(filter).unwrap_or_default(),
        archive_records: total,
        counts,
        files,
    };
    let json = serde_json::to_vec_pretty(&manifest).map_err(|e| RetentionError::Corrupt(e.to_string()))?;
    std::fs::write(dir.join("manifest.json"), json).map_err(io(&dir.join("manifest.json")))?;
    Ok(manifest)
}

/// Where an export of `name` would go by default.
pub fn default_dir(name: &str) -> PathBuf {
    PathBuf::from(format!("strongroom-export-{name}"))
}

async fn decrypt_file(archive: &Archive, f: &crate::record::FileInfo) -> Result<Vec<u8>, RetentionError> {
    let sealed = archive.store().get(&file_name(&f.blob_id)).await?.bytes().await?;
    let key = crate::unhex::<32>(&f.file_key).ok_or_else(|| RetentionError::Corrupt("file key".into()))?;
    let key = strongroom_crypto::keys::SecretBytes::new(key);
    let mut plain = Vec::with_capacity(usize::try_from(f.size).unwrap_or(0));
    strongroom_crypto::attachment::decrypt(&key, &sealed[..], &mut plain)
        .map_err(|e| RetentionError::Corrupt(format!("file {}: {e}", f.blob_id)))?;
    Ok(plain)
}

fn party_label(p: &Party) -> String {
    format!("{} <{}>", p.username, p.user_id)
}

fn body_text(r: &Record) -> String {
    match r.kind.as_str() {
        "text" | "reply" | "edit" => r.text.clone().unwrap_or_default(),
        "recall" => format!("(recalled message {})", r.target.as_deref().unwrap_or("?")),
        "reaction" => format!(
            "({} reaction {} to {})",
            if r.removed { "removed" } else { "added" },
            r.emoji.as_deref().unwrap_or(""),
            r.target.as_deref().unwrap_or("?")
        ),
        "file" => r.file.as_ref().map(|f| format!("(file) {} ({} bytes)", f.name, f.size)).unwrap_or_default(),
        "location" => format!("(location) {}", r.location.clone().unwrap_or_default()),
        "receipt" => format!("(receipt) {}", r.receipt.clone().unwrap_or_default()),
        "control" => format!("(conversation change) {}", r.control.clone().unwrap_or_default()),
        "unreadable" => format!("(could not be verified or decrypted: {})", r.error.as_deref().unwrap_or("")),
        other => format!("({other})"),
    }
}

fn csv_field(s: &str) -> String {
    if s.contains([',', '"', '\r', '\n']) {
        format!("\"{}\"", s.replace('"', "\"\""))
    } else {
        s.to_owned()
    }
}

/// `=?UTF-8?B?…?=` for any header text that is not plain printable ASCII.
fn encoded_word(s: &str) -> String {
    if s.bytes().all(|b| (0x20..0x7f).contains(&b) && b != b'"' && b != b'\\') {
        format!("\"{s}\"")
    } else {
        format!("=?UTF-8?B?{}?=", STANDARD.encode(s))
    }
}

fn address(p: &Party, network: &str) -> String {
    format!("{} <{}@{}.strongroom.invalid>", encoded_word(&p.username), p.user_id, network)
}

fn wrap76(b64: &str) -> String {
    let mut out = String::with_capacity(b64.len() + b64.len() / 76 * 2 + 2);
    for chunk in b64.as_bytes().chunks(76) {
        out.push_str(std::str::from_utf8(chunk).unwrap_or_default());
        out.push_str("\r\n");
    }
    out
}

fn write_eml(out: &mut impl Write, index: u64, r: &Record, attachment: Option<&[u8]>) -> std::io::Result<()> {
    let network = "net";
    let conversation = r.conversation_id.as_deref().unwrap_or("none");
    let boundary = format!("strongroom-{index:010}-{}", r.message_id.as_deref().unwrap_or("event"));
    let mut h = String::new();
    let from = r
        .sender
        .as_ref()
        .map(|p| address(p, network))
        .unwrap_or_else(|| "\"unknown\" <unknown@strongroom.invalid>".into());
    h.push_str(&format!("From: {from}\r\n"));
    let to: Vec<String> = r.recipients.iter().map(|p| address(p, network)).collect();
    if !to.is_empty() {
        h.push_str(&format!("To: {}\r\n", to.join(",\r\n ")));
    }
    h.push_str(&format!("Date: {}\r\n", rfc5322_date(r.time())));
    // A membership record has no message id: its statement's digest names it.
    let statement = r.statement().map(|d| crate::hex(&d));
    let id = r.message_id.as_deref().or(statement.as_deref()).unwrap_or("none");
    h.push_str(&format!("Message-ID: <{id}@strongroom.invalid>\r\n"));
    let subject = format!(
        "Strongroom {} in {} conversation {}",
        r.kind,
        r.conversation_kind.as_deref().unwrap_or("a"),
        conversation
    );
    h.push_str(&format!("Subject: {subject}\r\nMIME-Version: 1.0\r\n"));
    let mut x = vec![
        ("Archive-Index", index.to_string()),
        ("Kind", r.kind.clone()),
        ("Conversation", conversation.to_owned()),
        ("Conversation-Kind", r.conversation_kind.clone().unwrap_or_default()),
        ("Sequence", r.seq.map(|s| s.to_string()).unwrap_or_default()),
        ("Message-Id", r.message_id.clone().unwrap_or_default()),
        ("Sent-At", r.sent_at.map(|s| s.to_string()).unwrap_or_default()),
        ("Archived-At", r.archived_at.to_string()),
    ];
    if let Some(s) = &r.sender {
        x.push(("Sender-User", s.user_id.clone()));
        x.push(("Sender-Device", s.device_id.clone().unwrap_or_default()));
        x.push(("Sender-Identity-Key", s.identity_key.clone().unwrap_or_default()));
    }
    for (k, v) in [("Target", &r.target), ("Error", &r.error)] {
        if let Some(v) = v {
            x.push((k, v.clone()));
        }
    }
    if r.ttl_secs > 0 {
        x.push(("Ttl-Secs", r.ttl_secs.to_string()));
    }
    if r.burn_on_read_secs > 0 {
        x.push(("Burn-On-Read-Secs", r.burn_on_read_secs.to_string()));
    }
    for (k, v) in x {
        if !v.is_empty() {
            let v: String = v.chars().filter(|c| !c.is_control()).collect();
            h.push_str(&format!("X-Strongroom-{k}: {v}\r\n"));
        }
    }
    h.push_str(&format!("Content-Type: multipart/mixed; boundary=\"{boundary}\"\r\n\r\n"));
    out.write_all(h.as_bytes())?;
    let body = body_text(r);
    write!(
        out,
        "--{boundary}\r\nContent-Type: text/plain; charset=utf-8\r\nContent-Transfer-Encoding: base64\r\n\r\n{}",
        wrap76(&STANDARD.encode(body.as_bytes()))
    )?;
    if let (Some(bytes), Some(f)) = (attachment, &r.file) {
        let name: String = f
            .name
            .bytes()
            .map(|b| {
                if b.is_ascii_alphanumeric() || b".-_".contains(&b) {
                    (b as char).to_string()
                } else {
                    format!("%{b:02X}")
                }
            })
            .collect();
        let media = if f.media_type.bytes().all(|b| b.is_ascii_graphic()) && f.media_type.contains('/') {
            f.media_type.as_str()
        } else {
            "application/octet-stream"
        };
        write!(
            out,
            "--{boundary}\r\nContent-Type: {media}\r\nContent-Disposition: attachment; filename*=utf-8''{name}\r\nContent-Transfer-Encoding: base64\r\n\r\n{}",
            wrap76(&STANDARD.encode(bytes))
        )?;
    }
    write!(out, "--{boundary}--\r\n")
}

/// `2026-11-26T20:01:12Z`.
pub fn iso8601(ms: u64) -> String {
    let (y, m, d, hh, mm, ss, _) = strongroom_wire::time::utc(ms);
    format!("{y:04}-{m:02}-{d:02}T{hh:02}:{mm:02}:{ss:02}Z")
}

/// `Thu, 26 Nov 2026 20:01:12 +0000`.
pub fn rfc5322_date(ms: u64) -> String {
    const DAYS: [&str; 7] = ["Sun", "Mon", "Tue", "Wed", "Thu", "Fri", "Sat"];
    const MONTHS: [&str; 12] = ["Jan", "Feb", "Mar", "Apr", "May", "Jun", "Jul", "Aug", "Sep", "Oct", "Nov", "Dec"];
    let (y, m, d, hh, mm, ss, wd) = strongroom_wire::time::utc(ms);
    let day = DAYS.get(wd as usize).copied().unwrap_or("Sun");
    let month = MONTHS.get((m - 1) as usize).copied().unwrap_or("Jan");
    format!("{day}, {d:02} {month} {y:04} {hh:02}:{mm:02}:{ss:02} +0000")
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn dates() {
        assert_eq!(iso8601(0), "1970-01-01T00:00:00Z");
        assert_eq!(rfc5322_date(0), "Thu, 01 Jan 1970 00:00:00 +0000");
        // 2024-02-29 12:34:56 UTC, a Thursday.
        assert_eq!(rfc5322_date(1_709_210_096_000), "Thu, 29 Feb 2024 12:34:56 +0000");
    }

    #[test]
    fn csv_quoting() {
        assert_eq!(csv_field("plain"), "plain");
        assert_eq!(csv_field("a,b"), "\"a,b\"");
        assert_eq!(csv_field("say \"hi\"\nthere"), "\"say \"\"hi\"\"\nthere\"");
    }
}
