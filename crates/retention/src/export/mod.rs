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

mod dat;
mod edrm;
pub mod proof;
mod rsmf;

/// Which formats.
#[derive(Debug, Clone, Copy, Default)]
pub struct Formats {
    /// `records.jsonl`.
    pub jsonl: bool,
    /// `eml/*.eml` (also written for `dat` and `edrm`, whose natives they are).
    pub eml: bool,
    /// `loadfile.csv`.
    pub csv: bool,
    /// `loadfile.dat` (Concordance) and `images.opt` (Opticon).
    pub dat: bool,
    /// `edrm.xml` (EDRM XML 1.2).
    pub edrm: bool,
    /// `rsmf/*.rsmf` (Relativity Short Message Format 2.0), one per conversation and day.
    pub rsmf: bool,
}

impl Formats {
    /// From names: jsonl, eml, csv, dat, edrm, rsmf, or all.
    pub fn parse(names: &[String]) -> Result<Self, RetentionError> {
        let mut f = Formats::default();
        for n in names {
            match n.trim() {
                "jsonl" => f.jsonl = true,
                "eml" => f.eml = true,
                "csv" => f.csv = true,
                "dat" => f.dat = true,
                "edrm" => f.edrm = true,
                "rsmf" => f.rsmf = true,
                "all" => f = Formats { jsonl: true, eml: true, csv: true, dat: true, edrm: true, rsmf: true },
                other => {
                    return Err(RetentionError::Usage(format!(
                        "unknown export format {other:?}: use jsonl, eml, csv, dat, edrm, rsmf or all"
                    )))
                }
            }
        }
        Ok(f)
    }
}

/// How to export.
#[derive(Debug, Clone)]
pub struct ExportOptions {
    /// Which formats.
    pub formats: Formats,
    /// The e-mail domain people's addresses are given in (`alice@example.org`);
    /// `strongroom.invalid` by default.
    pub email_domain: Option<String>,
    /// Put each record's own key in `proofs.jsonl`, so a reviewer can open
    /// the record and compare it with the export (it also opens the key of
    /// the record's file).
    pub record_keys: bool,
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
    /// Counts: records, messages, eml, attachments, csv_rows, dat_rows,
    /// opt_images, edrm_documents, edrm_relationships, rsmf_files,
    /// rsmf_events, proofs.
    pub counts: BTreeMap<String, u64>,
    /// Every file written, with its hash.
    pub files: Vec<ManifestFile>,
    /// The network (hex).
    #[serde(default)]
    pub network_id: String,
    /// The retention device (hex).
    #[serde(default)]
    pub device_id: String,
    /// Its Ed25519 key (hex): `manifest.sig` and the checkpoint are signed with it.
    #[serde(default)]
    pub signing_key: String,
    /// The archive's newest signed checkpoint, which `proofs.jsonl` leads to.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub checkpoint: Option<proof::SignedHead>,
    /// Documents newer than the newest signed checkpoint: no proof yet.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub unproven: Vec<String>,
    /// The e-mail domain addresses are given in.
    #[serde(default)]
    pub email_domain: String,
}

