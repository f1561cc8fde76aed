//! `runner-registry`: the registry server and its admin commands.

use std::net::SocketAddr;
use std::path::PathBuf;
use std::process::ExitCode;

use clap::{Parser, Subcommand};
use runner_registry::{router, Config, Right, Tokens};

/// The model registry server: organizations, repositories, numbered models and their files.
#[derive(Parser)]
#[command(name = "runner-registry", version)]
struct Cli {
    #[command(subcommand)]
    command: Command,
}

#[derive(Subcommand)]
enum Command {
    /// Serve the registry stored in DATA.
    Serve {
        /// Data directory (created when missing); state survives restarts.
        #[arg(long, env = "RUNNER_REGISTRY_DATA")]
        data: PathBuf,
        /// Address to listen on.
        #[arg(long, default_value = "127.0.0.1:9000")]
        addr: SocketAddr,
        /// Accept every request without a token (a local development server only).
        #[arg(long)]
        no_auth: bool,
        /// Largest file accepted, in bytes.
        #[arg(long, default_value_t = 64 << 30)]
        max_file_size: u64,
    },
    /// Manage tokens.
    Token {
        #[command(subcommand)]
        command: TokenCommand,
    },
}

#[derive(Subcommand)]
enum TokenCommand {
    /// Create a token for one organization and print it (it is stored hashed: save it now).
    Create {
        /// Data directory of the server.
        #[arg(long, env = "RUNNER_REGISTRY_DATA")]
        data: PathBuf,
        /// The organization the token is for.
        #[arg(long)]
        org: String,
        /// Allow registering (default: read only).
        #[arg(long)]
        write: bool,
    },
}

fn main() -> ExitCode {
    let _ = tracing_subscriber::fmt()
        .with_writer(std::io::stderr)
        .with_env_filter(
            tracing_subscriber::EnvFilter::try_from_default_env()
                .unwrap_or_else(|_| tracing_subscriber::EnvFilter::new("info")),
        )
        .try_init();
    match Cli::parse().command {
        Command::Token { command: TokenCommand::Create { data, org, write } } => {
            match Tokens::create(&data, &org, if write { Right::Write } else { Right::Read }) {
                Ok(token) => {
                    println!("{token}");
                    ExitCode::SUCCESS
                }
                Err(e) => {
                    eprintln!("error: {e}");
                    ExitCode::from(1)
                }
            }
        }
        Command::Serve { data, addr, no_auth, max_file_size } => {
            let config = Config { data, auth: !no_auth, max_file_size };
            let app = match router(&config) {
                Ok(app) => app,
                Err(e) => {
                    eprintln!("error: {e}");
                    return ExitCode::from(1);
                }
            };
            let runtime = tokio::runtime::Builder::new_multi_thread().enable_all().build().expect("runtime");
            let result: Result<(), String> = runtime.block_on(async move {
                let listener =
                    tokio::net::TcpListener::bind(addr).await.map_err(|e| format!("cannot listen on {addr}: {e}"))?;
                let local = listener.local_addr().map_err(|e| e.to_string())?;
                println!("listening on http://{local}");
                if no_auth {
                    tracing::warn!("--no-auth: every request may read and write every organization");
                }
                axum::serve(listener, app)
                    .with_graceful_shutdown(runner_core::serve::shutdown_signal())
                    .await
                    .map_err(|e| e.to_string())
            });
            match result {
                Ok(()) => ExitCode::SUCCESS,
                Err(e) => {
                    eprintln!("error: {e}");
                    ExitCode::from(1)
                }
            }
        }
    }
}
