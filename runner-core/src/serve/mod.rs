//! Serving registered models over HTTP with axum.
//!
//! | route | what |
//! |---|---|
//! | `POST /predict` | the model's pipeline (when one model is served) |
//! | `POST /models/{repository}/predict` | the pipeline of one of the served models |
//! | `GET /models`, `GET /models/{repository}` | served models and their manifests |
//! | `GET /livez` | 200 while the process runs |
//! | `GET /readyz` | 200 once every model is loaded, 503 before |
//! | `GET /metrics` | Prometheus metrics |
//! | `GET /openapi.json` | OpenAPI 3.1 document built from the runners' types |
//! | `/v2/...` | the KServe V2 protocol, for runners on a tensor backend (see [`crate::v2`]) |
//!
//! Errors are JSON: `{"error": {"status": 422, "code": "invalid_input", "message": "..."}}`.

use std::collections::BTreeMap;
use std::future::Future;
use std::net::SocketAddr;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, OnceLock};
use std::time::{Duration, Instant};

use axum::extract::{Path, Request, State};
use axum::http::{header, HeaderMap, HeaderValue, StatusCode};
use axum::middleware::{self, Next};
use axum::response::{IntoResponse, Response};
use axum::routing::{get, post};
use axum::{Json, Router};
use bytes::Bytes;

#[doc(hidden)]
pub mod endpoint;
mod error;
#[doc(hidden)]
pub mod metrics;
#[doc(hidden)]
pub mod observe;
mod openapi;
mod test_client;
mod v2_routes;

/// The request body type of [`TestClient::request`].
pub use axum::body::Body;
/// HTTP types (requests, headers, status codes) for [`TestClient::request`].
pub use axum::http;
pub use error::ApiError;
pub use test_client::{TestClient, TestResponse};

use crate::load::DynModel;
use crate::names::ModelRef;
use crate::registry::Registry;
use crate::{Error, Result};
use endpoint::{Endpoint, Limits};
use metrics::Metrics;

/// How the server runs. `Default` gives the documented defaults.
#[derive(Debug, Clone)]
pub struct ServeOptions {
    /// Address to listen on (default `127.0.0.1:8000`).
    pub addr: SocketAddr,
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
}

impl Default for ServeOptions {
    fn default() -> Self {
        ServeOptions {
            addr: SocketAddr::from(([127, 0, 0, 1], 8000)),
            concurrency: std::thread::available_parallelism().map_or(1, |n| n.get()),
            queue: 1024,
            timeout: Duration::from_secs(30),
            body_limit: 16 << 20,
            api_key: None,
            max_batch_size: None,
            max_delay: None,
            inline_threshold: Duration::from_micros(100),
        }
    }
}

struct Models {
    by_name: BTreeMap<String, Arc<dyn Endpoint>>,
    openapi: serde_json::Value,
}

struct AppState {
    options: ServeOptions,
    api_key_hash: Option<[u8; 32]>,
    metrics: Arc<Metrics>,
    limits: Arc<Limits>,
    models: OnceLock<Models>,
    ready: AtomicBool,
    request_id_prefix: String,
}

/// The HTTP application: a router whose models are added once loaded. Until then
/// `/readyz` answers 503 and predictions 503 `not_ready`.
#[derive(Clone)]
pub struct App {
    state: Arc<AppState>,
}

impl std::fmt::Debug for App {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("App").field("options", &self.state.options).finish()
    }
}

fn sha256(bytes: &[u8]) -> [u8; 32] {
    use sha2::Digest;
    sha2::Sha256::digest(bytes).into()
}

impl App {
    /// An application with no models yet.
    pub fn new(options: ServeOptions) -> App {
        let nanos = std::time::SystemTime::now().duration_since(std::time::UNIX_EPOCH).map_or(0, |d| d.as_nanos());
        let state = AppState {
            api_key_hash: options.api_key.as_deref().map(|k| sha256(k.as_bytes())),
            metrics: Metrics::new(),
            limits: Limits::new(&options),
            options,
            models: OnceLock::new(),
            ready: AtomicBool::new(false),
            request_id_prefix: format!("{:08x}", (nanos as u64 ^ u64::from(std::process::id())) as u32),
        };
        App { state: Arc::new(state) }
    }

