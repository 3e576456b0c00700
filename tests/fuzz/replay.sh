#!/usr/bin/env bash
# tests/fuzz/replay.sh — the fuzz corpora as regression tests, for
# `make check`: every file of tests/fuzz/corpus/<name>/ and
# tests/fuzz/crashes/<name>/ goes once through $BUILD/tests/fuzz/replay_<name>
# (the harness tests/fuzz/fuzz_<name>.c linked with replay_main.c instead
# of libFuzzer). One process per input, so a crash or sanitizer report
# counts as that input's failure and the rest still run. Each input is one
# test; ends with "N passed, N failed" and exits non-zero on any failure.
#
# Knobs: BUILD (default build); DARKROOM_FUZZ_TIMEOUT (seconds per input,
# default 60).

set -uo pipefail

ROOT=$(cd "$(dirname "${BASH_SOURCE[0]}")/../.." && pwd)
BUILD=${BUILD:-build}
case "$BUILD" in /*) ;; *) BUILD=$ROOT/$BUILD ;; esac
TIMEOUT=${DARKROOM_FUZZ_TIMEOUT:-60}
FUZZ=$ROOT/tests/fuzz

passed=0
failed=0
shopt -s nullglob
for src in "$FUZZ"/fuzz_*.c; do
    name=$(basename "$src" .c)
    name=${name#fuzz_}
    bin=$BUILD/tests/fuzz/replay_$name
    inputs=("$FUZZ/corpus/$name"/* "$FUZZ/crashes/$name"/*)
    if [ ! -x "$bin" ]; then
        echo "FAIL fuzz $name: $bin is not built"
        failed=$((failed + 1))
        continue
    fi
    if [ "${#inputs[@]}" -eq 0 ]; then
        echo "FAIL fuzz $name: no seed corpus in tests/fuzz/corpus/$name/"
        failed=$((failed + 1))
        continue
    fi
    p=0
    f=0
    for input in "${inputs[@]}"; do
        [ -f "$input" ] || continue
        out=$(timeout -k 5 "$TIMEOUT" "$bin" "$input" 2>&1 </dev/null)
        rc=$?
        if [ "$rc" -eq 0 ]; then
            p=$((p + 1))
        else
            f=$((f + 1))
            echo "FAIL fuzz $name: ${input#"$ROOT"/} (exit $rc)"
            printf '%s\n' "$out" | tail -n 30 | sed 's/^/    /'
        fi
    done
    echo "fuzz $name: $p passed, $f failed"
    passed=$((passed + p))
    failed=$((failed + f))
done
echo "$passed passed, $failed failed"
[ "$failed" -eq 0 ]
