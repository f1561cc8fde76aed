#!/usr/bin/env bash
# Runs every fuzz target under fuzz/ (cargo-fuzz: libFuzzer with AddressSanitizer) for a
# bounded time each, starting from the committed corpus in fuzz/corpus/TARGET, and
# prints the executions each one ran. Exits non-zero when a target finds anything.
#
#   scripts/fuzz.sh [SECONDS_PER_TARGET] [TARGET...]   # default: 60 s, every target
#
# The sanitizer flags cargo-fuzz passes are unstable, and no nightly toolchain can be
# fetched here, so the pinned stable compiler runs with RUSTC_BOOTSTRAP=1. New inputs go
# to a scratch corpus, not the committed one. A failing input is kept in
# fuzz/artifacts/TARGET/: reproduce it with `scripts/fuzz.sh` printing the command, fix
# the bug, and add the input as a regression test next to the parser.
set -euo pipefail
cd "$(dirname "$0")/.."
. scripts/tools.sh
need_cargo_fuzz
seconds="${1:-60}"
[ $# -gt 0 ] && shift
export RUSTC_BOOTSTRAP=1
targets=("$@")
if [ ${#targets[@]} -eq 0 ]; then
    mapfile -t targets < <(cargo fuzz list --fuzz-dir fuzz)
fi
scratch="$(mktemp -d)"
trap 'rm -rf "$scratch"' EXIT
if ! cargo fuzz build --fuzz-dir fuzz >"$scratch/build.log" 2>&1; then
    cat "$scratch/build.log" >&2
    exit 1
fi
failed=()
for target in "${targets[@]}"; do
    mkdir -p "$scratch/$target" "fuzz/corpus/$target"
    log="$scratch/$target.log"
    dict=()
    [ -f "fuzz/dict/$target.dict" ] && dict=(-dict="fuzz/dict/$target.dict")
    if cargo fuzz run --fuzz-dir fuzz "$target" "$scratch/$target" "fuzz/corpus/$target" -- \
        -max_total_time="$seconds" -print_final_stats=1 -timeout=10 -rss_limit_mb=2048 "${dict[@]}" >"$log" 2>&1; then
        outcome=ok
    else
        outcome=FOUND
        failed+=("$target")
        grep -E "panicked|ERROR: AddressSanitizer|SUMMARY|Test unit written|Reproduce with" "$log" | head -20 >&2 || tail -30 "$log" >&2
    fi
    runs="$(grep -oE "stat::number_of_executed_units: *[0-9]+" "$log" | grep -oE "[0-9]+$" | tail -1)"
    found="$(ls "$scratch/$target" | wc -l)"
    printf '%-18s %-6s %12s executions in %s s, %s new corpus inputs\n' "$target" "$outcome" "${runs:-?}" "$seconds" "$found"
done
if [ ${#failed[@]} -gt 0 ]; then
    echo "fuzzing found problems in: ${failed[*]} (inputs in fuzz/artifacts/)" >&2
    exit 1
fi