    /// Installs the loaded models and turns ready. Each is served under its repository
    /// name; two models of one repository are refused.
    pub fn set_models(&self, models: Vec<Box<dyn DynModel>>) -> Result<()> {
        let state = &self.state;
        let mut by_name: BTreeMap<String, Arc<dyn Endpoint>> = BTreeMap::new();
        for model in models {
            let name = model.manifest().model.repository.clone();
            if let Some(other) = by_name.get(&name) {
                return Err(Error::msg(format!(
                    "{} and {} share the repository name `{name}` the server routes by; serve one model per repository (run another server for the other)",
                    other.manifest().model,
                    model.manifest().model
                )));
            }
            let endpoint = model.into_endpoint(&name, &state.options, state.limits.clone(), &state.metrics);
            by_name.insert(name, endpoint);
        }
        if by_name.is_empty() {
            return Err(Error::msg("no model to serve: name at least one, e.g. `serve iris:latest`"));
        }
        let openapi = openapi::document(&by_name);
        state.models.set(Models { by_name, openapi }).map_err(|_| Error::msg("the models are already set"))?;
        state.ready.store(true, Ordering::Release);
        Ok(())
    }

    /// Whether every model is loaded.
    pub fn is_ready(&self) -> bool {
        self.state.ready.load(Ordering::Acquire)
    }

    /// The HTTP service: the router wrapped in request ids and the access log. Wrapping
    /// the router whole, rather than `Router::layer`, keeps the per-route services unboxed.
    pub fn service(&self) -> observe::Observe<Router> {
        tower::Layer::layer(&observe::ObserveLayer::new(self.state.request_id_prefix.clone()), self.routes())
    }

    /// The axum router, with request ids and the access log, to nest in a larger app.
    pub fn router(&self) -> Router {
        self.routes().layer(observe::ObserveLayer::new(self.state.request_id_prefix.clone()))
    }

    fn routes(&self) -> Router {
        let mut protected = Router::new()
            .route("/predict", post(predict_single))
            .route("/models/{name}/predict", post(predict_named))
            .route("/models", get(list_models))
            .route("/models/{name}", get(model_info))
            .route("/openapi.json", get(openapi_json))
            .route("/metrics", get(metrics_text))
            .route("/v2", get(v2_routes::server_metadata))
            .route("/v2/models/{name}", get(v2_routes::model_metadata))
            .route("/v2/models/{name}/ready", get(v2_routes::model_ready))
            .route("/v2/models/{name}/infer", post(v2_routes::infer))
            .route("/v2/models/{name}/versions/{version}", get(v2_routes::version_metadata))
            .route("/v2/models/{name}/versions/{version}/infer", post(v2_routes::version_infer));
        if self.state.api_key_hash.is_some() {
            protected = protected.route_layer(middleware::from_fn_with_state(self.state.clone(), authorize));
        }
        Router::new()
            .merge(protected)
            .route("/livez", get(|| async { Json(serde_json::json!({ "status": "live" })) }))
            .route("/readyz", get(readyz))
            .route("/v2/health/live", get(v2_routes::live))
            .route("/v2/health/ready", get(v2_routes::ready))
            .fallback(|| async {
                ApiError::new(StatusCode::NOT_FOUND, "not_found", "no such route; see GET /openapi.json")
            })
            .with_state(self.state.clone())
    }
}

/// API-key check, constant-time on the keys' hashes (so neither content nor length leaks).
async fn authorize(State(state): State<Arc<AppState>>, request: Request, next: Next) -> Response {
    if let Some(expected) = &state.api_key_hash {
        let headers = request.headers();
        let given = headers
            .get(header::AUTHORIZATION)
            .and_then(|v| v.to_str().ok())
            .and_then(|v| v.strip_prefix("Bearer "))
            .or_else(|| headers.get("x-api-key").and_then(|v| v.to_str().ok()));
        let ok = given.is_some_and(|key| {
            use subtle::ConstantTimeEq;
            bool::from(sha256(key.as_bytes()).ct_eq(expected))
        });
        if !ok {
            return ApiError::new(
                StatusCode::UNAUTHORIZED,
                "unauthorized",
                "missing or wrong API key: send `Authorization: Bearer KEY`",
            )
            .into_response();
        }
    }
    next.run(request).await
}

async fn readyz(State(state): State<Arc<AppState>>) -> Response {
    if state.ready.load(Ordering::Acquire) {
        Json(serde_json::json!({ "status": "ready" })).into_response()
    } else {
        ApiError::not_ready().into_response()
    }
}

fn models(state: &AppState) -> Result<&Models, ApiError> {
    state.models.get().ok_or_else(ApiError::not_ready)
}

