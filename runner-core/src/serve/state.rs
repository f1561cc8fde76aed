//! What every route shares: the options, the engine, the served models, and reading
//! bodies under the limit.

use std::collections::BTreeMap;
use std::sync::atomic::AtomicBool;
use std::sync::{Arc, Mutex, OnceLock, RwLock};

use axum::body::Body;
use axum::http::{header, HeaderMap, StatusCode};
use bytes::Bytes;

use super::error::ApiError;
use super::options::ServeOptions;
use crate::engine::{Endpoint, Engine};

/// The served names and their slots.
///
/// Shared state: `table` is read by every request (one `ArcSwap` load, then a lookup) and
/// replaced whole, copy on write, when a model is loaded or unloaded (the repository API,
/// `serve --repository-mode`). Writers serialise on `write`, so two changes never race to
/// replace the table and lose one another; a reader sees the table before or after a
/// change, never half of one. A request takes its slot's endpoint once and finishes on it,
/// so unloading a name (removing its slot) never fails a request already past the lookup.
pub(crate) struct Models {
    table: arc_swap::ArcSwap<BTreeMap<String, Arc<Slot>>>,
    write: Mutex<()>,
    /// Rebuilt when a model is swapped, loaded or unloaded.
    pub(crate) openapi: RwLock<serde_json::Value>,
}

impl Models {
    pub(crate) fn new(table: BTreeMap<String, Arc<Slot>>, openapi: serde_json::Value) -> Models {
        Models { table: arc_swap::ArcSwap::from_pointee(table), write: Mutex::new(()), openapi: RwLock::new(openapi) }
    }

    /// The slot served as `name` now.
    pub(crate) fn get(&self, name: &str) -> Option<Arc<Slot>> {
        self.table.load().get(name).cloned()
    }

    /// Every served name now, with its slot.
    pub(crate) fn snapshot(&self) -> Arc<BTreeMap<String, Arc<Slot>>> {
        self.table.load_full()
    }

    /// Changes the table under the write lock: `change` gets a copy to edit, which
    /// replaces the table whole; returns what `change` returns. The OpenAPI document is
    /// rebuilt after.
    pub(crate) fn change<T>(&self, change: impl FnOnce(&mut BTreeMap<String, Arc<Slot>>) -> T) -> T {
        let _writing = self.write.lock().unwrap_or_else(|p| p.into_inner());
        let mut table = BTreeMap::clone(&self.table.load());
        let outcome = change(&mut table);
        self.table.store(Arc::new(table));
        self.refresh_openapi();
        outcome
    }

    /// Rebuilds the OpenAPI document from the endpoints answering now.
    pub(crate) fn refresh_openapi(&self) {
        let document = super::openapi::document(&endpoints(&self.snapshot()));
        *self.openapi.write().unwrap_or_else(|poisoned| poisoned.into_inner()) = document;
    }
}

/// The endpoints answering now, by name (for the OpenAPI document).
pub(crate) fn endpoints(table: &BTreeMap<String, Arc<Slot>>) -> BTreeMap<String, Arc<Endpoint>> {
    table.iter().map(|(name, slot)| (name.clone(), slot.endpoint())).collect()
}

/// Drops a swapped-out or unloaded endpoint once the requests still holding it have
/// finished, on a thread of its own: freeing a large model must not stall the async
/// runtime.
pub(crate) fn release(old: Arc<Endpoint>) {
    let started = std::time::Instant::now();
    let spawned = std::thread::Builder::new().name("release-model".into()).spawn(move || {
        while Arc::strong_count(&old) > 1 {
            std::thread::sleep(std::time::Duration::from_millis(5));
        }
        let model = old.manifest().model.to_string();
        drop(old);
        tracing::info!(%model, drained_ms = started.elapsed().as_millis() as u64, "released the model");
    });
    if let Err(e) = spawned {
        tracing::warn!(error = %e, "cannot start a thread to release the model; its last request drops it");
    }
}

