//! How the server runs.

use std::net::SocketAddr;
use std::time::Duration;

use crate::engine::EngineOptions;

/// How the server runs. `Default` gives the documented defaults.
#[derive(Debug, Clone)]
pub struct ServeOptions {
    /// Address to listen on (default `127.0.0.1:8000`).
    pub addr: SocketAddr,
    /// Where to speak the KServe V2 protocol over gRPC as well (feature `grpc`; default
    /// off). It shares the models, admission, batching, limits and metrics of HTTP, and
    /// shuts down with it.
    pub grpc_addr: Option<SocketAddr>,
    /// Pipelines running at once (default: the number of CPUs).
    pub concurrency: usize,
    /// Requests that may wait for a free slot; past that the server answers 503 with
    /// `Retry-After` (default 1024).
    pub queue: usize,
    /// Per-request time limit, queueing included; past it the server answers 504
    /// (default 30 s).
    pub timeout: Duration,
    /// Largest request body in bytes; larger ones get 413 (default 16 MiB).
    pub body_limit: usize,
    /// When set, every route but `/livez` and `/readyz` requires
    /// `Authorization: Bearer KEY` (or `X-API-Key: KEY`).
    pub api_key: Option<String>,
    /// Overrides the runners' `max_batch_size`, and turns batching on for runners that
    /// can batch ([`Runner::CAN_BATCH`](crate::Runner::CAN_BATCH)) but do not by default.
    pub max_batch_size: Option<usize>,
    /// Overrides the runners' `max_delay_ms`.
    pub max_delay: Option<Duration>,
    /// Pipelines whose average CPU time, and average time off the CPU (waiting), both
    /// stay under this run on the async worker instead of the blocking pool, where the
    /// thread hop would cost more than the work (tokio's rule of thumb: at most 10 to 100 µs
    /// between awaits). An inline call over 50 ms, or calls over 1 ms becoming more than
    /// 5% of recent ones, send the pipeline back to the pool for good. Zero: always the
    /// pool (default 100 µs).
    pub inline_threshold: Duration,
    /// How often a model served through an alias (`serve iris:prod`) asks the registry
    /// where the alias points; when it moved, the new model is loaded in the background
    /// and swapped in (default 5 s).
    pub follow_interval: Duration,
    /// Follow `repository:latest` as an alias is followed: a newer number registered is
    /// loaded in the background and swapped in, unless its API differs from the one served
    /// (`latest` has no `--force`: move an alias for that). Off by default: `latest` is
    /// resolved once, at start.
    pub follow_latest: bool,
    /// The request header whose value keeps one caller on one side of a traffic split
    /// (`x-user-id`): the choice is a pure function of it and the split, the same on every
    /// replica. Requests without it take turns (default: none; every request takes turns).
    pub sticky_header: Option<axum::http::HeaderName>,
    /// Shadow a split alias's canary instead of letting it answer: the model answers every
    /// request, and the canary's share is copied to the canary, its answer compared and
    /// discarded (`runner_shadow_total{outcome="agree|disagree|error"}`; its latency in its
    /// own metrics). Only `/predict` routes are copied (default off).
    pub shadow: bool,
    /// Timeouts for slow clients and the cap on open connections, for HTTP and gRPC alike.
    pub connections: super::ConnectionLimits,
    /// Which models the server may load, and when: only those named at start (the
    /// default), or others on request through the repository API, or every repository of
    /// the organization.
    pub repository_mode: RepositoryMode,
    /// The organization whose repositories the repository API lists and loads (default
    /// `default`).
    pub organization: String,
    /// At most this many models loaded at once: loading one more first unloads the least
    /// recently used idle one (needs a [`RepositoryMode`] that loads at run time).
    pub max_loaded_models: Option<usize>,
    /// At most this many bytes of models resident (each measured as the growth of the
    /// process's resident memory while it loaded): past it, the least recently used idle
    /// models are unloaded (needs a [`RepositoryMode`] that loads at run time).
    pub memory_budget: Option<u64>,
    /// A request for a model of the registry that is not loaded loads it and waits, instead
    /// of a 404 (the wait is in `runner_load_on_demand_seconds`).
    pub load_on_demand: bool,
}

/// Which models a server loads, and when: `serve --repository-mode`, in the spirit of
/// Triton's `--model-control-mode`. The repository API (`POST /v2/repository/index`,
/// `.../models/{name}/load`, `.../unload`, and gRPC `RepositoryIndex`,
/// `RepositoryModelLoad`, `RepositoryModelUnload`) lists the organization's repositories
/// in every mode, and loads and unloads in `explicit` and `all`.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
#[cfg_attr(feature = "args", derive(clap::ValueEnum))]
pub enum RepositoryMode {
    /// The models named at start, for the server's life.
    #[default]
    Startup,
    /// The models named at start (none is fine); others are loaded and unloaded on request.
    Explicit,
    /// Every repository of the organization at its latest number, and new repositories as
    /// they appear (looked for every `follow_interval`); loaded and unloaded on request
    /// too. A name unloaded on request is not loaded again until asked.
    All,
}

impl RepositoryMode {
    /// Whether models are loaded and unloaded while the server runs.
    pub fn loads_at_run_time(self) -> bool {
        self != RepositoryMode::Startup
    }
}

impl ServeOptions {
    /// The engine's part of these options.
    pub fn engine(&self) -> EngineOptions {
        EngineOptions {
            concurrency: self.concurrency,
            queue: self.queue,
            max_batch_size: self.max_batch_size,
            max_delay: self.max_delay,
            inline_threshold: self.inline_threshold,
        }
    }
}

impl Default for ServeOptions {
    fn default() -> Self {
        ServeOptions {
            addr: SocketAddr::from(([127, 0, 0, 1], 8000)),
            grpc_addr: None,
            concurrency: std::thread::available_parallelism().map_or(1, |n| n.get()),
            queue: 1024,
            timeout: Duration::from_secs(30),
            body_limit: 16 << 20,
            api_key: None,
            max_batch_size: None,
            max_delay: None,
            inline_threshold: Duration::from_micros(100),
            follow_interval: Duration::from_secs(5),
            follow_latest: false,
            sticky_header: None,
            shadow: false,
            connections: super::ConnectionLimits::default(),
            repository_mode: RepositoryMode::Startup,
            organization: crate::names::DEFAULT_ORGANIZATION.to_string(),
            max_loaded_models: None,
            memory_budget: None,
            load_on_demand: false,
        }
    }
}
