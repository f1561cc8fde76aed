//! Write, register and serve machine-learning model runners.
//!
//! A runner declares how a model is saved, loaded, pre-processed, run and
//! post-processed, as an impl block annotated with [`#[runner]`](runner). Models are
//! registered as numbered versions in named repositories of a [`Registry`] (by default
//! an embedded directory), then loaded back and run by reference (`iris:3`,
//! `iris:latest`).
//!
//! ```
//! use runner_core::{runner, register_model, Loaded, LocalRegistry, Result};
//! use serde::{Deserialize, Serialize};
//!
//! #[derive(Serialize, Deserialize)]
//! pub struct Threshold { cut: f64 }
//!
//! #[derive(Deserialize)]
//! pub struct Request { value: f64 }
//!
//! #[derive(Serialize, Debug, PartialEq)]
//! pub struct Response { label: &'static str }
//!
//! pub struct Classifier;
//!
//! #[runner(name = "threshold")]
//! impl Classifier {
//!     fn preprocess_data(data: Request) -> f64 {
//!         data.value
//!     }
//!     fn predict(model: &Threshold, data: f64) -> bool {
//!         data > model.cut
//!     }
//!     fn postprocess_data(data: bool) -> Response {
//!         Response { label: if data { "high" } else { "low" } }
//!     }
//! }
//!
//! # fn main() -> Result<()> {
//! # let dir = tempfile::tempdir().unwrap();
//! let registry = LocalRegistry::open(dir.path())?;
//! let registered = register_model::<Classifier>("threshold")
//!     .model(Threshold { cut: 0.5 })
//!     .register(&registry)?;
//! println!("registered {}", registered.id()); // threshold:1
//!
//! let model = Loaded::<Classifier>::load(&registry, &"threshold:latest".parse()?)?;
//! assert_eq!(model.run(Request { value: 0.9 })?, Response { label: "high" });
//! assert_eq!(model.run_json(serde_json::json!({"value": 0.1}))?, serde_json::json!({"label": "low"}));
//! # Ok(()) }
//! ```
//!
//! A runner without `predict` does not compile:
//!
//! ```compile_fail
//! pub struct Empty;
//! #[runner_core::runner]
//! impl Empty {
//!     fn preprocess_data(data: String) -> String { data }
//! }
//! ```

#![warn(missing_docs)]

mod api;
mod artifacts;
mod backend;
mod catalog;
#[cfg(feature = "cli")]
pub mod cli;
#[cfg(feature = "engine")]
pub mod engine;
mod error;
mod load;
mod manifest;
mod names;
mod register;
pub mod registry;
mod runner;
#[cfg(feature = "serve")]
pub mod serve;
pub mod v2;

#[doc(hidden)]
#[path = "private.rs"]
pub mod __private;

pub use api::{ApiInput, ApiOutput, BatchConfig, RawBody, RawResponse, Schemas, JSON};
pub use artifacts::{expand_artifact, Artifacts, PlannedFile, SaveDir, VolumeState};
pub use backend::Backend;
pub use catalog::{find_runner, load_any, runners, RegisterOptions, RunnerEntry};
pub use error::{BoxError, Error, ErrorBody, ErrorDetail, ErrorKind, Hook, Missing, Result};
pub use load::{DynModel, Erased, Loaded, Step};
pub use manifest::{
    ApiSignature, FileEntry, FileOrigin, Manifest, RunnerInfo, SaveInfo, SaveType, DEFAULT_MODEL_FILE, MANIFEST_FILE,
    MANIFEST_VERSION, RESERVED_FILES,
};
pub use names::{
    validate_alias, validate_name, validate_sha256, validate_volume_path, ModelId, ModelRef, Version,
    DEFAULT_ORGANIZATION,
};
pub use register::{register_model, RegisterModel, Registered};
#[cfg(feature = "http-client")]
pub use registry::HttpRegistry;
pub use registry::{
    open_registry, registry_location, Expected, LocalRegistry, MemoryRegistry, ModelStatus, ModelSummary, Registry,
    Staging, DEFAULT_REGISTRY, REGISTRY_ENV, TOKEN_ENV,
};
pub use runner::{api_signature, Hooks, Runner, RunnerDefaults, Saved};

