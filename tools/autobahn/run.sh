#!/usr/bin/env bash
# Independent RFC 6455 conformance run: Autobahn|Testsuite's fuzzingclient
# against `ringws serve` (echo mode) on loopback.
#
# Usage: tools/autobahn/run.sh [--quick | --all] [--timeout SECONDS]
#   default   cases 1.*-7.*, 9.* and 10.* (every case but permessage-deflate)
#   --quick   cases 1.*-7.* and 10.* (skips the 9.* large-message cases)
#   --all     same as the default, spelled out
# Environment:
#   CARGO_TARGET_DIR  where ringws is built (default: target/)
#   AUTOBAHN_VENV     venvs for the suite (default: .venv-autobahn/)
#   AUTOBAHN_OUT      spec, server log and reports (default: target/autobahn/)
#   PYTHON2           a Python 2.7 interpreter (default: found on PATH or pyenv)
#
# 12.* and 13.* (permessage-deflate) are excluded: ringws negotiates no
# extension. Exit status: 0 when no case FAILED and every close behaviour is
# acceptable, 1 otherwise, 2 when the run itself could not be done.
set -euo pipefail

ROOT="$(cd "$(dirname "${BASH_SOURCE[0]}")/../.." && pwd)"
HERE="$ROOT/tools/autobahn"
VENV="${AUTOBAHN_VENV:-$ROOT/.venv-autobahn}"
OUT="${AUTOBAHN_OUT:-$ROOT/target/autobahn}"
TARGET_DIR="${CARGO_TARGET_DIR:-$ROOT/target}"
CASES='["1.*", "2.*", "3.*", "4.*", "5.*", "6.*", "7.*", "9.*", "10.*"]'
SUITE_TIMEOUT=900

while [ $# -gt 0 ]; do
    case "$1" in
        --quick) CASES='["1.*", "2.*", "3.*", "4.*", "5.*", "6.*", "7.*", "10.*"]'; SUITE_TIMEOUT=300 ;;
        --all) ;;
        --timeout) SUITE_TIMEOUT="$2"; shift ;;
        -h|--help) sed -n '2,18p' "$0"; exit 0 ;;
        *) echo "unknown argument: $1" >&2; exit 2 ;;
    esac
    shift
done

die() { echo "autobahn: $*" >&2; exit 2; }

# --- Python 2.7: autobahntestsuite runs on nothing newer. -------------------
find_python2() {
    if [ -n "${PYTHON2:-}" ]; then echo "$PYTHON2"; return; fi
    local candidate
    for candidate in python2.7 python2; do
        if command -v "$candidate" >/dev/null && "$candidate" -c 'import sys; assert sys.version_info[:2] == (2, 7)' 2>/dev/null; then
            command -v "$candidate"; return
        fi
    done
    local roots=("${PYENV_ROOT:-$HOME/.pyenv}")
    if command -v pyenv >/dev/null; then roots+=("$(pyenv root)"); fi
    for root in "${roots[@]}"; do
        for candidate in "$root"/versions/2.7*/bin/python2.7; do
            if [ -x "$candidate" ]; then echo "$candidate"; return; fi
        done
    done
}

WSTEST="$VENV/py27/bin/wstest"
STAMP="$VENV/py27/.requirements.sha256"
WANT_STAMP="$(sha256sum "$HERE/requirements.txt" | cut -d' ' -f1)"
if [ ! -x "$WSTEST" ] || [ "$(cat "$STAMP" 2>/dev/null)" != "$WANT_STAMP" ]; then
    PY2="$(find_python2)"
    [ -n "$PY2" ] || die "no Python 2.7 interpreter found (set PYTHON2=/path/to/python2.7); autobahntestsuite does not run on Python 3"
    echo "autobahn: installing the suite into $VENV/py27 (Python: $PY2)"
    # Python 3's venv cannot make a 2.7 env; virtualenv before 20.22 can.
    python3 -m venv "$VENV/boot"
    "$VENV/boot/bin/pip" install --quiet 'virtualenv<20.22'
    rm -rf "$VENV/py27"
    "$VENV/boot/bin/virtualenv" --quiet -p "$PY2" "$VENV/py27"
    "$VENV/py27/bin/pip" install --quiet --disable-pip-version-check -r "$HERE/requirements.txt" 2>&1 \
        | grep -v 'DEPRECATION: Python 2.7' || true
    [ -x "$WSTEST" ] || die "wstest was not installed"
    echo "$WANT_STAMP" > "$STAMP"
fi

# --- ringws ------------------------------------------------------------------
(cd "$ROOT" && CARGO_TARGET_DIR="$TARGET_DIR" cargo build --release --quiet -p ringws-cli)
RINGWS="$TARGET_DIR/release/ringws"

rm -rf "$OUT/reports"
mkdir -p "$OUT"
# 9.* sends messages of up to 16 MiB and expects them echoed whole: raise the
# message, frame and send-queue limits above that. No keepalive pings, so the
# suite sees only the frames it provoked.
"$RINGWS" serve --addr 127.0.0.1:0 --workers 1 \
    --max-message-size 64MiB --max-frame-size 64MiB --max-queued-bytes 256MiB \
    --ping-interval none > "$OUT/server.log" 2>&1 &
SERVER_PID=$!
cleanup() {
    kill -TERM "$SERVER_PID" 2>/dev/null || true
    wait "$SERVER_PID" 2>/dev/null || true
}
trap cleanup EXIT

ADDR=""
for _ in $(seq 1 100); do
    ADDR="$(sed -n 's#^listening on ws://\([0-9.:]*\).*#\1#p' "$OUT/server.log" | head -n 1)"
    [ -n "$ADDR" ] && break
    kill -0 "$SERVER_PID" 2>/dev/null || { cat "$OUT/server.log" >&2; die "ringws serve exited"; }
    sleep 0.1
done
[ -n "$ADDR" ] || die "ringws serve did not report its address"

sed -e "s#@OUTDIR@#$OUT/reports#" -e "s#@ADDR@#$ADDR#" -e "s#@CASES@#$CASES#" \
    "$HERE/fuzzingclient.json.in" > "$OUT/fuzzingclient.json"

echo "autobahn: ringws on ws://$ADDR; cases $CASES; bound ${SUITE_TIMEOUT}s"
started=$(date +%s)
status=0
(cd "$OUT" && timeout "$SUITE_TIMEOUT" "$WSTEST" -m fuzzingclient -s fuzzingclient.json > wstest.log 2>&1) || status=$?
echo "autobahn: wstest finished in $(( $(date +%s) - started ))s (exit $status); log $OUT/wstest.log"
[ "$status" -eq 0 ] || { tail -n 20 "$OUT/wstest.log" >&2; die "wstest did not complete (exit $status)"; }
kill -0 "$SERVER_PID" 2>/dev/null || die "ringws serve died during the run; see $OUT/server.log"

echo "autobahn: HTML report $OUT/reports/index.html"
python3 "$HERE/summarise.py" "$OUT/reports"
