//! The application: the router over the engine, and serving it on a socket.

use std::collections::BTreeMap;
use std::future::Future;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Mutex, OnceLock};
use std::time::{Duration, Instant};

use axum::http::StatusCode;
use axum::middleware;
use axum::routing::{get, post};
use axum::{Json, Router};

use super::error::ApiError;
use super::options::RepositoryMode;
use super::options::ServeOptions;
use super::state::{
    endpoints, release, sha256, AppState, FailedLoad, Follow, FollowLog, Models, Slot, Split, SwapRecord,
};
use super::{observe, openapi, page, pages, repository, repository_routes, routes, v2_routes};
use crate::catalog::load_any;
use crate::engine::Engine;
use crate::error::{Error, Result};
use crate::load::DynModel;
use crate::manifest::now_rfc3339;
use crate::names::{ModelId, ModelRef, Version};
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
            registry: OnceLock::new(),
            changes: Mutex::new(BTreeMap::new()),
            loading: tokio::sync::Mutex::new(()),
            started: crate::engine::Instant::now(),
            shadows_in_flight: std::sync::atomic::AtomicUsize::new(0),
        };
        App { state: Arc::new(state) }
    }

    /// Installs the loaded models and turns ready. Each is served under its repository
    /// name; two models of one repository are refused.
    pub fn set_models(&self, models: Vec<Box<dyn DynModel>>) -> Result<()> {
        self.install(models.into_iter().map(|model| (model, None)).collect())
    }

    /// [`App::set_models`], each model with the alias it follows (`iris:prod`), if any.
    /// None at all is refused unless the server loads models at run time
    /// ([`RepositoryMode::loads_at_run_time`]).
    fn install(&self, models: Vec<(Box<dyn DynModel>, Option<String>)>) -> Result<()> {
        let state = &self.state;
        let mut by_name: BTreeMap<String, Arc<Slot>> = BTreeMap::new();
        for (model, follows) in models {
            let name = model.manifest().model.repository.clone();
            if let Some(other) = by_name.get(&name) {
                return Err(Error::msg(format!(
                    "{} and {} share the repository name `{name}` the server routes by; serve one model per repository (run another server for the other)",
                    other.endpoint().manifest().model,
                    model.manifest().model
                )));
            }
            let endpoint = state.engine.serve(model, &name);
            let follow = follows.map(|reference| Follow { reference, log: Mutex::new(FollowLog::default()) });
            by_name.insert(name, Arc::new(Slot::new(endpoint, follow)));
        }
        if by_name.is_empty() && !state.options.repository_mode.loads_at_run_time() {
            return Err(Error::msg(
                "no model to serve: name at least one, e.g. `serve iris:latest` (or load them at run time: --repository-mode explicit)",
            ));
        }
        let openapi = openapi::document(&endpoints(&by_name));
        state.models.set(Models::new(by_name, openapi)).map_err(|_| Error::msg("the models are already set"))?;
        state.ready.store(true, Ordering::Release);
        Ok(())
    }

    /// Puts `model` in place of the model served under its repository name, atomically:
    /// requests that arrive from now on go to it (with batching of its own, so no batch
    /// mixes models); requests in flight finish on the old one, which is freed (its
    /// model dropped, off the async runtime) once the last of them ends. Returns the
    /// number of the model it replaced.
    pub fn swap_model(&self, model: Box<dyn DynModel>) -> Result<u64> {
        let models = self.state.models.get().ok_or_else(|| Error::msg("no models are served yet"))?;
        let name = model.manifest().model.repository.clone();
        let slot = models.get(&name).ok_or_else(|| {
            Error::msg(format!("no model is served as `{name}`; a swap replaces a served model of the same repository"))
        })?;
        let endpoint = self.state.engine.serve(model, &name);
        endpoint.continue_from(&slot.endpoint());
        let old = slot.swap(endpoint);
        models.refresh_openapi();
        let from = old.manifest().model.number;
        release(old);
        Ok(from)
    }

    /// Whether every model is loaded.
    pub fn is_ready(&self) -> bool {
        self.state.ready.load(Ordering::Acquire)
    }

    /// The HTTP service: the router, with the prediction routes answered before it
    /// ([`Predictions`](super::Predictions)), wrapped in request ids and the access log. Wrapping the
    /// router whole, rather than `Router::layer`, keeps the per-route services unboxed.
    pub fn service(&self) -> observe::Observe<routes::Predictions<Router>> {
        let service = routes::Predictions::new(self.routes(), self.state.clone());
        tower::Layer::layer(&observe::ObserveLayer::new(self.state.request_id_prefix.clone()), service)
    }

    /// The KServe V2 gRPC service (`inference.GRPCInferenceService`, see
    /// [`super::grpc`]) over the same models and engine, as an axum router to serve over
    /// HTTP/2 ([`serve_connections`](super::serve_connections) does), on an address of its own.
    #[cfg(feature = "grpc")]
    pub fn grpc_router(&self) -> Router {
        super::grpc::router(self.state.clone())
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
            .route("/v2/models/{name}/versions/{version}/infer", post(v2_routes::version_infer))
            .route("/v2/repository/index", post(repository_routes::index_route))
            .route("/v2/repository/models/{name}/load", post(repository_routes::load_route))
            .route("/v2/repository/models/{name}/unload", post(repository_routes::unload_route));
        if self.state.api_key_hash.is_some() {
            protected = protected.route_layer(middleware::from_fn_with_state(self.state.clone(), routes::authorize));
        }
        Router::new()
            .merge(protected)
            .route("/", get(pages::home))
            .route("/docs", get(pages::docs))
            .route("/sign-in", post(pages::sign_in))
            .route("/sign-out", post(pages::sign_out))
            .route(&format!("{}/{{name}}", page::ASSETS), get(page::serve_asset))
            .route("/livez", get(|| async { Json(serde_json::json!({ "status": "live" })) }))
            .route("/readyz", get(routes::readyz))
            .route("/v2/health/live", get(v2_routes::live))
            .route("/v2/health/ready", get(v2_routes::ready))
            .fallback(|| async {
                ApiError::new(StatusCode::NOT_FOUND, "not_found", "no such route; see GET /openapi.json")
            })
            .method_not_allowed_fallback(super::error::method_not_allowed)
            .with_state(self.state.clone())
    }
}

