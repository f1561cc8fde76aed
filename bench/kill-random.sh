#!/usr/bin/env bash
# Kill at random: ROUNDS (default 50) registrations of fresh multi-file models over HTTP,
# each cut short by SIGKILL of the client, the server or both at a random moment; then
# every model listed as ready must download whole and hold what was sent, and a
# registration afterwards must succeed. The program is bench/src/kill_random.rs.
set -euo pipefail
cd "$(dirname "$0")/.."
cargo build --release --locked -p runner-registry -p runner-bench --bin runner-registry --bin kill-random
exec target/release/kill-random --rounds "${ROUNDS:-50}" --registry-bin target/release/runner-registry
