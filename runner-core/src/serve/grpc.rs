//! The KServe V2 protocol over gRPC (`inference.GRPCInferenceService`), on its own
//! address next to the HTTP server ([`ServeOptions::grpc_addr`](super::ServeOptions::grpc_addr),
//! `serve --grpc-addr`).
//!
//! It is one more front end over the same engine as HTTP: a `ModelInfer` goes through the
//! same admission, batching (a gRPC request and an HTTP request can share a batch), time
//! limit and metrics as `POST /v2/models/{name}/infer`. Inputs come as typed `contents`
//! or as `raw_input_contents`; outputs always go back as `raw_output_contents`, as Triton
//! does (clients such as `tritonclient.grpc` read both).
//!
//! | error | gRPC status |
//! |---|---|
//! | bad input: shape, datatype, sizes | `INVALID_ARGUMENT` |
//! | unknown model or version | `NOT_FOUND` |
//! | still loading, overloaded | `UNAVAILABLE` |
//! | past the time limit, or the client's `grpc-timeout` (answered a tenth early, at most 200 ms, so the client hears it) | `DEADLINE_EXCEEDED` |
//! | missing or wrong API key | `UNAUTHENTICATED` |
//! | a message over the body limit (`--body-limit`) | `OUT_OF_RANGE` (tonic's check, naming the limit) |
//!
//! With an API key, every call but `ServerLive` and `ServerReady` needs the metadata
//! `authorization: Bearer KEY` (or `x-api-key: KEY`).
//!
//! ```no_run
//! # async fn example() -> Result<(), Box<dyn std::error::Error>> {
//! use runner_core::serve::grpc::proto::{self, grpc_inference_service_client::GrpcInferenceServiceClient};
//! // To `serve iris:latest --grpc-addr 127.0.0.1:8001`; the channel is tonic's (its
//! // `channel` feature).
//! let channel = tonic::transport::Channel::from_static("http://127.0.0.1:8001").connect().await?;
//! let mut client = GrpcInferenceServiceClient::new(channel);
//! let ready = client.model_ready(proto::ModelReadyRequest { name: "iris".into(), version: String::new() }).await?;
//! assert!(ready.into_inner().ready);
//! # Ok(())
//! # }
//! ```

use std::sync::atomic::Ordering;
use std::sync::Arc;
use std::time::Duration;

use axum::http::StatusCode;
use bytes::Bytes;
use tonic::{Request, Response, Status};

use super::error::ApiError;
use super::repository;
use super::routes::measured;
use super::state::{AppState, Deadline};
use super::v2_routes::{infer_tensors, model_metadata_of, routed_endpoint, tensor_endpoint, SERVER_NAME};
use crate::engine::Endpoint;
use crate::v2;

/// The messages, server and client generated from `proto/grpc_predict_v2.proto` (the
/// KServe V2 service definition, package `inference`).
#[allow(missing_docs, clippy::all, rust_2018_idioms)]
pub mod proto {
    tonic::include_proto!("inference");
}

use proto::grpc_inference_service_server::{GrpcInferenceService, GrpcInferenceServiceServer};
use proto::infer_parameter::ParameterChoice;
use proto::model_infer_response::InferOutputTensor;
use proto::{InferParameter, InferTensorContents};

/// The gRPC service over the served models.
pub(super) struct V2Grpc {
    state: Arc<AppState>,
}

/// The gRPC routes as an axum router (served over HTTP/2 by `serve_connections`), with the
/// API-key check when the server has a key.
pub(super) fn router(state: Arc<AppState>) -> axum::Router {
    let limit = state.options.body_limit;
    let service = GrpcInferenceServiceServer::new(V2Grpc { state: state.clone() })
        .max_decoding_message_size(limit)
        .max_encoding_message_size(usize::MAX);
    let router = tonic::service::Routes::new(service).prepare().into_axum_router();
    if state.api_key_hash.is_none() {
        return router;
    }
    router.layer(axum::middleware::from_fn_with_state(state, authorize))
}

