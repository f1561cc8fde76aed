//! Prometheus metrics of the engine and its front ends: request counts by status,
//! latency, per-hook time, in-flight requests and batch sizes, per model and model
//! number (`version`), and the swaps of models that follow an alias.

use std::sync::Arc;

use prometheus_client::encoding::EncodeLabelSet;
use prometheus_client::metrics::counter::Counter;
use prometheus_client::metrics::family::Family;
use prometheus_client::metrics::gauge::Gauge;
use prometheus_client::metrics::histogram::{exponential_buckets, Histogram};
use prometheus_client::registry::Registry;

#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
struct ModelLabel {
    model: String,
    version: u64,
}

#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
struct StatusLabels {
    model: String,
    version: u64,
    status: u16,
}

#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
struct HookLabels {
    model: String,
    version: u64,
    hook: &'static str,
}

#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
struct NameLabel {
    model: String,
}

#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
struct ShadowLabels {
    model: String,
    version: u64,
    outcome: &'static str,
}

#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
struct SwapLabels {
    model: String,
    outcome: &'static str,
}

fn latency_histogram() -> Histogram {
    // 10 µs .. ~84 s
    Histogram::new(exponential_buckets(1e-5, 2.0, 24))
}

fn batch_histogram() -> Histogram {
    Histogram::new(exponential_buckets(1.0, 2.0, 11))
}

/// The server's metrics registry.
pub struct Metrics {
    registry: Registry,
    requests: Family<StatusLabels, Counter>,
    latency: Family<ModelLabel, Histogram, fn() -> Histogram>,
    hooks: Family<HookLabels, Histogram, fn() -> Histogram>,
    in_flight: Family<ModelLabel, Gauge>,
    batch_size: Family<ModelLabel, Histogram, fn() -> Histogram>,
    serving: Family<NameLabel, Gauge>,
    swaps: Family<SwapLabels, Counter>,
    load_waits: Family<NameLabel, Histogram, fn() -> Histogram>,
    canaries: Family<ModelLabel, Gauge>,
    shadows: Family<ShadowLabels, Counter>,
}

impl Metrics {
    pub(crate) fn new() -> Arc<Metrics> {
        let mut registry = Registry::with_prefix("runner");
        let requests = Family::<StatusLabels, Counter>::default();
        let latency = Family::<ModelLabel, Histogram, fn() -> Histogram>::new_with_constructor(latency_histogram);
        let hooks = Family::<HookLabels, Histogram, fn() -> Histogram>::new_with_constructor(latency_histogram);
        let in_flight = Family::<ModelLabel, Gauge>::default();
        let batch_size = Family::<ModelLabel, Histogram, fn() -> Histogram>::new_with_constructor(batch_histogram);
        registry.register("requests", "Prediction requests by model and HTTP status", requests.clone());
        registry.register("request_duration_seconds", "Prediction request latency", latency.clone());
        registry.register("hook_duration_seconds", "Time spent in each hook", hooks.clone());
        registry.register("in_flight_requests", "Prediction requests being served", in_flight.clone());
        registry.register("batch_size", "Inputs per predict_batch call", batch_size.clone());
        let serving = Family::<NameLabel, Gauge>::default();
        let swaps = Family::<SwapLabels, Counter>::default();
        registry.register("model_number", "The model number each served name answers with", serving.clone());
        registry.register(
            "model_swaps",
            "Models loaded or unloaded while serving: an alias moved (swapped, failed: the old one kept serving, refused: its API differs), or the repository API or the memory budget (loaded, unloaded, evicted)",
            swaps.clone(),
        );
        let load_waits = Family::<NameLabel, Histogram, fn() -> Histogram>::new_with_constructor(latency_histogram);
        registry.register(
            "load_on_demand_seconds",
            "How long requests waited for their model to load (serve --load-on-demand)",
            load_waits.clone(),
        );
        let canaries = Family::<ModelLabel, Gauge>::default();
        registry.register(
            "canary_percent",
            "The share of a split alias's requests its canary (version) answers, or is copied (serve --shadow)",
            canaries.clone(),
        );
        let shadows = Family::<ShadowLabels, Counter>::default();
        registry.register(
            "shadow",
            "Requests copied to a shadowed canary (version): its answer agreed with the model's byte for byte, disagreed, or failed",
            shadows.clone(),
        );
        Arc::new(Metrics {
            registry,
            requests,
            latency,
            hooks,
            in_flight,
            batch_size,
            serving,
            swaps,
            load_waits,
            canaries,
            shadows,
        })
    }

