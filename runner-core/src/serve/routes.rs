//! The routes of the native protocol: predictions, model listings, OpenAPI, metrics,
//! health, and the API-key check.

use std::sync::atomic::Ordering;
use std::sync::Arc;

use axum::extract::{Request, State};
use axum::http::{header, HeaderValue, StatusCode};
use axum::middleware::Next;
use axum::response::{IntoResponse, Response};
use axum::Json;

use super::error::{ApiError, PathParams};
use super::state::{models, pick, read_body, slot, sticky_key, AppState, Deadline, Picked, Slot};
use bytes::Bytes;

use crate::engine::{Answer, Endpoint, Instant};

/// API-key check (see [`key_matches`]).
pub(crate) async fn authorize(State(state): State<Arc<AppState>>, request: Request, next: Next) -> Response {
    if !key_matches(&state, request.headers())
        && !super::pages::cookie_allows(&state, request.method(), request.headers())
    {
        return ApiError::new(
            StatusCode::UNAUTHORIZED,
            "unauthorized",
            "missing or wrong API key: send `Authorization: Bearer KEY` (or sign in at / in a browser)",
        )
        .into_response();
    }
    next.run(request).await
}

/// Whether `headers` carry the server's API key (`Authorization: Bearer KEY` or
/// `X-API-Key: KEY`), or the server has none; constant-time on the keys' hashes, so
/// neither content nor length leaks.
pub(crate) fn key_matches(state: &AppState, headers: &axum::http::HeaderMap) -> bool {
    if state.api_key_hash.is_none() {
        return true;
    }
    let given = headers
        .get(header::AUTHORIZATION)
        .and_then(|v| v.to_str().ok())
        .and_then(|v| v.strip_prefix("Bearer "))
        .or_else(|| headers.get("x-api-key").and_then(|v| v.to_str().ok()));
    given.is_some_and(|key| state.is_key(key))
}

pub(crate) async fn readyz(State(state): State<Arc<AppState>>) -> Response {
    if state.ready.load(Ordering::Acquire) {
        Json(serde_json::json!({ "status": "ready" })).into_response()
    } else {
        ApiError::not_ready().into_response()
    }
}

/// The future of a prediction route: the common one, or a boxed one (an error, or a
/// model to load first).
type Answering<F> = futures_util::future::Either<futures_util::future::BoxFuture<'static, Response>, F>;

/// `POST /predict`. Like every prediction route, a plain function returning the
/// prediction's own future, not an `async fn` awaiting it: the future is allocated for
/// every request (by [`Predictions`], or by axum), and a wrapper would hold that future
/// and its arguments a second time (see `run_body`).
pub(crate) fn predict_single(
    State(state): State<Arc<AppState>>,
    request: Request,
) -> Answering<impl std::future::Future<Output = Response>> {
    let table = match models(&state) {
        Ok(models) => models.snapshot(),
        Err(e) => return answered(e),
    };
    // One reading of the clock for the request: when it was last used, its deadline, its
    // latency.
    let now = Instant::now();
    let picked = match table.len() {
        1 => {
            let slot = table.values().next().expect("one model");
            slot.touch(state.ms_at(now));
            slot.pick(sticky_key(&state, request.headers()), state.options.shadow)
        }
        _ => {
            let names: Vec<&str> = table.keys().map(String::as_str).collect();
            return answered(ApiError::new(
                StatusCode::NOT_FOUND,
                "not_found",
                format!(
                    "several models are served; POST to /models/{{name}}/predict with one of: {}",
                    names.join(", ")
                ),
            ));
        }
    };
    futures_util::future::Either::Right(predict(state, picked, request, now))
}

