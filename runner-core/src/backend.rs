//! Backends: a model kind (a TorchScript module, say) that brings its own `predict`,
//! batched predict, save and load, so a runner declares only its pre- and post-processing.

use crate::artifacts::{Artifacts, SaveDir};
use crate::runner::SharedModel;
use crate::{v2, Error, Props, Result};

/// A model kind that runs, batches, saves and loads itself.
///
/// `#[runner(backend = B)]` on an impl block with no `predict`, `predict_batch`,
/// `save_model` or `load_model` takes all four from `B`: the model type is `B::Model`,
/// `preprocess_data` must return `B::Input` and `postprocess_data` take `B::Output`.
/// Batching is available (`max_batch_size`/`max_delay_ms`, or `serve --max-batch-size`)
/// and, when the backend speaks tensors, the KServe V2 protocol is served too.
///
/// `runner-torch` is one: `#[runner(backend = runner_torch::Torch)]`.
pub trait Backend: 'static {
    /// The loaded model.
    type Model: SharedModel;
    /// What the model takes.
    type Input: Send + 'static;
    /// What the model returns.
    type Output: Send + 'static;
    /// Requirements recorded in every manifest of a runner on this backend.
    const REQUIREMENTS: &'static [&'static str] = &[];

    /// Checks (and may adapt) one input before it is run or batched, so that a bad
    /// request fails alone rather than failing its batch.
    fn prepare(_model: &Self::Model, input: Self::Input) -> Result<Self::Input> {
        Ok(input)
    }
    /// Runs the model on one input.
    fn predict(model: &Self::Model, input: Self::Input) -> Result<Self::Output>;
    /// Runs the model on a batch: one output per input, in order.
    fn predict_batch(model: &Self::Model, inputs: Vec<Self::Input>) -> Result<Vec<Self::Output>> {
        inputs.into_iter().map(|input| Self::predict(model, input)).collect()
    }
    /// Saves the model into the volume at registration, returning the props `load` gets.
    fn save(model: &Self::Model, dir: &SaveDir) -> Result<Props>;
    /// Loads the model at serving time.
    fn load(props: Option<Props>, artifacts: &Artifacts) -> Result<Self::Model>;

    /// The model's tensor signature, when the backend speaks the V2 protocol.
    fn v2_signature(_model: &Self::Model) -> Option<v2::Signature> {
        None
    }
    /// V2 input tensors to a model input.
    fn v2_decode(_model: &Self::Model, _inputs: Vec<v2::Tensor>) -> Result<Self::Input> {
        Err(Error::msg("this backend does not speak the V2 protocol"))
    }
    /// A model output to V2 output tensors.
    fn v2_encode(_model: &Self::Model, _output: Self::Output) -> Result<Vec<v2::Tensor>> {
        Err(Error::msg("this backend does not speak the V2 protocol"))
    }
}