/// Watches where `reference` (an alias, or `latest` with
/// [`ServeOptions::follow_latest`]) points, at once and then every `interval`; when it
/// moves, loads the new model in the background and swaps it in. A model that fails to
/// load is not swapped in: the old one keeps serving, and `/models/{name}` and the
/// `runner_model_swaps_total{outcome="failed"}` metric say why, until the alias moves
/// again. Nor is a newer `latest` whose API differs from the one served
/// (`outcome="refused"`): an alias cannot move across an API change unless forced, and
/// `latest` has no way to force. An alias's split is followed the same way
/// ([`follow_split`]).
async fn follow(app: App, registry: Arc<dyn Registry>, reference: ModelRef, interval: Duration) {
    let name = reference.repository.clone();
    let Some(models) = app.state.models.get() else { return };
    let Some(slot) = models.get(&name) else { return };
    let Some(follow) = &slot.follow else { return };
    let log = |change: &dyn Fn(&mut FollowLog)| change(&mut follow.log.lock().unwrap_or_else(|p| p.into_inner()));
    let mut ticker = tokio::time::interval(interval);
    ticker.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
    loop {
        // The first tick is at once: a split alias's canary loads right after start.
        ticker.tick().await;
        // Unloaded (the repository API), or replaced by a load: this follower is done.
        if !models.get(&name).is_some_and(|now| Arc::ptr_eq(&now, &slot)) {
            return;
        }
        let serving = slot.endpoint();
        let current = serving.manifest().model.number;
        let (lookup, wanted) = (registry.clone(), reference.clone());
        let resolved = tokio::task::spawn_blocking(move || -> Result<_> {
            let (target, canary) = match &wanted.version {
                Version::Alias(alias) => {
                    let entry = lookup
                        .alias_entry(&wanted.organization, &wanted.repository, alias)?
                        .ok_or_else(|| crate::registry::no_such_alias(&wanted.repository, alias))?;
                    (ModelId::new(&wanted.organization, &wanted.repository, entry.number)?, entry.canary)
                }
                _ => (lookup.resolve(&wanted)?, None),
            };
            let manifest = lookup.manifest(&target)?;
            Ok((manifest.sha256(), target, manifest.api, canary))
        });
        let (manifest, target, api, canary) = match resolved.await {
            Ok(Ok(found)) => found,
            outcome => {
                let error = match outcome {
                    Ok(Err(e)) => e.to_string(),
                    Err(e) => format!("the lookup panicked: {e}"),
                    Ok(Ok(_)) => unreachable!("matched above"),
                };
                tracing::warn!(alias = %reference, %error, "cannot read where the alias points; serving {current} meanwhile");
                let at = now_rfc3339();
                log(&|l| {
                    l.unreachable =
                        Some(FailedLoad { number: None, manifest: None, at: at.clone(), error: error.clone() })
                });
                continue;
            }
        };
        log(&|l| l.unreachable = None);
        drop(serving);
        follow_model(&app, &slot, &registry, &reference, (manifest, target, api)).await;
        follow_split(&app, &slot, &registry, &reference, canary).await;
    }
}

