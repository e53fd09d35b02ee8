//! `weir`: the storage node and the command line.
//!
//! `weir serve` with no arguments serves `./weir-data` on `127.0.0.1:7450` (admin HTTP on
//! `127.0.0.1:7451`). Settings come from the defaults, then `--config FILE` (TOML), then
//! `WEIR_*` environment variables, then flags — each overriding the one before.
//!
//! The other commands (`topic`, `produce`, `consume`, `replay`, `group`, `verify`, `repair`,
//! `bench`, `completions`) live in `cli/`. Data goes to stdout; errors are one line on stderr
//! (`weir: ...`) with a non-zero exit code (see [`cli::exit`]).

use std::io::IsTerminal;
use std::net::SocketAddr;
use std::path::PathBuf;

use anyhow::Context;
use clap::{CommandFactory, Parser, Subcommand};
use weir_node::{LogFormat, NodeConfig};

mod cli;

#[derive(Debug, Parser)]
#[command(
    name = "weir",
    version,
    about = "weir: a durable event store with micro-batch consumers",
    long_about = "weir: a durable event store with micro-batch consumers.\n\n\
        Commands talk to a node (`--server HOST:PORT`, default 127.0.0.1:7450, or WEIR_SERVER; \
        token from `--token` or WEIR_TOKEN). Most can work directly on a stopped node's data \
        directory instead (`--data-dir DIR`): that opens the store in this process, running \
        recovery as `weir serve` would. `verify` and `repair` work on a data directory only.",
    after_help = "Exit codes: 0 success; 1 an error (one line on stderr); 64 a usage error \
        (bad flag or value). `weir verify`: 0 clean, 1 repairable, 2 corrupt, 3 could not check."
)]
struct Cli {
    #[command(subcommand)]
    command: Command,
}

#[derive(Debug, Subcommand)]
enum Command {
    /// Run the storage node (on a data directory; TCP for clients, HTTP for /metrics).
    Serve(ServeArgs),
    /// Create, list, describe and delete topics [node or --data-dir].
    #[command(subcommand)]
    Topic(cli::topic::TopicCommand),
    /// Append events read from stdin, one per line (or length-delimited) [node or --data-dir].
    Produce(cli::produce::ProduceArgs),
    /// Consume a topic as a member of a consumer group, acknowledging each batch once it is
    /// written out [node or --data-dir].
    Consume(cli::consume::ConsumeArgs),
    /// Print one partition's events from an offset or a time, without touching any group
    /// [node or --data-dir].
    Replay(cli::replay::ReplayArgs),
    /// List, describe (lag), reset and delete consumer groups [node or --data-dir].
    #[command(subcommand)]
    Group(cli::group::GroupCommand),
    /// Check a stopped node's data directory offline, changing nothing [--data-dir only].
    Verify(cli::verify::VerifyArgs),
    /// Repair a stopped node's data directory: cut what verify found, after saying what is
    /// lost [--data-dir only].
    Repair(cli::verify::RepairArgs),
    /// Generate load and measure throughput and latency [node or --data-dir].
    Bench(cli::bench::BenchArgs),
    /// Print a shell completion script (bash, zsh, fish, elvish, powershell).
    Completions {
        /// The shell.
        #[arg(value_enum)]
        shell: clap_complete::Shell,
    },
}

