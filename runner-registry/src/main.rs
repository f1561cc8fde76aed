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
        /// Requests per second allowed to each token (429 with Retry-After past it); 0: no limit.
        #[arg(long, default_value_t = 0)]
        rate_limit: u32,
    },
    /// Remove what no model needs (orphan blobs, abandoned numbers, stale volumes and
    /// uploads), sparing anything touched within the grace period. Safe while the server
    /// and registrations run.
    Gc {
        /// Data directory of the registry.
        #[arg(long, env = "RUNNER_REGISTRY_DATA")]
        data: PathBuf,
        /// Spare everything touched within this many hours; longer than any upload.
        #[arg(long, default_value_t = 24.0)]
        grace_hours: f64,
        /// Report what would be removed; remove nothing.
        #[arg(long)]
        dry_run: bool,
        /// Run again every this many hours, until stopped (a schedule without cron).
        #[arg(long)]
        every_hours: Option<f64>,
    },
    /// Manage tokens.
    Token {
        #[command(subcommand)]
        command: TokenCommand,
    },
    /// List the repositories of an organization.
    Repos {
        #[command(flatten)]
        at: At,
    },
    /// List the models of a repository, with status, files and size.
    Models {
        /// The repository.
        repository: String,
        #[command(flatten)]
        at: At,
    },
    /// Print a model's manifest (JSON).
    Show {
        /// `repository:number`, `repository:latest` or `organization/repository:number`.
        model: String,
        #[command(flatten)]
        at: At,
    },
    /// List a model's files with sizes and sha256.
    Files {
        /// The model.
        model: String,
        #[command(flatten)]
        at: At,
    },
    /// Download a model's files (checked against their sha256) into a folder.
    Download {
        /// The model.
        model: String,
        /// Folder to write the files into.
        #[arg(long)]
        out: PathBuf,
        #[command(flatten)]
        at: At,
    },
    /// Delete a repository and every model in it.
    DeleteRepo {
        /// The repository.
        repository: String,
        #[command(flatten)]
        at: At,
    },
    /// Delete a model.
    Delete {
        /// The model (a number, not `latest`).
        model: String,
        #[command(flatten)]
        at: At,
    },
}

/// Which registry to inspect.
#[derive(clap::Args)]
struct At {
    /// A registry directory or a server URL (token from RUNNER_REGISTRY_TOKEN).
    #[arg(long, env = "RUNNER_REGISTRY", default_value = runner_core::DEFAULT_REGISTRY)]
    registry: String,
    /// The organization.
    #[arg(long, env = "RUNNER_ORGANIZATION", default_value = runner_core::DEFAULT_ORGANIZATION)]
    org: String,
}

/// An inspection command, run on an opened registry and organization.
type Inspection = dyn FnOnce(&dyn runner_core::Registry, &str) -> runner_core::Result<()>;