/// One step of [`follow`] for the model the alias points at: `found` is the sha256 of its
/// manifest, its id and its API.
async fn follow_model(
    app: &App,
    slot: &Arc<Slot>,
    registry: &Arc<dyn Registry>,
    reference: &ModelRef,
    (manifest, target, api): (String, crate::names::ModelId, Option<crate::manifest::ApiSignature>),
) {
    let name = &reference.repository;
    let Some(follow) = &slot.follow else { return };
    let log = |change: &dyn Fn(&mut FollowLog)| change(&mut follow.log.lock().unwrap_or_else(|p| p.into_inner()));
    let serving = slot.endpoint();
    let current = serving.manifest().model.number;
    // The same number registered again (a new manifest) is a change too.
    let failed_before =
        follow.log.lock().unwrap_or_else(|p| p.into_inner()).failed.as_ref().and_then(|f| f.manifest.clone());
    if manifest == serving.manifest().sha256() || failed_before.as_ref() == Some(&manifest) {
        return;
    }
    // An alias never moves across an API change unless forced (the registry checks);
    // `latest` has no such check, so it is made here: callers keep the API they use.
    let changes = match (&serving.manifest().api, &api) {
        (Some(old), Some(new)) if matches!(reference.version, Version::Latest) => old.changes(new),
        _ => Vec::new(),
    };
    if !changes.is_empty() {
        let error = format!(
            "{target} answers a different API than {} that is served, so callers of {reference} could break: {}; not swapped in (serve it under another name, or point an alias at it with --force)",
            serving.manifest().model,
            changes.join("; ")
        );
        // Once per manifest: the next ticks find it failed and skip it, until another
        // number is registered.
        tracing::error!(model = %target, %error, "not following latest across an API change");
        app.state.engine.record_swap(name, "refused", None);
        let at = now_rfc3339();
        log(&|l| {
            let (number, manifest) = (Some(target.number), Some(manifest.clone()));
            l.failed = Some(FailedLoad { number, manifest, at: at.clone(), error: error.clone() });
        });
        return;
    }
    drop(serving);
    let started = Instant::now();
    // A canary promoted (the alias now points at it) is loaded already: it takes over.
    let promoted = slot.split().map(|split| split.endpoint.clone()).filter(|c| c.manifest().sha256() == manifest);
    let loaded = match promoted {
        Some(canary) => {
            tracing::info!(alias = %reference, from = current, to = target.number, "the alias moved to its canary");
            let old = slot.swap(canary);
            release(old.clone());
            if let Some(models) = app.state.models.get() {
                models.refresh_openapi();
            }
            Ok(old.manifest().model.number)
        }
        None => {
            tracing::info!(alias = %reference, from = current, to = target.number, "the alias moved: loading the new model");
            let (loader, id) = (registry.clone(), ModelRef::from(&target));
            match tokio::task::spawn_blocking(move || load_any(loader.as_ref(), &id)).await {
                Ok(Ok(model)) => app.swap_model(model),
                Ok(Err(e)) => Err(e),
                Err(e) => Err(Error::msg(format!("loading panicked: {e}"))),
            }
        }
    };
    match loaded {
        Ok(from) => {
            let load_ms = started.elapsed().as_millis() as u64;
            app.state.engine.record_swap(name, "swapped", Some(target.number));
            tracing::info!(alias = %reference, from, to = target.number, load_ms, "swapped in");
            log(&|l| {
                l.failed = None;
                l.swaps.push(SwapRecord { from, to: target.number, at: now_rfc3339(), load_ms });
            });
        }
        Err(e) => {
            app.state.engine.record_swap(name, "failed", None);
            tracing::error!(alias = %reference, model = %target, error = %e, "the new model cannot be loaded; {current} keeps serving");
            let (error, at) = (e.to_string(), now_rfc3339());
            log(&|l| {
                let (number, manifest) = (Some(target.number), Some(manifest.clone()));
                l.failed = Some(FailedLoad { number, manifest, at: at.clone(), error: error.clone() });
            });
        }
    }
}

