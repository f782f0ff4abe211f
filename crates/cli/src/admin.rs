use std::path::PathBuf;

use anyhow::{bail, Context};
use clap::{Args, Subcommand};
use rand_core::OsRng;
use strongroom_crypto::certs::{NetworkFingerprint, NetworkPolicy};
use strongroom_crypto::ids::NetworkId;
use strongroom_crypto::keys::SigningKey;
use strongroom_wire::{CreateNetwork, ErrorBody, InviteCreated, B64};

use crate::keyfile;

#[derive(Subcommand)]
pub enum AdminCommand {
    /// Networks (tenants).
    #[command(subcommand)]
    Network(NetworkCommand),
    /// Turn data retention on or off (signs the network policy with the network key).
    #[command(subcommand)]
    Retention(RetentionAdminCommand),
    /// Users: list, invite (one or many), suspend, delete, reset password, roles, groups.
    Users {
        #[command(flatten)]
        profile: crate::user::ProfileArgs,
        #[command(subcommand)]
        cmd: crate::manage::UsersCommand,
    },
    /// Devices: list, reset all of a user's, remote-wipe one.
    Devices {
        #[command(flatten)]
        profile: crate::user::ProfileArgs,
        #[command(subcommand)]
        cmd: crate::manage::DevicesCommand,
    },
    /// Security groups and their policy.
    Groups {
        #[command(flatten)]
        profile: crate::user::ProfileArgs,
        #[command(subcommand)]
        cmd: crate::manage::GroupsCommand,
    },
    /// The network's default settings (for users in no group).
    Settings {
        #[command(flatten)]
        profile: crate::user::ProfileArgs,
        #[command(subcommand)]
        cmd: crate::manage::SettingsCommand,
    },
    /// The audit log: list, export, verify.
    Audit {
        #[command(flatten)]
        profile: crate::user::ProfileArgs,
        #[command(subcommand)]
        cmd: crate::manage::AuditCommand,
    },
}

#[derive(Subcommand)]
pub enum RetentionAdminCommand {
    /// Sign a new network policy naming a retention device (made by
    /// `strongroom retention init`): from then on every message in the
    /// network is also encrypted to it, and every client shows it.
    Enable(RetentionPolicyArgs),
    /// Sign a new network policy without that retention device (or without
    /// any, with --all). Refused while messages still wait for it, unless --force.
    Disable(RetentionPolicyArgs),
    /// Replace a retention device: the new one becomes active (every message
    /// is sealed to it from now on) and the old one drains (it archives what
    /// waits for it, records the handover, then may no longer log in).
    Rotate(RetentionRotateArgs),
    /// Sign a new network policy with a retention-period floor: no archive
    /// deletes a record younger than this, whatever the relay's settings or
    /// an operator's period say.
    Floor(RetentionFloorArgs),
}

#[derive(Args)]
pub struct RetentionRotateArgs {
    /// The network key file.
    #[arg(long)]
    key_file: PathBuf,
    /// The retention device being replaced (its retention-device.json).
    #[arg(long)]
    from: PathBuf,
    /// The new retention device (made by `strongroom retention init`).
    #[arg(long)]
    to: PathBuf,
    #[command(flatten)]
    profile: crate::user::ProfileArgs,
}

#[derive(Args)]
pub struct RetentionFloorArgs {
    /// The network key file.
    #[arg(long)]
    key_file: PathBuf,
    /// The floor in days (0 removes it; at most 36,500).
    #[arg(long)]
    days: u32,
    #[command(flatten)]
    profile: crate::user::ProfileArgs,
}

#[derive(Args)]
pub struct RetentionPolicyArgs {
    /// The network key file.
    #[arg(long)]
    key_file: PathBuf,
    /// The retention device file (retention-device.json); for disable, optional with --all.
    #[arg(long, required_unless_present = "all")]
    device: Option<PathBuf>,
    /// Disable: remove every retention device.
    #[arg(long)]
    all: bool,
    /// Disable even though messages still wait for the device on the relay
    /// (they are then never archived).
    #[arg(long)]
    force: bool,
    #[command(flatten)]
    profile: crate::user::ProfileArgs,
}