/// The API-key check of [`super::routes::authorize`], answered as a gRPC status. Health
/// calls need no key, as `/livez` and `/readyz` do not.
async fn authorize(
    axum::extract::State(state): axum::extract::State<Arc<AppState>>,
    request: axum::extract::Request,
    next: axum::middleware::Next,
) -> axum::response::Response {
    let path = request.uri().path();
    let health = path.ends_with("/ServerLive") || path.ends_with("/ServerReady");
    if health || super::routes::key_matches(&state, request.headers()) {
        return next.run(request).await;
    }
    Status::unauthenticated("missing or wrong API key: send the metadata `authorization: Bearer KEY`").into_http()
}

/// The gRPC status of an error the HTTP server answers with `error.status`.
fn status(error: ApiError) -> Status {
    let code = match error.status {
        StatusCode::BAD_REQUEST | StatusCode::UNPROCESSABLE_ENTITY => tonic::Code::InvalidArgument,
        StatusCode::NOT_FOUND => tonic::Code::NotFound,
        StatusCode::SERVICE_UNAVAILABLE | StatusCode::TOO_MANY_REQUESTS => tonic::Code::Unavailable,
        StatusCode::GATEWAY_TIMEOUT => tonic::Code::DeadlineExceeded,
        StatusCode::UNAUTHORIZED => tonic::Code::Unauthenticated,
        StatusCode::PAYLOAD_TOO_LARGE => tonic::Code::OutOfRange,
        StatusCode::CONFLICT => tonic::Code::Aborted,
        _ => tonic::Code::Internal,
    };
    Status::new(code, error.message)
}

/// The version a request names, `None` when empty (the one served).
fn version(version: &str) -> Option<&str> {
    Some(version).filter(|v| !v.is_empty())
}

/// The client's `grpc-timeout` (`100m`, `5S`...), when it sent one.
fn client_timeout<T>(request: &Request<T>) -> Option<Duration> {
    let text = request.metadata().get("grpc-timeout")?.to_str().ok()?;
    let (digits, unit) = text.split_at(text.len().checked_sub(1)?);
    let value: u64 = digits.parse().ok()?;
    Some(match unit {
        "H" => Duration::from_secs(value.saturating_mul(3600)),
        "M" => Duration::from_secs(value.saturating_mul(60)),
        "S" => Duration::from_secs(value),
        "m" => Duration::from_millis(value),
        "u" => Duration::from_micros(value),
        "n" => Duration::from_nanos(value),
        _ => return None,
    })
}

/// How long the server works on a call whose client gives up after `timeout`: a tenth
/// less (at most 200 ms less), so that DEADLINE_EXCEEDED, saying why, reaches the client
/// before it cancels on its own and hears nothing.
fn answer_within(timeout: Duration) -> Duration {
    timeout - (timeout / 10).min(Duration::from_millis(200))
}

#[tonic::async_trait]
impl GrpcInferenceService for V2Grpc {
    async fn server_live(
        &self,
        _: Request<proto::ServerLiveRequest>,
    ) -> Result<Response<proto::ServerLiveResponse>, Status> {
        Ok(Response::new(proto::ServerLiveResponse { live: true }))
    }

    async fn server_ready(
        &self,
        _: Request<proto::ServerReadyRequest>,
    ) -> Result<Response<proto::ServerReadyResponse>, Status> {
        Ok(Response::new(proto::ServerReadyResponse { ready: self.state.ready.load(Ordering::Acquire) }))
    }

    async fn model_ready(
        &self,
        request: Request<proto::ModelReadyRequest>,
    ) -> Result<Response<proto::ModelReadyResponse>, Status> {
        let request = request.into_inner();
        if !self.state.ready.load(Ordering::Acquire) {
            return Ok(Response::new(proto::ModelReadyResponse { ready: false }));
        }
        // A model not served (never loaded, or unloaded) is not ready, as Triton answers it;
        // HTTP's `/v2/models/{name}/ready` says so with its 404.
        match tensor_endpoint(&self.state, &request.name, version(&request.version)) {
            Ok(_) => Ok(Response::new(proto::ModelReadyResponse { ready: true })),
            Err(e) if e.0.status == StatusCode::NOT_FOUND => {
                Ok(Response::new(proto::ModelReadyResponse { ready: false }))
            }
            Err(e) => Err(status(e.0)),
        }
    }

    async fn server_metadata(
        &self,
        _: Request<proto::ServerMetadataRequest>,
    ) -> Result<Response<proto::ServerMetadataResponse>, Status> {
        Ok(Response::new(proto::ServerMetadataResponse {
            name: SERVER_NAME.to_string(),
            version: env!("CARGO_PKG_VERSION").to_string(),
            extensions: Vec::new(),
        }))
    }

