#!/usr/bin/env bash
# The hot swap benchmark: `serve iris:prod` under wrk load while the alias moves back and
# forth, against the same load with the alias still; interleaved rounds, server pinned to
# one core and wrk to the other. Rewrites the swap block of bench/RESULTS.md. DURATION
# (s, default 10), ROUNDS (default 3) and SWAPS (moves per loaded window, default 10)
# tune it.
set -euo pipefail
cd "$(dirname "$0")/.."
if ! command -v wrk >/dev/null; then
    apt-get install -y wrk >/dev/null 2>&1 || { apt-get update >/dev/null && apt-get install -y wrk >/dev/null; }
fi
cargo build --release --locked -p runner-examples -p runner-registry
exec python3 bench/swap.py "$@"
