#!/usr/bin/env bash
# tests/integration/test_make_run.sh — `make run` end to end, with the
# environment variables the README documents for it. Three runs, each
# started as a user would (`VAR=… make run`) in its own session on a free
# port, with its state in a temporary directory (DARKROOM_VAR) and a copy
# of conf/darkroom.conf pointing there (DARKROOM_CONF):
#
#   1. offline, with DARKROOM_API_KEY and no var/api_key yet: the curl line
#      it prints, run as printed, makes a job that succeeds through the exec
#      adapter; its thumbnail is a WebP under /media/; the key it printed
#      and the one it wrote to var/api_key are both accepted; a second
#      `make run` on the same state directory is refused and the first
#      keeps serving; SIGTERM ends it cleanly (no "make: ***" line) and no
#      process it started remains;
#   2. the same state directory again (var/api_key now holds another key),
#      another DARKROOM_API_KEY, and DARKROOM_SINK=s3 with the
#      DARKROOM_S3_* variables against s3rver: both keys are accepted; the
#      job's files are in the bucket, byte for byte, at the bucket's URLs;
#   3. REPLICATE_API_TOKEN, REPLICATE_API_BASE and REPLICATE_WEBHOOK_SECRET
#      against the fake Replicate (tests/fakes/replicate.py), with
#      DARKROOM_DOWNLOAD_ALLOW_PRIVATE, _ALLOW_HTTP and _HOSTS,
#      DARKROOM_PUBLIC_URL and DARKROOM_CDN_BASE_URL: the job runs at the
#      fake, which delivers its webhooks to DARKROOM_PUBLIC_URL; the stored
#      URLs start with DARKROOM_CDN_BASE_URL.
#
# Ends with "N passed, N failed". Knobs: DARKROOM_BUILD_DIR or BUILD (the
# build directory, default ./build), DARKROOM_TEST_KEEP=1 keeps the
# temporary directory.

set -uo pipefail

