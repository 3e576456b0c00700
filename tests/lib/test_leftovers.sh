#!/usr/bin/env bash
# tests/lib/test_leftovers.sh — the leftover-process check itself
# (tests/lib/leftovers.py) and services_cleanup's process-group sweep
# (tests/lib/services.sh), on processes this script leaks on purpose:
#
#   1. a command that leaves nothing passes ("leftovers: 1 passed");
#   2. a command that leaves a process with the run's environment (marker)
#      and one started with a cleared environment that forked away (env -i
#      setsid sh -c 'sleep &': found as a descendant of the subreaper)
#      fails, both are listed with their command lines and stopped, and a
#      process of this script, outside that run, is neither;
#   3. scan --dir finds a process by its working directory in the run's
#      folder, and only then;
#   4. services_cleanup stops a child a service left in its process group.
#
# Ends with "N passed, N failed". Run by tests/check.sh with the unit tests.

set -uo pipefail

ROOT=$(cd "$(dirname "${BASH_SOURCE[0]}")/../.." && pwd)
LEFTOVERS=$ROOT/tests/lib/leftovers.py
TMP=$(mktemp -d "${TMPDIR:-/tmp}/darkroom-leftovers.XXXXXX")
passed=0
failed=0
ok() { echo "ok   $1"; passed=$((passed + 1)); }
fail() { echo "FAIL $1"; failed=$((failed + 1)); }

# Everything this script may have left: stopped here, whatever happened.
mine=()
finish() {
    local p
    for p in "${mine[@]}"; do kill -KILL "$p" 2>/dev/null; done
    rm -rf "$TMP"
}
trap finish EXIT

alive() { [ -e "/proc/$1" ] && [ "$(cut -d' ' -f3 "/proc/$1/stat" 2>/dev/null)" != Z ]; }

# -- 1. nothing left
out=$(python3 "$LEFTOVERS" run -- true 2>&1)
rc=$?
if [ "$rc" -eq 0 ] && [ "$(printf '%s\n' "$out" | tail -n 1)" = "leftovers: 1 passed, 0 failed" ]; then
    ok "a command that leaves nothing passes"
else
    fail "a command that leaves nothing: status $rc: $out"
fi

# -- 2. two leaks, one outsider
sleep 302 >/dev/null 2>&1 &
outsider=$!
mine+=("$outsider")
# shellcheck disable=SC2016  # expanded by the inner shells
out=$(python3 "$LEFTOVERS" run -- bash -c '
    setsid sleep 300 </dev/null >/dev/null 2>&1 &
    echo "$!" >"$1/marker.pid"
    env -i /usr/bin/setsid /bin/sh -c "sleep 301 </dev/null >/dev/null 2>&1 & echo \$! >\"\$1\"" _ "$1/cleared.pid"
    ' _ "$TMP" 2>&1)
rc=$?
p_marker=$(cat "$TMP/marker.pid" 2>/dev/null)
p_cleared=$(cat "$TMP/cleared.pid" 2>/dev/null)
mine+=(${p_marker:+"$p_marker"} ${p_cleared:+"$p_cleared"})
if [ "$rc" -ne 0 ] && [ "$(printf '%s\n' "$out" | tail -n 1)" = "leftovers: 0 passed, 1 failed" ]; then
    ok "a command that leaves processes fails"
else
    fail "a command that leaves processes: status $rc: $out"
fi
if printf '%s\n' "$out" | grep -qxF "leftover: pid $p_marker (sleep): sleep 300 [marker]"; then
    ok "a process with the run's environment is listed (pid, command line)"
else
    fail "sleep 300 (pid $p_marker) is not listed as the run's: $out"
fi
if printf '%s\n' "$out" | grep -qxF "leftover: pid $p_cleared (sleep): sleep 301 [descendant]"; then
    ok "a process with a cleared environment that forked away is listed"
else
    fail "sleep 301 (pid $p_cleared, env -i, setsid) is not listed: $out"
fi
if ! alive "$p_marker" && ! alive "$p_cleared"; then
    ok "both are stopped"
else
    fail "still running after the check: $p_marker $p_cleared"
fi
if alive "$outsider" && ! printf '%s\n' "$out" | grep -q "pid $outsider "; then
    ok "a process outside the run is neither listed nor stopped"
else
    fail "the outsider (pid $outsider, sleep 302) was listed or stopped: $out"
fi
kill "$outsider" 2>/dev/null
wait "$outsider" 2>/dev/null

# -- 3. by working directory in the run's folder
mkdir -p "$TMP/run"
# shellcheck disable=SC2016  # expanded by the inner shell
env -i /usr/bin/setsid /bin/sh -c 'cd "$1" && exec sleep 303' _ "$TMP/run" </dev/null >/dev/null 2>&1 &
for _ in $(seq 1 50); do
    p_cwd=$(python3 - "$TMP/run" <<'PY'
import os, sys
for p in os.listdir("/proc"):
    if p.isdigit():
        try:
            if os.readlink(f"/proc/{p}/cwd") == sys.argv[1] and \
                    open(f"/proc/{p}/comm").read().strip() == "sleep":
                print(p)
        except OSError:
            pass
PY
)
    [ -n "$p_cwd" ] && break
    sleep 0.1
done
mine+=(${p_cwd:+"$p_cwd"})
if [ -n "$p_cwd" ] && python3 "$LEFTOVERS" scan --token not-this-run >/dev/null 2>&1; then
    ok "scan without the folder does not take sleep 303 for the run's"
else
    fail "scan without the folder: sleep 303 (pid $p_cwd) taken for the run's, or not started"
fi
out=$(python3 "$LEFTOVERS" scan --dir "$TMP/run" --kill 2>&1)
rc=$?
if [ "$rc" -eq 1 ] && printf '%s\n' "$out" | grep -qxF "leftover: pid $p_cwd (sleep): sleep 303 [cwd in $TMP/run]" \
        && ! alive "$p_cwd"; then
    ok "scan --dir finds a process working in the run's folder, and stops it"
else
    fail "scan --dir: status $rc: $out"
fi

# -- 4. services_cleanup and a child left in the service's process group
(
    # shellcheck source=tests/lib/services.sh
    . "$ROOT/tests/lib/services.sh"
    # shellcheck disable=SC2016  # expanded by the service's shell
    services_bg forker "$TMP/forker.log" bash -c \
        'sleep 304 </dev/null >/dev/null 2>&1 & echo "$!" >"$1"; trap "exit 0" TERM; wait' _ "$TMP/child.pid"
    for _ in $(seq 1 50); do [ -s "$TMP/child.pid" ] && break; sleep 0.1; done
    services_cleanup 2>/dev/null
)
p_child=$(cat "$TMP/child.pid" 2>/dev/null)
mine+=(${p_child:+"$p_child"})
if [ -n "$p_child" ] && ! alive "$p_child"; then
    ok "services_cleanup stops what a service left in its process group"
else
    fail "services_cleanup left the service's child running (pid ${p_child:-?}, sleep 304)"
fi

echo "$passed passed, $failed failed"
[ "$failed" -eq 0 ]
