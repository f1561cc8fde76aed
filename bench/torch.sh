#!/usr/bin/env bash
# The torch benchmark: a TorchScript MLP and all-MiniLM-L6-v2 through our `serve`,
# against a bare axum handler calling tch (the MLP's limit) and FastAPI + torch /
# sentence-transformers, pinned as in the serving benchmark (server on CPU 0, wrk on
# CPU 1), one intra-op thread everywhere. Sets up libtorch and the MiniLM model
# (scripts/torch-env.sh), wrk, and FastAPI into .venv, then rewrites the torch blocks of
# bench/RESULTS.md. DURATION (s, default 5), WARMUP (s, default 2) and ROUNDS (default 3).
set -euo pipefail
cd "$(dirname "$0")/.."
if ! command -v wrk >/dev/null; then
    apt-get install -y wrk >/dev/null 2>&1 || { apt-get update >/dev/null && apt-get install -y wrk >/dev/null; }
fi
export RUNNER_TORCH_MODELS=1
. scripts/torch-env.sh
[ -x .venv/bin/uvicorn ] || .venv/bin/pip install -q fastapi uvicorn
cargo build --release --locked -p runner-examples -p runner-bench --features runner-examples/torch,runner-bench/torch
exec .venv/bin/python bench/torch_run.py "$@"
