//! The `strongroom` command. Thin: parse arguments, build the pieces, run
//! them. Errors print as one line with a hint.

mod admin;
mod app;
mod backup;
mod bench;
mod keyfile;
mod manage;
mod people;
mod reading;
mod retention;
mod server;
mod user;

use clap::{Parser, Subcommand};

/// Strongroom: end-to-end encrypted messaging with records retention.
#[derive(Parser)]
#[command(name = "strongroom", version, about, propagate_version = true, after_help = ENVIRONMENT)]
struct Cli {
    #[command(subcommand)]
    command: Command,
}

/// Every environment variable that answers a prompt or sets an option
/// (README lists the same).
const ENVIRONMENT: &str = "\
Environment (each answers a prompt or sets an option, for scripts):
  STRONGROOM_PROFILE                 profile directory (--profile)
  STRONGROOM_PASSPHRASE              profile passphrase (enrol and link: the new one)
  STRONGROOM_PASSWORD                account password (enrol, login, link; password: the new one)
  STRONGROOM_NETWORK_KEY_PASSPHRASE  network key file passphrase (admin network, admin retention)
  STRONGROOM_RETENTION_PASSPHRASE    retention keys passphrase (retention …)
  STRONGROOM_READER_PASSPHRASE       a reader file's passphrase (retention custody grant-reader, --reader)
  STRONGROOM_LINK_CODE               the code a new device shows (link approve)
  STRONGROOM_SERVER                  relay URL (--server)
  STRONGROOM_LOG                     log filter, e.g. info or strongroom=debug
Without them, secrets are asked on the terminal without echo; new ones twice.";

#[derive(Subcommand)]
enum Command {
    /// Run the relay server (SQLite and local files by default).
    Server(server::ServerArgs),
    /// The app: this profile's own local process, serving a web UI and a
    /// local API on 127.0.0.1 (keys never leave it).
    App(app::AppArgs),
    /// Back up a running relay (SQLite): a consistent snapshot, its files and bootstrap secret, into a new data directory.
    Backup(backup::BackupArgs),
    /// Load generator: simulated clients with real keys against a running server.
    Bench(bench::BenchArgs),
    /// Administer networks.
    #[command(subcommand)]
    Admin(admin::AdminCommand),
    /// The organisation's retention device: keys, archiving, verify, export, search, holds.
    Retention {
        #[command(flatten)]
        at: retention::Where,
        #[command(subcommand)]
        cmd: retention::RetentionCommand,
    },
    /// Join a network with an invite: creates your profile and first device.
    Enrol {
        #[command(flatten)]
        profile: user::ProfileArgs,
        #[command(flatten)]
        args: user::EnrolArgs,
    },
    /// Send a text message.
    Send {
        #[command(flatten)]
        profile: user::ProfileArgs,
        #[command(flatten)]
        args: user::SendArgs,
    },
    /// Fetch new messages and show your messages.
    Read {
        #[command(flatten)]
        profile: user::ProfileArgs,
        #[command(flatten)]
        args: reading::ReadArgs,
    },
    /// Create an invite for a new person (administrators).
    Invite {
        #[command(flatten)]
        profile: user::ProfileArgs,
        #[command(flatten)]
        args: user::InviteArgs,
    },
    /// Show or change a conversation's members (rooms: moderators only).
    Members {
        #[command(flatten)]
        profile: user::ProfileArgs,
        #[command(flatten)]
        args: user::MembersArgs,
    },
    /// Link a new device to your account by approval from your primary device
    /// (the one that enrolled; only it holds your identity key).
    Link {
        #[command(flatten)]
        profile: user::ProfileArgs,
        #[command(subcommand)]
        cmd: user::LinkCommand,
    },
    /// List your devices from your signed device list (and, on your primary
    /// device, revoke one).
    Devices {
        #[command(flatten)]
        profile: user::ProfileArgs,
        #[command(flatten)]
        args: user::DevicesArgs,
    },
    /// Log this device in again (expired session, changed password).
    Login {
        #[command(flatten)]
        profile: user::ProfileArgs,
    },
    /// Choose a new password with a reset code from your administrator.
    Password {
        #[command(flatten)]
        profile: user::ProfileArgs,
        #[command(flatten)]
        args: user::PasswordArgs,
    },
    /// Set a conversation's default disappearing-message timers.
    Timers {
        #[command(flatten)]
        profile: user::ProfileArgs,
        #[command(flatten)]
        args: user::TimersArgs,
    },
    /// Change the text of a message you sent.
    Edit {
        #[command(flatten)]
        profile: user::ProfileArgs,
        #[command(flatten)]
        args: user::EditArgs,
    },
    /// Delete a message you sent, for everyone.
    Recall {
        #[command(flatten)]
        profile: user::ProfileArgs,
        #[command(flatten)]
        args: user::TargetArgs,
    },
    /// Forward a message (text, file or location) to another conversation.
    Forward {
        #[command(flatten)]
        profile: user::ProfileArgs,
        #[command(flatten)]
        args: user::ForwardArgs,
    },
    /// React to a message.
    React {
        #[command(flatten)]
        profile: user::ProfileArgs,
        #[command(flatten)]
        args: user::ReactArgs,
    },
    /// Stream incoming messages as they arrive.
    Watch {
        #[command(flatten)]
        profile: user::ProfileArgs,
        #[command(flatten)]
        args: reading::WatchArgs,
    },
    /// Show the safety number with someone (and accept a changed identity).
    Verify {
        #[command(flatten)]
        profile: user::ProfileArgs,
        #[command(flatten)]
        args: user::VerifyArgs,
    },
    /// Send or get files.
    File {
        #[command(flatten)]
        profile: user::ProfileArgs,
        #[command(subcommand)]
        cmd: user::FileCommand,
    },
    /// List or create conversations.
    Conversations {
        #[command(flatten)]
        profile: user::ProfileArgs,
        #[command(subcommand)]
        cmd: user::ConversationsCommand,
    },
}

