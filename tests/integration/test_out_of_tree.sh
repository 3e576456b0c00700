#!/usr/bin/env bash
# tests/integration/test_out_of_tree.sh — a plugin built outside the tree.
#
# `make install DESTDIR=$tmp PREFIX=/usr`, then build the example adapter
# tests/plugins/example/hello.c with nothing but
#   cc -shared -fPIC -fvisibility=hidden $(pkg-config --cflags darkroom-plugin)
# against the installed header (PKG_CONFIG_PATH and PKG_CONFIG_SYSROOT_DIR
# point into the DESTDIR), put hello.so into the installed plugin folder,
# and run a job through it with the installed darkroom.fcgi (behind its own
# lighttpd) and the installed `darkroom worker`, on a copy of the
# integration config that adds [adapter "hello"]. The job must succeed.
#
# Run by tests/run-integration.sh after the Python tests, with its
# environment (MariaDB, DARKROOM_CONF, DARKROOM_API_KEY, DARKROOM_TEST_DIR).
# Ends with "N passed, N failed".

set -uo pipefail

ROOT=$(cd "$(dirname "${BASH_SOURCE[0]}")/../.." && pwd)
# The build under test: the one DARKROOM_BIN (set by the runner) is in.
if [ -n "${DARKROOM_BIN:-}" ]; then
    BUILD=$(cd "$(dirname "$DARKROOM_BIN")" && pwd)