/// `POST /models/{name}/predict` (see [`predict_single`]).
pub(crate) fn predict_named(
    State(state): State<Arc<AppState>>,
    PathParams(name): PathParams<String>,
    request: Request,
) -> Answering<impl std::future::Future<Output = Response>> {
    // A lookup only: the pick below marks the slot used.
    if state.options.load_on_demand && slot(&state, &name).is_err() {
        return futures_util::future::Either::Left(Box::pin(async move {
            if let Err(e) = super::repository::endpoint(&state, &name).await {
                return e.into_response();
            }
            predict_picked(state, &name, request).await
        }));
    }
    predict_picked(state, &name, request)
}

/// Picks who answers `request` for `name` (the model, or its canary), and answers it.
fn predict_picked(
    state: Arc<AppState>,
    name: &str,
    request: Request,
) -> Answering<impl std::future::Future<Output = Response>> {
    let now = Instant::now();
    match pick(&state, name, sticky_key(&state, request.headers()), now) {
        Ok(picked) => futures_util::future::Either::Right(predict(state, picked, request, now)),
        Err(e) => answered(e),
    }
}

/// The prediction routes (`POST /predict`, `POST /models/{name}/predict`) answered
/// before axum's router, which is the service it wraps (`App::service`) and answers
/// everything else. The router's way cost a small model's request 6-8 % of its
/// throughput: a route lookup, the path parameter's allocations, a clone of the route's
/// boxed service, and the handler's future and the router's own around it. The requests
/// this takes are exactly those the router would send to `predict_single` and
/// `predict_named`, to the same functions: a name with an escape (`%`) or a path of any
/// other shape goes to the router, and so does a request the API key does not let
/// through (the router's check answers it, or lets a signed-in browser in by its cookie).
#[derive(Clone)]
pub struct Predictions<S> {
    inner: S,
    state: Arc<AppState>,
}

impl<S> Predictions<S> {
    pub(crate) fn new(inner: S, state: Arc<AppState>) -> Predictions<S> {
        Predictions { inner, state }
    }
}

impl<S> tower::Service<Request> for Predictions<S>
where
    S: tower::Service<Request, Response = Response, Error = std::convert::Infallible>,
{
    type Response = Response;
    type Error = std::convert::Infallible;
    type Future = futures_util::future::Either<S::Future, Predicting>;

    fn poll_ready(&mut self, cx: &mut std::task::Context<'_>) -> std::task::Poll<Result<(), Self::Error>> {
        self.inner.poll_ready(cx)
    }

    fn call(&mut self, request: Request) -> Self::Future {
        let route = prediction_route(&request);
        if route.is_none() || !key_matches(&self.state, request.headers()) {
            return futures_util::future::Either::Left(self.inner.call(request));
        }
        let state = State(self.state.clone());
        let answer: futures_util::future::BoxFuture<'static, Response> = match route {
            Some(Some(name)) => Box::pin(predict_named(state, PathParams(name.to_string()), request)),
            _ => Box::pin(predict_single(state, request)),
        };
        futures_util::future::Either::Right(Predicting(answer))
    }
}

/// Which prediction route `request` is for: `Some(None)` for `POST /predict`,
/// `Some(Some(name))` for `POST /models/{name}/predict`, `None` for anything else.
fn prediction_route(request: &Request) -> Option<Option<&str>> {
    if request.method() != axum::http::Method::POST {
        return None;
    }
    let path = request.uri().path();
    if path == "/predict" {
        return Some(None);
    }
    let name = path.strip_prefix("/models/")?.strip_suffix("/predict")?;
    let plain = !name.is_empty() && !name.contains(['/', '%']);
    plain.then_some(Some(name))
}

