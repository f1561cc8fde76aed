#!/usr/bin/env bash
# The registry browser on a large repository: MODELS (default 10,000) models in one
# repository (and 200 small repositories) of a directory registry, served by a release
# `runner-registry serve --no-auth`; each page timed ROUNDS (default 20) times, next to
# the JSON API's full listing. Paste the output into bench/RESULTS.md.
set -euo pipefail
cd "$(dirname "$0")/.."
MODELS="${MODELS:-10000}"
ROUNDS="${ROUNDS:-20}"
cargo build --release --locked -p runner-registry -p runner-bench --bin pages --bin runner-registry
work="$(mktemp -d)"
pid=""
cleanup() {
    [ -n "$pid" ] && kill "$pid" 2>/dev/null || true
    rm -rf "$work"
}
trap cleanup EXIT
target/release/pages --data "$work/registry" --models "$MODELS"
target/release/runner-registry serve --data "$work/registry" --no-auth --addr 127.0.0.1:0 >"$work/out" 2>"$work/log" &
pid=$!
for _ in $(seq 100); do grep -q "listening on" "$work/out" && break; sleep 0.1; done
url="$(sed -n 's/^listening on //p' "$work/out" | head -1)"
target/release/pages --url "$url" --rounds "$ROUNDS"
