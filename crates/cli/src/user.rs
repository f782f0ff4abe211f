//! Commands for people: enrol, send, read, conversations.

use std::path::PathBuf;

use anyhow::{bail, Context};
use clap::{Args, Subcommand};
use strongroom_client::Client;
use strongroom_crypto::content::{Content, Location};

/// Where the profile lives and how to unlock it.
#[derive(Args, Clone)]
pub struct ProfileArgs {
    /// Profile directory (keys and the encrypted local store).
    #[arg(long, env = "STRONGROOM_PROFILE", default_value = "strongroom-profile", global = true)]
    pub profile: PathBuf,
    /// Print results as JSON.
    #[arg(long, global = true)]
    pub json: bool,
}

#[derive(Args)]
pub struct EnrolArgs {
    /// The invite code from your administrator.
    #[arg(long)]
    invite: String,
    /// Your username (a-z, 0-9, '.', '_', '-').
    #[arg(long)]
    username: String,
}

#[derive(Args)]
pub struct SendArgs {
    /// Send to this user (the direct conversation with them).
    #[arg(long, conflicts_with_all = ["conversation", "reply_to"])]
    to: Option<String>,
    /// Answer this message (id), in its conversation.
    #[arg(long, conflicts_with = "conversation")]
    reply_to: Option<String>,
    /// Send to this conversation (id).
    #[arg(long)]
    conversation: Option<String>,
    /// Delete the message this many seconds after sending.
    #[arg(long, default_value_t = 0)]
    ttl: u32,
    /// Delete it this many seconds after the recipient first sees it.
    #[arg(long, default_value_t = 0)]
    burn_on_read: u32,
    /// Share a position instead of text: LATITUDE,LONGITUDE in degrees.
    #[arg(long, allow_hyphen_values = true, conflicts_with = "reply_to")]
    location: Option<String>,
    /// Uncertainty of the position, metres.
    #[arg(long, default_value_t = 0.0, requires = "location")]
    accuracy: f32,
    /// Live location: positions from this share stay current for this many seconds.
    #[arg(long, requires = "location")]
    live_for: Option<u64>,
    /// The text.
    #[arg(required_unless_present = "location", conflicts_with = "location")]
    text: Option<String>,
}

/// A position from "LAT,LON", checked like every received one.
fn parse_location(s: &str, accuracy_m: f32, live_for: Option<u64>) -> anyhow::Result<Location> {
    let (lat, lon) = s.split_once(',').context("a location is LATITUDE,LONGITUDE, e.g. 51.5014,-0.1419")?;
    let latitude: f64 = lat.trim().parse().context("the latitude is not a number")?;
    let longitude: f64 = lon.trim().parse().context("the longitude is not a number")?;
    let now = std::time::SystemTime::now().duration_since(std::time::UNIX_EPOCH)?.as_millis() as u64;
    let live_until = live_for.map(|secs| now.saturating_add(secs.saturating_mul(1000)));
    let location = Location { latitude, longitude, accuracy_m, live_until };
    Content::Location(location).validate().context("that location cannot be sent")?;
    Ok(location)
}

/// A UTC time from milliseconds since the epoch.
pub(crate) fn when(ms: u64) -> String {
    let (y, m, d, hh, mm, ss, _) = strongroom_wire::time::utc(ms);
    format!("{y:04}-{m:02}-{d:02} {hh:02}:{mm:02}:{ss:02} UTC")
}

#[derive(Subcommand)]
pub enum ConversationsCommand {
    /// List your conversations: name, members, unread messages.
    List,
    /// Create a group or room with these usernames.
    Create {
        /// group or room.
        #[arg(long, default_value = "group")]
        kind: String,
        /// Its name, shown to every member.
        #[arg(long)]
        name: Option<String>,
        /// Members (usernames).
        members: Vec<String>,
    },
    /// Name a conversation (every member sees the new name).
    Rename {
        /// The conversation (its id, or the first digits of it).
        conversation: String,
        /// The new name.
        name: String,
    },
}

