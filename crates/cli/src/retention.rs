//! `strongroom retention …`: the organisation's retention device and its archive.

use std::path::{Path, PathBuf};
use std::time::Duration;

use anyhow::{bail, Context};
use clap::{Args, Subcommand};
use strongroom_crypto::certs::NetworkFingerprint;
use strongroom_crypto::ids::NetworkId;
use strongroom_crypto::keys::VerifyingKey;
use strongroom_retention::archive::{destination, open_destination, Archive, Sealer};
use strongroom_retention::aws::S3Bucket;
use strongroom_retention::export::Formats;
use strongroom_retention::keys::RetentionKeys;
use strongroom_retention::record::Hold;
use strongroom_retention::search::Filter;
use strongroom_retention::service::{RunOptions, Service};
use strongroom_retention::verify::{verify, Trusted};

/// Where the retention device's keys and archive are.
#[derive(Args, Clone)]
pub struct Where {
    /// Directory holding retention.key and retention-device.json.
    #[arg(long, env = "STRONGROOM_RETENTION_DIR", default_value = "strongroom-retention", global = true)]
    dir: PathBuf,
    /// Archive destination: a directory, or s3://bucket/prefix [default: DIR/archive].
    #[arg(long, env = "STRONGROOM_ARCHIVE", global = true)]
    archive: Option<String>,
    /// Witness: another directory or s3://bucket/prefix (ideally under
    /// other control) where every signed checkpoint is also written; verify
    /// then compares the archive with it, which catches the newest records
    /// deleted together with their checkpoints.
    #[arg(long, env = "STRONGROOM_RETENTION_WITNESS", global = true)]
    witness: Option<String>,
    /// Second copy: another directory or s3://bucket/prefix (another
    /// region or account) that every write also goes to before it counts;
    /// what it lacks is copied when the archive is opened, and verify
    /// checks both.
    #[arg(long, env = "STRONGROOM_RETENTION_REPLICA", global = true)]
    replica: Option<String>,
    /// Who is searching, exporting, placing holds or purging: recorded in
    /// the archive's access log [default: $USER].
    #[arg(long, env = "STRONGROOM_RETENTION_OPERATOR", global = true)]
    operator: Option<String>,
    /// Why (a matter, ticket or request): recorded in the access log.
    #[arg(long, env = "STRONGROOM_RETENTION_REASON", global = true)]
    reason: Option<String>,
    /// A reader file (`custody grant-reader`) instead of the retention
    /// keys: verify --offline, search, export and access-log only.
    #[arg(long, env = "STRONGROOM_RETENTION_READER", global = true)]
    reader: Option<PathBuf>,
    /// Print results as JSON.
    #[arg(long, global = true)]
    json: bool,
}