/// One served name: the endpoint answering now, swapped whole when the alias it follows
/// moves. A request takes the endpoint once (an `Arc`) and finishes on it, so the old
/// one drains while new requests go to the new one.
pub(crate) struct Slot {
    current: arc_swap::ArcSwap<Endpoint>,
    /// The canary of a split alias and its share, if the alias has one (see
    /// [`super::split`]). Set apart from `current`, so each changes with one store: while
    /// a follower changes both, a request may see the old model with the new canary or the
    /// new model with the old one, every one of them a version the alias named before or
    /// after the move.
    split: arc_swap::ArcSwapOption<Split>,
    /// Requests without a sticky key counted, to take turns ([`super::split::turn_bucket`]).
    turns: std::sync::atomic::AtomicU64,
    /// What the slot follows, and what happened (for `/models`).
    pub(crate) follow: Option<Follow>,
    /// When a request last took the endpoint, in milliseconds since the server started
    /// (the memory budget unloads the least recently used first).
    last_used: std::sync::atomic::AtomicU64,
    /// The growth of the process's resident memory while the model loaded, in bytes (0:
    /// not measured, as for the models named at start).
    pub(crate) resident: std::sync::atomic::AtomicU64,
}

impl Slot {
    pub(crate) fn new(endpoint: Arc<Endpoint>, follow: Option<Follow>) -> Slot {
        Slot {
            current: arc_swap::ArcSwap::new(endpoint),
            split: arc_swap::ArcSwapOption::empty(),
            turns: std::sync::atomic::AtomicU64::new(0),
            follow,
            last_used: std::sync::atomic::AtomicU64::new(0),
            resident: std::sync::atomic::AtomicU64::new(0),
        }
    }

    /// Marks the slot used at `at` (milliseconds since the server started).
    pub(crate) fn touch(&self, at: u64) {
        // A relaxed store, and none when the value is current: no cache line bounces
        // between cores for requests within the same millisecond.
        if self.last_used.load(std::sync::atomic::Ordering::Relaxed) != at {
            self.last_used.store(at, std::sync::atomic::Ordering::Relaxed);
        }
    }

    /// When a request last took the endpoint (milliseconds since the server started).
    pub(crate) fn last_used(&self) -> u64 {
        self.last_used.load(std::sync::atomic::Ordering::Relaxed)
    }

    /// Whether a request holds the endpoint (or the canary's) now (the slot holds one
    /// reference, `Arc`s taken by requests the others).
    pub(crate) fn busy(&self) -> bool {
        Arc::strong_count(&self.current.load()) > 1
            || self.split.load().as_ref().is_some_and(|split| Arc::strong_count(&split.endpoint) > 1)
    }

    /// The endpoint that answers a request whose sticky key is `key` (`None`: it has
    /// none), and, in `shadow` mode, the canary that gets a copy of it: the canary answers
    /// its share of requests itself unless `shadow`, where the model answers every one and
    /// the canary gets a copy of that share. See [`super::split`] for who is in the share.
    pub(crate) fn pick(&self, key: Option<&[u8]>, shadow: bool) -> Picked {
        let split = self.split.load();
        let Some(split) = split.as_deref() else { return Picked { answer: self.endpoint(), shadow: None } };
        let bucket = match key {
            Some(key) => super::split::sticky_bucket(split.endpoint.manifest().model.number, key),
            None => super::split::turn_bucket(self.turns.fetch_add(1, std::sync::atomic::Ordering::Relaxed)),
        };
        match (super::split::to_canary(bucket, split.percent), shadow) {
            (false, _) => Picked { answer: self.endpoint(), shadow: None },
            (true, false) => Picked { answer: split.endpoint.clone(), shadow: None },
            (true, true) => Picked { answer: self.endpoint(), shadow: Some(split.endpoint.clone()) },
        }
    }

    /// The canary and its share, if the slot has a split.
    pub(crate) fn split(&self) -> Option<Arc<Split>> {
        self.split.load_full()
    }

    /// Sets the split (`None`: ends it); returns the one it replaces.
    pub(crate) fn set_split(&self, split: Option<Split>) -> Option<Arc<Split>> {
        self.split.swap(split.map(Arc::new))
    }

