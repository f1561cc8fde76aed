#!/usr/bin/env bash
# Runs every test of the workspace: unit tests, doctests, the integration tests (real
# processes on a temporary registry) and the #[runner] compile-error tests (trybuild).
set -euo pipefail
cd "$(dirname "$0")/.."
cargo test --workspace --locked "$@"