    async fn model_metadata(
        &self,
        request: Request<proto::ModelMetadataRequest>,
    ) -> Result<Response<proto::ModelMetadataResponse>, Status> {
        let request = request.into_inner();
        let metadata =
            model_metadata_of(&self.state, &request.name, version(&request.version)).map_err(|e| status(e.0))?;
        let tensors = |tensors: Vec<v2::TensorMetadata>| {
            tensors
                .into_iter()
                .map(|t| proto::model_metadata_response::TensorMetadata {
                    name: t.name,
                    datatype: t.datatype,
                    shape: t.shape,
                })
                .collect()
        };
        Ok(Response::new(proto::ModelMetadataResponse {
            name: metadata.name,
            versions: metadata.versions,
            platform: metadata.platform,
            inputs: tensors(metadata.inputs),
            outputs: tensors(metadata.outputs),
        }))
    }

    async fn model_infer(
        &self,
        request: Request<proto::ModelInferRequest>,
    ) -> Result<Response<proto::ModelInferResponse>, Status> {
        let limit = self.state.options.timeout.min(client_timeout(&request).map_or(Duration::MAX, answer_within));
        let deadline = Deadline::from_now(limit);
        let sticky = self.state.options.sticky_header.as_ref();
        let key = sticky.and_then(|name| request.metadata().get(name.as_str())).map(|v| v.as_bytes().to_vec());
        let request = request.into_inner();
        if self.state.options.load_on_demand {
            repository::endpoint(&self.state, &request.model_name).await.map_err(status)?;
        }
        let version = version(&request.model_version);
        let endpoint = routed_endpoint(&self.state, &request.model_name, version, Some(key.as_deref()))
            .map_err(|e| status(e.0))?;
        let name = request.model_name.clone();
        let work = infer(&endpoint, request, deadline);
        let mut response = Response::new(measured(&endpoint, work).await.map_err(status)?);
        response.get_mut().model_name = name;
        if let Ok(value) = endpoint.manifest().model.to_string().parse() {
            response.metadata_mut().insert(super::MODEL_HEADER, value);
        }
        Ok(response)
    }

    async fn repository_index(
        &self,
        request: Request<proto::RepositoryIndexRequest>,
    ) -> Result<Response<proto::RepositoryIndexResponse>, Status> {
        let entries = repository::index(&self.state, request.into_inner().ready).await.map_err(status)?;
        let models = entries
            .into_iter()
            .map(|e| proto::repository_index_response::ModelIndex {
                name: e.name,
                version: e.version,
                state: e.state.to_string(),
                reason: e.reason,
            })
            .collect();
        Ok(Response::new(proto::RepositoryIndexResponse { models }))
    }

    async fn repository_model_load(
        &self,
        request: Request<proto::RepositoryModelLoadRequest>,
    ) -> Result<Response<proto::RepositoryModelLoadResponse>, Status> {
        let request = request.into_inner();
        let version = repository::version(&repository_parameters(request.parameters)).map_err(status)?;
        repository::load(&self.state, &request.model_name, version.as_deref()).await.map_err(status)?;
        Ok(Response::new(proto::RepositoryModelLoadResponse {}))
    }

    async fn repository_model_unload(
        &self,
        request: Request<proto::RepositoryModelUnloadRequest>,
    ) -> Result<Response<proto::RepositoryModelUnloadResponse>, Status> {
        let request = request.into_inner();
        repository::unload(&self.state, &request.model_name).await.map_err(status)?;
        Ok(Response::new(proto::RepositoryModelUnloadResponse {}))
    }
}

/// Typed repository parameters as the HTTP route reads them (JSON values).
fn repository_parameters(
    parameters: std::collections::HashMap<String, proto::ModelRepositoryParameter>,
) -> repository::Parameters {
    use proto::model_repository_parameter::ParameterChoice;
    parameters
        .into_iter()
        .map(|(name, value)| {
            let value = match value.parameter_choice {
                Some(ParameterChoice::BoolParam(b)) => serde_json::Value::from(b),
                Some(ParameterChoice::Int64Param(i)) => serde_json::Value::from(i),
                Some(ParameterChoice::StringParam(s)) => serde_json::Value::from(s),
                Some(ParameterChoice::BytesParam(b)) => {
                    serde_json::Value::from(String::from_utf8_lossy(&b).into_owned())
                }
                None => serde_json::Value::Null,
            };
            (name, value)
        })
        .collect()
}