/// `manifest.sig`: the device's signature over `manifest.json`.
#[derive(Debug, Clone, Serialize, serde::Deserialize)]
pub struct ManifestSignature {
    /// What it signs: `"strongroom/v2/export-manifest" 0x00 | network 16 |
    /// device 16 | SHA-256(manifest.json)`.
    pub statement: String,
    /// Ed25519 (hex).
    pub signature: String,
    /// The key (hex), which the network policy names for this device.
    pub signing_key: String,
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
    options: &ExportOptions,
    dir: &Path,
    progress: &(dyn Fn(u64, u64) + Send + Sync),
) -> Result<Manifest, RetentionError> {
    let mut formats = options.formats;
    // Messages' natives for the load files and EDRM.
    formats.eml |= formats.dat || formats.edrm;
    let domain = match options.email_domain.as_deref() {
        Some(d) if is_domain(d) => d.to_owned(),
        Some(d) => return Err(RetentionError::Usage(format!("{d:?} is not an e-mail domain (like example.org)"))),
        None => DEFAULT_DOMAIN.to_owned(),
    };
    strongroom_client::private_fs::private_dir(dir).map_err(io(dir))?;
    if std::fs::read_dir(dir).map_err(io(dir))?.next().is_some() {
        return Err(RetentionError::Usage(format!("{} is not empty: export into a new directory", dir.display())));
    }
    let total = archive.size();
    let mut selected = Vec::new();
    // Every message by id, to check what forwards claim to come from.
    let mut originals: BTreeMap<String, (u64, String, String)> = BTreeMap::new();
    archive
        .for_each(|i, r| {
            progress(i + 1, total);
            if let (Some(id), Some(s), Some(c)) = (&r.message_id, &r.sender, &r.conversation_id) {
                originals.insert(id.clone(), (i, s.user_id.clone(), c.clone()));
            }
            if filter.matches(&r) {
                selected.push((i, r));
            }
        })
        .await?;
    for (_, r) in &mut selected {
        if let Some(p) = r.forwarded_from.as_mut() {
            p.checked = Some(match originals.get(&p.message_id) {
                Some((i, sender, c)) if *sender == p.sender.user_id && *c == p.conversation_id => {
                    format!("this archive holds it as {}", doc_id(*i))
                }
                Some((i, ..)) => format!(
                    "NOT as stated: this archive holds that message id as {} from another sender or conversation",
                    doc_id(*i)
                ),
                None => "not in this archive".into(),
            });
        }
    }
    let messages: Vec<&(u64, Record)> = selected.iter().filter(|(_, r)| r.is_message()).collect();

    let mut files = Vec::new();
    let mut counts = BTreeMap::new();
    counts.insert("records".to_owned(), selected.len() as u64);
    counts.insert("messages".to_owned(), messages.len() as u64);
    if formats.jsonl {
        let mut out = create(dir, "records.jsonl")?;
        for (i, r) in &selected {
            let mut v = serde_json::to_value(r).map_err(|e| RetentionError::Corrupt(e.to_string()))?;
            if let Some(obj) = v.as_object_mut() {
                obj.insert("index".into(), (*i).into());
                obj.insert("doc_id".into(), doc_id(*i).into());
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
    // Attachments in the clear, each decrypted once to natives/ (streamed:
    // a file of any size never sits in memory), then copied from there into
    // EML parts and RSMF archives; also the natives of DAT and EDRM.
    let mut natives: BTreeMap<u64, ManifestFile> = BTreeMap::new();
    if formats.eml || formats.rsmf {
        strongroom_client::private_fs::private_dir(&dir.join("natives")).map_err(io(&dir.join("natives")))?;
        for (i, r) in &messages {
            let Some(f) = r.file.as_ref().filter(|f| f.stored) else { continue };
            let rel = format!("natives/{}_{}", attachment_id(*i), safe_name(&f.name));
            decrypt_to(archive, f, &dir.join(&rel)).await?;
            let done = hash_file(dir, &rel)?;
            natives.insert(*i, done.clone());
            files.push(done);
        }
    }
    let mut eml_paths: BTreeMap<u64, ManifestFile> = BTreeMap::new();
    if formats.eml {
        strongroom_client::private_fs::private_dir(&dir.join("eml")).map_err(io(&dir.join("eml")))?;
        let (mut emls, mut attachments) = (0u64, 0u64);
        for (i, r) in &messages {
            let rel = format!("eml/{i:010}.eml");
            let attachment = natives.get(i).map(|m| dir.join(&m.path));
            let mut out = create(dir, &rel)?;
            write_eml(&mut out, *i, r, attachment.as_deref(), &domain).map_err(io(&dir.join(&rel)))?;
            let done = finish(dir, &rel, out)?;
            eml_paths.insert(*i, done.clone());
            files.push(done);
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
        for (i, r) in &messages {
            let fields = [
                doc_id(*i),
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
                eml_paths.get(i).map(|m| m.path.clone()).unwrap_or_default(),
            ];
            let line: Vec<String> = fields.iter().map(|f| csv_field(f)).collect();
            out.write_all(line.join(",").as_bytes()).and_then(|()| out.write_all(b"\r\n")).map_err(io(&path))?;
            rows += 1;
        }
        counts.insert("csv_rows".into(), rows);
        files.push(finish(dir, "loadfile.csv", out)?);
    }
    if formats.dat {
        let mut dat = create(dir, "loadfile.dat")?;
        let mut opt = create(dir, "images.opt")?;
        let (rows, images) = load_files(&mut dat, &mut opt, &messages, &eml_paths, &natives, &domain)
            .map_err(io(&dir.join("loadfile.dat")))?;
        files.push(finish(dir, "loadfile.dat", dat)?);
        files.push(finish(dir, "images.opt", opt)?);
        counts.insert("dat_rows".into(), rows);
        counts.insert("opt_images".into(), images);
    }
    if formats.edrm {
        let path = dir.join("edrm.xml");
        let mut out = create(dir, "edrm.xml")?;
        let mut families = Vec::new();
        let mut documents = 0u64;
        edrm::header(&mut out, &format!("strongroom-{}", now_ms())).map_err(io(&path))?;
        for (i, r) in &messages {
            let native = eml_paths.get(i).map(native_of);
            let doc = edrm::Document {
                doc_id: doc_id(*i),
                doc_type: "Message",
                mime_type: "message/rfc822".into(),
                tags: message_tags(*i, r, &domain),
                native,
            };
            edrm::document(&mut out, &doc).map_err(io(&path))?;
            documents += 1;
            if let (Some(f), Some(m)) = (&r.file, natives.get(i)) {
                let doc = edrm::Document {
                    doc_id: attachment_id(*i),
                    doc_type: "File",
                    mime_type: f.media_type.clone(),
                    tags: vec![
                        ("#FileName", "Text", f.name.clone()),
                        ("#FileSize", "Integer", f.size.to_string()),
                        ("#DateSent", "DateTime", iso8601(r.time())),
                        ("Strongroom/ParentDocID", "Text", doc_id(*i)),
                    ],
                    native: Some(native_of(m)),
                };
                edrm::document(&mut out, &doc).map_err(io(&path))?;
                documents += 1;
                families.push((doc_id(*i), attachment_id(*i)));
            }
        }
        edrm::footer(&mut out, &families).map_err(io(&path))?;
        files.push(finish(dir, "edrm.xml", out)?);
        counts.insert("edrm_documents".into(), documents);
        counts.insert("edrm_relationships".into(), families.len() as u64);
    }
    if formats.rsmf {
        strongroom_client::private_fs::private_dir(&dir.join("rsmf")).map_err(io(&dir.join("rsmf")))?;
        let (mut threads, mut events) = (0u64, 0u64);
        for thread in threads_of(&messages) {
            let paths: BTreeMap<u64, std::path::PathBuf> =
                natives.iter().map(|(i, m)| (*i, dir.join(&m.path))).collect();
            let rel = format!("rsmf/{}_{}.rsmf", thread.conversation, thread.day);
            let rendered = rsmf::render(&thread, &paths, &domain, &dir.join(&rel))?;
            files.push(hash_file(dir, &rel)?);
            threads += 1;
            events += rendered.events;
        }
        counts.insert("rsmf_files".into(), threads);
        counts.insert("rsmf_events".into(), events);
    }
    // Every exported record's proof against the newest signed checkpoint.
    let wanted: BTreeMap<u64, String> = selected.iter().map(|(i, _)| (*i, doc_id(*i))).collect();
    let mut out = create(dir, "proofs.jsonl")?;
    let written = proof::write_proofs(archive, &wanted, options.record_keys, &mut out).await?;
    files.push(finish(dir, "proofs.jsonl", out)?);
    counts.insert("proofs".into(), written.proofs);
    let checkpoint = written.head;

    let (network, device, key) = archive.identity();
    let manifest = Manifest {
        format: "strongroom-export-v2".into(),
        generated_at: now_ms(),
        filter: serde_json::to_value(filter).unwrap_or_default(),
        archive_records: total,
        counts,
        files,
        network_id: network.to_string(),
        device_id: device.to_string(),
        signing_key: hex(key.as_bytes()),
        checkpoint,
        unproven: written.unproven,
        email_domain: domain,
    };
    let json = serde_json::to_vec_pretty(&manifest).map_err(|e| RetentionError::Corrupt(e.to_string()))?;
    std::fs::write(dir.join("manifest.json"), &json).map_err(io(&dir.join("manifest.json")))?;
    // A reader cannot sign: its export says so by having no manifest.sig.
    if let Some(sig) = archive.sign_export(&json) {
        let digest = aws_lc_rs::digest::digest(&aws_lc_rs::digest::SHA256, &json);
        let signed = ManifestSignature {
            statement: format!("strongroom/v2/export-manifest 0x00 | {network} | {device} | {}", hex(digest.as_ref())),
            signature: hex(sig.as_bytes()),
            signing_key: hex(key.as_bytes()),
        };
        let bytes = serde_json::to_vec_pretty(&signed).map_err(|e| RetentionError::Corrupt(e.to_string()))?;
        std::fs::write(dir.join("manifest.sig"), bytes).map_err(io(&dir.join("manifest.sig")))?;
    }
    Ok(manifest)
}

const DEFAULT_DOMAIN: &str = "strongroom.invalid";

fn is_domain(d: &str) -> bool {
    !d.is_empty()
        && d.len() <= 253
        && d.contains('.')
        && d.split('.').all(|l| {
            !l.is_empty()
                && l.len() <= 63
                && l.bytes().all(|b| b.is_ascii_alphanumeric() || b == b'-')
                && !l.starts_with('-')
                && !l.ends_with('-')
        })
}

/// A record's document id.
pub fn doc_id(index: u64) -> String {
    format!("SR{index:010}")
}

/// Its attachment's document id.
pub fn attachment_id(index: u64) -> String {
    format!("SR{index:010}.0001")
}

/// A file name safe in any file system and load file.
pub(crate) fn safe_name(name: &str) -> String {
    // At most 100 bytes (file systems allow 255 per name, and a prefix comes first).
    let mut s = String::new();
    for c in name.chars().map(|c| if c.is_alphanumeric() || ".-_".contains(c) { c } else { '_' }) {
        if s.len() + c.len_utf8() > 100 {
            break;
        }
        s.push(c);
    }
    let s = s.trim_start_matches('.').to_owned();
    if s.is_empty() {
        "file".into()
    } else {
        s
    }
}

fn native_of(m: &ManifestFile) -> (String, String, u64, String) {
    let (dir, name) = m.path.rsplit_once('/').unwrap_or(("", &m.path));
    (dir.to_owned(), name.to_owned(), m.bytes, m.sha256.clone())
}

fn subject(r: &Record) -> String {
    format!(
        "Strongroom {} in {} conversation {}",
        r.kind,
        r.conversation_kind.as_deref().unwrap_or("a"),
        r.conversation_id.as_deref().unwrap_or("none")
    )
}

fn message_tags(index: u64, r: &Record, domain: &str) -> Vec<(&'static str, &'static str, String)> {
    vec![
        ("#From", "Text", r.sender.as_ref().map(|p| address(p, domain)).unwrap_or_default()),
        ("#To", "Text", r.recipients.iter().map(|p| address(p, domain)).collect::<Vec<_>>().join("; ")),
        ("#DateSent", "DateTime", iso8601(r.time())),
        ("#Subject", "Text", subject(r)),
        ("Strongroom/Text", "Text", body_text(r)),
        ("Strongroom/Kind", "Text", r.kind.clone()),
        ("Strongroom/Conversation", "Text", r.conversation_id.clone().unwrap_or_default()),
        ("Strongroom/ConversationKind", "Text", r.conversation_kind.clone().unwrap_or_default()),
        ("Strongroom/Sequence", "Integer", r.seq.map(|s| s.to_string()).unwrap_or_default()),
        ("Strongroom/MessageID", "Text", r.message_id.clone().unwrap_or_default()),
        ("Strongroom/ArchiveIndex", "Integer", index.to_string()),
    ]
}

/// Writes the DAT (with its BOM) and the OPT; their row and image counts.
fn load_files(
    dat: &mut impl Write,
    opt: &mut impl Write,
    messages: &[&(u64, Record)],
    eml_paths: &BTreeMap<u64, ManifestFile>,
    natives: &BTreeMap<u64, ManifestFile>,
    domain: &str,
) -> std::io::Result<(u64, u64)> {
    dat.write_all(dat::BOM)?;
    dat.write_all(dat::row(&dat::FIELDS.iter().map(|f| f.to_string()).collect::<Vec<_>>()).as_bytes())?;
    let (mut rows, mut images) = (0u64, 0u64);
    for (i, r) in messages {
        let attachment = natives.get(i);
        // The columns a message and its attachment share.
        let shared = [
            r.conversation_id.clone().unwrap_or_default(),
            r.conversation_kind.clone().unwrap_or_default(),
            r.seq.map(|s| s.to_string()).unwrap_or_default(),
            r.message_id.clone().unwrap_or_default(),
            iso8601(r.time()),
            r.sender.as_ref().map(|p| address(p, domain)).unwrap_or_default(),
            r.recipients.iter().map(|p| address(p, domain)).collect::<Vec<_>>().join("; "),
        ];
        let row = |head: [String; 5], tail: [String; 5]| {
            dat::row(&head.into_iter().chain(shared.iter().cloned()).chain(tail).collect::<Vec<_>>())
        };
        let eml = eml_paths.get(i);
        dat.write_all(
            row(
                [
                    doc_id(*i),
                    String::new(),
                    attachment.map(|_| attachment_id(*i)).unwrap_or_default(),
                    "Message".into(),
                    r.kind.clone(),
                ],
                [
                    subject(r),
                    body_text(r),
                    String::new(),
                    eml.map(|m| m.sha256.clone()).unwrap_or_default(),
                    eml.map(|m| m.path.clone()).unwrap_or_default(),
                ],
            )
            .as_bytes(),
        )?;
        rows += 1;
        if let (Some(m), Some(f)) = (attachment, &r.file) {
            dat.write_all(
                row(
                    [attachment_id(*i), doc_id(*i), String::new(), "File".into(), "attachment".into()],
                    [f.name.clone(), String::new(), f.name.clone(), m.sha256.clone(), m.path.clone()],
                )
                .as_bytes(),
            )?;
            rows += 1;
            if f.media_type.starts_with("image/") {
                opt.write_all(dat::opt_line(&attachment_id(*i), "VOL001", &m.path).as_bytes())?;
                images += 1;
            }
        }
    }
    Ok((rows, images))
}

/// Messages grouped by conversation and UTC day, each group in archive order.
fn threads_of<'a>(messages: &[&'a (u64, Record)]) -> Vec<rsmf::Thread<'a>> {
    let mut names: BTreeMap<String, String> = BTreeMap::new();
    let mut groups: BTreeMap<(String, String), rsmf::Thread<'a>> = BTreeMap::new();
    for pair in messages {
        let (i, r) = (pair.0, &pair.1);
        let Some(c) = r.conversation_id.clone() else { continue };
        if let Some(name) = r
            .control
            .as_ref()
            .filter(|c| c.get("action").and_then(|a| a.as_str()) == Some("renamed"))
            .and_then(|c| c.get("name"))
            .and_then(|n| n.as_str())
        {
            names.insert(c.clone(), name.to_owned());
        }
        let day = iso8601(r.time()).get(..10).unwrap_or("").to_owned();
        let t = groups.entry((c.clone(), day.clone())).or_insert_with(|| rsmf::Thread {
            conversation: c.clone(),
            kind: r.conversation_kind.clone().unwrap_or_else(|| "group".into()),
            name: None,
            day,
            records: Vec::new(),
        });
        t.records.push((i, r));
        // The name as of that day's last message, not a later one.
        t.name = names.get(&c).cloned();
    }
    groups.into_values().collect()
}

/// Where an export of `name` would go by default.
pub fn default_dir(name: &str) -> PathBuf {
    PathBuf::from(format!("strongroom-export-{name}"))
}

/// Streams a stored file from the archive and decrypts it to `dest`; on
/// any failure nothing is left at `dest`.
async fn decrypt_to(archive: &Archive, f: &crate::record::FileInfo, dest: &Path) -> Result<(), RetentionError> {
    use futures_util::StreamExt;
    let sealed_path = dest.with_extension("sealed-download");
    let result = async {
        let mut sealed = tokio::fs::File::create(&sealed_path).await.map_err(io(&sealed_path))?;
        let mut stream = archive.store().get(&file_name(&f.blob_id)).await?.into_stream();
        while let Some(chunk) = stream.next().await {
            tokio::io::AsyncWriteExt::write_all(&mut sealed, &chunk?).await.map_err(io(&sealed_path))?;
        }
        tokio::io::AsyncWriteExt::flush(&mut sealed).await.map_err(io(&sealed_path))?;
        let key = crate::unhex::<32>(&f.file_key).ok_or_else(|| RetentionError::Corrupt("file key".into()))?;
        let key = strongroom_crypto::keys::SecretBytes::new(key);
        let (from, to, blob) = (sealed_path.clone(), dest.to_owned(), f.blob_id.clone());
        tokio::task::spawn_blocking(move || -> Result<(), RetentionError> {
            let input = std::io::BufReader::new(std::fs::File::open(&from).map_err(io(&from))?);
            let mut output = std::io::BufWriter::new(std::fs::File::create(&to).map_err(io(&to))?);
            strongroom_crypto::attachment::decrypt(&key, input, &mut output)
                .map_err(|e| RetentionError::Corrupt(format!("file {blob}: {e}")))?;
            output.flush().map_err(io(&to))
        })
        .await
        .map_err(|e| RetentionError::Corrupt(format!("decrypting file {}: {e}", f.blob_id)))?
    }
    .await;
    let _ = std::fs::remove_file(&sealed_path);
    if result.is_err() {
        let _ = std::fs::remove_file(dest);
    }
    result
}

/// A written file's manifest entry, hashed as it is read (streamed).
fn hash_file(dir: &Path, rel: &str) -> Result<ManifestFile, RetentionError> {
    use std::io::Read;
    let path = dir.join(rel);
    let mut f = std::fs::File::open(&path).map_err(io(&path))?;
    let mut ctx = aws_lc_rs::digest::Context::new(&aws_lc_rs::digest::SHA256);
    let mut buf = vec![0u8; 1 << 20];
    let mut bytes = 0u64;
    loop {
        let n = f.read(&mut buf).map_err(io(&path))?;
        if n == 0 {
            break;
        }
        ctx.update(buf.get(..n).unwrap_or_default());
        bytes += n as u64;
    }
    Ok(ManifestFile { path: rel.into(), bytes, sha256: hex(ctx.finish().as_ref()) })
}

/// Base64 of a file in 76-character lines, streamed.
pub(crate) fn write_base64_file(out: &mut impl Write, path: &Path) -> std::io::Result<()> {
    use std::io::Read;
    let mut f = std::fs::File::open(path)?;
    // 57 bytes make one 76-character line: whole lines per read.
    let mut buf = vec![0u8; 57 * 1024];
    loop {
        let mut filled = 0;
        while filled < buf.len() {
            let n = f.read(buf.get_mut(filled..).unwrap_or_default())?;
            if n == 0 {
                break;
            }
            filled += n;
        }
        if filled == 0 {
            return Ok(());
        }
        out.write_all(wrap76(&STANDARD.encode(buf.get(..filled).unwrap_or_default())).as_bytes())?;
        if filled < buf.len() {
            return Ok(());
        }
    }
}

fn party_label(p: &Party) -> String {
    format!("{} <{}>", p.username, p.user_id)
}

pub(crate) fn body_text(r: &Record) -> String {
    let text = kind_text(r);
    match &r.forwarded_from {
        Some(p) => format!(
            "(forwarded: the forwarder states it was first sent by {} in conversation {} at {}; {}) {text}",
            p.sender.username,
            p.conversation_id,
            iso8601(p.sent_at),
            p.checked.as_deref().unwrap_or("not checked against the archive")
        ),
        None => text,
    }
}

fn kind_text(r: &Record) -> String {
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
        "control" | "membership" => control_text(r),
        "unreadable" => format!("(could not be verified or decrypted: {})", r.error.as_deref().unwrap_or("")),
        other => format!("({other})"),
    }
}

