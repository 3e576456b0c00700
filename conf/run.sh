#!/usr/bin/env bash
# conf/run.sh — what `make run` runs once the build is done: the whole
# service on this machine, in the foreground, with its state under ./var.
#
#   1. a private MariaDB: data in var/mysql, socket var/mysqld.sock (never
#      the system's server or socket), TCP on a free loopback port;
#   2. the API key: var/api_key (made once, 0600), plus $DARKROOM_API_KEY
#      when set (both are accepted; the variable's is the one printed);
#   3. `darkroom migrate`;
#   4. `darkroom worker` in the background, when the build has it;
#   5. lighttpd (conf/lighttpd.conf) on 127.0.0.1:$DARKROOM_PORT (8080)
#      with darkroom.fcgi, and /media/ served from var/media;
#   6. prints the API key, the dashboard URL and a curl line creating a job,
#      then waits. Ctrl-C (SIGINT) or SIGTERM stops everything it started
#      and exits 0; any of the services dying stops the rest and exits 1.
#
# One make run per state directory: a second one in the same checkout
# would share the first one's MariaDB and FastCGI socket (and shut them
# down when it stops), so it is refused while anything of the first one
# runs (var/run.lock, held by every process it starts).
#
# Environment: BUILD (build directory, default ./build), DARKROOM_PORT, DARKROOM_CONF (default conf/darkroom.conf),
# DARKROOM_API_KEY, DARKROOM_PUBLIC_URL, and whatever the service itself
# reads (REPLICATE_API_TOKEN, DARKROOM_SINK, …): the app and the worker
# inherit this environment. DARKROOM_DEMO_MODEL sets the model of the
# printed curl line. DARKROOM_VAR (default ./var) moves the state directory
# (tests); the config file must then point at it too.
#
# Where jobs go: with REPLICATE_API_TOKEN set, to Replicate
# (DARKROOM_DEFAULT_ADAPTER=replicate unless already set); without it, to
# the config's default adapter, `exec` running conf/offline-model.sh, so
# the whole pipeline works offline.
#
# Logs: var/app.log (the FastCGI app), var/worker.log, var/mariadb.log,
# var/lighttpd-error.log, var/lighttpd-access.log.

set -euo pipefail