else
    BUILD=${DARKROOM_BUILD_DIR:-${BUILD:-$ROOT/build}}
    case "$BUILD" in /*) ;; *) BUILD=$ROOT/$BUILD ;; esac
fi
# shellcheck source=tests/lib/services.sh
. "$ROOT/tests/lib/services.sh"

passed=0
failed=0
TMP=$(mktemp -d "${DARKROOM_TEST_DIR:-${TMPDIR:-/tmp}}/out-of-tree.XXXXXX")
DEST=$TMP/dest
WORKER_PID=

finish() {
    set +e
    if [ -n "$WORKER_PID" ]; then
        kill -TERM "$WORKER_PID" 2>/dev/null
        for _ in $(seq 1 100); do kill -0 "$WORKER_PID" 2>/dev/null || break; sleep 0.1; done
        kill -KILL -- "-$WORKER_PID" 2>/dev/null
    fi
    services_cleanup
}
trap finish EXIT

ok() { echo "ok   $1"; passed=$((passed + 1)); }
fail() { echo "FAIL $1"; failed=$((failed + 1)); }
# Stop here: the later steps need this one.
fatal() { fail "$1"; echo "$passed passed, $failed failed"; exit 1; }

# -- 1. install
if make -C "$ROOT" --no-print-directory install BUILD="$BUILD" DESTDIR="$DEST" PREFIX=/usr \
        >"$TMP/install.log" 2>&1; then
    ok "make install DESTDIR=... PREFIX=/usr"
else
    tail -n 20 "$TMP/install.log"
    fatal "make install failed (log: $TMP/install.log)"
fi
for f in usr/include/darkroom-plugin.h usr/lib/pkgconfig/darkroom-plugin.pc \
         usr/bin/darkroom usr/bin/darkroom.fcgi usr/lib/darkroom/plugins; do
    [ -e "$DEST/$f" ] || fatal "make install did not install /$f"
done
ok "the header, darkroom-plugin.pc, the programs and the plugin folder are installed"

# -- 2. build hello.so with only pkg-config --cflags darkroom-plugin
export PKG_CONFIG_PATH=$DEST/usr/lib/pkgconfig PKG_CONFIG_SYSROOT_DIR=$DEST
CFLAGS_PC=$(pkg-config --cflags darkroom-plugin) || fatal "pkg-config --cflags darkroom-plugin failed"
case "$CFLAGS_PC" in
    *"$DEST/usr/include"*) ok "pkg-config --cflags darkroom-plugin: $CFLAGS_PC" ;;
    *) fatal "pkg-config --cflags darkroom-plugin does not point at the installed header: '$CFLAGS_PC'" ;;
esac
mkdir -p "$TMP/src"
cp "$ROOT/tests/plugins/example/hello.c" "$TMP/src/"
# shellcheck disable=SC2086  # the flags are words
if (cd "$TMP/src" && cc -shared -fPIC -fvisibility=hidden $CFLAGS_PC -o hello.so hello.c) \
        >"$TMP/cc.log" 2>&1; then
    ok "hello.so builds outside the tree"
else
    cat "$TMP/cc.log"
    fatal "hello.so does not build outside the tree"
fi
syms=$(nm -D --defined-only "$TMP/src/hello.so" | awk '{ print $3 }')
if [ "$syms" = dr_plugin_entry ]; then
    ok "hello.so exports only dr_plugin_entry"
else
    fail "hello.so exports: $syms"
fi
PLUGINS=$DEST/usr/lib/darkroom/plugins
cp "$TMP/src/hello.so" "$PLUGINS/"

# -- 3. a config copy for the installed programs
CONF=$TMP/darkroom.conf
WEB_PORT=$(free_port)
sed -e "s|^plugin_dir = .*|plugin_dir = $PLUGINS|" \
    -e "s|^migrations_dir = .*|migrations_dir = $DEST/usr/share/darkroom/migrations|" \
    -e "s|^public_url = .*|public_url = http://127.0.0.1:$WEB_PORT|" \
    -e "s|^wakeup_socket = .*|wakeup_socket = $TMP/wakeup.sock|" \
    "$DARKROOM_CONF" >"$CONF"
printf '\n[adapter "hello"]\nplugin = hello\ngreeting = Hello out of tree\n' >>"$CONF"
if DARKROOM_CONF=$CONF "$DEST/usr/bin/darkroom" config check >"$TMP/check.log" 2>&1; then
    ok "the installed darkroom accepts [adapter \"hello\"]"
else
    cat "$TMP/check.log"
    fail "darkroom config check refuses the config with hello"
fi

# -- 4. run a job through it with the installed programs
lighttpd_start "$TMP/web" "$WEB_PORT" "$CONF" "$DEST/usr/bin/darkroom.fcgi" \
    || fatal "lighttpd with the installed darkroom.fcgi did not start"
DARKROOM_CONF=$CONF setsid "$DEST/usr/bin/darkroom" worker --processes 1 \
    >"$TMP/worker.log" 2>&1 </dev/null &
WORKER_PID=$!

URL=http://127.0.0.1:$WEB_PORT
answer=$(curl -sS -H "Authorization: Bearer $DARKROOM_API_KEY" -H 'Content-Type: application/json' \
    -d '{"adapter": "hello", "model": "demo/hello", "input": {"prompt": "hi"}}' "$URL/v1/jobs")
jid=$(printf '%s' "$answer" | python3 -c 'import json, sys; print(json.load(sys.stdin).get("id", ""))' 2>/dev/null)
[ -n "$jid" ] || fatal "POST /v1/jobs with adapter hello: $answer"
ok "job $jid created for adapter hello"

status=
for _ in $(seq 1 120); do
    doc=$(curl -sS -H "Authorization: Bearer $DARKROOM_API_KEY" "$URL/v1/jobs/$jid")
    status=$(printf '%s' "$doc" | python3 -c 'import json, sys; print(json.load(sys.stdin)["status"])' 2>/dev/null)
    case "$status" in succeeded|failed|canceled) break ;; esac
    sleep 0.25
done
if [ "$status" = succeeded ]; then
    ok "the job through hello.so succeeded"
else
    echo "$doc"
    tail -n 20 "$TMP/worker.log"
    fail "the job through hello.so ended '$status'"
fi
if printf '%s' "$doc" | grep -q 'Hello out of tree from demo/hello'; then
    ok "the job shows hello's text output"
else
    fail "the text output is missing: $doc"
fi

echo "$passed passed, $failed failed"
[ "$failed" -eq 0 ]