#[derive(Subcommand)]
pub enum RetentionCommand {
    /// Create the retention device's keys for a network (then an administrator
    /// runs `strongroom admin retention enable --device DIR/retention-device.json`).
    Init {
        /// The relay's URL.
        #[arg(long, env = "STRONGROOM_SERVER", default_value = "http://127.0.0.1:8080")]
        server: String,
        /// The network id.
        #[arg(long)]
        network: String,
        /// The network key fingerprint your administrators gave you (checked against the server's).
        #[arg(long)]
        fingerprint: String,
        /// Shown to every user ("Acme compliance archive").
        #[arg(long, default_value = "Compliance archive")]
        name: String,
    },
    /// Receive and archive every message and file in the network.
    Run {
        /// Stop once everything queued is archived.
        #[arg(long)]
        once: bool,
        /// Stop after this many seconds.
        #[arg(long)]
        for_secs: Option<u64>,
        /// POST health alerts here as JSON: start, stop, verify_failed, backlog.
        #[arg(long, env = "STRONGROOM_RETENTION_WEBHOOK")]
        webhook: Option<String>,
        /// Verify the archive every this many seconds while running (alerts on failure).
        #[arg(long)]
        verify_every_secs: Option<u64>,
        /// Alert when more than this many messages wait for this device on the relay.
        #[arg(long)]
        backlog_alert: Option<u64>,
    },
    /// Check every record, checkpoint, signature, file and sequence.
    Verify {
        /// Skip re-hashing stored files.
        #[arg(long)]
        skip_files: bool,
        /// Check the archive alone, without asking the relay what it queued
        /// for this device (then a queue drained without archiving goes unseen).
        #[arg(long)]
        offline: bool,
        /// The directory of the retention device this one replaced (`admin
        /// retention rotate`; same passphrase): its archive is checked too,
        /// and the two together must miss no message.
        #[arg(long)]
        predecessor: Option<PathBuf>,
    },
    /// Export records with a signed manifest and a proof per record: JSON
    /// Lines, EML, a CSV, Concordance DAT + OPT, EDRM XML and RSMF.
    Export {
        /// Output directory (new or empty).
        #[arg(long)]
        out: PathBuf,
        /// Formats: any of jsonl, eml, csv, dat, edrm, rsmf, or all.
        #[arg(long, value_delimiter = ',', default_value = "all")]
        format: Vec<String>,
        /// Give people's addresses in this e-mail domain (alice@example.org)
        /// [default: <user id>@strongroom.invalid].
        #[arg(long)]
        email_domain: Option<String>,
        /// Leave each record's own key out of proofs.jsonl: the proofs then
        /// show a record is in the archive but not what it says (each key
        /// opens its record only, the key of its file included).
        #[arg(long)]
        no_record_keys: bool,
        #[command(flatten)]
        filter: FilterArgs,
    },
    /// Find records by words, participant, conversation and time.
    Search {
        /// Words that must all appear.
        query: Option<String>,
        #[command(flatten)]
        filter: FilterArgs,
    },
    /// Create the --archive bucket (s3://bucket/prefix) with S3 Object Lock
    /// on and a default retention in compliance mode: every record, file and
    /// checkpoint written there can be neither deleted nor rewritten, by
    /// anyone, until its retention ends.
    BucketCreate {
        /// Default retention of every object (days): at least the longest
        /// retention period the archive keeps records for.
        #[arg(long)]
        lock_days: u64,
    },
    /// Health for monitoring: records, last archived time, last verify result
    /// (Prometheus text, or --json).
    Status,
    /// Legal holds: records they cover are never deleted.
    #[command(subcommand)]
    Hold(HoldCommand),
    /// Custody of the keys: a KMS-wrapped recovery file, recovery on a
    /// fresh host, and read-only reader files for a designated third party.
    #[command(subcommand)]
    Custody(CustodyCommand),
    /// Who searched, exported, placed or released holds or purged, when and
    /// why: the archive's own access log (signed like every record).
    AccessLog,
    /// Delete records older than the retention period that no hold covers
    /// (each deletion is itself recorded; verify still passes).
    Purge {
        /// The archive's retention period in days: nothing younger goes.
        /// The relay's network and security-group periods (unsigned) may
        /// only lengthen it, and the signed policy's floor raises it.
        #[arg(long)]
        period_days: u64,
        /// Do not ask the relay: the floor of the newest signed policy this
        /// archive verified still applies.
        #[arg(long)]
        offline: bool,
    },
}

#[derive(Subcommand)]
pub enum CustodyCommand {
    /// Wrap this device's keys with a KMS key into a recovery file, to keep
    /// away from this host (AWS_* settings name the KMS).
    KmsWrap {
        /// The KMS key (id, ARN or alias).
        #[arg(long)]
        kms_key_id: String,
        /// The recovery file to write (new).
        #[arg(long)]
        out: PathBuf,
    },
    /// On a fresh host: unwrap a recovery file with KMS and save the keys
    /// in --dir under a new passphrase (STRONGROOM_RETENTION_PASSPHRASE).
    Recover {
        /// The recovery file.
        #[arg(long)]
        from: PathBuf,
    },
    /// Give a designated third party read-only access: a reader file with
    /// the archive key alone, wrapped by their KMS key or a passphrase
    /// (STRONGROOM_READER_PASSPHRASE). Recorded in the access log.
    GrantReader {
        /// Who it is for ("Acme D3P LLC").
        #[arg(long)]
        name: String,
        /// The reader file to write (new).
        #[arg(long)]
        out: PathBuf,
        /// Wrap with this KMS key instead of a passphrase.
        #[arg(long)]
        kms_key_id: Option<String>,
    },
}

#[derive(Subcommand)]
pub enum HoldCommand {
    /// Place a hold.
    Place {
        /// Its name.
        #[arg(long)]
        name: String,
        #[command(flatten)]
        filter: FilterArgs,
    },
    /// Release a hold.
    Release {
        /// Its name.
        #[arg(long)]
        name: String,
    },
    /// List standing holds.
    List,
}

#[derive(Args, Clone, Default)]
pub struct FilterArgs {
    /// From this time (RFC 3339 date `2026-11-01` or ms since the epoch).
    #[arg(long)]
    from: Option<String>,
    /// Until this time (exclusive).
    #[arg(long)]
    until: Option<String>,
    /// Sent or received by this user (username or id).
    #[arg(long)]
    user: Option<String>,
    /// In this conversation (id).
    #[arg(long)]
    conversation: Option<String>,
}

fn parse_time(s: &str) -> anyhow::Result<u64> {
    if let Ok(ms) = s.parse::<u64>() {
        return Ok(ms);
    }
    let ms = strongroom_wire::time::parse_date(s)
        .with_context(|| format!("a time is YYYY-MM-DD or milliseconds since the epoch, not {s:?}"))?;
    u64::try_from(ms).context("dates before 1970 are not supported")
}