ROOT=$(cd "$(dirname "${BASH_SOURCE[0]}")/../.." && pwd)
BUILD=${DARKROOM_BUILD_DIR:-${BUILD:-build}}
case "$BUILD" in /*) ;; *) BUILD=$ROOT/$BUILD ;; esac

# A developer's own settings must not leak into the runs.
while IFS= read -r var; do
    case "$var" in DARKROOM_BUILD_DIR|DARKROOM_TEST_KEEP) ;; DARKROOM_*|REPLICATE_*) unset "$var" ;; esac
done < <(compgen -e)

# shellcheck source=tests/lib/services.sh
. "$ROOT/tests/lib/services.sh"
# shellcheck source=tests/lib/npm-deps.sh
. "$ROOT/tests/lib/npm-deps.sh"
# shellcheck source=tests/lib/makerun.sh
. "$ROOT/tests/lib/makerun.sh"

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
MAKE_PID=""
OUT=""

cleanup() {
    local rc=$?
    makerun_kill "$MAKE_PID" "$VAR"
    services_cleanup
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

json_field() {
    python3 -c 'import json, sys
d = json.loads(sys.stdin.read())
for k in sys.argv[1].split("."):
    d = d[int(k)] if isinstance(d, list) else d[k]
print(d if not isinstance(d, (dict, list)) else json.dumps(d))' "$1" 2>/dev/null
}

# The HTTP status of GET $2 with the API key $1.
status_with_key() {
    curl -s -o /dev/null -w '%{http_code}' -H "Authorization: Bearer $1" "$2"
}

# The config of make run, pointed at the temporary state directory.
sed -e "s#\.\./var/#$VAR/#g" -e "s#\.\./var\$#$VAR#" \
    -e "s#\.\./build/plugins#$BUILD/plugins#" \
    -e "s#\.\./migrations#$ROOT/migrations#" \
    -e "s#^program = offline-\([a-z]*\).sh#program = $ROOT/conf/offline-\1.sh#" \
    "$ROOT/conf/darkroom.conf" >"$TMP/darkroom.conf"
if grep -q '\.\./' "$TMP/darkroom.conf"; then
    fail "config copy: relative paths left: $(grep '\.\./' "$TMP/darkroom.conf" | head -3 | tr '\n' ' ')"
    finish
fi

# start_run NAME VAR=VALUE... — `VAR=VALUE… make run` in its own session,
# output in $TMP/NAME.out; waits for its "Press Ctrl-C" line. Sets
# MAKE_PID, OUT, PORT, URL.
start_run() {
    local name=$1
    shift
    OUT=$TMP/$name.out
    PORT=${RUN_PORT:-$(free_port)}
    URL=http://127.0.0.1:$PORT
    setsid env DARKROOM_PORT="$PORT" DARKROOM_VAR="$VAR" \
        DARKROOM_CONF="$TMP/darkroom.conf" "$@" \
        make --no-print-directory -C "$ROOT" run BUILD="$BUILD" \
        </dev/null >"$OUT" 2>&1 &
    MAKE_PID=$!
    if makerun_wait_up "$OUT" "$MAKE_PID"; then
        ok "$name: make run came up on port $PORT"
        return 0
    fi
    fail "$name: make run did not print its curl line"
    show_logs
    return 1
}

# stop_run NAME — SIGTERM to make: it ends without an error line, and
# nothing it started remains.
stop_run() {
    makerun_stop "$1" "$MAKE_PID" "$OUT" "$VAR" && MAKE_PID=""
}

# run_printed_curl NAME [EXTRA_JSON_INPUT] — the curl line make run printed,
# run as printed (continuations joined): 202 and a job id in JOB; its key
# in KEY.
run_printed_curl() {
    local name=$1 curl resp code body
    curl=$(awk '/^  curl /{on=1} on{sub(/\\$/, ""); printf "%s ", $0} on && /-d /{exit}' "$OUT")
    resp=$(bash -c "$curl -w '\n%{http_code}'" 2>&1)
    code=$(tail -n 1 <<<"$resp")
    body=$(sed '$d' <<<"$resp")
    JOB=$(json_field id <<<"$body")
    KEY=$(sed -n "s/.*Authorization: Bearer \([^']*\)'.*/\1/p" <<<"$curl")
    if [ "$code" = 202 ] && [ -n "$JOB" ]; then
        ok "$name: the printed curl created job $JOB"
        return 0
    fi
    fail "$name: the printed curl answered $code: $body"
    show_logs
    return 1
}

# wait_job NAME — until job $JOB has ended; it must have succeeded. The
# job document is in JOBDOC.
wait_job() {
    local name=$1 status=""
    for _ in $(seq 1 120); do
        JOBDOC=$(curl -sS -H "Authorization: Bearer $KEY" "$URL/v1/jobs/$JOB")
        status=$(json_field status <<<"$JOBDOC")
        case "$status" in succeeded|failed|canceled) break ;; esac
        sleep 0.5
    done
    if [ "$status" = succeeded ]; then
        ok "$name: job $JOB succeeded"
        return 0
    fi
    fail "$name: job $JOB ended as '$status': $JOBDOC"
    show_logs
    return 1
}

# ---------------------------------------------------------------- run 1
KEY1=drk_env_$(python3 -c 'import secrets; print(secrets.token_hex(16))')
if ! start_run offline DARKROOM_API_KEY="$KEY1"; then
    finish
fi
if grep -q 'jobs go to: offline' "$OUT"; then
    ok "offline: without REPLICATE_API_TOKEN jobs go to the offline generator"
else
    fail "offline: mode line: $(grep 'jobs go to' "$OUT")"
fi
if grep -q "^  API key:    $KEY1\$" "$OUT"; then
    ok "offline: it prints DARKROOM_API_KEY as the API key"
else
    fail "offline: printed key: $(grep 'API key:' "$OUT")"
fi
run_printed_curl offline || finish
case "$KEY" in
    "$KEY1") ok "offline: the printed curl carries DARKROOM_API_KEY" ;;
    *) fail "offline: the printed curl carries another key" ;;
esac
FILEKEY=$(cat "$VAR/api_key" 2>/dev/null)
code=$(status_with_key "$FILEKEY" "$URL/v1/jobs")
if [ -n "$FILEKEY" ] && [ "$FILEKEY" != "$KEY1" ] && [ "$code" = 200 ]; then
    ok "offline: var/api_key was made and its key is accepted too"