/// Declares a model runner on an inherent impl block.
///
/// The block defines some of five hooks, as associated functions (no `self`). Only
/// `predict` is required; an absent hook takes the default below. Each hook may return a
/// plain value or a `Result<T, E>` (written with a path ending in `Result`) whose error
/// converts into [`BoxError`]; an [`Error`] returned by a hook keeps its [`ErrorKind`]
/// (`Error::invalid_input`, `Error::new(ErrorKind::Conflict, ..)`), which front ends
/// answer with the matching status.
///
/// | hook | signature | when absent |
/// |---|---|---|
/// | `predict` | `fn predict(model: &Model, data: ModelInput) -> ModelOutput` | compile error |
/// | `preprocess_data` | `fn preprocess_data(data: ApiInput) -> ModelInput`, or `(model: &Model, data: ApiInput)` to use the model (a tokenizer it holds) | identity: `ApiInput = ModelInput` |
/// | `postprocess_data` | `fn postprocess_data(data: ModelOutput) -> ApiOutput`, or `(model: &Model, data: ModelOutput)` | identity: `ApiOutput = ModelOutput` |
/// | `save_model` | `fn save_model(model: &Model) -> Props`, or `(model: &Model, dir: &SaveDir) -> Props` to write files | the default saver (serde JSON of the model) unless `load_model` is present |
/// | `load_model` | `fn load_model(props: Option<Props>, artifacts: &Artifacts) -> Model` | the default loader |
///
/// The model type is the type `predict` borrows. Types must line up, and are checked at
/// compile time with errors on your own code: `ApiInput: Deserialize`,
/// `ApiOutput: Serialize`, `Model: Send + Sync`, and with neither `save_model` nor
/// `load_model`, `Model: Serialize + Deserialize`. Overriding `save_model` requires
/// overriding `load_model`.
///
/// Options, all optional:
///
/// | option | example | meaning |
/// |---|---|---|
/// | `name` | `name = "iris"` | the runner's name, stored in manifests (default: the type's name in kebab-case) |
/// | `repository` | `repository = "iris-models"` | repository `register` uses (default: the name) |
/// | `requirements` | `requirements = ["linfa 0.8"]` | recorded in the manifest |
/// | `artifacts` | `artifacts = { "data/*" => "data/*" }` | uploaded by `register`; relative local paths are relative to the crate's directory; a `*` only as the whole last component, on both sides |
/// | `model` | `model = Iris::train` | a `fn() -> Model` or `fn() -> Result<Model, E>` that `register` calls to build the instance |
/// | `backend` | `backend = runner_torch::Torch` | a [`Backend`] that provides `predict`, `predict_batch`, `save_model` and `load_model` (the block then declares none of them) |
/// | `max_batch_size`, `max_delay_ms` | `max_batch_size = 32, max_delay_ms = 5` | batch requests (needs `predict_batch` or a `backend`); `serve --max-batch-size` overrides |
/// | `crate` | `crate = my_facade` | the path generated code reaches runner-core through, for a crate that re-exports runner-core (`pub use runner_core::*;`) so that its users need not depend on it; also written `crate = "my_facade"` (default: `::runner_core`) |
///
/// ```
/// use runner_core::{runner, Artifacts, Props, Result, SaveDir};
///
/// pub struct Doubler;
/// pub struct Factor(f64);
///
/// #[runner(name = "doubler", requirements = ["none"], model = Doubler::build)]
/// impl Doubler {
///     fn build() -> Factor {
///         Factor(2.0)
///     }
///     fn save_model(model: &Factor, dir: &SaveDir) -> Result<Props> {
///         dir.write("factor.txt", model.0.to_string())?;
///         Ok(Props::new())
///     }
///     fn load_model(_props: Option<Props>, artifacts: &Artifacts) -> Result<Factor> {
///         let text = artifacts.read_to_string("factor.txt")?;
///         text.trim().parse().map(Factor).map_err(|e| runner_core::Error::msg(e.to_string()))
///     }
///     fn predict(model: &Factor, data: f64) -> f64 {
///         model.0 * data
///     }
/// }
/// # fn main() {}
/// ```
pub use runner_macros::runner;

pub use manifest::Props;
