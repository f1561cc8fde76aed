//! Loading registered models and running the pipeline.

use std::any::Any;
use std::path::{Path, PathBuf};

use bytes::Bytes;

use crate::api::{ApiInput, ApiOutput, BatchConfig, Schemas};
use crate::artifacts::Artifacts;
use crate::manifest::Manifest;
use crate::names::ModelRef;
use crate::registry::Registry;
use crate::runner::Runner;
use crate::v2;
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
            other => Error::Hook { hook: crate::Hook::LoadModel, source: Box::new(other) },
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

/// A model input or output between two steps of a type-erased pipeline ([`DynModel`]).
/// Only the model that made it can take it back.
pub struct Erased(Box<dyn Any + Send>);

impl std::fmt::Debug for Erased {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("Erased(..)")
    }
}

impl Erased {
    fn new<T: Send + 'static>(value: T) -> Erased {
        Erased(Box::new(value))
    }

    fn take<T: 'static>(self, step: &str) -> Result<T> {
        self.0.downcast::<T>().map(|b| *b).map_err(|_| {
            Error::msg(format!("{step} was given a value of another model's pipeline (a bug in the front end)"))
        })
    }
}

/// A step of the pipeline, as [`DynModel::run_steps`] reports each one done.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Step {
    /// The request body into the API input.
    Parse,
    /// `preprocess_data` and `prepare`.
    Preprocess,
    /// `predict`.
    Predict,
    /// `postprocess_data`.
    Postprocess,
    /// The API output into a response body (timed as `serialize`). Not named
    /// `Serialize`: a second item of that name would make rustc spell serde's trait as
    /// `_::_serde::Serialize` in the errors `#[runner]` users read (tests/ui).
    Encode,
}

