//! Entry points of the `register` and `serve` binaries: a user's binary is
//! `fn main() -> ExitCode { runner_core::cli::register_main() }` (or `serve_main`) in a
//! crate that links the runners.

use std::process::ExitCode;
use std::time::Instant;

use clap::Parser;

use crate::catalog::{runners, RegisterOptions, RunnerEntry};
use crate::names::ModelRef;
use crate::registry::{open_registry, registry_location, REGISTRY_ENV};
use crate::serve::{serve, shutdown_signal, ServeOptions};
use crate::DEFAULT_REGISTRY;

/// Register models with the runners compiled into this binary, each with the defaults
/// declared in its `#[runner(...)]` (repository, requirements, artifacts, model builder).
#[derive(Debug, Parser)]
#[command(name = "register", version)]
pub struct RegisterArgs {
    /// Register only these runners (default: every runner in this binary).
    #[arg(value_name = "RUNNER")]
    pub runners: Vec<String>,

    /// Registry: a directory (created when missing), or a registry server's URL (token
    /// from RUNNER_REGISTRY_TOKEN).
    #[arg(long, env = REGISTRY_ENV, default_value = DEFAULT_REGISTRY, value_name = "PATH|URL")]
    pub registry: String,

    /// Organization to register into.
    #[arg(long, env = "RUNNER_ORGANIZATION", value_name = "ORG")]
    pub organization: Option<String>,

    /// Repository to register into (default: each runner's declared repository; one runner only).
    #[arg(long, value_name = "NAME")]
    pub repository: Option<String>,

    /// Re-register this existing model number instead of creating the next one (one runner only).
    #[arg(long, value_name = "N")]
    pub number: Option<u64>,

    /// List the runners in this binary and their defaults; register nothing.
    #[arg(long)]
    pub list: bool,
}

/// Runs the `register` command line. Prints what it registered; exits 1 if any
/// registration failed, 2 on bad arguments.
pub fn register_main() -> ExitCode {
    let args = RegisterArgs::parse();
    match register_command(&args, &mut std::io::stdout()) {
        Ok(true) => ExitCode::SUCCESS,
        Ok(false) => ExitCode::from(1),
        Err(message) => {
            eprintln!("error: {message}");
            ExitCode::from(2)
        }
    }
}

/// The `register` command on parsed arguments, writing its report to `out`. Returns
/// whether every registration succeeded; `Err` for arguments that cannot be acted on.
pub fn register_command(args: &RegisterArgs, out: &mut dyn std::io::Write) -> Result<bool, String> {
    let all = runners();
    if let Some(pair) = all.windows(2).find(|w| w[0].name == w[1].name) {
        return Err(format!(
            "two runners are named `{}` ({} and {}); give one another #[runner(name = ...)]",
            pair[0].name,
            (pair[0].rust_type)(),
            (pair[1].rust_type)()
        ));
    }
    let selected: Vec<&RunnerEntry> = if args.runners.is_empty() {
        all.clone()
    } else {
        let mut selected = Vec::new();
        for name in &args.runners {
            match all.iter().find(|r| r.name == name) {
                Some(entry) => selected.push(*entry),
                None => {
                    let names: Vec<&str> = all.iter().map(|r| r.name).collect();
                    return Err(format!("no runner named `{name}` in this binary (it has: {})", names.join(", ")));
                }
            }
        }
        selected
    };
    if selected.is_empty() {
        return Err("this binary contains no runners; link the crate that defines them".into());
    }
    let w = |e: std::io::Error| e.to_string();
    if args.list {
        writeln!(out, "{:<16} {:<16} {:<8} TYPE", "RUNNER", "REPOSITORY", "BUILDER").map_err(w)?;
        for entry in &selected {
            let builder = if (entry.has_builder)() { "yes" } else { "no" };
            writeln!(
                out,
                "{:<16} {:<16} {:<8} {}",
                entry.name,
                (entry.default_repository)(),
                builder,
                (entry.rust_type)()
            )
            .map_err(w)?;
        }
        return Ok(true);
    }
    if (args.number.is_some() || args.repository.is_some()) && selected.len() != 1 {
        return Err("--number and --repository apply to one runner: name it, e.g. `register iris --number 2`".into());
    }
    let location = registry_location(Some(&args.registry));
    let registry = open_registry(&location).map_err(|e| e.to_string())?;
    let options = RegisterOptions {
        number: args.number,
        organization: args.organization.clone(),
        repository: args.repository.clone(),
    };
    writeln!(out, "registry: {}", registry.location()).map_err(w)?;
    writeln!(out, "{:<16} {:<24} {:>6} {:>12} {:>9}", "RUNNER", "MODEL", "FILES", "BYTES", "SECONDS").map_err(w)?;
    let mut ok = true;
    for entry in selected {
        let started = Instant::now();
        match entry.register(registry.as_ref(), &options) {
            Ok(registered) => writeln!(
                out,
                "{:<16} {:<24} {:>6} {:>12} {:>9.3}",
                entry.name,
                registered.id().to_string(),
                registered.manifest.files.len(),
                registered.bytes(),
                started.elapsed().as_secs_f64()
            )
            .map_err(w)?,
            // Registering every runner skips one whose model cannot be built here.
            Err(crate::Error::Unavailable(why)) if args.runners.is_empty() => {
                writeln!(out, "{:<16} SKIPPED: {why}", entry.name).map_err(w)?;
            }
            Err(e) => {
                ok = false;
                writeln!(out, "{:<16} FAILED: {e}", entry.name).map_err(w)?;
            }
        }
    }
    Ok(ok)
}

