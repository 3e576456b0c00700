#!/usr/bin/env bash
# tests/fuzz/run.sh — the fuzzing run of `make fuzz`, after the build:
# each libFuzzer harness $FUZZ_BUILD/fuzz/fuzz_<name> (all, or those named
# as arguments) for FUZZ_SECONDS seconds, one after another. It reads the
# committed seeds of tests/fuzz/corpus/<name>/ and the crashes of
# tests/fuzz/crashes/<name>/, writes new interesting inputs to
# $FUZZ_BUILD/corpus/<name>/ (not committed) and crashes to
# tests/fuzz/crashes/<name>/ (commit them with the fix: `make check`
# replays them). The log of each run is $FUZZ_BUILD/logs/<name>.log; a
# summary line per harness gives executions and coverage.
#
# Knobs: FUZZ_BUILD (default build-fuzz), FUZZ_SECONDS (default 60),
# FUZZ_ARGS (more libFuzzer flags, e.g. -jobs=2).

set -uo pipefail

ROOT=$(cd "$(dirname "${BASH_SOURCE[0]}")/../.." && pwd)
FUZZ_BUILD=${FUZZ_BUILD:-build-fuzz}
case "$FUZZ_BUILD" in /*) ;; *) FUZZ_BUILD=$ROOT/$FUZZ_BUILD ;; esac
SECONDS_EACH=${FUZZ_SECONDS:-60}
FUZZ=$ROOT/tests/fuzz
cd "$ROOT"

names=("$@")
if [ "${#names[@]}" -eq 0 ]; then
    for src in "$FUZZ"/fuzz_*.c; do
        n=$(basename "$src" .c)
        names+=("${n#fuzz_}")
    done
fi

# The image harness needs more than libFuzzer's default 2 GB RSS limit
# for libvips's buffers under ASan; -max_len covers the harness's cap.
opts_for() {
    case "$1" in
        image) echo "-max_len=262144 -rss_limit_mb=4096 -timeout=30" ;;
        router|job_request|config|normalise|webhook) echo "-max_len=65536 -timeout=10" ;;
        data_uri) echo "-max_len=65536 -timeout=10" ;;
        url) echo "-max_len=4096 -timeout=10" ;;
        *) echo "-timeout=10" ;;
    esac
}

status=0
mkdir -p "$FUZZ_BUILD/logs"
for name in "${names[@]}"; do
    bin=$FUZZ_BUILD/fuzz/fuzz_$name
    if [ ! -x "$bin" ]; then
        echo "fuzz: $bin is not built" >&2
        status=1
        continue
    fi
    work=$FUZZ_BUILD/corpus/$name
    crashes=$FUZZ/crashes/$name
    mkdir -p "$work" "$crashes" "$FUZZ/corpus/$name"
    log=$FUZZ_BUILD/logs/$name.log
    echo "== fuzz $name: ${SECONDS_EACH}s"
    # shellcheck disable=SC2046  # word splitting of the options is wanted
    ASAN_OPTIONS=${ASAN_OPTIONS:-detect_leaks=1} \
    UBSAN_OPTIONS=${UBSAN_OPTIONS:-print_stacktrace=1:halt_on_error=1} \
    "$bin" -max_total_time="$SECONDS_EACH" -print_final_stats=1 \
        -artifact_prefix="$crashes/" $(opts_for "$name") ${FUZZ_ARGS:-} \
        "$work" "$FUZZ/corpus/$name" "$crashes" >"$log" 2>&1
    rc=$?
    execs=$(sed -n 's/^stat::number_of_executed_units: *//p' "$log" | tail -n 1)
    rate=$(sed -n 's/^stat::average_exec_per_sec: *//p' "$log" | tail -n 1)
    last=$(grep -E '^#[0-9]+' "$log" | tail -n 1)
    cov=$(sed -n 's/.* cov: \([0-9]*\).*/\1/p' <<<"$last")
    ft=$(sed -n 's/.* ft: \([0-9]*\).*/\1/p' <<<"$last")
    echo "fuzz $name: execs=${execs:-?} exec/s=${rate:-?} cov=${cov:-?} ft=${ft:-?} exit=$rc"
    if [ "$rc" -ne 0 ]; then
        echo "fuzz $name: FAILED, see $log; the input is in $crashes/" >&2
        grep -E 'ERROR: |SUMMARY: |fuzz check failed|runtime error' "$log" | head -n 5 >&2
        status=1
    fi
done
exit "$status"
