//! `strongroom admin users|devices|groups|settings|audit`: the
//! administration API from the command line, as the administrator's profile.

use std::path::PathBuf;

use anyhow::{bail, Context};
use clap::{Args, Subcommand};
use serde_json::{json, Value};
use strongroom_client::Client;
use strongroom_crypto::ids::UserId;
use strongroom_wire::{verify_audit_chain, AdminUser, AuditEntry, GroupRequest, GroupSettings, SecurityGroup};

use crate::user::ProfileArgs;

#[derive(Subcommand)]
pub enum UsersCommand {
    /// List users (with --search, those whose name contains it).
    List {
        #[arg(long)]
        search: Option<String>,
    },
    /// Guests: who invited each, last activity, expiry.
    Guests,
    /// Create invites: --count N, or one per line of a CSV file (first column).
    Invite {
        #[arg(long, conflicts_with = "csv")]
        count: Option<u32>,
        #[arg(long)]
        csv: Option<PathBuf>,
        /// The new accounts are administrators.
        #[arg(long)]
        admin: bool,
    },
    /// Revoke an unused invite and issue a new one.
    Reinvite {
        #[arg(long)]
        invite: String,
    },
    /// Suspend a user: their sessions end at once.
    Suspend { user: String },
    /// Lift a suspension.
    Unsuspend { user: String },
    /// Delete a user and purge what was queued for them.
    Delete { user: String },
    /// Force re-login and print a one-time code for the user to choose a new password.
    ResetPassword { user: String },
    /// Set a role: user, admin or auditor (read-only).
    Role { user: String, role: String },
    /// Put a user in a security group (or --none for the network defaults).
    Group {
        user: String,
        #[arg(long, required_unless_present = "none")]
        group: Option<String>,
        #[arg(long)]
        none: bool,
    },
}

#[derive(Subcommand)]
pub enum DevicesCommand {
    /// A user's devices.
    List { user: String },
    /// Revoke all of a user's devices; prints a re-enrolment invite for them.
    Reset { user: String },
    /// Remote-wipe one device (its id from `admin devices list`).
    Wipe { user: String, device: String },
}

#[derive(Subcommand)]
pub enum GroupsCommand {
    /// Security groups and their settings.
    List,
    /// Create a group; settings as --set key=value (see docs/ADMINISTRATION.md).
    Create {
        name: String,
        #[arg(long = "set", value_name = "KEY=VALUE")]
        set: Vec<String>,
    },
    /// Change a group's settings (and name).
    Edit {
        name: String,
        #[arg(long)]
        rename: Option<String>,
        #[arg(long = "set", value_name = "KEY=VALUE")]
        set: Vec<String>,
    },
    /// Delete a group (members fall back to the network defaults).
    Delete { name: String },
}

#[derive(Subcommand)]
pub enum SettingsCommand {
    /// The network's default settings.
    Show,
    /// Change them: --set key=value.
    Set {
        #[arg(long = "set", value_name = "KEY=VALUE", required = true)]
        set: Vec<String>,
    },
}

#[derive(Subcommand)]
pub enum AuditCommand {
    /// Entries, filtered.
    List {
        #[command(flatten)]
        filter: AuditFilter,
    },
    /// Export as JSON Lines.
    Export {
        #[arg(long)]
        out: PathBuf,
        #[command(flatten)]
        filter: AuditFilter,
    },
    /// Check the hash chain: of the server's log, or of an export (--file).
    Verify {
        #[arg(long)]
        file: Option<PathBuf>,
    },
}

#[derive(Args)]
pub struct AuditFilter {
    /// From (ms since the epoch).
    #[arg(long)]
    from: Option<i64>,
    /// Until (ms, exclusive).
    #[arg(long)]
    until: Option<i64>,
    /// By this administrator.
    #[arg(long)]
    actor: Option<String>,
    /// Actions starting with this, e.g. `user.` or `device.wipe`.
    #[arg(long)]
    action: Option<String>,
}

impl AuditFilter {
    /// The filter as (name, value) pairs; the admin client encodes them.
    fn pairs(&self) -> Vec<(&'static str, String)> {
        let mut q = Vec::new();
        if let Some(v) = self.from {
            q.push(("from", v.to_string()));
        }
        if let Some(v) = self.until {
            q.push(("until", v.to_string()));
        }
        for (k, v) in [("actor", &self.actor), ("action", &self.action)] {
            if let Some(v) = v {
                q.push((k, v.clone()));
            }
        }
        q
    }
}

