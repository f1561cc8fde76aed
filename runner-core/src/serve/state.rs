//! What every route shares: the options, the engine, the served models, and reading
//! bodies under the limit.

use std::collections::BTreeMap;
use std::sync::atomic::AtomicBool;
use std::sync::{Arc, OnceLock};

use axum::body::Body;
use axum::http::{header, HeaderMap, StatusCode};
use bytes::Bytes;

use super::error::ApiError;
use super::options::ServeOptions;
use crate::engine::{Endpoint, Engine};

pub(crate) struct Models {
    pub(crate) by_name: BTreeMap<String, Arc<Endpoint>>,
    pub(crate) openapi: serde_json::Value,
}

pub(crate) struct AppState {
    pub(crate) options: ServeOptions,
    pub(crate) api_key_hash: Option<[u8; 32]>,
    pub(crate) engine: Engine,
    pub(crate) models: OnceLock<Models>,
    pub(crate) ready: AtomicBool,
    pub(crate) request_id_prefix: String,
}

pub(crate) fn sha256(bytes: &[u8]) -> [u8; 32] {
    use sha2::Digest;
    sha2::Sha256::digest(bytes).into()
}

pub(crate) fn models(state: &AppState) -> Result<&Models, ApiError> {
    state.models.get().ok_or_else(ApiError::not_ready)
}

pub(crate) fn endpoint<'a>(state: &'a AppState, name: &str) -> Result<&'a Arc<Endpoint>, ApiError> {
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
        let is_limit = std::iter::successors(std::error::Error::source(&e), |s| s.source())
            .any(|s| s.is::<http_body_util::LengthLimitError>());
        if is_limit {
            too_large()
        } else {
            ApiError::new(StatusCode::BAD_REQUEST, "bad_request", format!("could not read the body: {e}"))
        }
    })
}