    /// Records `model`'s split: its canary `version` and share, or none (`None` ends the
    /// split of canary `ended`).
    pub(crate) fn canary(&self, model: &str, now: Option<(u64, u8)>, ended: Option<u64>) {
        if let Some(version) = ended {
            self.canaries.remove(&ModelLabel { model: model.to_string(), version });
        }
        if let Some((version, percent)) = now {
            self.canaries.get_or_create(&ModelLabel { model: model.to_string(), version }).set(i64::from(percent));
        }
    }

    /// Counts one request copied to `model`'s shadowed canary `version`: `outcome` is
    /// `agree`, `disagree` or `error`.
    pub(crate) fn shadow(&self, model: &str, version: u64, outcome: &'static str) {
        self.shadows.get_or_create(&ShadowLabels { model: model.to_string(), version, outcome }).inc();
    }

    /// Records that `model` now answers with model number `number`.
    pub(crate) fn serving(&self, model: &str, number: u64) {
        self.serving.get_or_create(&NameLabel { model: model.to_string() }).set(number as i64);
    }

    /// Records that a request waited `seconds` for `model` to load.
    pub(crate) fn load_wait(&self, model: &str, seconds: f64) {
        self.load_waits.get_or_create(&NameLabel { model: model.to_string() }).observe(seconds);
    }

    /// Counts one swap of `model`: `outcome` is `swapped`, `failed` or `refused`.
    pub(crate) fn swap(&self, model: &str, outcome: &'static str) {
        self.swaps.get_or_create(&SwapLabels { model: model.to_string(), outcome }).inc();
    }

    /// Handles for one model number served as `model`, created once so requests do no
    /// label lookups.
    pub(crate) fn model(self: &Arc<Self>, model: &str, version: u64) -> ModelMetrics {
        let label = ModelLabel { model: model.to_string(), version };
        let hook = |hook: &'static str| {
            self.hooks.get_or_create(&HookLabels { model: model.to_string(), version, hook }).clone()
        };
        ModelMetrics {
            model: model.to_string(),
            version,
            metrics: self.clone(),
            ok: self.requests.get_or_create(&StatusLabels { model: model.to_string(), version, status: 200 }).clone(),
            latency: self.latency.get_or_create(&label).clone(),
            in_flight: self.in_flight.get_or_create(&label).clone(),
            batch_size: self.batch_size.get_or_create(&label).clone(),
            parse: hook("parse"),
            preprocess: hook("preprocess_data"),
            predict: hook("predict"),
            postprocess: hook("postprocess_data"),
            serialize: hook("serialize"),
        }
    }

    pub(crate) fn encode(&self) -> String {
        let mut out = String::new();
        prometheus_client::encoding::text::encode(&mut out, &self.registry).expect("writing to a String cannot fail");
        out
    }
}

/// One model's metric handles.
pub struct ModelMetrics {
    model: String,
    version: u64,
    metrics: Arc<Metrics>,
    ok: Counter,
    pub(crate) latency: Histogram,
    pub(crate) in_flight: Gauge,
    pub(crate) batch_size: Histogram,
    pub(crate) parse: Histogram,
    pub(crate) preprocess: Histogram,
    pub(crate) predict: Histogram,
    pub(crate) postprocess: Histogram,
    pub(crate) serialize: Histogram,
}

impl ModelMetrics {
    pub(crate) fn count(&self, status: u16) {
        if status == 200 {
            self.ok.inc();
        } else {
            let labels = StatusLabels { model: self.model.clone(), version: self.version, status };
            self.metrics.requests.get_or_create(&labels).inc();
        }
    }
}
