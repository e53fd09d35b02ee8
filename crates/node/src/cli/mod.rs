//! The `weir` command line beyond `serve`: one module per command, plus what they share —
//! where a command runs ([`target`]), how events are printed ([`output`]), times and durations
//! ([`time`]) and exit codes ([`exit`]).
//!
//! Every command that talks to a node does so through weir-client. With `--data-dir` the same
//! command opens the store in this process and serves it to itself on a loopback port with a
//! random token, so the embedded and remote paths are one code path with one set of contracts.

pub(crate) mod bench;
pub(crate) mod consume;
pub(crate) mod exit;
pub(crate) mod group;
pub(crate) mod output;
pub(crate) mod produce;
pub(crate) mod replay;
pub(crate) mod target;
pub(crate) mod time;
pub(crate) mod topic;
pub(crate) mod verify;

use std::future::Future;

use anyhow::Context;

/// Runs an async command on a runtime made for it; returns its exit code.
pub(crate) fn run<F, Fut>(command: F) -> anyhow::Result<i32>
where
    F: FnOnce() -> Fut,
    Fut: Future<Output = anyhow::Result<i32>>,
{
    init_logging();
    let runtime = tokio::runtime::Builder::new_multi_thread()
        .worker_threads(2)
        .enable_all()
        .build()
        .context("cannot start the runtime")?;
    runtime.block_on(command())
}

/// Warnings and errors on stderr (RUST_LOG overrides), so that recovery reports of an embedded
/// store reach the operator without drowning the data on stdout.
pub(crate) fn init_logging() {
    let filter = tracing_subscriber::EnvFilter::try_from_default_env()
        .unwrap_or_else(|_| tracing_subscriber::EnvFilter::new("warn"));
    let _ = tracing_subscriber::fmt()
        .with_env_filter(filter)
        .with_ansi(std::io::IsTerminal::is_terminal(&std::io::stderr()))
        .with_writer(std::io::stderr)
        .try_init();
}