else
    fail "offline: var/api_key ('${FILEKEY:0:8}…'): $code"
fi
wait_job offline || finish

THUMB=$(python3 -c 'import json,sys
d = json.loads(sys.stdin.read())
o = d["outputs"][0]
assert o["kind"] == "image", o
print([r["url"] for r in o["renditions"] if r["name"] == "thumb"][0])' <<<"$JOBDOC" 2>/dev/null)
case "$THUMB" in
    "$URL/media/"*) ok "offline: thumb rendition served under /media/" ;;
    *) fail "offline: no thumb rendition under $URL/media/: $THUMB ($JOBDOC)" ;;
esac
if [ -n "$THUMB" ] && curl -sSf -o "$TMP/thumb.webp" "$THUMB" &&
    [ "$(head -c 4 "$TMP/thumb.webp")" = RIFF ] &&
    [ "$(head -c 12 "$TMP/thumb.webp" | tail -c 4)" = WEBP ]; then
    ok "offline: the thumbnail is a WebP ($(wc -c <"$TMP/thumb.webp") bytes)"
else
    fail "offline: the thumbnail $THUMB is no WebP"
fi

# A second make run on the same state directory, on another port: refused
# with one line naming the first, which keeps serving.
PORT2=$(free_port)
second=$(env DARKROOM_PORT="$PORT2" DARKROOM_VAR="$VAR" DARKROOM_CONF="$TMP/darkroom.conf" \
    timeout 120 make --no-print-directory -C "$ROOT" run BUILD="$BUILD" </dev/null 2>&1)
rc=$?
if [ "$rc" -ne 0 ] && grep -q "^run: another make run (pid [0-9]*) is using $VAR" <<<"$second"; then
    ok "offline: a second make run on the same state directory is refused"
else
    fail "offline: a second make run (status $rc): $(tail -n 5 <<<"$second")"
fi
code=$(status_with_key "$KEY1" "$URL/v1/jobs/$JOB")
db=$(curl -s "$URL/healthz")
if [ "$code" = 200 ] && [ "$(json_field status <<<"$db")" = ok ]; then
    ok "offline: the first make run still serves, its database up"
else
    fail "offline: after the refused second run: job $code, healthz $db"
fi
stop_run offline

# ---------------------------------------------------------------- run 2
if ! npm_deps_install >"$TMP/npm.log" 2>&1; then
    fail "s3: cannot install s3rver: $(tail -n 3 "$TMP/npm.log")"
    finish
fi
S3_PORT=$(free_port)
mkdir -p "$TMP/s3"
services_bg s3rver "$TMP/s3rver.log" node "$ROOT/node_modules/.bin/s3rver" \
    -d "$TMP/s3" -a 127.0.0.1 -p "$S3_PORT" --silent --configure-bucket media-test
wait_port "$S3_PORT" 30 "$SERVICES_LAST_PID" || { fail "s3: s3rver did not start"; finish; }

MEDIA_FILES=$(find "$VAR/media" -type f ! -name '.*' | wc -l)
KEY2=drk_env_$(python3 -c 'import secrets; print(secrets.token_hex(16))')
if ! start_run s3 DARKROOM_API_KEY="$KEY2" DARKROOM_SINK=s3 \
    DARKROOM_S3_ENDPOINT="http://127.0.0.1:$S3_PORT" DARKROOM_S3_BUCKET=media-test \
    DARKROOM_S3_REGION=eu-west-1 DARKROOM_S3_SIGNATURE=v4 \
    DARKROOM_S3_ACCESS_KEY=S3RVER DARKROOM_S3_SECRET_KEY=S3RVER; then
    finish
fi
code=$(status_with_key "$KEY2" "$URL/v1/jobs")
code_file=$(status_with_key "$FILEKEY" "$URL/v1/jobs")
if [ "$code" = 200 ] && [ "$code_file" = 200 ] && grep -q "^  API key:    $KEY2\$" "$OUT"; then
    ok "s3: with var/api_key holding another key, the printed DARKROOM_API_KEY and the file's are accepted"
else
    fail "s3: printed key $code, file key $code_file: $(grep 'API key:' "$OUT")"
