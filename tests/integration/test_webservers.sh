#!/usr/bin/env bash
# tests/integration/test_webservers.sh — the API and webhook smoke suite
# (tests/integration/smoke.py) through each web server setup of conf/:
#
#   lighttpd           conf/lighttpd.conf, lighttpd spawns darkroom.fcgi
#   lighttpd-external  conf/lighttpd-external.conf, spawn-fcgi -s SOCKET
#   apache-proxy-fcgi  conf/apache-proxy-fcgi.conf, darkroom.fcgi --listen SOCKET
#   apache-fcgid       conf/apache-fcgid.conf, mod_fcgid spawns the app
#   nginx              conf/nginx.conf (envsubst), spawn-fcgi -s SOCKET -M 0660
#
# One private MariaDB and one darkroom.conf serve them all; each setup
# gets a free loopback port and is stopped before the next starts. After
# the smoke suite, the app is taken away (its processes stopped, its
# socket or program gone) and tests/integration/smoke_down.py checks what
# the server answers for it. Prints "N passed, N failed" per setup and
# run, and the sum as the last line; a setup that does not come up counts
# as one failure.
#
#   tests/integration/test_webservers.sh [SETUP...]
#
# Started as root (CI), Apache's and nginx's workers run as www-data, and
# so does the app under mod_fcgid: the database user has a password (root
# logs in by unix_socket only) and the state directory is world-readable.
# Knobs: DARKROOM_BUILD_DIR or BUILD; DARKROOM_TEST_KEEP=1 keeps the
# temporary directory.

set -euo pipefail