/// A secret from an environment variable, or asked on the terminal
/// without echo.
pub fn secret_from(env: &str, prompt: &str) -> anyhow::Result<String> {
    if let Ok(v) = std::env::var(env) {
        return Ok(v);
    }
    use std::io::IsTerminal;
    if !std::io::stdin().is_terminal() {
        bail!("{prompt} needed: set {env} or run in a terminal");
    }
    rpassword::prompt_password(format!("{prompt}: ")).context("cannot read the answer from the terminal")
}

/// A new secret (at least `min` characters): from an environment variable,
/// or asked twice on the terminal without echo. Too short or not repeated
/// the same, it is refused.
pub fn new_secret_from(env: &str, what: &str, min: usize) -> anyhow::Result<String> {
    let prompt = format!("Choose {what} ({min}+ characters)");
    let first = secret_from(env, &prompt)?;
    if first.chars().count() < min {
        bail!("{what} must be at least {min} characters long");
    }
    if std::env::var(env).is_err() {
        let again = secret_from(env, &format!("Repeat {what}"))?;
        if again != first {
            bail!("the two entries of {what} differ; nothing was changed");
        }
    }
    Ok(first)
}

pub async fn open(p: &ProfileArgs) -> anyhow::Result<Client> {
    open_as(p, false).await
}

/// Opens the profile for an administration command, which may run beside
/// the process that owns the profile (it never writes the profile's state).
pub async fn open_admin(p: &ProfileArgs) -> anyhow::Result<Client> {
    open_as(p, true).await
}

async fn open_as(p: &ProfileArgs, shared: bool) -> anyhow::Result<Client> {
    let pass = secret_from("STRONGROOM_PASSPHRASE", "Profile passphrase")?;
    // The SDK carries out a remote wipe before anything else.
    let client =
        if shared { Client::open_shared(&p.profile, &pass).await } else { Client::open(&p.profile, &pass).await }
            .context("cannot open the profile")?;
    Ok(client)
}

pub async fn enrol(p: ProfileArgs, a: EnrolArgs) -> anyhow::Result<()> {
    let pass = new_secret_from("STRONGROOM_PASSPHRASE", "a profile passphrase", 8)?;
    let password = new_secret_from("STRONGROOM_PASSWORD", "an account password", 10)?;
    let client =
        Client::enrol(&p.profile, &pass, &a.invite, &a.username, &password).await.context("enrolment failed")?;
    if p.json {
        println!(
            "{}",
            serde_json::json!({"user_id": client.user_id().to_string(), "device_id": client.device_id().to_string(), "profile": p.profile.display().to_string()})
        );
    } else {
        println!("Enrolled {} (user {}) on device {}", client.username(), client.user_id(), client.device_id());
        println!("Profile: {}", p.profile.display());
    }
    client.close().await;
    Ok(())
}

pub async fn send(p: ProfileArgs, a: SendArgs) -> anyhow::Result<()> {
    let mut client = open(&p).await?;
    let reply_to = match a.reply_to.as_deref() {
        Some(m) => Some(crate::reading::message(&client, m).await?),
        None => None,
    };
    let conversation = match (&a.to, &a.conversation, reply_to) {
        (_, _, Some(target)) => client.conversation_of(target).await?,
        (Some(user), _, None) => client.direct_with(user).await.context("cannot find that user")?,
        (None, Some(c), None) => crate::reading::conversation(&client, c).await?,
        (None, None, None) => bail!("say where: --to USERNAME, --conversation ID or --reply-to MESSAGE_ID"),
    };
    let content = match (reply_to, &a.location) {
        (_, Some(loc)) => Content::Location(parse_location(loc, a.accuracy, a.live_for)?),
        (Some(target), None) => Content::Reply { in_reply_to: target, text: a.text.unwrap_or_default() },
        (None, None) => Content::Text(a.text.unwrap_or_default()),
    };
    let accepted = client.send_timed(conversation, &content, a.ttl, a.burn_on_read).await.context("sending failed")?;
    // Whether retention is on, as last verified (the relay refuses a send
    // that leaves out a retention device, so it is current).
    let retention = client.retention_enabled().await?;
    for n in client.take_notices() {
        eprintln!("notice: {n}");
    }
    if p.json {
        println!(
            "{}",
            serde_json::json!({"conversation": conversation.to_string(), "message_id": accepted.message_id, "seq": accepted.seq, "queued": accepted.queued, "retention": retention})
        );
    } else {
        if accepted.queued {
            println!(
                "The relay cannot be reached: the message is sealed and queued on this device; it goes with the next `strongroom send`, `read` or `watch`"
            );
        } else if accepted.seq == 0 {
            println!("Kept on this device as a note to self (you have no other device to sync it to)");
        } else {
            println!("Sent to conversation {conversation} (#{})", accepted.seq);
        }
        if retention {
            println!("Data retention is on in this network.");
        }
    }
    client.close().await;
    Ok(())
}

