"""The FastAPI peer for the TorchScript MLP benchmark: FastAPI + uvicorn + torch.

Loads the TorchScript file named by MLP_TORCHSCRIPT (torch.jit.load, eval, one torch
thread) and serves POST /predict: the body is a JSON array of shape [n, 64], e.g.
[[0.0, 1.5, ...]], run forward as float32 under torch.inference_mode(); the answer is the
output as a nested JSON array. Run it from the repository's .venv (it has torch):

    MLP_TORCHSCRIPT=path/to/mlp.pt .venv/bin/uvicorn --app-dir bench fastapi_torch_mlp:app \
        --port 8000 --workers 1 --no-access-log

The handler is `async def` reading `await request.json()`, FastAPI's fastest path: a
sync `def` would add a thread-pool hop to every request and gain nothing, since one
worker with one torch thread computes one forward at a time either way, and a forward
this small takes less time than the hop.
"""

import os

import torch
from fastapi import FastAPI, Request
from fastapi.responses import JSONResponse

torch.set_num_threads(1)
MODEL = torch.jit.load(os.environ["MLP_TORCHSCRIPT"], map_location="cpu").eval()
FEATURES = 64
app = FastAPI()


@app.post("/predict")
async def predict(request: Request):
    try:
        x = torch.tensor(await request.json(), dtype=torch.float32)
    except (ValueError, TypeError, RuntimeError):
        return JSONResponse({"error": "body must be a JSON array of shape [n, 64]"}, status_code=422)
    if x.ndim != 2 or x.shape[1] != FEATURES:
        return JSONResponse({"error": f"expected shape [n, {FEATURES}], got {list(x.shape)}"}, status_code=422)
    with torch.inference_mode():
        y = MODEL(x)
    return JSONResponse(y.tolist())


@app.get("/readyz")
def readyz():
    return {"status": "ready"}