/// One step of [`follow`] for the alias's split: `wanted` is its canary and share now.
/// A new canary is loaded in the background (the model answers everything meanwhile); a
/// new share of the same canary, or the end of the split, takes one store. A canary that
/// fails to load is logged, counted (`runner_model_swaps_total{outcome="failed"}`) and
/// tried again at the next tick.
async fn follow_split(
    app: &App,
    slot: &Arc<Slot>,
    registry: &Arc<dyn Registry>,
    reference: &ModelRef,
    wanted: Option<crate::registry::Canary>,
) {
    let name = &reference.repository;
    let now = slot.split();
    let now_number = now.as_ref().map(|s| s.endpoint.manifest().model.number);
    let engine = &app.state.engine;
    let Some(follow) = &slot.follow else { return };
    let Some(wanted) = wanted else {
        if let Some(ended) = slot.set_split(None) {
            tracing::info!(alias = %reference, canary = now_number, "the split ended");
            engine.record_split(name, None, now_number);
            release_unless_serving(slot, &ended.endpoint);
        }
        follow.log.lock().unwrap_or_else(|p| p.into_inner()).canary_failed = None;
        return;
    };
    let failed = follow.log.lock().unwrap_or_else(|p| p.into_inner()).canary_failed.as_ref().and_then(|f| f.number);
    let endpoint = match now.filter(|_| now_number == Some(wanted.number)) {
        Some(same) if same.percent == wanted.percent => return,
        Some(same) => same.endpoint.clone(),
        // Tried already: not again until the alias names another canary.
        None if failed == Some(wanted.number) => return,
        None => {
            tracing::info!(alias = %reference, canary = wanted.number, "the alias has a new canary: loading it");
            let id = ModelRef {
                organization: reference.organization.clone(),
                repository: name.clone(),
                version: Version::Number(wanted.number),
            };
            let loader = registry.clone();
            match tokio::task::spawn_blocking(move || load_any(loader.as_ref(), &id)).await {
                Ok(Ok(model)) => {
                    // Placed where the model runs (inline or on the pool), as a swapped-in
                    // version is, rather than warming up again: their latencies compare.
                    let canary = engine.serve_canary(model, name);
                    canary.continue_from(&slot.endpoint());
                    canary
                }
                outcome => {
                    let error = match outcome {
                        Ok(Err(e)) => e.to_string(),
                        Err(e) => format!("loading panicked: {e}"),
                        Ok(Ok(_)) => unreachable!("matched above"),
                    };
                    engine.record_swap(name, "failed", None);
                    tracing::error!(alias = %reference, canary = wanted.number, %error, "the canary cannot be loaded; the model answers every request");
                    let failed = FailedLoad { number: Some(wanted.number), manifest: None, at: now_rfc3339(), error };
                    follow.log.lock().unwrap_or_else(|p| p.into_inner()).canary_failed = Some(failed);
                    return;
                }
            }
        }
    };
    let before = slot.set_split(Some(Split { endpoint, percent: wanted.percent }));
    engine.record_split(name, Some((wanted.number, wanted.percent)), now_number);
    tracing::info!(alias = %reference, canary = wanted.number, percent = wanted.percent, "the split moved");
    follow.log.lock().unwrap_or_else(|p| p.into_inner()).canary_failed = None;
    if let Some(before) = before.filter(|b| b.endpoint.manifest().model.number != wanted.number) {
        release_unless_serving(slot, &before.endpoint);
    }
}

/// Releases a canary's endpoint that left the split, unless it is the model the slot
/// serves now (a promoted canary: the split and the slot held the same endpoint).
fn release_unless_serving(slot: &Slot, endpoint: &Arc<crate::engine::Endpoint>) {
    if !Arc::ptr_eq(endpoint, &slot.endpoint()) {
        release(endpoint.clone());
    }
}