pub(crate) fn describe(content: &Content) -> String {
    match content {
        Content::Text(t) => t.clone(),
        Content::Reply { text, .. } => format!("(reply) {text}"),
        Content::Edit { text, .. } => format!("(edit) {text}"),
        Content::Recall { .. } => "(message recalled)".into(),
        Content::Reaction { emoji, .. } => format!("(reaction) {emoji}"),
        Content::File(f) => {
            format!("(file) {} — {} bytes; get it with `strongroom file get MESSAGE_ID`", f.name, f.size)
        }
        Content::Location(l) => {
            let live = l.live_until.map(|t| format!(", live until {}", when(t))).unwrap_or_default();
            format!("(location) {:.6}, {:.6} ±{} m{live}", l.latitude, l.longitude, l.accuracy_m)
        }
        Content::Unknown { type_id, .. } => format!("(a message of type {type_id}: update Strongroom to see it)"),
        Content::Forwarded { origin, content } if origin.is_withheld() => format!("(forwarded) {}", describe(content)),
        Content::Forwarded { origin, content } => {
            format!("(forwarded from user {}, sent {}) {}", origin.sender, when(origin.sent_at), describe(content))
        }
        Content::Control(strongroom_crypto::content::Control::IdentityVerified { user, safety_number }) => {
            format!("(verified the safety number with user {user}: {safety_number})")
        }
        other => format!("({other:?})"),
    }
}

pub async fn conversations(p: ProfileArgs, cmd: ConversationsCommand) -> anyhow::Result<()> {
    let mut client = open(&p).await?;
    match cmd {
        ConversationsCommand::List => {
            // New messages first, so names and unread counts are current.
            if let Err(e) = client.sync().await {
                eprintln!("warning: cannot fetch new messages ({e}); unread counts are as of the last fetch");
            }
            let list = client.conversations().await?;
            let retention = client.policy().await.context("the network policy cannot be trusted")?.retention_enabled();
            let titles = crate::reading::names_of(&client.view(None).await?);
            let unread: std::collections::HashMap<_, _> =
                client.read_states().await?.into_iter().map(|s| (s.conversation, s.unread)).collect();
            let mut people = crate::people::People::default();
            people.learn_members(&list);
            let me = client.user_id();
            if p.json {
                let list: Vec<_> = list
                    .iter()
                    .map(|c| {
                        let mut v = serde_json::to_value(c).unwrap_or_default();
                        if let Some(o) = v.as_object_mut() {
                            o.insert("retention".into(), retention.into());
                            o.insert("name".into(), titles.get(&c.id).cloned().into());
                            o.insert("unread".into(), unread.get(&c.id).copied().unwrap_or(0).into());
                        }
                        v
                    })
                    .collect();
                println!("{}", serde_json::Value::Array(list));
            } else {
                // Said on every line: each conversation is archived.
                let note = if retention { ", data retention on" } else { "" };
                for c in &list {
                    let short: String = c.id.to_string().chars().take(crate::reading::SHORT).collect();
                    let mut members: Vec<String> = c.members.iter().map(|m| people.name(&m.user_id)).collect();
                    members.sort();
                    let title = titles.get(&c.id).cloned().unwrap_or_else(|| people.members_of(&c.id, me));
                    let title = crate::people::clean(&title);
                    let n = unread.get(&c.id).copied().unwrap_or(0);
                    let unread = if n > 0 { format!(", {n} unread") } else { String::new() };
                    println!(
                        "[{short}] {title} — {}, {} members{note}{unread}: {}",
                        c.kind,
                        c.members.len(),
                        members.join(", ")
                    );
                }
            }
        }
        ConversationsCommand::Create { kind, name, members } => {
            if let Some(name) = &name {
                // Checked before anything is made: a bad name leaves no unnamed group behind.
                strongroom_client::check_conversation_name(name)?;
            }
            let refs: Vec<&str> = members.iter().map(String::as_str).collect();
            let c = client.create_conversation(&kind, &refs).await?;
            if let Some(name) = &name {
                client.rename(c.id, name).await.context("created, but not named")?;
            }
            if p.json {
                println!("{}", serde_json::to_string(&c)?);
            } else {
                let named = name.map(|n| format!(" \"{n}\"")).unwrap_or_default();
                println!("Created {}{named} {}", c.kind, c.id);
            }
        }
        ConversationsCommand::Rename { conversation, name } => {
            let id = crate::reading::conversation(&client, &conversation).await?;
            client.rename(id, &name).await.context("cannot rename the conversation")?;
            if p.json {
                println!("{}", serde_json::json!({"conversation": id.to_string(), "name": name}));
            } else {
                println!("Renamed {id} to \"{name}\"");
            }
        }
    }
    client.close().await;
    Ok(())
}

