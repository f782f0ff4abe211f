use std::net::SocketAddr;
use std::path::PathBuf;

use anyhow::Context;
use clap::Args;
use strongroom_server::{Config, Server};

/// Flags override the environment, which overrides the config file.
#[derive(Args)]
pub struct ServerArgs {
    /// TOML configuration file.
    #[arg(long, env = "STRONGROOM_CONFIG")]
    config: Option<PathBuf>,
    /// Address to listen on [default: 127.0.0.1:8080].
    #[arg(long, env = "STRONGROOM_LISTEN")]
    listen: Option<SocketAddr>,
    /// Data directory for the SQLite database, blobs and bootstrap secret [default: ./strongroom-data].
    #[arg(long, env = "STRONGROOM_DATA_DIR")]
    data_dir: Option<PathBuf>,
    /// Database URL: sqlite://PATH or postgres://… [default: SQLite in the data directory].
    #[arg(long, env = "STRONGROOM_DATABASE_URL")]
    database_url: Option<String>,
    /// Blob store: s3://bucket/prefix, file:///path or memory:// [default: DATA_DIR/blobs].
    #[arg(long, env = "STRONGROOM_BLOB_STORE")]
    blob_store: Option<String>,
    /// URL clients use to reach this server (put in invites) [default: http://LISTEN].
    #[arg(long, env = "STRONGROOM_PUBLIC_URL")]
    public_url: Option<String>,
    /// NATS for cross-node delivery and cache invalidation when several servers share one database:
    /// nats://[USER:PASSWORD@]HOST:PORT or tls://… (TLS files and a .creds file: see docs/OPERATIONS.md).
    #[arg(long, env = "STRONGROOM_NATS_URL", hide_env_values = true)]
    nats_url: Option<String>,
    /// Token scrapers on other hosts send to read /metrics (loopback needs none).
    #[arg(long, env = "STRONGROOM_METRICS_TOKEN", hide_env_values = true)]
    metrics_token: Option<String>,
    /// Alert when more deliveries than this wait for retention devices [default: 10000].
    #[arg(long, env = "STRONGROOM_RETENTION_BACKLOG_ALERT")]
    retention_backlog_alert: Option<u64>,
    /// Log filter, e.g. info or strongroom_server=debug.
    #[arg(long, env = "STRONGROOM_LOG", default_value = "info")]
    log: String,
    /// Log as JSON lines.
    #[arg(long, env = "STRONGROOM_LOG_JSON")]
    log_json: bool,
}

fn load(args: &ServerArgs) -> anyhow::Result<Config> {
    let mut config = match &args.config {
        Some(path) => {
            let text =
                std::fs::read_to_string(path).with_context(|| format!("cannot read config file {}", path.display()))?;
            toml::from_str(&text)
                .with_context(|| format!("invalid config file {} (see docs/OPERATIONS.md)", path.display()))?
        }
        None => Config::default(),
    };
    if let Some(v) = args.listen {
        config.listen = v;
    }
    if let Some(v) = &args.data_dir {
        config.data_dir = v.clone();
    }
    if let Some(v) = &args.database_url {
        config.database_url = Some(v.clone());
    }
    if let Some(v) = &args.blob_store {
        config.blob_store = Some(v.clone());
    }
    if let Some(v) = &args.public_url {
        config.public_url = Some(v.clone());
    }
    if let Some(v) = &args.nats_url {
        config.nats_url =
            Some(strongroom_server::config::NatsUrl::parse(v).map_err(|e| anyhow::anyhow!("--nats-url: {e}"))?);
    }
    if let Some(v) = &args.metrics_token {
        config.metrics_token = Some(strongroom_server::config::MetricsToken(v.clone()));
    }
    if let Some(v) = args.retention_backlog_alert {
        config.retention_backlog_alert = v;
    }
    Ok(config)
}

pub async fn run(args: ServerArgs) -> anyhow::Result<()> {
    let filter = tracing_subscriber::EnvFilter::try_new(&args.log).context("invalid --log filter")?;
    // Colour only on a terminal: a log redirected to a file stays plain text.
    let ansi = std::io::IsTerminal::is_terminal(&std::io::stderr());
    let builder = tracing_subscriber::fmt().with_env_filter(filter).with_writer(std::io::stderr).with_ansi(ansi);
    if args.log_json {
        builder.json().init();
    } else {
        builder.init();
    }
    let config = load(&args)?;
    let data_dir = config.data_dir.clone();
    let server = Server::bind(config).await.context("cannot start the server")?;
    let url = server.public_url().to_owned();
    let addr = server.local_addr().map(|a| a.to_string()).unwrap_or_default();
    say(&format!("Strongroom relay listening on http://{addr}"));
    say(&format!("Data directory: {}", data_dir.display()));
    if let Some(secret) = server.bootstrap_secret() {
        say(&format!("Bootstrap secret (also in {}): {secret}", data_dir.join("bootstrap-secret").display()));
    }
    say(&format!(
        "Next: strongroom admin network create --name \"Your organisation\" --server {url} --data-dir {}",
        data_dir.display()
    ));
    server.run(shutdown_signal()).await.context("server stopped with an error")?;
    say("Strongroom relay stopped");
    Ok(())
}

async fn shutdown_signal() {
    let ctrl_c = async {
        let _ = tokio::signal::ctrl_c().await;
    };
    #[cfg(unix)]
    let term = async {
        match tokio::signal::unix::signal(tokio::signal::unix::SignalKind::terminate()) {
            Ok(mut s) => {
                s.recv().await;
            }
            Err(_) => std::future::pending::<()>().await,
        }
    };
    #[cfg(not(unix))]
    let term = std::future::pending::<()>();
    tokio::select! {
        () = ctrl_c => {},
        () = term => {},
    }
    tracing::info!("shutting down: finishing requests in flight");
}

/// Prints a line to stdout; a closed stdout (a pipe whose reader left) must
/// not take the server down, so write errors are ignored.
fn say(line: &str) {
    use std::io::Write;
    let mut out = std::io::stdout().lock();
    let _ = writeln!(out, "{line}");
    let _ = out.flush();
}