/// The future of a prediction [`Predictions`] answers.
pub struct Predicting(futures_util::future::BoxFuture<'static, Response>);

impl std::future::Future for Predicting {
    type Output = Result<Response, std::convert::Infallible>;

    fn poll(mut self: std::pin::Pin<&mut Self>, cx: &mut std::task::Context<'_>) -> std::task::Poll<Self::Output> {
        self.0.as_mut().poll(cx).map(Ok)
    }
}

/// A prediction route's answer that is already known.
fn answered<F>(e: ApiError) -> Answering<F> {
    futures_util::future::Either::Left(Box::pin(std::future::ready(e.into_response())))
}

/// Answers `request` on the endpoint `picked` names; `now` is when it arrived.
pub(crate) fn predict(
    state: Arc<AppState>,
    picked: Picked,
    request: Request,
    now: Instant,
) -> impl std::future::Future<Output = Response> {
    // Only the headers and the body are kept: the rest of the request would take room in
    // the future.
    let (headers, body) = {
        let (parts, body) = request.into_parts();
        (parts.headers, body)
    };
    async move {
        let Picked { answer: endpoint, shadow } = picked;
        let limits = Deadline::after(now, state.options.timeout);
        let content_type = headers.get(header::CONTENT_TYPE).and_then(|v| v.to_str().ok());
        // Measured here rather than through `measured`, and each step awaited right here:
        // a future handed to another by value takes its room twice.
        let in_flight = InFlight::enter(&endpoint);
        let outcome = match read_body(body, &headers, state.options.body_limit, limits).await {
            Err(e) => Err(e),
            Ok(bytes) => match shadow {
                None => run_body(&endpoint, bytes, content_type, limits).await,
                // Boxed: the shadowed path's state stays out of every request's future.
                Some(canary) => Box::pin(shadowed(&state, &endpoint, canary, bytes, content_type, limits)).await,
            },
        };
        in_flight.done(now, &outcome);
        let mut response = match outcome {
            Ok((bytes, media_type)) => {
                ([(header::CONTENT_TYPE, HeaderValue::from_static(media_type))], bytes).into_response()
            }
            Err(e) => e.into_response(),
        };
        name_model(&mut response, &endpoint);
        response
    }
}

/// Answers `body` on `endpoint` and sends a copy to the shadowed `canary`
/// ([`shadow_copy`]).
async fn shadowed(
    state: &Arc<AppState>,
    endpoint: &Arc<Endpoint>,
    canary: Arc<Endpoint>,
    body: Bytes,
    content_type: Option<&str>,
    limits: Deadline,
) -> Result<Answer, ApiError> {
    let answer = run_body(endpoint, body.clone(), content_type, limits).await;
    let given = answer.as_ref().ok().map(|(body, _)| body.clone());
    shadow_copy(state.clone(), canary, body, content_type.map(str::to_string), given);
    answer
}

/// Runs a copy of a request (`body`) on a shadowed canary, in the background and under
/// the server's time limit, counted in the canary's own metrics; compares its answer with
/// the one the model gave (`answered`, `None` if it failed) byte for byte, and counts the
/// outcome (`runner_shadow_total`). The answer is discarded.
/// Past `--concurrency` copies in flight, the copy is skipped (`outcome="skipped"`).
fn shadow_copy(
    state: Arc<AppState>,
    canary: Arc<Endpoint>,
    body: Bytes,
    content_type: Option<String>,
    answered: Option<Bytes>,
) {
    // At most as many copies in flight as pipelines may run: a slow canary drops copies
    // rather than piling them up against the model's admission slots.
    let model = canary.manifest().model.clone();
    let in_flight = &state.shadows_in_flight;
    if in_flight.fetch_add(1, Ordering::AcqRel) >= state.options.concurrency {
        in_flight.fetch_sub(1, Ordering::AcqRel);
        state.engine.record_shadow(&model.repository, model.number, "skipped");
        return;
    }
    tokio::spawn(async move {
        let work = run_body(&canary, body, content_type.as_deref(), Deadline::from_now(state.options.timeout));
        let outcome = match (measured(&canary, work).await, answered) {
            (Err(_), _) => "error",
            (Ok((theirs, _)), Some(ours)) if theirs == ours => "agree",
            (Ok(_), _) => "disagree",
        };
        state.shadows_in_flight.fetch_sub(1, Ordering::AcqRel);
        state.engine.record_shadow(&model.repository, model.number, outcome);
    });
}

/// Runs a request body through `endpoint`'s pipeline by the deadline (and the limit it
/// came from, for the error), whichever route it came by. A fast pipeline runs right
/// here, with no timer to arm; the pooled one's future (a timer, a thread hop) is boxed,
/// so that every request's own future stays small: past 1 KiB glibc's allocator leaves
/// its per-thread cache for a slower path on each request. Keeping it under (2.6 KiB
/// before) gave `sum` 1 % and Iris 3 % more throughput at c = 32 (`bench/RESULTS.md`).
pub(crate) async fn run_body(
    endpoint: &Arc<Endpoint>,
    body: Bytes,
    content_type: Option<&str>,
    deadline: Deadline,
) -> Result<Answer, ApiError> {
    match endpoint.try_inline(body, content_type) {
        Ok(answer) => Ok(answer?),
        Err(body) => {
            let call = endpoint.clone().call(body, content_type.map(str::to_string));
            Box::pin(tokio::time::timeout_at(deadline.at(), call))
                .await
                .map_err(|_| ApiError::timed_out(deadline.limit))?
                .map_err(ApiError::from)
        }
    }
}

/// Runs `work` for `endpoint`, counted in its metrics: in flight, outcome (the HTTP
/// status it answers with), latency. The V2 and gRPC predictions go through it; the
/// native ones are counted the same way (`InFlight`) inside [`predict`].
pub(crate) async fn measured<T>(
    endpoint: &Endpoint,
    work: impl std::future::Future<Output = Result<T, ApiError>>,
) -> Result<T, ApiError> {
    let started = Instant::now();
    let in_flight = InFlight::enter(endpoint);
    let outcome = work.await;
    in_flight.done(started, &outcome);
    outcome
}

/// A prediction in flight, counted in its endpoint's `in_flight_requests` until it is
/// done or dropped: a request whose client goes away is dropped mid-way, and must not
/// stay counted.
struct InFlight<'a>(&'a crate::engine::ModelMetrics);

