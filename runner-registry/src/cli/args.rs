//! The `runner-registry` command line: its commands and their arguments (clap).

use std::net::SocketAddr;
use std::path::PathBuf;

use clap::{Parser, Subcommand};
use runner_core::serve::ConnectionArgs;

use crate::storage::{s3_store, Backend, SharedStore};

/// The model registry server: organizations, repositories, numbered models and their files.
#[derive(Parser)]
#[command(name = "runner-registry", version)]
pub struct Cli {
    #[command(subcommand)]
    pub command: Command,
}

#[derive(Subcommand)]
pub enum Command {
    /// Serve the registry: one directory (--data), or PostgreSQL and an S3 bucket shared
    /// by any number of replicas (--database and --store).
    Serve {
        #[command(flatten)]
        storage: StorageArgs,
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
        #[command(flatten)]
        connections: ConnectionArgs,
    },
    /// Remove what no model needs (orphan blobs, abandoned numbers, stale volumes and
    /// uploads), sparing anything touched within the grace period. Safe while the server
    /// and registrations run.
    Gc {
        #[command(flatten)]
        storage: StorageArgs,
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
        storage: StorageArgs,
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
        storage: StorageArgs,
    },
    /// Copy a directory registry (its tokens and ready models, under their numbers) into
    /// a shared one, checking every file's sha256; idempotent and resumable.
    Import {
        /// The directory registry to copy (`serve --data DIR`'s DIR); it is only read.
        #[arg(long)]
        from: PathBuf,
        #[command(flatten)]
        storage: StorageArgs,
    },
    /// Read the audit log: every change, who made it (token id and name), when, and
    /// from which address, oldest first.
    Audit {
        #[command(flatten)]
        storage: StorageArgs,
        /// Only this organization's changes.
        #[arg(long)]
        org: Option<String>,
        /// Only this repository's changes.
        #[arg(long)]
        repo: Option<String>,
        /// Only changes since this time (RFC 3339) or this long ago (`24h`, `7d`).
        #[arg(long, value_parser = parse_since, value_name = "TIME|DURATION")]
        since: Option<time::OffsetDateTime>,
        /// The newest this many entries at most.
        #[arg(long)]
        limit: Option<usize>,
        /// Print one JSON object a line, for machines.
        #[arg(long)]
        json: bool,
    },
    /// Manage tokens: create, list, revoke.
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
    /// Roll a model out behind an alias step by step, judging each step on the metrics of
    /// the serves following the alias, and roll it back when it breaks a limit:
    /// `rollout iris prod --to 5 --steps 5,25,50,100 --every 60s --max-error-rate 1%
    /// --serve http://serve-1:8000 --serve http://serve-2:8000`. Exits 1 when rolled back.
    Rollout {
        #[command(flatten)]
        plan: RolloutArgs,
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

/// Where a server's registry is stored.
#[derive(clap::Args)]
pub struct StorageArgs {
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

impl StorageArgs {
    /// Opens the storage; `serving`: this process is the server that owns a directory
    /// registry (what a crashed run left in its `tmp/` is removed).
    pub async fn open(&self, serving: bool) -> runner_core::Result<Backend> {
        match &self.data {
            _ if self.database.is_some() => Ok(Backend::shared(self.open_shared().await?)),
            Some(data) if serving => Backend::directory(data),
            Some(data) => Backend::directory_beside_others(data),
            None => {
                Err(runner_core::Error::invalid_input("give --data DIR, or --database URL and --store s3://BUCKET"))
            }
        }
    }

    /// Opens a shared registry (`--database` and `--store`); `import` copies into one.
    pub async fn open_shared(&self) -> runner_core::Result<SharedStore> {
        let (Some(database), Some(store)) = (&self.database, &self.store) else {
            return Err(runner_core::Error::invalid_input(
                "import copies into a shared registry: give --database URL and --store s3://BUCKET",
            ));
        };
        let timeout = self.s3_timeout.map(std::time::Duration::from_secs);
        let s3 = s3_store(store, self.s3_endpoint.as_deref(), self.s3_region.as_deref(), timeout)?;
        let location = format!("{store} (metadata in PostgreSQL)");
        let shared = SharedStore::connect(database, s3.clone(), location).await?;
        Ok(match self.presign_seconds {
            Some(seconds) => shared.with_presigned_downloads(s3, std::time::Duration::from_secs(seconds.max(1))),
            None => shared,
        })
    }
}

/// Which registry to inspect.
#[derive(clap::Args)]
pub struct At {
    /// A registry directory or a server URL (token from RUNNER_REGISTRY_TOKEN).
    #[arg(long, env = "RUNNER_REGISTRY", default_value = runner_core::DEFAULT_REGISTRY)]
    pub(crate) registry: String,
    /// The organization.
    #[arg(long, env = "RUNNER_ORGANIZATION", default_value = runner_core::DEFAULT_ORGANIZATION)]
    pub(crate) org: String,
}

#[derive(Subcommand)]
pub enum AliasCommand {
    /// Point an alias at a ready model (creating it when needed): `alias set iris prod 4`,
    /// or split its traffic: `alias set iris prod 4 --canary 5 --percent 10`.
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
        /// Move it even though the model's API differs from the current target's (or the
        /// canary's from the model's).
        #[arg(long)]
        force: bool,
        /// Split the alias's traffic: this model number answers --percent of the requests
        /// of `serve REPOSITORY:ALIAS` (without it, a move ends any split).
        #[arg(long, requires = "percent")]
        canary: Option<u64>,
        /// The canary's share of requests, in whole percents from 0 to 100.
        #[arg(long, requires = "canary", value_parser = clap::value_parser!(u8).range(0..=100))]
        percent: Option<u8>,
        /// Why, recorded in the alias's history.
        #[arg(long)]
        reason: Option<String>,
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

#[derive(Subcommand)]
pub enum TokenCommand {
    /// Create a token for one organization and print it (it is stored hashed: save it now).
    Create {
        #[command(flatten)]
        storage: StorageArgs,
        /// The organization the token is for.
        #[arg(long)]
        org: String,
        /// What it is for (`ci`, `alice-laptop`): shown by `token list` and in the audit log.
        #[arg(long, default_value = "unnamed")]
        name: String,
        /// How long it works (`90d`, `12h`, `30m`); without it, until revoked.
        #[arg(long, value_parser = parse_lifetime, value_name = "DURATION")]
        expires: Option<std::time::Duration>,
        /// Only these repositories, comma-separated names or globs (`iris,vision-*`);
        /// without it, every repository of the organization.
        #[arg(long, value_delimiter = ',', value_name = "GLOBS")]
        repos: Vec<String>,
        /// Read only: list and download (the default).
        #[arg(long, conflicts_with_all = ["write", "admin"])]
        read: bool,
        /// Read, and register and move aliases.
        #[arg(long, conflicts_with = "admin")]
        write: bool,
        /// Write, and delete models and repositories, and read the audit log.
        #[arg(long)]
        admin: bool,
    },
    /// List the tokens (of one organization): id, name, right, repositories, created,
    /// expires, last used, and whether revoked or expired. Never prints a token.
    List {
        #[command(flatten)]
        storage: StorageArgs,
        /// Only this organization's.
        #[arg(long)]
        org: Option<String>,
        /// Print JSON, for machines.
        #[arg(long)]
        json: bool,
    },
    /// Revoke a token for good (by the id `token list` shows): refused from the next
    /// request on, on every replica.
    Revoke {
        #[command(flatten)]
        storage: StorageArgs,
        /// The token's id.
        id: String,
    },
}

/// `--expires`: a duration such as `90d`, `12h` or `30m`.
fn parse_lifetime(text: &str) -> Result<std::time::Duration, String> {
    humantime::parse_duration(text)
        .map_err(|e| format!("`{text}` is not a duration ({e}); write `90d`, `12h` or `30m`"))
        .and_then(|d| match d.is_zero() {
            true => Err("a token that expires at once is of no use: give a duration over zero".into()),
            false => Ok(d),
        })
}

/// `audit --since`: an RFC 3339 time, or a duration back from now (`24h`).
fn parse_since(text: &str) -> Result<time::OffsetDateTime, String> {
    if let Ok(at) = time::OffsetDateTime::parse(text, &time::format_description::well_known::Rfc3339) {
        return Ok(at);
    }
    humantime::parse_duration(text).map(|ago| time::OffsetDateTime::now_utc() - ago).map_err(|_| {
        format!("`{text}` is neither a time (2026-12-01T00:00:00Z) nor a duration back from now (24h, 7d)")
    })
}

/// A share as a percent: `1%`, `1` or `0.5%` (0.01, 0.01, 0.005).
fn parse_percent(text: &str) -> Result<f64, String> {
    let number = text.strip_suffix('%').unwrap_or(text).trim();
    match number.parse::<f64>() {
        Ok(p) if (0.0..=100.0).contains(&p) => Ok(p / 100.0),
        _ => Err(format!("`{text}` is not a percent from 0 to 100 (e.g. 1%)")),
    }
}

/// What `runner-registry rollout` does, and its limits (see [`crate::rollout::Plan`]).
#[derive(clap::Args)]
pub struct RolloutArgs {
    /// The repository.
    repository: String,
    /// The alias (it points at the model to roll out from).
    alias: String,
    /// The model number to roll out.
    #[arg(long)]
    to: u64,
    /// The canary's share at each step, rising; 100 promotes it.
    #[arg(long, value_delimiter = ',', default_value = "5,25,50,100")]
    steps: Vec<u8>,
    /// How long each step runs before it is judged (`60s`, `5m`).
    #[arg(long, default_value = "60s", value_parser = humantime::parse_duration)]
    every: std::time::Duration,
    /// The largest share of the canary's requests that may fail (5xx) in a step.
    #[arg(long, default_value = "1%", value_parser = parse_percent)]
    max_error_rate: f64,
    /// The largest ratio of the canary's p99 latency to the model's in a step.
    #[arg(long)]
    max_p99_ratio: Option<f64>,
    /// Requests the canary must answer in a step before it is judged (the step runs on
    /// until it has them).
    #[arg(long, default_value_t = 100)]
    min_requests: u64,
    /// How long a step may wait for those requests before the canary, which cannot be
    /// judged, is rolled back (`30m`, `2h`).
    #[arg(long, default_value = "30m", value_parser = humantime::parse_duration)]
    step_timeout: std::time::Duration,
    /// A serve following the alias (repeat for each replica): its /metrics are read.
    #[arg(long = "serve", value_name = "URL")]
    serves: Vec<String>,
    /// The serves' API key.
    #[arg(long, env = "RUNNER_SERVE_API_KEY")]
    serve_api_key: Option<String>,
}

impl RolloutArgs {
    /// The plan for the alias of `organization` these arguments describe.
    pub(crate) fn plan(self, organization: String) -> crate::rollout::Plan {
        crate::rollout::Plan {
            organization,
            repository: self.repository,
            alias: self.alias,
            to: self.to,
            steps: self.steps,
            every: self.every,
            max_error_rate: self.max_error_rate,
            max_p99_ratio: self.max_p99_ratio,
            min_requests: self.min_requests,
            step_timeout: self.step_timeout,
            serves: self.serves,
            api_key: self.serve_api_key,
        }
    }
}