/// Applies `key=value` pairs to settings; values are JSON when they parse
/// (numbers, true/false, lists), else strings. Unknown keys are errors.
pub fn apply_settings(base: &GroupSettings, pairs: &[String]) -> anyhow::Result<GroupSettings> {
    let mut v = serde_json::to_value(base)?;
    let obj = v.as_object_mut().context("settings")?;
    for pair in pairs {
        let (k, val) = pair.split_once('=').with_context(|| format!("{pair:?}: settings are KEY=VALUE"))?;
        if !obj.contains_key(k) {
            let known: Vec<&String> = obj.keys().collect();
            bail!("unknown setting {k:?}; settings are {known:?}");
        }
        let parsed = serde_json::from_str(val).unwrap_or_else(|_| Value::String(val.to_owned()));
        obj.insert(k.to_owned(), parsed);
    }
    let s: GroupSettings = serde_json::from_value(v).context("a setting has the wrong type")?;
    s.validate().map_err(|e| anyhow::anyhow!("{e}"))?;
    Ok(s)
}

/// A user of the network by username (or id).
async fn find_user(c: &Client, name: &str) -> anyhow::Result<(UserId, AdminUser)> {
    let list = c.admin().users(Some(name)).await?;
    let u = list
        .into_iter()
        .find(|u| u.username == name || u.user_id.to_string() == name)
        .with_context(|| format!("no user {name:?} in your network (see `strongroom admin users list`)"))?;
    Ok((u.user_id, u))
}

/// A security group by name (or id).
async fn find_group(c: &Client, name: &str) -> anyhow::Result<SecurityGroup> {
    c.admin()
        .groups()
        .await?
        .into_iter()
        .find(|g| g.name == name || g.id == name)
        .with_context(|| format!("no security group {name:?} (see `strongroom admin groups list`)"))
}

/// One user as a line: id, name, role (guests: who invited them), devices, status.
fn user_line(u: &AdminUser) -> String {
    let role = match (&u.invited_by, u.role.as_str()) {
        (Some(by), "guest") => format!("guest, invited by {by}"),
        (_, role) => role.to_owned(),
    };
    let flags = match (u.expired_at, u.suspended) {
        (Some(t), _) => format!(" EXPIRED {}", crate::user::when(t)),
        (None, true) => " SUSPENDED".to_owned(),
        (None, false) => String::new(),
    };
    format!("{} {} ({role}, {} devices){flags}", u.user_id, u.username, u.devices.len())
}

fn out<T: serde::Serialize>(json: bool, v: &T, human: impl FnOnce(&T)) {
    if json {
        println!("{}", serde_json::to_string(v).unwrap_or_default());
    } else {
        human(v);
    }
}