impl<'a> InFlight<'a> {
    fn enter(endpoint: &'a Endpoint) -> InFlight<'a> {
        let metrics = endpoint.metrics();
        metrics.in_flight.inc();
        InFlight(metrics)
    }

    /// Done: counts the outcome (the HTTP status it answers with) and the latency since
    /// `started`.
    fn done<T>(self, started: Instant, outcome: &Result<T, ApiError>) {
        self.0.count(outcome.as_ref().map_or_else(|e| e.status.as_u16(), |_| 200));
        self.0.latency.observe(started.elapsed().as_secs_f64());
    }
}

impl Drop for InFlight<'_> {
    fn drop(&mut self) {
        self.0.in_flight.dec();
    }
}

/// The response header naming the model (its number) that answered.
pub const MODEL_HEADER: &str = "x-runner-model";

/// [`MODEL_HEADER`] as a header name, made once (a name given as text is copied on
/// every insert).
pub(crate) const MODEL_HEADER_NAME: axum::http::HeaderName = axum::http::HeaderName::from_static(MODEL_HEADER);

/// Names the model that answered in [`MODEL_HEADER`]: `iris:3` (the endpoint's label,
/// shared, not copied).
pub(crate) fn name_model(response: &mut Response, endpoint: &Endpoint) {
    if let Ok(value) = HeaderValue::from_maybe_shared(endpoint.label().clone()) {
        response.headers_mut().insert(MODEL_HEADER_NAME, value);
    }
}