    /// The endpoint answering now.
    pub(crate) fn endpoint(&self) -> Arc<Endpoint> {
        self.current.load_full()
    }

    /// Puts `endpoint` in; returns the one it replaces.
    pub(crate) fn swap(&self, endpoint: Arc<Endpoint>) -> Arc<Endpoint> {
        self.current.swap(endpoint)
    }
}

/// The second model of a split alias, and the share of requests it answers.
pub(crate) struct Split {
    pub(crate) endpoint: Arc<Endpoint>,
    pub(crate) percent: u8,
}

/// Who answers one request ([`Slot::pick`]).
pub(crate) struct Picked {
    /// The endpoint that answers it.
    pub(crate) answer: Arc<Endpoint>,
    /// The canary that gets a copy, in shadow mode.
    pub(crate) shadow: Option<Arc<Endpoint>>,
}

/// A served name that follows an alias.
pub(crate) struct Follow {
    /// `iris:prod`.
    pub(crate) reference: String,
    pub(crate) log: Mutex<FollowLog>,
}

/// Swaps and failed loads of one followed alias.
#[derive(Debug, Default, Clone, serde::Serialize)]
pub(crate) struct FollowLog {
    /// Every swap, oldest first.
    pub(crate) swaps: Vec<SwapRecord>,
    /// The last version that could not be loaded (it was not swapped in), until the alias
    /// moves to one that loads.
    pub(crate) failed: Option<FailedLoad>,
    /// The last time the alias could not be read from the registry, and why.
    pub(crate) unreachable: Option<FailedLoad>,
    /// The canary that could not be loaded (the model answers every request meanwhile),
    /// until the alias names another.
    pub(crate) canary_failed: Option<FailedLoad>,
}

/// One swap.
#[derive(Debug, Clone, serde::Serialize)]
pub(crate) struct SwapRecord {
    pub(crate) from: u64,
    pub(crate) to: u64,
    /// When it was swapped in (RFC 3339).
    pub(crate) at: String,
    /// How long loading took, in milliseconds.
    pub(crate) load_ms: u64,
}

/// A version that was not swapped in.
#[derive(Debug, Clone, serde::Serialize)]
pub(crate) struct FailedLoad {
    pub(crate) number: Option<u64>,
    /// sha256 of its manifest: not tried again until the alias points elsewhere.
    pub(crate) manifest: Option<String>,
    pub(crate) at: String,
    pub(crate) error: String,
}

pub(crate) struct AppState {
    pub(crate) options: ServeOptions,
    pub(crate) api_key_hash: Option<[u8; 32]>,
    pub(crate) engine: Engine,
    pub(crate) models: OnceLock<Models>,
    pub(crate) ready: AtomicBool,
    pub(crate) request_id_prefix: String,
    /// The registry models are loaded from at run time (set when serving from one).
    pub(crate) registry: OnceLock<Arc<dyn crate::registry::Registry>>,
    /// Names being loaded or unloaded through the repository API, and those that failed
    /// or were unloaded on request (the repository index's LOADING and UNAVAILABLE).
    pub(crate) changes: Mutex<BTreeMap<String, Change>>,
    /// Held while a model is loaded at run time, from making room for it to serving it:
    /// one load at a time, so that the growth of resident memory it causes is its own and
    /// concurrent loads cannot pass `--max-loaded-models` together.
    pub(crate) loading: tokio::sync::Mutex<()>,
    /// When the server started ([`Slot::touch`] counts from it).
    pub(crate) started: crate::engine::Instant,
    /// Copies of requests running on shadowed canaries now (`serve --shadow`).
    pub(crate) shadows_in_flight: std::sync::atomic::AtomicUsize,
}

impl AppState {
    /// Milliseconds since the server started.
    pub(crate) fn now_ms(&self) -> u64 {
        self.started.elapsed().as_millis() as u64
    }

    /// Milliseconds from when the server started to `at` (no reading of the clock).
    pub(crate) fn ms_at(&self, at: crate::engine::Instant) -> u64 {
        at.saturating_duration_since(self.started).as_millis() as u64
    }
}