fn inspect(command: Command) -> runner_core::Result<()> {
    use runner_core::open_registry;
    let (at, run): (At, Box<Inspection>) = match command {
        Command::Repos { at } => (
            at,
            Box::new(|r, org| {
                for repo in r.repositories(org)? {
                    println!("{repo}");
                }
                Ok(())
            }),
        ),
        Command::Models { repository, at } => (
            at,
            Box::new(move |r, org| {
                println!("{:<8} {:<10} {:>6} {:>14}  {:<16} CREATED", "NUMBER", "STATUS", "FILES", "BYTES", "RUNNER");
                for m in r.models(org, &repository)? {
                    let (files, bytes, runner, created) = match &m.manifest {
                        Some(man) => (
                            man.files.len().to_string(),
                            man.total_bytes().to_string(),
                            man.runner.name.clone(),
                            man.created_at.clone(),
                        ),
                        None => ("-".into(), "-".into(), "-".into(), "-".into()),
                    };
                    println!(
                        "{:<8} {:<10} {files:>6} {bytes:>14}  {runner:<16} {created}",
                        m.id.number,
                        m.status.to_string()
                    );
                }
                Ok(())
            }),
        ),
        Command::Show { model, at } => (
            at,
            Box::new(move |r, org| {
                let id = r.resolve(&with_org(&model, org)?)?;
                println!("{}", String::from_utf8_lossy(&r.manifest(&id)?.to_json()).trim_end());
                Ok(())
            }),
        ),
        Command::Files { model, at } => (
            at,
            Box::new(move |r, org| {
                let id = r.resolve(&with_org(&model, org)?)?;
                for f in r.manifest(&id)?.files {
                    println!("{:>14}  {}  {}", f.size, f.sha256, f.path);
                }
                Ok(())
            }),
        ),
        Command::Download { model, out, at } => (
            at,
            Box::new(move |r, org| {
                let id = r.resolve(&with_org(&model, org)?)?;
                let manifest = r.manifest(&id)?;
                let volume = r.fetch(&manifest)?;
                for f in &manifest.files {
                    let target = out.join(&f.path);
                    std::fs::create_dir_all(target.parent().expect("files have a parent"))
                        .and_then(|()| std::fs::copy(volume.join(&f.path), &target).map(|_| ()))
                        .map_err(|e| runner_core::Error::msg(format!("writing {}: {e}", target.display())))?;
                }
                println!("{} files, {} bytes -> {}", manifest.files.len(), manifest.total_bytes(), out.display());
                Ok(())
            }),
        ),
        Command::Delete { model, at } => (
            at,
            Box::new(move |r, org| {
                let reference = with_org(&model, org)?;
                let runner_core::Version::Number(number) = reference.version else {
                    return Err(runner_core::Error::msg("delete takes a model number, not `latest`"));
                };
                let id = runner_core::ModelId::new(&reference.organization, &reference.repository, number)?;
                r.delete_model(&id)?;
                println!("deleted {id}");
                Ok(())
            }),
        ),
        Command::DeleteRepo { repository, at } => {
            let registry = runner_core::registry_location(Some(&at.registry));
            return match registry.starts_with("http://") || registry.starts_with("https://") {
                true => runner_core::HttpRegistry::new(&registry, std::env::var(runner_core::TOKEN_ENV).ok())?
                    .delete_repository(&at.org, &repository),
                false => runner_core::LocalRegistry::open(&registry)?.delete_repository(&at.org, &repository),
            }
            .map(|()| println!("deleted repository {repository}"));
        }
        Command::Serve { .. } | Command::Token { .. } | Command::Gc { .. } => unreachable!("handled by main"),
    };
    let registry = open_registry(&runner_core::registry_location(Some(&at.registry)))?;
    run(registry.as_ref(), &at.org)
}

/// A model reference; `--org` applies when the reference names no organization.
fn with_org(model: &str, org: &str) -> runner_core::Result<runner_core::ModelRef> {
    let mut reference: runner_core::ModelRef = model.parse()?;
    if !model.contains('/') {
        reference.organization = org.to_string();
    }
    Ok(reference)
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
        command @ (Command::Repos { .. }
        | Command::Models { .. }
        | Command::Show { .. }
        | Command::Files { .. }
        | Command::Download { .. }
        | Command::DeleteRepo { .. }
        | Command::Delete { .. }) => match inspect(command) {
            Ok(()) => ExitCode::SUCCESS,
            Err(e) => {
                eprintln!("error: {e}");
                ExitCode::from(1)
            }
        },
        Command::Gc { data, grace_hours, dry_run, every_hours } => loop {
            let grace = std::time::Duration::from_secs_f64(grace_hours.max(0.0) * 3600.0);
            let collected = runner_core::registry::store::DirectoryStore::open(&data)
                .and_then(|store| store.collect_garbage(grace, dry_run));
            match collected {
                Ok(collected) => {
                    println!("{}", serde_json::json!({ "dry_run": dry_run, "collected": collected }));
                }
                Err(e) => {
                    eprintln!("error: {e}");
                    return ExitCode::from(1);
                }
            }
            match every_hours {
                Some(hours) => std::thread::sleep(std::time::Duration::from_secs_f64(hours.max(0.001) * 3600.0)),
                None => return ExitCode::SUCCESS,
            }
        },
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
        Command::Serve { data, addr, no_auth, max_file_size, rate_limit } => {
            let config =
                Config { data, auth: !no_auth, max_file_size, rate_limit: std::num::NonZeroU32::new(rate_limit) };
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