impl FilterArgs {
    fn filter(&self, text: Option<String>) -> anyhow::Result<Filter> {
        Ok(Filter {
            from: self.from.as_deref().map(parse_time).transpose()?,
            until: self.until.as_deref().map(parse_time).transpose()?,
            user: self.user.clone(),
            conversation: self.conversation.clone(),
            text,
        })
    }
}

/// A new passphrase for the retention keys (asked twice on a terminal).
fn new_passphrase() -> anyhow::Result<String> {
    crate::user::new_secret_from("STRONGROOM_RETENTION_PASSPHRASE", "a passphrase for the retention keys", 12)
}

fn passphrase() -> anyhow::Result<String> {
    crate::user::secret_from("STRONGROOM_RETENTION_PASSPHRASE", "Passphrase for the retention keys (12+ characters)")
}

fn archive_spec(w: &Where) -> String {
    w.archive.clone().unwrap_or_else(|| w.dir.join("archive").display().to_string())
}

async fn open_archive(w: &Where, keys: &RetentionKeys) -> anyhow::Result<Archive> {
    let (mut store, lock) = open_destination(&archive_spec(w)).await.context("cannot open the archive destination")?;
    // A locked replica is never rewritten either.
    let mut worm = lock.is_some();
    if let Some(spec) = &w.replica {
        let (replica, replica_lock) = open_destination(spec).await.context("cannot open the replica destination")?;
        worm |= replica_lock.is_some();
        let both = strongroom_retention::replica::ReplicatedStore::new(store, replica);
        let copied = both.catch_up().await.context("cannot bring the replica up to date")?;
        if copied > 0 {
            tracing::info!(copied, "copied to the replica what it lacked");
        }
        store = std::sync::Arc::new(both);
    }
    let signer = strongroom_crypto::keys::SigningKey::from_seed(strongroom_crypto::keys::SecretBytes::new(
        *keys.signing.expose_seed().expose(),
    ))
    .map_err(|_| anyhow::anyhow!("the retention signing key is damaged"))?;
    let mut archive = Archive::open(store, &keys.archive_key, signer, keys.network()?, keys.device_id()?)
        .await
        .context("cannot open the archive")?;
    // On a bucket with Object Lock nothing is ever rewritten (purges retire
    // whole segments instead).
    archive.set_worm(worm);
    // On a local directory, nothing is acknowledged before it is on disk.
    for spec in std::iter::once(archive_spec(w)).chain(w.replica.clone()) {
        if let Some(dir) = strongroom_retention::archive::local_dir(&spec) {
            archive.fsync_in(dir);
        }
    }
    if let Some(w) = &w.witness {
        let witness = destination(w).context("cannot open the witness destination")?;
        archive.set_witness(witness).await.context("cannot write to the witness")?;
    }
    if let Some((mode, days)) = lock.as_ref().and_then(|l| Some((l.mode.clone().unwrap_or_default(), l.days?))) {
        archive.record_lock(&mode, days, &actor(w)).await.context("cannot record the bucket's Object Lock")?;
    }
    Ok(archive)
}

fn load_keys(dir: &Path) -> anyhow::Result<RetentionKeys> {
    RetentionKeys::load(dir, &passphrase()?).context("cannot unlock the retention keys")
}

fn progress(label: &'static str, json: bool) -> impl Fn(u64, u64) + Send + Sync {
    use std::io::IsTerminal;
    let show = !json && std::io::stderr().is_terminal();
    move |done, total| {
        if show && (done == total || done % 1000 == 0) {
            let pct = (done * 100).checked_div(total).unwrap_or(100);
            eprint!("\r{label}: {done}/{total} records ({pct}%)");
            if done == total {
                eprintln!();
            }
        }
    }
}

