#!/usr/bin/env bash
# tests/lib/makerun.sh — `make run` as the tests drive it: started in a
# session of its own, waited for, stopped with SIGTERM, and checked to
# leave no process behind. Sourced by tests/integration/test_make_run.sh
# and tests/integration/test_readme.sh, which define ok and fail (one
# "ok …" / "FAIL …" line each).
#
#   makerun_wait_up OUT PID       0 once OUT shows "Press Ctrl-C to stop"
#                                 (2 minutes at most), 1 when PID ended
#                                 or time ran out
#   makerun_leftovers DIR         print the processes whose executable,
#                                 working directory, command line or
#                                 environment name DIR (one line each)
#   makerun_stop LABEL PID OUT DIR
#                                 SIGTERM to PID (make): it must end within
#                                 30 s without a "make: ***" line in OUT,
#                                 and nothing naming DIR may remain; three
#                                 ok/fail lines. Returns 0 when all held.
#   makerun_kill PID DIR          for an EXIT trap: stop PID's session and
#                                 whatever still names DIR, by force

MAKERUN_LEFTOVERS=$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)/leftovers.py

makerun_wait_up() {
    local out=$1 pid=$2
    for _ in $(seq 1 240); do
        grep -q '^Press Ctrl-C to stop' "$out" 2>/dev/null && return 0
        kill -0 "$pid" 2>/dev/null || return 1
        sleep 0.5
    done
    return 1
}

makerun_leftovers() {
    python3 "$MAKERUN_LEFTOVERS" scan --dir "$1" | sed -n 's/^leftover: //p'
}

makerun_stop() {
    local label=$1 pid=$2 out=$3 dir=$4 stopped=0 left="" rc=0
    kill -TERM "$pid" 2>/dev/null
    for _ in $(seq 1 60); do
        if ! kill -0 "$pid" 2>/dev/null; then
            stopped=1
            break
        fi
        sleep 0.5
    done
    wait "$pid" 2>/dev/null
    if [ "$stopped" = 1 ]; then
        ok "$label: make run exited on SIGTERM"
    else
        fail "$label: make run still runs 30 s after SIGTERM"
        rc=1
    fi
    if grep -q '^make: \*\*\*' "$out"; then
        fail "$label: a clean stop reported an error: $(grep '^make: \*\*\*' "$out")"
        rc=1
    else
        ok "$label: a clean stop reports no error (no 'make: ***' line)"
    fi
    for _ in $(seq 1 40); do
        left=$(makerun_leftovers "$dir")
        [ -z "$left" ] && break
        sleep 0.5
    done
    if [ -z "$left" ]; then
        ok "$label: no process started by make run remains"
    else
        fail "$label: processes left behind: $left"
        rc=1
    fi
    return "$rc"
}

makerun_kill() {
    local pid=$1 dir=$2
    if [ -n "$pid" ] && kill -0 "$pid" 2>/dev/null; then
        kill -TERM -- "-$pid" 2>/dev/null
        sleep 3
        kill -KILL -- "-$pid" 2>/dev/null
    fi
    python3 "$MAKERUN_LEFTOVERS" scan --dir "$dir" --kill >/dev/null
}
