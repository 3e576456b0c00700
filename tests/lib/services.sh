#!/usr/bin/env bash
# tests/lib/services.sh — start and stop the services darkroom runs against:
# a private MariaDB and lighttpd with darkroom.fcgi. Used by `make run`
# (conf/run.sh) and by the integration tests (tests/run-integration.sh).
#
# Source it, then:
#
#   trap services_cleanup EXIT; trap 'exit 130' INT; trap 'exit 143' TERM
#                               (or simply: services_trap)
#   port=$(free_port)
#   mariadb_start DIR           exports MARIADB_SOCKET, MARIADB_PORT
#   lighttpd_start DIR PORT DARKROOM_CONF FCGI_BIN
#                               exports LIGHTTPD_PID
#   services_bg NAME LOG CMD... any other background process (the worker)
#   services_cleanup            stops everything started above, newest first
#
# Every process started here is recorded, so services_cleanup stops all of
# them even after a failure half-way; it is idempotent and keeps $?.
# Processes run in their own session (setsid), so a Ctrl-C on the terminal
# reaches only the calling script, which then stops them in order; and
# whatever a stopped service left in its process group (a child it forked
# and did not take down with it) is stopped after it.
#
# Executed, it runs one function, for use from other processes:
#   services.sh mariadb_stop DIR  |  services.sh mariadb_start DIR
# This is how a test takes the database down and brings the same server
# (same data, socket and port) back; the calling script's cleanup still
# stops the restarted server, because MariaDB is tracked by its directory.
#
# State kept in a MariaDB DIR: data/ (unless given), mysqld.sock, mariadb.port,
# mariadb.pid, mariadb.datadir, mariadb.log. In a lighttpd DIR: lighttpd.pid,
# lighttpd-error.log, app.log (the app's stderr), lighttpd-access.log,
# lighttpd.out, darkroom-fcgi.sock-N,
# media/ (served under /media/).

SERVICES_ROOT=$(cd "$(dirname "${BASH_SOURCE[0]}")/../.." && pwd)
SERVICES_LIGHTTPD_CONF=${SERVICES_LIGHTTPD_CONF:-$SERVICES_ROOT/conf/lighttpd.conf}

# The registry: one "kind:argument" entry per started service.
_SVC_ITEMS=()

_svc_log() {
    printf 'services: %s\n' "$*" >&2
}

# Start "$@" in the background, detached from the terminal's signals, with
# stdin from /dev/null and output appended to the file named by $1.
# Sets _SVC_PID.
_svc_spawn() {
    local log=$1
    shift
    if command -v setsid >/dev/null 2>&1; then
        setsid "$@" </dev/null >>"$log" 2>&1 &
    else
        "$@" </dev/null >>"$log" 2>&1 &
    fi
    _SVC_PID=$!
}

_svc_alive() {
    [ -n "${1:-}" ] && kill -0 "$1" 2>/dev/null
}