#[derive(Args)]
pub struct InviteArgs {
    /// Make the new account an administrator.
    #[arg(long, conflicts_with = "guest")]
    admin: bool,
    /// Invite a guest from outside the organisation: a limited account that
    /// gets your security group (which must allow guests) and expires after
    /// its inactivity period. Any member may, where their group allows it.
    #[arg(long)]
    guest: bool,
}

pub async fn invite(p: ProfileArgs, a: InviteArgs) -> anyhow::Result<()> {
    let client = open(&p).await?;
    let invite = if a.guest {
        client.create_guest_invite(None).await.context("cannot create a guest invite")?
    } else {
        client.create_invite(a.admin).await.context("cannot create an invite")?
    };
    if p.json {
        println!("{}", serde_json::json!({"invite": invite.invite, "expires_at": invite.expires_at, "guest": a.guest}));
    } else if a.guest {
        println!(
            "Guest invite (one use, 7 days). Pass it on yourself; the guest runs `strongroom enrol` with it:\n{}",
            invite.invite
        );
    } else {
        println!("Invite (one use, 7 days):\n{}", invite.invite);
    }
    client.close().await;
    Ok(())
}

#[derive(Subcommand)]
pub enum FileCommand {
    /// Encrypt and send a file.
    Send {
        /// Send to this user (the direct conversation with them).
        #[arg(long, conflicts_with = "conversation")]
        to: Option<String>,
        /// Send to this conversation (id).
        #[arg(long)]
        conversation: Option<String>,
        /// The file.
        path: PathBuf,
    },
    /// Download, verify and decrypt a received file.
    Get {
        /// The message that carried it (from `strongroom read`).
        message: String,
        /// Where to write it [default: its name, in the current directory].
        #[arg(long)]
        out: Option<PathBuf>,
    },
}

/// A progress bar on stderr when it is a terminal; silent otherwise.
fn progress_bar(label: &'static str) -> impl Fn(u64, u64) + Send + Sync {
    use std::io::IsTerminal;
    let tty = std::io::stderr().is_terminal();
    let last = std::sync::atomic::AtomicU64::new(u64::MAX);
    move |done, total| {
        if !tty || total == 0 {
            return;
        }
        let pct = (done.min(total) * 100 / total).min(100);
        if last.swap(pct, std::sync::atomic::Ordering::Relaxed) == pct {
            return;
        }
        let filled = (pct / 5) as usize;
        eprint!(
            "\r{label} [{}{}] {pct:>3}% {:.1}/{:.1} MiB",
            "#".repeat(filled),
            " ".repeat(20 - filled),
            done as f64 / 1048576.0,
            total as f64 / 1048576.0
        );
        if pct == 100 {
            eprintln!();
        }
    }
}