fn main() -> std::process::ExitCode {
    let cli = Cli::parse();
    let runtime = match tokio::runtime::Builder::new_multi_thread().enable_all().build() {
        Ok(rt) => rt,
        Err(e) => {
            eprintln!("error: cannot start the async runtime: {e}");
            return std::process::ExitCode::FAILURE;
        }
    };
    let result = runtime.block_on(async {
        match cli.command {
            Command::Server(args) => server::run(args).await,
            Command::App(args) => app::run(args).await,
            Command::Backup(args) => backup::run(args).await,
            Command::Bench(args) => bench::run(args).await,
            Command::Admin(cmd) => admin::run(cmd).await,
            Command::Retention { at, cmd } => retention::run(at, cmd).await,
            Command::Enrol { profile, args } => user::enrol(profile, args).await,
            Command::Send { profile, args } => user::send(profile, args).await,
            Command::Read { profile, args } => reading::read(profile, args).await,
            Command::Invite { profile, args } => user::invite(profile, args).await,
            Command::File { profile, cmd } => user::file(profile, cmd).await,
            Command::Verify { profile, args } => user::verify(profile, args).await,
            Command::Watch { profile, args } => reading::watch(profile, args).await,
            Command::Edit { profile, args } => user::edit(profile, args).await,
            Command::Members { profile, args } => user::members(profile, args).await,
            Command::Devices { profile, args } => user::devices(profile, args).await,
            Command::Link { profile, cmd } => user::link(profile, cmd).await,
            Command::Timers { profile, args } => user::timers(profile, args).await,
            Command::Login { profile } => user::login(profile).await,
            Command::Password { profile, args } => user::password(profile, args).await,
            Command::Recall { profile, args } => user::recall(profile, args).await,
            Command::React { profile, args } => user::react(profile, args).await,
            Command::Forward { profile, args } => user::forward(profile, args).await,
            Command::Conversations { profile, cmd } => user::conversations(profile, cmd).await,
        }
    });
    match result {
        Ok(()) => std::process::ExitCode::SUCCESS,
        Err(e) => {
            // One line: the error and its causes, outermost first.
            let chain: Vec<String> = e.chain().map(ToString::to_string).collect();
            eprintln!("error: {}", chain.join(": "));
            std::process::ExitCode::FAILURE
        }
    }
}
