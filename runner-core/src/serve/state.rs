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

pub(crate) struct Models {
    pub(crate) by_name: BTreeMap<String, Slot>,
    /// Rebuilt when a model is swapped.
    pub(crate) openapi: RwLock<serde_json::Value>,
}

/// One served name: the endpoint answering now, swapped whole when the alias it follows
/// moves. A request takes the endpoint once (an `Arc`) and finishes on it, so the old
/// one drains while new requests go to the new one.
pub(crate) struct Slot {
    current: arc_swap::ArcSwap<Endpoint>,
    /// What the slot follows, and what happened (for `/models`).
    pub(crate) follow: Option<Follow>,
}

impl Slot {
    pub(crate) fn new(endpoint: Arc<Endpoint>, follow: Option<Follow>) -> Slot {
        Slot { current: arc_swap::ArcSwap::new(endpoint), follow }
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

/// The endpoint answering for `name` now.
pub(crate) fn endpoint(state: &AppState, name: &str) -> Result<Arc<Endpoint>, ApiError> {
    slot(state, name).map(Slot::endpoint)
}

pub(crate) fn slot<'a>(state: &'a AppState, name: &str) -> Result<&'a Slot, ApiError> {
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

pub(crate) async fn read_body(body: Body, headers: &HeaderMap, limit: usize) -> Result<Bytes, ApiError> {
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
        // The limit's own error type, wherever it sits in the chain.
        let causes = std::iter::successors(std::error::Error::source(&e), |s| s.source());
        let (is_limit, stalled) = causes.fold((false, false), |(limit, stalled), s| {
            (
                limit || s.is::<http_body_util::LengthLimitError>(),
                stalled || s.is::<tower_http::timeout::TimeoutError>(),
            )
        });
        if is_limit {
            too_large()
        } else if stalled {
            ApiError::new(
                StatusCode::REQUEST_TIMEOUT,
                "request_timeout",
                format!("the body stalled: {e}; send it without pauses that long (the server's --body-timeout)"),
            )
        } else {
            ApiError::new(StatusCode::BAD_REQUEST, "bad_request", format!("could not read the body: {e}"))
        }
    })
}
