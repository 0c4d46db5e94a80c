#!/usr/bin/env bash
# Runs every cargo-fuzz target for a fixed time and prints the exec count of
# each. Usage: tools/fuzz.sh [SECONDS_PER_TARGET] [PARALLEL_JOBS] [TARGET...]
# Installs cargo-fuzz when it is missing. Fails when any target crashes.
set -euo pipefail
cd "$(dirname "$0")/../fuzz"
SECONDS_PER_TARGET="${1:-30}"
JOBS="${2:-1}"
shift $(( $# > 2 ? 2 : $# ))
if ! cargo fuzz --version >/dev/null 2>&1; then
    cargo install cargo-fuzz --locked
fi
# cargo-fuzz passes nightly-only flags; RUSTC_BOOTSTRAP lets stable accept them.
export RUSTC_BOOTSTRAP=1
mapfile -t TARGETS < <(if [ "$#" -gt 0 ]; then printf '%s\n' "$@"; else cargo fuzz list; fi)
LOGS="${FUZZ_LOG_DIR:-target/fuzz-logs}"
mkdir -p "$LOGS"
for target in "${TARGETS[@]}"; do
    cargo fuzz build --release "$target"
done
run_one() {
    local target="$1"
    mkdir -p "corpus/$target" "artifacts/$target"
    if cargo fuzz run --release "$target" "corpus/$target" "seeds/$target" -- \
        -max_total_time="$SECONDS_PER_TARGET" -print_final_stats=1 \
        >"$LOGS/$target.log" 2>&1; then
        printf '%-22s ok    execs=%s\n' "$target" \
            "$(grep -o 'stat::number_of_executed_units: *[0-9]*' "$LOGS/$target.log" | grep -o '[0-9]*$')"
    else
        printf '%-22s CRASH (see fuzz/%s/%s.log and fuzz/artifacts/%s)\n' "$target" "$LOGS" "$target" "$target"
        return 1
    fi
}
failed=0
pids=()
for target in "${TARGETS[@]}"; do
    run_one "$target" &
    pids+=($!)
    if [ "${#pids[@]}" -ge "$JOBS" ]; then
        wait "${pids[0]}" || failed=1
        pids=("${pids[@]:1}")
    fi
done
for pid in "${pids[@]}"; do wait "$pid" || failed=1; done
exit "$failed"