/// A conversation change in words, naming people where the record knows them.
fn control_text(r: &Record) -> String {
    let Some(c) = r.control.as_ref() else { return format!("({})", r.kind) };
    let name_of = |id: &str| {
        r.sender
            .iter()
            .chain(&r.recipients)
            .find(|p| p.user_id == id)
            .map(|p| p.username.clone())
            .unwrap_or_else(|| id.to_owned())
    };
    let users = c
        .get("users")
        .and_then(|u| u.as_array())
        .map(|a| a.iter().filter_map(|v| v.as_str()).map(name_of).collect::<Vec<_>>().join(", "))
        .unwrap_or_default();
    let action = c.get("action").and_then(|a| a.as_str()).unwrap_or("");
    let signed = if r.kind == "membership" { " (signed membership statement)" } else { "" };
    let text = match action {
        "created" => format!("created the conversation with {users}"),
        "members_added" => format!("added {users}"),
        "members_removed" => format!("removed {users}"),
        "left" => "left the conversation".to_owned(),
        "moderators_added" => format!("made {users} moderator(s)"),
        "moderators_removed" => format!("removed {users} as moderator(s)"),
        "renamed" => {
            format!("renamed the conversation to \"{}\"", c.get("name").and_then(|n| n.as_str()).unwrap_or(""))
        }
        "default_timers" => format!(
            "set the default timers: expire after {} s, burn {} s after reading (0 = off)",
            c.get("ttl_secs").and_then(|v| v.as_u64()).unwrap_or(0),
            c.get("burn_on_read_secs").and_then(|v| v.as_u64()).unwrap_or(0)
        ),
        "identity_verified" => format!(
            "verified the safety number with {}",
            c.get("user").and_then(|u| u.as_str()).map(name_of).unwrap_or_default()
        ),
        _ => format!("conversation change {c}"),
    };
    format!("({text}){signed}")
}