// Every environment variable is listed without its value (`hide_env_values`): otherwise clap
// prints `[env: WEIR_LISTEN=]`, a dangling `=`, while the variable is unset.
#[derive(Debug, clap::Args)]
struct ServeArgs {
    /// A TOML file of settings (any field of the node config; see docs/operations.md).
    #[arg(long, env = "WEIR_CONFIG", hide_env_values = true)]
    config: Option<PathBuf>,
    /// The data directory [default: ./weir-data].
    #[arg(long, env = "WEIR_DATA_DIR", hide_env_values = true)]
    data_dir: Option<PathBuf>,
    /// The address clients connect to [default: 127.0.0.1:7450].
    #[arg(long, env = "WEIR_LISTEN", hide_env_values = true)]
    listen: Option<SocketAddr>,
    /// The admin HTTP address for /metrics, /healthz, /readyz [default: 127.0.0.1:7451].
    #[arg(long, env = "WEIR_ADMIN_LISTEN", hide_env_values = true)]
    admin_listen: Option<SocketAddr>,
    /// Do not serve the admin HTTP endpoints.
    #[arg(long)]
    no_admin: bool,
    /// A token clients must present (prefer the environment variable to the flag).
    #[arg(long, env = "WEIR_TOKEN", hide_env_values = true)]
    token: Option<String>,
    /// The largest frame accepted, in bytes [default: 16 MiB].
    #[arg(long, env = "WEIR_FRAME_BYTES_MAX", hide_env_values = true)]
    frame_bytes_max: Option<u32>,
    /// Connections served at once [default: 1024].
    #[arg(long, env = "WEIR_CONNECTIONS_MAX", hide_env_values = true)]
    connections_max: Option<u32>,
    /// Requests in flight per connection [default: 128].
    #[arg(long, env = "WEIR_IN_FLIGHT_MAX", hide_env_values = true)]
    in_flight_max: Option<u32>,
    /// Bytes of request and response buffers one connection may hold; at its limit it is not
    /// read until it drains [default: 16777216 (16 MiB), at least --frame-bytes-max].
    #[arg(long, env = "WEIR_CONNECTION_BUFFER_BYTES_MAX", hide_env_values = true)]
    connection_buffer_bytes_max: Option<u64>,
    /// Bytes of request and response buffers all connections together may hold [default:
    /// 134217728 (128 MiB), at least twice --connection-buffer-bytes-max].
    #[arg(long, env = "WEIR_NODE_BUFFER_BYTES_MAX", hide_env_values = true)]
    node_buffer_bytes_max: Option<u64>,
    /// Close connections idle this long, in ms [default: 300000].
    #[arg(long, env = "WEIR_IDLE_TIMEOUT_MS", hide_env_values = true)]
    idle_timeout_ms: Option<u64>,
    /// A frame must arrive whole within this many ms of its first byte [default: 30000].
    #[arg(long, env = "WEIR_FRAME_TIMEOUT_MS", hide_env_values = true)]
    frame_timeout_ms: Option<u64>,
    /// Log format on stderr (the level comes from RUST_LOG, default info).
    #[arg(long, env = "WEIR_LOG_FORMAT", hide_env_values = true, value_enum)]
    log_format: Option<LogFormat>,
}

fn main() {
    let cli = match Cli::try_parse() {
        Ok(cli) => cli,
        Err(error) => cli::exit::clap_error(error),
    };
    let result = match cli.command {
        Command::Serve(args) => serve(args).map(|()| 0),
        Command::Completions { shell } => {
            clap_complete::generate(shell, &mut Cli::command(), "weir", &mut std::io::stdout());
            Ok(0)
        }
        Command::Verify(args) => cli::verify::verify(&args),
        Command::Repair(args) => cli::verify::repair(&args),
        Command::Topic(command) => cli::run(|| cli::topic::run(command)),
        Command::Produce(args) => cli::run(|| cli::produce::run(args)),
        Command::Consume(args) => cli::run(|| cli::consume::run(args)),
        Command::Replay(args) => cli::run(|| cli::replay::run(args)),
        Command::Group(command) => cli::run(|| cli::group::run(command)),
        Command::Bench(args) => cli::run(|| cli::bench::run(args)),
    };
    match result {
        Ok(code) => std::process::exit(code),
        Err(error) => cli::exit::fail(&error),
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
    if let Some(value) = args.connection_buffer_bytes_max {
        config.connection_buffer_bytes_max = value;
    }
    if let Some(value) = args.node_buffer_bytes_max {
        config.node_buffer_bytes_max = value;
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
    // Colours only for a person at a terminal: in a file or a pipe, ANSI codes are noise.
    let builder = tracing_subscriber::fmt()
        .with_env_filter(filter)
        .with_ansi(std::io::stderr().is_terminal())
        .with_writer(std::io::stderr);
    match format {
        LogFormat::Pretty => builder.init(),
        LogFormat::Json => builder.json().init(),
    }
}

fn serve(args: ServeArgs) -> anyhow::Result<()> {
    let config = node_config(&args)?;
    // Before any thread starts: fewer allocator arenas give freed memory back more completely.
    weir_node::limit_arenas();
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
            zero_tails = report.zero_tails(),
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
