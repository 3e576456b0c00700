#!/usr/bin/env bash
# tests/integration/test_make_run.sh — `make run` end to end, offline:
#
#   1. `make run` in the background (its own session) on a free port, with
#      its state in a temporary directory (DARKROOM_VAR) and a copy of
#      conf/darkroom.conf pointing there, without REPLICATE_API_TOKEN: jobs
#      go to the exec adapter and conf/offline-model.sh;
#   2. the curl line it prints, run as printed: 202 and a job id;
#   3. GET /v1/jobs/{id} until the job has succeeded;
#   4. the job's `thumb` rendition fetched from /media/: a WebP, and the
#      README's cancel line, run as written: the app's 409 (job ended);
#   5. SIGTERM to make: it exits, and no process it started (mariadbd,
#      lighttpd, darkroom.fcgi, darkroom worker, the model) remains.
#
# Ends with "N passed, N failed". Knobs: DARKROOM_BUILD_DIR or BUILD (the
# build directory, default ./build), DARKROOM_TEST_KEEP=1 keeps the
# temporary directory.

set -uo pipefail

ROOT=$(cd "$(dirname "${BASH_SOURCE[0]}")/../.." && pwd)
BUILD=${DARKROOM_BUILD_DIR:-${BUILD:-build}}
case "$BUILD" in /*) ;; *) BUILD=$ROOT/$BUILD ;; esac

passed=0
failed=0
ok() { echo "ok   $*"; passed=$((passed + 1)); }
fail() { echo "FAIL $*"; failed=$((failed + 1)); }
finish() {
    echo "$passed passed, $failed failed"
    [ "$failed" -eq 0 ]
    exit
}

TMP=$(mktemp -d "${TMPDIR:-/tmp}/darkroom-makerun.XXXXXX")
VAR=$TMP/var
OUT=$TMP/make-run.out
MAKE_PID=""

# Every process that names the temporary directory in its command line or
# environment: what make run started, wherever it went.
leftovers() {
    python3 - "$$" 3<<<"$TMP" <<'EOF'
import os, sys
needle = os.fdopen(3).read().strip().encode()
me = {os.getpid(), int(sys.argv[1]), os.getppid()}
for pid in os.listdir("/proc"):
    if not pid.isdigit() or int(pid) in me:
        continue
    try:
        with open(f"/proc/{pid}/cmdline", "rb") as f:
            cmd = f.read()
        try:
            with open(f"/proc/{pid}/environ", "rb") as f:
                env = f.read()
        except OSError:
            env = b""
        with open(f"/proc/{pid}/stat", "rb") as f:
            state = f.read().rsplit(b")", 1)[1].split()[0]
    except OSError:
        continue
    if state == b"Z":
        continue
    if needle in cmd or needle in env:
        print(pid, cmd.replace(b"\0", b" ").decode(errors="replace")[:120])
EOF
}

cleanup() {
    local rc=$? pids
    if [ -n "$MAKE_PID" ] && kill -0 "$MAKE_PID" 2>/dev/null; then
        kill -TERM -- "-$MAKE_PID" 2>/dev/null
        sleep 3
        kill -KILL -- "-$MAKE_PID" 2>/dev/null
    fi
    pids=$(leftovers | awk '{print $1}')
    for p in $pids; do
        kill -KILL "$p" 2>/dev/null
    done
    if [ "${DARKROOM_TEST_KEEP:-0}" = 1 ]; then
        echo "kept $TMP"
    else
        rm -rf "$TMP"
    fi
    exit "$rc"
}
trap cleanup EXIT

show_logs() {
    echo "--- make run output"
    tail -n 40 "$OUT" 2>/dev/null
    for f in worker.log app.log lighttpd-error.log; do
        echo "--- $f"
        tail -n 30 "$VAR/$f" 2>/dev/null
    done
}

PORT=$(python3 -c 'import socket
s = socket.socket()
s.bind(("127.0.0.1", 0))
print(s.getsockname()[1])')

# The config of make run, pointed at the temporary state directory.
sed -e "s#\.\./var/#$VAR/#g" -e "s#\.\./var\$#$VAR#" \
    -e "s#\.\./build/plugins#$BUILD/plugins#" \
    -e "s#\.\./migrations#$ROOT/migrations#" \
    -e "s#^program = offline-model.sh#program = $ROOT/conf/offline-model.sh#" \
    "$ROOT/conf/darkroom.conf" >"$TMP/darkroom.conf"
if grep -q '\.\./' "$TMP/darkroom.conf"; then
    fail "config copy: relative paths left: $(grep '\.\./' "$TMP/darkroom.conf" | head -3 | tr '\n' ' ')"
    finish
fi

# -- 1. make run
setsid env -u REPLICATE_API_TOKEN -u DARKROOM_DEFAULT_ADAPTER \
    -u DARKROOM_API_KEY -u DARKROOM_PUBLIC_URL -u DARKROOM_CDN_BASE_URL \
    -u DARKROOM_SINK -u DARKROOM_DEMO_MODEL \
    DARKROOM_PORT="$PORT" DARKROOM_VAR="$VAR" DARKROOM_CONF="$TMP/darkroom.conf" \
    make --no-print-directory -C "$ROOT" run BUILD="$BUILD" \
    </dev/null >"$OUT" 2>&1 &
MAKE_PID=$!

up=0
for _ in $(seq 1 240); do
    if grep -q '^Press Ctrl-C to stop' "$OUT" 2>/dev/null; then
        up=1
        break
    fi
    kill -0 "$MAKE_PID" 2>/dev/null || break
    sleep 0.5
done
if [ "$up" = 1 ]; then
    ok "make run came up on port $PORT"
else
    fail "make run did not print its curl line"
    show_logs
    finish
fi
if grep -q 'jobs go to: offline' "$OUT"; then
    ok "without REPLICATE_API_TOKEN jobs go to the offline generator"
else
    fail "mode line: $(grep 'jobs go to' "$OUT")"
fi

# -- 2. the printed curl line, as printed (continuations joined)
CURL=$(awk '/^  curl /{on=1} on{sub(/\\$/, ""); printf "%s ", $0} on && /-d /{exit}' "$OUT")
case "$CURL" in
    *"curl "*"/v1/jobs"*"darkroom/offline"*) ok "printed curl names the offline model" ;;
    *) fail "printed curl line: $CURL" ;;
esac
RESP=$(bash -c "$CURL -w '\n%{http_code}'" 2>&1)
CODE=$(tail -n 1 <<<"$RESP")
BODY=$(sed '$d' <<<"$RESP")
JOB=$(python3 -c 'import json,sys; print(json.loads(sys.stdin.read())["id"])' <<<"$BODY" 2>/dev/null)
if [ "$CODE" = 202 ] && [ -n "$JOB" ]; then
    ok "the printed curl created job $JOB"
else
    fail "the printed curl answered $CODE: $BODY"
    show_logs
    finish
fi
KEY=$(sed -n "s/.*Authorization: Bearer \([^']*\)'.*/\1/p" <<<"$CURL")
URL=http://127.0.0.1:$PORT