pub async fn run(w: Where, cmd: RetentionCommand) -> anyhow::Result<()> {
    let reads = matches!(
        cmd,
        RetentionCommand::Verify { .. }
            | RetentionCommand::Search { .. }
            | RetentionCommand::Export { .. }
            | RetentionCommand::AccessLog
    );
    if w.reader.is_some() && !reads {
        bail!("a reader file allows verify --offline, search, export and access-log only");
    }
    match cmd {
        RetentionCommand::Custody(cmd) => custody(&w, cmd).await?,
        RetentionCommand::Init { server, network, fingerprint, name } => {
            let network = NetworkId::parse_hex(&network).context("a network id is 32 hex digits")?;
            let info: strongroom_wire::NetworkInfo =
                reqwest::get(format!("{}/v1/networks/{network}", server.trim_end_matches('/')))
                    .await
                    .with_context(|| format!("cannot reach the server at {server}"))?
                    .error_for_status()
                    .context("the server does not know that network")?
                    .json()
                    .await?;
            let public: [u8; 32] =
                info.network_public.0.as_slice().try_into().map_err(|_| anyhow::anyhow!("malformed network key"))?;
            let key = VerifyingKey::from_bytes(public)
                .map_err(|e| anyhow::anyhow!("the server sent an unusable network key: {e}"))?;
            let got = NetworkFingerprint::of(&key).to_string();
            if !bool::from(subtle::ConstantTimeEq::ct_eq(
                got.replace(' ', "").as_bytes(),
                fingerprint.replace(' ', "").as_bytes(),
            )) {
                bail!(
                    "the server's network key fingerprint is {got}, not the one you were given: do not use this server"
                );
            }
            let keys = RetentionKeys::create(&w.dir, &new_passphrase()?, &server, network, key, &name)?;
            let device = strongroom_retention::keys::device_path(&w.dir);
            if w.json {
                println!(
                    "{}",
                    serde_json::json!({"device_id": keys.device.device_id, "device_file": device.display().to_string(), "dir": w.dir.display().to_string()})
                );
            } else {
                println!("Retention device {} created in {}", keys.device.device_id, w.dir.display());
                println!("An administrator now turns retention on with:");
                println!(
                    "  strongroom admin retention enable --key-file NETWORK.key --device {} --profile ADMIN_PROFILE",
                    device.display()
                );
            }
        }
        RetentionCommand::Run { once, for_secs, webhook, verify_every_secs, backlog_alert } => {
            // The service's own log (batches, pauses and retries) on stderr;
            // `STRONGROOM_LOG` filters it like the relay's.
            let filter = std::env::var("STRONGROOM_LOG").unwrap_or_else(|_| "info".into());
            let filter = tracing_subscriber::EnvFilter::try_new(&filter).context("invalid STRONGROOM_LOG filter")?;
            let ansi = std::io::IsTerminal::is_terminal(&std::io::stderr());
            let _ = tracing_subscriber::fmt()
                .with_env_filter(filter)
                .with_writer(std::io::stderr)
                .with_ansi(ansi)
                .try_init();
            let keys = load_keys(&w.dir)?;
            let archive = open_archive(&w, &keys).await?;
            let mut service = Service::start(keys, archive).await.context("the retention service cannot start")?;
            // Fault injection for the durability test: die like a power cut
            // with the batch durable in the archive but not acknowledged.
            #[cfg(debug_assertions)]
            if std::env::var("STRONGROOM_FAULT").as_deref() == Ok("abort-before-ack") {
                service.before_ack(Box::new(|| std::process::abort()));
            }
            // SIGTERM or Ctrl-C: finish the batch in hand, then stop cleanly.
            let (stop, stopping) = tokio::sync::watch::channel(false);
            tokio::spawn(async move {
                use tokio::signal::unix::{signal, SignalKind};
                let interrupted = async {
                    // No Ctrl-C to wait for: never, rather than at once.
                    if tokio::signal::ctrl_c().await.is_err() {
                        std::future::pending::<()>().await;
                    }
                };
                match signal(SignalKind::terminate()) {
                    Ok(mut term) => tokio::select! {
                        _ = term.recv() => {}
                        _ = interrupted => {}
                    },
                    Err(_) => interrupted.await,
                }
                let _ = stop.send(true);
            });
            let report = service
                .run(RunOptions {
                    status_file: Some(w.dir.join("status.json")),
                    until_empty: once,
                    max_time: for_secs.map(Duration::from_secs),
                    poll: Duration::from_millis(500),
                    stop: Some(stopping),
                    health: strongroom_retention::health::HealthOptions {
                        webhook,
                        verify_every: verify_every_secs.map(Duration::from_secs),
                        backlog_alert,
                    },
                })
                .await
                .context("archiving stopped")?;
            if w.json {
                println!("{}", serde_json::json!({"run": report, "records": service.archive().size()}));
            } else {
                println!(
                    "Archived {} messages and {} membership changes ({} files, {} unreadable kept as evidence); the archive holds {} records.",
                    report.archived,
                    report.membership,
                    report.files,
                    report.unreadable,
                    service.archive().size()
                );
            }
        }
        RetentionCommand::Verify { skip_files, offline, predecessor } => {
            let a = access(&w).await?;
            let store = destination(&archive_spec(&w))?;
            let sealer = Sealer::new(&a.archive_key, a.network, a.device)?;
            let trusted =
                Trusted { network: a.network, device: a.device, signing_key: a.signing_public, sealer: &sealer };
            // The relay's account first: whatever `retention run` archives
            // and acknowledges meanwhile is then in the archive when read.
            let coverage = if offline {
                None
            } else {
                let keys = a.keys.as_ref().context("a reader key verifies the archive alone: add --offline")?;
                Some(strongroom_retention::service::fetch_coverage(keys).await.context(
                    "cannot ask the relay what it queued for this device (is it reachable, and does the current policy name this device?); --offline checks the archive alone",
                )?)
            };
            let mut report = verify(store.as_ref(), &trusted, !skip_files).await?;
            if let Some(coverage) = &coverage {
                report.compare_with_relay(coverage);
            }
            if let Some(bucket) = S3Bucket::for_destination(&archive_spec(&w))? {
                report.check_bucket(&bucket).await.context("cannot check the archive bucket's locks and versions")?;
            }
            if let Some(spec) = &w.replica {
                let replica = destination(spec).context("cannot open the replica destination")?;
                let mut theirs = verify(replica.as_ref(), &trusted, !skip_files).await?;
                if let Some(bucket) = S3Bucket::for_destination(spec)? {
                    theirs.check_bucket(&bucket).await.context("cannot check the replica bucket")?;
                }
                report.compare_with_replica(store.as_ref(), replica.as_ref(), theirs).await?;
            }
            if let Some(w) = &w.witness {
                let witness = destination(w).context("cannot open the witness destination")?;
                report.compare_with_witness(witness.as_ref(), &trusted).await?;
            }
            if let Some(dir) = &predecessor {
                let old = load_keys(dir).context("cannot unlock the predecessor's retention keys (same passphrase)")?;
                let old_store = destination(&dir.join("archive").display().to_string())?;
                let old_sealer = Sealer::new(&old.archive_key, old.network()?, old.device_id()?)?;
                let old_trusted = Trusted {
                    network: old.network()?,
                    device: old.device_id()?,
                    signing_key: old.signing.verifying_key(),
                    sealer: &old_sealer,
                };
                let theirs = match verify(old_store.as_ref(), &old_trusted, false).await {
                    Ok(r) => r,
                    // It never ran: nothing of its backlog is archived yet.
                    Err(e @ strongroom_retention::RetentionError::Usage(_)) => {
                        report.problem(format!("predecessor archive: {e}"));
                        Default::default()
                    }
                    Err(e) => return Err(e.into()),
                };
                report.merge_predecessor(&theirs, &a.device.to_string());
            }
            let now = std::time::SystemTime::now().duration_since(std::time::UNIX_EPOCH)?.as_millis() as u64;
            let last = serde_json::json!({"at": now, "ok": report.ok(), "records": report.records, "problem_count": report.problem_count});
            if a.keys.is_some() {
                std::fs::write(w.dir.join("last-verify.json"), last.to_string())
                    .context("cannot record the verify result")?;
            }
            if w.json {
                println!("{}", serde_json::to_string(&report)?);
            } else {
                println!(
                    "{} records ({} deleted under retention), {} segments, {} checkpoints, {} conversations, {} files",
                    report.records,
                    report.deleted,
                    report.segments,
                    report.checkpoints,
                    report.conversations,
                    report.files
                );
                match &report.worm {
                    Some(worm) if worm.mode.is_some() => println!(
                        "WORM: Object Lock {} with a default retention of {} days; {} object versions ({} delete markers), each one's retention checked",
                        worm.mode.as_deref().unwrap_or("-"),
                        worm.default_days.unwrap_or(0),
                        worm.versions,
                        worm.delete_markers
                    ),
                    Some(_) => println!(
                        "NOTE: the bucket has no Object Lock, so records can be rewritten or deleted there; for WORM storage archive to a bucket made with `strongroom retention bucket-create --lock-days N`"
                    ),
                    None => {}
                }
                if let Some(r) = &report.replica {
                    println!(
                        "Replica: {} records, {} problem(s) of its own, {} object(s) missing from it, {} missing from the archive",
                        r.records,
                        r.problem_count,
                        r.missing_from_replica.len(),
                        r.missing_from_primary.len()
                    );
                }
                if report.relay_checked {
                    println!(
                        "Compared with the relay: {} message(s) still queued for this device (run `strongroom retention run` to archive them)",
                        report.relay_pending
                    );
                }
                for p in &report.problems {
                    println!("PROBLEM: {p}");
                }
            }
            if !report.ok() {
                bail!("the archive failed verification: {} problem(s)", report.problem_count);
            }
            if !w.json {
                println!("Verified: every record, checkpoint, signature and sequence is intact.");
            }
        }
        RetentionCommand::Export { out, format, email_domain, no_record_keys, filter } => {
            let (mut archive, reader) = open_for_reading(&w).await?;
            let formats = Formats::parse(&format)?;
            let bar = progress("exporting", w.json);
            let f = filter.filter(None)?;
            let options =
                strongroom_retention::export::ExportOptions { formats, email_domain, record_keys: !no_record_keys };
            let manifest = strongroom_retention::export::export(&archive, &f, &options, &out, &bar).await?;
            let detail = serde_json::json!({"filter": f, "formats": format, "counts": manifest.counts});
            log_access(&w, &mut archive, reader.as_deref(), "export", detail).await?;
            if w.json {
                println!("{}", serde_json::json!({"out": out.display().to_string(), "counts": manifest.counts}));
            } else {
                println!(
                    "Exported to {}: {:?}; manifest.json lists every file with its SHA-256{}, and proofs.jsonl proves each record against the archive's signed checkpoint.",
                    out.display(),
                    manifest.counts,
                    if reader.is_some() { "" } else { " (signed in manifest.sig)" }
                );
            }
        }
        RetentionCommand::Search { query, filter } => {
            let (mut archive, reader) = open_for_reading(&w).await?;
            let f = filter.filter(query)?;
            let hits = strongroom_retention::search::search(&archive, &f).await?;
            let detail = serde_json::json!({"filter": f, "results": hits.len()});
            log_access(&w, &mut archive, reader.as_deref(), "search", detail).await?;
            if w.json {
                let list: Vec<_> = hits
                    .iter()
                    .map(|(i, r)| {
                        let mut v = serde_json::to_value(r).unwrap_or_default();
                        if let Some(o) = v.as_object_mut() {
                            // Never print a file's key.
                            if let Some(f) = o.remove("file") {
                                o.insert("file_name".into(), f.get("name").cloned().unwrap_or_default());
                            }
                            o.insert("index".into(), (*i).into());
                        }
                        v
                    })
                    .collect();
                println!("{}", serde_json::json!({"hits": list}));
            } else {
                for (i, r) in &hits {
                    let who = r.sender.as_ref().map(|s| s.username.clone()).unwrap_or_default();
                    let what = r
                        .text
                        .clone()
                        .or_else(|| r.file.as_ref().map(|f| format!("(file) {}", f.name)))
                        .unwrap_or_else(|| format!("({})", r.kind));
                    println!(
                        "#{i} {} [{}] {who}: {what}",
                        strongroom_retention::export::iso8601(r.time()),
                        r.conversation_id.as_deref().and_then(|c| c.get(..8)).unwrap_or("-")
                    );
                }
                eprintln!("{} record(s)", hits.len());
            }
        }
        RetentionCommand::Hold(cmd) => {
            let keys = load_keys(&w.dir)?;
            let mut archive = open_archive(&w, &keys).await?;
            match cmd {
                HoldCommand::Place { name, filter } => {
                    let f = filter.filter(None)?;
                    let hold =
                        Hold { name, user_id: f.user, conversation_id: f.conversation, from: f.from, until: f.until };
                    strongroom_retention::holds::place(&mut archive, hold.clone()).await?;
                    log_access(&w, &mut archive, None, "hold_place", serde_json::json!({"hold": hold})).await?;
                    println!(
                        "{}",
                        if w.json { serde_json::json!({"placed": true}).to_string() } else { "Hold placed.".into() }
                    );
                }
                HoldCommand::Release { name } => {
                    strongroom_retention::holds::release(&mut archive, &name).await?;
                    log_access(&w, &mut archive, None, "hold_release", serde_json::json!({"hold": name})).await?;
                    println!(
                        "{}",
                        if w.json {
                            serde_json::json!({"released": true}).to_string()
                        } else {
                            "Hold released.".into()
                        }
                    );
                }
                HoldCommand::List => {
                    let holds = strongroom_retention::holds::active(&archive).await?;
                    if w.json {
                        println!("{}", serde_json::json!({"holds": holds}));
                    } else {
                        for h in holds {
                            println!("{}: {}", h.name, serde_json::to_string(&h)?);
                        }
                    }
                }
            }
        }
        RetentionCommand::AccessLog => {
            let (archive, _) = open_for_reading(&w).await?;
            let mut entries = Vec::new();
            archive
                .for_each(|index, r| {
                    if r.kind == "access" {
                        entries.push(serde_json::json!({
                            "index": index, "at": r.archived_at, "actor": r.actor, "why": r.why, "what": r.control,
                        }));
                    }
                })
                .await?;
            if w.json {
                println!("{}", serde_json::json!({"entries": entries}));
            } else {
                for e in &entries {
                    println!("{e}");
                }
            }
        }
        RetentionCommand::BucketCreate { lock_days } => {
            if !(1..=36_500).contains(&lock_days) {
                bail!("--lock-days is 1 to 36500");
            }
            let spec = archive_spec(&w);
            let bucket = S3Bucket::for_destination(&spec)?
                .with_context(|| format!("--archive {spec} is not an s3://bucket/prefix destination"))?;
            bucket.create_locked(lock_days).await.context("cannot create the locked bucket")?;
            if w.json {
                println!("{}", serde_json::json!({"created": spec, "mode": "COMPLIANCE", "lock_days": lock_days}));
            } else {
                println!("Created {spec} with Object Lock (compliance mode, {lock_days} days by default).");
            }
        }
        RetentionCommand::Status => {
            let read = |name: &str| -> serde_json::Value {
                std::fs::read(w.dir.join(name)).ok().and_then(|b| serde_json::from_slice(&b).ok()).unwrap_or_default()
            };
            let (status, verify) = (read("status.json"), read("last-verify.json"));
            let n = |v: &serde_json::Value, k: &str| v.get(k).and_then(|x| x.as_u64()).unwrap_or(0);
            if w.json {
                println!("{}", serde_json::json!({"archive": status, "last_verify": verify}));
            } else {
                println!("# HELP strongroom_retention_records Records in the archive.\n# TYPE strongroom_retention_records gauge");
                println!("strongroom_retention_records {}", n(&status, "records"));
                println!("# HELP strongroom_retention_last_archived_ms When a batch was last archived (ms since the epoch).\n# TYPE strongroom_retention_last_archived_ms gauge");
                println!("strongroom_retention_last_archived_ms {}", n(&status, "last_archived_at"));
                println!("# HELP strongroom_retention_status_updated_ms When the service last polled, or a command last changed the archive (ms since the epoch): alert when it stops moving.\n# TYPE strongroom_retention_status_updated_ms gauge");
                println!("strongroom_retention_status_updated_ms {}", n(&status, "updated_at"));
                println!("# HELP strongroom_retention_last_verify_ok 1 if the last verify passed, 0 if it failed or never ran.\n# TYPE strongroom_retention_last_verify_ok gauge");
                println!(
                    "strongroom_retention_last_verify_ok {}",
                    u8::from(verify.get("ok").and_then(|x| x.as_bool()) == Some(true))
                );
                println!("# HELP strongroom_retention_last_verify_ms When verify last ran (ms since the epoch).\n# TYPE strongroom_retention_last_verify_ms gauge");
                println!("strongroom_retention_last_verify_ms {}", n(&verify, "at"));
            }
        }
        RetentionCommand::Purge { period_days, offline } => {
            let keys = load_keys(&w.dir)?;
            let mut periods =
                strongroom_retention::holds::Periods { default_days: Some(period_days), ..Default::default() };
            let mut archive = open_archive(&w, &keys).await?;
            if offline {
                // The floor of the newest signed policy this archive verified.
                periods.floor_days = strongroom_retention::archive::policy_floor(archive.store().as_ref()).await?;
            } else {
                let p = strongroom_retention::service::fetch_periods(&keys)
                    .await
                    .context("cannot fetch the retention periods from the relay (use --offline --period-days N)")?;
                periods.network_days = p.network_days;
                periods.users = p.users.into_iter().map(|(u, days)| (u.to_string(), days)).collect();
                periods.floor_days = strongroom_retention::service::fetch_floor(&keys, &archive)
                    .await
                    .context("cannot check the network policy's retention floor (use --offline --period-days N)")?;
            }
            let now = std::time::SystemTime::now().duration_since(std::time::UNIX_EPOCH)?.as_millis() as u64;
            let report = strongroom_retention::holds::purge(&mut archive, &periods, now).await?;
            let detail = serde_json::json!({"period_days": period_days, "offline": offline, "report": report});
            log_access(&w, &mut archive, None, "purge", detail).await?;
            if w.json {
                println!("{}", serde_json::to_string(&report)?);
            } else {
                println!(
                    "Deleted {} records ({} files); {} past their period kept under legal hold.",
                    report.deleted, report.files, report.held
                );
            }
        }
    }
    Ok(())
}

