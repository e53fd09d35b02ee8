//! Where a command runs: a node (`--server`, `--token`) or a data directory (`--data-dir`).
//!
//! A data directory is opened as a [`weir_store::Store`] in this process (recovery runs as at
//! `weir serve`) and served by an in-process node on a loopback port of the system's choosing,
//! guarded by a random token, for as long as the command runs; the command then talks to it
//! through weir-client like to any node. [`Target::finish`] shuts that node down, which
//! commits consumer progress and closes the store cleanly.

use std::net::SocketAddr;
use std::path::{Path, PathBuf};
use std::time::Duration;

use anyhow::Context;
use tokio::sync::oneshot;
use weir_client::{Client, ClientConfig, ErrorCode};

use crate::cli::exit;

/// How long connecting to a node may take.
const CONNECT_TIMEOUT: Duration = Duration::from_secs(10);

/// The node to talk to.
#[derive(Debug, Clone, clap::Args)]
pub(crate) struct NodeArgs {
    /// The node's address.
    #[arg(
        long,
        env = "WEIR_SERVER",
        // Without it, clap prints "[env: WEIR_SERVER=]" while the variable is unset.
        hide_env_values = true,
        default_value = "127.0.0.1:7450",
        value_name = "HOST:PORT"
    )]
    pub server: String,
    /// The node's token, if it requires one (prefer the environment variable to the flag).
    #[arg(long, env = "WEIR_TOKEN", hide_env_values = true)]
    pub token: Option<String>,
}

/// A node, or a data directory to open in this process.
#[derive(Debug, Clone, clap::Args)]
pub(crate) struct TargetArgs {
    #[command(flatten)]
    pub node: NodeArgs,
    /// Work directly on this data directory instead of a node (the node that owns it must be
    /// stopped; recovery runs as at `weir serve`).
    #[arg(long, value_name = "DIR")]
    pub data_dir: Option<PathBuf>,
}

/// A connected client, and the in-process node behind it for a data directory.
#[derive(Debug)]
pub(crate) struct Target {
    /// The client.
    pub client: Client,
    local: Option<LocalNode>,
}

#[derive(Debug)]
struct LocalNode {
    stop: oneshot::Sender<()>,
    task: tokio::task::JoinHandle<anyhow::Result<()>>,
}

impl Target {
    /// Connects to the node, or opens the data directory.
    ///
    /// # Errors
    /// The node cannot be reached or refuses the token; the data directory is missing, in use
    /// or does not open.
    pub(crate) async fn connect(args: &TargetArgs) -> anyhow::Result<Target> {
        match &args.data_dir {
            Some(dir) => Target::open_local(dir).await,
            None => {
                let client = connect(&args.node).await?;
                Ok(Target {
                    client,
                    local: None,
                })
            }
        }
    }

    async fn open_local(dir: &Path) -> anyhow::Result<Target> {
        let store = open_store(dir).await?;
        let listener = tokio::net::TcpListener::bind(SocketAddr::from(([127, 0, 0, 1], 0)))
            .await
            .context("cannot listen on a loopback port for the embedded store")?;
        let address = listener.local_addr()?;
        let token = format!("{:032x}", fastrand::u128(..));
        let mut config = weir_node::NodeConfig::default();
        config.data_dir = dir.to_path_buf();
        config.listen = address;
        config.admin_listen = None;
        config.token = Some(token.clone());
        let (stop, stopped) = oneshot::channel::<()>();
        let task = tokio::spawn(weir_node::run(listener, None, store, config, async move {
            let _ = stopped.await;
        }));
        let mut client_config = ClientConfig::default().token(token);
        client_config.client_name = cli_name();
        let client = Client::connect(address, client_config)
            .await
            .map_err(|error| anyhow::anyhow!("cannot reach the embedded store: {error}"))?;
        Ok(Target {
            client,
            local: Some(LocalNode { stop, task }),
        })
    }

    /// Lets go of the node; for a data directory, shuts the in-process node down and closes
    /// the store cleanly.
    ///
    /// # Errors
    /// The store failed to close cleanly.
    pub(crate) async fn finish(self) -> anyhow::Result<()> {
        drop(self.client);
        if let Some(local) = self.local {
            let _ = local.stop.send(());
            local
                .task
                .await
                .context("the embedded store's task failed")?
                .context("closing the data directory")?;
        }
        Ok(())
    }
}

/// Runs `body` against the target, then always finishes the target (closing a data directory
/// cleanly even when `body` failed).
pub(crate) async fn with_target<F, Fut, T>(args: &TargetArgs, body: F) -> anyhow::Result<T>
where
    F: FnOnce(Client) -> Fut,
    Fut: std::future::Future<Output = anyhow::Result<T>>,
{
    let target = Target::connect(args).await?;
    let result = body(target.client.clone()).await;
    let finished = target.finish().await;
    let value = result?;
    finished?;
    Ok(value)
}

fn cli_name() -> String {
    format!("weir-cli {}", env!("CARGO_PKG_VERSION"))
}

/// Connects to a node, with errors that say what to do.
///
/// # Errors
/// Unreachable, refused token, timeout.
pub(crate) async fn connect(args: &NodeArgs) -> anyhow::Result<Client> {
    let mut config = ClientConfig::default();
    config.token = args.token.clone();
    config.client_name = cli_name();
    let server = &args.server;
    let connecting = Client::connect(server.as_str(), config);
    match tokio::time::timeout(CONNECT_TIMEOUT, connecting).await {
        Err(_) => Err(anyhow::anyhow!(
            "cannot connect to {server}: no answer within {} s (is `weir serve` running there? set --server or WEIR_SERVER)",
            CONNECT_TIMEOUT.as_secs()
        )),
        Ok(Ok(client)) => Ok(client),
        Ok(Err(weir_client::Error::Io(error))) => Err(anyhow::anyhow!(
            "cannot connect to {server}: {error} (is `weir serve` running there? set --server or WEIR_SERVER)"
        )),
        Ok(Err(error)) if error.code() == Some(ErrorCode::Unauthorized) => Err(anyhow::anyhow!(
            "the node at {server} refused the token (set the right one with --token or WEIR_TOKEN): {error}"
        )),
        Ok(Err(error)) => Err(anyhow::anyhow!("cannot connect to {server}: {error}")),
    }
}

/// Opens the store in an existing data directory.
///
/// # Errors
/// The directory is missing, in use by a node, or does not open (with what to do).
pub(crate) async fn open_store(dir: &Path) -> anyhow::Result<weir_store::Store> {
    if !dir.is_dir() {
        return Err(exit::usage(format!(
            "no data directory at {} (start a node with `weir serve --data-dir {}` to create one)",
            dir.display(),
            dir.display()
        )));
    }
    let root = dir.to_path_buf();
    let opened = tokio::task::spawn_blocking(move || weir_store::Store::open(&root))
        .await
        .context("the store's open task failed")?;
    opened.map_err(|error| match error {
        weir_store::Error::Locked { .. } => anyhow::anyhow!(
            "the data directory {} is in use (a running `weir serve`?): stop it, or use --server",
            dir.display()
        ),
        error if error.to_string().contains("corrupt") => anyhow::anyhow!(
            "cannot open the data directory {}: {error} (run `weir verify --data-dir {}`)",
            dir.display(),
            dir.display()
        ),
        error => anyhow::anyhow!("cannot open the data directory {}: {error}", dir.display()),
    })
}