pub async fn file(p: ProfileArgs, cmd: FileCommand) -> anyhow::Result<()> {
    let mut client = open(&p).await?;
    match cmd {
        FileCommand::Send { to, conversation, path } => {
            let conv = match (&to, &conversation) {
                (Some(user), _) => client.direct_with(user).await.context("cannot find that user")?,
                (None, Some(c)) => crate::reading::conversation(&client, c).await?,
                (None, None) => bail!("say where: --to USERNAME or --conversation ID"),
            };
            let bar = progress_bar("encrypting and uploading");
            let (accepted, file) = client.send_file(conv, &path, &bar).await.context("sending the file failed")?;
            if p.json {
                println!(
                    "{}",
                    serde_json::json!({"conversation": conv.to_string(), "message_id": accepted.message_id, "seq": accepted.seq, "size": file.size, "name": file.name})
                );
            } else {
                println!("Sent {} ({} bytes) to conversation {conv} (#{})", file.name, file.size, accepted.seq);
            }
        }
        FileCommand::Get { message, out } => {
            let id = crate::reading::message(&client, &message).await?;
            let file = client.file_of(id).await?;
            let dest = out.unwrap_or_else(|| {
                // Only the final component of the sender's name, never a path.
                PathBuf::from(
                    std::path::Path::new(&file.name).file_name().map(|n| n.to_owned()).unwrap_or_else(|| "file".into()),
                )
            });
            if dest.exists() {
                bail!("{} exists; choose another --out", dest.display());
            }
            let bar = progress_bar("downloading and decrypting");
            client.get_file(&file, &dest, &bar).await.context("getting the file failed")?;
            if p.json {
                println!(
                    "{}",
                    serde_json::json!({"path": dest.display().to_string(), "size": file.size, "media_type": file.media_type})
                );
            } else {
                println!("Saved {} ({} bytes, verified)", dest.display(), file.size);
            }
        }
    }
    client.close().await;
    Ok(())
}

#[derive(Args)]
pub struct VerifyArgs {
    /// The other person's username.
    username: String,
    /// Accept their current identity key after it changed (compare the safety number first).
    #[arg(long)]
    accept: bool,
    /// Mark their identity key verified: you compared the safety number in
    /// person or on a call and it matched. A later key change undoes it.
    #[arg(long)]
    confirm: bool,
}

pub async fn verify(p: ProfileArgs, a: VerifyArgs) -> anyhow::Result<()> {
    let mut client = open(&p).await?;
    if a.accept {
        client.accept_identity(&a.username).await.context("cannot accept the new identity")?;
    }
    let sn = client.safety_number(&a.username).await?;
    if a.confirm {
        client.mark_verified(&a.username).await.context("cannot mark the identity verified")?;
    }
    use strongroom_client::rules::trust::Verification;
    let (status, words) = match client.verification(&a.username).await? {
        Verification::Verified => ("verified", "verified: you compared this safety number"),
        Verification::Unverified => ("unverified", "not verified yet: compare, then run `verify --confirm`"),
        Verification::ChangedSinceVerified => {
            ("changed", "their identity key CHANGED since you verified it: compare the new number again")
        }
    };
    if p.json {
        println!(
            "{}",
            serde_json::json!({"username": a.username, "safety_number": sn.digits(), "qr": sn.qr_string(), "verified": status})
        );
    } else {
        println!("Safety number with {}:\n{}", a.username, sn.digits());
        println!("Compare it with {} in person or on a call; both of you see the same digits.", a.username);
        println!("QR code payload: {}", sn.qr_string());
        println!("Status: {words}");
    }
    client.close().await;
    Ok(())
}

#[derive(Args)]
pub struct EditArgs {
    /// Your message to change (id).
    message: String,
    /// Its new text.
    text: String,
}

