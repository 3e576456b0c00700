#!/usr/bin/env bash
# tests/run-integration.sh — run the integration tests against the built
# service: a throw-away MariaDB and lighttpd with build/darkroom.fcgi, on
# free loopback ports, in a temporary directory under ${TMPDIR:-/tmp}.
#
#   tests/run-integration.sh                 every tests/integration/test_*.py
#   tests/run-integration.sh FILE...         only those test files
#
# Each test file is a stand-alone Python program (tests/integration/
# harness.py) ending with "N passed, N failed"; this script adds them up and
# ends with the same line for the whole run. It exits non-zero on any
# failure, and then shows the end of the service logs and leaves them in
# the temporary directory (without the database files).
#
# Knobs: DARKROOM_BUILD_DIR or BUILD (default ./build), DARKROOM_TEST_KEEP=1 (keep
# the whole temporary directory), DARKROOM_TEST_TIMEOUT (seconds per test
# file, default 900).
#
# What the test files get in their environment:
#   DARKROOM_URL, DARKROOM_API_KEY, DARKROOM_API_KEY2   the service and keys
#   DARKROOM_CONF, DARKROOM_BIN                         config and CLI
#   MARIADB_SOCKET, DARKROOM_DB                         the database
#   DARKROOM_DB_CTL        command + `stop` / `start`: take MariaDB down/up
#   DARKROOM_MEDIA         the fs sink's directory (served under /media/)
#   DARKROOM_LIGHTTPD_PID, DARKROOM_LIGHTTPD_ERRLOG     the web server
#   DARKROOM_APP_LOG       the FastCGI app's stderr
#   DARKROOM_TEST_DIR      the temporary directory, for scratch files
#   DARKROOM_FAKE_REPLICATE            the fake Replicate's base URL
#   DARKROOM_REPLICATE_SECRET[_PREV]   its webhook secrets
#   DARKROOM_CALLBACK_SECRET           the secret signing client callbacks
#   DARKROOM_FAKE_COG1/2, DARKROOM_COG1/2_TOKEN  the fake Cog containers
#                          (tests/fakes/cog.py) behind [adapter "cog1"/"cog2"]
#   DARKROOM_S3_PORT, DARKROOM_S3_DIR  s3rver (bucket DARKROOM_S3_TEST_BUCKET)
#                          on 127.0.0.1, configured as [sink "s3"] (SigV4,
#                          path style); a worker started with DARKROOM_SINK=s3
#                          stores there. DARKROOM_S3_PID its pid;
#                          DARKROOM_S3RVER_BIN the s3rver script (run with
#                          node), for tests that start their own.

set -euo pipefail