/// What the repository API did last to a name that is not READY.
#[derive(Debug, Clone)]
pub(crate) enum Change {
    /// Being loaded now.
    Loading,
    /// Being unloaded now.
    Unloading,
    /// The last load failed, and why.
    Failed(String),
    /// Unloaded on request (`--repository-mode all` does not load it again by itself).
    Unloaded,
}

impl AppState {
    /// Whether `key` is the server's API key (false when it has none): constant-time on
    /// the keys' hashes, so neither content nor length leaks.
    pub(crate) fn is_key(&self, key: &str) -> bool {
        use subtle::ConstantTimeEq;
        self.api_key_hash.as_ref().is_some_and(|expected| bool::from(sha256(key.as_bytes()).ct_eq(expected)))
    }
}

pub(crate) fn sha256(bytes: &[u8]) -> [u8; 32] {
    use sha2::Digest;
    sha2::Sha256::digest(bytes).into()
}

pub(crate) fn models(state: &AppState) -> Result<&Models, ApiError> {
    state.models.get().ok_or_else(ApiError::not_ready)
}

/// The endpoint answering for `name` now (the model an alias points at, not its canary:
/// what a request is answered by is [`pick`]).
pub(crate) fn endpoint(state: &AppState, name: &str) -> Result<Arc<Endpoint>, ApiError> {
    slot(state, name).map(|slot| {
        slot.touch(state.now_ms());
        slot.endpoint()
    })
}

/// Who answers a request for `name` whose sticky key (the value of the header
/// `--sticky-header` names) is `key`: the model, or its canary for the canary's share.
pub(crate) fn pick(
    state: &AppState,
    name: &str,
    key: Option<&[u8]>,
    now: crate::engine::Instant,
) -> Result<Picked, ApiError> {
    slot(state, name).map(|slot| {
        slot.touch(state.ms_at(now));
        slot.pick(key, state.options.shadow)
    })
}

/// The sticky key of a request with `headers`, when the server names a sticky header.
pub(crate) fn sticky_key<'h>(state: &AppState, headers: &'h HeaderMap) -> Option<&'h [u8]> {
    state.options.sticky_header.as_ref().and_then(|name| headers.get(name)).map(|value| value.as_bytes())
}

pub(crate) fn slot(state: &AppState, name: &str) -> Result<Arc<Slot>, ApiError> {
    let models = models(state)?;
    models.get(name).ok_or_else(|| {
        let table = models.snapshot();
        let names: Vec<&str> = table.keys().map(String::as_str).collect();
        let served = if names.is_empty() { "none".to_string() } else { names.join(", ") };
        let how = if state.options.repository_mode.loads_at_run_time() {
            format!("; load it with POST /v2/repository/models/{name}/load")
        } else {
            String::new()
        };
        ApiError::new(
            StatusCode::NOT_FOUND,
            "not_found",
            format!("no model `{name}` is served here (served: {served}){how}"),
        )
    })
}

/// Reads a request body whole: at most `limit` bytes (413 past it, and before reading
/// when `Content-Length` says so), by `deadline` (504 naming the limit it came from; a
/// body that stalls past the server's `--body-timeout` is 408). A body that
/// came with its head, as a small model's request does, is taken as it arrived: no copy,
/// no collecting buffer and no timer. Only a body still on its way waits, boxed, under a
/// timer: the common request's future stays small (see `routes::run_body`).
pub(crate) async fn read_body(
    body: Body,
    headers: &HeaderMap,
    limit: usize,
    deadline: Deadline,
) -> Result<Bytes, ApiError> {
    let declared =
        headers.get(header::CONTENT_LENGTH).and_then(|v| v.to_str().ok()).and_then(|v| v.parse::<usize>().ok());
    if declared.is_some_and(|n| n > limit) {
        return Err(too_large(limit));
    }
    let mut reading = Reading { body, first: None, rest: None, read: 0, limit };
    if let std::task::Poll::Ready(read) = std::future::poll_fn(|cx| std::task::Poll::Ready(reading.poll(cx))).await {
        return read;
    }
    Box::pin(tokio::time::timeout_at(deadline.at(), std::future::poll_fn(move |cx| reading.poll(cx))))
        .await
        .map_err(|_| ApiError::timed_out(deadline.limit))?
}

