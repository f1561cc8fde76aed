#!/usr/bin/env bash
# Where a request's time goes beyond the limit's: perf-records bare axum and `serve` in
# turn under the same load (W1 or W2 at c=32, `wrk -t1`, server pinned to CPU 0 and load
# to CPU 1), and prints the CPU time per request of each group of code (kernel, libc's
# malloc and memcpy, the vDSO's clock, each crate) for both, and the difference.
# Usage: bench/profile.sh [W1|W2]. Needs perf (Debian `linux-perf`) and wrk.
set -euo pipefail
cd "$(dirname "$0")/.."
WORKLOAD=${1:-W1}
cargo build --release --locked -p runner-examples -p runner-bench >/dev/null
OUT=$(mktemp -d)
trap 'rm -rf "$OUT"' EXIT
target/release/register --registry "$OUT/registry" >/dev/null
if [ "$WORKLOAD" = W1 ]; then
    export BODY=$(python3 -c 'import json; print(json.dumps({"values": [i * 0.5 for i in range(64)]}))')
    BARE=/w1 SERVE=/models/sum/predict
else
    export BODY='{"sepal_length": 6.1, "sepal_width": 2.8, "petal_length": 4.7, "petal_width": 1.2}'
    BARE=/w2 SERVE=/models/iris/predict
fi
record() { # NAME URL COMMAND...
    local name=$1 url=$2
    shift 2
    RUST_LOG=warn taskset -c 0 "$@" >/dev/null 2>&1 &
    local pid=$!
    sleep 1.5
    taskset -c 1 wrk -t1 -c32 -d8s -s bench/post.lua "$url" >"$OUT/$name.wrk" &
    sleep 2
    perf record -F 4999 -g -p "$pid" -o "$OUT/$name.data" -- sleep 4 >/dev/null 2>&1
    wait %2 2>/dev/null || true
    kill "$pid"
    wait "$pid" 2>/dev/null || true
}
record bare "http://127.0.0.1:19001$BARE" target/release/bare-axum 127.0.0.1:19001 "$OUT/registry"
record serve "http://127.0.0.1:19002$SERVE" target/release/serve --registry "$OUT/registry" --addr 127.0.0.1:19002 sum:latest iris:latest
python3 bench/profile_groups.py "$OUT/bare.data" "$(awk '/Requests/{print $2}' "$OUT/bare.wrk")" \
    "$OUT/serve.data" "$(awk '/Requests/{print $2}' "$OUT/serve.wrk")"
