#!/usr/bin/env bash
# The shared registry benchmark: replicas of runner-registry on a throwaway PostgreSQL 15
# and a single Garage node (scripts/tools.sh installs Garage once). A 1 GiB artifact
# registered through a replica against `cp` and a bare object_store multipart upload of
# the same file to the same Garage; small registrations and warm downloads per second
# with one and two replicas. Rewrites the shared block of bench/RESULTS.md. SIZE_MIB
# (default 1024) sets the artifact size.
set -euo pipefail
cd "$(dirname "$0")/.."
. scripts/tools.sh
need_postgres
need_garage
cargo build --release --locked -p runner-registry -p runner-bench
GARAGE_BIN="$GARAGE_BIN" PG_BIN="$PG_BIN" exec python3 bench/shared.py "$@"
