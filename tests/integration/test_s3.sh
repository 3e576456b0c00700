#!/usr/bin/env bash
# tests/integration/test_s3.sh — the `s3` sink against a real S3-compatible
# server (s3rver, from npm), through the real plugin host.
#
# Every case runs $BUILD/tests/s3_tool (tests/plugins/s3_tool.c), which
# loads the config with config_load() and $BUILD/plugins/s3.so with
# plugins_init(), so the plugin's key table, defaults and the
# DARKROOM_S3_* / DARKROOM_CDN_BASE_URL environment overrides are exercised
# as the service uses them. What the server stored is read back with plain
# curl (s3rver serves unsigned requests).
#
# SigV2 goes through libs3 in the companion object s3/sigv2.so, which s3.so
# loads only for signature = v2: the cases near the end start darkroom.fcgi
# and read from /proc/PID/maps which plugins and libraries the app maps
# (its adapters and the active sink only; libs3 only under v2), and take
# the companion away to see the error.
#
# s3rver checks SigV2 signatures (a wrong secret gets 403) but not SigV4
# ones; SigV4 signing is proven by tests/plugins/test_s3.c, which
# recomputes the signature of captured requests.
#
# Prints "ok NAME" or "FAIL NAME: why" per case and ends with
# "N passed, N failed"; exits 1 on any failure.
#
# Knobs: DARKROOM_BUILD_DIR or BUILD (default ./build), DARKROOM_TEST_KEEP=1
# (keep the temporary directory).

set -uo pipefail