/// A loaded model whose runner is known only at run time (found by name in this binary):
/// the whole pipeline, and each of its steps for engines and front ends that run them
/// apart (batching, timing, other threads).
pub trait DynModel: Send + Sync + std::fmt::Debug {
    /// The model's manifest.
    fn manifest(&self) -> &Manifest;
    /// The runner's name.
    fn runner(&self) -> &'static str;
    /// The pipeline on a request body; see [`Loaded::run_body`].
    fn run_body(&self, body: Bytes, content_type: Option<&str>) -> Result<(Bytes, &'static str)>;
    /// The pipeline on a JSON value.
    fn run_json(&self, input: serde_json::Value) -> Result<serde_json::Value>;

    /// The whole pipeline on a request body in one call, as [`DynModel::parse`] to
    /// [`DynModel::serialize`] one after the other would run it, calling `done` as each
    /// step ends (so a caller can time them). A step that fails ends the pipeline with its
    /// error. [`Loaded`] passes no value through a box between the steps.
    fn run_steps(
        &self,
        body: Bytes,
        content_type: Option<&str>,
        done: &mut dyn FnMut(Step),
    ) -> Result<(Bytes, &'static str)> {
        let input = self.parse(body, content_type);
        done(Step::Parse);
        let x = self.preprocess(input?);
        done(Step::Preprocess);
        let y = self.predict(x?);
        done(Step::Predict);
        let output = self.postprocess(y?);
        done(Step::Postprocess);
        let answer = self.serialize(output?);
        done(Step::Encode);
        answer
    }

    /// Step 1: a request body into the API input.
    fn parse(&self, body: Bytes, content_type: Option<&str>) -> Result<Erased>;
    /// Step 2: `preprocess_data`, then the per-input checks of `prepare`: the API input
    /// into a model input that may be batched with others.
    fn preprocess(&self, input: Erased) -> Result<Erased>;
    /// Step 3: `predict` on one model input.
    fn predict(&self, input: Erased) -> Result<Erased>;
    /// Step 3, batched: `predict_batch`; one output per input, in order.
    fn predict_batch(&self, inputs: Vec<Erased>) -> Result<Vec<Erased>>;
    /// Step 4: `postprocess_data`: a model output into the API output.
    fn postprocess(&self, output: Erased) -> Result<Erased>;
    /// Step 5: the API output into a response body and its media type.
    fn serialize(&self, output: Erased) -> Result<(Bytes, &'static str)>;

    /// The tensor signature, when the runner speaks the KServe V2 protocol.
    fn v2_signature(&self) -> Option<v2::Signature>;
    /// V2 input tensors into a checked model input (decode, then `prepare`).
    fn v2_decode(&self, inputs: Vec<v2::Tensor>) -> Result<Erased>;
    /// A model output into V2 output tensors.
    fn v2_encode(&self, output: Erased) -> Result<Vec<v2::Tensor>>;

    /// JSON Schemas of the API types, when they have them.
    fn schemas(&self, generator: &mut schemars::SchemaGenerator) -> Schemas;
    /// Media types of the request and response bodies.
    fn media_types(&self) -> (&'static str, &'static str);
    /// The runner's batching: its declared configuration, and whether it can batch at all.
    fn batching(&self) -> (Option<BatchConfig>, bool);
}

impl<R: Runner> DynModel for Loaded<R> {
    fn manifest(&self) -> &Manifest {
        &self.manifest
    }
    fn runner(&self) -> &'static str {
        R::NAME
    }
    fn run_body(&self, body: Bytes, content_type: Option<&str>) -> Result<(Bytes, &'static str)> {
        Loaded::run_body(self, body, content_type)
    }
    fn run_json(&self, input: serde_json::Value) -> Result<serde_json::Value> {
        Loaded::run_json(self, input)
    }
    fn run_steps(
        &self,
        body: Bytes,
        content_type: Option<&str>,
        done: &mut dyn FnMut(Step),
    ) -> Result<(Bytes, &'static str)> {
        let input = R::Input::from_body(body, content_type);
        done(Step::Parse);
        let x = R::preprocess(&self.model, input?).and_then(|x| R::prepare(&self.model, x));
        done(Step::Preprocess);
        let y = R::predict(&self.model, x?);
        done(Step::Predict);
        let output = R::postprocess(&self.model, y?);
        done(Step::Postprocess);
        let answer = output?.into_body();
        done(Step::Encode);
        answer
    }
    fn parse(&self, body: Bytes, content_type: Option<&str>) -> Result<Erased> {
        R::Input::from_body(body, content_type).map(Erased::new)
    }
    fn preprocess(&self, input: Erased) -> Result<Erased> {
        let x = R::preprocess(&self.model, input.take::<R::Input>("preprocess")?)?;
        R::prepare(&self.model, x).map(Erased::new)
    }
    fn predict(&self, input: Erased) -> Result<Erased> {
        R::predict(&self.model, input.take::<R::ModelInput>("predict")?).map(Erased::new)
    }
    fn predict_batch(&self, inputs: Vec<Erased>) -> Result<Vec<Erased>> {
        let inputs =
            inputs.into_iter().map(|x| x.take::<R::ModelInput>("predict_batch")).collect::<Result<Vec<_>>>()?;
        Ok(R::predict_batch(&self.model, inputs)?.into_iter().map(Erased::new).collect())
    }
    fn postprocess(&self, output: Erased) -> Result<Erased> {
        R::postprocess(&self.model, output.take::<R::ModelOutput>("postprocess")?).map(Erased::new)
    }
    fn serialize(&self, output: Erased) -> Result<(Bytes, &'static str)> {
        output.take::<R::Output>("serialize")?.into_body()
    }
    fn v2_signature(&self) -> Option<v2::Signature> {
        R::v2_signature(&self.model)
    }
    fn v2_decode(&self, inputs: Vec<v2::Tensor>) -> Result<Erased> {
        let x = R::v2_decode(&self.model, inputs)?;
        R::prepare(&self.model, x).map(Erased::new)
    }
    fn v2_encode(&self, output: Erased) -> Result<Vec<v2::Tensor>> {
        R::v2_encode(&self.model, output.take::<R::ModelOutput>("v2_encode")?)
    }
    fn schemas(&self, generator: &mut schemars::SchemaGenerator) -> Schemas {
        R::schemas(generator)
    }
    fn media_types(&self) -> (&'static str, &'static str) {
        (R::Input::media_type(), R::Output::media_type())
    }
    fn batching(&self) -> (Option<BatchConfig>, bool) {
        (R::BATCH, R::CAN_BATCH)
    }
}