ROOT=$(cd "$(dirname "${BASH_SOURCE[0]}")/../.." && pwd)
BUILD=${DARKROOM_BUILD_DIR:-${BUILD:-build}}
case "$BUILD" in /*) ;; *) BUILD=$ROOT/$BUILD ;; esac
KEEP=${DARKROOM_TEST_KEEP:-0}

while IFS= read -r var; do
    case "$var" in DARKROOM_TEST_RUN) ;; DARKROOM_*|REPLICATE_*) unset "$var" ;; esac
done < <(compgen -e)

# shellcheck source=tests/lib/services.sh
. "$ROOT/tests/lib/services.sh"

SETUPS=(lighttpd lighttpd-external apache-proxy-fcgi apache-fcgid nginx)
[ "$#" -gt 0 ] && SETUPS=("$@")

WORK=$(mktemp -d "${TMPDIR:-/tmp}/darkroom-ws.XXXXXX")
chmod 0755 "$WORK"
passed=0
failed=0

# shellcheck disable=SC2317  # called by the EXIT trap
finish() {
    local rc=$?
    set +e
    services_cleanup
    if [ "$failed" -ne 0 ] || [ "$rc" -ne 0 ]; then
        rm -rf "$WORK/db/data"
        echo "--- web server test logs in $WORK" >&2
    elif [ "$KEEP" != 1 ]; then
        rm -rf "$WORK"
    fi
}
trap finish EXIT
trap 'exit 130' INT
trap 'exit 143' TERM

fail_setup() {
    echo "FAIL $*"
    failed=$((failed + 1))
}

have() { command -v "$1" >/dev/null 2>&1; }

# -- database, shared by every setup
mariadb_start "$WORK/db" || { fail_setup "MariaDB did not start"; echo "$passed passed, $failed failed"; exit 1; }
chmod 0755 "$WORK/db"
DB_PASS=$(python3 -c 'import secrets; print(secrets.token_hex(16))')
mariadb --no-defaults --socket="$MARIADB_SOCKET" -uroot -e "
    CREATE DATABASE IF NOT EXISTS darkroom_smoke;
    CREATE USER IF NOT EXISTS 'darkroom_smoke'@'localhost' IDENTIFIED BY '$DB_PASS';
    GRANT ALL ON darkroom_smoke.* TO 'darkroom_smoke'@'localhost';"

API_KEY=drk_smoke_$(python3 -c 'import secrets; print(secrets.token_hex(20))')
SECRET=whsec_$(head -c 24 /dev/urandom | base64)
VAR=$WORK/web
MEDIA=$VAR/media
mkdir -p "$MEDIA/ab"
chmod 0755 "$VAR" "$MEDIA" "$MEDIA/ab"
# Uploads (POST /v1/files) are stored by the app itself, which runs as
# www-data under some setups: files/ is writable by every setup's app.
mkdir -p "$MEDIA/files"
chmod 0777 "$MEDIA/files"
printf 'smoke-bytes' >"$MEDIA/ab/smoke.png"
chmod 0644 "$MEDIA/ab/smoke.png"

# -- a fake Cog and the fake Replicate: a worker started for each setup
# sends them predictions whose results come back through that setup's
# web server (their public URL), files inside the webhooks.
COG_PORT=$(free_port)
COG_TOKEN=$(head -c 24 /dev/urandom | od -An -tx1 | tr -d ' \n')
services_bg fake-cog "$WORK/fake-cog.log" \
    python3 "$ROOT/tests/fakes/cog.py" --port "$COG_PORT" --token "$COG_TOKEN"
wait_port "$COG_PORT" || { fail_setup "the fake Cog did not start"; echo "$passed passed, $failed failed"; exit 1; }
REP_PORT=$(free_port)
services_bg fake-replicate "$WORK/fake-replicate.log" \
    python3 "$ROOT/tests/fakes/replicate.py" --port "$REP_PORT" --token r8_smoke --secret "$SECRET"
wait_port "$REP_PORT" || { fail_setup "the fake Replicate did not start"; echo "$passed passed, $failed failed"; exit 1; }

CONF=$WORK/darkroom.conf
cat >"$CONF" <<CONF
# darkroom configuration of the web server smoke tests (generated).
[server]
plugin_dir = $BUILD/plugins
api_keys = $API_KEY
max_body = 1M
default_adapter = null
default_renditions = thumb

[database]
socket = $MARIADB_SOCKET
user = darkroom_smoke
password = $DB_PASS
name = darkroom_smoke
migrations_dir = $ROOT/migrations

[worker]
wakeup_socket = $WORK/wakeup.sock

[limits]
max_webhook_body = 40M

[adapter "null"]
plugin = null

[adapter "replicate"]
token = r8_smoke
api_base = http://127.0.0.1:$REP_PORT/v1
webhook_secret = $SECRET

[adapter "cog"]
plugin = cog
url = http://127.0.0.1:$COG_PORT
webhook_token = $COG_TOKEN

[sink "fs"]
root = $MEDIA
base_url = http://127.0.0.1/media
CONF
chmod 0644 "$CONF"

if ! DARKROOM_CONF=$CONF "$BUILD/darkroom" migrate </dev/null >"$WORK/migrate.log" 2>&1; then
    cat "$WORK/migrate.log"
    fail_setup "darkroom migrate failed"
    echo "$passed passed, $failed failed"
    exit 1
fi

SOCK=$VAR/fcgi.sock

# spawn_app — darkroom.fcgi on $SOCK through spawn-fcgi, in the foreground
# (-n) so it is tracked; socket group www-data, mode 0660.
spawn_app() {
    rm -f "$SOCK"
    services_bg darkroom.fcgi "$VAR/app.log" spawn-fcgi -n -s "$SOCK" -M 0660 -G www-data \
        -- /usr/bin/env DARKROOM_CONF="$CONF" "$BUILD/darkroom.fcgi"
    APP_PID=$SERVICES_LAST_PID
    wait_socket
}

wait_socket() {
    local i
    for ((i = 0; i < 100; i++)); do
        [ -S "$SOCK" ] && return 0
        sleep 0.05
    done
    return 1
}

# run_smoke NAME PORT [SCRIPT] — run smoke.py (or SCRIPT, from
# tests/integration/) against 127.0.0.1:PORT.
run_smoke() {
    local name=$1 port=$2 script=${3:-smoke.py} rc summary p f worker='' streams
    if [ "$script" = smoke.py ]; then
        # A worker whose webhook URLs name this setup's port.
        services_bg worker "$WORK/$name-worker.log" env DARKROOM_CONF="$CONF" \
            DARKROOM_PUBLIC_URL="http://127.0.0.1:$port" "$BUILD/darkroom" worker
        worker=$SERVICES_LAST_PID
    fi
    set +e
    # Setups that stream a /v1/files body to the app as it arrives.
    case "$name" in lighttpd | lighttpd-external | nginx) streams=1 ;; *) streams=0 ;; esac
    DARKROOM_SMOKE_UPLOAD_STREAMS=$streams \
    DARKROOM_URL=http://127.0.0.1:$port DARKROOM_API_KEY=$API_KEY \
        DARKROOM_REPLICATE_SECRET=$SECRET DARKROOM_SMOKE_MEDIA=/media/ab/smoke.png \
        DARKROOM_SMOKE_MEDIA_BODY=smoke-bytes DARKROOM_SMOKE_WEBHOOK_LIMIT=$((40 << 20)) \
        DARKROOM_SMOKE_LOG_DIR=$VAR DARKROOM_SMOKE_DB="$MARIADB_SOCKET:darkroom_smoke:$DB_PASS" \
        PYTHONDONTWRITEBYTECODE=1 \
        timeout -k 5 180 python3 "$ROOT/tests/integration/$script" </dev/null >"$WORK/$name.log" 2>&1
    rc=$?
    set -e
    stop_pid "$worker"
    sed "s/^/  [$name] /" "$WORK/$name.log"
    summary=$(grep -E '^[0-9]+ passed, [0-9]+ failed$' "$WORK/$name.log" | tail -n 1 || true)
    if [ -n "$summary" ]; then
        read -r p _ f _ <<<"$summary"
    else
        p=0 f=1
    fi
    [ "$rc" -ne 0 ] && [ "$f" -eq 0 ] && f=1
    echo "$name: $p passed, $f failed"
    passed=$((passed + p))
    failed=$((failed + f))
}

stop_pid() {
    if [ -n "${1:-}" ]; then _svc_kill "$1" 10; fi
}

# app_pids PID — the darkroom.fcgi processes among the descendants of PID
# (the ones a web server spawned).
app_pids() {
    local kid
    for kid in $(_svc_children "$1"); do
        [ "$(cat "/proc/$kid/comm" 2>/dev/null)" = darkroom.fcgi ] && echo "$kid"
        app_pids "$kid"
    done
}

# run_down NAME PORT STATUS — with the app gone, run smoke_down.py, which
# expects STATUS for API requests.
run_down() {
    DARKROOM_SMOKE_DOWN_STATUS=$3 run_smoke "$1-down" "$2" smoke_down.py
}

# The app's program as the web server sees it, for the setups that spawn
# it (lighttpd, mod_fcgid): a copy that can be taken away (Apache follows
# no symbolic links here).
APPBIN=$WORK/appbin
mkdir -p "$APPBIN"
chmod 0755 "$APPBIN"

for setup in "${SETUPS[@]}"; do
    echo "== web server: $setup"
    port=$(free_port)
    APP_PID='' SRV_PID=''
    export DARKROOM_PORT=$port DARKROOM_VAR=$VAR DARKROOM_FCGI_SOCKET=$SOCK DARKROOM_CONF=$CONF
    case "$setup" in
        lighttpd)
            cp "$BUILD/darkroom.fcgi" "$APPBIN/darkroom.fcgi"
            if lighttpd_start "$VAR" "$port" "$CONF" "$APPBIN/darkroom.fcgi"; then
                run_smoke "$setup" "$port"
                # App down: its program gone, so lighttpd cannot respawn
                # the processes stopped here.
                rm -f "$APPBIN/darkroom.fcgi"
                for pid in $(app_pids "$LIGHTTPD_PID"); do stop_pid "$pid"; done
                run_down "$setup" "$port" 503
                lighttpd_stop "$LIGHTTPD_PID"
            else
                fail_setup "$setup did not start"
            fi
            ;;
        lighttpd-external)
            if spawn_app; then
                services_bg lighttpd "$VAR/lighttpd.out" lighttpd -D -f "$ROOT/conf/lighttpd-external.conf"
                SRV_PID=$SERVICES_LAST_PID
            fi
            ;;
        apache-proxy-fcgi)
            rm -f "$SOCK"
            services_bg darkroom.fcgi "$VAR/app.log" env DARKROOM_CONF="$CONF" \
                "$BUILD/darkroom.fcgi" --listen "$SOCK"
            APP_PID=$SERVICES_LAST_PID
            if wait_socket; then
                chgrp www-data "$SOCK" 2>/dev/null || true
                services_bg apache2 "$VAR/apache.out" apache2 -DFOREGROUND -f "$ROOT/conf/apache-proxy-fcgi.conf"
                SRV_PID=$SERVICES_LAST_PID
            fi
            ;;
        apache-fcgid)
            # mod_fcgid makes FcgidIPCDir itself, owned by the User.
            rm -rf "$VAR/fcgid"
            cp "$BUILD/darkroom.fcgi" "$APPBIN/darkroom.fcgi"
            services_bg apache2 "$VAR/apache.out" \
                env DARKROOM_BIN="$APPBIN" apache2 -DFOREGROUND -f "$ROOT/conf/apache-fcgid.conf"
            SRV_PID=$SERVICES_LAST_PID
            ;;
        nginx)
            if spawn_app; then
                # shellcheck disable=SC2016  # envsubst takes the names literally
                envsubst '${DARKROOM_PORT} ${DARKROOM_VAR} ${DARKROOM_FCGI_SOCKET}' \
                    <"$ROOT/conf/nginx.conf" >"$VAR/nginx.conf"
                services_bg nginx "$VAR/nginx.out" nginx -e stderr -p "$VAR" -c "$VAR/nginx.conf" -g 'daemon off;'
                SRV_PID=$SERVICES_LAST_PID
            fi
            ;;
        *)
            fail_setup "unknown setup $setup"
            continue
            ;;
    esac
    if [ "$setup" != lighttpd ]; then
        if [ -n "$SRV_PID" ] && wait_port "$port" 20 "$SRV_PID"; then
            run_smoke "$setup" "$port"
            # App down: stopped and its socket gone; mod_fcgid spawns it
            # again on demand, so there the program is replaced by one
            # that dies at once, as a crashing app does.
            if [ "$setup" = apache-fcgid ]; then
                rm -f "$APPBIN/darkroom.fcgi"
                printf '#!/bin/sh\nexit 1\n' >"$APPBIN/darkroom.fcgi"
                chmod 0755 "$APPBIN/darkroom.fcgi"
                for pid in $(app_pids "$SRV_PID"); do stop_pid "$pid"; done
            else
                stop_pid "$APP_PID"
                APP_PID=''
                rm -f "$SOCK"
            fi
            case "$setup" in
                nginx) run_down "$setup" "$port" 502 ;;
                apache-fcgid) run_down "$setup" "$port" 500 ;;
                *) run_down "$setup" "$port" 503 ;;
            esac
        else
            fail_setup "$setup did not start"
            tail -n 20 "$VAR"/*.out "$VAR"/*error.log "$VAR/app.log" 2>/dev/null || true
        fi
        stop_pid "$SRV_PID"
        stop_pid "$APP_PID"
    fi
done

echo "$passed passed, $failed failed"
[ "$failed" -eq 0 ]
