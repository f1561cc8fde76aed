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

mod artifacts;
mod catalog;
pub mod cli;
mod error;
mod load;
mod manifest;
mod names;
mod register;
mod registry;
mod runner;

#[doc(hidden)]
#[path = "private.rs"]
pub mod __private;

pub use artifacts::{expand_artifact, Artifacts, PlannedFile, SaveDir};
pub use catalog::{find_runner, runners, RegisterOptions, RunnerEntry};
pub use error::{BoxError, Error, Hook, Result};
pub use load::{load_any, DynModel, Loaded};
pub use manifest::{
    FileEntry, FileOrigin, Manifest, RunnerInfo, SaveInfo, SaveType, DEFAULT_MODEL_FILE, MANIFEST_FILE,
    MANIFEST_VERSION, RESERVED_FILES,
};
pub use names::{validate_name, validate_volume_path, ModelId, ModelRef, Version, DEFAULT_ORGANIZATION};
pub use register::{register_model, RegisterModel, Registered};
pub use registry::{
    open_registry, registry_location, LocalRegistry, ModelStatus, ModelSummary, Registry, Staging, DEFAULT_REGISTRY,
    REGISTRY_ENV,
};
pub use runner::{Hooks, Runner, RunnerDefaults, Saved};

/// Declares a model runner on an inherent impl block. See the crate docs.
pub use runner_macros::runner;

/// Props: what `save_model` returns and `load_model` receives (string to string).
pub type Props = std::collections::BTreeMap<String, String>;