async fn custody(w: &Where, cmd: CustodyCommand) -> anyhow::Result<()> {
    use strongroom_retention::custody;
    match cmd {
        CustodyCommand::KmsWrap { kms_key_id, out } => {
            let keys = load_keys(&w.dir)?;
            custody::kms_wrap(&keys, &kms_key_id, &out).await.context("cannot wrap the keys with KMS")?;
            let mut archive = open_archive(w, &keys).await?;
            let detail = serde_json::json!({"kms_key_id": kms_key_id});
            log_access(w, &mut archive, None, "recovery_wrapped", detail).await?;
            if w.json {
                println!("{}", serde_json::json!({"recovery_file": out.display().to_string()}));
            } else {
                println!(
                    "Recovery file written to {}: keep it away from this host; KMS key {kms_key_id} opens it.",
                    out.display()
                );
            }
        }
        CustodyCommand::Recover { from } => {
            let keys = custody::recover(&from, &w.dir, &new_passphrase()?)
                .await
                .with_context(|| format!("cannot recover the keys from {}", from.display()))?;
            // Say so in the archive when it can be reached now.
            let logged = match open_archive(w, &keys).await {
                Ok(mut archive) => {
                    let detail = serde_json::json!({"from": from.display().to_string()});
                    log_access(w, &mut archive, None, "keys_recovered", detail).await.is_ok()
                }
                Err(_) => false,
            };
            if !logged {
                eprintln!("note: the archive could not be reached; the recovery is not in its access log yet");
            }
            if w.json {
                println!(
                    "{}",
                    serde_json::json!({"device_id": keys.device.device_id, "dir": w.dir.display().to_string()})
                );
            } else {
                println!("Keys of retention device {} recovered into {}.", keys.device.device_id, w.dir.display());
            }
        }
        CustodyCommand::GrantReader { name, out, kms_key_id } => {
            let keys = load_keys(&w.dir)?;
            let passphrase = match &kms_key_id {
                Some(_) => None,
                None => Some(crate::user::secret_from(
                    "STRONGROOM_READER_PASSPHRASE",
                    "Passphrase for the reader file (12+ characters; give it to the reader apart from the file)",
                )?),
            };
            let mut archive = open_archive(w, &keys).await?;
            custody::grant_reader(&keys, &name, kms_key_id.as_deref(), passphrase.as_deref(), &out)
                .await
                .context("cannot write the reader file")?;
            let detail = serde_json::json!({"holder": name, "wrapped_by": if kms_key_id.is_some() { "kms" } else { "passphrase" }});
            log_access(w, &mut archive, None, "reader_granted", detail).await?;
            if w.json {
                println!("{}", serde_json::json!({"reader_file": out.display().to_string(), "holder": name}));
            } else {
                println!("Reader file for {name:?} written to {}.", out.display());
            }
        }
    }
    Ok(())
}