# Print the pids of the direct children of PID, from /proc.
_svc_children() {
    local parent=$1 stat rest f ppid
    for f in /proc/[0-9]*/stat; do
        stat=$(cat "$f" 2>/dev/null) || continue
        rest=${stat##*) }          # after "pid (comm) "
        read -r _ ppid _ <<<"$rest"
        if [ "$ppid" = "$parent" ]; then
            f=${f#/proc/}
            printf '%s\n' "${f%/stat}"
        fi
    done
}

# The stop functions below run with errexit off (`local -; set +e`): a
# process that vanished between two steps must not end the calling script.

# Wait up to SECONDS (an integer) for PID to exit; reap it when it is our
# child. Returns 0 when it is gone.
_svc_wait_gone() {
    local -
    set +e
    local pid=$1 tenths=$(( $2 * 10 )) i=0
    while _svc_alive "$pid"; do
        # A zombie child is gone for our purpose; reaping it makes kill -0 fail.
        if [ "$(cut -d' ' -f3 "/proc/$pid/stat" 2>/dev/null)" = Z ]; then
            wait "$pid" 2>/dev/null
            break
        fi
        [ "$i" -ge "$tenths" ] && return 1
        sleep 0.1
        i=$((i + 1))
    done
    wait "$pid" 2>/dev/null
    return 0
}

# Stop PID: SIGTERM, then SIGKILL after SECONDS (default 10).
_svc_kill() {
    local -
    set +e
    local pid=$1 grace=${2:-10}
    _svc_alive "$pid" || { wait "$pid" 2>/dev/null; return 0; }
    kill -TERM "$pid" 2>/dev/null
    if ! _svc_wait_gone "$pid" "$grace"; then
        _svc_log "pid $pid ignored SIGTERM for ${grace}s, killing it"
        kill -KILL "$pid" 2>/dev/null
        _svc_wait_gone "$pid" 5
    fi
    return 0
}

# After the leader PGID of a process group (a service started through
# setsid) is stopped: stop what is left in the group, SIGTERM then SIGKILL
# after 5 s. A no-op when the group is empty or PGID leads no group, and
# never applied to the calling script's own group.
_svc_kill_group() {
    local -
    set +e
    local pgid=$1 stat rest own i
    stat=$(cat "/proc/$$/stat" 2>/dev/null)
    rest=${stat##*) }
    read -r _ _ own _ <<<"$rest"    # state ppid pgrp
    [ -n "$pgid" ] && [ "$pgid" != "$own" ] || return 0
    # Members that are already ending (the FastCGI children of a stopped
    # lighttpd) get a second to go.
    for ((i = 0; i < 10; i++)); do
        _svc_group_alive "$pgid" || return 0
        sleep 0.1
    done
    _svc_log "process group $pgid outlived its leader; stopping it"
    kill -TERM -- "-$pgid" 2>/dev/null
    for ((i = 0; i < 50; i++)); do
        _svc_group_alive "$pgid" || return 0
        sleep 0.1
    done
    kill -KILL -- "-$pgid" 2>/dev/null
    return 0
}

# True when process group PGID has a member that is not a zombie (an
# orphan's zombie waits for init to reap it, which can take seconds).
_svc_group_alive() {
    local pgid=$1 f stat rest state pgrp
    for f in /proc/[0-9]*/stat; do
        stat=$(cat "$f" 2>/dev/null) || continue
        rest=${stat##*) }
        read -r state _ pgrp _ <<<"$rest"
        [ "$pgrp" = "$pgid" ] && [ "$state" != Z ] && return 0
    done
    return 1
}

# free_port — print a TCP port on 127.0.0.1 that nothing listens on now.
free_port() {
    python3 -c 'import socket
s = socket.socket()
s.bind(("127.0.0.1", 0))
print(s.getsockname()[1])
s.close()'
}

# port_free PORT — true when nothing listens on 127.0.0.1:PORT.
port_free() {
    ! (exec 3<>"/dev/tcp/127.0.0.1/$1") 2>/dev/null
}

# wait_port PORT [SECONDS] [PID] — wait until 127.0.0.1:PORT accepts a
# connection; fail early when PID (the server) has died.
wait_port() {
    local port=$1 secs=${2:-30} pid=${3:-} i=0
    while port_free "$port"; do
        if [ -n "$pid" ] && ! _svc_alive "$pid"; then
            return 1
        fi
        [ "$i" -ge $((secs * 10)) ] && return 1
        sleep 0.1
        i=$((i + 1))
    done
    return 0
}

# services_bg NAME LOG CMD... — start CMD in the background with output to
# LOG, and record it for services_cleanup. Sets SERVICES_LAST_PID.
services_bg() {
    local name=$1 log=$2
    shift 2
    _svc_spawn "$log" "$@"
    # shellcheck disable=SC2034  # read by the scripts that source this file
    SERVICES_LAST_PID=$_SVC_PID
    _SVC_ITEMS+=("pid:$_SVC_PID")
    _svc_log "started $name (pid $_SVC_PID, log $log)"
}

# ---------------------------------------------------------------- MariaDB

_mariadb_ping() {
    mariadb-admin --no-defaults --socket="$1" -uroot --connect-timeout=2 ping >/dev/null 2>&1
}

# mariadb_start DIR [DATADIR] — initialise DATADIR (default DIR/data) when
# empty, start mariadbd on the socket DIR/mysqld.sock and a free loopback
# port (kept in DIR/mariadb.port so a restart gets the same one), wait until
# it answers. Exports MARIADB_SOCKET and MARIADB_PORT. A server already
# answering on that socket is reused.
mariadb_start() {
    local dir=$1 data=${2:-} sock port pid i
    mkdir -p "$dir" || return 1
    dir=$(cd "$dir" && pwd)
    # The data directory of an earlier start is remembered for restarts.
    if [ -z "$data" ] && [ -s "$dir/mariadb.datadir" ]; then
        data=$(cat "$dir/mariadb.datadir")
    fi
    data=${data:-$dir/data}
    printf '%s\n' "$data" >"$dir/mariadb.datadir"
    sock=$dir/mysqld.sock
    if [ "${#sock}" -gt 100 ]; then
        _svc_log "socket path too long for a unix socket: $sock"
        return 1
    fi
    if [ ! -d "$data/mysql" ]; then
        if ! mariadb-install-db --no-defaults --user=root --datadir="$data" \
                --auth-root-authentication-method=socket --skip-test-db \
                >"$dir/mariadb-install.log" 2>&1 </dev/null; then
            _svc_log "mariadb-install-db failed; see $dir/mariadb-install.log"
            tail -n 20 "$dir/mariadb-install.log" >&2
            return 1
        fi
    fi
    _SVC_ITEMS+=("mariadb:$dir")
    port=$(cat "$dir/mariadb.port" 2>/dev/null || true)
    if _mariadb_ping "$sock"; then
        export MARIADB_SOCKET=$sock MARIADB_PORT=$port
        _svc_log "mariadb already running on $sock"
        return 0
    fi
    # Keep the port of the last start unless something else took it.
    if [ -z "$port" ] || ! port_free "$port"; then
        port=$(free_port) || return 1
        echo "$port" >"$dir/mariadb.port"
    fi
    export MARIADB_SOCKET=$sock MARIADB_PORT=$port
    _svc_spawn "$dir/mariadb.log" mariadbd --no-defaults --user=root \
        --datadir="$data" --socket="$sock" --port="$port" \
        --bind-address=127.0.0.1 --skip-name-resolve --skip-log-bin \
        --innodb-buffer-pool-size="${DARKROOM_MARIADB_BUFFER_POOL:-64M}" \
        --pid-file="$dir/mariadb.pid"
    pid=$_SVC_PID
    for ((i = 0; i < 300; i++)); do
        if _mariadb_ping "$sock"; then
            _svc_log "mariadb up (pid $pid, socket $sock, port $port)"
            return 0
        fi
        if ! _svc_alive "$pid"; then
            wait "$pid" 2>/dev/null
            break
        fi
        sleep 0.1
    done
    _svc_log "mariadb did not start; last lines of $dir/mariadb.log:"
    tail -n 30 "$dir/mariadb.log" >&2
    _svc_kill "$pid" 5
    return 1
}

# mariadb_stop DIR — shut the server of DIR down cleanly (mariadb-admin
# shutdown), falling back to SIGTERM and then SIGKILL. Safe to call when it
# is not running.
mariadb_stop() {
    local -
    set +e
    local dir=$1 sock pid=""
    dir=$(cd "$dir" 2>/dev/null && pwd) || return 0
    sock=$dir/mysqld.sock
    [ -s "$dir/mariadb.pid" ] && pid=$(cat "$dir/mariadb.pid" 2>/dev/null)
    if _mariadb_ping "$sock"; then
        mariadb-admin --no-defaults --socket="$sock" -uroot --shutdown-timeout=20 \
            shutdown >/dev/null 2>&1
    fi
    if [ -n "$pid" ]; then
        if ! _svc_wait_gone "$pid" 20; then
            _svc_kill "$pid" 10
        fi
    fi
    # Without a pid file, make sure nothing answers any more.
    local i
    for ((i = 0; i < 100; i++)); do
        _mariadb_ping "$sock" || return 0
        sleep 0.1
    done
    _svc_log "mariadb on $sock still answers after shutdown"
    return 1
}

# mariadb_restart DIR — stop and start the same server (same data, socket
# and port).
mariadb_restart() {
    mariadb_stop "$1" && mariadb_start "$1"
}

# ---------------------------------------------------------------- lighttpd

# lighttpd_start DIR PORT DARKROOM_CONF FCGI_BIN — run lighttpd on
# 127.0.0.1:PORT with conf/lighttpd.conf (override the file with
# SERVICES_LIGHTTPD_CONF), DIR as its state directory (logs, FastCGI
# socket, DIR/media served under /media/) and FCGI_BIN spawned as the
# FastCGI app (DARKROOM_FCGI_PROCS processes, default 4) with DARKROOM_CONF
# in its environment. Waits until the port answers. Exports LIGHTTPD_PID.
lighttpd_start() {
    local dir=$1 port=$2 conf=$3 bin=$4 root pid
    mkdir -p "$dir/media" || return 1
    dir=$(cd "$dir" && pwd)
    if [ ! -x "$bin" ]; then
        _svc_log "no FastCGI program at $bin"
        return 1
    fi
    # The config runs $DARKROOM_ROOT/build/darkroom.fcgi and answers with
    # $DARKROOM_ROOT/conf/problems/ when the app cannot. For any other
    # program, point DARKROOM_ROOT at a directory holding links to both.
    if [ "$bin" -ef "$SERVICES_ROOT/build/darkroom.fcgi" ]; then
        root=$SERVICES_ROOT
    else
        root=$dir/approot
        mkdir -p "$root/build"
        ln -sfn "$(cd "$(dirname "$bin")" && pwd)/$(basename "$bin")" "$root/build/darkroom.fcgi"
        ln -sfn "$SERVICES_ROOT/conf" "$root/conf"
    fi
    local -a envs=(env "DARKROOM_PORT=$port" "DARKROOM_ROOT=$root"
        "DARKROOM_CONF=$conf" "DARKROOM_VAR=$dir")
    if ! "${envs[@]}" lighttpd -tt -f "$SERVICES_LIGHTTPD_CONF" >"$dir/lighttpd.out" 2>&1; then
        _svc_log "lighttpd rejects its configuration:"
        cat "$dir/lighttpd.out" >&2
        return 1
    fi
    _svc_spawn "$dir/lighttpd.out" "${envs[@]}" lighttpd -D -f "$SERVICES_LIGHTTPD_CONF"
    pid=$_SVC_PID
    _SVC_ITEMS+=("lighttpd:$pid")
    if ! wait_port "$port" 30 "$pid"; then
        _svc_log "lighttpd did not come up on port $port; last lines of its logs:"
        tail -n 30 "$dir/lighttpd.out" "$dir/lighttpd-error.log" >&2 2>/dev/null
        lighttpd_stop "$pid"
        return 1
    fi
    export LIGHTTPD_PID=$pid
    _svc_log "lighttpd up (pid $pid, http://127.0.0.1:$port/, logs in $dir)"
}

# lighttpd_stop DIR|PID — stop lighttpd and make sure the FastCGI processes
# it spawned are gone too.
lighttpd_stop() {
    local -
    set +e
    local pid=$1 kids k
    if [ -d "$pid" ]; then
        pid=$(cat "$pid/lighttpd.pid" 2>/dev/null) || return 0
    fi
    _svc_alive "$pid" || { wait "$pid" 2>/dev/null; return 0; }
    kids=$(_svc_children "$pid")
    _svc_kill "$pid" 10
    for k in $kids; do
        _svc_kill "$k" 5
    done
    _svc_kill_group "$pid"
    return 0
}

# ---------------------------------------------------------------- cleanup

# services_cleanup — stop every service started through this file, newest
# first. Keeps the exit status it was called with, so it fits an EXIT trap.
# Processes of services_bg get SERVICES_STOP_GRACE seconds (default 10)
# between SIGTERM and SIGKILL; then what is left of their process group.
services_cleanup() {
    local rc=$? i item
    local -
    set +e
    for ((i = ${#_SVC_ITEMS[@]} - 1; i >= 0; i--)); do
        item=${_SVC_ITEMS[i]}
        case "$item" in
            pid:*)      _svc_kill "${item#pid:}" "${SERVICES_STOP_GRACE:-10}"
                        _svc_kill_group "${item#pid:}" ;;
            lighttpd:*) lighttpd_stop "${item#lighttpd:}" ;;
            mariadb:*)  mariadb_stop "${item#mariadb:}" ;;
        esac
    done
    _SVC_ITEMS=()
    return "$rc"
}

# services_trap — stop everything on exit, Ctrl-C or SIGTERM.
services_trap() {
    trap services_cleanup EXIT
    trap 'exit 130' INT
    trap 'exit 143' TERM
}

# Executed rather than sourced: run one function, e.g. from a test that
# takes the database down and up again.
if [ "${BASH_SOURCE[0]}" = "$0" ]; then
    set -uo pipefail
    case "${1:-}" in
        mariadb_start|mariadb_stop|mariadb_restart|lighttpd_stop|free_port)
            fn=$1
            shift
            "$fn" "$@"
            ;;
        *)
            echo "usage: $0 mariadb_start|mariadb_stop|mariadb_restart DIR | lighttpd_stop DIR | free_port" >&2
            exit 2
            ;;
    esac
fi
