//! The entry point of the `runner-registry` binary.

use std::process::ExitCode;

use clap::Parser;

use super::admin::serve_or_administer;
use super::args::{Cli, Command};
use super::inspect::inspect;

/// Runs the `runner-registry` command line: logs to stderr (`RUST_LOG`), exits 1 with
/// the error on failure, 2 on bad arguments.
pub fn run() -> ExitCode {
    let _ = tracing_subscriber::fmt()
        .with_writer(std::io::stderr)
        .with_env_filter(
            tracing_subscriber::EnvFilter::try_from_default_env()
                .unwrap_or_else(|_| tracing_subscriber::EnvFilter::new("info,sqlx::postgres::notice=warn")),
        )
        .try_init();
    match Cli::parse().command {
        command @ (Command::Repos { .. }
        | Command::Models { .. }
        | Command::Show { .. }
        | Command::Files { .. }
        | Command::Download { .. }
        | Command::DeleteRepo { .. }
        | Command::Alias { .. }
        | Command::Rollout { .. }
        | Command::Delete { .. }) => match inspect(command) {
            Ok(()) => ExitCode::SUCCESS,
            Err(e) => {
                eprintln!("error: {e}");
                ExitCode::from(1)
            }
        },
        command => {
            let runtime = tokio::runtime::Builder::new_multi_thread().enable_all().build().expect("runtime");
            match runtime.block_on(serve_or_administer(command)) {
                Ok(()) => ExitCode::SUCCESS,
                Err(e) => {
                    eprintln!("error: {e}");
                    ExitCode::from(1)
                }
            }
        }
    }
}
