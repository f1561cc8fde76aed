"""The BentoML peer of the ONNX benchmark: BentoML 1.4 services over Python onnxruntime.

One service per example graph of examples/models/onnx, each `POST /predict` with the
same request and answer as bench/fastapi_onnx.py (one onnxruntime session, one intra-op
and one inter-op thread, all graph optimisations, on the CPU; one BentoML worker):

- Iris: {"features": [[4 floats], ...]} -> {"label": [...], "probabilities": [[3 floats], ...]}
- MiniLm: {"sentences": ["...", ...]} -> {"embeddings": [[384 floats], ...]}
- Cnn: the raw f32 bytes of one [1, 3, 224, 224] image -> the raw f32 bytes of its logits
  (a root `Path` input: BentoML's way to take a body of bytes, which it stores in a
  temporary file)

bench/onnx.sh installs BentoML into bench/out/bentoml-venv (when it installs) and runs:

    BENTOML_DO_NOT_TRACK=True bench/out/bentoml-venv/bin/bentoml serve bentoml_onnx:Iris \
        --working-dir bench --port 3000

The APIs are `async def`, as FastAPI's are, for the same reason (one worker, one core).
`bentoml serve` runs the service in a worker process under a supervising one.
"""

import os
from pathlib import Path

import bentoml
import numpy as np
from starlette.responses import Response

DIR = Path(os.environ.get("ONNX_DIR", Path(__file__).resolve().parent.parent / "examples" / "models" / "onnx"))
MAX_TOKENS = 256
IMAGE = (1, 3, 224, 224)
SERVICE = {"workers": 1, "traffic": {"timeout": 60}, "logging": {"access": {"enabled": False}}}


def session(name):
    import onnxruntime as ort

    options = ort.SessionOptions()
    options.intra_op_num_threads = 1
    options.inter_op_num_threads = 1
    options.graph_optimization_level = ort.GraphOptimizationLevel.ORT_ENABLE_ALL
    return ort.InferenceSession(str(DIR / f"{name}.onnx"), options, providers=["CPUExecutionProvider"])


@bentoml.service(**SERVICE)
class Iris:
    def __init__(self):
        self.session = session("iris")

    @bentoml.api
    async def predict(self, features: list[list[float]]) -> dict:
        label, probabilities = self.session.run(["label", "probabilities"],
                                                {"features": np.asarray(features, dtype=np.float32)})
        return {"label": label.tolist(), "probabilities": probabilities.tolist()}


@bentoml.service(**SERVICE)
class MiniLm:
    def __init__(self):
        from tokenizers import Tokenizer

        self.session = session("minilm")
        self.tokenizer = Tokenizer.from_file(str(DIR / "tokenizer.json"))
        self.tokenizer.no_padding()
        self.tokenizer.no_truncation()

    @bentoml.api
    async def predict(self, sentences: list[str]) -> dict:
        rows = [self.tokenizer.encode(s).ids for s in sentences]
        rows = [r if len(r) <= MAX_TOKENS else r[:MAX_TOKENS - 1] + r[-1:] for r in rows]
        longest = max(map(len, rows))
        ids = np.zeros((len(rows), longest), dtype=np.int64)
        mask = np.zeros((len(rows), longest), dtype=np.int64)
        for i, row in enumerate(rows):
            ids[i, :len(row)] = row
            mask[i, :len(row)] = 1
        (tokens,) = self.session.run(["token_embeddings"], {"input_ids": ids, "attention_mask": mask,
                                                            "token_type_ids": np.zeros_like(ids)})
        weights = mask[:, :, None].astype(np.float32)
        mean = (tokens * weights).sum(axis=1) / np.maximum(weights.sum(axis=1), 1e-9)
        embeddings = mean / np.maximum(np.linalg.norm(mean, axis=1, keepdims=True), 1e-12)
        return {"embeddings": embeddings.tolist()}


@bentoml.service(**SERVICE)
class Cnn:
    def __init__(self):
        self.session = session("cnn")

    @bentoml.api
    async def predict(self, image: Path, /):
        body = image.read_bytes()
        (logits,) = self.session.run(["logits"], {"image": np.frombuffer(body, dtype="<f4").reshape(IMAGE)})
        return Response(logits.astype("<f4").tobytes(), media_type="application/octet-stream")
