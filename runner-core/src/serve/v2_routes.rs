//! The KServe V2 routes (see [`crate::v2`]): health, metadata and inference, with the
//! binary tensor data extension. Runners that speak tensors take and give their
//! tensors; every other runner takes one `BYTES` element holding its request body (the
//! JSON document it takes on `/predict`) and answers one holding its response body.

use std::sync::atomic::Ordering;
use std::sync::Arc;

use axum::extract::{Request, State};
use axum::http::{header, HeaderValue, StatusCode};
use axum::response::{IntoResponse, Response};
use axum::Json;

use super::error::{ApiError, PathParams};
use super::routes::{measured, run_body};
use super::state::{models, read_body, slot, AppState, Deadline};
use crate::engine::Endpoint;
use crate::v2;

/// V2 errors are `{"error": "message"}`, with the status of the error, except that a
/// request the model cannot take (422 on `/predict`) is a 400, as KServe's protocol and
/// Triton answer it (V2 clients treat 400 as "fix the request").
pub(super) struct V2Error(pub(super) ApiError);

impl From<ApiError> for V2Error {
    fn from(error: ApiError) -> Self {
        V2Error(error)
    }
}

impl IntoResponse for V2Error {
    fn into_response(self) -> Response {
        let mut response = self.0.clone().into_response();
        if response.status() == StatusCode::UNPROCESSABLE_ENTITY {
            *response.status_mut() = StatusCode::BAD_REQUEST;
        }
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

/// The server's name in V2 server metadata.
pub(super) const SERVER_NAME: &str = "runner-core";

pub(super) async fn server_metadata() -> Json<serde_json::Value> {
    Json(serde_json::json!({
        "name": SERVER_NAME,
        "version": env!("CARGO_PKG_VERSION"),
        "extensions": ["binary_tensor_data"],
    }))
}

/// The name of the one tensor in and out of a runner that does not speak tensors.
const BODY_TENSOR: &str = "body";

/// The signature of a runner that does not speak tensors: one `BYTES` element in, its
/// request body, and one out, its response body. The platform says which:
/// `runner_json` (a JSON document each way) or `runner_body` (other media types).
fn body_signature(endpoint: &Endpoint) -> v2::Signature {
    let (input, output) = endpoint.media_types();
    let tensor = |name: &str| v2::TensorMetadata { name: name.to_string(), datatype: "BYTES".into(), shape: vec![1] };
    let json = input == crate::api::JSON && output == crate::api::JSON;
    v2::Signature {
        platform: if json { "runner_json" } else { "runner_body" }.to_string(),
        inputs: vec![tensor(BODY_TENSOR)],
        outputs: vec![tensor(BODY_TENSOR)],
    }
}

/// The served model `name`, checking `version` when the path has one, and its V2
/// signature (tensors, or [`body_signature`]).
pub(super) fn tensor_endpoint(
    state: &AppState,
    name: &str,
    version: Option<&str>,
) -> Result<(Arc<Endpoint>, v2::Signature), V2Error> {
    let endpoint = versioned_endpoint(state, name, version)?;
    let signature = endpoint.v2_signature().unwrap_or_else(|| body_signature(&endpoint));
    Ok((endpoint, signature))
}

/// The served model `name`, checking `version` when the path has one (the canary of a
/// split is served at its own version too).
pub(super) fn versioned_endpoint(
    state: &AppState,
    name: &str,
    version: Option<&str>,
) -> Result<Arc<Endpoint>, V2Error> {
    routed_endpoint(state, name, version, None)
}

/// The endpoint that answers an inference request for `name`: the one at `version` when
/// the path names one, else the model or its canary by the split, with `key` the request's
/// sticky key (`None` for a request that is not an inference: the model).
pub(super) fn routed_endpoint(
    state: &AppState,
    name: &str,
    version: Option<&str>,
    key: Option<Option<&[u8]>>,
) -> Result<Arc<Endpoint>, V2Error> {
    let slot = slot(state, name)?;
    slot.touch(state.now_ms());
    let Some(version) = version else {
        // A shadowed canary answers nothing itself: its copies come from /predict.
        return Ok(match key {
            Some(key) if !state.options.shadow => slot.pick(key, false).answer,
            _ => slot.endpoint(),
        });
    };
    let endpoint = slot.endpoint();
    let number = endpoint.manifest().model.number;
    let canary = slot.split().map(|split| split.endpoint.clone());
    let wanted = version.parse::<u64>().ok();
    if wanted == Some(number) {
        return Ok(endpoint);
    }
    if let Some(canary) = canary.filter(|c| Some(c.manifest().model.number) == wanted) {
        return Ok(canary);
    }
    let served = match slot.split() {
        Some(split) => format!("versions {number} and {} (its canary)", split.endpoint.manifest().model.number),
        None => format!("version {number}"),
    };
    Err(ApiError::new(
        StatusCode::NOT_FOUND,
        "not_found",
        format!("model `{name}` is served at {served}, not {version}"),
    )
    .into())
}

pub(super) async fn model_metadata(
    State(state): State<Arc<AppState>>,
    name: Result<PathParams<String>, ApiError>,
) -> Result<Json<v2::ModelMetadata>, V2Error> {
    let PathParams(name) = name?;
    metadata(&state, &name, None)
}

pub(super) async fn version_metadata(
    State(state): State<Arc<AppState>>,
    params: Result<PathParams<(String, String)>, ApiError>,
) -> Result<Json<v2::ModelMetadata>, V2Error> {
    let PathParams((name, version)) = params?;
    metadata(&state, &name, Some(&version))
}

fn metadata(state: &AppState, name: &str, version: Option<&str>) -> Result<Json<v2::ModelMetadata>, V2Error> {
    Ok(Json(model_metadata_of(state, name, version)?))
}

/// The V2 metadata of the served model `name` (at `version`, when given).
pub(super) fn model_metadata_of(
    state: &AppState,
    name: &str,
    version: Option<&str>,
) -> Result<v2::ModelMetadata, V2Error> {
    let (endpoint, signature) = tensor_endpoint(state, name, version)?;
    Ok(v2::ModelMetadata {
        name: name.to_string(),
        versions: vec![endpoint.manifest().model.number.to_string()],
        platform: signature.platform,
        inputs: signature.inputs,
        outputs: signature.outputs,
    })
}

pub(super) async fn model_ready(
    State(state): State<Arc<AppState>>,
    name: Result<PathParams<String>, ApiError>,
) -> Result<Json<serde_json::Value>, V2Error> {
    let PathParams(name) = name?;
    models(&state)?;
    tensor_endpoint(&state, &name, None)?;
    Ok(Json(serde_json::json!({ "name": name, "ready": true })))
}

pub(super) async fn infer(
    State(state): State<Arc<AppState>>,
    name: Result<PathParams<String>, ApiError>,
    request: Request,
) -> Response {
    match name {
        Ok(PathParams(name)) => run_infer(&state, &name, None, request).await,
        Err(e) => V2Error(e).into_response(),
    }
}

pub(super) async fn version_infer(
    State(state): State<Arc<AppState>>,
    params: Result<PathParams<(String, String)>, ApiError>,
    request: Request,
) -> Response {
    match params {
        Ok(PathParams((name, version))) => run_infer(&state, &name, Some(&version), request).await,
        Err(e) => V2Error(e).into_response(),
    }
}

async fn run_infer(state: &Arc<AppState>, name: &str, version: Option<&str>, request: Request) -> Response {
    if state.options.load_on_demand {
        if let Err(e) = super::repository::endpoint(state, name).await {
            return V2Error(e).into_response();
        }
    }
    let key = super::state::sticky_key(state, request.headers());
    let endpoint = match routed_endpoint(state, name, version, Some(key)) {
        Ok(found) => found,
        Err(e) => return e.into_response(),
    };
    let mut response = match measured(&endpoint, infer_response(state, endpoint.clone(), name, request)).await {
        Ok((body, None)) => {
            ([(header::CONTENT_TYPE, HeaderValue::from_static("application/json"))], body).into_response()
        }
        Ok((body, Some(json_length))) => {
            let mut response =
                ([(header::CONTENT_TYPE, HeaderValue::from_static("application/octet-stream"))], body).into_response();
            response.headers_mut().insert(v2::HEADER_LENGTH, HeaderValue::from(json_length));
            response
        }
        Err(e) => V2Error(e).into_response(),
    };
    super::routes::name_model(&mut response, &endpoint);
    response
}

/// Runs one inference request; the response body, and the length of its JSON part when
/// binary outputs follow it.
async fn infer_response(
    state: &AppState,
    endpoint: Arc<Endpoint>,
    name: &str,
    request: Request,
) -> Result<(bytes::Bytes, Option<usize>), ApiError> {
    let deadline = Deadline::from_now(state.options.timeout);
    let (parts, body) = request.into_parts();
    let bytes = read_body(body, &parts.headers, state.options.body_limit, deadline).await?;
    let header_length = parts.headers.get(v2::HEADER_LENGTH).map(|v| v.to_str().unwrap_or("(not text)"));
    let request = v2::decode_request(bytes, header_length)?;
    let v2::InferRequest { id, inputs, outputs: wanted, parameters } = request;
    let outputs = infer_tensors(&endpoint, inputs, wanted.as_deref(), deadline).await?;
    let response = v2::InferResponse {
        model_name: name.to_string(),
        model_version: Some(endpoint.manifest().model.number.to_string()),
        id,
        outputs,
    };
    let binary = |output: &str| v2::wants_binary(parameters.as_ref(), wanted.as_deref(), output);
    Ok(v2::encode_response(response, binary)?)
}

/// Runs `inputs` through `endpoint`, by the deadline (and the limit it came from, for the
/// error), whichever protocol they came by; the outputs asked for (all when `wanted` is
/// `None`). A runner that does not speak tensors takes the one `BYTES` element of
/// [`body_signature`] and answers one.
pub(super) async fn infer_tensors(
    endpoint: &Arc<Endpoint>,
    inputs: Vec<v2::Tensor>,
    wanted: Option<&[v2::RequestedOutput]>,
    deadline: Deadline,
) -> Result<Vec<v2::Tensor>, ApiError> {
    let timed_out = || ApiError::timed_out(deadline.limit);
    // A cheap pipeline runs right here, as on /predict.
    let mut outputs = if endpoint.speaks_tensors() {
        match endpoint.try_v2_inline(inputs) {
            Ok(outputs) => outputs?,
            Err(inputs) => {
                let call = endpoint.clone().v2_infer(inputs);
                Box::pin(tokio::time::timeout_at(deadline.at(), call)).await.map_err(|_| timed_out())??
            }
        }
    } else {
        let body = body_input(inputs)?;
        let (answer, _) = run_body(endpoint, body, Some(endpoint.media_types().0), deadline).await?;
        let mut raw = Vec::with_capacity(answer.len() + 4);
        raw.extend((answer.len() as u32).to_le_bytes());
        raw.extend_from_slice(&answer);
        let mut output = v2::Tensor::json(BODY_TENSOR, vec![1], "BYTES", serde_json::Value::Null);
        output.raw = Some(raw.into());
        vec![output]
    };
    if let Some(wanted) = wanted {
        for w in wanted {
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
    Ok(outputs)
}

/// The request body a runner that does not speak tensors takes, from its one `BYTES`
/// input (binary, or a JSON string).
fn body_input(inputs: Vec<v2::Tensor>) -> Result<bytes::Bytes, ApiError> {
    let wrong = |message: String| ApiError::new(StatusCode::BAD_REQUEST, "invalid_input", message);
    let [input] = <[v2::Tensor; 1]>::try_from(inputs).map_err(|inputs| {
        wrong(format!(
            "this model takes one BYTES input (`{BODY_TENSOR}`, shape [1]) holding its request body, not {} inputs",
            inputs.len()
        ))
    })?;
    if input.datatype != "BYTES" || input.element_count().ok() != Some(1) {
        return Err(wrong(format!(
            "input `{}` is {} of shape {:?}; this model takes one BYTES element (shape [1]) holding its request body",
            input.name, input.datatype, input.shape
        )));
    }
    match &input.raw {
        Some(raw) => Ok(v2::bytes_elements(&input.name, raw)?.remove(0)),
        None => {
            let text = match &input.data {
                serde_json::Value::Array(items) if items.len() == 1 => items[0].as_str(),
                other => other.as_str(),
            };
            text.map(|t| bytes::Bytes::copy_from_slice(t.as_bytes())).ok_or_else(|| {
                wrong(format!("input `{}` must hold one string: the request body (a JSON document)", input.name))
            })
        }
    }
}