fi
run_printed_curl s3 || finish
wait_job s3 || finish
if python3 - "$JOBDOC" "http://127.0.0.1:$S3_PORT/media-test/" <<'EOF'; then
import hashlib, json, sys, urllib.request
job, base = json.loads(sys.argv[1]), sys.argv[2]
n = 0
for o in job["outputs"]:
    objs = [(o["url"], o.get("sha256"), o.get("bytes"))]
    objs += [(r["url"], None, r.get("bytes")) for r in o.get("renditions", [])]
    for url, sha, size in objs:
        assert url.startswith(base), url
        body = urllib.request.urlopen(url, timeout=10).read()
        assert size is None or len(body) == size, (url, len(body), size)
        assert sha is None or hashlib.sha256(body).hexdigest() == sha, url
        n += 1
assert n >= 2, n
print("checked", n, "objects")
EOF
    ok "s3: the job's original and renditions are in the bucket, at its URLs, byte for byte"
else
    fail "s3: stored objects: $JOBDOC"
fi
if [ "$(find "$VAR/media" -type f ! -name '.*' | wc -l)" = "$MEDIA_FILES" ]; then
    ok "s3: nothing was written to the fs sink's folder"
else
    fail "s3: files were written to $VAR/media"
fi
stop_run s3

# ---------------------------------------------------------------- run 3
FAKE_PORT=$(free_port)
SECRET=whsec_$(head -c 24 /dev/urandom | base64)
services_bg fake-replicate "$TMP/fake-replicate.log" \
    python3 "$ROOT/tests/fakes/replicate.py" --port "$FAKE_PORT" --token r8_make_run --secret "$SECRET"
wait_port "$FAKE_PORT" 30 "$SERVICES_LAST_PID" || { fail "replicate: the fake did not start"; finish; }
FAKE=http://127.0.0.1:$FAKE_PORT
# The public URL providers are given: the same server under another
# spelling (localhost), so its use is visible in the webhook URL.
RUN_PORT=$(free_port)
CDN=https://cdn.example.com/m
if ! start_run replicate REPLICATE_API_TOKEN=r8_make_run \
    REPLICATE_API_BASE="$FAKE/v1" REPLICATE_WEBHOOK_SECRET="$SECRET" \
    DARKROOM_DOWNLOAD_ALLOW_PRIVATE=1 DARKROOM_DOWNLOAD_ALLOW_HTTP=1 \
    DARKROOM_DOWNLOAD_HOSTS=127.0.0.1 DARKROOM_CDN_BASE_URL="$CDN" \
    DARKROOM_PUBLIC_URL="http://localhost:$RUN_PORT"; then
    finish
fi
if grep -q 'jobs go to: Replicate' "$OUT"; then
    ok "replicate: with REPLICATE_API_TOKEN jobs go to Replicate"
else
    fail "replicate: mode line: $(grep 'jobs go to' "$OUT")"
fi
run_printed_curl replicate || finish
wait_job replicate || finish
if python3 - "$JOBDOC" "$FAKE" "http://localhost:$RUN_PORT/v1/hooks/replicate" "$CDN/" <<'EOF'; then
import json, sys, urllib.request
job, fake, hook, cdn = json.loads(sys.argv[1]), sys.argv[2], sys.argv[3], sys.argv[4]
state = json.load(urllib.request.urlopen(fake + "/_state", timeout=10))
pred = state["predictions"][job["prediction"]["id"]]
assert pred["webhook"].startswith(hook), pred["webhook"]
codes = [d["status_code"] for d in state["webhook_deliveries"] if d["prediction"] == pred["id"]]
assert 200 in codes, codes
for o in job["outputs"]:
    assert o["url"].startswith(cdn), o["url"]
    for r in o["renditions"]:
        assert r["url"].startswith(cdn), r["url"]
print("webhook", pred["webhook"], "deliveries", codes)
EOF
    ok "replicate: the prediction ran at REPLICATE_API_BASE, its webhooks reached DARKROOM_PUBLIC_URL, URLs start with DARKROOM_CDN_BASE_URL"
else
    fail "replicate: $JOBDOC"
fi
stop_run replicate

finish
