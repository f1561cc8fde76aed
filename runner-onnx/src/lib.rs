//! ONNX models for runner-core, through [ONNX Runtime](https://onnxruntime.ai) (the
//! [`ort`] crate).
//!
//! A `.onnx` file (from `torch.onnx.export`, skl2onnx, optimum, or a converter of
//! XGBoost or LightGBM) is registered with [`register_onnx_model`], stored as
//! `model.onnx` in the model volume, and served by the built-in [`OnnxRunner`], which
//! reads the graph's own signature: its input and output names, element types and shapes
//! (symbolic dimensions such as `batch` are `-1`):
//!
//! ```no_run
//! use runner_core::LocalRegistry;
//! use runner_onnx::{register_onnx_model, OnnxModel};
//!
//! # fn main() -> runner_core::Result<()> {
//! let registry = LocalRegistry::open(".runner-registry")?;
//! let model = OnnxModel::load("iris.onnx")?;
//! let registered = register_onnx_model("iris-onnx", model).register(&registry)?;
//! println!("registered {}", registered.id()); // `serve iris-onnx:latest` answers tensors
//! # Ok(()) }
//! ```
//!
//! Served, it answers `/predict` with an object of tensors by input name (nested arrays,
//! or `{"shape", "datatype", "data"}`; a graph with one input also takes the tensor
//! alone) and returns an object of its outputs by name. It speaks the KServe V2 protocol
//! too (HTTP with JSON or binary tensors, and gRPC), with model metadata whose platform is
//! `onnxruntime_onnx`, as Triton reports ONNX models. A request whose tensors do not fit
//! the signature is a 400 naming the input, what it takes and what came.
//!
//! Pre- and post-processing are a `#[runner]` impl block on the [`Onnx`] backend (see
//! its example); register with `.runner::<MyRunner>()`. Batched requests are
//! concatenated along dimension 0 ([`Concat`]; [`PadZeros`] pads sequences first) when
//! the graph's inputs all have a free first dimension.
//!
//! ONNX Runtime is not linked: its library is loaded at run time from the PyPI
//! `onnxruntime` wheel (1.31.x), which `scripts/torch-env.sh` installs into `.venv` (or
//! from [`LIBRARY_ENV`]). A missing or wrong library is an error at load naming the file
//! tried and the fix. Sessions use the CUDA execution provider when the library has it
//! (`onnxruntime-gpu`) and a GPU is there, else the CPU, saying why in the log;
//! [`PROVIDERS_ENV`], [`THREADS_ENV`] and [`SESSIONS_ENV`] change that.

mod backend;
pub mod json;
mod model;
mod runtime;
mod tensor;

pub use backend::{BatchPolicy, Concat, Onnx, PadZeros};
pub use model::{OnnxModel, Signature, TensorSpec, Tensors, MODEL_FILE};
pub use ort;
pub use runtime::{
    environment, Provider, SessionOptions, LIBRARY_ENV, ONNX_RUNTIME, PROVIDERS_ENV, SESSIONS_ENV, THREADS_ENV,
};
pub use tensor::{DataType, Element, Tensor};

use runner_core::{register_model, runner, RegisterModel, Result};

/// The runner of ONNX models registered without hooks: tensors by input name as JSON in,
/// every output by name as JSON out (and the V2 protocol).
pub struct OnnxRunner;

#[runner(name = "onnx", backend = Onnx)]
impl OnnxRunner {
    fn preprocess_data(model: &OnnxModel, data: serde_json::Value) -> Result<Tensors> {
        json::inputs(model, data)
    }
    fn postprocess_data(data: Tensors) -> Result<serde_json::Value> {
        json::outputs(data)
    }
}

/// Registers an ONNX graph: the ONNX twin of `register_torch_model`.
///
/// `repository` and `model` are required; the builder takes the rest (`.number(n)`,
/// `.requirements([...])`, `.organization(..)`, `.artifact(..)`), then
/// `.register(&registry)`. The model is served by [`OnnxRunner`] (tensors as JSON, and
/// V2); `.runner::<R>()` serves it with the pre- and post-processing of a
/// `#[runner(backend = Onnx)]` runner `R` instead. `onnxruntime==1.31.*` is added to the
/// requirements.
pub fn register_onnx_model(repository: &str, model: OnnxModel) -> RegisterModel<OnnxRunner> {
    register_model::<OnnxRunner>(repository).model(model)
}