/// The archive's identity and key: from the retention keys, or from a
/// reader file (`--reader`).
struct Access {
    network: NetworkId,
    device: strongroom_crypto::ids::DeviceId,
    signing_public: VerifyingKey,
    archive_key: strongroom_crypto::keys::SecretBytes<32>,
    keys: Option<RetentionKeys>,
}

async fn access(w: &Where) -> anyhow::Result<Access> {
    if w.reader.is_some() {
        let r = reader_keys(w).await?;
        return Ok(Access {
            network: r.network,
            device: r.device,
            signing_public: r.signing_public,
            archive_key: r.archive_key,
            keys: None,
        });
    }
    let keys = load_keys(&w.dir)?;
    Ok(Access {
        network: keys.network()?,
        device: keys.device_id()?,
        signing_public: keys.signing.verifying_key(),
        archive_key: keys.archive_key.clone(),
        keys: Some(keys),
    })
}

async fn reader_keys(w: &Where) -> anyhow::Result<strongroom_retention::custody::ReaderKeys> {
    let path = w.reader.as_deref().context("no --reader file")?;
    let passphrase = if strongroom_retention::custody::is_kms_wrapped(path) {
        None
    } else {
        Some(crate::user::secret_from("STRONGROOM_READER_PASSPHRASE", "Passphrase of the reader file")?)
    };
    strongroom_retention::custody::open_reader(path, passphrase.as_deref())
        .await
        .with_context(|| format!("cannot open the reader file {}", path.display()))
}

