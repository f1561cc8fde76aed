//! The [`Runner`] trait that `#[runner]` implements.

use serde::de::DeserializeOwned;
use serde::Serialize;

use crate::api::{ApiInput, ApiOutput, BatchConfig, Schemas};
use crate::artifacts::{Artifacts, SaveDir};
use crate::error::IoContext;
use crate::manifest::{RunnerInfo, DEFAULT_MODEL_FILE};
use crate::{Error, Hook, Props, Result};

/// Which hooks a runner overrides (the others use the framework's defaults).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub struct Hooks {
    /// `preprocess_data` is overridden.
    pub preprocess_data: bool,
    /// `postprocess_data` is overridden.
    pub postprocess_data: bool,
    /// `save_model` is overridden.
    pub save_model: bool,
    /// `load_model` is overridden.
    pub load_model: bool,
}

impl Hooks {
    /// The hooks left to the defaults, as written in the manifest.
    pub fn defaults(&self) -> Vec<String> {
        [
            (Hook::LoadModel, self.load_model),
            (Hook::PostprocessData, self.postprocess_data),
            (Hook::PreprocessData, self.preprocess_data),
            (Hook::SaveModel, self.save_model),
        ]
        .into_iter()
        .filter(|(_, overridden)| !overridden)
        .map(|(hook, _)| hook.name().to_string())
        .collect()
    }
}

/// What `save` did with the model instance.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Saved {
    /// The default saver wrote it to [`DEFAULT_MODEL_FILE`].
    Default,
    /// `save_model` saved it and returned these props.
    Custom(Props),
    /// Nothing was saved: only `load_model` is overridden, so the model comes from
    /// artifacts.
    Nothing,
}

/// Registration defaults declared in `#[runner(...)]`, used by the `register` binary.
#[derive(Debug)]
pub struct RunnerDefaults<M: 'static> {
    /// Repository to register into (default: the runner's name).
    pub repository: &'static str,
    /// Requirements to record.
    pub requirements: &'static [&'static str],
    /// Artifact mapping, `(local, volume)`; relative local paths are relative to
    /// [`RunnerDefaults::base_dir`].
    pub artifacts: &'static [(&'static str, &'static str)],
    /// The directory of the crate that defines the runner.
    pub base_dir: &'static str,
    /// Builds the model instance to register (`model = path` in `#[runner]`).
    pub build_model: Option<fn() -> Result<M>>,
}

