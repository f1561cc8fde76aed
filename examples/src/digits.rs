//! A PyTorch model trained in Rust: a multi-layer perceptron (64 -> 256 -> 256 -> 10)
//! trained with tch on the UCI handwritten digits shipped in `examples/data/digits`,
//! traced to TorchScript and served by the torch backend (batched: up to 64 requests per
//! forward pass).
//!
//! `POST {"images": [[0, 0, 5, 13, ...64 pixels of 0-16...]]}` answers
//! `{"digits": [0], "probabilities": [[0.99, ...10...]]}`.

use runner_core::{runner, Error, Result};
use runner_torch::tch::nn::{self, Module, OptimizerConfig};
use runner_torch::tch::{CModule, Device, Kind, Tensor};
use runner_torch::{DType, Torch, TorchModule};
use schemars::JsonSchema;
use serde::{Deserialize, Serialize};

/// The data set, embedded so registration works from any directory.
const DIGITS_CSV: &str = include_str!("../data/digits/digits.csv");
/// Pixels per image (8x8).
pub const PIXELS: usize = 64;
/// Pixel values go from 0 to this.
pub const MAX_PIXEL: f32 = 16.0;

/// Images to classify.
#[derive(Debug, Clone, Deserialize, JsonSchema)]
#[serde(deny_unknown_fields)]
pub struct DigitsRequest {
    /// 8x8 images, row by row, pixel values 0 to 16.
    pub images: Vec<Vec<f32>>,
}

/// The predictions, one per image.
#[derive(Debug, Clone, PartialEq, Serialize, JsonSchema)]
pub struct DigitsResponse {
    /// The most likely digit of each image.
    pub digits: Vec<i64>,
    /// The probability of each digit 0-9, per image.
    pub probabilities: Vec<Vec<f32>>,
}

/// Rows of the data: pixels and digit.
pub type Rows = Vec<([f64; PIXELS], i64)>;

/// The data split in a fixed way: every fifth image is held out for testing (359 images),
/// the other 1438 train the model.
pub fn split() -> (Rows, Rows) {
    crate::split_csv(DIGITS_CSV, 5)
}

/// Rows as an input tensor (scaled to 0-1) and a label tensor.
pub fn tensors(rows: &[([f64; PIXELS], i64)]) -> (Tensor, Tensor) {
    let pixels: Vec<f32> = rows.iter().flat_map(|(p, _)| p.iter().map(|&v| v as f32 / MAX_PIXEL)).collect();
    let labels: Vec<i64> = rows.iter().map(|(_, d)| *d).collect();
    (Tensor::from_slice(&pixels).reshape([-1, PIXELS as i64]), Tensor::from_slice(&labels))
}

/// The digit classifier.
pub struct Digits;

#[runner(name = "digits", backend = Torch, model = Digits::train, max_batch_size = 64, max_delay_ms = 2)]
impl Digits {
    /// Trains the MLP on the training split (seeded, about a second on a CPU) and traces
    /// it to TorchScript.
    pub fn train() -> Result<TorchModule> {
        let torch = |e: runner_torch::tch::TchError| Error::msg(format!("training: {e}"));
        runner_torch::tch::manual_seed(7);
        let mut vs = nn::VarStore::new(Device::Cpu);
        let root = vs.root();
        let net = nn::seq()
            .add(nn::linear(&root / "fc1", PIXELS as i64, 256, Default::default()))
            .add_fn(|x| x.relu())
            .add(nn::linear(&root / "fc2", 256, 256, Default::default()))
            .add_fn(|x| x.relu())
            .add(nn::linear(&root / "fc3", 256, 10, Default::default()));
        let (train, _) = split();
        let (x, y) = tensors(&train);
        let mut optimizer = nn::Adam::default().build(&vs, 1e-3).map_err(torch)?;
        let n = x.size()[0];
        for _epoch in 0..40 {
            let order = Tensor::randperm(n, (Kind::Int64, Device::Cpu));
            for start in (0..n).step_by(64) {
                let index = order.narrow(0, start, 64.min(n - start));
                let loss = net.forward(&x.index_select(0, &index)).cross_entropy_for_logits(&y.index_select(0, &index));
                optimizer.backward_step(&loss);
            }
        }
        // Traced weights become constants of the graph, which must not require grad.
        vs.freeze();
        let example = Tensor::zeros([1, PIXELS as i64], (Kind::Float, Device::Cpu));
        let mut forward = |inputs: &[Tensor]| vec![net.forward(&inputs[0])];
        let module =
            runner_torch::tch::no_grad(|| CModule::create_by_tracing("Digits", "forward", &[example], &mut forward))
                .map_err(torch)?;
        Ok(TorchModule::new(module, Device::Cpu).input("pixels", DType::F32, [-1, PIXELS as i64]).output(
            "logits",
            DType::F32,
            [-1, 10],
        ))
    }

    fn preprocess_data(data: DigitsRequest) -> Result<Tensor> {
        if data.images.is_empty() {
            return Err(Error::invalid_input("`images` is empty: send at least one 8x8 image"));
        }
        let mut pixels = Vec::with_capacity(data.images.len() * PIXELS);
        for (i, image) in data.images.iter().enumerate() {
            if image.len() != PIXELS {
                return Err(Error::invalid_input(format!(
                    "image {i} has {} pixels; send {PIXELS} (8x8, row by row)",
                    image.len()
                )));
            }
            if let Some(p) = image.iter().find(|p| !(0.0..=MAX_PIXEL).contains(*p)) {
                return Err(Error::invalid_input(format!("image {i} has pixel value {p}; pixels go from 0 to 16")));
            }
            pixels.extend(image.iter().map(|p| p / MAX_PIXEL));
        }
        Ok(Tensor::from_slice(&pixels).reshape([-1, PIXELS as i64]))
    }

    fn postprocess_data(logits: Tensor) -> Result<DigitsResponse> {
        let read = |e: runner_torch::tch::TchError| Error::msg(format!("reading the logits: {e}"));
        let digits = Vec::<i64>::try_from(&logits.argmax(-1, false)).map_err(read)?;
        let probabilities = Vec::<Vec<f32>>::try_from(&logits.softmax(-1, Kind::Float)).map_err(read)?;
        Ok(DigitsResponse { digits, probabilities })
    }
}
