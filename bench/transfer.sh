#!/usr/bin/env bash
# The registry transfer benchmark: register a model with a 1 GiB artifact through the
# registry server on 127.0.0.1 against `cp` of the same file on the same disk; register
# it again unchanged; peak RSS of server and client; download cold and warm. Rewrites the
# transfer block of bench/RESULTS.md. SIZE_MIB (default 1024) sets the artifact size.
set -euo pipefail
cd "$(dirname "$0")/.."
cargo build --release --locked -p runner-registry -p runner-bench
exec python3 bench/transfer.py "$@"
