//! `strongroom admin users|devices|groups|settings|audit`: the
//! administration API from the command line, as the administrator's profile.

use std::path::PathBuf;

use anyhow::{bail, Context};
use clap::{Args, Subcommand};
use reqwest::Method;
use serde_json::{json, Value};
use strongroom_client::Client;
use strongroom_wire::time::urlencode;
use strongroom_wire::{verify_audit_chain, AuditEntry, GroupSettings};

use crate::user::ProfileArgs;

#[derive(Subcommand)]
pub enum UsersCommand {
    /// List users (with --search, those whose name contains it).
    List {
        #[arg(long)]
        search: Option<String>,
    },
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
    fn query(&self) -> String {
        let mut q = Vec::new();
        if let Some(v) = self.from {
            q.push(format!("from={v}"));
        }
        if let Some(v) = self.until {
            q.push(format!("until={v}"));
        }
        for (k, v) in [("actor", &self.actor), ("action", &self.action)] {
            if let Some(v) = v {
                q.push(format!("{k}={}", urlencode(v)));
            }
        }
        q.join("&")
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

async fn call(c: &Client, method: Method, path: &str, body: Option<Value>) -> anyhow::Result<Value> {
    Ok(c.admin_call(method, path, body.as_ref()).await?.unwrap_or(Value::Null))
}

async fn user_id(c: &Client, name: &str) -> anyhow::Result<(String, Value)> {
    let list = call(c, Method::GET, &format!("/v1/admin/users?search={}", urlencode(name)), None).await?;
    list.as_array()
        .into_iter()
        .flatten()
        .find(|u| u["username"] == name || u["user_id"] == name)
        .map(|u| (u["user_id"].as_str().unwrap_or_default().to_owned(), u.clone()))
        .with_context(|| format!("no user {name:?} in your network (see `strongroom admin users list`)"))
}

async fn group_id(c: &Client, name: &str) -> anyhow::Result<(String, Value)> {
    let list = call(c, Method::GET, "/v1/admin/groups", None).await?;
    list.as_array()
        .into_iter()
        .flatten()
        .find(|g| g["name"] == name || g["id"] == name)
        .map(|g| (g["id"].as_str().unwrap_or_default().to_owned(), g.clone()))
        .with_context(|| format!("no security group {name:?} (see `strongroom admin groups list`)"))
}

fn out(json: bool, v: &Value, human: impl FnOnce(&Value)) {
    if json {
        println!("{v}");
    } else {
        human(v);
    }
}

pub async fn users(p: ProfileArgs, cmd: UsersCommand) -> anyhow::Result<()> {
    let c = crate::user::open_admin(&p).await?;
    let done = |what: &str| json!({"done": what});
    match cmd {
        UsersCommand::List { search } => {
            let q = search.map(|s| format!("?search={}", urlencode(&s))).unwrap_or_default();
            let v = call(&c, Method::GET, &format!("/v1/admin/users{q}"), None).await?;
            out(p.json, &v, |v| {
                for u in v.as_array().into_iter().flatten() {
                    let devices = u["devices"].as_array().map(|d| d.len()).unwrap_or(0);
                    let flags = if u["suspended"] == true { " SUSPENDED" } else { "" };
                    println!(
                        "{} {} ({}, {devices} devices){flags}",
                        u["user_id"].as_str().unwrap_or(""),
                        u["username"].as_str().unwrap_or(""),
                        u["role"].as_str().unwrap_or("")
                    );
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
            let v =
                call(&c, Method::POST, "/v1/admin/invites", Some(json!({"labels": labels, "admin": admin}))).await?;
            out(p.json, &v, |v| {
                for i in v.as_array().into_iter().flatten() {
                    println!("{}: {}", i["label"].as_str().unwrap_or(""), i["invite"].as_str().unwrap_or(""));
                }
            });
        }
        UsersCommand::Reinvite { invite } => {
            let v = call(&c, Method::POST, "/v1/admin/invites/reissue", Some(json!({"invite": invite}))).await?;
            out(p.json, &v, |v| {
                println!("New invite (the old one is revoked):\n{}", v["invite"].as_str().unwrap_or(""))
            });
        }
        UsersCommand::Suspend { user } => {
            let (id, _) = user_id(&c, &user).await?;
            call(&c, Method::POST, &format!("/v1/admin/users/{id}/suspend"), None).await?;
            out(p.json, &done("suspended"), |_| println!("{user} is suspended; their sessions have ended."));
        }
        UsersCommand::Unsuspend { user } => {
            let (id, _) = user_id(&c, &user).await?;
            call(&c, Method::POST, &format!("/v1/admin/users/{id}/unsuspend"), None).await?;
            out(p.json, &done("unsuspended"), |_| println!("{user} may log in again."));
        }
        UsersCommand::Delete { user } => {
            let (id, _) = user_id(&c, &user).await?;
            call(&c, Method::DELETE, &format!("/v1/admin/users/{id}"), None).await?;
            out(p.json, &done("deleted"), |_| println!("{user} is deleted; messages queued for them are purged."));
        }
        UsersCommand::ResetPassword { user } => {
            let (id, _) = user_id(&c, &user).await?;
            let v = call(&c, Method::POST, &format!("/v1/admin/users/{id}/reset-password"), None).await?;
            out(p.json, &v, |v| {
                println!("{user} is logged out everywhere. Give them this one-time code (valid 24 hours):");
                println!("{}", v["code"].as_str().unwrap_or(""));
                println!("They run: strongroom password --reset-code CODE");
            });
        }
        UsersCommand::Role { user, role } => {
            let (id, _) = user_id(&c, &user).await?;
            call(&c, Method::POST, &format!("/v1/admin/users/{id}/role"), Some(json!({"role": role}))).await?;
            out(p.json, &done("role"), |_| println!("{user} is now {role}."));
        }
        UsersCommand::Group { user, group, none } => {
            let (id, _) = user_id(&c, &user).await?;
            let gid = match (group, none) {
                (_, true) => None,
                (Some(g), false) => Some(group_id(&c, &g).await?.0),
                (None, false) => bail!("say --group NAME or --none"),
            };
            call(&c, Method::POST, &format!("/v1/admin/users/{id}/group"), Some(json!({"group_id": gid}))).await?;
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
            let (_, u) = user_id(&c, &user).await?;
            let devices = u.get("devices").cloned().unwrap_or_default();
            out(p.json, &devices, |d| {
                for d in d.as_array().into_iter().flatten() {
                    let revoked = if d["revoked"] == true { " (revoked)" } else { "" };
                    println!(
                        "{}{revoked} wipe: {}",
                        d["device_id"].as_str().unwrap_or(""),
                        d["wipe"].as_str().unwrap_or("")
                    );
                }
            });
        }
        DevicesCommand::Reset { user } => {
            let (id, _) = user_id(&c, &user).await?;
            let v = call(&c, Method::POST, &format!("/v1/admin/users/{id}/devices/reset"), None).await?;
            out(p.json, &v, |v| {
                println!("All of {user}'s devices are revoked. They enrol again with this invite (same username):");
                println!("{}", v["invite"].as_str().unwrap_or(""));
            });
        }
        DevicesCommand::Wipe { user, device } => {
            // Checked before it goes into the URL path.
            let device = strongroom_crypto::ids::DeviceId::parse_hex(&device)
                .with_context(|| format!("{device:?} is not a device id (32 hex digits, from `admin devices list`)"))?;
            let (id, _) = user_id(&c, &user).await?;
            call(&c, Method::POST, &format!("/v1/admin/users/{id}/devices/{device}/wipe"), None).await?;
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
            let v = call(&c, Method::GET, "/v1/admin/groups", None).await?;
            out(p.json, &v, |v| {
                for g in v.as_array().into_iter().flatten() {
                    println!(
                        "{} {} ({} members): {}",
                        g["id"].as_str().unwrap_or(""),
                        g["name"].as_str().unwrap_or(""),
                        g["members"],
                        g["settings"]
                    );
                }
            });
        }
        GroupsCommand::Create { name, set } => {
            let settings = apply_settings(&GroupSettings::default(), &set)?;
            let v =
                call(&c, Method::POST, "/v1/admin/groups", Some(json!({"name": name, "settings": settings}))).await?;
            out(p.json, &v, |v| println!("Created group {name} ({})", v["id"].as_str().unwrap_or("")));
        }
        GroupsCommand::Edit { name, rename, set } => {
            let (id, g) = group_id(&c, &name).await?;
            let current: GroupSettings =
                serde_json::from_value(g.get("settings").cloned().unwrap_or_default()).context("group settings")?;
            let settings = apply_settings(&current, &set)?;
            let new_name = rename.unwrap_or(name.clone());
            call(
                &c,
                Method::PUT,
                &format!("/v1/admin/groups/{id}"),
                Some(json!({"name": new_name, "settings": settings})),
            )
            .await?;
            out(p.json, &json!({"done": "updated", "settings": settings}), |_| {
                println!("Group {new_name} updated; members' clients apply it at their next request.")
            });
        }
        GroupsCommand::Delete { name } => {
            let (id, _) = group_id(&c, &name).await?;
            call(&c, Method::DELETE, &format!("/v1/admin/groups/{id}"), None).await?;
            out(p.json, &json!({"done": "deleted"}), |_| println!("Group {name} deleted."));
        }
    }
    c.close().await;
    Ok(())
}

pub async fn settings(p: ProfileArgs, cmd: SettingsCommand) -> anyhow::Result<()> {
    let c = crate::user::open_admin(&p).await?;
    let current: GroupSettings = serde_json::from_value(call(&c, Method::GET, "/v1/admin/settings", None).await?)?;
    match cmd {
        SettingsCommand::Show => out(p.json, &serde_json::to_value(&current)?, |v| {
            println!("{}", serde_json::to_string_pretty(v).unwrap_or_default())
        }),
        SettingsCommand::Set { set } => {
            let s = apply_settings(&current, &set)?;
            call(&c, Method::PUT, "/v1/admin/settings", Some(serde_json::to_value(&s)?)).await?;
            out(p.json, &serde_json::to_value(&s)?, |_| println!("Network settings updated."));
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
            let v = call(&c, Method::GET, &format!("/v1/admin/audit?{}", filter.query()), None).await?;
            out(p.json, &v, |v| {
                for e in v.as_array().into_iter().flatten() {
                    println!(
                        "#{} {} {} {} {} from {} {}",
                        e["seq"],
                        e["at"],
                        e["actor"].as_str().unwrap_or(""),
                        e["action"].as_str().unwrap_or(""),
                        e["target"].as_str().unwrap_or(""),
                        e["source"].as_str().unwrap_or(""),
                        e["details"].as_str().unwrap_or("")
                    );
                }
            });
        }
        AuditCommand::Export { out: path, filter } => {
            let v = call(&c, Method::GET, &format!("/v1/admin/audit?format=jsonl&{}", filter.query()), None).await?;
            let text = v.as_str().unwrap_or_default();
            std::fs::write(&path, text).with_context(|| format!("cannot write {}", path.display()))?;
            let n = text.lines().count();
            out(p.json, &json!({"entries": n, "out": path.display().to_string()}), |_| {
                println!("Exported {n} audit entries to {}", path.display())
            });
        }
        AuditCommand::Verify { .. } => {
            let v = call(&c, Method::GET, "/v1/admin/audit", None).await?;
            let entries: Vec<AuditEntry> = serde_json::from_value(v)?;
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
