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
        DARKROOM_*|REPLICATE_*) unset "$var" ;;
    esac
done < <(compgen -e)

# shellcheck source=tests/lib/services.sh
. "$ROOT/tests/lib/services.sh"

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

[preset "thumb"]
width = 256
height = 256
fit = inside
format = webp
quality = 80

[adapter "null"]
plugin = null

[adapter "replicate"]
token = r8_fake
api_base = http://127.0.0.1:$FAKE_PORT/v1
webhook_secret = $REPLICATE_SECRET
webhook_secret_previous = $REPLICATE_SECRET_PREV

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
EOF

# -- schema
if ! DARKROOM_CONF=$WORK/darkroom.conf "$BUILD/darkroom" migrate </dev/null >"$WORK/migrate.log" 2>&1; then
    cat "$WORK/migrate.log" >&2
    setup_failed "darkroom migrate failed"
fi

# -- web server and app. Outputs of the tests' own fake providers live on
# loopback and plain http.
export DARKROOM_DOWNLOAD_ALLOW_PRIVATE=1 DARKROOM_DOWNLOAD_ALLOW_HTTP=1 DARKROOM_DOWNLOAD_HOSTS=127.0.0.1
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

# -- tests
export PYTHONDONTWRITEBYTECODE=1
if [ "$#" -gt 0 ]; then
    tests=("$@")
else
    tests=("$ROOT"/tests/integration/test_*.py)
fi

for t in "${tests[@]}"; do
    [ -f "$t" ] || continue
    name=$(basename "$t" .py)
    echo "== $name"
    set +e
    timeout -k 10 "$FILE_TIMEOUT" python3 "$t" 2>&1 </dev/null | tee "$WORK/$name.log"
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
