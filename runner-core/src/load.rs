//! Loading registered models and running the pipeline.

use std::path::{Path, PathBuf};

use bytes::Bytes;

use crate::api::{ApiInput, ApiOutput};
use crate::artifacts::Artifacts;
use crate::catalog::find_runner;
use crate::manifest::Manifest;
use crate::names::ModelRef;
use crate::registry::Registry;
use crate::runner::Runner;
use crate::{Error, Result};

/// A loaded model of runner `R`: the instance, its manifest and its volume. `Send + Sync`:
/// share it (in an `Arc`) between threads and call [`Loaded::run`] from all of them.
pub struct Loaded<R: Runner> {
    model: R::Model,
    manifest: Manifest,
    volume: PathBuf,
}

impl<R: Runner> std::fmt::Debug for Loaded<R> {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Loaded").field("runner", &R::NAME).field("model", &self.manifest.model).finish()
    }
}

impl<R: Runner> Loaded<R> {
    /// Loads `model` from `registry`: resolves the reference, reads and validates the
    /// manifest, checks that it names runner `R`, verifies every file's checksum, then
    /// calls `load_model` (or the default loader).
    pub fn load(registry: &dyn Registry, model: &ModelRef) -> Result<Self> {
        let id = registry.resolve(model)?;
        let manifest = registry.manifest(&id)?;
        if manifest.runner.name != R::NAME {
            return Err(Error::Manifest {
                model: id.to_string(),
                message: format!(
                    "it is served by runner `{}`, not `{}`; load it with that runner",
                    manifest.runner.name,
                    R::NAME
                ),
            });
        }
        let volume = registry.fetch(&manifest)?;
        Self::from_volume(manifest, volume)
    }

    /// Loads from a manifest and an already fetched, verified volume directory.
    pub fn from_volume(manifest: Manifest, volume: PathBuf) -> Result<Self> {
        let artifacts = Artifacts::new(volume.clone(), manifest.artifacts.clone(), &manifest.files);
        let model = R::load(manifest.save.props.clone(), &artifacts).map_err(|e| match e {
            Error::Hook { .. } | Error::DefaultSerde { .. } => e,
            other => Error::Hook { hook: crate::Hook::LoadModel, status: None, source: Box::new(other) },
        })?;
        Ok(Loaded { model, manifest, volume })
    }

    /// The model instance.
    pub fn model(&self) -> &R::Model {
        &self.model
    }

    /// The model's manifest.
    pub fn manifest(&self) -> &Manifest {
        &self.manifest
    }

    /// The model volume's directory.
    pub fn volume(&self) -> &Path {
        &self.volume
    }

    /// `postprocess(predict(model, preprocess(input)))`.
    pub fn run(&self, input: R::Input) -> Result<R::Output> {
        R::run(&self.model, input)
    }

    /// The pipeline on a request body: parsed into the API input (the error names the
    /// field when the shape is wrong), run, and made into a response body and media type.
    pub fn run_body(&self, body: Bytes, content_type: Option<&str>) -> Result<(Bytes, &'static str)> {
        self.run(R::Input::from_body(body, content_type)?)?.into_body()
    }

    /// The pipeline on a JSON value.
    pub fn run_json(&self, input: serde_json::Value) -> Result<serde_json::Value> {
        self.run(R::Input::from_json(input)?)?.into_json()
    }
}

/// A loaded model whose runner is known only at run time (found by name in this binary).
pub trait DynModel: Send + Sync + std::fmt::Debug {
    /// The model's manifest.
    fn manifest(&self) -> &Manifest;
    /// The pipeline on a request body; see [`Loaded::run_body`].
    fn run_body(&self, body: Bytes, content_type: Option<&str>) -> Result<(Bytes, &'static str)>;
    /// The pipeline on a JSON value.
    fn run_json(&self, input: serde_json::Value) -> Result<serde_json::Value>;
    /// Not public API: puts the model behind the server.
    #[doc(hidden)]
    fn into_endpoint(
        self: Box<Self>,
        name: &str,
        options: &crate::serve::ServeOptions,
        limits: std::sync::Arc<crate::serve::endpoint::Limits>,
        metrics: &std::sync::Arc<crate::serve::metrics::Metrics>,
    ) -> std::sync::Arc<dyn crate::serve::endpoint::Endpoint>;
}

impl<R: Runner> DynModel for Loaded<R> {
    fn manifest(&self) -> &Manifest {
        &self.manifest
    }
    fn run_body(&self, body: Bytes, content_type: Option<&str>) -> Result<(Bytes, &'static str)> {
        Loaded::run_body(self, body, content_type)
    }
    fn run_json(&self, input: serde_json::Value) -> Result<serde_json::Value> {
        Loaded::run_json(self, input)
    }
    fn into_endpoint(
        self: Box<Self>,
        name: &str,
        options: &crate::serve::ServeOptions,
        limits: std::sync::Arc<crate::serve::endpoint::Limits>,
        metrics: &std::sync::Arc<crate::serve::metrics::Metrics>,
    ) -> std::sync::Arc<dyn crate::serve::endpoint::Endpoint> {
        crate::serve::endpoint::Served::new(*self, name, options, limits, metrics)
    }
}

/// Loads a model with whichever runner of this binary its manifest names.
///
/// Fails with [`Error::RunnerNotFound`], naming the runner and listing those available,
/// when the binary does not contain it.
pub fn load_any(registry: &dyn Registry, model: &ModelRef) -> Result<Box<dyn DynModel>> {
    let id = registry.resolve(model)?;
    let manifest = registry.manifest(&id)?;
    let entry = find_runner(&manifest.runner.name).map_err(|available| Error::RunnerNotFound {
        model: id.to_string(),
        runner: manifest.runner.name.clone(),
        available,
    })?;
    let volume = registry.fetch(&manifest)?;
    (entry.load)(manifest, volume)
}
