#!/usr/bin/env bash
# Tools the tests need that take long to install, kept in a cache outside the
# checkout and reused when present. Source this file, then call `need_garage`,
# `need_postgres`, `need_schemathesis`, `need_chromium` or `need_cargo_fuzz`.
#
# RUNNER_TOOLS overrides the cache folder (default ~/.cache/runner-tools).
RUNNER_TOOLS="${RUNNER_TOOLS:-$HOME/.cache/runner-tools}"
GARAGE_VERSION=2.5.0
GARAGE_BIN="$RUNNER_TOOLS/garage-$GARAGE_VERSION/bin/garage"

# Installs Garage (a real S3 server, from crates.io) once; about 7 minutes on
# two cores (11.5 minutes measured). Its own target folder is removed afterwards:
# only the binary stays.
need_garage() {
    if [ -x "$GARAGE_BIN" ]; then return 0; fi
    echo "installing garage $GARAGE_VERSION into $RUNNER_TOOLS (once; several minutes)" >&2
    local build="$RUNNER_TOOLS/garage-build"
    mkdir -p "$RUNNER_TOOLS"
    CARGO_TARGET_DIR="$build" cargo install --locked --quiet garage \
        --version "$GARAGE_VERSION" --root "$RUNNER_TOOLS/garage-$GARAGE_VERSION"
    rm -rf "$build"
    [ -x "$GARAGE_BIN" ]
}

# PostgreSQL 15's server programs, from Debian's postgresql-15 (installed when
# missing).
PG_BIN="${PG_BIN:-/usr/lib/postgresql/15/bin}"
need_postgres() {
    if [ -x "$PG_BIN/postgres" ] && [ -x "$PG_BIN/initdb" ]; then return 0; fi
    echo "installing postgresql-15 from Debian" >&2
    export DEBIAN_FRONTEND=noninteractive
    apt-get install -y -q postgresql-15 >/dev/null || { apt-get update -q >/dev/null && apt-get install -y -q postgresql-15 >/dev/null; }
    [ -x "$PG_BIN/postgres" ]
}

# Chromium and its WebDriver from Debian (`chromium`, `chromium-driver`), installed when
# missing (about 30 s), for the page tests (tests/pages.rs). Exports RUNNER_CHROMEDRIVER.
need_chromium() {
    if ! command -v chromedriver >/dev/null || ! command -v chromium >/dev/null; then
        echo "installing chromium and chromium-driver from Debian" >&2
        export DEBIAN_FRONTEND=noninteractive
        apt-get install -y -q chromium chromium-driver >/dev/null \
            || { apt-get update -q >/dev/null && apt-get install -y -q chromium chromium-driver >/dev/null; }
    fi
    RUNNER_CHROMEDRIVER="$(command -v chromedriver)" || return 1
    export RUNNER_CHROMEDRIVER
}

# schemathesis (PyPI), which checks a server against its own OpenAPI document, in a
# virtual environment of its own (about 30 s to install). Exports RUNNER_SCHEMATHESIS,
# the path of its `st` command, for the tests.
SCHEMATHESIS_VERSION=4.32.5
need_schemathesis() {
    local venv="$RUNNER_TOOLS/schemathesis-$SCHEMATHESIS_VERSION"
    if [ ! -x "$venv/bin/st" ]; then
        echo "installing schemathesis $SCHEMATHESIS_VERSION into $RUNNER_TOOLS (once)" >&2
        rm -rf "$venv"
        mkdir -p "$RUNNER_TOOLS"
        python3 -m venv "$venv" || { echo "cannot create $venv (is python3-venv installed?)" >&2; return 1; }
        "$venv/bin/pip" install --disable-pip-version-check --no-cache-dir -q "schemathesis==$SCHEMATHESIS_VERSION" >&2 || return 1
    fi
    export RUNNER_SCHEMATHESIS="$venv/bin/st"
}

# cargo-fuzz (crates.io), which builds and runs the libFuzzer targets under fuzz/, once
# into the cache (about 2 minutes). Puts it on PATH.
CARGO_FUZZ_VERSION=0.13.1
need_cargo_fuzz() {
    local root="$RUNNER_TOOLS/cargo-fuzz-$CARGO_FUZZ_VERSION"
    if [ ! -x "$root/bin/cargo-fuzz" ]; then
        echo "installing cargo-fuzz $CARGO_FUZZ_VERSION into $RUNNER_TOOLS (once)" >&2
        local build="$RUNNER_TOOLS/cargo-fuzz-build"
        mkdir -p "$RUNNER_TOOLS"
        CARGO_TARGET_DIR="$build" cargo install --locked --quiet cargo-fuzz --version "$CARGO_FUZZ_VERSION" --root "$root" || return 1
        rm -rf "$build"
    fi
    case ":$PATH:" in *":$root/bin:"*) ;; *) export PATH="$root/bin:$PATH" ;; esac
}
