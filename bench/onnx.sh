#!/usr/bin/env bash
# The ONNX benchmark: the example graphs of examples/models/onnx (Iris, MiniLM, a small
# CNN) through our `serve` (runner-onnx, the onnx-* runners of runner-examples), against
# the limits of bench/src/onnx_bare.rs (a bare axum + ort handler, and an ort loop with no
# server) and FastAPI + Python onnxruntime (bench/fastapi_onnx.py), and BentoML when it
# installs: pinned as in the serving benchmark (server on CPU 0, load on CPU 1), one
# intra-op thread everywhere. Sets up ONNX Runtime and the example graphs
# (scripts/torch-env.sh), wrk, FastAPI + onnxruntime + tokenizers into bench/.venv, and
# tries BentoML in a throwaway bench/out/bentoml-venv (given up after 2 minutes), then
# rewrites the onnx block of bench/RESULTS.md. DURATION (s, default 5), WARMUP (s,
# default 2) and ROUNDS (default 3); `bench/onnx.sh iris` (or minilm, cnn) runs one part.
set -euo pipefail
cd "$(dirname "$0")/.."
if ! command -v wrk >/dev/null; then
    apt-get install -y wrk >/dev/null 2>&1 || { apt-get update >/dev/null && apt-get install -y wrk >/dev/null; }
fi
export RUNNER_TORCH_MODELS=1
. scripts/torch-env.sh
[ -x bench/.venv/bin/python ] || python3 -m venv bench/.venv
bench/.venv/bin/python -c 'import fastapi, uvicorn, numpy, tokenizers, onnxruntime as o; assert o.__version__ == "1.31.1"' 2>/dev/null ||
    bench/.venv/bin/pip install -q fastapi uvicorn numpy tokenizers onnxruntime==1.31.1
if [ ! -x bench/out/bentoml-venv/bin/bentoml ] && [ ! -f bench/out/bentoml-venv/.failed ]; then
    mkdir -p bench/out
    rm -rf bench/out/bentoml-venv
    if ! { python3 -m venv bench/out/bentoml-venv &&
        timeout 120 bench/out/bentoml-venv/bin/pip install -q bentoml numpy tokenizers onnxruntime==1.31.1; }; then
        echo "onnx.sh: BentoML did not install within 2 minutes; benchmarking without it" >&2
        rm -rf bench/out/bentoml-venv && mkdir -p bench/out/bentoml-venv && touch bench/out/bentoml-venv/.failed
    fi
fi
cargo build --release --locked -p runner-examples -p runner-bench --features runner-examples/onnx,runner-bench/onnx
exec bench/.venv/bin/python -B bench/onnx_run.py "$@"