# -- 3. wait for succeeded
status=""
for _ in $(seq 1 120); do
    JOBDOC=$(curl -sS -H "Authorization: Bearer $KEY" "$URL/v1/jobs/$JOB")
    status=$(python3 -c 'import json,sys; print(json.loads(sys.stdin.read())["status"])' <<<"$JOBDOC" 2>/dev/null)
    case "$status" in succeeded|failed|canceled) break ;; esac
    sleep 0.5
done
if [ "$status" = succeeded ]; then
    ok "job $JOB succeeded"
else
    fail "job $JOB ended as '$status': $JOBDOC"
    show_logs
    finish
fi

# -- 4. the thumbnail under /media/
THUMB=$(python3 -c 'import json,sys
d = json.loads(sys.stdin.read())
o = d["outputs"][0]
assert o["kind"] == "image", o
print([r["url"] for r in o["renditions"] if r["name"] == "thumb"][0])' <<<"$JOBDOC" 2>/dev/null)
case "$THUMB" in
    "$URL/media/"*) ok "thumb rendition served under /media/" ;;
    *) fail "no thumb rendition under $URL/media/: $THUMB ($JOBDOC)" ;;
esac
if [ -n "$THUMB" ] && curl -sSf -o "$TMP/thumb.webp" "$THUMB" &&
    [ "$(head -c 4 "$TMP/thumb.webp")" = RIFF ] &&
    [ "$(head -c 12 "$TMP/thumb.webp" | tail -c 4)" = WEBP ]; then
    ok "the thumbnail is a WebP ($(wc -c <"$TMP/thumb.webp") bytes)"
else
    fail "the thumbnail $THUMB is no WebP"
fi

# -- 4b. the README's cancel line, as written (port aside): the job has
# ended, so the app's 409 problem document, whatever the web server
CANCEL=$(grep -m 1 -E '^curl .*-X POST .*/v1/jobs/\$ID/cancel$' "$ROOT/README.md")
RESP=$(KEY=$KEY ID=$JOB bash -c "${CANCEL//:8080\//:$PORT/} -w '\n%{http_code} %{content_type}'" 2>&1)
case "$(tail -n 1 <<<"$RESP")" in
    "409 application/problem+json") ok "the README's cancel line answers 409 for the ended job" ;;
    *) fail "the README's cancel line ($CANCEL) answered: $RESP" ;;
esac

# -- 5. SIGTERM stops everything
kill -TERM "$MAKE_PID"
stopped=0
for _ in $(seq 1 60); do
    if ! kill -0 "$MAKE_PID" 2>/dev/null; then
        stopped=1
        break
    fi
    sleep 0.5
done
wait "$MAKE_PID" 2>/dev/null
if [ "$stopped" = 1 ]; then
    ok "make run exited on SIGTERM"
else
    fail "make run still runs 30 s after SIGTERM"
fi
left=""
for _ in $(seq 1 40); do
    left=$(leftovers)
    [ -z "$left" ] && break
    sleep 0.5
done
if [ -z "$left" ]; then
    MAKE_PID=""
    ok "no process started by make run remains"
else
    fail "processes left behind: $left"
fi

finish
