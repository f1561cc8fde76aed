#!/usr/bin/env bash
# The many-models benchmark: 50 small models behind `serve --repository-mode explicit
# --max-loaded-models 10 --load-on-demand`, latency of requests whose model is loaded
# (steady state) against requests whose model must be loaded first (load on demand), and
# the server's resident memory as all 50 come and go. Rewrites the many-models block of
# bench/RESULTS.md. REQUESTS (per phase, default 500) tunes it.
set -euo pipefail
cd "$(dirname "$0")/.."
cargo build --release --locked -p runner-examples
exec python3 bench/many_models.py "$@"
