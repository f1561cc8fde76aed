//! ONNX Runtime itself: finding its library at run time, the one environment of the
//! process, and the options sessions are built with.

use std::path::{Path, PathBuf};
use std::sync::OnceLock;

use ort::environment::Environment;
use ort::session::builder::{GraphOptimizationLevel, SessionBuilder};
use ort::session::Session;
use runner_core::{Error, Result};

use crate::tensor::onnx_error;

/// The path of `libonnxruntime.so` to load, when set (ort's own variable).
pub const LIBRARY_ENV: &str = "ORT_DYLIB_PATH";
/// Intra-op threads of each session (default 1: the server runs requests in parallel
/// already, on as many sessions as it has threads).
pub const THREADS_ENV: &str = "RUNNER_ONNX_THREADS";
/// The execution providers to try, in order: `cuda`, `cpu` (default `cuda,cpu`).
pub const PROVIDERS_ENV: &str = "RUNNER_ONNX_PROVIDERS";
/// How many sessions of one model may run at once (default: the machine's cores).
pub const SESSIONS_ENV: &str = "RUNNER_ONNX_SESSIONS";
/// The ONNX Runtime minor version this crate is built for (1.31.x).
pub const ONNX_RUNTIME: &str = "1.31";

/// Where ONNX Runtime is looked for, in order, when [`LIBRARY_ENV`] is not set: the
/// environment `scripts/torch-env.sh` makes (`$VIRTUAL_ENV`), then a `.venv` in the
/// working directory, the executable's directory, or any of their parents.
const LINK: &str = "onnxruntime-lib/libonnxruntime.so";

/// The process's ONNX Runtime environment, loaded on first use. A library that is
/// missing or of another version is an error saying which file was tried and how to
/// install the right one; it is remembered, so every later load says the same.
pub fn environment() -> Result<&'static Environment> {
    static ENVIRONMENT: OnceLock<std::result::Result<Environment, String>> = OnceLock::new();
    ENVIRONMENT.get_or_init(load).as_ref().map_err(|e| Error::msg(e.clone()))
}

fn load() -> std::result::Result<Environment, String> {
    let path = library()?;
    let builder = ort::init_from(&path).map_err(|e| {
        format!(
            "cannot load ONNX Runtime from {}: {e}; runner-onnx needs ONNX Runtime {ONNX_RUNTIME}.x: run `scripts/torch-env.sh` (it installs PyPI onnxruntime into .venv) or set {LIBRARY_ENV} to a libonnxruntime.so of version {ONNX_RUNTIME}",
            path.display()
        )
    })?;
    let environment = builder.with_name("runner").build().map_err(|e| format!("ONNX Runtime: {e}"))?;
    // ONNX Runtime's own log (every allocation, at its info level) says what tracing's
    // warnings and errors need; the rest is noise in a server's log.
    environment.set_log_level(ort::logging::LogLevel::Warning);
    tracing::info!(library = %path.display(), "ONNX Runtime loaded");
    Ok(environment)
}

/// The library to load: [`LIBRARY_ENV`], or the first of the usual places that exists.
fn library() -> std::result::Result<PathBuf, String> {
    if let Some(path) = std::env::var_os(LIBRARY_ENV).filter(|p| !p.is_empty()) {
        let path = PathBuf::from(path);
        return if path.is_file() {
            Ok(path)
        } else {
            Err(format!(
                "{LIBRARY_ENV} is {}, which is not a file; point it at libonnxruntime.so (ONNX Runtime {ONNX_RUNTIME}.x, from PyPI onnxruntime) or unset it",
                path.display()
            ))
        };
    }
    let candidates = candidates();
    candidates.iter().find(|p| p.is_file()).cloned().ok_or_else(|| {
        let tried: Vec<String> = candidates.iter().map(|p| p.display().to_string()).collect();
        format!(
            "ONNX Runtime was not found (looked for {}); run `scripts/torch-env.sh` to install PyPI onnxruntime=={ONNX_RUNTIME}.* into .venv, or set {LIBRARY_ENV} to its libonnxruntime.so",
            tried.join(", ")
        )
    })
}

fn candidates() -> Vec<PathBuf> {
    let mut candidates = Vec::new();
    if let Some(venv) = std::env::var_os("VIRTUAL_ENV") {
        candidates.push(Path::new(&venv).join(LINK));
    }
    let starts =
        [std::env::current_dir().ok(), std::env::current_exe().ok().and_then(|e| e.parent().map(Path::to_path_buf))];
    for start in starts.into_iter().flatten() {
        for dir in start.ancestors() {
            let candidate = dir.join(".venv").join(LINK);
            if !candidates.contains(&candidate) {
                candidates.push(candidate);
            }
        }
    }
    candidates
}

/// An execution provider sessions may run on.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Provider {
    /// NVIDIA GPUs, with `onnxruntime-gpu` (its library has the CUDA provider) and a GPU.
    Cuda,
    /// The CPU: always there.
    Cpu,
}

