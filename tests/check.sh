#!/usr/bin/env bash
# tests/check.sh — the test run of `make check`, after the build: every
# cmocka unit test program build/tests/unit/test_*, the plugin symbol and
# library check (tests/plugins/nm-check.sh), the style check
# (tests/lib/check_style.py: banned calls, .clang-format on changed lines)
# and the webhook cross-check (tests/webhook/cross_check.js, after
# tests/lib/npm-deps.sh installs its npm packages when missing), then the
# integration tests (tests/integration/test_s3.sh against s3rver, the
# deployment tests test_webservers.sh, test_systemd.sh and test_install.sh,
# tests/integration/test_make_run.sh, tests/integration/test_readme.sh
# (every shell line of README.md against `make run`), the scale-out test
# tests/integration/test_scaleout.sh (network namespaces; root only),
# tests/run-integration.sh).
# Last, the leftover check: no process the run started may still be
# running (tests/lib/leftovers.py). The run gets a token in
# DARKROOM_TEST_RUN and a temporary folder of its own as TMPDIR, and this
# script re-executes itself as a child subreaper (orphans are re-parented
# to it); what carries the token, descends from it or names the folder is
# listed (pid, command line), counted as one failure and stopped. The
# folder is removed after a clean run and kept, with the failed tests'
# logs, otherwise.
# Ends with the grand total as the line "N passed, N failed" and exits
# non-zero on any failure.
#
#   tests/check.sh                 unit and integration tests
#   tests/check.sh --unit          unit tests only
#   tests/check.sh --integration   integration tests only
#
# Knobs: DARKROOM_BUILD_DIR or BUILD (the build directory, default ./build,
# relative to the repository; `make sanitize` passes build-san); DARKROOM_UNIT_TIMEOUT
# (seconds per unit test program, default 300); the integration knobs of
# tests/run-integration.sh.
#
# The unit phase also runs tests/lib/check_layers.py (no include or call
# cycle among the core modules), tests/lib/check_fcgi_libs.sh (the FastCGI
# app links no libvips or libs3 and none of the pipeline's objects),
# tests/lib/test_leftovers.sh (the leftover check itself) and
# tests/lib/check_db_args.sh (a core/db.h parameter of the wrong kind,
# such as an integer to DB_STR, does not compile).
#
# Unit test programs are counted from cmocka's own summary lines
# ("[  PASSED  ] N test(s)." and "[  FAILED  ] N test(s)"); a program that
# exits non-zero without reporting a failed test (a crash, a sanitizer
# report) counts as one failure.

set -euo pipefail