fn csv_field(s: &str) -> String {
    // A value a spreadsheet would run as a formula is shown as text.
    let s = if s.starts_with(['=', '+', '-', '@', '\t', '\r']) { format!("'{s}") } else { s.to_owned() };
    if s.contains([',', '"', '\r', '\n']) {
        format!("\"{}\"", s.replace('"', "\"\""))
    } else {
        s
    }
}

/// `=?UTF-8?B?…?=` for any header text that is not plain printable ASCII.
/// Header text: as it is when printable ASCII, else an RFC 2047 encoded word.
pub(crate) fn encoded_header(s: &str) -> String {
    if s.bytes().all(|b| (0x20..0x7f).contains(&b)) {
        s.to_owned()
    } else {
        format!("=?UTF-8?B?{}?=", STANDARD.encode(s))
    }
}

fn encoded_word(s: &str) -> String {
    if s.bytes().all(|b| (0x20..0x7f).contains(&b) && b != b'"' && b != b'\\') {
        format!("\"{s}\"")
    } else {
        format!("=?UTF-8?B?{}?=", STANDARD.encode(s))
    }
}

/// `alice@example.org` on a configured domain (a username that is not a
/// valid local part gives way to the user id); `<user id>@strongroom.invalid`
/// without one.
pub(crate) fn email(p: &Party, domain: &str) -> String {
    let local_ok = !p.username.is_empty()
        && p.username.len() <= 64
        && p.username.bytes().all(|b| b.is_ascii_alphanumeric() || b"._-".contains(&b))
        && !p.username.starts_with('.')
        && !p.username.ends_with('.')
        && !p.username.contains("..");
    if domain == DEFAULT_DOMAIN {
        format!("{}@{domain}", p.user_id)
    } else if local_ok {
        format!("{}@{domain}", p.username.to_ascii_lowercase())
    } else {
        // `+` is never in a username-made address: no one can take this one.
        format!("id+{}@{domain}", p.user_id)
    }
}