#[derive(Subcommand)]
pub enum NetworkCommand {
    /// Create a network: its key (kept by you, in a passphrase-protected file),
    /// its first policy, and the first administrator's invite.
    Create(CreateArgs),
    /// Unlock a network key file and print its network id and key fingerprint.
    Fingerprint {
        /// The network key file.
        #[arg(long)]
        key_file: PathBuf,
    },
}

#[derive(Args)]
pub struct CreateArgs {
    /// The organisation's name.
    #[arg(long)]
    name: String,
    /// The relay's URL.
    #[arg(long, env = "STRONGROOM_SERVER", default_value = "http://127.0.0.1:8080")]
    server: String,
    /// The server's data directory (the bootstrap secret is read from it).
    #[arg(long, env = "STRONGROOM_DATA_DIR")]
    data_dir: Option<PathBuf>,
    /// The bootstrap secret the server printed at first start.
    #[arg(long, env = "STRONGROOM_BOOTSTRAP_SECRET", hide_env_values = true)]
    bootstrap_secret: Option<String>,
    /// Where to write the network key file [default: ./network-<id>.key].
    #[arg(long)]
    key_file: Option<PathBuf>,
    /// Print the result as JSON.
    #[arg(long)]
    json: bool,
}

pub async fn run(cmd: AdminCommand) -> anyhow::Result<()> {
    match cmd {
        AdminCommand::Network(NetworkCommand::Create(args)) => create_network(args).await,
        AdminCommand::Retention(RetentionAdminCommand::Enable(args)) => retention_policy(args, true).await,
        AdminCommand::Users { profile, cmd } => crate::manage::users(profile, cmd).await,
        AdminCommand::Devices { profile, cmd } => crate::manage::devices(profile, cmd).await,
        AdminCommand::Groups { profile, cmd } => crate::manage::groups(profile, cmd).await,
        AdminCommand::Settings { profile, cmd } => crate::manage::settings(profile, cmd).await,
        AdminCommand::Audit { profile, cmd } => crate::manage::audit(profile, cmd).await,
        AdminCommand::Retention(RetentionAdminCommand::Disable(args)) => retention_policy(args, false).await,
        AdminCommand::Retention(RetentionAdminCommand::Floor(args)) => retention_floor(args).await,
        AdminCommand::Retention(RetentionAdminCommand::Rotate(args)) => retention_rotate(args).await,
        AdminCommand::Network(NetworkCommand::Fingerprint { key_file }) => {
            let (network, key) = keyfile::load(&key_file, &passphrase()?)?;
            println!("Network: {network}\nNetwork key fingerprint: {}", NetworkFingerprint::of(&key.verifying_key()));
            Ok(())
        }
    }
}

/// The network key passphrase, from STRONGROOM_NETWORK_KEY_PASSPHRASE or asked on the terminal.
pub fn passphrase() -> anyhow::Result<String> {
    crate::user::secret_from(
        "STRONGROOM_NETWORK_KEY_PASSPHRASE",
        "Passphrase for the network key file (12+ characters)",
    )
}

