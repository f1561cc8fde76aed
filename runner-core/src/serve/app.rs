//! The application: the router over the engine, and serving it on a socket.

use std::collections::BTreeMap;
use std::future::Future;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, OnceLock};
use std::time::Instant;

use axum::extract::Request;
use axum::http::StatusCode;
use axum::middleware;
use axum::routing::{get, post};
use axum::{Json, Router};

use super::error::ApiError;
use super::options::ServeOptions;
use super::state::{sha256, AppState, Models};
use super::{observe, openapi, routes, v2_routes};
use crate::catalog::load_any;
use crate::engine::{Endpoint, Engine};
use crate::error::{Error, Result};
use crate::load::DynModel;
use crate::names::ModelRef;
use crate::registry::Registry;

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

impl App {
    /// An application with no models yet.
    pub fn new(options: ServeOptions) -> App {
        let nanos = std::time::SystemTime::now().duration_since(std::time::UNIX_EPOCH).map_or(0, |d| d.as_nanos());
        let state = AppState {
            api_key_hash: options.api_key.as_deref().map(|k| sha256(k.as_bytes())),
            engine: Engine::new(options.engine()),
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
        let mut by_name: BTreeMap<String, Arc<Endpoint>> = BTreeMap::new();
        for model in models {
            let name = model.manifest().model.repository.clone();
            if let Some(other) = by_name.get(&name) {
                return Err(Error::msg(format!(
                    "{} and {} share the repository name `{name}` the server routes by; serve one model per repository (run another server for the other)",
                    other.manifest().model,
                    model.manifest().model
                )));
            }
            let endpoint = state.engine.serve(model, &name);
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
            .route("/predict", post(routes::predict_single))
            .route("/models/{name}/predict", post(routes::predict_named))
            .route("/models", get(routes::list_models))
            .route("/models/{name}", get(routes::model_info))
            .route("/openapi.json", get(routes::openapi_json))
            .route("/metrics", get(routes::metrics_text))
            .route("/v2", get(v2_routes::server_metadata))
            .route("/v2/models/{name}", get(v2_routes::model_metadata))
            .route("/v2/models/{name}/ready", get(v2_routes::model_ready))
            .route("/v2/models/{name}/infer", post(v2_routes::infer))
            .route("/v2/models/{name}/versions/{version}", get(v2_routes::version_metadata))
            .route("/v2/models/{name}/versions/{version}/infer", post(v2_routes::version_infer));
        if self.state.api_key_hash.is_some() {
            protected = protected.route_layer(middleware::from_fn_with_state(self.state.clone(), routes::authorize));
        }
        Router::new()
            .merge(protected)
            .route("/livez", get(|| async { Json(serde_json::json!({ "status": "live" })) }))
            .route("/readyz", get(routes::readyz))
            .route("/v2/health/live", get(v2_routes::live))
            .route("/v2/health/ready", get(v2_routes::ready))
            .fallback(|| async {
                ApiError::new(StatusCode::NOT_FOUND, "not_found", "no such route; see GET /openapi.json")
            })
            .with_state(self.state.clone())
    }
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
            let dyn_model =
                load_any(registry.as_ref(), model).map_err(|e| Error::Other(format!("cannot serve {model}: {e}")))?;
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