ROOT=$(cd "$(dirname "${BASH_SOURCE[0]}")/../.." && pwd)
BUILD=${DARKROOM_BUILD_DIR:-${BUILD:-build}}
case "$BUILD" in /*) ;; *) BUILD=$ROOT/$BUILD ;; esac
TOOL=$BUILD/tests/s3_tool
BUCKET=darkroom-test

# A developer's own settings must not leak into the tests.
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

WORK=$(mktemp -d "${TMPDIR:-/tmp}/darkroom-s3.XXXXXX")
passed=0
failed=0
S3_PID=

# shellcheck disable=SC2317  # called by the EXIT trap
finish() {
    services_cleanup
    if [ "${DARKROOM_TEST_KEEP:-0}" = 1 ] || [ "$failed" -ne 0 ]; then
        echo "--- s3 test files in $WORK" >&2
    else
        rm -rf "$WORK"
    fi
}
trap finish EXIT
trap 'exit 130' INT
trap 'exit 143' TERM

ok() {
    echo "ok   $1"
    passed=$((passed + 1))
}

fail() {
    echo "FAIL $1: $2"
    failed=$((failed + 1))
}

setup_failed() {
    echo "test_s3: $*" >&2
    failed=$((failed + 1))
    echo "$passed passed, $failed failed"
    exit 1
}

[ -x "$TOOL" ] || setup_failed "missing $TOOL (make build/tests/s3_tool)"
[ -f "$BUILD/plugins/s3.so" ] || setup_failed "missing $BUILD/plugins/s3.so"
npm_deps_install || setup_failed "cannot install s3rver with npm"

PORT=$(free_port)
ENDPOINT=http://127.0.0.1:$PORT
mkdir -p "$WORK/s3rver" "$WORK/media"

s3rver_start() {
    services_bg s3rver "$WORK/s3rver.log" \
        node "$ROOT/node_modules/.bin/s3rver" -d "$WORK/s3rver" \
        -a 127.0.0.1 -p "$PORT" --silent --configure-bucket "$BUCKET"
    S3_PID=$SERVICES_LAST_PID
    wait_port "$PORT" 30 "$S3_PID"
}

s3rver_stop() {
    kill -TERM "$S3_PID" 2>/dev/null
    wait "$S3_PID" 2>/dev/null
    local i=0
    while ! port_free "$PORT" && [ "$i" -lt 50 ]; do
        sleep 0.1
        i=$((i + 1))
    done
}

s3rver_start || setup_failed "s3rver did not start (log: $WORK/s3rver.log)"

# Only what the tests need: no adapter runs, nothing touches a database.
cat >"$WORK/darkroom.conf" <<EOF
# darkroom configuration for tests/integration/test_s3.sh (generated).
[server]
plugin_dir = $BUILD/plugins
sink = s3
default_adapter = null
default_renditions =

[adapter "null"]
plugin = null

[sink "s3"]
endpoint = $ENDPOINT
bucket = $BUCKET
access_key = S3RVER
secret_key = S3RVER
prefix = media
retries = 2
timeout = 10s
connect_timeout = 2s

# Not the active sink: loaded only with DARKROOM_SINK=fs.
[sink "fs"]
root = $WORK/media
base_url = http://127.0.0.1/media
EOF
export DARKROOM_CONF=$WORK/darkroom.conf

# tool ARGS... — run s3_tool; its stdout in $WORK/out, stderr in $WORK/err,
# status in $rc.
tool() {
    "$TOOL" "$@" >"$WORK/out" 2>"$WORK/err" </dev/null
    rc=$?
}

# The value of response header $2 (case-insensitive) of a HEAD of URL $1.
head_header() {
    curl -sS -I "$1" | tr -d '\r' | awk -v h="$2" '
        { split($0, a, ": "); if (tolower(a[1]) == tolower(h)) { sub(/^[^:]*: /, ""); print; exit } }'
}

# expect_error NAME CODE RETRYABLE — the last tool run failed with them.
expect_error() {
    if [ "$rc" -eq 1 ] && grep -q "code=$2 retryable=$3:" "$WORK/err"; then
        ok "$1"
    else
        fail "$1" "rc=$rc, wanted code=$2 retryable=$3: $(head -c 400 "$WORK/err")"
    fi
}

OBJ=$ENDPOINT/$BUCKET/media

head -c 100000 /dev/urandom >"$WORK/small.bin"
head -c $((2 * 1024 * 1024 + 17)) /dev/urandom >"$WORK/big.bin"
printf 'hello from darkroom\n' >"$WORK/hello.txt"

# -- SigV4 (the default) ------------------------------------------------
tool put v4/hello.txt "$WORK/hello.txt" -t "text/plain; charset=utf-8" \
    -C "public, max-age=31536000, immutable" -m user-id=42 -m job=j_123
if [ "$rc" -eq 0 ]; then ok "v4 put from a file"; else fail "v4 put from a file" "$(cat "$WORK/err")"; fi

ct=$(head_header "$OBJ/v4/hello.txt" content-type)
cc=$(head_header "$OBJ/v4/hello.txt" cache-control)
if [ "$ct" = "text/plain; charset=utf-8" ] && [ "$cc" = "public, max-age=31536000, immutable" ]; then
    ok "v4 Content-Type and Cache-Control stored"
else
    fail "v4 Content-Type and Cache-Control stored" "got '$ct' and '$cc'"
fi

m1=$(head_header "$OBJ/v4/hello.txt" x-amz-meta-user-id)
m2=$(head_header "$OBJ/v4/hello.txt" x-amz-meta-job)
if [ "$m1" = 42 ] && [ "$m2" = j_123 ]; then
    ok "v4 user metadata stored"
else
    fail "v4 user metadata stored" "got '$m1' and '$m2'"
fi

tool get v4/hello.txt "$WORK/got.txt"
if [ "$rc" -eq 0 ] && cmp -s "$WORK/hello.txt" "$WORK/got.txt"; then
    ok "v4 get returns the bytes"
else
    fail "v4 get returns the bytes" "rc=$rc $(cat "$WORK/err")"
fi

tool stat v4/hello.txt
if [ "$rc" -eq 0 ] && [ "$(cat "$WORK/out")" = 20 ]; then
    ok "v4 stat gives the size"
else
    fail "v4 stat gives the size" "rc=$rc out=$(cat "$WORK/out") $(cat "$WORK/err")"
fi

tool put v4/big.bin "$WORK/big.bin" -M -t application/octet-stream
tool_rc=$rc
tool get v4/big.bin "$WORK/got.bin"
if [ "$tool_rc" -eq 0 ] && [ "$rc" -eq 0 ] && cmp -s "$WORK/big.bin" "$WORK/got.bin"; then
    ok "v4 2 MiB put from memory and get"
else
    fail "v4 2 MiB put from memory and get" "rc=$tool_rc/$rc $(cat "$WORK/err")"
fi

tool put v4/small.bin "$WORK/small.bin"
curl -sS -o "$WORK/public.bin" "$OBJ/v4/small.bin"
tool url v4/small.bin
url=$(cat "$WORK/out")
if [ "$url" = "$OBJ/v4/small.bin" ] && cmp -s "$WORK/small.bin" "$WORK/public.bin"; then
    ok "v4 public URL serves the object"
else
    fail "v4 public URL serves the object" "url=$url"
fi

DARKROOM_CDN_BASE_URL=https://cdn.example.com/ tool url v4/small.bin
if [ "$(cat "$WORK/out")" = "https://cdn.example.com/media/v4/small.bin" ]; then
    ok "DARKROOM_CDN_BASE_URL overrides the public URL"
else
    fail "DARKROOM_CDN_BASE_URL overrides the public URL" "got $(cat "$WORK/out")"
fi

tool get v4/small.bin "$WORK/x" -n 1000
expect_error "v4 get over max_bytes is too_large" too_large 0

tool rm v4/small.bin
rm_rc=$rc
tool stat v4/small.bin
expect_error "v4 stat after rm is not_found" not_found 0
[ "$rm_rc" -eq 0 ] || fail "v4 rm" "$(cat "$WORK/err")"
tool get v4/small.bin "$WORK/x"
expect_error "v4 get after rm is not_found" not_found 0
tool rm v4/small.bin
if [ "$rc" -eq 0 ]; then ok "v4 rm of an absent object succeeds"; else fail "v4 rm of an absent object succeeds" "$(cat "$WORK/err")"; fi

DARKROOM_S3_BUCKET=no-such-bucket tool put v4/hello.txt "$WORK/hello.txt"
expect_error "v4 put to a missing bucket is sink_no_bucket" sink_no_bucket 0
DARKROOM_S3_BUCKET=no-such-bucket tool stat v4/hello.txt
expect_error "v4 stat in a missing bucket is sink_no_bucket" sink_no_bucket 0

# -- SigV2 (libs3, in s3/sigv2.so), chosen through the environment ---------
export DARKROOM_S3_SIGNATURE=v2
tool put v2/hello.txt "$WORK/hello.txt" -t text/plain -C "max-age=60" -m user-id=7
put_rc=$rc
tool get v2/hello.txt "$WORK/got2.txt"
if [ "$put_rc" -eq 0 ] && [ "$rc" -eq 0 ] && cmp -s "$WORK/hello.txt" "$WORK/got2.txt"; then
    ok "v2 put and get round trip"
else
    fail "v2 put and get round trip" "rc=$put_rc/$rc $(cat "$WORK/err")"
fi

ct=$(head_header "$OBJ/v2/hello.txt" content-type)
cc=$(head_header "$OBJ/v2/hello.txt" cache-control)
m1=$(head_header "$OBJ/v2/hello.txt" x-amz-meta-user-id)
ex=$(head_header "$OBJ/v2/hello.txt" expires)
if [ "$ct" = text/plain ] && [ "$cc" = "max-age=60" ] && [ "$m1" = 7 ] && [ -z "$ex" ]; then
    ok "v2 headers stored, no Expires"
else
    fail "v2 headers stored, no Expires" "got '$ct' '$cc' '$m1' expires='$ex'"
fi

tool put v2/big.bin "$WORK/big.bin"
put_rc=$rc
tool stat v2/big.bin
if [ "$put_rc" -eq 0 ] && [ "$(cat "$WORK/out")" = $((2 * 1024 * 1024 + 17)) ]; then
    ok "v2 2 MiB put streamed from the file, stat"
else
    fail "v2 2 MiB put streamed from the file, stat" "rc=$put_rc out=$(cat "$WORK/out") $(cat "$WORK/err")"
fi

DARKROOM_S3_SECRET_KEY=wrong-secret tool put v2/bad.txt "$WORK/hello.txt"
expect_error "v2 with a wrong secret is sink_auth" sink_auth 0
if grep -q wrong-secret "$WORK/err"; then
    fail "v2 auth error hides the secret" "$(cat "$WORK/err")"
else
    ok "v2 auth error hides the secret"
fi

DARKROOM_S3_BUCKET=no-such-bucket tool get v2/hello.txt "$WORK/x"
expect_error "v2 get from a missing bucket is sink_no_bucket" sink_no_bucket 0

tool rm v2/hello.txt
rm_rc=$rc
tool stat v2/hello.txt
if [ "$rm_rc" -eq 0 ]; then
    expect_error "v2 rm, then stat is not_found" not_found 0
else
    fail "v2 rm, then stat is not_found" "$(cat "$WORK/err")"
fi
unset DARKROOM_S3_SIGNATURE

# -- what a process maps ---------------------------------------------------
# app_maps — start darkroom.fcgi (the configuration and environment of the
# moment) on a free port, wait for its start line, keep its /proc/PID/maps
# in $WORK/maps and its log in $WORK/fcgi.log, stop it.
app_maps() {
    local port pid i
    port=$(free_port)
    : >"$WORK/fcgi.log"
    : >"$WORK/maps"
    services_bg darkroom.fcgi "$WORK/fcgi.log" "$BUILD/darkroom.fcgi" --listen "127.0.0.1:$port"
    pid=$SERVICES_LAST_PID
    for ((i = 0; i < 100; i++)); do
        grep -q "event=fcgi.start" "$WORK/fcgi.log" && break
        kill -0 "$pid" 2>/dev/null || break
        sleep 0.1
    done
    grep -q "event=fcgi.start" "$WORK/fcgi.log" && cp "/proc/$pid/maps" "$WORK/maps"
    kill -TERM "$pid" 2>/dev/null
    wait "$pid" 2>/dev/null
}

# maps_has ERE — a file the kept maps name matches ERE.
maps_has() {
    MAPS_RE=$1 awk '$6 ~ ENVIRON["MAPS_RE"] { found = 1 } END { exit !found }' "$WORK/maps"
}

# The plugins and libraries of the kept maps, and the log, for a message.
maps_shown() {
    printf '%s; log: %s' "$(awk '$6 ~ /plugins|libs3/ { print $6 }' "$WORK/maps" | sort -u | tr '\n' ' ')" \
        "$(head -c 300 "$WORK/fcgi.log")"
}

app_maps
if maps_has '/plugins/s3\.so$' && ! maps_has 'libs3\.so|/s3/sigv2\.so$'; then
    ok "app with sink s3 (v4) maps s3.so, not libs3"
else
    fail "app with sink s3 (v4) maps s3.so, not libs3" "$(maps_shown)"
fi

DARKROOM_S3_SIGNATURE=v2 app_maps
if maps_has '/plugins/s3/sigv2\.so$' && maps_has 'libs3\.so'; then
    ok "app with sink s3 (v2) maps the SigV2 transport and libs3"
else
    fail "app with sink s3 (v2) maps the SigV2 transport and libs3" "$(maps_shown)"
fi

DARKROOM_SINK=fs app_maps
if maps_has '/plugins/fs\.so$' && maps_has '/plugins/null\.so$' && ! maps_has '/plugins/s3\.so$'; then
    ok "app with sink fs maps its adapter and fs.so, not the inactive s3.so"
else
    fail "app with sink fs maps its adapter and fs.so, not the inactive s3.so" "$(maps_shown)"
fi

# A plugin folder with s3.so but no s3/sigv2.so: v4 works, v2 says what is
# missing; a file there that is not the transport is refused.
mkdir -p "$WORK/plugins"
cp "$BUILD/plugins/s3.so" "$BUILD/plugins/null.so" "$WORK/plugins/"
sed "s|^plugin_dir = .*|plugin_dir = $WORK/plugins|" "$WORK/darkroom.conf" >"$WORK/nov2.conf"
DARKROOM_CONF=$WORK/nov2.conf tool stat v4/hello.txt
if [ "$rc" -eq 0 ]; then
    ok "v4 needs no SigV2 transport"
else
    fail "v4 needs no SigV2 transport" "rc=$rc $(cat "$WORK/err")"
fi
DARKROOM_CONF=$WORK/nov2.conf DARKROOM_S3_SIGNATURE=v2 tool stat v4/hello.txt
if [ "$rc" -ne 0 ] && grep -qF "code=sink_init: " "$WORK/err" &&
    grep -qF "signature = v2 needs the SigV2 transport $WORK/plugins/s3/sigv2.so, which does not exist" "$WORK/err"; then
    ok "v2 without s3/sigv2.so names the missing file"
else
    fail "v2 without s3/sigv2.so names the missing file" "rc=$rc $(head -c 400 "$WORK/err")"
fi
mkdir -p "$WORK/plugins/s3"
cp "$BUILD/plugins/null.so" "$WORK/plugins/s3/sigv2.so"
DARKROOM_CONF=$WORK/nov2.conf DARKROOM_S3_SIGNATURE=v2 tool stat v4/hello.txt
if [ "$rc" -ne 0 ] && grep -qF "$WORK/plugins/s3/sigv2.so does not export s3_sigv2_entry" "$WORK/err"; then
    ok "v2 refuses an s3/sigv2.so that is not the transport"
else
    fail "v2 refuses an s3/sigv2.so that is not the transport" "rc=$rc $(head -c 400 "$WORK/err")"
fi

# -- the server goes away and comes back ----------------------------------
s3rver_stop
start=$(date +%s%N)
tool put v4/down.txt "$WORK/hello.txt"
elapsed_ms=$(( ($(date +%s%N) - start) / 1000000 ))
expect_error "server down: v4 put is sink_unavailable, retryable" sink_unavailable 1
if [ "$elapsed_ms" -lt 5000 ]; then
    ok "server down: v4 gives up quickly (${elapsed_ms} ms, 2 retries)"
else
    fail "server down: v4 gives up quickly" "${elapsed_ms} ms"
fi
DARKROOM_S3_SIGNATURE=v2 tool get v4/hello.txt "$WORK/x"
expect_error "server down: v2 get is sink_unavailable, retryable" sink_unavailable 1

s3rver_start || setup_failed "s3rver did not restart (log: $WORK/s3rver.log)"
tool put v4/down.txt "$WORK/hello.txt"
put_rc=$rc
tool get v4/hello.txt "$WORK/got3.txt"
if [ "$put_rc" -eq 0 ] && [ "$rc" -eq 0 ] && cmp -s "$WORK/hello.txt" "$WORK/got3.txt"; then
    ok "server back: put and get work again"
else
    fail "server back: put and get work again" "rc=$put_rc/$rc $(cat "$WORK/err")"
fi

echo "$passed passed, $failed failed"
[ "$failed" -eq 0 ]
