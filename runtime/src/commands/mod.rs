//! Subcommands of the `edge` binary, one file each.

pub mod apps;
pub mod build;
pub mod client;
pub mod deploy;
pub mod serve;
pub mod state;

use clap::{Parser, Subcommand};

/// edge: run WebAssembly edge functions, each request in a fresh sandbox.
#[derive(Debug, Parser)]
#[command(name = "edge", version, about, long_about = None, propagate_version = true)]
pub struct Cli {
    /// What to do.
    #[command(subcommand)]
    pub command: Command,
}

/// The subcommands.
#[derive(Debug, Subcommand)]
pub enum Command {
    /// Serve every app in a directory over HTTP.
    Serve(Box<serve::ServeArgs>),
    /// Build a JavaScript app into a component.
    Build(build::BuildArgs),
    /// Deploy a component to a running server.
    Deploy(deploy::DeployArgs),
    /// List the apps of a running server.
    Apps(apps::AppsArgs),
    /// Switch an app back to an older version.
    Rollback(apps::RollbackArgs),
    /// Remove an app from a running server.
    Delete(apps::DeleteArgs),
    /// Manage an app's secrets (read by guests through wasi:config).
    Secret(state::SecretArgs),
    /// Inspect and seed an app's key-value stores.
    Kv(state::KvArgs),
}

impl Command {
    /// Runs the subcommand.
    pub fn execute(self) -> anyhow::Result<()> {
        match self {
            Command::Serve(args) => args.execute(),
            Command::Build(args) => args.execute(),
            Command::Deploy(args) => args.execute(),
            Command::Apps(args) => args.execute(),
            Command::Rollback(args) => args.execute(),
            Command::Delete(args) => args.execute(),
            Command::Secret(args) => args.execute(),
            Command::Kv(args) => args.execute(),
        }
    }
}

/// Logs go to stderr through `tracing`, filtered by `RUST_LOG` (default `info`).
pub fn init_logging() {
    use tracing_subscriber::EnvFilter;
    let filter = EnvFilter::try_from_default_env().unwrap_or_else(|_| EnvFilter::new("info"));
    let _ = tracing_subscriber::fmt()
        .with_env_filter(filter)
        .with_writer(std::io::stderr)
        .with_ansi(std::io::IsTerminal::is_terminal(&std::io::stderr()))
        .try_init();
}