async fn create_network(args: CreateArgs) -> anyhow::Result<()> {
    let secret = match (&args.bootstrap_secret, &args.data_dir) {
        (Some(s), _) => s.trim().to_owned(),
        (None, Some(dir)) => std::fs::read_to_string(dir.join("bootstrap-secret"))
            .with_context(|| {
                format!("cannot read the bootstrap secret in {} (pass --bootstrap-secret)", dir.display())
            })?
            .trim()
            .to_owned(),
        (None, None) => {
            bail!("creating a network needs the server's bootstrap secret: pass --data-dir or --bootstrap-secret")
        }
    };
    let network = NetworkId::random(&mut OsRng);
    let key = SigningKey::generate(&mut OsRng);
    let now =
        std::time::SystemTime::now().duration_since(std::time::UNIX_EPOCH).map(|d| d.as_millis() as u64).unwrap_or(0);
    let policy = NetworkPolicy::sign(&key, network, 1, now, vec![]).map_err(|e| anyhow::anyhow!("{e}"))?;
    let key_file = args.key_file.clone().unwrap_or_else(|| PathBuf::from(format!("network-{network}.key")));
    let new =
        crate::user::new_secret_from("STRONGROOM_NETWORK_KEY_PASSPHRASE", "a passphrase for the network key file", 12)?;
    keyfile::save(&key_file, &network, &key, &new)?;

    let body = CreateNetwork {
        name: args.name.clone(),
        network_id: network,
        network_public: B64(key.verifying_key().as_bytes().to_vec()),
        policy: B64(policy.encode()),
    };
    let url = format!("{}/v1/admin/networks", args.server.trim_end_matches('/'));
    let sent = reqwest::Client::new()
        .post(&url)
        .header("Authorization", format!("Bootstrap {secret}"))
        .json(&body)
        .send()
        .await;
    let response = match sent {
        Ok(r) => r,
        Err(e) => {
            let _ = std::fs::remove_file(&key_file);
            bail!("cannot reach the server at {}: {e} (is `strongroom server` running?)", args.server);
        }
    };
    if !response.status().is_success() {
        let _ = std::fs::remove_file(&key_file);
        let status = response.status();
        let err: Option<ErrorBody> = response.json().await.ok();
        bail!("the server refused ({status}): {}", err.map(|e| e.message).unwrap_or_default());
    }
    let invite: InviteCreated = response.json().await.context("the server's answer is not understood")?;
    let fingerprint = NetworkFingerprint::of(&key.verifying_key());
    if args.json {
        println!(
            "{}",
            serde_json::json!({
                "network_id": network.to_string(),
                "network_fingerprint": fingerprint.to_string(),
                "key_file": key_file.display().to_string(),
                "admin_invite": invite.invite,
                "invite_expires_at": invite.expires_at,
            })
        );
    } else {
        println!("Network \"{}\" created: {network}", args.name);
        println!("Network key fingerprint: {fingerprint}");
        println!("Network key file (keep it safe, with its passphrase): {}", key_file.display());
        println!("First administrator's invite (one use, 7 days):\n{}", invite.invite);
        println!(
            "The bootstrap secret is used up; the server wrote the next one to bootstrap-secret in its data directory."
        );
    }
    Ok(())
}

/// An administrator's client in the network the key file is for, and the
/// network's current policy.
async fn admin_in(
    network: strongroom_crypto::ids::NetworkId,
    profile: &crate::user::ProfileArgs,
) -> anyhow::Result<(strongroom_client::Client, strongroom_crypto::certs::VerifiedPolicy)> {
    let mut client = crate::user::open_admin(profile).await?;
    if client.network_id() != network {
        bail!("the network key file is for network {network}, but the profile is in {}", client.network_id());
    }
    let current = client.policy().await.context("cannot fetch the current policy")?;
    Ok((client, current))
}

/// Signs `entries` as the version after `current` and publishes it.
async fn publish_next(
    client: &mut strongroom_client::Client,
    key: &strongroom_crypto::keys::SigningKey,
    current: &strongroom_crypto::certs::VerifiedPolicy,
    entries: strongroom_crypto::certs::PolicyEntries,
) -> anyhow::Result<(u64, strongroom_crypto::certs::VerifiedPolicy)> {
    let now =
        std::time::SystemTime::now().duration_since(std::time::UNIX_EPOCH).map(|d| d.as_millis() as u64).unwrap_or(0);
    let version = current.policy().version + 1;
    let policy = NetworkPolicy::sign_entries(key, current.policy().network_id, version, now, entries)
        .map_err(|e| anyhow::anyhow!("{e}"))?;
    let verified = client.publish_policy(&policy).await.context("the server did not take the new policy")?;
    Ok((version, verified))
}

/// Signs and publishes the next policy with `to` active and `from` draining.
async fn retention_rotate(args: RetentionRotateArgs) -> anyhow::Result<()> {
    use strongroom_crypto::certs::RetentionState;
    let load = |p: &PathBuf| {
        strongroom_retention::keys::DeviceFile::load(p).with_context(|| format!("cannot read {}", p.display()))
    };
    let (from, to) = (load(&args.from)?, load(&args.to)?);
    let (network, key) = keyfile::load(&args.key_file, &passphrase()?)?;
    if from.network()? != network || to.network()? != network {
        bail!("both retention devices must be made for network {network}");
    }
    let (old, new) = (from.retention_device()?, to.retention_device()?);
    if old.device_id == new.device_id {
        bail!("--from and --to are the same retention device");
    }
    let (mut client, current) = admin_in(network, &args.profile).await?;
    let mut list = current.policy().retention.clone();
    let Some(pos) = list.iter().position(|x| x.device_id == old.device_id) else {
        bail!("the retention device to replace ({}) is not in the current policy", old.device_id);
    };
    if let Some(entry) = list.get_mut(pos) {
        entry.state = RetentionState::Draining;
    }
    list.retain(|x| x.device_id != new.device_id);
    list.push(new.clone());
    let entries = strongroom_crypto::certs::PolicyEntries { retention: list, ..current.policy().entries() };
    let (version, _) = publish_next(&mut client, &key, &current, entries).await?;
    if args.profile.json {
        println!(
            "{}",
            serde_json::json!({"policy_version": version, "active": new.device_id, "draining": old.device_id})
        );
    } else {
        println!(
            "Policy version {version} published: {} is active; {} drains what waits for it, then stops",
            new.name, old.name
        );
    }
    client.close().await;
    Ok(())
}

