//! The skiff executable: parses the command line and hands it to its subcommand.

use clap::Parser;

fn main() -> std::process::ExitCode {
    skiff::cli::Cli::parse().run()
}