fn summary(slot: &Slot, now: u64, shadow: bool) -> serde_json::Value {
    let endpoint = slot.endpoint();
    let split = slot.split().map(|split| {
        serde_json::json!({
            "model": split.endpoint.manifest().model.to_string(),
            "number": split.endpoint.manifest().model.number,
            "percent": split.percent,
            "mode": if shadow { "shadow" } else { "split" },
        })
    });
    let manifest = endpoint.manifest();
    let follows = slot.follow.as_ref().map(|follow| {
        let log = follow.log.lock().unwrap_or_else(|poisoned| poisoned.into_inner()).clone();
        serde_json::json!({
            "alias": follow.reference,
            "swaps": log.swaps,
            "failed": log.failed,
            "unreachable": log.unreachable,
            "canary_failed": log.canary_failed,
        })
    });
    serde_json::json!({
        "name": manifest.model.repository,
        "model": manifest.model.to_string(),
        "number": manifest.model.number,
        "state": "READY",
        "resident_bytes": slot.resident.load(std::sync::atomic::Ordering::Relaxed),
        "idle_ms": now.saturating_sub(slot.last_used()),
        "follows": follows,
        "canary": split,
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

pub(crate) async fn list_models(State(state): State<Arc<AppState>>) -> Result<Json<serde_json::Value>, ApiError> {
    let models = models(&state)?;
    Ok(Json(serde_json::json!({
        "models": models.snapshot().values().map(|slot| summary(slot, state.now_ms(), state.options.shadow)).collect::<Vec<_>>()
    })))
}

pub(crate) async fn model_info(
    State(state): State<Arc<AppState>>,
    PathParams(name): PathParams<String>,
) -> Result<Json<serde_json::Value>, ApiError> {
    let slot = slot(&state, &name)?;
    let mut info = summary(&slot, state.now_ms(), state.options.shadow);
    info["manifest"] = serde_json::to_value(slot.endpoint().manifest()).expect("manifests serialize");
    Ok(Json(info))
}

pub(crate) async fn openapi_json(State(state): State<Arc<AppState>>) -> Result<Json<serde_json::Value>, ApiError> {
    let openapi = models(&state)?.openapi.read().unwrap_or_else(|poisoned| poisoned.into_inner()).clone();
    Ok(Json(openapi))
}

pub(crate) async fn metrics_text(State(state): State<Arc<AppState>>) -> Response {
    (
        [(header::CONTENT_TYPE, "application/openmetrics-text; version=1.0.0; charset=utf-8")],
        state.engine.encode_metrics(),
    )
        .into_response()
}

#[cfg(test)]
mod tests {
    use super::*;

    fn output_size<A, B, C, D, R>(_: impl Fn(A, B, C, D) -> R) -> usize {
        std::mem::size_of::<R>()
    }

    #[test]
    fn the_prediction_routes_are_told_apart_by_method_and_path() {
        let route = |method: &str, path: &str| {
            let request = axum::http::Request::builder().method(method).uri(path).body(axum::body::Body::empty());
            prediction_route(&request.unwrap()).map(|name| name.map(str::to_string))
        };
        assert_eq!(route("POST", "/predict"), Some(None));
        assert_eq!(route("POST", "/models/iris/predict"), Some(Some("iris".into())));
        assert_eq!(route("POST", "/models/iris/predict?x=1"), Some(Some("iris".into())));
        for (method, path) in [
            ("GET", "/predict"),
            ("PUT", "/models/iris/predict"),
            ("POST", "/models/ir%69s/predict"),
            ("POST", "/models//predict"),
            ("POST", "/models/a/b/predict"),
            ("POST", "/models/iris/predict/"),
            ("POST", "/models/iris"),
            ("POST", "/predict/"),
        ] {
            assert_eq!(route(method, path), None, "{method} {path}");
        }
    }

    /// A prediction's future stays small: it is allocated for every request (by
    /// `Predictions`; by axum, with its own part of about 270 bytes, for an escaped
    /// name), and past 1 KiB glibc's allocator leaves its per-thread cache for a slower
    /// path each time (1-3 % of a small model's throughput, `bench/RESULTS.md`). It was
    /// 2.6 KiB when its steps were handed to one another as futures.
    #[test]
    fn a_prediction_future_stays_under_640_bytes() {
        let size = output_size(|a: Arc<AppState>, b: Picked, c: Request, d: Instant| predict(a, b, c, d));
        assert!(size <= 640, "predict's future takes {size} bytes; box what a rare path awaits (see run_body)");
    }
}
