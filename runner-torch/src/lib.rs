//! PyTorch models for runner-core, through [tch](https://docs.rs/tch) (libtorch).
//!
//! A TorchScript module is registered with [`register_torch_model`], saved as
//! `model.pt` in the model volume, and served on the best device (CUDA when present,
//! else the CPU; `RUNNER_TORCH_DEVICE` overrides) with `forward` under no-grad:
//!
//! ```no_run
//! use runner_core::LocalRegistry;
//! use runner_torch::{register_torch_model, DType, TorchModule};
//!
//! # fn main() -> runner_core::Result<()> {
//! let registry = LocalRegistry::open(".runner-registry")?;
//! let module = TorchModule::load("mlp.pt", tch::Device::Cpu)?.input("x", DType::F32, [-1, 64]);
//! let registered = register_torch_model("mlp", module).register(&registry)?;
//! println!("registered {}", registered.id()); // `serve mlp:latest` answers tensors
//! # Ok(()) }
//! ```
//!
//! With no hooks, the model is served by the built-in [`TorchRunner`]: the request body
//! is a tensor as JSON ([`TensorData`]: nested arrays, or `{"shape", "dtype", "data"}`)
//! and so is the response. Pre- and post-processing are a `#[runner]` impl block on the
//! [`Torch`] backend, which brings predict, batching, save and load; register with
//! `.runner::<MyRunner>()`:
//!
//! ```no_run
//! use runner_core::{runner, Result};
//! use runner_torch::Torch;
//! use tch::Tensor;
//!
//! pub struct Digits;
//!
//! #[runner(name = "digits", backend = Torch, max_batch_size = 64, max_delay_ms = 2)]
//! impl Digits {
//!     fn preprocess_data(pixels: Vec<Vec<f32>>) -> Tensor {
//!         Tensor::from_slice(&pixels.concat()).reshape([-1, 64]) / 16.0
//!     }
//!     fn postprocess_data(logits: Tensor) -> Result<Vec<i64>> {
//!         Vec::<i64>::try_from(&logits.argmax(-1, false)).map_err(|e| runner_core::Error::msg(e.to_string()))
//!     }
//! }
//! ```
//!
//! Batched requests are concatenated along dimension 0 and run in one forward pass
//! ([`Concat`]; [`PadZeros`] pads sequences first). Runners on this backend also answer
//! the KServe V2 protocol (`/v2/models/{name}/infer`), tensors in and out.
//!
//! libtorch comes from the PyPI `torch==2.13.0` wheel: `scripts/torch-env.sh` installs it
//! into `.venv` and sets `LIBTORCH_USE_PYTORCH=1` for the build.

mod backend;
mod json;
mod module;

pub use backend::{BatchPolicy, Concat, PadZeros, Tensors, Torch};
pub use json::{DType, TensorData};
pub use module::{parse_device, Signature, TensorSpec, TorchModule, DEVICE_ENV, MODULE_FILE, THREADS_ENV};
pub use tch;

use runner_core::{register_model, runner, RegisterModel, Result};
use tch::Tensor;

/// The runner of torch models registered without hooks: a tensor as JSON in, the
/// module's output as JSON out.
pub struct TorchRunner;

#[runner(name = "torch", backend = Torch)]
impl TorchRunner {
    fn preprocess_data(data: TensorData) -> Result<Tensor> {
        data.to_tensor()
    }
    fn postprocess_data(data: Tensor) -> Result<TensorData> {
        TensorData::from_tensor(&data)
    }
}

/// Registers a torch module: the Rust form of VESSL's `register_torch_model`.
///
/// `repository` and `module` are required; the builder takes the rest
/// (`.number(n)`, `.requirements([...])`, `.organization(..)`, `.artifact(..)`), then
/// `.register(&registry)`. The model is served by [`TorchRunner`] (identity hooks:
/// tensors as JSON); `.runner::<R>()` serves it with the pre- and post-processing of a
/// `#[runner(backend = Torch)]` runner `R` instead. `torch==2.13.0` is added to the
/// requirements.
pub fn register_torch_model(repository: &str, module: TorchModule) -> RegisterModel<TorchRunner> {
    register_model::<TorchRunner>(repository).model(module)
}