ROOT=$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)
BUILD=${DARKROOM_BUILD_DIR:-${BUILD:-build}}
case "$BUILD" in /*) ;; *) BUILD=$ROOT/$BUILD ;; esac
KEEP=${DARKROOM_TEST_KEEP:-0}
FILE_TIMEOUT=${DARKROOM_TEST_TIMEOUT:-900}

# The service reads DARKROOM_* and REPLICATE_* overrides from its
# environment; a developer's own settings must not leak into the tests.
while IFS= read -r var; do
    case "$var" in
        DARKROOM_TEST_RUN) ;; # the leftover check's token (tests/check.sh)
        DARKROOM_*|REPLICATE_*) unset "$var" ;;
    esac
done < <(compgen -e)

# shellcheck source=tests/lib/services.sh
. "$ROOT/tests/lib/services.sh"
# shellcheck source=tests/lib/npm-deps.sh
. "$ROOT/tests/lib/npm-deps.sh"

WORK=$(mktemp -d "${TMPDIR:-/tmp}/darkroom-it.XXXXXX")
passed=0
failed=0
status=0

# shellcheck disable=SC2317  # called by the EXIT trap
finish() {
    local rc=$?
    set +e
    [ "$status" -eq 0 ] && status=$rc
    services_cleanup
    if [ "$status" -ne 0 ] || [ "$failed" -ne 0 ]; then
        # Keep the logs for a look; the database files are large.
        [ "$KEEP" = 1 ] || rm -rf "$WORK/db/data"
        echo "--- integration logs in $WORK" >&2
        for log in "$WORK/web/lighttpd-error.log" "$WORK/web/app.log" "$WORK/db/mariadb.log" \
                   "$WORK/migrate.log"; do
            if [ -s "$log" ]; then
                echo "--- last lines of $log" >&2
                tail -n 25 "$log" >&2
            fi
        done
    elif [ "$KEEP" != 1 ]; then
        rm -rf "$WORK"
    fi
}
trap finish EXIT
trap 'exit 130' INT
trap 'exit 143' TERM

# Counts a set-up failure as one failed test and stops.
setup_failed() {
    echo "integration: $*" >&2
    failed=$((failed + 1))
    echo "$passed passed, $failed failed"
    status=1
    exit 1
}

for f in "$BUILD/darkroom" "$BUILD/darkroom.fcgi"; do
    [ -x "$f" ] || setup_failed "missing $f (build first)"
done

gen_key() {
    python3 -c 'import secrets; print("drk_test_" + secrets.token_hex(20))'
}

# -- MariaDB
mariadb_start "$WORK/db" || setup_failed "MariaDB did not start"
DB_NAME=darkroom_test

# Lets a test take the same MariaDB down and bring it back.
# shellcheck disable=SC2016  # $1 and $0 belong to the generated script
{
    echo '#!/bin/sh'
    echo '# Stops or starts the integration tests'"'"' MariaDB: dbctl stop|start'
    echo 'case "$1" in stop|start) ;; *) echo "usage: $0 stop|start" >&2; exit 2 ;; esac'
    printf 'exec %q "mariadb_$1" %q\n' "$ROOT/tests/lib/services.sh" "$WORK/db"
} >"$WORK/dbctl"
chmod +x "$WORK/dbctl"

# -- config
WEB_PORT=$(free_port)
API_KEY=$(gen_key)
API_KEY2=$(gen_key)
MEDIA=$WORK/web/media
mkdir -p "$MEDIA"

# -- the fake Replicate (tests/fakes/replicate.py), with a current and a
# previous webhook secret (rotation).
FAKE_PORT=$(free_port)
REPLICATE_SECRET=whsec_$(head -c 24 /dev/urandom | base64)
REPLICATE_SECRET_PREV=whsec_$(head -c 24 /dev/urandom | base64)
CALLBACK_SECRET=whsec_$(head -c 32 /dev/urandom | base64)
services_bg fake-replicate "$WORK/fake-replicate.log" \
    python3 "$ROOT/tests/fakes/replicate.py" --port "$FAKE_PORT" \
    --token r8_fake --secret "$REPLICATE_SECRET"
wait_port "$FAKE_PORT" || setup_failed "the fake Replicate did not start"

# -- two fake Cog containers (tests/fakes/cog.py), [adapter "cog1"] and
# [adapter "cog2"], each with its own webhook token.
COG1_PORT=$(free_port)
COG1_TOKEN=$(head -c 24 /dev/urandom | od -An -tx1 | tr -d ' \n')
services_bg fake-cog1 "$WORK/fake-cog1.log" \
    python3 "$ROOT/tests/fakes/cog.py" --port "$COG1_PORT" --token "$COG1_TOKEN"
wait_port "$COG1_PORT" || setup_failed "the fake Cog (cog1) did not start"
COG2_PORT=$(free_port)
COG2_TOKEN=$(head -c 24 /dev/urandom | od -An -tx1 | tr -d ' \n')
services_bg fake-cog2 "$WORK/fake-cog2.log" \
    python3 "$ROOT/tests/fakes/cog.py" --port "$COG2_PORT" --token "$COG2_TOKEN"
wait_port "$COG2_PORT" || setup_failed "the fake Cog (cog2) did not start"

# -- s3rver (npm, tests/lib/npm-deps.sh): the S3 server behind [sink "s3"].
# It checks SigV2 signatures (a wrong secret gets 403), not SigV4 ones, and
# serves unsigned reads, so the tests read objects back with plain GETs.
npm_deps_install || setup_failed "cannot install s3rver with npm"
S3_PORT=$(free_port)
S3_DIR=$WORK/s3rver
S3_BUCKET=darkroom
S3RVER_BIN=$ROOT/node_modules/.bin/s3rver
mkdir -p "$S3_DIR"
services_bg s3rver "$WORK/s3rver.log" \
    node "$S3RVER_BIN" -d "$S3_DIR" -a 127.0.0.1 -p "$S3_PORT" --silent \
    --configure-bucket "$S3_BUCKET"
S3_PID=$SERVICES_LAST_PID
wait_port "$S3_PORT" 30 "$S3_PID" || setup_failed "s3rver did not start (log: $WORK/s3rver.log)"
cat >"$WORK/darkroom.conf" <<EOF
# darkroom configuration for the integration tests (generated).

[server]
plugin_dir = $BUILD/plugins
api_keys = $API_KEY, $API_KEY2
public_url = http://127.0.0.1:$WEB_PORT
max_body = 1M
default_adapter = null
default_renditions = thumb
callback_secret = $CALLBACK_SECRET

[database]
socket = $MARIADB_SOCKET
user = root
name = $DB_NAME
migrations_dir = $ROOT/migrations

[limits]
# Small, so the cap and slow-drip cases end in seconds.
max_output_bytes = 4M
download_timeout = 20s
download_low_speed = 1k
download_low_speed_time = 2s

[preset "thumb"]
width = 256
height = 256
fit = inside
format = webp
quality = 80

[preset "card"]
width = 1280
height = 720
fit = cover
format = webp
quality = 82

[preset "small"]
width = 64
height = 64
fit = inside
format = jpeg
quality = 80

[preset "av"]
width = 128
height = 128
fit = inside
format = avif
quality = 50

[adapter "null"]
plugin = null

[adapter "replicate"]
token = r8_fake
api_base = http://127.0.0.1:$FAKE_PORT/v1
webhook_secret = $REPLICATE_SECRET
webhook_secret_previous = $REPLICATE_SECRET_PREV
# Short, so test_trainings.py sees a training pass its deadline.
training_deadline = 6s

# No webhook_secret: the worker fetches the account's from the fake
# Replicate and keeps it in plugin_kv for the app (test_engine.py).
[adapter "replicate2"]
plugin = replicate
token = r8_fake
api_base = http://127.0.0.1:$FAKE_PORT/v1

[adapter "cog1"]
plugin = cog
url = http://127.0.0.1:$COG1_PORT
webhook_token = $COG1_TOKEN
timeout = 5s
busy_retry = 1s

[adapter "cog2"]
plugin = cog
url = http://127.0.0.1:$COG2_PORT
webhook_token = $COG2_TOKEN
timeout = 5s
busy_retry = 1s

[worker]
processes = 2
wakeup_socket = $WORK/wakeup.sock
lease = 4s
poll_min = 0.5s
poll_max = 2s
retry_base = 0.2s
retry_max = 2s
submit_grace = 2s
shutdown_grace = 5s

[sink "fs"]
root = $MEDIA
base_url = http://127.0.0.1:$WEB_PORT/media

# Not the active sink ([server] sink stays fs): a worker started with
# DARKROOM_SINK=s3 uses it; DARKROOM_S3_SIGNATURE, DARKROOM_S3_SECRET_KEY
# and DARKROOM_S3_ENDPOINT override it for one worker.
[sink "s3"]
plugin = s3
endpoint = http://127.0.0.1:$S3_PORT
bucket = $S3_BUCKET
access_key = S3RVER
secret_key = S3RVER
signature = v4
addressing = path
timeout = 10s
connect_timeout = 2s
retries = 1
EOF

# -- schema
if ! DARKROOM_CONF=$WORK/darkroom.conf "$BUILD/darkroom" migrate </dev/null >"$WORK/migrate.log" 2>&1; then
    cat "$WORK/migrate.log" >&2
    setup_failed "darkroom migrate failed"
fi

# -- web server and app. Outputs of the tests' own fake providers live on
# loopback and plain http, and so do the tests' callback receivers.
export DARKROOM_DOWNLOAD_ALLOW_PRIVATE=1 DARKROOM_DOWNLOAD_ALLOW_HTTP=1 DARKROOM_DOWNLOAD_HOSTS=127.0.0.1
export DARKROOM_CALLBACK_ALLOW_PRIVATE=1
lighttpd_start "$WORK/web" "$WEB_PORT" "$WORK/darkroom.conf" "$BUILD/darkroom.fcgi" \
    || setup_failed "lighttpd did not start"

export DARKROOM_URL=http://127.0.0.1:$WEB_PORT
export DARKROOM_API_KEY=$API_KEY DARKROOM_API_KEY2=$API_KEY2
export DARKROOM_CONF=$WORK/darkroom.conf DARKROOM_BIN=$BUILD/darkroom
export MARIADB_SOCKET DARKROOM_DB=$DB_NAME DARKROOM_DB_CTL=$WORK/dbctl
export DARKROOM_MEDIA=$MEDIA DARKROOM_TEST_DIR=$WORK
export DARKROOM_LIGHTTPD_PID=$LIGHTTPD_PID DARKROOM_LIGHTTPD_ERRLOG=$WORK/web/lighttpd-error.log
export DARKROOM_APP_LOG=$WORK/web/app.log
export DARKROOM_FAKE_REPLICATE=http://127.0.0.1:$FAKE_PORT
export DARKROOM_REPLICATE_SECRET=$REPLICATE_SECRET
export DARKROOM_REPLICATE_SECRET_PREV=$REPLICATE_SECRET_PREV
export DARKROOM_CALLBACK_SECRET=$CALLBACK_SECRET
export DARKROOM_FAKE_COG1=http://127.0.0.1:$COG1_PORT DARKROOM_COG1_TOKEN=$COG1_TOKEN
export DARKROOM_FAKE_COG2=http://127.0.0.1:$COG2_PORT DARKROOM_COG2_TOKEN=$COG2_TOKEN
export DARKROOM_S3_PORT=$S3_PORT DARKROOM_S3_DIR=$S3_DIR DARKROOM_S3_PID=$S3_PID
export DARKROOM_S3_TEST_BUCKET=$S3_BUCKET DARKROOM_S3RVER_BIN=$S3RVER_BIN

# -- tests
export PYTHONDONTWRITEBYTECODE=1
if [ "$#" -gt 0 ]; then
    tests=("$@")
else
    # test_out_of_tree.sh last: it installs into a scratch DESTDIR and runs
    # a job through an out-of-tree plugin with the installed programs.
    tests=("$ROOT"/tests/integration/test_*.py "$ROOT"/tests/chaos/test_*.py "$ROOT/tests/integration/test_out_of_tree.sh")
fi

for t in "${tests[@]}"; do
    [ -f "$t" ] || continue
    name=$(basename "$t" .py)
    name=${name%.sh}
    runner=python3
    case "$t" in *.sh) runner=bash ;; esac
    echo "== $name"
    set +e
    timeout -k 10 "$FILE_TIMEOUT" "$runner" "$t" 2>&1 </dev/null | tee "$WORK/$name.log"
    rc=${PIPESTATUS[0]}
    set -e
    summary=$(grep -E '^[0-9]+ passed, [0-9]+ failed$' "$WORK/$name.log" | tail -n 1 || true)
    if [ -n "$summary" ]; then
        read -r p _ f _ <<<"$summary"
        passed=$((passed + p))
        failed=$((failed + f))
        if [ "$rc" -ne 0 ] && [ "$f" -eq 0 ]; then
            echo "FAIL $name: exited with status $rc"
            failed=$((failed + 1))
        fi
    else
        echo "FAIL $name: ended without a summary line (status $rc)"
        failed=$((failed + 1))
    fi
    # A test that stopped MariaDB and died must not break the next file.
    "$WORK/dbctl" start >/dev/null 2>&1 || true
done

# Stop the app now, so what it reports on its way out (sanitizers) is seen.
lighttpd_stop "$LIGHTTPD_PID"
if grep -E -m 5 'ERROR: [A-Za-z]+Sanitizer|runtime error:' "$DARKROOM_APP_LOG" 2>/dev/null; then
    echo "FAIL the FastCGI app reported errors in $DARKROOM_APP_LOG"
    failed=$((failed + 1))
fi

echo "$passed passed, $failed failed"
[ "$failed" -eq 0 ] || status=1
exit "$status"