pub async fn users(p: ProfileArgs, cmd: UsersCommand) -> anyhow::Result<()> {
    let c = crate::user::open_admin(&p).await?;
    let done = |what: &str| json!({"done": what});
    match cmd {
        UsersCommand::List { search } => {
            let users = c.admin().users(search.as_deref()).await?;
            out(p.json, &users, |users| {
                for u in users {
                    println!("{}", user_line(u));
                }
            });
        }
        UsersCommand::Guests => {
            let guests = c.admin().guests().await?;
            out(p.json, &guests, |guests| {
                if guests.is_empty() {
                    println!("No guests.");
                }
                for u in guests {
                    let active =
                        u.last_active_at.map(|t| format!(", last active {}", crate::user::when(t))).unwrap_or_default();
                    println!("{}{active}", user_line(u));
                }
            });
        }
        UsersCommand::Invite { count, csv, admin } => {
            let labels: Vec<String> = match (count, csv) {
                (_, Some(path)) => {
                    let text =
                        std::fs::read_to_string(&path).with_context(|| format!("cannot read {}", path.display()))?;
                    text.lines()
                        .map(|l| l.split(',').next().unwrap_or("").trim().trim_matches('"').to_owned())
                        .filter(|l| {
                            !l.is_empty() && !["name", "username", "email"].contains(&l.to_lowercase().as_str())
                        })
                        .collect()
                }
                (Some(n), None) => (1..=n).map(|i| format!("invite {i}")).collect(),
                (None, None) => vec!["invite 1".into()],
            };
            let made = c.admin().invite(labels, admin).await?;
            out(p.json, &made, |made| {
                for i in made {
                    println!("{}: {}", i.label, i.invite.invite);
                }
            });
        }
        UsersCommand::Reinvite { invite } => {
            let v = c.admin().reissue_invite(&invite).await?;
            out(p.json, &v, |v| println!("New invite (the old one is revoked):\n{}", v.invite));
        }
        UsersCommand::Suspend { user } => {
            c.admin().suspend(find_user(&c, &user).await?.0).await?;
            out(p.json, &done("suspended"), |_| println!("{user} is suspended; their sessions have ended."));
        }
        UsersCommand::Unsuspend { user } => {
            c.admin().unsuspend(find_user(&c, &user).await?.0).await?;
            out(p.json, &done("unsuspended"), |_| println!("{user} may log in again."));
        }
        UsersCommand::Delete { user } => {
            c.admin().delete_user(find_user(&c, &user).await?.0).await?;
            out(p.json, &done("deleted"), |_| println!("{user} is deleted; messages queued for them are purged."));
        }
        UsersCommand::ResetPassword { user } => {
            let v = c.admin().reset_password(find_user(&c, &user).await?.0).await?;
            out(p.json, &v, |v| {
                println!("{user} is logged out everywhere. Give them this one-time code (valid 24 hours):");
                println!("{}", v.code);
                println!("They run: strongroom password --reset-code CODE");
            });
        }
        UsersCommand::Role { user, role } => {
            c.admin().set_role(find_user(&c, &user).await?.0, &role).await?;
            out(p.json, &done("role"), |_| println!("{user} is now {role}."));
        }
        UsersCommand::Group { user, group, none } => {
            let (id, _) = find_user(&c, &user).await?;
            let gid = match (group, none) {
                (_, true) => None,
                (Some(g), false) => Some(find_group(&c, &g).await?.id),
                (None, false) => bail!("say --group NAME or --none"),
            };
            c.admin().set_group(id, gid).await?;
            out(p.json, &done("group"), |_| println!("{user}'s security group is set."));
        }
    }
    c.close().await;
    Ok(())
}

pub async fn devices(p: ProfileArgs, cmd: DevicesCommand) -> anyhow::Result<()> {
    let c = crate::user::open_admin(&p).await?;
    match cmd {
        DevicesCommand::List { user } => {
            let (_, u) = find_user(&c, &user).await?;
            out(p.json, &u.devices, |devices| {
                for d in devices {
                    let revoked = if d.revoked { " (revoked)" } else { "" };
                    println!("{}{revoked} wipe: {}", d.device_id, d.wipe);
                }
            });
        }
        DevicesCommand::Reset { user } => {
            let v = c.admin().reset_devices(find_user(&c, &user).await?.0).await?;
            out(p.json, &v, |v| {
                println!("All of {user}'s devices are revoked. They enrol again with this invite (same username):");
                println!("{}", v.invite);
            });
        }
        DevicesCommand::Wipe { user, device } => {
            // Checked before it goes into the URL path.
            let device = strongroom_crypto::ids::DeviceId::parse_hex(&device)
                .with_context(|| format!("{device:?} is not a device id (32 hex digits, from `admin devices list`)"))?;
            c.admin().wipe_device(find_user(&c, &user).await?.0, device).await?;
            out(p.json, &json!({"done": "wipe ordered"}), |_| {
                println!("Device {device} is revoked; it erases its data the next time it connects.")
            });
        }
    }
    c.close().await;
    Ok(())
}