fn endpoint<'a>(state: &'a AppState, name: &str) -> Result<&'a Arc<dyn Endpoint>, ApiError> {
    let models = models(state)?;
    models.by_name.get(name).ok_or_else(|| {
        let names: Vec<&str> = models.by_name.keys().map(String::as_str).collect();
        ApiError::new(
            StatusCode::NOT_FOUND,
            "not_found",
            format!("no model `{name}` is served here (served: {})", names.join(", ")),
        )
    })
}

async fn predict_single(State(state): State<Arc<AppState>>, request: Request) -> Response {
    let endpoint = match models(&state) {
        Ok(models) if models.by_name.len() == 1 => models.by_name.values().next().expect("one model").clone(),
        Ok(models) => {
            let names: Vec<&str> = models.by_name.keys().map(String::as_str).collect();
            return ApiError::new(
                StatusCode::NOT_FOUND,
                "not_found",
                format!(
                    "several models are served; POST to /models/{{name}}/predict with one of: {}",
                    names.join(", ")
                ),
            )
            .into_response();
        }
        Err(e) => return e.into_response(),
    };
    predict(&state, endpoint, request).await
}

async fn predict_named(State(state): State<Arc<AppState>>, Path(name): Path<String>, request: Request) -> Response {
    match endpoint(&state, &name) {
        Ok(endpoint) => predict(&state, endpoint.clone(), request).await,
        Err(e) => e.into_response(),
    }
}

async fn read_body(body: Body, headers: &HeaderMap, limit: usize) -> Result<Bytes, ApiError> {
    let too_large = || {
        ApiError::new(
            StatusCode::PAYLOAD_TOO_LARGE,
            "payload_too_large",
            format!("the body is larger than the {limit}-byte limit"),
        )
    };
    let declared =
        headers.get(header::CONTENT_LENGTH).and_then(|v| v.to_str().ok()).and_then(|v| v.parse::<usize>().ok());
    if declared.is_some_and(|n| n > limit) {
        return Err(too_large());
    }
    axum::body::to_bytes(body, limit).await.map_err(|e| {
        let is_limit = std::error::Error::source(&e).is_some_and(|s| s.is::<http_body_util::LengthLimitError>())
            || e.to_string().contains("length limit");
        if is_limit {
            too_large()
        } else {
            ApiError::new(StatusCode::BAD_REQUEST, "bad_request", format!("could not read the body: {e}"))
        }
    })
}

async fn predict(state: &AppState, endpoint: Arc<dyn Endpoint>, request: Request) -> Response {
    let (parts, body) = request.into_parts();
    let headers = parts.headers;
    let started = Instant::now();
    let metrics_endpoint = endpoint.clone();
    let m = metrics_endpoint.metrics();
    m.in_flight.inc();
    let timeout = state.options.timeout;
    let deadline = tokio::time::Instant::now() + timeout;
    let timed_out = || {
        ApiError::new(
            StatusCode::GATEWAY_TIMEOUT,
            "timeout",
            format!("the request took longer than the {} ms limit", timeout.as_millis()),
        )
    };
    let content_type = headers.get(header::CONTENT_TYPE).and_then(|v| v.to_str().ok());
    let result = match tokio::time::timeout_at(deadline, read_body(body, &headers, state.options.body_limit)).await {
        Err(_) => Err(timed_out()),
        Ok(Err(e)) => Err(e),
        // A fast pipeline runs right here, with no future to box and no timer to arm.
        Ok(Ok(bytes)) => match endpoint.try_inline(bytes, content_type) {
            Ok(result) => result,
            Err(bytes) => {
                let call = endpoint.clone().call(bytes, content_type.map(str::to_string));
                tokio::time::timeout_at(deadline, call).await.unwrap_or_else(|_| Err(timed_out()))
            }
        },
    };
    let response = match result {
        Ok((bytes, media_type)) => {
            ([(header::CONTENT_TYPE, HeaderValue::from_static(media_type))], bytes).into_response()
        }
        Err(e) => e.into_response(),
    };
    m.in_flight.dec();
    m.count(response.status().as_u16());
    m.latency.observe(started.elapsed().as_secs_f64());
    response
}

fn summary(endpoint: &dyn Endpoint) -> serde_json::Value {
    let manifest = endpoint.manifest();
    serde_json::json!({
        "name": manifest.model.repository,
        "model": manifest.model.to_string(),
        "runner": endpoint.runner(),
        "runner_crate": format!("{} {}", manifest.runner.crate_name, manifest.runner.crate_version),
        "files": manifest.files.len(),
        "bytes": manifest.total_bytes(),
        "created_at": manifest.created_at,
        "execution": endpoint.placement(),
        "batching": endpoint.batch().map(|b| serde_json::json!({
            "max_batch_size": b.max_batch_size,
            "max_delay_ms": b.max_delay.as_millis() as u64,
        })),
    })
}