/// A model runner: how a model is saved, loaded, and run on requests.
///
/// Implemented by `#[runner]` on an impl block; see [`runner`](crate::runner) for the
/// hooks and options. The pipeline is
/// `postprocess(predict(model, preprocess(input)))`, with types that line up at compile
/// time: [`Runner::Input`] -> [`Runner::ModelInput`] -> [`Runner::ModelOutput`] ->
/// [`Runner::Output`].
pub trait Runner: Sized + Send + Sync + 'static {
    /// The runner's name: manifests refer to it, serving finds it by it.
    const NAME: &'static str;
    /// Which hooks are overridden.
    const HOOKS: Hooks;
    /// How the server groups requests by default (`max_batch_size`/`max_delay_ms`, or a
    /// `predict_batch` hook); `None`: one request at a time.
    const BATCH: Option<BatchConfig> = None;
    /// Whether `predict_batch` does better than one `predict` per input (a `predict_batch`
    /// hook or a backend), so `serve --max-batch-size` may turn batching on.
    const CAN_BATCH: bool = false;
    /// Requirements every model of this runner records (its backend's, e.g. `torch`).
    const REQUIREMENTS: &'static [&'static str] = &[];

    /// The model instance, shared by all requests.
    type Model: SharedModel;
    /// The API input (the request body).
    type Input: ApiInput;
    /// What `predict` takes.
    type ModelInput: Send + 'static;
    /// What `predict` returns.
    type ModelOutput: Send + 'static;
    /// The API output (the response body).
    type Output: ApiOutput;

    /// The crate and type that define the runner.
    fn info() -> RunnerInfo;
    /// Registration defaults from `#[runner(...)]`.
    fn defaults() -> RunnerDefaults<Self::Model>;

    /// API input to model input (`preprocess_data`, or identity).
    fn preprocess(model: &Self::Model, input: Self::Input) -> Result<Self::ModelInput>;
    /// Runs the model (`predict`).
    fn predict(model: &Self::Model, input: Self::ModelInput) -> Result<Self::ModelOutput>;
    /// Model output to API output (`postprocess_data`, or identity).
    fn postprocess(model: &Self::Model, output: Self::ModelOutput) -> Result<Self::Output>;

    /// Saves the instance at registration (`save_model`, the default saver, or nothing).
    fn save(model: &Self::Model, dir: &SaveDir) -> Result<Saved>;
    /// Builds the instance at serving time (`load_model`, or the default loader).
    fn load(props: Option<Props>, artifacts: &Artifacts) -> Result<Self::Model>;

    /// Runs the model on a batch (`predict_batch`; by default `predict` on each input).
    /// Must return one output per input, in order.
    fn predict_batch(model: &Self::Model, inputs: Vec<Self::ModelInput>) -> Result<Vec<Self::ModelOutput>> {
        inputs.into_iter().map(|input| Self::predict(model, input)).collect()
    }

    /// Checks (and may adapt) one model input before it is run or batched, so a bad
    /// request fails alone (a backend's shape and dtype checks). Identity by default.
    fn prepare(_model: &Self::Model, input: Self::ModelInput) -> Result<Self::ModelInput> {
        Ok(input)
    }

    /// The model's tensor signature when the runner speaks the KServe V2 protocol (its
    /// backend does); `None` otherwise.
    fn v2_signature(_model: &Self::Model) -> Option<crate::v2::Signature> {
        None
    }

    /// V2 input tensors to a model input (runners whose backend speaks V2).
    fn v2_decode(_model: &Self::Model, _inputs: Vec<crate::v2::Tensor>) -> Result<Self::ModelInput> {
        Err(Error::msg("this runner does not speak the V2 protocol"))
    }

    /// A model output to V2 output tensors (runners whose backend speaks V2).
    fn v2_encode(_model: &Self::Model, _output: Self::ModelOutput) -> Result<Vec<crate::v2::Tensor>> {
        Err(Error::msg("this runner does not speak the V2 protocol"))
    }

    /// JSON Schemas of the API types, when they implement `schemars::JsonSchema`.
    fn schemas(_generator: &mut schemars::SchemaGenerator) -> Schemas {
        Schemas::default()
    }

    /// The whole pipeline on one input.
    fn run(model: &Self::Model, input: Self::Input) -> Result<Self::Output> {
        Self::postprocess(model, Self::predict(model, Self::prepare(model, Self::preprocess(model, input)?)?)?)
    }
}

/// The API signature of runner `R` as registration records it in the manifest: the JSON
/// Schemas of its input and output types with subschemas inlined (the Rust type names when
/// the types do not implement `schemars::JsonSchema`).
pub fn api_signature<R: Runner>() -> crate::manifest::ApiSignature {
    let mut settings = schemars::generate::SchemaSettings::draft2020_12();
    settings.inline_subschemas = true;
    let mut generator = schemars::SchemaGenerator::new(settings);
    let schemas = R::schemas(&mut generator);
    let named = |name: &str| serde_json::json!({ "rust_type": name });
    let input = schemas.input.unwrap_or_else(|| named(std::any::type_name::<R::Input>()));
    let output = schemas.output.unwrap_or_else(|| named(std::any::type_name::<R::Output>()));
    let definitions = generator.take_definitions(true).into_iter().collect();
    crate::manifest::ApiSignature::new(input, output, definitions)
}

/// Not public API (reached through `__private`): the model is shared by every request thread.
#[diagnostic::on_unimplemented(
    message = "the model type `{Self}` must be `Send + Sync + 'static`",
    label = "the model is shared by all request threads",
    note = "wrap non-thread-safe parts in a `Mutex`, or hold them per thread"
)]
pub trait SharedModel: Send + Sync + 'static {}
impl<T: Send + Sync + 'static> SharedModel for T {}

/// A model saved by the default saver.
#[diagnostic::on_unimplemented(
    message = "the model type `{Self}` must implement `Serialize` and `Deserialize` for the default saver",
    label = "saved and loaded by the default saver, because neither `save_model` nor `load_model` is overridden",
    note = "derive `serde::Serialize` and `serde::Deserialize` for it, or override save_model/load_model"
)]
pub trait DefaultSaved: Serialize + DeserializeOwned {}
impl<T: Serialize + DeserializeOwned> DefaultSaved for T {}

/// The envelope the default saver writes: the model plus the type it was saved as, so a
/// mismatch fails clearly instead of loading garbage.
#[derive(serde::Serialize, serde::Deserialize)]
struct DefaultEnvelope<T> {
    format: String,
    runner: String,
    rust_type: String,
    model: T,
}

const DEFAULT_FORMAT: &str = "runner-default-json/1";

