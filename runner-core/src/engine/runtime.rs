//! The engine: limits and metrics shared by the models it serves.

use std::sync::Arc;

use super::endpoint::Endpoint;
use super::limits::Limits;
use super::metrics::Metrics;
use super::options::EngineOptions;
use crate::load::DynModel;

/// Shared limits and metrics for every model it serves. Needs a tokio runtime for
/// [`Endpoint::call`] and [`Endpoint::v2_infer`].
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

    /// Puts a loaded model behind the engine, under `name` in metrics.
    pub fn serve(&self, model: Box<dyn DynModel>, name: &str) -> Arc<Endpoint> {
        Endpoint::new(model, name, &self.options, self.limits.clone(), &self.metrics)
    }

    /// Every metric, in the OpenMetrics text format.
    pub fn encode_metrics(&self) -> String {
        self.metrics.encode()
    }
}