async fn list_models(State(state): State<Arc<AppState>>) -> Result<Json<serde_json::Value>, ApiError> {
    let models = models(&state)?;
    Ok(Json(serde_json::json!({
        "models": models.by_name.values().map(|e| summary(e.as_ref())).collect::<Vec<_>>()
    })))
}

async fn model_info(
    State(state): State<Arc<AppState>>,
    Path(name): Path<String>,
) -> Result<Json<serde_json::Value>, ApiError> {
    let endpoint = endpoint(&state, &name)?;
    let mut info = summary(endpoint.as_ref());
    info["manifest"] = serde_json::to_value(endpoint.manifest()).expect("manifests serialize");
    Ok(Json(info))
}

async fn openapi_json(State(state): State<Arc<AppState>>) -> Result<Json<serde_json::Value>, ApiError> {
    Ok(Json(models(&state)?.openapi.clone()))
}

async fn metrics_text(State(state): State<Arc<AppState>>) -> Response {
    ([(header::CONTENT_TYPE, "application/openmetrics-text; version=1.0.0; charset=utf-8")], state.metrics.encode())
        .into_response()
}

/// Serves `models` from `registry` until `shutdown` completes: binds first (so `/livez`
/// answers at once), loads the models off the async runtime, then turns ready. A model
/// that cannot be loaded ends the server with that error. On shutdown the server stops
/// accepting and finishes the requests in flight.
pub async fn serve(
    registry: Arc<dyn Registry>,
    models: Vec<ModelRef>,
    options: ServeOptions,
    shutdown: impl Future<Output = ()> + Send + 'static,
) -> Result<()> {
    let listener = tokio::net::TcpListener::bind(options.addr)
        .await
        .map_err(|e| Error::msg(format!("cannot listen on {}: {e}", options.addr)))?;
    let addr = listener.local_addr().map_err(|e| Error::msg(e.to_string()))?;
    serve_on(listener, registry, models, options, shutdown, move || {
        println!("listening on http://{addr}");
    })
    .await
}

/// Like [`serve`], on a bound listener; `on_listening` runs once it accepts connections.
pub async fn serve_on(
    listener: tokio::net::TcpListener,
    registry: Arc<dyn Registry>,
    models: Vec<ModelRef>,
    options: ServeOptions,
    shutdown: impl Future<Output = ()> + Send + 'static,
    on_listening: impl FnOnce(),
) -> Result<()> {
    let app = App::new(options);
    let service = axum::ServiceExt::<Request>::into_make_service(app.service());
    let loader_app = app.clone();
    let loading = tokio::task::spawn_blocking(move || -> Result<()> {
        let mut loaded = Vec::new();
        for model in &models {
            let started = Instant::now();
            let dyn_model = crate::load::load_any(registry.as_ref(), model)
                .map_err(|e| Error::Other(format!("cannot serve {model}: {e}")))?;
            tracing::info!(model = %dyn_model.manifest().model, runner = %dyn_model.manifest().runner.name, ms = started.elapsed().as_millis() as u64, "loaded");
            loaded.push(dyn_model);
        }
        loader_app.set_models(loaded)
    });
    let server = axum::serve(listener, service).with_graceful_shutdown(shutdown);
    on_listening();
    let server = tokio::spawn(async move { server.await });
    match loading.await {
        Ok(Ok(())) => tracing::info!("ready"),
        Ok(Err(e)) => {
            server.abort();
            return Err(e);
        }
        Err(e) => {
            server.abort();
            return Err(Error::msg(format!("loading the models panicked: {e}")));
        }
    }
    server
        .await
        .map_err(|e| Error::msg(format!("the server task failed: {e}")))?
        .map_err(|e| Error::msg(format!("the server failed: {e}")))
}

/// Resolves on Ctrl-C or SIGTERM.
pub async fn shutdown_signal() {
    let ctrl_c = async {
        let _ = tokio::signal::ctrl_c().await;
    };
    #[cfg(unix)]
    let terminate = async {
        match tokio::signal::unix::signal(tokio::signal::unix::SignalKind::terminate()) {
            Ok(mut signal) => {
                signal.recv().await;
            }
            Err(_) => std::future::pending::<()>().await,
        }
    };
    #[cfg(not(unix))]
    let terminate = std::future::pending::<()>();
    tokio::select! {
        () = ctrl_c => {},
        () = terminate => {},
    }
    tracing::info!("shutting down: finishing requests in flight");
}