/// The archive for searching, exporting or listing: writable with the
/// retention keys, read-only with a reader file (then the holder's name).
async fn open_for_reading(w: &Where) -> anyhow::Result<(Archive, Option<String>)> {
    if w.reader.is_none() {
        let keys = load_keys(&w.dir)?;
        return Ok((open_archive(w, &keys).await?, None));
    }
    let r = reader_keys(w).await?;
    let store = destination(&archive_spec(w)).context("cannot open the archive destination")?;
    let archive = Archive::open_reader(store, &r.archive_key, r.signing_public, r.network, r.device)
        .await
        .context("cannot open the archive")?;
    Ok((archive, Some(r.holder)))
}

/// Appends an `access` record (who, what, why) for a search, export, hold
/// or purge, and brings `status.json` up to date. A reader cannot add to
/// the archive: its access is said on stderr, to be kept with the export.
async fn log_access(
    w: &Where,
    archive: &mut Archive,
    reader: Option<&str>,
    action: &str,
    detail: serde_json::Value,
) -> anyhow::Result<()> {
    if let Some(holder) = reader {
        eprintln!(
            "note: read with the reader key of {holder:?}: a reader cannot add to the archive, so this {action} is not in its access log"
        );
        return Ok(());
    }
    let actor = actor(w);
    let record = strongroom_retention::record::Record::access(action, &actor, w.reason.as_deref(), detail);
    archive.append(&[record]).await.context("cannot record this access in the archive")?;
    refresh_status(w, archive)
}

/// Who is acting: `--operator`, else `$USER`.
fn actor(w: &Where) -> String {
    w.operator
        .clone()
        .or_else(|| std::env::var("USER").ok())
        .filter(|a| !a.trim().is_empty())
        .unwrap_or_else(|| "unknown".into())
}

/// `status.json` after a command that appended records (a hold, a purge), so
/// `retention status` never reports fewer records than the archive holds.
fn refresh_status(w: &Where, archive: &Archive) -> anyhow::Result<()> {
    Ok(strongroom_retention::service::write_status(&w.dir.join("status.json"), archive.size(), 0)?)
}