ROOT=$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)
BUILD=${DARKROOM_BUILD_DIR:-${BUILD:-build}}
case "$BUILD" in /*) ;; *) BUILD=$ROOT/$BUILD ;; esac
export DARKROOM_BUILD_DIR=$BUILD
UNIT_TIMEOUT=${DARKROOM_UNIT_TIMEOUT:-300}
cd "$ROOT"

run_unit=1
run_integration=1
case "${1:-}" in
    "") ;;
    --unit) run_integration=0 ;;
    --integration) run_unit=0 ;;
    -h|--help) sed -n '2,44p' "$0"; exit 0 ;;
    *) echo "usage: $0 [--unit|--integration]" >&2; exit 2 ;;
esac

# The leftover check's set-up (see above), unless an outer run (one
# already carrying DARKROOM_TEST_RUN) owns the check.
if [ -z "${DARKROOM_TEST_RUN:-}" ] && command -v python3 >/dev/null 2>&1; then
    DARKROOM_TEST_RUN_DIR=$(mktemp -d "${TMPDIR:-/tmp}/darkroom-check.XXXXXX")
    # Like /tmp: services running as other users (www-data) use it too.
    chmod 1777 "$DARKROOM_TEST_RUN_DIR"
    DARKROOM_TEST_RUN=$(od -An -N8 -tx1 /dev/urandom | tr -d ' \n')
    export DARKROOM_TEST_RUN DARKROOM_TEST_RUN_DIR DARKROOM_TEST_RUN_OWNER=$$
    export TMPDIR=$DARKROOM_TEST_RUN_DIR
    exec python3 "$ROOT/tests/lib/leftovers.py" reaper -- bash "$ROOT/tests/check.sh" "$@"
fi

passed=0
failed=0
LOG=$(mktemp "${TMPDIR:-/tmp}/darkroom-check.XXXXXX")
trap 'rm -f "$LOG"' EXIT

# Sum the numbers N of the lines of $LOG matching "^PREFIX N test(s)".
cmocka_count() {
    local prefix=$1
    { grep -E "^\[  $prefix  \] [0-9]+ test\(s\)" "$LOG" || true; } | awk '{ n += $4 } END { print n + 0 }'
}

# Run a command that ends with its own "N passed, N failed" line and add
# its numbers to the totals; no such line, or a non-zero exit with no
# failure counted, is one failure.
run_counted() {
    local rc p f summary
    set +e
    "$@" 2>&1 | tee "$LOG"
    rc=${PIPESTATUS[0]}
    set -e
    summary=$(grep -E '^[0-9]+ passed, [0-9]+ failed$' "$LOG" | tail -n 1 || true)
    if [ -n "$summary" ]; then
        read -r p _ f _ <<<"$summary"
    else
        p=0
        f=1
    fi
    if [ "$rc" -ne 0 ] && [ "$f" -eq 0 ]; then
        f=1
    fi
    passed=$((passed + p))
    failed=$((failed + f))
}

if [ "$run_unit" = 1 ]; then
    shopt -s nullglob
    units=()
    for t in "$BUILD"/tests/unit/test_*; do
        if [ -f "$t" ] && [ -x "$t" ]; then
            units+=("$t")
        fi
    done
    shopt -u nullglob
    if [ "${#units[@]}" -eq 0 ]; then
        echo "check: no unit test programs in $BUILD/tests/unit" >&2
    fi
    for t in "${units[@]}"; do
        name=$(basename "$t")
        echo "== unit: $name"
        set +e
        CMOCKA_MESSAGE_OUTPUT=stdout timeout -k 10 "$UNIT_TIMEOUT" "$t" </dev/null 2>&1 | tee "$LOG"
        rc=${PIPESTATUS[0]}
        set -e
        p=$(cmocka_count "PASSED")
        f=$(cmocka_count "FAILED")
        if [ "$rc" -ne 0 ] && [ "$f" -eq 0 ]; then
            if [ "$rc" -eq 124 ]; then
                echo "FAIL $name: timed out after ${UNIT_TIMEOUT}s"
            else
                echo "FAIL $name: exited with status $rc"
            fi
            f=1
        fi
        passed=$((passed + p))
        failed=$((failed + f))
    done
    # Plugins export nothing but their entry symbol; s3.so links no libs3.
    echo "== unit: plugin symbols"
    run_counted env BUILD="$BUILD" bash "$ROOT/tests/plugins/nm-check.sh"
    # Banned calls, and the .clang-format on the lines changed since main;
    # first the checker itself, on planted calls and lines.
    echo "== unit: style check"
    run_counted python3 "$ROOT/tests/lib/check_style.py" --self-test
    run_counted python3 "$ROOT/tests/lib/check_style.py"
    # The leftover check of the end of this script, on purpose-made leaks.
    echo "== unit: core module layers"
    run_counted env BUILD="$BUILD" python3 "$ROOT/tests/lib/check_layers.py" "$ROOT"
    # A database parameter of the wrong kind must not compile.
    echo "== unit: database parameter types"
    run_counted bash "$ROOT/tests/lib/check_db_args.sh"
    echo "== unit: FastCGI app libraries"
    run_counted env BUILD="$BUILD" bash "$ROOT/tests/lib/check_fcgi_libs.sh"
    echo "== unit: leftover check"
    run_counted bash "$ROOT/tests/lib/test_leftovers.sh"
    # core/webhook.c against npm standardwebhooks (tests/webhook/).
    echo "== unit: webhook cross-check"
    if bash "$ROOT/tests/lib/npm-deps.sh" 2>&1; then
        run_counted node "$ROOT/tests/webhook/cross_check.js"
    else
        echo "FAIL webhook cross-check: tests/lib/npm-deps.sh failed"
        failed=$((failed + 1))
    fi
    # Every seed and every crash ever found, through each fuzz harness.
    echo "== unit: fuzz corpora"
    run_counted env BUILD="$BUILD" bash "$ROOT/tests/fuzz/replay.sh"
    echo "unit: $passed passed, $failed failed"
fi

if [ "$run_integration" = 1 ]; then
    # The s3 sink against a real S3-compatible server (s3rver): its own
    # server, no database or web server needed.
    echo "== integration: test_s3"
    run_counted env BUILD="$BUILD" bash "$ROOT/tests/integration/test_s3.sh"

    # Deployment: the smoke suite through every web server setup of conf/
    # (own MariaDB), the systemd units and socket activation, make install.
    echo "== integration: test_webservers"
    run_counted env BUILD="$BUILD" bash "$ROOT/tests/integration/test_webservers.sh"
    echo "== integration: test_systemd"
    run_counted env BUILD="$BUILD" bash "$ROOT/tests/integration/test_systemd.sh"
    echo "== integration: test_install"
    run_counted env BUILD="$BUILD" bash "$ROOT/tests/integration/test_install.sh"

    # `make run` offline, end to end (the exec adapter and the generator),
    # on its own free port and state directory; stopped with SIGTERM.
    echo "== integration: test_make_run"
    run_counted env BUILD="$BUILD" bash "$ROOT/tests/integration/test_make_run.sh"

    # Every shell line of README.md, as written, against `make run` on a
    # copy of the checkout (as root: in a network namespace of its own).
    echo "== integration: test_readme"
    run_counted env BUILD="$BUILD" bash "$ROOT/tests/integration/test_readme.sh"

    # Scale-out: two app hosts, two worker hosts, MariaDB, s3rver and the
    # fake Replicate, each in its own network namespace; a worker host cut
    # off and an app host down. Needs root; otherwise it says so and counts
    # nothing.
    echo "== integration: test_scaleout"
    run_counted env BUILD="$BUILD" bash "$ROOT/tests/integration/test_scaleout.sh"

    set +e
    bash "$ROOT/tests/run-integration.sh" 2>&1 | tee "$LOG"
    rc=${PIPESTATUS[0]}
    set -e
    summary=$(grep -E '^[0-9]+ passed, [0-9]+ failed$' "$LOG" | tail -n 1 || true)
    if [ -n "$summary" ]; then
        read -r p _ f _ <<<"$summary"
    else
        p=0
        f=0
    fi
    if [ "$rc" -ne 0 ] && [ "$f" -eq 0 ]; then
        echo "FAIL integration: exited with status $rc"
        f=1
    fi
    passed=$((passed + p))
    failed=$((failed + f))
fi

if [ "${DARKROOM_TEST_RUN_OWNER:-}" = "$$" ]; then
    echo "== leftover processes"
    if python3 "$ROOT/tests/lib/leftovers.py" scan --token "$DARKROOM_TEST_RUN" --root $$ \
            --dir "$DARKROOM_TEST_RUN_DIR" --kill; then
        echo "ok   no process of this run is left"
        passed=$((passed + 1))
    else
        echo "FAIL processes of this run were still running (listed above, now stopped)"
        failed=$((failed + 1))
    fi
    if [ "$failed" -eq 0 ]; then
        rm -rf "$DARKROOM_TEST_RUN_DIR"
    else
        echo "check: the run's temporary files are in $DARKROOM_TEST_RUN_DIR" >&2
    fi
elif [ -z "${DARKROOM_TEST_RUN:-}" ]; then
    echo "FAIL leftover processes: not checked (python3 is missing)"
    failed=$((failed + 1))
fi

echo "$passed passed, $failed failed"
[ "$failed" -eq 0 ]