#[derive(Args)]
pub struct TargetArgs {
    /// The message (id).
    message: String,
}

#[derive(Args)]
pub struct ReactArgs {
    /// The message (id).
    message: String,
    /// The emoji.
    emoji: String,
    /// Take the reaction back.
    #[arg(long)]
    remove: bool,
}

/// Sends a message about an earlier one (edit, recall, reaction) to its conversation.
async fn about(
    p: ProfileArgs,
    target: &str,
    make: impl FnOnce(strongroom_crypto::ids::MessageId) -> Content,
) -> anyhow::Result<()> {
    let mut client = open(&p).await?;
    let target = crate::reading::message(&client, target).await?;
    let conversation = client.conversation_of(target).await?;
    let accepted = client.send(conversation, &make(target), 0).await.context("sending failed")?;
    if p.json {
        println!(
            "{}",
            serde_json::json!({"conversation": conversation.to_string(), "message_id": accepted.message_id, "seq": accepted.seq})
        );
    } else {
        println!("Sent (#{})", accepted.seq);
    }
    client.close().await;
    Ok(())
}

pub async fn edit(p: ProfileArgs, a: EditArgs) -> anyhow::Result<()> {
    about(p, &a.message, |target| Content::Edit { target, text: a.text }).await
}

pub async fn recall(p: ProfileArgs, a: TargetArgs) -> anyhow::Result<()> {
    about(p, &a.message, |target| Content::Recall { target }).await
}

pub async fn react(p: ProfileArgs, a: ReactArgs) -> anyhow::Result<()> {
    about(p, &a.message, |target| Content::Reaction { target, emoji: a.emoji, remove: a.remove }).await
}

#[derive(Args)]
pub struct MembersArgs {
    /// The conversation (id).
    #[arg(long)]
    conversation: String,
    /// Add these users.
    #[arg(long, value_delimiter = ',')]
    add: Vec<String>,
    /// Remove these users (yourself, to leave).
    #[arg(long, value_delimiter = ',')]
    remove: Vec<String>,
    /// Make these members moderators (rooms).
    #[arg(long, value_delimiter = ',')]
    promote: Vec<String>,
    /// Make these moderators plain members (rooms).
    #[arg(long, value_delimiter = ',')]
    demote: Vec<String>,
}

fn str_refs(v: &[String]) -> Vec<&str> {
    v.iter().map(String::as_str).collect()
}

pub async fn members(p: ProfileArgs, a: MembersArgs) -> anyhow::Result<()> {
    let mut client = open(&p).await?;
    let id = crate::reading::conversation(&client, &a.conversation).await?;
    if !(a.add.is_empty() && a.remove.is_empty() && a.promote.is_empty() && a.demote.is_empty()) {
        client
            .change_members(id, &str_refs(&a.add), &str_refs(&a.remove), &str_refs(&a.promote), &str_refs(&a.demote))
            .await
            .context("cannot change the members")?;
    }
    // The members as members signed them, not as the relay lists them.
    let signed = client.membership(id).await.context("cannot verify the conversation's members")?;
    let mut out = Vec::new();
    for user in &signed.members {
        let role = if signed.moderators.contains(user) { "moderator" } else { "member" };
        out.push((client.username_of(*user).await.unwrap_or_else(|_| user.to_string()), role.to_owned()));
    }
    let c = (id.to_string(), signed.kind.name(), signed.commitment.version);
    if p.json {
        let list: Vec<_> = out.iter().map(|(n, r)| serde_json::json!({"username": n, "role": r})).collect();
        println!("{}", serde_json::json!({"conversation": c.0, "kind": c.1, "members": list, "membership_seq": c.2}));
    } else {
        println!("{} {} (signed membership change #{})", c.1, c.0, c.2);
        for (n, r) in out {
            println!("  {n} ({r})");
        }
    }
    client.close().await;
    Ok(())
}

#[derive(Args)]
pub struct DevicesArgs {
    /// Revoke this device (id), from your primary device: it is logged out,
    /// receives nothing more, and can never be listed as active again.
    #[arg(long)]
    remove: Option<String>,
}

