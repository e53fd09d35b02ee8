//! `weir`: the storage node and (as it grows) the command line.
//!
//! `weir serve` with no arguments serves `./weir-data` on `127.0.0.1:7450` (admin HTTP on
//! `127.0.0.1:7451`). Settings come from the defaults, then `--config FILE` (TOML), then
//! `WEIR_*` environment variables, then flags — each overriding the one before.

use std::net::SocketAddr;
use std::path::PathBuf;

use anyhow::Context;
use clap::{Parser, Subcommand};
use weir_node::{LogFormat, NodeConfig};

#[derive(Debug, Parser)]
#[command(name = "weir", version, about = "weir: a durable event store with micro-batch consumers", long_about = None)]
struct Cli {
    #[command(subcommand)]
    command: Command,
}

#[derive(Debug, Subcommand)]
enum Command {
    /// Run the storage node (on a data directory; TCP for clients, HTTP for /metrics).
    Serve(ServeArgs),
}

#[derive(Debug, clap::Args)]
struct ServeArgs {
    /// A TOML file of settings (any field of the node config; see docs/operations.md).
    #[arg(long, env = "WEIR_CONFIG")]
    config: Option<PathBuf>,
    /// The data directory [default: ./weir-data].
    #[arg(long, env = "WEIR_DATA_DIR")]
    data_dir: Option<PathBuf>,
    /// The address clients connect to [default: 127.0.0.1:7450].
    #[arg(long, env = "WEIR_LISTEN")]
    listen: Option<SocketAddr>,
    /// The admin HTTP address for /metrics, /healthz, /readyz [default: 127.0.0.1:7451].
    #[arg(long, env = "WEIR_ADMIN_LISTEN")]
    admin_listen: Option<SocketAddr>,
    /// Do not serve the admin HTTP endpoints.
    #[arg(long)]
    no_admin: bool,
    /// A token clients must present (prefer the environment variable to the flag).
    #[arg(long, env = "WEIR_TOKEN", hide_env_values = true)]
    token: Option<String>,
    /// The largest frame accepted, in bytes [default: 16 MiB].
    #[arg(long, env = "WEIR_FRAME_BYTES_MAX")]
    frame_bytes_max: Option<u32>,
    /// Connections served at once [default: 1024].
    #[arg(long, env = "WEIR_CONNECTIONS_MAX")]
    connections_max: Option<u32>,
    /// Requests in flight per connection [default: 128].
    #[arg(long, env = "WEIR_IN_FLIGHT_MAX")]
    in_flight_max: Option<u32>,
    /// Close connections idle this long, in ms [default: 300000].
    #[arg(long, env = "WEIR_IDLE_TIMEOUT_MS")]
    idle_timeout_ms: Option<u64>,
    /// A frame must arrive whole within this many ms of its first byte [default: 30000].
    #[arg(long, env = "WEIR_FRAME_TIMEOUT_MS")]
    frame_timeout_ms: Option<u64>,
    /// Log format on stderr (the level comes from RUST_LOG, default info).
    #[arg(long, env = "WEIR_LOG_FORMAT", value_enum)]
    log_format: Option<LogFormat>,
}

fn main() {
    let cli = Cli::parse();
    let result = match cli.command {
        Command::Serve(args) => serve(args),
    };
    if let Err(error) = result {
        eprintln!("weir: {error:#}");
        std::process::exit(1);
    }
}

fn node_config(args: &ServeArgs) -> anyhow::Result<NodeConfig> {
    let mut config = match &args.config {
        Some(path) => {
            let text = std::fs::read_to_string(path)
                .with_context(|| format!("cannot read the config file {}", path.display()))?;
            NodeConfig::from_toml(&text).with_context(|| format!("in {}", path.display()))?
        }
        None => NodeConfig::default(),
    };
    if let Some(dir) = &args.data_dir {
        config.data_dir = dir.clone();
    }
    if let Some(listen) = args.listen {
        config.listen = listen;
    }
    if let Some(admin) = args.admin_listen {
        config.admin_listen = Some(admin);
    }
    if args.no_admin {
        config.admin_listen = None;
    }
    if let Some(token) = &args.token {
        config.token = Some(token.clone());
    }
    if let Some(value) = args.frame_bytes_max {
        config.frame_bytes_max = value;
    }
    if let Some(value) = args.connections_max {
        config.connections_max = value;
    }
    if let Some(value) = args.in_flight_max {
        config.in_flight_max = value;
    }
    if let Some(value) = args.idle_timeout_ms {
        config.idle_timeout_ms = value;
    }
    if let Some(value) = args.frame_timeout_ms {
        config.frame_timeout_ms = value;
    }
    if let Some(format) = args.log_format {
        config.log_format = format;
    }
    config.validate()?;
    Ok(config)
}

fn init_logging(format: LogFormat) {
    let filter = tracing_subscriber::EnvFilter::try_from_default_env()
        .unwrap_or_else(|_| tracing_subscriber::EnvFilter::new("info"));
    let builder = tracing_subscriber::fmt()
        .with_env_filter(filter)
        .with_writer(std::io::stderr);
    match format {
        LogFormat::Pretty => builder.init(),
        LogFormat::Json => builder.json().init(),
    }
}

fn serve(args: ServeArgs) -> anyhow::Result<()> {
    let config = node_config(&args)?;
    init_logging(config.log_format);
    let runtime = tokio::runtime::Builder::new_multi_thread()
        .enable_all()
        .build()
        .context("cannot start the runtime")?;
    runtime.block_on(async move {
        let listener = tokio::net::TcpListener::bind(config.listen)
            .await
            .with_context(|| format!("cannot listen on {}", config.listen))?;
        let admin = match config.admin_listen {
            Some(address) => Some(
                tokio::net::TcpListener::bind(address)
                    .await
                    .with_context(|| format!("cannot listen on {address} (admin)"))?,
            ),
            None => None,
        };
        let data_dir = config.data_dir.clone();
        let event_bytes_max = config.event_bytes_max;
        tracing::info!(data_dir = %data_dir.display(), "opening the store (recovering if needed)");
        let store = tokio::task::spawn_blocking(move || {
            weir_store::Store::builder(&data_dir)
                .event_bytes_max(event_bytes_max)
                .open()
        })
        .await?
        .with_context(|| format!("cannot open the store in {}", config.data_dir.display()))?;
        let report = store.recovery_report();
        tracing::info!(
            partitions = report.partitions.len(),
            torn_tails = report.torn_tails(),
            offsets_clamped = report.offsets_clamped.len(),
            "recovery finished"
        );
        weir_node::run(listener, admin, store, config, shutdown_signal()).await
    })
}

/// Completes on SIGINT or SIGTERM.
async fn shutdown_signal() {
    use tokio::signal::unix::{signal, SignalKind};
    let mut terminate = match signal(SignalKind::terminate()) {
        Ok(terminate) => terminate,
        Err(error) => {
            tracing::error!(%error, "cannot listen for SIGTERM");
            let _ = tokio::signal::ctrl_c().await;
            return;
        }
    };
    tokio::select! {
        _ = tokio::signal::ctrl_c() => tracing::info!("SIGINT: shutting down"),
        _ = terminate.recv() => tracing::info!("SIGTERM: shutting down"),
    }
}
