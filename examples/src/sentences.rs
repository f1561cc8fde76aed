//! What the two MiniLM examples share (the TorchScript one, [`crate::minilm`], and the
//! ONNX one, [`crate::onnx`]): the request and the response, tokenizing as
//! sentence-transformers does, and pooling token embeddings into sentence embeddings.

use runner_core::{Error, Result};
use schemars::JsonSchema;
use serde::{Deserialize, Serialize};
use tokenizers::Tokenizer;

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

impl EmbedRequest {
    /// The sentences, when there are 1 to [`MAX_SENTENCES`] of them.
    pub fn checked(&self) -> Result<&[String]> {
        if self.sentences.is_empty() || self.sentences.len() > MAX_SENTENCES {
            return Err(Error::invalid_input(format!(
                "send 1 to {MAX_SENTENCES} sentences, not {}",
                self.sentences.len()
            )));
        }
        Ok(&self.sentences)
    }
}

/// One embedding per sentence, in order.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize, JsonSchema)]
pub struct EmbedResponse {
    /// Unit vectors of 384 floats.
    pub embeddings: Vec<Vec<f32>>,
}

/// Token ids and attention mask of sentences, row-major, each `[rows, longest]`.
#[derive(Debug, Clone, PartialEq)]
pub struct TokenRows {
    /// `[CLS] ... [SEP]` ids, padded with 0.
    pub ids: Vec<i64>,
    /// 1 for a token, 0 for padding.
    pub mask: Vec<i64>,
    /// `[sentences, longest]`.
    pub shape: [i64; 2],
}

/// Tokenizes sentences as sentence-transformers does: `[CLS] ... [SEP]`, cut at
/// [`MAX_TOKENS`], padded with 0 to the longest.
pub fn token_rows(tokenizer: &Tokenizer, sentences: &[String]) -> Result<TokenRows> {
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
    Ok(TokenRows { ids, mask, shape: [rows.len() as i64, longest as i64] })
}

/// Sentence embeddings from token embeddings `[rows, tokens, dims]` (row-major) and
/// their mask `[rows, tokens]`: the mean over the real tokens, normalised to unit length.
pub fn pool_rows(tokens: &[f32], mask: &[i64], rows: usize, dims: usize) -> Vec<Vec<f32>> {
    let length = mask.len().checked_div(rows).unwrap_or(0);
    (0..rows)
        .map(|r| {
            let mut sum = vec![0f32; dims];
            let mut count = 0f32;
            for t in 0..length {
                if mask[r * length + t] != 0 {
                    let at = (r * length + t) * dims;
                    sum.iter_mut().zip(&tokens[at..at + dims]).for_each(|(s, x)| *s += x);
                    count += 1.0;
                }
            }
            let mean: Vec<f32> = sum.iter().map(|s| s / count.max(1e-9)).collect();
            let norm = mean.iter().map(|x| x * x).sum::<f32>().sqrt().max(1e-12);
            mean.iter().map(|x| x / norm).collect()
        })
        .collect()
}

/// Reads `tokenizer.json`, without its own padding and cut (at 128): the models pool over
/// the real tokens, up to [`MAX_TOKENS`].
pub fn load_tokenizer(path: impl AsRef<std::path::Path>) -> Result<Tokenizer> {
    let path = path.as_ref();
    let mut tokenizer = Tokenizer::from_file(path)
        .map_err(|e| Error::msg(format!("cannot read the tokenizer {}: {e}", path.display())))?;
    tokenizer.with_padding(None);
    tokenizer.with_truncation(None).map_err(|e| Error::msg(format!("cannot configure the tokenizer: {e}")))?;
    Ok(tokenizer)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn pooling_averages_the_real_tokens_and_normalises() {
        // Two rows of two tokens, 2 dims; the second row's second token is padding.
        let tokens = [1.0, 0.0, 3.0, 0.0, 0.0, 2.0, 9.0, 9.0];
        let pooled = pool_rows(&tokens, &[1, 1, 1, 0], 2, 2);
        assert_eq!(pooled, [vec![1.0, 0.0], vec![0.0, 1.0]]);
    }
}
