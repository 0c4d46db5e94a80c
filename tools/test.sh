#!/usr/bin/env bash
# The ringws test command: installs what the tests need (Python `websockets`,
# Node `ws` and `playwright-core`, Chromium, cargo-fuzz, the Autobahn
# testsuite), then runs formatting, lints and every test. Runs without a
# terminal; the interpreters it builds on (Python 3, Node.js, Python 2.7 for
# Autobahn) are listed under Requirements in the README.
set -euo pipefail
cd "$(dirname "$0")/.."
ROOT="$PWD"

step() { printf '\n==> %s\n' "$*"; }

step "installing interop peers (pip: websockets, npm: ws, playwright-core)"
if [ ! -x "$ROOT/.venv/bin/python" ]; then
    python3 -m venv "$ROOT/.venv"
fi
"$ROOT/.venv/bin/python" -m pip install --quiet --disable-pip-version-check -r tools/interop/requirements.txt
(cd tools/interop && npm ci --no-audit --no-fund --loglevel=error)
export RINGWS_PYTHON="$ROOT/.venv/bin/python"
export RINGWS_NODE_PATH="$ROOT/tools/interop/node_modules"

step "installing Chromium for the browser interop test (apt: chromium)"
if [ ! -x /usr/bin/chromium ]; then
    SUDO=""
    if [ "$(id -u)" -ne 0 ]; then SUDO="sudo"; fi
    $SUDO apt-get update
    $SUDO env DEBIAN_FRONTEND=noninteractive apt-get install -y chromium
fi
export RINGWS_CHROMIUM=/usr/bin/chromium

step "cargo fmt --check"
cargo fmt --all -- --check

step "cargo clippy (deny warnings)"
cargo clippy --workspace --all-targets --locked -- -D warnings

step "cargo doc (deny warnings: broken links, bad markup)"
RUSTDOCFLAGS="-D warnings" cargo doc --workspace --no-deps --locked

step "dependency rule: protocol and timer crates stay free of io_uring and sockets"
for leaf in ringws-proto ringws-timer; do
    if cargo tree --locked -p "$leaf" -e normal --prefix none | grep -E '^(io-uring|socket2|libc) '; then
        echo "error: $leaf must not depend on io-uring, socket2 or libc" >&2
        exit 1
    fi
done

LOGS="$ROOT/target/test-logs"
mkdir -p "$LOGS"
# Each step's output is kept so the final line can count every test run.
logged() { local name="$1"; shift; "$@" 2>&1 | tee "$LOGS/$name.log"; }

step "tests"
if cargo nextest --version >/dev/null 2>&1; then
    logged nextest cargo nextest run --workspace --locked --no-fail-fast
    # nextest does not run doctests.
    logged doctests cargo test --workspace --locked --doc
else
    logged cargo-test cargo test --workspace --locked --no-fail-fast
fi

step "loom model of the cross-core inbox wakeup (exhaustive)"
RUSTFLAGS="--cfg loom" CARGO_TARGET_DIR="$ROOT/target/loom" \
    logged loom cargo test -p ringws-reactor --release --locked --lib loom

step "short run of every fuzz target (cargo-fuzz; 20 s each)"
logged fuzz bash tools/fuzz.sh "${RINGWS_FUZZ_SECONDS:-20}" 2

step "independent conformance run: Autobahn|Testsuite against ringws serve"
logged autobahn bash tools/autobahn/run.sh

# One closing line for the whole run (every step above stops the script on
# a failure, so reaching here means nothing failed).
passed=$(cat "$LOGS"/*.log | sed -nE \
    -e 's/.* tests run: ([0-9]+) passed.*/\1/p' \
    -e 's/^test result: ok\. ([0-9]+) passed.*/\1/p' \
    -e 's/^[a-z0-9_]+ +ok +execs=.*/1/p' \
    -e 's/^agent ringws: ([0-9]+) cases$/\1/p' | awk '{ sum += $1 } END { print sum + 0 }')
printf '\nringws: %s passed, 0 failed\n' "${passed:-0}"
