//! The KServe V2 routes (see [`crate::v2`]): health, metadata and inference for the
//! models whose runner speaks tensors.

use std::sync::atomic::Ordering;
use std::sync::Arc;
use std::time::Instant;

use axum::extract::{Path, Request, State};
use axum::http::StatusCode;
use axum::response::{IntoResponse, Response};
use axum::Json;

use super::error::ApiError;
use super::state::{endpoint, models, read_body, AppState};
use crate::engine::Endpoint;
use crate::v2;

/// V2 errors are `{"error": "message"}`, with the status of the error.
pub(super) struct V2Error(ApiError);

impl From<ApiError> for V2Error {
    fn from(error: ApiError) -> Self {
        V2Error(error)
    }
}

impl IntoResponse for V2Error {
    fn into_response(self) -> Response {
        let mut response = self.0.clone().into_response();
        *response.body_mut() = axum::body::Body::from(
            serde_json::to_vec(&serde_json::json!({ "error": self.0.message })).expect("JSON of a string"),
        );
        response.headers_mut().remove(axum::http::header::CONTENT_LENGTH);
        response
    }
}

pub(super) async fn live() -> Json<serde_json::Value> {
    Json(serde_json::json!({ "live": true }))
}

pub(super) async fn ready(State(state): State<Arc<AppState>>) -> Response {
    let ready = state.ready.load(Ordering::Acquire);
    let status = if ready { StatusCode::OK } else { StatusCode::SERVICE_UNAVAILABLE };
    (status, Json(serde_json::json!({ "ready": ready }))).into_response()
}

pub(super) async fn server_metadata() -> Json<serde_json::Value> {
    Json(serde_json::json!({
        "name": "runner-core",
        "version": env!("CARGO_PKG_VERSION"),
        "extensions": [],
    }))
}

/// The served model `name` that speaks V2, checking `version` when the path has one.
fn tensor_endpoint(
    state: &AppState,
    name: &str,
    version: Option<&str>,
) -> Result<(Arc<Endpoint>, v2::Signature), V2Error> {
    let endpoint = endpoint(state, name)?;
    let number = endpoint.manifest().model.number.to_string();
    if let Some(version) = version.filter(|v| *v != number) {
        return Err(ApiError::new(
            StatusCode::NOT_FOUND,
            "not_found",
            format!("model `{name}` is served at version {number}, not {version}"),
        )
        .into());
    }
    let signature = endpoint.v2_signature().ok_or_else(|| {
        ApiError::new(
            StatusCode::NOT_FOUND,
            "not_found",
            format!("model `{name}` does not speak the V2 protocol (its runner has no tensor backend); POST its JSON to /models/{name}/predict"),
        )
    })?;
    Ok((endpoint, signature))
}

pub(super) async fn model_metadata(
    State(state): State<Arc<AppState>>,
    Path(name): Path<String>,
) -> Result<Json<v2::ModelMetadata>, V2Error> {
    metadata(&state, &name, None)
}

pub(super) async fn version_metadata(
    State(state): State<Arc<AppState>>,
    Path((name, version)): Path<(String, String)>,
) -> Result<Json<v2::ModelMetadata>, V2Error> {
    metadata(&state, &name, Some(&version))
}

fn metadata(state: &AppState, name: &str, version: Option<&str>) -> Result<Json<v2::ModelMetadata>, V2Error> {
    let (endpoint, signature) = tensor_endpoint(state, name, version)?;
    Ok(Json(v2::ModelMetadata {
        name: name.to_string(),
        versions: vec![endpoint.manifest().model.number.to_string()],
        platform: signature.platform,
        inputs: signature.inputs,
        outputs: signature.outputs,
    }))
}

pub(super) async fn model_ready(
    State(state): State<Arc<AppState>>,
    Path(name): Path<String>,
) -> Result<Json<serde_json::Value>, V2Error> {
    models(&state)?;
    tensor_endpoint(&state, &name, None)?;
    Ok(Json(serde_json::json!({ "name": name, "ready": true })))
}

pub(super) async fn infer(State(state): State<Arc<AppState>>, Path(name): Path<String>, request: Request) -> Response {
    run_infer(&state, &name, None, request).await
}

pub(super) async fn version_infer(
    State(state): State<Arc<AppState>>,
    Path((name, version)): Path<(String, String)>,
    request: Request,
) -> Response {
    run_infer(&state, &name, Some(&version), request).await
}

async fn run_infer(state: &AppState, name: &str, version: Option<&str>, request: Request) -> Response {
    let (endpoint, _) = match tensor_endpoint(state, name, version) {
        Ok(found) => found,
        Err(e) => return e.into_response(),
    };
    let m = endpoint.metrics();
    m.in_flight.inc();
    let started = Instant::now();
    let mut response = match infer_response(state, endpoint.clone(), name, request).await {
        Ok(response) => Json(response).into_response(),
        Err(e) => V2Error(e).into_response(),
    };
    super::routes::name_model(&mut response, &endpoint);
    let m = endpoint.metrics();
    m.in_flight.dec();
    m.count(response.status().as_u16());
    m.latency.observe(started.elapsed().as_secs_f64());
    response
}

async fn infer_response(
    state: &AppState,
    endpoint: Arc<Endpoint>,
    name: &str,
    request: Request,
) -> Result<v2::InferResponse, ApiError> {
    let timeout = state.options.timeout;
    let timed_out = || ApiError::timed_out(timeout);
    let deadline = tokio::time::Instant::now() + timeout;
    let (parts, body) = request.into_parts();
    let bytes = tokio::time::timeout_at(deadline, read_body(body, &parts.headers, state.options.body_limit))
        .await
        .map_err(|_| timed_out())??;
    let request: v2::InferRequest = serde_json::from_slice(&bytes).map_err(|e| {
        let status = if e.is_data() { StatusCode::UNPROCESSABLE_ENTITY } else { StatusCode::BAD_REQUEST };
        ApiError::new(status, "invalid_input", format!("not a V2 inference request: {e}"))
    })?;
    let v2::InferRequest { id, inputs, outputs: wanted, .. } = request;
    let mut outputs =
        tokio::time::timeout_at(deadline, endpoint.clone().v2_infer(inputs)).await.map_err(|_| timed_out())??;
    if let Some(wanted) = wanted {
        for w in &wanted {
            if !outputs.iter().any(|o| o.name == w.name) {
                let names: Vec<&str> = outputs.iter().map(|o| o.name.as_str()).collect();
                return Err(ApiError::new(
                    StatusCode::BAD_REQUEST,
                    "invalid_input",
                    format!("the model has no output `{}` (its outputs: {})", w.name, names.join(", ")),
                ));
            }
        }
        outputs.retain(|o| wanted.iter().any(|w| w.name == o.name));
    }
    Ok(v2::InferResponse {
        model_name: name.to_string(),
        model_version: Some(endpoint.manifest().model.number.to_string()),
        id,
        outputs,
    })
}
