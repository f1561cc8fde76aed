"""The peer for the serving benchmark: FastAPI + uvicorn doing the same work.

W1 sums {"values": [...]}; W2 classifies an Iris flower with the weights of the model
registered as iris:latest (read from the registry given in RUNNER_REGISTRY), computing
softmax(x . W + b) with numpy, exactly as the linfa model does. The handlers are
`async def`, FastAPI's fastest path for work this small (no thread-pool hop).
"""

import json
import os
from pathlib import Path

import numpy as np
from fastapi import FastAPI
from pydantic import BaseModel

SPECIES = ["setosa", "versicolor", "virginica"]


def load_iris(registry: Path):
    repo = registry / "orgs" / "default" / "iris"
    latest = max(int(p.name) for p in repo.iterdir() if (p / "manifest.json").exists())
    manifest = json.loads((repo / str(latest) / "manifest.json").read_text())
    entry = next(f for f in manifest["files"] if f["path"] == "runner.model.json")
    blob = registry / "blobs" / "sha256" / entry["sha256"][:2] / entry["sha256"]
    model = json.loads(blob.read_text())["model"]

    def array(a):
        return np.array(a["data"], dtype=np.float64).reshape(a["dim"])

    return array(model["params"]), array(model["intercept"])


W, B = load_iris(Path(os.environ.get("RUNNER_REGISTRY", ".runner-registry")))
app = FastAPI()


class Values(BaseModel):
    values: list[float]


class IrisRequest(BaseModel):
    sepal_length: float
    sepal_width: float
    petal_length: float
    petal_width: float


@app.post("/w1")
async def w1(body: Values):
    return {"sum": sum(body.values)}


@app.post("/w2")
async def w2(r: IrisRequest):
    x = np.array([[r.sepal_length, r.sepal_width, r.petal_length, r.petal_width]])
    z = x @ W + B
    z = np.exp(z - z.max(axis=1, keepdims=True))
    p = (z / z.sum(axis=1, keepdims=True))[0]
    return {"species": SPECIES[int(p.argmax())], "probabilities": dict(zip(SPECIES, p.tolist()))}


@app.get("/readyz")
def readyz():
    return {"status": "ready"}