/// Serve registered models over HTTP: `serve iris:latest`, or several models, each at
/// `/models/{repository}/predict` (and `/predict` when only one is served); KServe V2 at
/// `/v2`, and over gRPC with `--grpc-addr`.
#[derive(Debug, Parser)]
#[command(name = "serve", version)]
pub struct ServeArgs {
    /// Models to serve: `repository:number`, `repository:latest`, `repository:alias` (followed:
    /// when the alias moves, the new model is loaded and swapped in without dropping a
    /// request) or `organization/repository:number`.
    #[arg(required_unless_present = "repository_mode", value_name = "MODEL")]
    pub models: Vec<String>,

    /// Registry: a directory, or a registry server's URL (token from
    /// RUNNER_REGISTRY_TOKEN).
    #[arg(long, env = REGISTRY_ENV, default_value = DEFAULT_REGISTRY, value_name = "PATH|URL")]
    pub registry: String,

    /// Address to listen on (port 0 picks a free port).
    #[arg(long, env = "RUNNER_ADDR", default_value = "127.0.0.1:8000")]
    pub addr: std::net::SocketAddr,

    /// Also speak the KServe V2 protocol over gRPC on this address (Triton's port is 8001;
    /// port 0 picks a free port). Off by default.
    #[arg(long, env = "RUNNER_GRPC_ADDR", value_name = "ADDR")]
    pub grpc_addr: Option<std::net::SocketAddr>,

    /// Pipelines running at once [default: the number of CPUs].
    #[arg(long, env = "RUNNER_CONCURRENCY", value_parser = clap::value_parser!(u32).range(1..))]
    pub concurrency: Option<u32>,

    /// Requests that may wait for a slot; past that the server answers 503 with Retry-After.
    #[arg(long, default_value_t = 1024)]
    pub queue: usize,

    /// Per-request time limit in milliseconds, queueing included (504 past it).
    #[arg(long, default_value_t = 30_000, value_name = "MS")]
    pub timeout_ms: u64,

    /// Largest request body in bytes (413 past it).
    #[arg(long, default_value_t = 16 << 20, value_name = "BYTES")]
    pub body_limit: usize,

    /// Require `Authorization: Bearer KEY` on every route but /livez and /readyz.
    #[arg(long, env = "RUNNER_API_KEY", hide_env_values = true)]
    pub api_key: Option<String>,

    /// Batch up to this many requests per predict: overrides the runners' max_batch_size,
    /// and turns batching on for runners that can batch but do not by default (a backend).
    #[arg(long, value_parser = clap::value_parser!(u32).range(1..))]
    pub max_batch_size: Option<u32>,

    /// Override the runners' max_delay_ms (default 5 when batching is turned on here).
    #[arg(long, value_name = "MS")]
    pub max_delay_ms: Option<u64>,

    /// Pipelines averaging under this many microseconds of CPU time (and of waiting) run
    /// on the async worker rather than the blocking pool (0: always the pool).
    #[arg(long, default_value_t = 100, value_name = "US")]
    pub inline_threshold_us: u64,

    /// How often a model served through an alias checks where the alias points, in
    /// milliseconds.
    #[arg(long, default_value_t = 5_000, value_name = "MS", value_parser = clap::value_parser!(u64).range(1..))]
    pub follow_interval_ms: u64,

    /// Follow `repository:latest` as aliases are followed: a newer number is loaded and
    /// swapped in without a failed request, unless its API differs from the one served.
    #[arg(long)]
    pub follow_latest: bool,

    /// The request header that keeps a caller on one side of a traffic split (`alias set
    /// iris prod 4 --canary 5 --percent 10`): a pure function of its value and the split,
    /// the same on every replica. Requests without it take turns.
    #[arg(long, value_name = "HEADER")]
    pub sticky_header: Option<crate::serve::http::HeaderName>,

    /// Shadow a split alias's canary: the model answers every request, and the canary's
    /// share is copied to the canary, whose answer is compared (runner_shadow_total) and
    /// discarded.
    #[arg(long)]
    pub shadow: bool,