/// When a request must be answered by: `limit` after it arrived. Kept as the arrival on
/// the hot path's clock, and turned into tokio's time only where a timer is armed (a body
/// still on its way, a pipeline on the pool): a fast request reads no other clock.
#[derive(Clone, Copy, Debug)]
pub(crate) struct Deadline {
    arrived: crate::engine::Instant,
    /// The time limit it came from, which a timeout error names.
    pub(crate) limit: std::time::Duration,
}

impl Deadline {
    /// `limit` after `arrived`.
    pub(crate) fn after(arrived: crate::engine::Instant, limit: std::time::Duration) -> Deadline {
        Deadline { arrived, limit }
    }

    /// `limit` from now.
    pub(crate) fn from_now(limit: std::time::Duration) -> Deadline {
        Deadline::after(crate::engine::Instant::now(), limit)
    }

    /// The deadline on tokio's clock, for a timer.
    pub(crate) fn at(&self) -> tokio::time::Instant {
        tokio::time::Instant::now() + self.limit.saturating_sub(self.arrived.elapsed())
    }
}

fn too_large(limit: usize) -> ApiError {
    ApiError::new(
        StatusCode::PAYLOAD_TOO_LARGE,
        "payload_too_large",
        format!("the body is larger than the {limit}-byte limit"),
    )
}

/// A body being read to the end: its first chunk kept as it came, later ones copied
/// after it.
struct Reading {
    body: Body,
    first: Option<Bytes>,
    rest: Option<bytes::BytesMut>,
    read: usize,
    limit: usize,
}

impl Reading {
    fn poll(&mut self, cx: &mut std::task::Context<'_>) -> std::task::Poll<Result<Bytes, ApiError>> {
        use axum::body::HttpBody as _;
        loop {
            let frame = match std::task::ready!(std::pin::Pin::new(&mut self.body).poll_frame(cx)) {
                None => return std::task::Poll::Ready(Ok(self.take())),
                Some(Err(e)) => return std::task::Poll::Ready(Err(body_failed(&e))),
                Some(Ok(frame)) => frame,
            };
            // Trailers, if any, are not part of the body.
            let Ok(data) = frame.into_data() else { continue };
            self.read += data.len();
            if self.read > self.limit {
                return std::task::Poll::Ready(Err(too_large(self.limit)));
            }
            match (&mut self.first, &mut self.rest) {
                (None, _) => self.first = Some(data),
                (Some(first), None) => {
                    let mut rest = bytes::BytesMut::with_capacity(first.len() + data.len());
                    rest.extend_from_slice(first);
                    rest.extend_from_slice(&data);
                    self.rest = Some(rest);
                }
                (Some(_), Some(rest)) => rest.extend_from_slice(&data),
            }
            if self.body.is_end_stream() {
                return std::task::Poll::Ready(Ok(self.take()));
            }
        }
    }

    fn take(&mut self) -> Bytes {
        match self.rest.take() {
            Some(rest) => rest.freeze(),
            None => self.first.take().unwrap_or_default(),
        }
    }
}

/// The error of a body that could not be read: 408 when it stalled, 400 otherwise.
fn body_failed(e: &axum::Error) -> ApiError {
    let causes = std::iter::successors(std::error::Error::source(e), |s| s.source());
    if causes.into_iter().any(|s| s.is::<tower_http::timeout::TimeoutError>() || s.is::<super::watch::BodyTimedOut>()) {
        ApiError::new(
            StatusCode::REQUEST_TIMEOUT,
            "request_timeout",
            format!("the body stalled: {e}; send it without pauses that long (the server's --body-timeout)"),
        )
    } else {
        ApiError::new(StatusCode::BAD_REQUEST, "bad_request", format!("could not read the body: {e}"))
    }
}