/// How sessions are built: graph optimisation, threads, and the execution providers to
/// try in order. [`SessionOptions::from_env`] reads [`THREADS_ENV`], [`PROVIDERS_ENV`]
/// and [`SESSIONS_ENV`].
#[derive(Debug, Clone)]
pub struct SessionOptions {
    /// Graph optimisation level (default: all).
    pub optimization: GraphOptimizationLevel,
    /// Intra-op threads of each session.
    pub intra_threads: usize,
    /// Inter-op threads of each session (used by graphs with parallel branches).
    pub inter_threads: usize,
    /// The providers to try, in order; the CPU is always the last resort.
    pub providers: Vec<Provider>,
    /// How many sessions of one model may run at once.
    pub sessions: usize,
}

impl Default for SessionOptions {
    fn default() -> SessionOptions {
        SessionOptions {
            optimization: GraphOptimizationLevel::All,
            intra_threads: 1,
            inter_threads: 1,
            providers: vec![Provider::Cuda, Provider::Cpu],
            sessions: std::thread::available_parallelism().map_or(1, usize::from),
        }
    }
}

impl SessionOptions {
    /// The defaults, changed by the environment's variables; a value that does not parse
    /// is an error naming it.
    pub fn from_env() -> Result<SessionOptions> {
        let mut options = SessionOptions::default();
        let number = |name: &str| -> Result<Option<usize>> {
            match std::env::var(name) {
                Ok(v) => v
                    .trim()
                    .parse::<usize>()
                    .ok()
                    .filter(|n| *n > 0)
                    .map(Some)
                    .ok_or_else(|| Error::msg(format!("{name}=`{v}` is not a positive whole number"))),
                Err(_) => Ok(None),
            }
        };
        if let Some(n) = number(THREADS_ENV)? {
            options.intra_threads = n;
        }
        if let Some(n) = number(SESSIONS_ENV)? {
            options.sessions = n;
        }
        if let Ok(list) = std::env::var(PROVIDERS_ENV) {
            options.providers = list
                .split(',')
                .map(|p| match p.trim().to_ascii_lowercase().as_str() {
                    "cuda" => Ok(Provider::Cuda),
                    "cpu" => Ok(Provider::Cpu),
                    other => Err(Error::msg(format!(
                        "{PROVIDERS_ENV} names `{other}`, which is not a provider; use `cuda`, `cpu` or `cuda,cpu`"
                    ))),
                })
                .collect::<Result<_>>()?;
        }
        Ok(options)
    }

    /// Builds a session of the graph at `path` (external data files beside it). Returns
    /// it with the provider it runs on.
    pub(crate) fn session(&self, path: &Path) -> Result<(Session, Provider)> {
        let environment = environment()?;
        let (builder, provider) = self.builder(environment)?;
        let session = { builder }.commit_from_file(path).map_err(|e| {
            Error::msg(format!(
                "cannot load the ONNX model {}: {e}; is it an ONNX file (torch.onnx.export, skl2onnx)?",
                path.display()
            ))
        })?;
        Ok((session, provider))
    }

    fn builder(&self, environment: &Environment) -> Result<(SessionBuilder, Provider)> {
        let mut builder = Session::builder(environment)
            .map_err(onnx_error)?
            .with_optimization_level(self.optimization)
            .map_err(onnx_error)?
            .with_intra_threads(self.intra_threads)
            .map_err(onnx_error)?
            .with_inter_threads(self.inter_threads)
            .map_err(onnx_error)?;
        for provider in &self.providers {
            match provider {
                Provider::Cpu => return Ok((builder, Provider::Cpu)),
                Provider::Cuda => match cuda(builder) {
                    (with_cuda, None) => return Ok((with_cuda, Provider::Cuda)),
                    (without, Some(reason)) => {
                        tracing::info!(reason = %reason, "running ONNX models on the CPU, not CUDA");
                        builder = without;
                    }
                },
            }
        }
        Ok((builder, Provider::Cpu))
    }
}

/// The builder with the CUDA provider (`None`), or back without it and why.
fn cuda(builder: SessionBuilder) -> (SessionBuilder, Option<String>) {
    use ort::ep::ExecutionProvider;
    match ort::ep::CUDA::is_available() {
        Ok(true) => {}
        Ok(false) => {
            let reason = "this ONNX Runtime has no CUDA execution provider (install onnxruntime-gpu for GPUs)";
            return (builder, Some(reason.to_string()));
        }
        Err(e) => return (builder, Some(format!("cannot ask ONNX Runtime for its providers: {e}"))),
    }
    match builder.with_execution_providers([ort::ep::CUDA::default().build().error_on_failure()]) {
        Ok(builder) => (builder, None),
        Err(e) => {
            let reason = format!("the CUDA execution provider did not start (no GPU, or no CUDA libraries): {e}");
            (e.recover(), Some(reason))
        }
    }
}