pub async fn groups(p: ProfileArgs, cmd: GroupsCommand) -> anyhow::Result<()> {
    let c = crate::user::open_admin(&p).await?;
    match cmd {
        GroupsCommand::List => {
            let groups = c.admin().groups().await?;
            out(p.json, &groups, |groups| {
                for g in groups {
                    let settings = serde_json::to_string(&g.settings).unwrap_or_default();
                    println!("{} {} ({} members): {settings}", g.id, g.name, g.members);
                }
            });
        }
        GroupsCommand::Create { name, set } => {
            let settings = apply_settings(&GroupSettings::default(), &set)?;
            let g = c.admin().create_group(&GroupRequest { name: name.clone(), settings }).await?;
            out(p.json, &g, |g| println!("Created group {name} ({})", g.id));
        }
        GroupsCommand::Edit { name, rename, set } => {
            let g = find_group(&c, &name).await?;
            let settings = apply_settings(&g.settings, &set)?;
            let new_name = rename.unwrap_or(name.clone());
            c.admin().update_group(&g.id, &GroupRequest { name: new_name.clone(), settings: settings.clone() }).await?;
            out(p.json, &json!({"done": "updated", "settings": settings}), |_| {
                println!("Group {new_name} updated; members' clients apply it at their next request.")
            });
        }
        GroupsCommand::Delete { name } => {
            c.admin().delete_group(&find_group(&c, &name).await?.id).await?;
            out(p.json, &json!({"done": "deleted"}), |_| println!("Group {name} deleted."));
        }
    }
    c.close().await;
    Ok(())
}

pub async fn settings(p: ProfileArgs, cmd: SettingsCommand) -> anyhow::Result<()> {
    let c = crate::user::open_admin(&p).await?;
    let current = c.admin().settings().await?;
    match cmd {
        SettingsCommand::Show => {
            out(p.json, &current, |v| println!("{}", serde_json::to_string_pretty(v).unwrap_or_default()))
        }
        SettingsCommand::Set { set } => {
            let s = apply_settings(&current, &set)?;
            c.admin().put_settings(&s).await?;
            out(p.json, &s, |_| println!("Network settings updated."));
        }
    }
    c.close().await;
    Ok(())
}

pub async fn audit(p: ProfileArgs, cmd: AuditCommand) -> anyhow::Result<()> {
    if let AuditCommand::Verify { file: Some(path) } = &cmd {
        let text = std::fs::read_to_string(path).with_context(|| format!("cannot read {}", path.display()))?;
        let entries: Vec<AuditEntry> = text
            .lines()
            .filter(|l| !l.trim().is_empty())
            .enumerate()
            .map(|(i, l)| serde_json::from_str(l).with_context(|| format!("line {} is not an audit entry", i + 1)))
            .collect::<anyhow::Result<_>>()?;
        return report_chain(p.json, &entries);
    }
    let c = crate::user::open_admin(&p).await?;
    match cmd {
        AuditCommand::List { filter } => {
            let entries = c.admin().audit(&filter.pairs()).await?;
            out(p.json, &entries, |entries| {
                for e in entries {
                    println!(
                        "#{} {} {} {} {} from {} {}",
                        e.seq,
                        crate::user::when(e.at),
                        e.actor,
                        e.action,
                        e.target,
                        e.source,
                        e.details
                    );
                }
            });
        }
        AuditCommand::Export { out: path, filter } => {
            let text = c.admin().audit_jsonl(&filter.pairs()).await?;
            std::fs::write(&path, &text).with_context(|| format!("cannot write {}", path.display()))?;
            let n = text.lines().filter(|l| !l.trim().is_empty()).count();
            out(p.json, &json!({"entries": n, "out": path.display().to_string()}), |_| {
                println!("Exported {n} audit entries to {}", path.display())
            });
        }
        AuditCommand::Verify { .. } => {
            let entries = c.admin().audit(&[]).await?;
            c.close().await;
            return report_chain(p.json, &entries);
        }
    }
    c.close().await;
    Ok(())
}

fn report_chain(json: bool, entries: &[AuditEntry]) -> anyhow::Result<()> {
    match verify_audit_chain(entries) {
        Ok(()) => {
            let head = entries.last().map(|e| e.hash.clone()).unwrap_or_default();
            out(json, &json!({"ok": true, "entries": entries.len(), "head": head}), |_| {
                println!("Audit log intact: {} entries, head {head}", entries.len())
            });
            Ok(())
        }
        Err(problem) => {
            if json {
                println!("{}", json!({"ok": false, "entries": entries.len(), "problem": problem}));
            }
            bail!("the audit log was tampered with: {problem}")
        }
    }
}
