#!/usr/bin/env bash
# The shared registry under injected faults: runs runner-registry/tests/faults.rs (real
# PostgreSQL 15 and Garage, two replicas; scripts/test.sh runs the same tests) and
# rewrites the faults block of bench/RESULTS.md with the row each scenario prints:
# registrations attempted, acknowledged and lost, acknowledged models loaded through
# both replicas, what the fault did, and the time it took. Needs root (a tmpfs for the
# full-disk scenario).
set -euo pipefail
cd "$(dirname "$0")/.."
. scripts/tools.sh
need_postgres
need_garage
log="$(mktemp)"
trap 'rm -f "$log"' EXIT
cargo test --locked -p runner-registry --test faults -- --nocapture --test-threads 1 2>&1 | tee "$log"
python3 - "$log" <<'PY'
import re, sys
sys.path.insert(0, "bench")
import run  # the RESULTS.md block writer

rows = [m.group(1) for line in open(sys.argv[1]) if (m := re.search(r"(\| .* \|)\s*$", line))]
text = "\n".join([
    "## Shared registry under injected faults (`bench/faults.sh`)",
    "",
    "`runner-registry/tests/faults.rs` on PostgreSQL 15 and Garage 2.5.0 with two replicas, this 2-core machine. "
    "Lost: acknowledged registrations whose model does not load with its exact bytes through both replicas "
    "(must be 0). Every scenario ends with `runner-registry verify --deep` passing.",
    "",
    "| scenario | attempted | acknowledged | lost | loads verified | fault | time |",
    "|---|---|---|---|---|---|---|",
    *rows,
])
run.replace_block("faults", text)
PY
