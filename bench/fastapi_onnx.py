"""The FastAPI peer of the ONNX benchmark: FastAPI + uvicorn + Python onnxruntime.

Serves one of the example graphs of examples/models/onnx (scripts/export_onnx.py), named
by ONNX_MODEL, from ONNX_DIR (default examples/models/onnx), on one onnxruntime session
with one intra-op and one inter-op thread, all graph optimisations, on the CPU, at
POST /predict:

- iris: {"features": [[4 floats], ...]} -> {"label": [...], "probabilities": [[3 floats], ...]}
- minilm: {"sentences": ["...", ...]} -> {"embeddings": [[384 floats], ...]}, tokenized with
  the `tokenizers` package from the graph's tokenizer.json ([CLS] .. [SEP], cut at 256
  tokens, padded with 0 to the longest), mean-pooled over the attention mask and
  normalised, as the runner does;
- cnn: the raw little-endian f32 bytes of one [1, 3, 224, 224] image
  (application/octet-stream) -> the raw f32 bytes of its [1, 10] logits.

Run it from bench/.venv (bench/onnx.sh installs onnxruntime and tokenizers there):

    ONNX_MODEL=iris bench/.venv/bin/uvicorn --app-dir bench fastapi_onnx:app \
        --port 8000 --workers 1 --no-access-log

The handlers are `async def`: with one worker on one core and one onnxruntime thread, a
sync `def` adds a thread-pool hop to every request and gains nothing (one run at a time
either way).
"""

import os
from pathlib import Path

import numpy as np
import onnxruntime as ort
from fastapi import FastAPI, Request
from fastapi.responses import JSONResponse, Response

MODEL = os.environ.get("ONNX_MODEL", "iris")
DIR = Path(os.environ.get("ONNX_DIR", Path(__file__).resolve().parent.parent / "examples" / "models" / "onnx"))
MAX_TOKENS = 256
IMAGE = (1, 3, 224, 224)

options = ort.SessionOptions()
options.intra_op_num_threads = 1
options.inter_op_num_threads = 1
options.graph_optimization_level = ort.GraphOptimizationLevel.ORT_ENABLE_ALL
SESSION = ort.InferenceSession(str(DIR / f"{MODEL}.onnx"), options, providers=["CPUExecutionProvider"])
app = FastAPI()


def error(message):
    return JSONResponse({"error": message}, status_code=422)


if MODEL == "iris":

    @app.post("/predict")
    async def predict_iris(request: Request):
        try:
            x = np.asarray((await request.json())["features"], dtype=np.float32)
        except (ValueError, TypeError, KeyError):
            return error('body must be {"features": [[4 floats], ...]}')
        if x.ndim != 2 or x.shape[1] != 4:
            return error(f"expected features of shape [n, 4], got {list(x.shape)}")
        label, probabilities = SESSION.run(["label", "probabilities"], {"features": x})
        return JSONResponse({"label": label.tolist(), "probabilities": probabilities.tolist()})

elif MODEL == "minilm":
    from tokenizers import Tokenizer

    TOKENIZER = Tokenizer.from_file(str(DIR / "tokenizer.json"))
    # The file pads and cuts at 128; the model pools over the real tokens, up to 256.
    TOKENIZER.no_padding()
    TOKENIZER.no_truncation()

    @app.post("/predict")
    async def predict_minilm(request: Request):
        try:
            sentences = (await request.json())["sentences"]
            rows = [TOKENIZER.encode(s).ids for s in sentences]
        except (ValueError, TypeError, KeyError):
            return error('body must be {"sentences": ["...", ...]}')
        if not rows:
            return error("send at least one sentence")
        rows = [r if len(r) <= MAX_TOKENS else r[:MAX_TOKENS - 1] + r[-1:] for r in rows]
        longest = max(map(len, rows))
        ids = np.zeros((len(rows), longest), dtype=np.int64)
        mask = np.zeros((len(rows), longest), dtype=np.int64)
        for i, row in enumerate(rows):
            ids[i, :len(row)] = row
            mask[i, :len(row)] = 1
        (tokens,) = SESSION.run(["token_embeddings"], {"input_ids": ids, "attention_mask": mask,
                                                        "token_type_ids": np.zeros_like(ids)})
        weights = mask[:, :, None].astype(np.float32)
        mean = (tokens * weights).sum(axis=1) / np.maximum(weights.sum(axis=1), 1e-9)
        embeddings = mean / np.maximum(np.linalg.norm(mean, axis=1, keepdims=True), 1e-12)
        return JSONResponse({"embeddings": embeddings.tolist()})

elif MODEL == "cnn":

    @app.post("/predict")
    async def predict_cnn(request: Request):
        body = await request.body()
        if len(body) != 4 * int(np.prod(IMAGE)):
            return error(f"send the {4 * int(np.prod(IMAGE))} bytes of one [1, 3, 224, 224] f32 image")
        (logits,) = SESSION.run(["logits"], {"image": np.frombuffer(body, dtype="<f4").reshape(IMAGE)})
        return Response(logits.astype("<f4").tobytes(), media_type="application/octet-stream")

else:
    raise SystemExit(f"ONNX_MODEL={MODEL!r}: use iris, minilm or cnn")


@app.get("/readyz")
def readyz():
    return {"status": "ready"}
