#!/usr/bin/env bash
# A same-run A/B of runner-registry: BEFORE (a git revision, built into target/ab, or a
# runner-registry binary) against this checkout, served in turn against one PostgreSQL
# and one Garage node: small registrations/s and warm downloads/s (as bench/shared.sh)
# and a 1 GiB upload through a directory server (as bench/transfer.sh). Rewrites the
# registry-ab block of bench/RESULTS.md. ROUNDS (default 5), SIZE_MIB (1024), SMALL
# (400) and DOWNLOADS (4000) set the sizes; AB_BLOCK names the block (to keep several
# comparisons) and AB_TITLE is added to its heading.
#   bench/registry-ab.sh 409b521
set -euo pipefail
cd "$(dirname "$0")/.."
before=${1:?usage: bench/registry-ab.sh REVISION|BINARY}
. scripts/tools.sh
need_postgres
need_garage
if [ -x "$before" ] && [ -f "$before" ]; then
    a=$before
    label=${AB_A:-$before}
else
    rev=$(git rev-parse --short "$before")
    rm -rf target/ab-src
    git worktree prune
    git worktree add --detach target/ab-src "$rev" >/dev/null
    (cd target/ab-src && cargo build --release --locked -p runner-registry --target-dir ../ab)
    git worktree remove --force target/ab-src
    a=target/ab/release/runner-registry
    label="$rev"
fi
cargo build --release --locked -p runner-registry -p runner-bench
AB_A="$label" AB_B="$(git rev-parse --short HEAD)$(git diff --quiet HEAD -- runner-registry runner-core || echo +changes)" \
    GARAGE_BIN="$GARAGE_BIN" PG_BIN="$PG_BIN" exec python3 bench/registry_ab.py "$a" target/release/runner-registry
