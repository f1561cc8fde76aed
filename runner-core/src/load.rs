//! Loading registered models and running the pipeline.

use std::path::{Path, PathBuf};

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

    /// The pipeline on a JSON request body; the error for a body of the wrong shape
    /// names the field.
    pub fn run_json_slice(&self, body: &[u8]) -> Result<Vec<u8>> {
        let mut deserializer = serde_json::Deserializer::from_slice(body);
        let input: R::Input = serde_path_to_error::deserialize(&mut deserializer).map_err(json_input_error)?;
        deserializer
            .end()
            .map_err(|e| Error::invalid_input(format!("trailing characters after the JSON body: {e}")))?;
        let output = self.run(input)?;
        serde_json::to_vec(&output).map_err(|e| Error::msg(format!("cannot serialize the output as JSON: {e}")))
    }

    /// The pipeline on a JSON value.
    pub fn run_json(&self, input: serde_json::Value) -> Result<serde_json::Value> {
        let input: R::Input = serde_path_to_error::deserialize(input).map_err(json_input_error)?;
        let output = self.run(input)?;
        serde_json::to_value(&output).map_err(|e| Error::msg(format!("cannot serialize the output as JSON: {e}")))
    }
}

fn json_input_error<E: std::fmt::Display>(error: serde_path_to_error::Error<E>) -> Error {
    let path = error.path().to_string();
    if path == "." {
        Error::invalid_input(error.inner().to_string())
    } else {
        Error::invalid_input(format!("at `{path}`: {}", error.inner()))
    }
}

/// A loaded model whose runner is known only at run time (found by name in this binary).
pub trait DynModel: Send + Sync + std::fmt::Debug {
    /// The model's manifest.
    fn manifest(&self) -> &Manifest;
    /// The pipeline on a JSON request body.
    fn run_json_slice(&self, body: &[u8]) -> Result<Vec<u8>>;
    /// The pipeline on a JSON value.
    fn run_json(&self, input: serde_json::Value) -> Result<serde_json::Value>;
}

impl<R: Runner> DynModel for Loaded<R> {
    fn manifest(&self) -> &Manifest {
        &self.manifest
    }
    fn run_json_slice(&self, body: &[u8]) -> Result<Vec<u8>> {
        Loaded::run_json_slice(self, body)
    }
    fn run_json(&self, input: serde_json::Value) -> Result<serde_json::Value> {
        Loaded::run_json(self, input)
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
