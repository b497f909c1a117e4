//! The command line: one file per subcommand. Only this layer uses `anyhow`.

mod duration;
pub mod server;

use std::process::ExitCode;

use clap::{Parser, Subcommand};

pub use duration::parse_duration;

/// skiff: a Kubernetes distribution in one small executable.
#[derive(Debug, Parser)]
#[command(name = "skiff", version, about, propagate_version = true)]
pub struct Cli {
    /// Log filter, as in RUST_LOG (for example `info` or `skiff=debug`).
    #[arg(long, global = true, env = "SKIFF_LOG", default_value = "info")]
    pub log: String,

    #[command(subcommand)]
    pub command: Command,
}

/// The subcommands.
#[derive(Debug, Subcommand)]
pub enum Command {
    /// Run the server: for now the datastore, with automatic compaction and key expiry.
    Server(server::ServerArgs),
}

impl Cli {
    /// Runs the chosen subcommand; errors are printed for people, with a non-zero exit.
    pub fn run(self) -> ExitCode {
        init_logging(&self.log);
        let outcome = match self.command {
            Command::Server(args) => server::run(args),
        };
        match outcome {
            Ok(()) => ExitCode::SUCCESS,
            Err(err) => {
                // One line for people; stderr reaches the journal for services too.
                eprintln!("skiff: {err:#}");
                ExitCode::FAILURE
            }
        }
    }
}

fn init_logging(filter: &str) {
    let filter = tracing_subscriber::EnvFilter::try_new(filter)
        .unwrap_or_else(|_| tracing_subscriber::EnvFilter::new("info"));
    tracing_subscriber::fmt()
        .with_env_filter(filter)
        .with_writer(std::io::stderr)
        .with_target(false)
        .init();
}
