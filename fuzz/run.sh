#!/usr/bin/env bash
# Runs fuzz targets one after the other (the machine's cores are shared), each for RUNS
# executions from its corpus, and prints one line per target: executions, seconds, exec/s.
# Needs a nightly toolchain and cargo-fuzz (see README.md).
#   fuzz/run.sh [RUNS] [TARGET...]      RUNS defaults to 10000000, TARGETs to all of them
# MAX_TIME=SECONDS also stops each target after that long (whichever comes first).
# SANITIZER=none builds without AddressSanitizer (the library has no unsafe code; 2-5x faster).
set -uo pipefail
cd "$(dirname "$0")"
runs="${1:-10000000}"
shift || true
targets=("$@")
if [ ${#targets[@]} -eq 0 ]; then
    mapfile -t targets < <(cargo +nightly fuzz list)
fi
mkdir -p logs
for target in "${targets[@]}"; do
    log="logs/$target.log"
    start=$(date +%s)
    # -a: debug assertions (integer overflow panics); -print_final_stats: the execution count.
    nice -n 10 cargo +nightly fuzz run -a -s "${SANITIZER:-address}" "$target" -- -runs="$runs" \
        ${MAX_TIME:+-max_total_time="$MAX_TIME"} -print_final_stats=1 >"$log" 2>&1
    status=$?
    secs=$(( $(date +%s) - start ))
    done_runs=$(sed -n 's/^stat::number_of_executed_units: *//p' "$log" | tail -1)
    rate=$(( ${done_runs:-0} / (secs > 0 ? secs : 1) ))
    echo "$target: exit $status, ${done_runs:-?} executions in ${secs} s (${rate} exec/s), log $log"
done
