#!/usr/bin/env bash
# Clean build time and crate count of bench/minimal-user (one runner, registers into a
# directory) against two runner-core checkouts, built one after the other:
#   bench/build-time.sh OLD_CHECKOUT [NEW_CHECKOUT]   (NEW defaults to this one)
# e.g. `git worktree add /tmp/old 9233a2a && bench/build-time.sh /tmp/old`.
set -euo pipefail
cd "$(dirname "$0")/.."
old="$(cd "$1" && pwd)"; new="$(cd "${2:-.}" && pwd)"
for side in old new; do
    root="${!side}"; work="$(mktemp -d)"
    cp -r bench/minimal-user "$work/"
    sed -i "s|path = \"../../runner-core\"|path = \"$root/runner-core\"|" "$work/minimal-user/Cargo.toml"
    ( cd "$work/minimal-user"
      cp "$root/Cargo.lock" . 2>/dev/null || true
      start=$(date +%s.%N)
      CARGO_TARGET_DIR="$work/target" cargo build -q 2>/dev/null
      end=$(date +%s.%N)
      crates=$(cargo tree -e normal --prefix none 2>/dev/null | sed 's/ (\*)//' | sort -u | wc -l)
      printf '%s: %.1f s clean debug build, %d crates (%s)\n' "$side" "$(echo "$end - $start" | bc)" "$crates" "$root"
      CARGO_TARGET_DIR="$work/target" cargo run -q )
    rm -rf "$work"
done