/// One `ModelInfer` on `endpoint`: the request's tensors in, the outputs asked for out,
/// their elements in `raw_output_contents`.
async fn infer(
    endpoint: &Arc<Endpoint>,
    request: proto::ModelInferRequest,
    deadline: Deadline,
) -> Result<proto::ModelInferResponse, ApiError> {
    let proto::ModelInferRequest { id, inputs, outputs: wanted, raw_input_contents, .. } = request;
    let inputs = tensors(inputs, raw_input_contents).map_err(ApiError::from)?;
    let wanted: Option<Vec<v2::RequestedOutput>> = (!wanted.is_empty()).then(|| {
        wanted
            .into_iter()
            .map(|w| v2::RequestedOutput { name: w.name, parameters: Some(parameters(w.parameters)) })
            .collect()
    });
    let outputs = infer_tensors(endpoint, inputs, wanted.as_deref(), deadline).await?;
    let mut response = proto::ModelInferResponse {
        model_version: endpoint.manifest().model.number.to_string(),
        id,
        outputs: Vec::with_capacity(outputs.len()),
        raw_output_contents: Vec::with_capacity(outputs.len()),
        ..Default::default()
    };
    for output in outputs {
        response.raw_output_contents.push(output.to_raw()?);
        response.outputs.push(InferOutputTensor {
            name: output.name,
            datatype: output.datatype,
            shape: output.shape,
            ..Default::default()
        });
    }
    Ok(response)
}

/// Protocol parameters as the JSON parameters of [`v2`].
fn parameters(parameters: std::collections::HashMap<String, InferParameter>) -> v2::Parameters {
    parameters
        .into_iter()
        .filter_map(|(name, p)| {
            let value = match p.parameter_choice? {
                ParameterChoice::BoolParam(b) => serde_json::Value::from(b),
                ParameterChoice::Int64Param(i) => serde_json::Value::from(i),
                ParameterChoice::StringParam(s) => serde_json::Value::from(s),
                ParameterChoice::DoubleParam(d) => serde_json::Value::from(d),
                ParameterChoice::Uint64Param(u) => serde_json::Value::from(u),
            };
            Some((name, value))
        })
        .collect()
}

/// The request's inputs as [`v2::Tensor`]s holding their elements raw: from
/// `raw_input_contents` (one entry per input, all or none), or converted from typed
/// `contents`. Sizes and counts are checked against each input's shape.
fn tensors(
    inputs: Vec<proto::model_infer_request::InferInputTensor>,
    raw: Vec<Bytes>,
) -> crate::Result<Vec<v2::Tensor>> {
    let bad = |message: String| crate::Error::BadRequest { message };
    if !raw.is_empty() && raw.len() != inputs.len() {
        return Err(bad(format!(
            "raw_input_contents has {} entries for {} inputs; give one per input, in input order, or use each input's contents",
            raw.len(),
            inputs.len()
        )));
    }
    let mut raw = raw.into_iter();
    inputs
        .into_iter()
        .map(|input| {
            let mut tensor = v2::Tensor::json(input.name, input.shape, input.datatype, serde_json::Value::Null);
            tensor.parameters = Some(parameters(input.parameters)).filter(|p| !p.is_empty());
            let data = match (raw.next(), input.contents) {
                (Some(_), Some(_)) => {
                    return Err(bad(format!(
                        "input `{}` has both contents and an entry in raw_input_contents; give one",
                        tensor.name
                    )))
                }
                (Some(data), None) => data,
                (None, Some(contents)) => typed(&tensor, contents)?,
                (None, None) if tensor.element_count()? == 0 => Bytes::new(),
                (None, None) => {
                    return Err(crate::Error::invalid_input(format!(
                        "input `{}` has no contents, and the request no raw_input_contents",
                        tensor.name
                    )))
                }
            };
            v2::check_raw(&tensor, &data)?;
            tensor.raw = Some(data);
            Ok(tensor)
        })
        .collect()
}

