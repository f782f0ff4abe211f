//! `strongroom app`: one local process per profile that owns the client
//! (keys and the sealed store never leave it), keeps in touch with the
//! relay, and serves on 127.0.0.1 a web UI built into the binary and a
//! versioned local API (HTTP, and a WebSocket of the event log resumable by
//! cursor). A compromised relay cannot serve code that reads keys: the UI
//! comes from this process.

mod api;
mod guard;
mod touch;

use std::net::SocketAddr;
use std::path::PathBuf;
use std::sync::Arc;

use anyhow::Context;
use axum::extract::{Request, State};
use axum::http::StatusCode;
use axum::middleware::Next;
use axum::response::{IntoResponse, Response};
use clap::{Args, Subcommand};
use strongroom_client::profile_lock::ProfileLock;
use strongroom_client::Client;

#[derive(Args)]
pub struct AppArgs {
    /// Profile directory.
    #[arg(long, env = "STRONGROOM_PROFILE", default_value = "strongroom-profile", global = true)]
    profile: PathBuf,
    /// Port on 127.0.0.1 (0: any free one).
    #[arg(long, default_value_t = 0)]
    port: u16,
    /// Do not open the browser (print the address only).
    #[arg(long)]
    no_open: bool,
    #[command(subcommand)]
    cmd: Option<AppCommand>,
}

#[derive(Subcommand)]
pub enum AppCommand {
    /// Bearer tokens for scripts and bots using the local API.
    #[command(subcommand)]
    Token(TokenCommand),
}

#[derive(Subcommand)]
pub enum TokenCommand {
    /// Make a token (printed once; only its hash is kept).
    Create {
        /// Its name (making one with the same name replaces it).
        #[arg(long)]
        name: String,
        /// What it may do: read, send.
        #[arg(long, value_delimiter = ',', required = true)]
        scope: Vec<String>,
    },
    /// List tokens (names and scopes).
    List,
    /// Revoke a token by name.
    Revoke {
        #[arg(long)]
        name: String,
    },
}

/// The running app.
pub struct App {
    pub(crate) profile: PathBuf,
    pub(crate) port: u16,
    pub(crate) gate: guard::Gate,
    /// The client, once unlocked.
    pub(crate) client: tokio::sync::Mutex<Option<Client>>,
    /// The profile's lock while nobody has unlocked it yet.
    pub(crate) lock: std::sync::Mutex<Option<ProfileLock>>,
    /// Rung when new events are logged.
    pub(crate) changed: tokio::sync::watch::Sender<u64>,
    /// A link of this new device waiting for approval: its code, or why it failed.
    pub(crate) linking: std::sync::Mutex<Option<Result<String, String>>>,
    /// Usernames already looked up.
    pub(crate) names: std::sync::Mutex<std::collections::HashMap<strongroom_crypto::ids::UserId, String>>,
}

/// `OpenOptions` for a file only this user may read.
trait PrivateFile {
    fn mode_private(&mut self) -> &mut Self;
}

impl PrivateFile for std::fs::OpenOptions {
    fn mode_private(&mut self) -> &mut Self {
        std::os::unix::fs::OpenOptionsExt::mode(self, 0o600)
    }
}