pub async fn devices(p: ProfileArgs, a: DevicesArgs) -> anyhow::Result<()> {
    let mut client = open(&p).await?;
    if let Some(d) = &a.remove {
        let device = strongroom_crypto::ids::DeviceId::parse_hex(d).context("a device id is 32 hex digits")?;
        client.remove_device(device).await.context("cannot remove the device")?;
    }
    let this = client.device_id();
    let list = client.devices().await?;
    if !p.json {
        println!("Network {} — to link a new device run there: strongroom link start --server URL --network {} --username {}", client.network_id(), client.network_id(), client.username());
        if client.is_primary() {
            println!("This is your primary device: approve links and remove devices here.");
        } else {
            println!("Approve links and remove devices on your primary device (the one that enrolled).");
        }
    }
    if p.json {
        let v: Vec<_> = list
            .iter()
            .map(|(d, n, revoked)| serde_json::json!({"device_id": d.to_string(), "name": n, "revoked": revoked, "this_device": *d == this, "primary": *d == this && client.is_primary()}))
            .collect();
        println!("{}", serde_json::Value::Array(v));
    } else {
        for (d, n, revoked) in list {
            println!(
                "{d} {n}{}{}",
                if revoked { " (revoked)" } else { "" },
                if d == this { " (this device)" } else { "" }
            );
        }
    }
    client.close().await;
    Ok(())
}

pub async fn login(p: ProfileArgs) -> anyhow::Result<()> {
    let mut client = open(&p).await?;
    let password = secret_from("STRONGROOM_PASSWORD", "Account password")?;
    client.login(&password).await.context("login failed")?;
    if p.json {
        println!(
            "{}",
            serde_json::json!({"user_id": client.user_id().to_string(), "device_id": client.device_id().to_string()})
        );
    } else {
        println!("Logged in as {} on device {}", client.username(), client.device_id());
    }
    client.close().await;
    Ok(())
}

#[derive(Subcommand)]
pub enum LinkCommand {
    /// On the NEW device: ask to join your account; shows a code and waits.
    Start {
        /// The relay's URL.
        #[arg(long, env = "STRONGROOM_SERVER")]
        server: String,
        /// Your network's id (`strongroom devices` on an existing device shows it).
        #[arg(long)]
        network: String,
        /// Your username.
        #[arg(long)]
        username: String,
        /// How long to wait for approval, seconds.
        #[arg(long, default_value_t = 300)]
        timeout: u64,
    },
    /// On your PRIMARY device (the one that enrolled): approve the new device
    /// showing a code.
    Approve {
        /// The code the new device shows. Better left out: it is then asked
        /// for (or read from STRONGROOM_LINK_CODE), so its secret does not
        /// sit in the process list or shell history.
        code: Option<String>,
    },
}

pub async fn link(p: ProfileArgs, cmd: LinkCommand) -> anyhow::Result<()> {
    match cmd {
        LinkCommand::Start { server, network, username, timeout } => {
            let network =
                strongroom_crypto::ids::NetworkId::parse_hex(&network).context("a network id is 32 hex digits")?;
            let pass = new_secret_from("STRONGROOM_PASSPHRASE", "a profile passphrase for this device", 8)?;
            let password = secret_from("STRONGROOM_PASSWORD", "Account password")?;
            let pending = Client::link_begin(&p.profile, &pass, &server, network, &username, &password)
                .await
                .context("cannot start linking")?;
            if p.json {
                println!("{}", serde_json::json!({"link_code": pending.code().to_string()}));
            } else {
                println!("Link code: {}", pending.code());
                println!("On one of your devices run `strongroom link approve` and type this code when asked.");
            }
            use std::io::Write;
            let _ = std::io::stdout().flush();
            let client = pending.wait(std::time::Duration::from_secs(timeout)).await.context("linking failed")?;
            let fingerprint = client.network_fingerprint()?;
            if p.json {
                println!(
                    "{}",
                    serde_json::json!({"device_id": client.device_id().to_string(), "linked": true, "network_fingerprint": fingerprint})
                );
            } else {
                println!("This device ({}) is now linked to {}", client.device_id(), client.username());
                println!(
                    "Network fingerprint pinned: {fingerprint} (it must match the one your administrator gave you)"
                );
            }
            client.close().await;
        }
        LinkCommand::Approve { code } => {
            let code = match code {
                Some(c) => c,
                None => secret_from("STRONGROOM_LINK_CODE", "Link code shown on the new device")?,
            };
            let mut client = open(&p).await?;
            let device = client.approve_link(&code).await.context("cannot approve the device")?;
            if p.json {
                println!("{}", serde_json::json!({"approved": device.to_string()}));
            } else {
                println!("Approved device {device}");
            }
            client.close().await;
        }
    }
    Ok(())
}