/// Typed contents as little-endian bytes of `tensor`'s datatype. Only the field of that
/// datatype may hold elements (INT8 and INT16 in `int_contents`, UINT8 and UINT16 in
/// `uint_contents`, in range).
fn typed(tensor: &v2::Tensor, contents: InferTensorContents) -> crate::Result<Bytes> {
    let InferTensorContents {
        bool_contents,
        int_contents,
        int64_contents,
        uint_contents,
        uint64_contents,
        fp32_contents,
        fp64_contents,
        bytes_contents,
    } = contents;
    let filled = [
        ("bool_contents", bool_contents.len()),
        ("int_contents", int_contents.len()),
        ("int64_contents", int64_contents.len()),
        ("uint_contents", uint_contents.len()),
        ("uint64_contents", uint64_contents.len()),
        ("fp32_contents", fp32_contents.len()),
        ("fp64_contents", fp64_contents.len()),
        ("bytes_contents", bytes_contents.len()),
    ];
    let field = match tensor.datatype.as_str() {
        "BOOL" => "bool_contents",
        "INT8" | "INT16" | "INT32" => "int_contents",
        "INT64" => "int64_contents",
        "UINT8" | "UINT16" | "UINT32" => "uint_contents",
        "UINT64" => "uint64_contents",
        "FP32" => "fp32_contents",
        "FP64" => "fp64_contents",
        "BYTES" => "bytes_contents",
        other => {
            v2::element_size(other)?;
            return Err(crate::Error::BadRequest {
                message: format!(
                    "input `{}` is {other}, which has no typed contents in the protocol; send it in raw_input_contents",
                    tensor.name
                ),
            });
        }
    };
    if let Some((other, _)) = filled.iter().find(|(name, count)| *name != field && *count > 0) {
        return Err(crate::Error::BadRequest {
            message: format!(
                "input `{}` is {} but its elements are in {other}; {} elements go in {field}",
                tensor.name, tensor.datatype, tensor.datatype
            ),
        });
    }
    let out_of_range = |value: &dyn std::fmt::Display| crate::Error::BadRequest {
        message: format!("input `{}` holds {value}, which is not a {} element", tensor.name, tensor.datatype),
    };
    let mut raw = Vec::new();
    // Narrower integers travel widened: each must fit.
    macro_rules! narrowed {
        ($values:expr, $t:ty) => {
            for v in $values {
                raw.extend(<$t>::try_from(v).map_err(|_| out_of_range(&v))?.to_le_bytes());
            }
        };
    }
    match tensor.datatype.as_str() {
        "BOOL" => raw.extend(bool_contents.iter().map(|b| u8::from(*b))),
        "INT8" => narrowed!(int_contents, i8),
        "INT16" => narrowed!(int_contents, i16),
        "INT32" => raw.extend(int_contents.iter().flat_map(|v| v.to_le_bytes())),
        "INT64" => raw.extend(int64_contents.iter().flat_map(|v| v.to_le_bytes())),
        "UINT8" => narrowed!(uint_contents, u8),
        "UINT16" => narrowed!(uint_contents, u16),
        "UINT32" => raw.extend(uint_contents.iter().flat_map(|v| v.to_le_bytes())),
        "UINT64" => raw.extend(uint64_contents.iter().flat_map(|v| v.to_le_bytes())),
        "FP32" => raw.extend(fp32_contents.iter().flat_map(|v| v.to_le_bytes())),
        "FP64" => raw.extend(fp64_contents.iter().flat_map(|v| v.to_le_bytes())),
        _ => {
            for element in bytes_contents {
                let length = u32::try_from(element.len()).map_err(|_| crate::Error::BadRequest {
                    message: format!("input `{}` has a BYTES element over 4 GiB", tensor.name),
                })?;
                raw.extend(length.to_le_bytes());
                raw.extend_from_slice(&element);
            }
        }
    }
    Ok(Bytes::from(raw))
}

#[cfg(test)]
mod tests {
    use super::proto::model_infer_request::InferInputTensor;
    use super::*;

    fn input(datatype: &str, shape: &[i64], contents: Option<InferTensorContents>) -> InferInputTensor {
        InferInputTensor {
            name: "x".into(),
            datatype: datatype.into(),
            shape: shape.to_vec(),
            parameters: Default::default(),
            contents,
        }
    }

    fn error(result: crate::Result<Vec<v2::Tensor>>) -> String {
        result.expect_err("refused").to_string()
    }