/// The last path segment of a type name, generics included (`a::b::Iris<f64>` -> `Iris<f64>`),
/// so moving a type between modules does not invalidate saved models.
fn short_type_name(name: &str) -> &str {
    let end = name.find('<').unwrap_or(name.len());
    let start = name[..end].rfind("::").map_or(0, |i| i + 2);
    &name[start..]
}

/// The default saver: the instance as self-describing JSON in [`DEFAULT_MODEL_FILE`].
pub(crate) fn default_save<M: DefaultSaved>(runner: &str, model: &M, dir: &SaveDir) -> Result<Saved> {
    let path = dir.file(DEFAULT_MODEL_FILE)?;
    let file = std::io::BufWriter::new(std::fs::File::create(&path).ctx("creating", &path)?);
    let envelope = DefaultEnvelope {
        format: DEFAULT_FORMAT.into(),
        runner: runner.into(),
        rust_type: std::any::type_name::<M>().into(),
        model,
    };
    serde_json::to_writer(file, &envelope).map_err(|e| Error::DefaultSerde {
        path: DEFAULT_MODEL_FILE.into(),
        message: format!("cannot serialize the model instance: {e}"),
    })?;
    Ok(Saved::Default)
}

/// The default loader: reads back what [`default_save`] wrote, refusing another type.
pub(crate) fn default_load<M: DefaultSaved>(runner: &str, artifacts: &Artifacts) -> Result<M> {
    let bad = |message: String| Error::DefaultSerde { path: DEFAULT_MODEL_FILE.into(), message };
    let path = artifacts.path(DEFAULT_MODEL_FILE).map_err(|_| {
        bad(format!(
            "the volume has no default-saved model, so runner `{runner}` cannot use the default loader; register the model with an instance, or override `load_model`"
        ))
    })?;
    let bytes = std::fs::read(&path).ctx("reading", &path)?;
    let header: DefaultEnvelope<serde::de::IgnoredAny> =
        serde_json::from_slice(&bytes).map_err(|e| bad(format!("not a default-saved model: {e}")))?;
    if header.format != DEFAULT_FORMAT {
        return Err(bad(format!("format `{}` is not `{DEFAULT_FORMAT}`", header.format)));
    }
    let expected = std::any::type_name::<M>();
    if short_type_name(&header.rust_type) != short_type_name(expected) {
        return Err(bad(format!(
            "it holds a `{}` saved by runner `{}`, but runner `{runner}` loads a `{expected}`; register the model again with this runner",
            header.rust_type, header.runner
        )));
    }
    let envelope: DefaultEnvelope<M> = serde_json::from_slice(&bytes).map_err(|e| {
        bad(format!(
            "it does not deserialize as `{expected}` ({e}); the type changed since registration, register the model again"
        ))
    })?;
    Ok(envelope.model)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn short_names() {
        assert_eq!(short_type_name("a::b::Iris"), "Iris");
        assert_eq!(short_type_name("a::Iris<alloc::vec::Vec<f64>>"), "Iris<alloc::vec::Vec<f64>>");
        assert_eq!(short_type_name("f64"), "f64");
    }

    #[test]
    fn default_saver_round_trips_and_refuses_other_types() {
        #[derive(serde::Serialize, serde::Deserialize, PartialEq, Debug)]
        struct Weights {
            w: Vec<f64>,
        }
        #[derive(serde::Serialize, serde::Deserialize, Debug)]
        struct Other {
            #[allow(dead_code)]
            w: Vec<f64>,
        }
        let dir = SaveDir::temporary().unwrap();
        let model = Weights { w: vec![0.1, 1e-300, -3.5] };
        assert_eq!(default_save("r", &model, &dir).unwrap(), Saved::Default);
        let files = dir.planned_files(true).unwrap();
        let entries: Vec<_> = files
            .iter()
            .map(|f| crate::manifest::FileEntry {
                path: f.volume_path.clone(),
                size: 0,
                sha256: String::new(),
                origin: crate::manifest::FileOrigin::Model,
            })
            .collect();
        let artifacts = Artifacts::new(dir.path().to_path_buf(), Default::default(), &entries);
        assert_eq!(default_load::<Weights>("r", &artifacts).unwrap(), model);
        let err = default_load::<Other>("r2", &artifacts).unwrap_err().to_string();
        assert!(err.contains("holds a") && err.contains("Weights") && err.contains("Other"), "{err}");
        let err = default_load::<Vec<String>>("r2", &artifacts).unwrap_err().to_string();
        assert!(err.contains("register the model again"), "{err}");
    }
}