pub(crate) fn address(p: &Party, domain: &str) -> String {
    format!("{} <{}>", encoded_word(&p.username), email(p, domain))
}

pub(crate) fn wrap76(b64: &str) -> String {
    let mut out = String::with_capacity(b64.len() + b64.len() / 76 * 2 + 2);
    for chunk in b64.as_bytes().chunks(76) {
        out.push_str(std::str::from_utf8(chunk).unwrap_or_default());
        out.push_str("\r\n");
    }
    out
}

fn write_eml(
    out: &mut impl Write,
    index: u64,
    r: &Record,
    attachment: Option<&Path>,
    domain: &str,
) -> std::io::Result<()> {
    let network = domain;
    let conversation = r.conversation_id.as_deref().unwrap_or("none");
    let boundary = format!("strongroom-{index:010}-{}", r.message_id.as_deref().unwrap_or("event"));
    let mut h = String::new();
    let from =
        r.sender.as_ref().map(|p| address(p, network)).unwrap_or_else(|| format!("\"unknown\" <unknown@{network}>"));
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
    if let Some(p) = &r.forwarded_from {
        x.push(("Forwarded-From-Conversation", p.conversation_id.clone()));
        x.push(("Forwarded-From-Message-Id", p.message_id.clone()));
        x.push(("Forwarded-From-User", p.sender.user_id.clone()));
        x.push(("Forwarded-From-Sent-At", p.sent_at.to_string()));
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
    if let (Some(file), Some(f)) = (attachment, &r.file) {
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
        let token =
            |t: &str| !t.is_empty() && t.bytes().all(|b| b.is_ascii_alphanumeric() || b"!#$&^_.+-".contains(&b));
        let media = match f.media_type.split_once('/') {
            Some((a, b))
                if token(a)
                    && token(b)
                    && !a.eq_ignore_ascii_case("message")
                    && !a.eq_ignore_ascii_case("multipart") =>
            {
                f.media_type.as_str()
            }
            _ => "application/octet-stream",
        };
        write!(
            out,
            "--{boundary}\r\nContent-Type: {media}\r\nContent-Disposition: attachment; filename*=utf-8''{name}\r\nContent-Transfer-Encoding: base64\r\n\r\n"
        )?;
        write_base64_file(out, file)?;
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
    fn hostile_names_and_values_are_tamed() {
        // A long name in a 3-byte script stays under every file-name limit.
        let long = "文".repeat(200);
        let safe = safe_name(&long);
        assert!(safe.len() <= 100 && !safe.is_empty());
        assert_eq!(safe_name("../../etc/passwd"), "_.._etc_passwd");
        assert_eq!(safe_name(""), "file");
        // Spreadsheet formulas are shown as text.
        assert_eq!(csv_field("=HYPERLINK(\"x\")"), "\"'=HYPERLINK(\"\"x\"\")\"");
        assert_eq!(csv_field("-1"), "'-1");
        // An address no username can take.
        let odd = Party { user_id: "ab".repeat(16), username: "bob.".into(), ..Party::default() };
        assert_eq!(email(&odd, "acme.example"), format!("id+{}@acme.example", "ab".repeat(16)));
        let bob = Party { user_id: "cd".repeat(16), username: "Bob".into(), ..Party::default() };
        assert_eq!(email(&bob, "acme.example"), "bob@acme.example");
        assert_eq!(email(&bob, DEFAULT_DOMAIN), format!("{}@strongroom.invalid", "cd".repeat(16)));
        assert!(!is_domain("not a domain") && !is_domain("-x.com") && is_domain("acme.example"));
    }

    #[test]
    fn unknown_formats_are_named() {
        let e = Formats::parse(&["jsonl".into(), "pdf".into()]).unwrap_err().to_string();
        assert!(e.contains("\"pdf\"") && e.contains("jsonl, eml, csv, dat, edrm, rsmf or all"), "{e}");
        let all = Formats::parse(&["all".into()]).unwrap();
        assert!(all.jsonl && all.eml && all.csv && all.dat && all.edrm && all.rsmf);
    }

    #[test]
    fn csv_quoting() {
        assert_eq!(csv_field("plain"), "plain");
        assert_eq!(csv_field("a,b"), "\"a,b\"");
        assert_eq!(csv_field("say \"hi\"\nthere"), "\"say \"\"hi\"\"\nthere\"");
    }
}