/// Signs and publishes the next policy with a new retention-period floor;
/// every other entry is kept.
async fn retention_floor(args: RetentionFloorArgs) -> anyhow::Result<()> {
    let (network, key) = keyfile::load(&args.key_file, &passphrase()?)?;
    let (mut client, current) = admin_in(network, &args.profile).await?;
    let entries = strongroom_crypto::certs::PolicyEntries {
        retention_floor_days: (args.days > 0).then_some(args.days),
        ..current.policy().entries()
    };
    // The policy's own limit (100 years) refuses a longer floor, with why.
    let (version, _) = publish_next(&mut client, &key, &current, entries).await?;
    if args.profile.json {
        println!("{}", serde_json::json!({"policy_version": version, "retention_floor_days": args.days}));
    } else if args.days > 0 {
        println!("Policy version {version} published: no archive deletes a record younger than {} days", args.days);
    } else {
        println!("Policy version {version} published: no retention-period floor");
    }
    client.close().await;
    Ok(())
}

/// Signs and publishes the next policy with the retention device added or removed.
async fn retention_policy(args: RetentionPolicyArgs, enable: bool) -> anyhow::Result<()> {
    let device = args
        .device
        .as_deref()
        .map(strongroom_retention::keys::DeviceFile::load)
        .transpose()
        .context("cannot read the retention device file")?;
    let (network, key) = keyfile::load(&args.key_file, &passphrase()?)?;
    let (mut client, current) = admin_in(network, &args.profile).await?;
    let mut list = current.policy().retention.clone();
    match (&device, enable) {
        (Some(d), true) => {
            if d.network()? != network {
                bail!("that retention device was made for another network ({})", d.network_id);
            }
            let entry = d.retention_device()?;
            list.retain(|x| x.device_id != entry.device_id);
            list.push(entry);
        }
        (Some(d), false) => {
            let id = d.retention_device()?.device_id;
            if !list.iter().any(|x| x.device_id == id) {
                bail!("that retention device is not in the current policy; nothing to disable");
            }
            list.retain(|x| x.device_id != id);
        }
        (None, _) => list.clear(),
    }
    if !enable && !args.force {
        // What is still queued for a removed device would never be archived.
        let kept: Vec<_> = list.iter().map(|x| x.device_id).collect();
        let backlog =
            client.admin().retention_backlog().await.context("cannot ask the relay for the retention backlog")?;
        if let Some(b) = backlog.iter().find(|b| b.queued > 0 && !kept.contains(&b.device_id)) {
            bail!(
                "{} message(s) still wait for retention device {} ({}) on the relay: disabling it now means they are never archived. \
                 Let `strongroom retention run` archive them first, replace it with `admin retention rotate` (it drains), or pass --force",
                b.queued,
                b.name,
                b.device_id
            );
        }
    }
    // Only the retention entries change; every other entry is kept.
    let entries = strongroom_crypto::certs::PolicyEntries { retention: list, ..current.policy().entries() };
    let (version, verified) = publish_next(&mut client, &key, &current, entries).await?;
    let names: Vec<String> = verified.policy().retention.iter().map(|d| d.name.clone()).collect();
    if args.profile.json {
        println!(
            "{}",
            serde_json::json!({"policy_version": version, "retention": verified.retention_enabled(), "retention_devices": names})
        );
    } else if verified.retention_enabled() {
        println!("Policy version {version} published: data retention is ON ({})", names.join(", "));
    } else {
        println!("Policy version {version} published: data retention is OFF");
    }
    client.close().await;
    Ok(())
}