/// `--repository-mode all`: every `interval`, loads the organization's repositories that
/// appeared since (at their latest number), as the repository API's load does. A name
/// unloaded on request, being changed, or whose load failed is left alone (a load through
/// the API tries it again).
async fn discover(app: App, interval: Duration, known: Vec<String>) {
    // The repositories seen so far: only those that appear later are loaded here (one
    // unloaded by the memory budget is not loaded back, which would unload another).
    let mut known: std::collections::BTreeSet<String> = known.into_iter().collect();
    let mut ticker = tokio::time::interval(interval);
    ticker.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
    ticker.tick().await;
    loop {
        ticker.tick().await;
        let Ok(index) = repository::index(&app.state, false).await else { continue };
        let Some(registry) = app.state.registry.get() else { return };
        let left_alone = app.state.changes.lock().unwrap_or_else(|p| p.into_inner()).clone();
        for entry in index {
            if entry.state == "UNAVAILABLE" && !left_alone.contains_key(&entry.name) && !known.contains(&entry.name) {
                // A repository appears before its first model is committed: wait for one
                // (a load now would fail, and a failed name is left alone).
                let (lookup, organization, name) =
                    (registry.clone(), app.state.options.organization.clone(), entry.name.clone());
                let latest = ModelRef { organization, repository: name, version: Version::Latest };
                let committed = tokio::task::spawn_blocking(move || lookup.resolve(&latest).is_ok()).await;
                if !matches!(committed, Ok(true)) {
                    continue;
                }
                known.insert(entry.name.clone());
                if let Err(e) = repository::load(&app.state, &entry.name, None).await {
                    tracing::warn!(model = %entry.name, error = %e.message, "a new repository could not be loaded");
                }
            }
        }
    }
}

/// Serves `models` from `registry` until `shutdown` completes: binds first (so `/livez`
/// answers at once), loads the models off the async runtime, then turns ready. A model
/// that cannot be loaded ends the server with that error. On shutdown the server stops
/// accepting and finishes the requests in flight. With [`ServeOptions::grpc_addr`], the
/// gRPC service listens there too, and stops with it.
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

