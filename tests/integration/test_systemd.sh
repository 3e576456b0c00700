#!/usr/bin/env bash
# tests/integration/test_systemd.sh — the units of systemd/ and the way
# darkroom-fcgi.socket starts the app:
#
#   1. `systemd-analyze verify` accepts the three units (copies whose
#      ExecStart points at the build directory, since verify insists the
#      binaries exist; man pages are not looked up).
#   2. The hardening the issue asks for is there (NoNewPrivileges,
#      ProtectSystem=strict, ...), in both services.
#   3. darkroom.fcgi started as systemd starts it — a listening unix socket
#      as fd 3, LISTEN_FDS=1, LISTEN_PID its own pid, nothing on fd 0 —
#      answers GET /healthz with 200 over FastCGI (cgi-fcgi, libfcgi-bin),
#      and twice in a row (it keeps accepting).
#
# Ends with "N passed, N failed". Knobs: DARKROOM_BUILD_DIR or BUILD.

set -uo pipefail

ROOT=$(cd "$(dirname "${BASH_SOURCE[0]}")/../.." && pwd)
BUILD=${DARKROOM_BUILD_DIR:-${BUILD:-build}}
case "$BUILD" in /*) ;; *) BUILD=$ROOT/$BUILD ;; esac

while IFS= read -r var; do
    case "$var" in DARKROOM_TEST_RUN) ;; DARKROOM_*|REPLICATE_*|LISTEN_*) unset "$var" ;; esac
done < <(compgen -e)

# shellcheck source=tests/lib/services.sh
. "$ROOT/tests/lib/services.sh"

WORK=$(mktemp -d "${TMPDIR:-/tmp}/darkroom-sd.XXXXXX")
passed=0
failed=0
trap 'services_cleanup; rm -rf "$WORK"' EXIT
trap 'exit 130' INT
trap 'exit 143' TERM

ok()   { echo "ok   $1"; passed=$((passed + 1)); }
fail() { echo "FAIL $1"; failed=$((failed + 1)); }

# -- 1. systemd-analyze verify
if ! command -v systemd-analyze >/dev/null 2>&1; then
    fail "systemd-analyze verify: systemd-analyze is not installed (package systemd)"
else
    mkdir -p "$WORK/units"
    for u in "$ROOT"/systemd/*.socket "$ROOT"/systemd/*.service; do
        sed "s|/usr/local/bin/|$BUILD/|g" "$u" >"$WORK/units/$(basename "$u")"
    done
    if out=$(cd "$WORK/units" && systemd-analyze verify --man=no ./*.socket ./*.service 2>&1) \
            && [ -z "$out" ]; then
        ok "systemd-analyze verify accepts the units"
    else
        fail "systemd-analyze verify: $out"
    fi
fi

# -- 2. the sandbox
missing=""
for svc in darkroom-fcgi.service darkroom-worker.service; do
    for line in NoNewPrivileges=yes ProtectSystem=strict ProtectHome=yes PrivateTmp=yes \
            PrivateDevices=yes ProtectKernelTunables=yes ProtectKernelModules=yes \
            ProtectKernelLogs=yes ProtectControlGroups=yes \
            'RestrictAddressFamilies=AF_UNIX AF_INET AF_INET6' RestrictNamespaces=yes \
            LockPersonality=yes SystemCallFilter=@system-service SystemCallArchitectures=native \
            CapabilityBoundingSet= AmbientCapabilities= User=darkroom \
            'ReadWritePaths=/var/lib/darkroom /run/darkroom' StateDirectory=darkroom \
            RuntimeDirectory=darkroom Environment=DARKROOM_CONF=/etc/darkroom/darkroom.conf \
            Environment=MALLOC_ARENA_MAX=2; do
        grep -qxF "$line" "$ROOT/systemd/$svc" || missing="$missing $svc:'$line'"
    done
done
grep -qxF 'KillMode=mixed' "$ROOT/systemd/darkroom-worker.service" || missing="$missing worker:KillMode=mixed"
grep -qxF 'ListenStream=/run/darkroom/fcgi.sock' "$ROOT/systemd/darkroom-fcgi.socket" || missing="$missing socket:ListenStream"
if [ -z "$missing" ]; then
    ok "both services carry the sandbox settings"
else
    fail "sandbox settings missing:$missing"
fi

# -- 3. socket activation: fd 3 + LISTEN_FDS
if ! mariadb_start "$WORK/db" >"$WORK/services.log" 2>&1; then
    fail "LISTEN_FDS: MariaDB did not start"
else
    mariadb --no-defaults --socket="$MARIADB_SOCKET" -uroot -e 'CREATE DATABASE IF NOT EXISTS darkroom_sd'
    cat >"$WORK/darkroom.conf" <<CONF
[server]
plugin_dir = $BUILD/plugins
api_keys = drk_systemd_test_key_0123456789
default_adapter = null
[database]
socket = $MARIADB_SOCKET
user = root
name = darkroom_sd
migrations_dir = $ROOT/migrations
[worker]
wakeup_socket = $WORK/wakeup.sock
[adapter "null"]
plugin = null
[sink "fs"]
root = $WORK/media
base_url = http://127.0.0.1/media
CONF
    SOCK=$WORK/fcgi.sock
    # The launcher does what systemd does for darkroom-fcgi.socket: bind
    # and listen, then fork; the child puts the socket on fd 3, sets
    # LISTEN_FDS=1 and LISTEN_PID to its own pid (kept across execve) and
    # execs the app with stdin from /dev/null. Like systemd stopping the
    # service, the launcher passes SIGTERM/SIGINT on to the app and exits
    # once the app has: services_cleanup stops the launcher, and the app
    # must not outlive it.
    services_bg "darkroom.fcgi (socket-activated)" "$WORK/app.log" python3 -c '
import os, signal, socket, sys
sock_path, prog, conf = sys.argv[1:4]
s = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
s.bind(sock_path)
s.listen(128)
pid = None
def forward(signum, frame):
    if pid:  # set in the parent only
        os.kill(pid, signum)
signal.signal(signal.SIGTERM, forward)
signal.signal(signal.SIGINT, forward)
pid = os.fork()
if pid == 0:
    if s.fileno() != 3:
        os.dup2(s.fileno(), 3)
    os.set_inheritable(3, True)  # dup2 onto itself keeps close-on-exec
    devnull = os.open("/dev/null", os.O_RDONLY)
    os.dup2(devnull, 0)
    env = dict(os.environ, LISTEN_FDS="1", LISTEN_PID=str(os.getpid()),
               LISTEN_FDNAMES="darkroom-fcgi.socket", DARKROOM_CONF=conf)
    os.execve(prog, [prog], env)
s.close()
_, status = os.waitpid(pid, 0)
sys.exit(os.waitstatus_to_exitcode(status))
' "$SOCK" "$BUILD/darkroom.fcgi" "$WORK/darkroom.conf"
    for ((i = 0; i < 50; i++)); do [ -S "$SOCK" ] && break; sleep 0.1; done
    healthz() {
        env -i PATH=/usr/bin:/bin REQUEST_METHOD=GET REQUEST_URI=/healthz SCRIPT_NAME=/healthz \
            QUERY_STRING= SERVER_PROTOCOL=HTTP/1.1 SERVER_NAME=localhost REMOTE_ADDR=127.0.0.1 \
            timeout 10 cgi-fcgi -bind -connect "$SOCK" </dev/null 2>&1
    }
    if ! command -v cgi-fcgi >/dev/null 2>&1; then
        fail "LISTEN_FDS: cgi-fcgi is not installed (package libfcgi-bin)"
    else
        out1=$(healthz)
        out2=$(healthz)
        if printf '%s' "$out1" | grep -q '^Status: 200' && printf '%s' "$out2" | grep -q '^Status: 200'; then
            ok "darkroom.fcgi on an inherited socket (fd 3, LISTEN_FDS=1) answers GET /healthz 200"
        else
            fail "LISTEN_FDS: GET /healthz: $(printf '%s' "$out1" | head -n 3 | tr '\n' ' ') / app log: $(tail -n 3 "$WORK/app.log" | tr '\n' ' ')"
        fi
    fi
    # LISTEN_PID names another process: the app must not take fd 3 and,
    # with no socket on fd 0 either, refuses to start.
    if env LISTEN_FDS=1 LISTEN_PID=1 DARKROOM_CONF="$WORK/darkroom.conf" \
            timeout 10 "$BUILD/darkroom.fcgi" </dev/null >"$WORK/wrongpid.log" 2>&1; then
        fail "LISTEN_PID of another process: darkroom.fcgi started anyway"
    else
        ok "LISTEN_PID of another process is ignored (no socket: exits non-zero)"
    fi
fi

echo "$passed passed, $failed failed"
[ "$failed" -eq 0 ]
