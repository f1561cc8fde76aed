#!/usr/bin/env bash
# The serving benchmark: our `serve` against the limit (bare axum) and a peer (FastAPI +
# uvicorn), side by side in one run, pinned (server on one core, wrk on the other).
# Installs what it needs (wrk from Debian, FastAPI into bench/.venv), then rewrites
# bench/RESULTS.md. DURATION (s, default 10) and WARMUP (s, default 3) tune the runs.
set -euo pipefail
cd "$(dirname "$0")/.."
if ! command -v wrk >/dev/null; then
    apt-get install -y wrk >/dev/null 2>&1 || { apt-get update >/dev/null && apt-get install -y wrk >/dev/null; }
fi
if [ ! -x bench/.venv/bin/uvicorn ]; then
    python3 -m venv bench/.venv
    bench/.venv/bin/pip install -q fastapi uvicorn numpy
fi
cargo build --release --locked -p runner-examples -p runner-bench
exec python3 bench/run.py "$@"