    #[test]
    fn typed_contents_become_the_same_bytes_as_raw_contents() {
        let floats = InferTensorContents { fp32_contents: vec![1.5, -2.0, 0.25, 8.0], ..Default::default() };
        let typed = tensors(vec![input("FP32", &[2, 2], Some(floats))], vec![]).unwrap();
        let bytes: Vec<u8> = [1.5f32, -2.0, 0.25, 8.0].iter().flat_map(|v| v.to_le_bytes()).collect();
        let raw = tensors(vec![input("FP32", &[2, 2], None)], vec![Bytes::from(bytes.clone())]).unwrap();
        assert_eq!(typed[0].raw.as_deref(), Some(&bytes[..]));
        assert_eq!(raw[0].raw, typed[0].raw);
        assert_eq!(typed[0].to_json().unwrap(), serde_json::json!([1.5, -2.0, 0.25, 8.0]));

        let small = InferTensorContents { int_contents: vec![-3, 100], ..Default::default() };
        let int8 = tensors(vec![input("INT8", &[2], Some(small))], vec![]).unwrap();
        assert_eq!(int8[0].raw.as_deref(), Some(&[0xfd, 100][..]));
        let text = InferTensorContents { bytes_contents: vec![Bytes::from_static(b"hi")], ..Default::default() };
        let bytes = tensors(vec![input("BYTES", &[1], Some(text))], vec![]).unwrap();
        assert_eq!(bytes[0].raw.as_deref(), Some(&[2, 0, 0, 0, b'h', b'i'][..]));
    }

    #[test]
    fn contents_that_do_not_fit_are_refused_by_name() {
        let floats = || InferTensorContents { fp32_contents: vec![1.0, 2.0, 3.0], ..Default::default() };
        let short = error(tensors(vec![input("FP32", &[2, 2], Some(floats()))], vec![]));
        assert!(
            short.contains("input `x` (FP32 of shape [2, 2]) needs 16 bytes") && short.contains("has 12"),
            "{short}"
        );
        let field = error(tensors(vec![input("FP64", &[3], Some(floats()))], vec![]));
        assert!(
            field.contains("is FP64 but its elements are in fp32_contents") && field.contains("fp64_contents"),
            "{field}"
        );
        let half = error(tensors(vec![input("FP16", &[3], Some(floats()))], vec![]));
        assert!(half.contains("FP16, which has no typed contents") && half.contains("raw_input_contents"), "{half}");
        let unknown = error(tensors(vec![input("FP8", &[3], Some(floats()))], vec![]));
        assert!(unknown.contains("unknown datatype `FP8`"), "{unknown}");
        let wide = InferTensorContents { int_contents: vec![300], ..Default::default() };
        let range = error(tensors(vec![input("INT8", &[1], Some(wide))], vec![]));
        assert!(range.contains("holds 300, which is not a INT8 element"), "{range}");
        let none = error(tensors(vec![input("FP32", &[2], None)], vec![]));
        assert!(none.contains("input `x` has no contents"), "{none}");
        let two = vec![input("FP32", &[1], None), input("FP32", &[1], None)];
        let count = error(tensors(two, vec![Bytes::from_static(&[0; 4])]));
        assert!(count.contains("raw_input_contents has 1 entries for 2 inputs"), "{count}");
        let both = error(tensors(vec![input("FP32", &[3], Some(floats()))], vec![Bytes::from_static(&[0; 12])]));
        assert!(both.contains("both contents and an entry in raw_input_contents"), "{both}");
    }

    #[test]
    fn client_timeouts_are_read_in_every_unit() {
        let with = |value: &str| {
            let mut request = Request::new(());
            request.metadata_mut().insert("grpc-timeout", value.parse().unwrap());
            client_timeout(&request)
        };
        assert_eq!(with("250m"), Some(Duration::from_millis(250)));
        assert_eq!(with("2S"), Some(Duration::from_secs(2)));
        assert_eq!(with("1H"), Some(Duration::from_secs(3600)));
        assert_eq!(with("900u"), Some(Duration::from_micros(900)));
        assert_eq!(with("x"), None);
        assert_eq!(client_timeout(&Request::new(())), None);
        assert_eq!(answer_within(Duration::from_millis(500)), Duration::from_millis(450));
        assert_eq!(answer_within(Duration::from_secs(10)), Duration::from_millis(9800));
    }
}