pub async fn run(args: AppArgs) -> anyhow::Result<()> {
    if let Some(AppCommand::Token(cmd)) = args.cmd {
        return tokens(&args.profile, cmd);
    }
    // A new profile is enrolled from the app's first page.
    strongroom_client::private_fs::private_dir(&args.profile)
        .with_context(|| format!("cannot use {} as a profile directory", args.profile.display()))?;
    let lock = ProfileLock::acquire(&args.profile).map_err(|e| match e {
        strongroom_client::ClientError::ProfileBusy(_) => anyhow::anyhow!(
            "another Strongroom process (an app or a CLI command) is using the profile {}: close it first",
            args.profile.display()
        ),
        other => anyhow::anyhow!(other),
    })?;
    let listener = tokio::net::TcpListener::bind(SocketAddr::from(([127, 0, 0, 1], args.port)))
        .await
        .with_context(|| format!("cannot listen on 127.0.0.1:{}", args.port))?;
    let port = listener.local_addr()?.port();
    let (gate, secret) = guard::Gate::new(&args.profile, port);
    let (changed, _) = tokio::sync::watch::channel(0);
    let app = Arc::new(App {
        profile: args.profile.clone(),
        port,
        gate,
        client: tokio::sync::Mutex::new(None),
        lock: std::sync::Mutex::new(Some(lock)),
        changed,
        linking: std::sync::Mutex::new(None),
        names: std::sync::Mutex::new(std::collections::HashMap::new()),
    });
    let url = format!("http://127.0.0.1:{port}/?k={secret}");
    // Whoever reads stdout may stop reading: the app goes on regardless.
    {
        use std::io::Write;
        let mut out = std::io::stdout();
        let _ = writeln!(out, "Strongroom app for {} at {url}", args.profile.display());
        let _ = writeln!(out, "(open it once: the link signs this browser in; anyone else gets 401)");
        let _ = out.flush();
    }
    if !args.no_open {
        // The browser opens a private file that redirects to the link, so
        // the secret is on no command line another user could read.
        let opener = args.profile.join("app-open.html");
        let html = format!("<!doctype html><meta http-equiv=\"refresh\" content=\"0; url={url}\">");
        let written = std::fs::OpenOptions::new()
            .write(true)
            .create(true)
            .truncate(true)
            .mode_private()
            .open(&opener)
            .and_then(|mut f| std::io::Write::write_all(&mut f, html.as_bytes()));
        let target = if written.is_ok() { opener.display().to_string() } else { url.clone() };
        let _ = std::process::Command::new("xdg-open")
            .arg(&target)
            .stdout(std::process::Stdio::null())
            .stderr(std::process::Stdio::null())
            .spawn();
    }
    tokio::spawn(touch::keep_in_touch(app.clone()));
    let router = api::router(app.clone())
        .layer(axum::middleware::from_fn_with_state(app.clone(), gatekeeper))
        .with_state(app.clone());
    let stop = async {
        use tokio::signal::unix::{signal, SignalKind};
        match signal(SignalKind::terminate()) {
            Ok(mut term) => tokio::select! {
                _ = term.recv() => {}
                _ = tokio::signal::ctrl_c() => {}
            },
            Err(_) => {
                let _ = tokio::signal::ctrl_c().await;
            }
        }
    };
    axum::serve(listener, router).with_graceful_shutdown(stop).await.context("the app server stopped")?;
    if let Some(client) = app.client.lock().await.take() {
        client.close().await;
    }
    Ok(())
}

fn tokens(profile: &std::path::Path, cmd: TokenCommand) -> anyhow::Result<()> {
    match cmd {
        TokenCommand::Create { name, scope } => {
            let token = guard::create_token(profile, &name, &scope)?;
            println!("{token}");
            eprintln!("Keep it secret: it is shown once. Use it as `Authorization: Bearer TOKEN`.");
        }
        TokenCommand::List => {
            for t in guard::load_tokens(profile) {
                println!("{}\t{}", t.name, t.scopes.join(","));
            }
        }
        TokenCommand::Revoke { name } => {
            let mut all = guard::load_tokens(profile);
            let before = all.len();
            all.retain(|t| t.name != name);
            anyhow::ensure!(all.len() < before, "no token named {name:?}");
            guard::save_tokens(profile, &all)?;
            println!("Revoked {name}.");
        }
    }
    Ok(())
}

/// Every request: the right `Host`, then the hardening headers.
async fn gatekeeper(State(app): State<Arc<App>>, request: Request, next: Next) -> Response {
    if !guard::host_ok(request.headers(), app.port) {
        let mut r =
            guard::refuse(StatusCode::FORBIDDEN, "bad_host", "this server answers only as 127.0.0.1 or localhost");
        guard::harden(r.headers_mut());
        return r;
    }
    let mut response = next.run(request).await;
    guard::harden(response.headers_mut());
    response
}

pub(crate) fn internal(e: impl std::fmt::Display) -> Response {
    guard::refuse(StatusCode::INTERNAL_SERVER_ERROR, "internal", &e.to_string())
}

pub(crate) fn client_error(e: strongroom_client::ClientError) -> Response {
    let status = if e.is_transient() { StatusCode::SERVICE_UNAVAILABLE } else { StatusCode::UNPROCESSABLE_ENTITY };
    guard::refuse(status, if e.is_transient() { "unavailable" } else { "refused" }, &e.to_string()).into_response()
}
