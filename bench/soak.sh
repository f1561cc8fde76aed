#!/usr/bin/env bash
# The soak: SOAK_SECONDS (default 600, the first SOAK_WARMUP = 120 of them warm-up) of
# mixed traffic at CONCURRENCY (default 64) against
# `serve` (iris, sum, diabetes; --body-limit 64 KiB so oversize bodies are cheap to send)
# and `runner-registry serve` (a directory, with a token), both release builds; the load
# is bench/src/soak.rs. The servers' logs are kept in bench/out/soak-*.log and every line
# at WARN or ERROR is printed at the end, to be explained. Paste the output into
# bench/RESULTS.md.
set -euo pipefail
cd "$(dirname "$0")/.."
SECONDS_TOTAL="${SOAK_SECONDS:-600}"
CONCURRENCY="${CONCURRENCY:-64}"
WARMUP="${SOAK_WARMUP:-120}"
cargo build --release --locked -p runner-examples -p runner-registry -p runner-bench --bin soak --bin serve --bin register --bin runner-registry
work="$(mktemp -d)"
pids=()
cleanup() {
    for pid in "${pids[@]}"; do kill "$pid" 2>/dev/null || true; done
    rm -rf "$work"
}
trap cleanup EXIT
mkdir -p bench/out
target/release/register --registry "$work/models" >/dev/null
target/release/serve --registry "$work/models" iris:latest sum:1 diabetes:1 --addr 127.0.0.1:0 \
    --body-limit 65536 >"$work/serve.out" 2>bench/out/soak-serve.log &
pids+=($!)
serve_pid=$!
token="$(target/release/runner-registry token create --org acme --write --data "$work/registry")"
target/release/runner-registry serve --data "$work/registry" --addr 127.0.0.1:0 \
    >"$work/registry.out" 2>bench/out/soak-registry.log &
pids+=($!)
registry_pid=$!
for file in "$work/serve.out" "$work/registry.out"; do
    for _ in $(seq 100); do grep -q "listening on" "$file" && break; sleep 0.1; done
done
serve_url="$(sed -n 's/^listening on //p' "$work/serve.out" | head -1)"
registry_url="$(sed -n 's/^listening on //p' "$work/registry.out" | head -1)"
for _ in $(seq 100); do curl -sf "$serve_url/readyz" >/dev/null && break; sleep 0.1; done
echo "soak: $SECONDS_TOTAL s at concurrency $CONCURRENCY; serve $serve_url (pid $serve_pid), runner-registry $registry_url (pid $registry_pid)"
status=0
target/release/soak --serve "$serve_url" --serve-pid "$serve_pid" --registry "$registry_url" \
    --registry-pid "$registry_pid" --token "$token" --seconds "$SECONDS_TOTAL" --warmup "$WARMUP" --concurrency "$CONCURRENCY" || status=$?
for log in bench/out/soak-serve.log bench/out/soak-registry.log; do
    echo "$log: $(wc -l <"$log") lines, WARN or ERROR:"
    grep -E " (WARN|ERROR) " "$log" | sed -E 's/^[^ ]+ +//' | sort | uniq -c | sort -rn | head -20 || echo "    none"
done
exit "$status"
