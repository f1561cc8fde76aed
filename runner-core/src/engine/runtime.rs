//! The engine: limits and metrics shared by the models it serves.

use std::sync::Arc;

use super::endpoint::Endpoint;
use super::limits::Limits;
use super::metrics::Metrics;
use super::options::EngineOptions;
use crate::load::DynModel;

/// Shared limits and metrics for every model it serves. Needs a tokio runtime for
/// [`Endpoint::call`] and [`Endpoint::v2_infer`].
///
/// The HTTP server is one front end over it; an in-process caller is another:
///
/// ```
/// # use runner_core::{runner, register_model, Loaded, LocalRegistry};
/// use runner_core::engine::{Engine, EngineOptions};
/// # #[derive(serde::Serialize, serde::Deserialize)] pub struct Two;
/// # pub struct Double;
/// # #[runner(name = "double")]
/// # impl Double { fn predict(_m: &Two, x: f64) -> f64 { 2.0 * x } }
/// # #[tokio::main(flavor = "current_thread")]
/// # async fn main() -> runner_core::Result<()> {
/// # let dir = tempfile::tempdir().unwrap();
/// # let registry = LocalRegistry::open(dir.path())?;
/// # register_model::<Double>("double").model(Two).register(&registry)?;
/// let engine = Engine::new(EngineOptions { concurrency: 2, ..EngineOptions::default() });
/// let model = Loaded::<Double>::load(&registry, &"double:1".parse()?)?;
/// let endpoint = engine.serve(Box::new(model), "double");
/// let (body, media_type) = endpoint.clone().call("21".into(), None).await?;
/// assert_eq!((&body[..], media_type), (&b"42.0"[..], "application/json"));
/// let err = endpoint.call("\"x\"".into(), None).await.unwrap_err();
/// assert_eq!(err.kind(), runner_core::ErrorKind::InvalidInput);
/// # Ok(()) }
/// ```
#[derive(Clone)]
pub struct Engine {
    options: EngineOptions,
    limits: Arc<Limits>,
    metrics: Arc<Metrics>,
}

impl std::fmt::Debug for Engine {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Engine").field("options", &self.options).finish()
    }
}

impl Engine {
    /// An engine with no models yet.
    pub fn new(options: EngineOptions) -> Engine {
        let limits = Limits::new(options.concurrency, options.queue);
        Engine { options, limits, metrics: Metrics::new() }
    }

    /// Puts a loaded model behind the engine, under `name` (and its model number) in
    /// metrics.
    pub fn serve(&self, model: Box<dyn DynModel>, name: &str) -> Arc<Endpoint> {
        let number = model.manifest().model.number;
        let endpoint = Endpoint::new(model, name, &self.options, self.limits.clone(), &self.metrics);
        self.metrics.serving(name, number);
        endpoint
    }

    /// Puts a loaded model behind the engine as the canary of a split alias served as
    /// `name`: [`Engine::serve`], except that `runner_model_number` keeps naming the model
    /// the alias points at.
    pub fn serve_canary(&self, model: Box<dyn DynModel>, name: &str) -> Arc<Endpoint> {
        Endpoint::new(model, name, &self.options, self.limits.clone(), &self.metrics)
    }

    /// Records the split of the name served as `name`: its canary's number and share now
    /// (`None`: no split), and the canary it replaces, if any.
    pub fn record_split(&self, name: &str, now: Option<(u64, u8)>, before: Option<u64>) {
        self.metrics.canary(name, now, before.filter(|b| now.is_none_or(|(n, _)| n != *b)));
    }

    /// Counts a request copied to the shadowed canary `number` of `name`: `outcome` is
    /// `agree`, `disagree` or `error`.
    pub fn record_shadow(&self, name: &str, number: u64, outcome: &'static str) {
        self.metrics.shadow(name, number, outcome);
    }

    /// Counts a swap of the model served as `name` (`outcome`: `swapped`, `failed`, or `refused` for an API change) and,
    /// when swapped, the number it answers with now.
    pub fn record_swap(&self, name: &str, outcome: &'static str, number: Option<u64>) {
        self.metrics.swap(name, outcome);
        if let Some(number) = number {
            self.metrics.serving(name, number);
        }
    }

    /// Records that a request waited `wait` for the model served as `name` to load.
    pub fn record_load_wait(&self, name: &str, wait: std::time::Duration) {
        self.metrics.load_wait(name, wait.as_secs_f64());
    }

    /// Every metric, in the OpenMetrics text format.
    pub fn encode_metrics(&self) -> String {
        self.metrics.encode()
    }
}
