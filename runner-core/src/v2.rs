//! The KServe Open Inference Protocol, version 2 (the "V2" protocol of KServe, Triton,
//! Seldon MLServer and TorchServe), as JSON types.
//!
//! Runners whose backend speaks tensors (such as `runner-torch`) answer it next to
//! `/predict`, so existing V2 clients work unchanged:
//!
//! | route | what |
//! |---|---|
//! | `GET /v2/health/live`, `GET /v2/health/ready` | liveness and readiness |
//! | `GET /v2` | server metadata |
//! | `GET /v2/models/{name}`, `GET /v2/models/{name}/ready` | model metadata and readiness |
//! | `POST /v2/models/{name}/infer` | inference: tensors in, tensors out |
//!
//! Errors on these routes are `{"error": "message"}`, as the protocol specifies.

use serde::{Deserialize, Serialize};

/// JSON object of protocol parameters.
pub type Parameters = serde_json::Map<String, serde_json::Value>;

/// `POST /v2/models/{name}/infer` request.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct InferRequest {
    /// Echoed in the response.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub id: Option<String>,
    /// Request parameters (unused by the built-in backends).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub parameters: Option<Parameters>,
    /// The input tensors.
    pub inputs: Vec<Tensor>,
    /// Outputs wanted, by name; all when absent.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub outputs: Option<Vec<RequestedOutput>>,
}

/// An output asked for in an [`InferRequest`].
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct RequestedOutput {
    /// The output's name.
    pub name: String,
    /// Output parameters (unused by the built-in backends).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub parameters: Option<Parameters>,
}

/// A tensor on the wire: name, shape, datatype (`FP32`, `INT64`, `BOOL`...) and the
/// elements in row-major order, flat or nested.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct Tensor {
    /// The tensor's name.
    pub name: String,
    /// Its shape.
    pub shape: Vec<i64>,
    /// Its element type, e.g. `FP32`.
    pub datatype: String,
    /// Tensor parameters (unused by the built-in backends).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub parameters: Option<Parameters>,
    /// The elements.
    pub data: serde_json::Value,
}

/// `POST /v2/models/{name}/infer` response.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct InferResponse {
    /// The model's name (its repository).
    pub model_name: String,
    /// The model's number.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub model_version: Option<String>,
    /// The request's id.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub id: Option<String>,
    /// The output tensors.
    pub outputs: Vec<Tensor>,
}

/// One tensor of a model's signature: `-1` in `shape` stands for any size.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct TensorMetadata {
    /// The tensor's name.
    pub name: String,
    /// Its element type, e.g. `FP32`.
    pub datatype: String,
    /// Its shape, `-1` for a free dimension.
    pub shape: Vec<i64>,
}

/// A model's signature, for `GET /v2/models/{name}`.
#[derive(Debug, Clone, PartialEq, Eq, Default, Serialize, Deserialize)]
pub struct Signature {
    /// The platform, e.g. `pytorch_torchscript`.
    pub platform: String,
    /// The inputs, in the order the model takes them.
    pub inputs: Vec<TensorMetadata>,
    /// The outputs, in the order the model returns them.
    pub outputs: Vec<TensorMetadata>,
}

/// `GET /v2/models/{name}` response.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct ModelMetadata {
    /// The model's name (its repository).
    pub name: String,
    /// The versions served (its number).
    pub versions: Vec<String>,
    /// The platform.
    pub platform: String,
    /// The inputs.
    pub inputs: Vec<TensorMetadata>,
    /// The outputs.
    pub outputs: Vec<TensorMetadata>,
}
