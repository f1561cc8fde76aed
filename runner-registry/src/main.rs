//! `runner-registry`: the registry server and its admin commands.

use std::net::SocketAddr;
use std::path::PathBuf;
use std::process::ExitCode;
use std::time::Duration;

use clap::{Parser, Subcommand};
use runner_core::serve::{serve_connections, ConnectionLimits};
use runner_registry::export::{export, Selection};
use runner_registry::verify::verify;
use runner_registry::{router, Backend, Config, Right, SharedStore};

/// The model registry server: organizations, repositories, numbered models and their files.
#[derive(Parser)]
#[command(name = "runner-registry", version)]
struct Cli {
    #[command(subcommand)]
    command: Command,
}

#[derive(Subcommand)]
enum Command {
    /// Serve the registry: one directory (--data), or PostgreSQL and an S3 bucket shared
    /// by any number of replicas (--database and --store).
    Serve {
        #[command(flatten)]
        storage: Storage,
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
        /// File uploads one token may have in flight at once (429 with Retry-After past
        /// it); 0: no limit.
        #[arg(long, default_value_t = 16)]
        max_uploads_per_token: usize,
        /// Seconds a client may take to send a request's headers, counted from when it
        /// connects or was last answered (so also how long an idle connection stays open).
        #[arg(long, default_value_t = 20, value_name = "SECONDS", value_parser = clap::value_parser!(u64).range(1..))]
        header_timeout: u64,
        /// Seconds an upload may go without a byte arriving (the upload is dropped, and
        /// nothing of it kept).
        #[arg(long, default_value_t = 60, value_name = "SECONDS", value_parser = clap::value_parser!(u64).range(1..))]
        body_timeout: u64,
        /// Connections open at once; past it new ones wait in the backlog [default: 10000,
        /// or the open-file limit less 256].
        #[arg(long, value_parser = clap::value_parser!(u32).range(1..))]
        max_connections: Option<u32>,
    },
    /// Remove what no model needs (orphan blobs, abandoned numbers, stale volumes and
    /// uploads), sparing anything touched within the grace period. Safe while the server
    /// and registrations run.
    Gc {
        #[command(flatten)]
        storage: Storage,
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
    /// Check that every file of every ready model is stored with its size and readable by
    /// its organization (with --deep, that its bytes hash to its sha256): a scrub, to run
    /// after an incident or on a schedule. Exits 1 when anything is wrong, naming each
    /// problem by model and file.
    Verify {
        #[command(flatten)]
        storage: Storage,
        /// Read every content and check its sha256 (reads the whole store).
        #[arg(long)]
        deep: bool,
        /// Print one JSON object, for machines, instead of lines.
        #[arg(long)]
        json: bool,
        /// Contents checked at once, so that a large registry is not overwhelmed.
        #[arg(long, default_value_t = 8, value_parser = clap::value_parser!(u16).range(1..))]
        concurrency: u16,
    },
    /// Copy a registry (either backend), one organization or one repository, into a
    /// directory registry: its ready models under their numbers, aliases with their
    /// history, and tokens; every content checked by sha256. Resumable: run again, it
    /// skips what is there. `import --from DIR` restores it into a shared registry.
    Export {
        /// The directory to write (created when missing; `serve --data DIR` serves it).
        #[arg(long)]
        to: PathBuf,
        /// Only this organization.
        #[arg(long)]
        org: Option<String>,
        /// Only this repository (of --org).
        #[arg(long, requires = "org")]
        repo: Option<String>,
        #[command(flatten)]
        storage: Storage,
    },
    /// Copy a directory registry (its tokens and ready models, under their numbers) into
    /// a shared one, checking every file's sha256; idempotent and resumable.
    Import {
        /// The directory registry to copy (`serve --data DIR`'s DIR); it is only read.
        #[arg(long)]
        from: PathBuf,
        #[command(flatten)]
        storage: Storage,
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
        /// `repository:number`, `repository:latest`, `repository:alias` or `organization/repository:number`.
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
    /// Names for model numbers that move (`iris:prod`): set, list, delete, history.
    Alias {
        #[command(subcommand)]
        command: AliasCommand,
    },
    /// Delete a model.
    Delete {
        /// The model (a number, not `latest`).
        model: String,
        #[command(flatten)]
        at: At,
    },
}

/// Where a server's registry is stored.
#[derive(clap::Args)]
struct Storage {
    /// Data directory of a one-machine registry (created when missing); state survives
    /// restarts.
    #[arg(long, env = "RUNNER_REGISTRY_DATA", required_unless_present = "database", conflicts_with = "database")]
    data: Option<PathBuf>,
    /// PostgreSQL of a shared registry (postgres://USER:PASSWORD@HOST:PORT/DATABASE), with
    /// --store; its schema is created or brought up to date at start.
    #[arg(long, env = "RUNNER_REGISTRY_DATABASE", requires = "store")]
    database: Option<String>,
    /// Object store of a shared registry: s3://BUCKET. Credentials and region come from
    /// AWS_ACCESS_KEY_ID, AWS_SECRET_ACCESS_KEY and AWS_REGION.
    #[arg(long, env = "RUNNER_REGISTRY_STORE", requires = "database")]
    store: Option<String>,
    /// S3 endpoint, for a store other than AWS (Garage, MinIO, ...).
    #[arg(long, env = "AWS_ENDPOINT_URL")]
    s3_endpoint: Option<String>,
    /// S3 region (default: AWS_REGION).
    #[arg(long)]
    s3_region: Option<String>,
    /// Seconds each request to the object store may take before it is failed (and the
    /// client answered 503, which it retries) [default: 30].
    #[arg(long, value_name = "SECONDS", value_parser = clap::value_parser!(u64).range(1..))]
    s3_timeout: Option<u64>,
    /// Answer downloads with a redirect to a presigned URL valid this many seconds, so
    /// that clients fetch straight from the store (shared registry only; the store must
    /// be reachable from the clients).
    #[arg(long, requires = "store")]
    presign_seconds: Option<u64>,
}

impl Storage {
    /// Opens the storage; `serving`: this process is the server that owns a directory
    /// registry (what a crashed run left in its `tmp/` is removed).
    async fn open(&self, serving: bool) -> runner_core::Result<Backend> {
        match (&self.data, &self.database, &self.store) {
            (_, Some(database), Some(store)) => {
                let timeout = self.s3_timeout.map(std::time::Duration::from_secs);
                let s3 =
                    runner_registry::s3_store(store, self.s3_endpoint.as_deref(), self.s3_region.as_deref(), timeout)?;
                let location = format!("{store} (metadata in PostgreSQL)");
                let mut shared = SharedStore::connect(database, s3.clone(), location).await?;
                if let Some(seconds) = self.presign_seconds {
                    shared = shared.with_presigned_downloads(s3, std::time::Duration::from_secs(seconds.max(1)));
                }
                Ok(Backend::Shared(shared))
            }
            (Some(data), _, _) if serving => Backend::directory(data),
            (Some(data), _, _) => Backend::directory_beside_others(data),
            _ => Err(runner_core::Error::invalid_input("give --data DIR, or --database URL and --store s3://BUCKET")),
        }
    }
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
        Command::Alias { command } => alias_command(command),
        Command::DeleteRepo { repository, at } => {
            let registry = runner_core::registry_location(Some(&at.registry));
            return match registry.starts_with("http://") || registry.starts_with("https://") {
                true => runner_core::HttpRegistry::new(&registry, std::env::var(runner_core::TOKEN_ENV).ok())?
                    .delete_repository(&at.org, &repository),
                false => runner_core::LocalRegistry::open(&registry)?.delete_repository(&at.org, &repository),
            }
            .map(|()| println!("deleted repository {repository}"));
        }
        Command::Serve { .. }
        | Command::Token { .. }
        | Command::Gc { .. }
        | Command::Import { .. }
        | Command::Verify { .. }
        | Command::Export { .. } => {
            unreachable!("handled by main")
        }
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
enum AliasCommand {
    /// Point an alias at a ready model (creating it when needed): `alias set iris prod 4`.
    Set {
        /// The repository.
        repository: String,
        /// The alias (starts with a letter; not `latest`).
        alias: String,
        /// The model number it will point at.
        number: u64,
        /// Move it only if it points at this number now (`none`: only if it does not exist
        /// yet); otherwise nothing changes and the command fails.
        #[arg(long)]
        expect: Option<String>,
        /// Move it even though the model's API differs from the current target's.
        #[arg(long)]
        force: bool,
        #[command(flatten)]
        at: At,
    },
    /// List a repository's aliases.
    Ls {
        /// The repository.
        repository: String,
        #[command(flatten)]
        at: At,
    },
    /// Delete an alias (the models stay).
    Rm {
        /// The repository.
        repository: String,
        /// The alias.
        alias: String,
        /// Delete it only if it points at this number now.
        #[arg(long)]
        expect: Option<u64>,
        #[command(flatten)]
        at: At,
    },
    /// Every move of an alias (of all aliases of the repository without one): when, by
    /// whom, from and to.
    History {
        /// The repository.
        repository: String,
        /// The alias.
        alias: Option<String>,
        #[command(flatten)]
        at: At,
    },
}

/// The compare-and-set condition of `alias set --expect`.
fn parse_expect(expect: Option<&str>) -> runner_core::Result<runner_core::registry::Expect> {
    use runner_core::registry::Expect;
    match expect {
        None => Ok(Expect::Any),
        Some("none") => Ok(Expect::Unset),
        Some(n) => n.parse::<u64>().map(Expect::Number).map_err(|_| {
            runner_core::Error::invalid_input(format!(
                "--expect `{n}` is neither a model number nor `none` (the alias must not exist yet)"
            ))
        }),
    }
}

fn print_move(repository: &str, change: &runner_core::registry::AliasMove) {
    let side = |n: Option<u64>| n.map_or("-".to_string(), |n| format!("{repository}:{n}"));
    let forced = if change.forced { "  (forced)" } else { "" };
    println!(
        "{}  {:<12} {} -> {}  by {}{forced}",
        change.at,
        change.alias,
        side(change.from),
        side(change.to),
        change.by
    );
}

fn alias_command(command: AliasCommand) -> (At, Box<Inspection>) {
    use runner_core::registry::{AliasOptions, Expect};
    match command {
        AliasCommand::Set { repository, alias, number, expect, force, at } => (
            at,
            Box::new(move |r, org| {
                let options = AliasOptions { expect: parse_expect(expect.as_deref())?, force };
                print_move(&repository, &r.set_alias(org, &repository, &alias, number, &options)?);
                Ok(())
            }),
        ),
        AliasCommand::Ls { repository, at } => (
            at,
            Box::new(move |r, org| {
                println!("{:<16} NUMBER", "ALIAS");
                for alias in r.aliases(org, &repository)? {
                    println!("{:<16} {}", alias.name, alias.number);
                }
                Ok(())
            }),
        ),
        AliasCommand::Rm { repository, alias, expect, at } => (
            at,
            Box::new(move |r, org| {
                let expect = expect.map_or(Expect::Any, Expect::Number);
                print_move(&repository, &r.delete_alias(org, &repository, &alias, expect)?);
                Ok(())
            }),
        ),
        AliasCommand::History { repository, alias, at } => (
            at,
            Box::new(move |r, org| {
                for change in r.alias_history(org, &repository, alias.as_deref())? {
                    print_move(&repository, &change);
                }
                Ok(())
            }),
        ),
    }
}

#[derive(Subcommand)]
enum TokenCommand {
    /// Create a token for one organization and print it (it is stored hashed: save it now).
    Create {
        #[command(flatten)]
        storage: Storage,
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

/// The commands that open the server's own storage.
async fn serve_or_administer(command: Command) -> Result<(), String> {
    match command {
        Command::Gc { storage, grace_hours, dry_run, every_hours } => {
            let backend = storage.open(false).await.map_err(|e| e.to_string())?;
            let grace = std::time::Duration::from_secs_f64(grace_hours.max(0.0) * 3600.0);
            loop {
                let collected = backend.collect_garbage(grace, dry_run).await.map_err(|e| e.to_string())?;
                println!("{}", serde_json::json!({ "dry_run": dry_run, "collected": collected }));
                match every_hours {
                    Some(hours) => {
                        tokio::time::sleep(std::time::Duration::from_secs_f64(hours.max(0.001) * 3600.0)).await
                    }
                    None => return Ok(()),
                }
            }
        }
        Command::Verify { storage, deep, json, concurrency } => {
            let backend = storage.open(false).await.map_err(|e| e.to_string())?;
            let progress = match std::io::IsTerminal::is_terminal(&std::io::stderr()) && !json {
                true => indicatif::ProgressBar::new(0).with_style(
                    indicatif::ProgressStyle::with_template("verifying {bar:40} {pos}/{len} contents ({eta})")
                        .expect("a valid template"),
                ),
                false => indicatif::ProgressBar::hidden(),
            };
            let concurrency = usize::from(concurrency);
            let verified = match &backend {
                Backend::Directory { store, .. } => verify(store, deep, concurrency, &progress).await,
                Backend::Shared(shared) => verify(shared, deep, concurrency, &progress).await,
            }
            .map_err(|e| e.to_string())?;
            progress.finish_and_clear();
            if json {
                println!("{}", serde_json::to_string(&verified).expect("serializes"));
            } else {
                for p in &verified.problems {
                    println!("{}  {}  (sha256 {}): {}", p.model, p.file, p.sha256, p.problem);
                }
                let read =
                    if deep { format!(", {} bytes read and hashed", verified.bytes_read) } else { String::new() };
                println!(
                    "{} ready models, {} files, {} contents checked{read}: {} problems",
                    verified.models,
                    verified.files,
                    verified.contents,
                    verified.problems.len()
                );
            }
            match verified.problems.len() {
                0 => Ok(()),
                n => Err(format!("{n} files of ready models cannot be served as their manifests say")),
            }
        }
        Command::Export { to, org, repo, storage } => {
            let backend = storage.open(false).await.map_err(|e| e.to_string())?;
            let target = runner_core::registry::store::DirectoryStore::open(&to).map_err(|e| e.to_string())?;
            let selection = Selection { organization: org, repository: repo };
            let exported = match &backend {
                Backend::Directory { store, .. } => export(store, &target, &selection).await,
                Backend::Shared(shared) => export(shared, &target, &selection).await,
            }
            .map_err(|e| e.to_string())?;
            println!("{}", serde_json::to_string(&exported).expect("serializes"));
            Ok(())
        }
        Command::Import { from, storage } => {
            let Backend::Shared(shared) = storage.open(false).await.map_err(|e| e.to_string())? else {
                return Err("import copies into a shared registry: give --database URL and --store s3://BUCKET".into());
            };
            let imported = shared.import(&from).await.map_err(|e| e.to_string())?;
            println!("{}", serde_json::to_string(&imported).expect("serializes"));
            Ok(())
        }
        Command::Token { command: TokenCommand::Create { storage, org, write } } => {
            let backend = storage.open(false).await.map_err(|e| e.to_string())?;
            let token = backend
                .create_token(&org, if write { Right::Write } else { Right::Read })
                .await
                .map_err(|e| e.to_string())?;
            println!("{token}");
            Ok(())
        }
        Command::Serve {
            storage,
            addr,
            no_auth,
            max_file_size,
            rate_limit,
            max_uploads_per_token,
            header_timeout,
            body_timeout,
            max_connections,
        } => {
            let backend = storage.open(true).await.map_err(|e| e.to_string())?;
            let config = Config {
                auth: !no_auth,
                max_file_size,
                rate_limit: std::num::NonZeroU32::new(rate_limit),
                max_uploads_per_token: std::num::NonZeroUsize::new(max_uploads_per_token),
            };
            let app = router(backend, &config);
            let defaults = ConnectionLimits::default();
            let limits = ConnectionLimits {
                header_timeout: Duration::from_secs(header_timeout),
                body_timeout: Duration::from_secs(body_timeout),
                max_connections: max_connections.map_or(defaults.max_connections, |n| n as usize),
            };
            let listener =
                tokio::net::TcpListener::bind(addr).await.map_err(|e| format!("cannot listen on {addr}: {e}"))?;
            let local = listener.local_addr().map_err(|e| e.to_string())?;
            println!("listening on http://{local}");
            if no_auth {
                tracing::warn!("--no-auth: every request may read and write every organization");
            }
            serve_connections(listener, app, limits, runner_core::serve::shutdown_signal())
                .await
                .map_err(|e| e.to_string())
        }
        _ => unreachable!("inspection commands are handled by main"),
    }
}