ROOT=$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)
cd "$ROOT"
BUILD=${BUILD:-build}
case "$BUILD" in /*) ;; *) BUILD=$ROOT/$BUILD ;; esac
VAR=${DARKROOM_VAR:-$ROOT/var}
case "$VAR" in /*) ;; *) VAR=$ROOT/$VAR ;; esac
if [ -n "${REPLICATE_API_TOKEN:-}" ]; then
    export DARKROOM_DEFAULT_ADAPTER=${DARKROOM_DEFAULT_ADAPTER:-replicate}
fi

export DARKROOM_PORT=${DARKROOM_PORT:-8080}
export DARKROOM_CONF=${DARKROOM_CONF:-$ROOT/conf/darkroom.conf}
export DARKROOM_PUBLIC_URL=${DARKROOM_PUBLIC_URL:-http://127.0.0.1:$DARKROOM_PORT}
# Stored media is served under /media/ only from the fs sink's folder; an
# S3 sink's objects keep the bucket's own URL unless a CDN is named.
SINK=${DARKROOM_SINK:-fs}
if [ "$SINK" = fs ]; then
    export DARKROOM_CDN_BASE_URL=${DARKROOM_CDN_BASE_URL:-$DARKROOM_PUBLIC_URL/media}
fi
case "$DARKROOM_CONF" in
    /*) ;;
    *) DARKROOM_CONF=$ROOT/$DARKROOM_CONF ;;
esac

say() {
    printf 'run: %s\n' "$*" >&2
}

die() {
    say "$*"
    exit 1
}

for f in "$BUILD/darkroom" "$BUILD/darkroom.fcgi"; do
    [ -x "$f" ] || die "missing $f: build first (make run builds)"
done
[ -f "$DARKROOM_CONF" ] || die "no config file at $DARKROOM_CONF"
case "$DARKROOM_PORT" in
    ''|*[!0-9]*) die "DARKROOM_PORT is not a port number: $DARKROOM_PORT" ;;
esac

# shellcheck source=tests/lib/services.sh
. "$ROOT/tests/lib/services.sh"

mkdir -p "$VAR/media"
# var/ holds only local state: keep it out of git whatever the checkout ignores.
[ -e "$VAR/.gitignore" ] || printf '*\n' >"$VAR/.gitignore"

# The lock: fd 9 stays open in every process started from here on, so it
# is held until the last of them has stopped, even if this script is
# killed.
exec 9>>"$VAR/run.lock"
if ! flock -n 9; then
    owner=$(cat "$VAR/run.pid" 2>/dev/null || true)
    if [ -n "$owner" ] && kill -0 "$owner" 2>/dev/null; then
        die "another make run (pid $owner) is using $VAR; stop it first (Ctrl-C), or give this one its own DARKROOM_VAR and a config pointing there"
    fi
    holders=""
    for fd in /proc/[0-9]*/fd/*; do
        if [ "$(readlink "$fd" 2>/dev/null)" = "$VAR/run.lock" ]; then
            pid=${fd#/proc/}
            pid=${pid%%/*}
            [ "$pid" = $$ ] || case " $holders " in *" $pid "*) ;; *) holders="$holders $pid" ;; esac
        fi
    done
    die "processes of an earlier make run still use $VAR (pids:${holders:- unknown}); stop them first"
fi
echo $$ >"$VAR/run.pid"

if ! port_free "$DARKROOM_PORT"; then
    die "127.0.0.1:$DARKROOM_PORT is in use; set DARKROOM_PORT"
fi

SLEEP_PID=""
# A requested stop (Ctrl-C, SIGTERM) is a clean end: exit 0, so make
# reports no error.
stopping() {
    say "stopping…"
    [ -n "$SLEEP_PID" ] && kill "$SLEEP_PID" 2>/dev/null
    exit 0
}
PARENT_PID=$PPID
trap services_cleanup EXIT
trap stopping INT TERM

# -- database
mariadb_start "$VAR" "$VAR/mysql" || die "MariaDB did not start (see var/mariadb.log)"

# -- API keys: var/api_key (the config's api_key_file), made once; the
# service adds DARKROOM_API_KEY to it when set, and that one is printed.
if [ ! -s "$VAR/api_key" ]; then
    (
        umask 077
        python3 -c 'import secrets; print("drk_" + secrets.token_hex(24))' >"$VAR/api_key.tmp"
    )
    mv "$VAR/api_key.tmp" "$VAR/api_key"
fi
chmod 0600 "$VAR/api_key"
if [ -n "${DARKROOM_API_KEY:-}" ]; then
    export DARKROOM_API_KEY
    KEY=$DARKROOM_API_KEY
else
    KEY=$(cat "$VAR/api_key")
fi

# -- schema
if ! "$BUILD/darkroom" migrate </dev/null >"$VAR/migrate.log" 2>&1; then
    cat "$VAR/migrate.log" >&2
    die "darkroom migrate failed"
fi

# -- worker
WORKER_PID=""
if "$BUILD/darkroom" worker --help </dev/null >/dev/null 2>&1; then
    services_bg worker "$VAR/worker.log" "$BUILD/darkroom" worker
    WORKER_PID=$SERVICES_LAST_PID
else
    say "this build has no 'darkroom worker': jobs will stay queued"
fi

# -- web server and app
lighttpd_start "$VAR" "$DARKROOM_PORT" "$DARKROOM_CONF" "$BUILD/darkroom.fcgi" \
    || die "lighttpd did not start (see var/lighttpd-error.log)"

URL=http://127.0.0.1:$DARKROOM_PORT
if [ "$SINK" = fs ]; then
    MEDIA="$URL/media/  (files in $VAR/media)"
else
    MEDIA="in the '$SINK' sink${DARKROOM_S3_BUCKET:+ (bucket $DARKROOM_S3_BUCKET)}${DARKROOM_CDN_BASE_URL:+, served from $DARKROOM_CDN_BASE_URL}"
fi
if [ -z "$WORKER_PID" ]; then
    mode="the 'null' adapter; this version has no worker, so jobs stay queued"
elif [ -n "${REPLICATE_API_TOKEN:-}" ]; then
    mode="Replicate"
    MODEL=${DARKROOM_DEMO_MODEL:-black-forest-labs/flux-schnell}
else
    mode="offline (local generator: the exec adapter running conf/offline-model.sh)"
    MODEL=${DARKROOM_DEMO_MODEL:-darkroom/offline}
fi
MODEL=${MODEL:-${DARKROOM_DEMO_MODEL:-black-forest-labs/flux-schnell}}

cat <<EOF

darkroom is running — jobs go to: $mode

  API key:    $KEY
  dashboard:  $URL/
  health:     $URL/healthz
  media:      $MEDIA
  logs:       $VAR/app.log, worker.log, lighttpd-error.log, mariadb.log
  database:   mariadb --no-defaults --socket=$MARIADB_SOCKET -uroot

Create a job:

  curl -sS -X POST $URL/v1/jobs \\
    -H 'Authorization: Bearer $KEY' \\
    -H 'Content-Type: application/json' \\
    -d '{"model": "$MODEL", "input": {"prompt": "a lighthouse at dawn", "seed": 42, "width": 768, "height": 512}}'

Press Ctrl-C to stop.
EOF

# -- foreground: wait for a signal, or for a service to die.
MARIADB_PID=$(cat "$VAR/mariadb.pid" 2>/dev/null || true)
while :; do
    # `make run` killed by SIGTERM does not pass the signal on: when our
    # parent is gone, stop too.
    if ! kill -0 "$PARENT_PID" 2>/dev/null; then
        stopping
    fi
    for entry in "lighttpd:$LIGHTTPD_PID" "worker:$WORKER_PID" "mariadb:$MARIADB_PID"; do
        name=${entry%%:*}
        pid=${entry#*:}
        if [ -n "$pid" ] && ! kill -0 "$pid" 2>/dev/null; then
            say "$name (pid $pid) stopped unexpectedly; stopping the rest"
            exit 1
        fi
    done
    sleep 1 &
    SLEEP_PID=$!
    wait "$SLEEP_PID" || true
    SLEEP_PID=""
done