#[derive(Args)]
pub struct TimersArgs {
    /// The conversation (id).
    #[arg(long)]
    conversation: String,
    /// Default expiry after sending, seconds (0 = off).
    #[arg(long, default_value_t = 0)]
    ttl: u32,
    /// Default burn after first read, seconds (0 = off).
    #[arg(long, default_value_t = 0)]
    burn_on_read: u32,
}

pub async fn timers(p: ProfileArgs, a: TimersArgs) -> anyhow::Result<()> {
    let mut client = open(&p).await?;
    let id = crate::reading::conversation(&client, &a.conversation).await?;
    client.set_default_timers(id, a.ttl, a.burn_on_read).await.context("cannot set the timers")?;
    if p.json {
        println!(
            "{}",
            serde_json::json!({"conversation": id.to_string(), "ttl": a.ttl, "burn_on_read": a.burn_on_read})
        );
    } else {
        println!(
            "Default timers for {id}: expire after {} s, burn {} s after reading (0 = off)",
            a.ttl, a.burn_on_read
        );
    }
    client.close().await;
    Ok(())
}

#[derive(Args)]
pub struct ForwardArgs {
    /// The message to forward (id).
    message: String,
    /// To this user (the direct conversation with them).
    #[arg(long, conflicts_with = "conversation", required_unless_present = "conversation")]
    to: Option<String>,
    /// To this conversation (id).
    #[arg(long)]
    conversation: Option<String>,
}

pub async fn forward(p: ProfileArgs, a: ForwardArgs) -> anyhow::Result<()> {
    let mut client = open(&p).await?;
    let message = crate::reading::message(&client, &a.message).await?;
    let to = match (&a.to, &a.conversation) {
        (Some(user), _) => client.direct_with(user).await.context("cannot find that user")?,
        (None, Some(c)) => crate::reading::conversation(&client, c).await?,
        (None, None) => bail!("say where: --to USERNAME or --conversation ID"),
    };
    let bar = progress_bar("forwarding");
    let accepted = client.forward(message, to, &bar).await.context("forwarding failed")?;
    if p.json {
        println!(
            "{}",
            serde_json::json!({"conversation": to.to_string(), "message_id": accepted.message_id, "seq": accepted.seq})
        );
    } else {
        println!("Forwarded to conversation {to} (#{})", accepted.seq);
    }
    client.close().await;
    Ok(())
}

#[derive(Args)]
pub struct PasswordArgs {
    /// The one-time code from your administrator (after a password reset).
    #[arg(long)]
    reset_code: String,
}

/// Chooses a new password with an administrator's reset code, and logs in with it.
pub async fn password(p: ProfileArgs, a: PasswordArgs) -> anyhow::Result<()> {
    let pass = secret_from("STRONGROOM_PASSPHRASE", "Profile passphrase")?;
    let mut client = Client::open(&p.profile, &pass).await.context("cannot open the profile")?;
    let password = new_secret_from("STRONGROOM_PASSWORD", "a new account password", 10)?;
    client.reset_password(&a.reset_code, &password).await.context("the password was not changed")?;
    if p.json {
        println!("{}", serde_json::json!({"password_changed": true}));
    } else {
        println!("Password changed; this device is logged in again.");
    }
    client.close().await;
    Ok(())
}