/// Like [`serve`], on a bound listener; `on_listening` runs once it accepts connections,
/// before the gRPC listener (if any) is bound and prints `listening for gRPC on ADDR`.
pub async fn serve_on(
    listener: tokio::net::TcpListener,
    registry: Arc<dyn Registry>,
    models: Vec<ModelRef>,
    options: ServeOptions,
    shutdown: impl Future<Output = ()> + Send + 'static,
    on_listening: impl FnOnce(),
) -> Result<()> {
    let interval = options.follow_interval;
    let options_follow_latest = options.follow_latest;
    let grpc_addr = options.grpc_addr;
    let limits = options.connections.clone();
    let (mode, organization) = (options.repository_mode, options.organization.clone());
    let (max_loaded, budget, on_demand) = (options.max_loaded_models, options.memory_budget, options.load_on_demand);
    let app = App::new(options);
    let _ = app.state.registry.set(registry.clone());
    // One shutdown for every listener.
    let (stop, stopped) = tokio::sync::watch::channel(false);
    tokio::spawn(async move {
        shutdown.await;
        let _ = stop.send(true);
    });
    let when_stopped = move || {
        let mut stopped = stopped.clone();
        async move {
            let _ = stopped.wait_for(|stop| *stop).await;
        }
    };
    let loader_app = app.clone();
    let loader_registry = registry.clone();
    let follow_latest = options_follow_latest;
    let follows = move |model: &ModelRef| match model.version {
        Version::Alias(_) => true,
        Version::Latest => follow_latest,
        Version::Number(_) => false,
    };
    if max_loaded.is_some() || budget.is_some() || on_demand {
        if !mode.loads_at_run_time() {
            return Err(Error::msg(
                "--max-loaded-models, --memory-budget and --load-on-demand load and unload models while serving: add --repository-mode explicit (or all)",
            ));
        }
        if max_loaded.is_some_and(|max| models.len() > max) {
            return Err(Error::msg(format!(
                "{} models are named, more than --max-loaded-models {}",
                models.len(),
                max_loaded.unwrap_or_default()
            )));
        }
    }
    let loading = tokio::task::spawn_blocking(move || -> Result<(Vec<ModelRef>, Vec<String>)> {
        let mut models = models;
        let mut known = Vec::new();
        if mode == RepositoryMode::All {
            // Every repository of the organization, at its latest number, besides those
            // named, up to --max-loaded-models (the others load on request).
            known = loader_registry
                .repositories(&organization)
                .map_err(|e| Error::msg(format!("cannot list the repositories of {organization}: {e}")))?;
            for repository in &known {
                if max_loaded.is_some_and(|max| models.len() >= max) {
                    break;
                }
                if !models.iter().any(|m| &m.repository == repository) {
                    let repository = repository.clone();
                    models.push(ModelRef { organization: organization.clone(), repository, version: Version::Latest });
                }
            }
        }
        let mut loaded = Vec::new();
        for model in &models {
            let started = Instant::now();
            let dyn_model = load_any(loader_registry.as_ref(), model)
                .map_err(|e| Error::Other(format!("cannot serve {model}: {e}")))?;
            tracing::info!(model = %dyn_model.manifest().model, runner = %dyn_model.manifest().runner.name, ms = started.elapsed().as_millis() as u64, "loaded");
            loaded.push((dyn_model, follows(model).then(|| model.to_string())));
        }
        loader_app.install(loaded)?;
        Ok((models.into_iter().filter(|m| follows(m)).collect(), known))
    });
    // Without the client's address on each request: no route of `serve` reads it.
    let server = super::listen::serve_connections_with(listener, app.service(), limits.clone(), when_stopped(), false);
    on_listening();
    let server = tokio::spawn(server);
    let grpc = match grpc_addr {
        None => None,
        Some(addr) => match grpc_server(&app, addr, limits, when_stopped()).await {
            Ok(grpc) => Some(grpc),
            Err(e) => {
                server.abort();
                return Err(e);
            }
        },
    };
    let abort = || {
        server.abort();
        if let Some(grpc) = &grpc {
            grpc.abort();
        }
    };
    let (followed, known) = match loading.await {
        Ok(Ok(loaded)) => {
            tracing::info!("ready");
            loaded
        }
        Ok(Err(e)) => {
            abort();
            return Err(e);
        }
        Err(e) => {
            abort();
            return Err(Error::msg(format!("loading the models panicked: {e}")));
        }
    };
    let mut followers: Vec<_> = followed
        .into_iter()
        .map(|reference| tokio::spawn(follow(app.clone(), registry.clone(), reference, interval)))
        .collect();
    if mode == RepositoryMode::All {
        followers.push(tokio::spawn(discover(app.clone(), interval, known)));
    }
    let outcome = server.await;
    let grpc_outcome = match grpc {
        Some(grpc) => grpc.await,
        None => Ok(Ok(())),
    };
    for follower in followers {
        follower.abort();
    }
    outcome
        .map_err(|e| Error::msg(format!("the server task failed: {e}")))?
        .map_err(|e| Error::msg(format!("the server failed: {e}")))?;
    grpc_outcome
        .map_err(|e| Error::msg(format!("the gRPC server task failed: {e}")))?
        .map_err(|e| Error::msg(format!("the gRPC server failed: {e}")))
}

/// Binds `addr` and serves the gRPC service there (HTTP/2 without TLS, as gRPC clients
/// speak it to `host:port`) until `stopped`, finishing the calls in flight.
#[cfg(feature = "grpc")]
async fn grpc_server(
    app: &App,
    addr: std::net::SocketAddr,
    limits: super::ConnectionLimits,
    stopped: impl Future<Output = ()> + Send + 'static,
) -> Result<tokio::task::JoinHandle<std::io::Result<()>>> {
    let listener = tokio::net::TcpListener::bind(addr)
        .await
        .map_err(|e| Error::msg(format!("cannot listen for gRPC on {addr}: {e}")))?;
    let bound = listener.local_addr().map_err(|e| Error::msg(e.to_string()))?;
    let router = app.grpc_router();
    println!("listening for gRPC on {bound}");
    let server = super::listen::serve_connections_with(listener, router, limits, stopped, false);
    Ok(tokio::spawn(server))
}

/// Without the `grpc` feature, asking for a gRPC address is an error that says so.
#[cfg(not(feature = "grpc"))]
async fn grpc_server(
    _: &App,
    addr: std::net::SocketAddr,
    _: super::ConnectionLimits,
    _: impl Future<Output = ()> + Send + 'static,
) -> Result<tokio::task::JoinHandle<std::io::Result<()>>> {
    Err(Error::msg(format!("gRPC ({addr}) needs runner-core's `grpc` feature; this build has only HTTP")))
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