    /// `--header-timeout`, `--body-timeout`, `--max-connections`.
    #[command(flatten)]
    pub connections: crate::serve::ConnectionArgs,

    /// Which models the server loads, and when: `startup`, the models named, for the
    /// server's life; `explicit`, those named (none is fine) and others loaded and unloaded
    /// through the repository API (`POST /v2/repository/models/{name}/load`, `.../unload`,
    /// `POST /v2/repository/index`; gRPC too); `all`, every repository of the organization
    /// and new ones as they appear, loaded and unloaded through the API as well.
    #[arg(long, value_enum, default_value_t = crate::serve::RepositoryMode::Startup)]
    pub repository_mode: crate::serve::RepositoryMode,

    /// The organization the repository API lists and loads from.
    #[arg(long, env = "RUNNER_ORGANIZATION", default_value = crate::names::DEFAULT_ORGANIZATION, value_name = "ORG")]
    pub organization: String,

    /// At most this many models loaded at once; one more unloads the least recently used
    /// idle one first (with --repository-mode explicit or all).
    #[arg(long, value_name = "N", value_parser = clap::value_parser!(u64).range(1..))]
    pub max_loaded_models: Option<u64>,

    /// At most this many bytes of models resident (each measured while it loads); past it
    /// the least recently used idle models are unloaded (with --repository-mode explicit or all).
    #[arg(long, value_name = "BYTES", value_parser = clap::value_parser!(u64).range(1..))]
    pub memory_budget: Option<u64>,

    /// A request for a registered model that is not loaded loads it and waits, rather than
    /// answering 404 (with --repository-mode explicit or all).
    #[arg(long)]
    pub load_on_demand: bool,

    /// Async runtime worker threads [default: the number of CPUs].
    #[arg(long, value_parser = clap::value_parser!(u32).range(1..))]
    pub workers: Option<u32>,
}

impl ServeArgs {
    /// The server options these arguments describe.
    pub fn options(&self) -> ServeOptions {
        let defaults = ServeOptions::default();
        ServeOptions {
            addr: self.addr,
            grpc_addr: self.grpc_addr,
            concurrency: self.concurrency.map_or(defaults.concurrency, |n| n as usize),
            queue: self.queue,
            timeout: std::time::Duration::from_millis(self.timeout_ms),
            body_limit: self.body_limit,
            api_key: self.api_key.clone().filter(|k| !k.is_empty()),
            max_batch_size: self.max_batch_size.map(|n| n as usize),
            max_delay: self.max_delay_ms.map(std::time::Duration::from_millis),
            inline_threshold: std::time::Duration::from_micros(self.inline_threshold_us),
            follow_interval: std::time::Duration::from_millis(self.follow_interval_ms),
            follow_latest: self.follow_latest,
            sticky_header: self.sticky_header.clone(),
            shadow: self.shadow,
            connections: self.connections.limits(),
            repository_mode: self.repository_mode,
            organization: self.organization.clone(),
            max_loaded_models: self.max_loaded_models.map(|n| n as usize),
            memory_budget: self.memory_budget,
            load_on_demand: self.load_on_demand,
        }
    }
}

/// Runs the `serve` command line until Ctrl-C or SIGTERM. Exits 1 when a model cannot be
/// served (naming it and why), 2 on bad arguments. Logs go to stderr (`RUST_LOG`, default
/// `info`; `RUST_LOG=runner_core=debug` logs every request).
pub fn serve_main() -> ExitCode {
    let args = ServeArgs::parse();
    let _ = tracing_subscriber::fmt()
        .with_writer(std::io::stderr)
        .with_ansi(std::io::IsTerminal::is_terminal(&std::io::stderr()))
        .with_env_filter(
            tracing_subscriber::EnvFilter::try_from_default_env()
                .unwrap_or_else(|_| tracing_subscriber::EnvFilter::new("info")),
        )
        .try_init();
    let mut models = Vec::new();
    for model in &args.models {
        match model.parse::<ModelRef>() {
            Ok(model) => models.push(model),
            Err(e) => {
                eprintln!("error: {e}");
                return ExitCode::from(2);
            }
        }
    }
    let registry = match open_registry(&registry_location(Some(&args.registry))) {
        Ok(registry) => std::sync::Arc::from(registry),
        Err(e) => {
            eprintln!("error: {e}");
            return ExitCode::from(1);
        }
    };
    let options = args.options();
    let mut runtime = tokio::runtime::Builder::new_multi_thread();
    if let Some(workers) = args.workers {
        runtime.worker_threads(workers as usize);
    }
    let runtime = runtime
        .max_blocking_threads(options.concurrency + 16)
        .enable_all()
        .build()
        .expect("building the async runtime");
    match runtime.block_on(serve(registry, models, options, shutdown_signal())) {
        Ok(()) => ExitCode::SUCCESS,
        Err(e) => {
            eprintln!("error: {e}");
            ExitCode::from(1)
        }
    }
}
