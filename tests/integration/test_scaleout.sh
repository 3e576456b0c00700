#!/usr/bin/env bash
# tests/integration/test_scaleout.sh — the scale-out design of the README
# ("Scale-out") on one machine: every host in its own network namespace on
# one bridge, talking TCP to each other as separate machines would.
#
#   root namespace  the bridge and its address: the clients and the CDN side
#   db              mariadbd on its own address, a password user over TCP
#   s3              s3rver, bucket "darkroom"
#   prov            the fake Replicate (tests/fakes/replicate.py)
#   app1, app2      lighttpd + darkroom.fcgi (conf/lighttpd.conf, bound to
#                   the host's address by a small wrapper config)
#   work1, work2    `darkroom worker`, 2 processes each; webhooks of work1's
#                   predictions go to app1, those of work2's to app2
#
# Each host runs under its own UTS namespace with the host's name, so lease
# owners and heartbeats read "work1:PID". Cases:
#
#   1. both app hosts answer /healthz on their own addresses;
#   2. jobs posted alternately to app1 and app2 all succeed, each created
#      once at the provider, every output and rendition in s3rver with the
#      recorded SHA-256 (fetched over the bridge, as the CDN would);
#   3. both worker hosts did work (heartbeats and sampled lease owners);
#   4. work1 cut off the network (its veth down) in the middle of a persist
#      step: work2 takes its leases over when they run out, every job
#      succeeds once; work1 rejoins, works alone again, and changes nothing
#      it lost (fencing);
#   5. app1 down: posts to app2 still work, and the webhooks addressed to
#      app1 fail over to polling.
#
# Where a case needs work1 to hold the jobs (4, and 5: its webhooks go to
# app1), work2 is paused with SIGSTOP meanwhile, so the case does not
# depend on which idle worker wakes first.
#
# Needs root (ip netns, veth, a bridge). Not root: prints why and
# "0 passed, 0 failed". Ends with "N passed, N failed"; exits non-zero on a
# failure. Everything it creates (namespaces, bridge, veths, processes, the
# temporary directory) is removed by the EXIT trap, after a failure, a
# time-out (DARKROOM_SCALEOUT_LIMIT, default 170 s) or Ctrl-C too; on a
# failure the end of the logs is shown first.
#
# Knobs: DARKROOM_BUILD_DIR or BUILD (default ./build), DARKROOM_TEST_KEEP=1
# (keep the temporary directory), DARKROOM_SCALEOUT_JOBS (case 2, default
# 40). DARKROOM_SCALEOUT_CUT=submit cuts work1 off during a submit step
# instead of a persist step, a reproducer of the known problem of case 4.
# MariaDB runs with its defaults: darkroom's sessions set their own
# idle_transaction_timeout (core/db.c), which frees a row a worker cut off
# inside a claim had locked.

set -uo pipefail

ROOT=$(cd "$(dirname "${BASH_SOURCE[0]}")/../.." && pwd)
BUILD=${DARKROOM_BUILD_DIR:-${BUILD:-build}}
case "$BUILD" in /*) ;; *) BUILD=$ROOT/$BUILD ;; esac
KEEP=${DARKROOM_TEST_KEEP:-0}
JOBS=${DARKROOM_SCALEOUT_JOBS:-40}
LIMIT=${DARKROOM_SCALEOUT_LIMIT:-170}
CUT_STEP=${DARKROOM_SCALEOUT_CUT:-persist}

# A developer's own settings must not leak into the tests.
while IFS= read -r var; do
    case "$var" in DARKROOM_TEST_RUN) ;; DARKROOM_*|REPLICATE_*) unset "$var" ;; esac
done < <(compgen -e)

passed=0
failed=0
case_no=0
ok()   { case_no=$((case_no + 1)); echo "ok   $case_no $*"; passed=$((passed + 1)); }
fail() { case_no=$((case_no + 1)); echo "FAIL $case_no $*"; failed=$((failed + 1)); }
note() { echo "# $*"; }

if [ "$(id -u)" -ne 0 ]; then
    echo "test_scaleout: skipped: needs root (network namespaces, veths, a bridge)"
    echo "0 passed, 0 failed"
    exit 0
fi

# ------------------------------------------------------------------ names

# drso + 4 random hex digits: namespaces drsoXXXX-HOST, host-side veths of
# the same names (at most 14 characters), bridge drsoXXXX-br.
while :; do
    TAG=drso$(od -An -N2 -tx1 /dev/urandom | tr -d ' \n')
    ip netns list 2>/dev/null | grep -q "^$TAG-" && continue
    ip link show "$TAG-br" >/dev/null 2>&1 && continue
    break
done
BRIDGE=$TAG-br
HOSTS=(db s3 prov app1 app2 work1 work2)
declare -A HOST_NO=([db]=10 [s3]=11 [prov]=12 [app1]=21 [app2]=22 [work1]=31 [work2]=32)

# A 10.A.B.0/24 that no route or address of this machine overlaps.
NET=
for _ in $(seq 64); do
    cand=10.$((RANDOM % 200 + 50)).$((RANDOM % 254 + 1))
    if [ -z "$(ip -4 route show table all root "$cand.0/24" 2>/dev/null)" ] &&
       ! ip -4 route show table all match "$cand.0/24" 2>/dev/null | grep -qv '^default' &&
       [ -z "$(ip -4 addr show to "$cand.0/24" 2>/dev/null)" ]; then
        NET=$cand
        break
    fi
done
addr() { echo "$NET.${HOST_NO[$1]}"; }
nsname() { echo "$TAG-$1"; }

WORK=
MADE_NS=()
MADE_LINKS=()
SAMPLER_PID=
WATCHDOG_PID=
TIMED_OUT=0

# ------------------------------------------------------------------ cleanup

# Stop every process in our namespaces (SIGTERM, SIGKILL after 10 s),
# delete the namespaces, the bridge and the veths, remove the temporary
# directory, and print the summary. Runs once, from the EXIT trap.
# shellcheck disable=SC2317  # called by the EXIT trap
finish() {
    local rc=$? ns pids i log
    trap '' INT TERM
    set +e
    [ -n "$WATCHDOG_PID" ] && kill "$WATCHDOG_PID" 2>/dev/null
    [ -n "$SAMPLER_PID" ] && kill "$SAMPLER_PID" 2>/dev/null
    # Stopped processes (case 5 pauses work2) first get SIGCONT.
    for ns in "${MADE_NS[@]}"; do
        pids=$(ip netns pids "$ns" 2>/dev/null)
        # shellcheck disable=SC2086  # a list of pids
        [ -n "$pids" ] && kill -CONT $pids 2>/dev/null && kill -TERM $pids 2>/dev/null
    done
    for ((i = 0; i < 100; i++)); do
        pids=
        for ns in "${MADE_NS[@]}"; do
            pids+=$(ip netns pids "$ns" 2>/dev/null)
        done
        [ -z "$pids" ] && break
        sleep 0.1
    done
    for ns in "${MADE_NS[@]}"; do
        pids=$(ip netns pids "$ns" 2>/dev/null)
        if [ -n "$pids" ]; then
            echo "test_scaleout: killing what ignored SIGTERM in $ns: $pids" >&2
            # shellcheck disable=SC2086  # a list of pids
            kill -KILL $pids 2>/dev/null
        fi
    done
    wait 2>/dev/null
    for ns in "${MADE_NS[@]}"; do
        ip netns del "$ns" 2>/dev/null
    done
    for i in "${MADE_LINKS[@]}"; do
        ip link show "$i" >/dev/null 2>&1 && ip link del "$i" 2>/dev/null
    done
    if [ "$TIMED_OUT" = 1 ]; then
        echo "FAIL test_scaleout: stopped after the time limit of ${LIMIT}s"
        failed=$((failed + 1))
    elif [ "$rc" -ne 0 ] && [ "$failed" -eq 0 ]; then
        echo "FAIL test_scaleout: stopped with status $rc"
        failed=$((failed + 1))
    fi
    if [ -n "$WORK" ] && [ -d "$WORK" ]; then
        if [ "$failed" -ne 0 ]; then
            for log in "$WORK"/*/*.log; do
                [ -s "$log" ] || continue
                echo "--- last lines of ${log#"$WORK"/}" >&2
                tail -n 15 "$log" >&2
            done
        fi
        if [ "$KEEP" = 1 ]; then
            echo "--- scale-out test files in $WORK" >&2
        else
            rm -rf "$WORK"
        fi
    fi
    echo "$passed passed, $failed failed"
    [ "$failed" -eq 0 ] && exit 0
    exit 1
}
trap finish EXIT
trap 'exit 130' INT
trap 'exit 143' TERM
# The watchdog: SIGUSR1 means the time is up.
trap 'TIMED_OUT=1; exit 124' USR1

setup_failed() {
    echo "test_scaleout: $*" >&2
    failed=$((failed + 1))
    exit 1
}

# The whole test is bounded: the watchdog wakes once a second so that it
# never outlives the test by more than that.
(
    for ((t = 0; t < LIMIT; t++)); do
        sleep 1
        kill -0 $$ 2>/dev/null || exit 0
    done
    kill -USR1 $$ 2>/dev/null
) &
WATCHDOG_PID=$!

for f in "$BUILD/darkroom" "$BUILD/darkroom.fcgi" "$BUILD/plugins/replicate.so" "$BUILD/plugins/s3.so"; do
    [ -e "$f" ] || setup_failed "missing $f (build first)"
done
for cmd in ip unshare mariadbd mariadb-install-db mariadb lighttpd node curl python3; do
    command -v "$cmd" >/dev/null 2>&1 || setup_failed "missing the command $cmd"
done
[ -n "$NET" ] || setup_failed "no free 10.x.y.0/24 subnet found"
# shellcheck source=tests/lib/npm-deps.sh
. "$ROOT/tests/lib/npm-deps.sh"
npm_deps_install >&2 || setup_failed "cannot install s3rver with npm"
S3RVER_BIN=$ROOT/node_modules/.bin/s3rver

WORK=$(mktemp -d "${TMPDIR:-/tmp}/darkroom-scaleout.XXXXXX")
chmod 0755 "$WORK"

# ------------------------------------------------------------------ network

ip link add "$BRIDGE" type bridge 2>"$WORK/ip.err" ||
    setup_failed "cannot create a bridge: $(cat "$WORK/ip.err")"
MADE_LINKS+=("$BRIDGE")
if ! ip addr add "$NET.1/24" dev "$BRIDGE" || ! ip link set "$BRIDGE" up; then
    setup_failed "cannot configure the bridge $BRIDGE"
fi
for h in "${HOSTS[@]}"; do
    ns=$(nsname "$h")
    ip netns add "$ns" 2>"$WORK/ip.err" ||
        setup_failed "ip netns add $ns failed: $(cat "$WORK/ip.err")"
    MADE_NS+=("$ns")
    if ! ip link add "$ns" type veth peer name eth0 netns "$ns"; then
        setup_failed "cannot create the veth pair of $ns"
    fi
    MADE_LINKS+=("$ns")
    if ! { ip link set "$ns" master "$BRIDGE" up &&
           ip -n "$ns" link set lo up &&
           ip -n "$ns" addr add "$(addr "$h")/24" dev eth0 &&
           ip -n "$ns" link set eth0 up; }; then
        setup_failed "cannot wire the namespace $ns"
    fi
done
note "network $NET.0/24 on $BRIDGE, namespaces $TAG-{$(IFS=,; echo "${HOSTS[*]}")}"

# on_host HOST LOG CMD... — start CMD in the background in HOST's network
# namespace, in a UTS namespace whose host name is HOST, in its own session,
# output appended to LOG. Sets HOST_PID (the pid of CMD itself: ip netns
# exec, unshare and sh all exec).
on_host() {
    local host=$1 log=$2
    shift 2
    # shellcheck disable=SC2016  # $0 and $@ belong to sh -c
    setsid ip netns exec "$(nsname "$host")" unshare --uts -- \
        sh -c 'hostname "$0" && exec "$@"' "$host" "$@" </dev/null >>"$log" 2>&1 &
    HOST_PID=$!
}

# wait_tcp ADDR PORT SECONDS [PID] — until ADDR:PORT accepts a connection
# from the root namespace; fails early when PID has died.
wait_tcp() {
    local a=$1 p=$2 tenths=$(($3 * 10)) pid=${4:-} i
    for ((i = 0; i < tenths; i++)); do
        # shellcheck disable=SC2016  # $0 and $1 belong to bash -c
        if timeout 1 bash -c 'exec 3<>"/dev/tcp/$0/$1"' "$a" "$p" 2>/dev/null; then
            return 0
        fi
        if [ -n "$pid" ] && ! kill -0 "$pid" 2>/dev/null; then
            return 1
        fi
        sleep 0.1
    done
    return 1
}

now() { echo "$EPOCHREALTIME"; }
since() { awk -v a="$1" -v b="$EPOCHREALTIME" 'BEGIN { printf "%.1f", b - a }'; }

# ------------------------------------------------------------------ db

DB_ADDR=$(addr db)
DB_SOCK=$WORK/db/mysqld.sock
DB_NAME=darkroom_so
DB_USER=darkroom
DB_PASS=$(od -An -N16 -tx1 /dev/urandom | tr -d ' \n')
mkdir -p "$WORK/db"
# mariadb-install-db (10.11.19) now and then dies with SIGSEGV in
# ha_maria::drop_table while bootstrapping; a second try has always worked.
for try in 1 2; do
    rm -rf "$WORK/db/data"
    mariadb-install-db --no-defaults --user=root --datadir="$WORK/db/data" \
        --auth-root-authentication-method=socket --skip-test-db \
        >"$WORK/db/install.log" 2>&1 </dev/null && break
    [ "$try" = 2 ] && setup_failed "mariadb-install-db failed (see db/install.log)"
    note "mariadb-install-db failed once, trying again"
done
# Durable defaults (innodb_flush_log_at_trx_commit = 1); TCP on the db
# host's address for the darkroom hosts, a socket for this script.
on_host db "$WORK/db/mariadb.log" mariadbd --no-defaults --user=root \
    --datadir="$WORK/db/data" --socket="$DB_SOCK" --port=3306 \
    --bind-address="$DB_ADDR" --skip-name-resolve --innodb-buffer-pool-size=64M \
    --pid-file="$WORK/db/mariadb.pid"
DB_PID=$HOST_PID

sql() {
    mariadb --no-defaults --socket="$DB_SOCK" -uroot -N -B "$DB_NAME" -e "$1"
}

for ((i = 0; i < 300; i++)); do
    mariadb-admin --no-defaults --socket="$DB_SOCK" -uroot --connect-timeout=2 ping \
        >/dev/null 2>&1 && break
    kill -0 "$DB_PID" 2>/dev/null || setup_failed "mariadbd died (see db/mariadb.log)"
    sleep 0.1
done
# Namespace to namespace goes through the bridge's forwarding path: with
# br_netfilter loaded, an iptables FORWARD policy of DROP (Docker's) stops it.
# shellcheck disable=SC2016  # $0 and $1 belong to bash -c
if ! ip netns exec "$(nsname app1)" timeout 3 bash -c 'exec 3<>"/dev/tcp/$0/$1"' "$DB_ADDR" 3306 \
        2>/dev/null; then
    setup_failed "app1 cannot reach $DB_ADDR:3306 over $BRIDGE (bridged traffic filtered? see net.bridge.bridge-nf-call-iptables)"
fi
mariadb --no-defaults --socket="$DB_SOCK" -uroot -e "
    CREATE DATABASE $DB_NAME;
    CREATE USER '$DB_USER'@'$NET.%' IDENTIFIED BY '$DB_PASS';
    GRANT ALL ON $DB_NAME.* TO '$DB_USER'@'$NET.%';" ||
    setup_failed "cannot create the database user"

# ------------------------------------------------------------------ s3, prov

S3_ADDR=$(addr s3)
S3_PORT=4568
S3_BASE=http://$S3_ADDR:$S3_PORT/darkroom
mkdir -p "$WORK/s3/data"
on_host s3 "$WORK/s3/s3rver.log" node "$S3RVER_BIN" -d "$WORK/s3/data" \
    -a "$S3_ADDR" -p "$S3_PORT" --silent --configure-bucket darkroom
S3_PID=$HOST_PID

PROV_ADDR=$(addr prov)
PROV=http://$PROV_ADDR:8000
SECRET=whsec_$(head -c 24 /dev/urandom | base64)
mkdir -p "$WORK/prov"
on_host prov "$WORK/prov/replicate.log" python3 "$ROOT/tests/fakes/replicate.py" \
    --host "$PROV_ADDR" --port 8000 --token r8_fake --secret "$SECRET"
PROV_PID=$HOST_PID

wait_tcp "$S3_ADDR" "$S3_PORT" 30 "$S3_PID" || setup_failed "s3rver did not start (see s3/s3rver.log)"
wait_tcp "$PROV_ADDR" 8000 30 "$PROV_PID" || setup_failed "the fake Replicate did not start"

# ------------------------------------------------------------------ config

API_KEY=drk_so_$(od -An -N20 -tx1 /dev/urandom | tr -d ' \n')

# write_conf HOST PUBLIC_URL — the darkroom.conf of HOST: MariaDB over TCP,
# the fake Replicate, the s3 sink served from the s3 host, a short lease.
write_conf() {
    local host=$1 public=$2
    mkdir -p "$WORK/$host"
    cat >"$WORK/$host/darkroom.conf" <<EOF
# darkroom configuration of host $host in the scale-out test (generated).
[server]
plugin_dir = $BUILD/plugins
api_keys = $API_KEY
public_url = $public
default_adapter = replicate
default_renditions = thumb
sink = s3

[database]
host = $DB_ADDR
port = 3306
user = $DB_USER
password = $DB_PASS
name = $DB_NAME
connect_timeout = 2s
io_timeout = 10s
migrations_dir = $ROOT/migrations

[worker]
processes = 2
wakeup_socket = $WORK/$host/wakeup.sock
lease = 4s
poll_min = 0.5s
poll_max = 2s
retry_base = 0.2s
retry_max = 2s
submit_grace = 2s
shutdown_grace = 2s

[adapter "replicate"]
token = r8_fake
api_base = $PROV/v1
webhook_secret = $SECRET

[sink "s3"]
plugin = s3
endpoint = http://$S3_ADDR:$S3_PORT
bucket = darkroom
access_key = S3RVER
secret_key = S3RVER
signature = v4
addressing = path
public_base_url = $S3_BASE
timeout = 10s
connect_timeout = 2s
retries = 1
EOF
}

APP1=http://$(addr app1):8080
APP2=http://$(addr app2):8080
write_conf app1 "$APP1"
write_conf app2 "$APP2"
write_conf work1 "$APP1"
write_conf work2 "$APP2"

ip netns exec "$(nsname app1)" env DARKROOM_CONF="$WORK/app1/darkroom.conf" \
    "$BUILD/darkroom" migrate </dev/null >"$WORK/app1/migrate.log" 2>&1 ||
    setup_failed "darkroom migrate from app1 failed: $(tail -n 3 "$WORK/app1/migrate.log")"

# ------------------------------------------------------------------ app hosts

# conf/lighttpd.conf runs $DARKROOM_ROOT/build/darkroom.fcgi.
mkdir -p "$WORK/approot/build"
ln -s "$BUILD/darkroom.fcgi" "$WORK/approot/build/darkroom.fcgi"

# start_app HOST — lighttpd with conf/lighttpd.conf, bound to HOST's address.
start_app() {
    local host=$1 dir=$WORK/$1
    mkdir -p "$dir/media"
    printf 'include "%s"\nserver.bind := "%s"\n' "$ROOT/conf/lighttpd.conf" "$(addr "$host")" \
        >"$dir/lighttpd.conf"
    on_host "$host" "$dir/lighttpd.out.log" env DARKROOM_PORT=8080 \
        DARKROOM_ROOT="$WORK/approot" DARKROOM_CONF="$dir/darkroom.conf" \
        DARKROOM_VAR="$dir" lighttpd -D -f "$dir/lighttpd.conf"
    wait_tcp "$(addr "$host")" 8080 30 "$HOST_PID"
}
start_app app1 || setup_failed "lighttpd on app1 did not start"
start_app app2 || setup_failed "lighttpd on app2 did not start"

# ------------------------------------------------------------------ workers

for h in work1 work2; do
    on_host "$h" "$WORK/$h/worker.log" env DARKROOM_CONF="$WORK/$h/darkroom.conf" \
        DARKROOM_DOWNLOAD_ALLOW_PRIVATE=1 DARKROOM_DOWNLOAD_ALLOW_HTTP=1 \
        DARKROOM_DOWNLOAD_HOSTS="$PROV_ADDR" "$BUILD/darkroom" worker
done

# Sample the lease owners of the jobs a few times a second, each line
# "unix-time owner job", for case 3.
(
    while :; do
        sql "SELECT UNIX_TIMESTAMP(NOW(6)), lease_owner, id FROM jobs
             WHERE lease_owner IS NOT NULL AND run_at > NOW(6)" 2>/dev/null
        sleep 0.2
    done
) >"$WORK/lease-owners.txt" &
SAMPLER_PID=$!

# ------------------------------------------------------------------ helpers

# The checks that read JSON: the job objects, s3rver's objects, the fake's
# record of creates and webhook deliveries.
cat >"$WORK/check.py" <<'PY'
"""check.py — JSON checks of test_scaleout.sh (arguments: see main)."""
import hashlib
import json
import sys
import urllib.error
import urllib.parse
import urllib.request

OPENER = urllib.request.build_opener(urllib.request.ProxyHandler({}))


def get(url, headers=None):
    req = urllib.request.Request(url, headers=headers or {})
    try:
        with OPENER.open(req, timeout=10) as r:
            return r.status, r.read()
    except urllib.error.HTTPError as e:
        return e.code, e.read()
    except OSError as e:
        return None, str(e).encode()


def sha(data):
    return hashlib.sha256(data).hexdigest()


def verify(api, key, s3base, ids):
    """Every job succeeded; each output and rendition is in s3rver, the
    original with the recorded SHA-256 and the provider's bytes."""
    problems, objects = [], 0
    for jid in ids:
        st, body = get("%s/v1/jobs/%s" % (api, jid), {"Authorization": "Bearer " + key})
        if st != 200:
            problems.append("%s: GET answered %s" % (jid, st))
            continue
        j = json.loads(body)
        if j["status"] != "succeeded":
            problems.append("%s: %s %s" % (jid, j["status"], json.dumps(j.get("error"))))
            continue
        outs = j.get("outputs") or []
        if not outs:
            problems.append("%s: no outputs" % jid)
        for o in outs:
            url = o.get("url") or ""
            if not url.startswith(s3base + "/") or not url.endswith(o.get("key") or "-"):
                problems.append("%s: output url %s is not the s3 host's key %s" % (jid, url, o.get("key")))
            st, data = get(url)
            if st != 200:
                problems.append("%s: GET %s answered %s" % (jid, url, st))
            elif sha(data) != o.get("sha256") or len(data) != o.get("bytes"):
                problems.append("%s: %s has other bytes than recorded" % (jid, url))
            else:
                objects += 1
            st, src = get(o.get("source_url") or "")
            if st == 200 and sha(src) != o.get("sha256"):
                problems.append("%s: stored bytes differ from the provider's" % jid)
            for r in o.get("renditions") or []:
                st, data = get(r.get("url") or "")
                if st != 200 or len(data) != r.get("bytes"):
                    problems.append("%s: rendition %s: %s" % (jid, r.get("url"), st))
                else:
                    objects += 1
    print("# %d jobs, %d objects read back from s3rver" % (len(ids), objects))
    for p in problems[:10]:
        print("#   " + p)
    return not problems


def state(prov):
    st, body = get(prov + "/_state")
    if st != 200:
        raise SystemExit("# the fake Replicate's /_state answered %s" % st)
    return json.loads(body)


def creates(prov, ids):
    """Each job was created exactly once at the provider."""
    counts = {}
    for c in state(prov)["creates"]:
        counts[c.get("job")] = counts.get(c.get("job"), 0) + 1
    bad = ["%s: %d" % (j, counts.get(j, 0)) for j in ids if counts.get(j, 0) != 1]
    if bad:
        print("# creates per job, not 1: " + ", ".join(bad[:10]))
    return not bad


def hooks(prov, host, ids):
    """Print "JOBS FAILED": the jobs among IDS whose webhooks go to HOST,
    and how many deliveries to it failed."""
    s = state(prov)
    want = set(ids)
    preds = {pid: p for pid, p in s["predictions"].items()
             if p.get("job") in want
             and urllib.parse.urlsplit(p.get("webhook") or "").hostname == host}
    bad = [d for d in s["webhook_deliveries"]
           if d.get("prediction") in preds and not (200 <= (d.get("status_code") or 0) < 300)]
    print(len(preds), len(bad))
    return True


def main(argv):
    cmd, args = argv[1], argv[2:]
    ids = [line.strip() for line in open(args[-1]) if line.strip()]
    if cmd == "verify":
        good = verify(args[0], args[1], args[2], ids)
    elif cmd == "creates":
        good = creates(args[0], ids)
    elif cmd == "hooks":
        good = hooks(args[0], args[1], ids)
    else:
        raise SystemExit("usage: check.py verify API KEY S3BASE IDS | creates PROV IDS | hooks PROV HOST IDS")
    return 0 if good else 1


sys.exit(main(sys.argv))
PY
check() { python3 "$WORK/check.py" "$@"; }

# post_batch NAME COUNT APP... — create COUNT jobs, taking the app hosts in
# turn; the ids go to $WORK/NAME.ids. INPUT_EXTRA and BODY_EXTRA (JSON
# members with a leading comma) go into the input and the request. Sets
# POST_BAD (answers other than 202). POST_PACE seconds pass between posts.
post_batch() {
    local name=$1 count=$2 i app code id
    shift 2
    local -a apps=("$@")
    : >"$WORK/$name.ids"
    POST_BAD=0
    for ((i = 0; i < count; i++)); do
        app=${apps[i % ${#apps[@]}]}
        code=$(curl -s -m 10 --noproxy '*' -o "$WORK/post.json" -w '%{http_code}' \
            -X POST "$app/v1/jobs" -H "Authorization: Bearer $API_KEY" \
            -H 'Content-Type: application/json' \
            -d "{\"model\": \"acme/scaleout\", \"input\": {\"prompt\": \"$name $i\"$INPUT_EXTRA}$BODY_EXTRA}")
        id=$(sed -n 's/.*"id" *: *"\(j_[0-9A-Za-z]*\)".*/\1/p' "$WORK/post.json")
        if [ "$code" = 202 ] && [ -n "$id" ]; then
            echo "$id" >>"$WORK/$name.ids"
        else
            POST_BAD=$((POST_BAD + 1))
        fi
        [ "$POST_PACE" = 0 ] || sleep "$POST_PACE"
    done
}

INPUT_EXTRA=
BODY_EXTRA=
POST_PACE=0 # seconds between two posts of post_batch

# in_list FILE — the ids of FILE as an SQL list.
in_list() { sed "s/.*/'&'/" "$1" | paste -sd, -; }

# wait_final FILE SECONDS — until every job of FILE has ended. Sets
# FINAL_COUNT.
wait_final() {
    local list tenths=$(($2 * 10)) total i
    list=$(in_list "$1")
    total=$(wc -l <"$1")
    for ((i = 0; i < tenths; i += 2)); do
        FINAL_COUNT=$(sql "SELECT COUNT(*) FROM jobs WHERE id IN ($list)
                           AND status IN ('succeeded', 'failed', 'canceled')")
        [ "$FINAL_COUNT" = "$total" ] && return 0
        sleep 0.2
    done
    return 1
}

# succeeded_once FILE — every job of FILE succeeded, and entered
# `succeeded` once in its event log (a second entry would be double work).
succeeded_once() {
    local list n
    list=$(in_list "$1")
    n=$(sql "SELECT COUNT(*) FROM jobs WHERE id IN ($list) AND status <> 'succeeded'")
    [ "$n" = 0 ] || { note "$n jobs did not succeed"; return 1; }
    n=$(sql "SELECT COUNT(*) FROM (SELECT job_id FROM job_events
             WHERE job_id IN ($list) AND to_status = 'succeeded'
             GROUP BY job_id HAVING COUNT(*) <> 1) t")
    [ "$n" = 0 ] || { note "$n jobs entered succeeded more than once"; return 1; }
    n=$(sql "SELECT COUNT(*) FROM (SELECT job_id FROM outputs
             WHERE job_id IN ($list) GROUP BY job_id HAVING COUNT(*) <> 1) t")
    [ "$n" = 0 ] || { note "$n jobs have other than one output row"; return 1; }
    return 0
}

# pause_host HOST / resume_host HOST — SIGSTOP / SIGCONT every process of
# HOST, to decide which worker host gets the next jobs.
pause_host() {
    # shellcheck disable=SC2046  # a list of pids
    kill -STOP $(ip netns pids "$(nsname "$1")")
}
resume_host() {
    # shellcheck disable=SC2046  # a list of pids
    kill -CONT $(ip netns pids "$(nsname "$1")")
}

# step_count HOST FILE — job steps HOST's workers finished for the jobs of FILE.
step_count() {
    grep -c -F -f <(sed 's/.*/event=job.step_done job=&/' "$2") "$WORK/$1/worker.log"
}

# ------------------------------------------------------------------ 1

h1=$(curl -s -m 5 --noproxy '*' -o /dev/null -w '%{http_code}' "$APP1/healthz")
h2=$(curl -s -m 5 --noproxy '*' -o /dev/null -w '%{http_code}' "$APP2/healthz")
if [ "$h1" = 200 ] && [ "$h2" = 200 ]; then
    ok "app1 ($APP1) and app2 ($APP2) answer /healthz 200 from the root namespace"
else
    fail "/healthz: app1 $h1, app2 $h2"
fi

# ------------------------------------------------------------------ 2

# Spread over more than a worker's longest idle sleep (5 s): no wakeup
# datagram crosses hosts, so each worker host finds jobs on its own timer,
# and a batch posted at once could all go to whichever woke first.
t0=$(now)
POST_PACE=$(awk -v n="$JOBS" 'BEGIN { printf "%.3f", 6.5 / n }')
post_batch batch1 "$JOBS" "$APP1" "$APP2"
POST_PACE=0
n=$(wc -l <"$WORK/batch1.ids")
if [ "$POST_BAD" -ne 0 ]; then
    fail "$POST_BAD of $JOBS posts were not answered 202"
elif ! wait_final "$WORK/batch1.ids" 60; then
    fail "only $FINAL_COUNT of $n jobs ended within 60 s"
else
    note "$n jobs posted to app1 and app2 in turn, all ended after $(since "$t0") s"
    if succeeded_once "$WORK/batch1.ids" &&
       check creates "$PROV" "$WORK/batch1.ids" &&
       check verify "$APP1" "$API_KEY" "$S3_BASE" "$WORK/batch1.ids"; then
        ok "$n jobs through both app hosts succeeded, each created once at the provider, outputs in s3rver with their SHA-256"
    else
        fail "jobs through both app hosts (see above)"
    fi
fi

# ------------------------------------------------------------------ 3

owners=$(sql "SELECT owner FROM worker_heartbeats WHERE seen_at > NOW(6) - INTERVAL 15 SECOND")
hb1=$(grep -c '^work1:' <<<"$owners")
hb2=$(grep -c '^work2:' <<<"$owners")
lo1=$(awk '$2 ~ /^work1:/' "$WORK/lease-owners.txt" | wc -l)
lo2=$(awk '$2 ~ /^work2:/' "$WORK/lease-owners.txt" | wc -l)
s1=$(step_count work1 "$WORK/batch1.ids")
s2=$(step_count work2 "$WORK/batch1.ids")
note "heartbeats: work1 $hb1, work2 $hb2 processes; lease samples: work1 $lo1, work2 $lo2; steps run: work1 $s1, work2 $s2"
if [ "$hb1" -ge 2 ] && [ "$hb2" -ge 2 ] && [ "$lo1" -gt 0 ] && [ "$lo2" -gt 0 ] &&
   [ "$s1" -gt 0 ] && [ "$s2" -gt 0 ]; then
    ok "both worker hosts did work (heartbeats, lease owners and steps from work1: and work2:)"
else
    fail "work by both worker hosts"
fi

# ------------------------------------------------------------------ 4

# Jobs in flight on work1 (work2 paused meanwhile), then work1's cable
# pulled while it holds a lease on a persist step, once every job is
# submitted: news from the provider cannot end a persist step, only the
# lease running out hands it to work2. A bigger image and two renditions
# make the persist steps longer. (A cut during a submit step,
# DARKROOM_SCALEOUT_CUT=submit, shows a known problem: the cut-off worker
# still sends its create when the network is back, after its lease has
# run out and work2 has submitted the job again, so the provider runs the
# prediction twice; the database writes are fenced, the create is not.)
veth1=$(nsname work1)
t0=$(now)
pause_host work2
INPUT_EXTRA=', "fake_width": 1600, "fake_height": 1200'
BODY_EXTRA=', "renditions": ["thumb", "card"]'
post_batch batch2 24 "$APP1" "$APP2"
INPUT_EXTRA=
BODY_EXTRA=
lease_q="SELECT id, step FROM jobs WHERE lease_owner LIKE 'work1:%' AND run_at > NOW(6)"
if [ "$CUT_STEP" = persist ]; then
    for ((i = 0; i < 100; i++)); do
        [ "$(sql "SELECT COUNT(*) FROM jobs WHERE id IN ($(in_list "$WORK/batch2.ids"))
                  AND step = 'submit'")" = 0 ] && break
        sleep 0.05
    done
fi
for ((i = 0; i < 300; i++)); do
    grep -q "$CUT_STEP\$" <<<"$(sql "$lease_q")" && break
    sleep 0.02
done
ip link set "$veth1" down
t_cut=$(now)
resume_host work2
# The steps work1 was running when it went away (it can write nothing any
# more). Jobs it polled keep its name with their next poll time, so only
# the cut step's rows count as leases held.
held=$(sql "$lease_q" | grep "$CUT_STEP\$")
nheld=$(grep -c . <<<"$held")
takeover=
if [ "$nheld" -gt 0 ]; then
    list=$(awk 'NF { printf "%s'"'"'%s'"'"'", sep, $1; sep = "," }' <<<"$held")
    # Taken over: leased by work2, or already finished by it.
    for ((i = 0; i < 300; i++)); do
        left=$(sql "SELECT COUNT(*) FROM jobs WHERE id IN ($list) AND status <> 'succeeded'
                    AND (lease_owner IS NULL OR lease_owner NOT LIKE 'work2:%')")
        if [ "$left" = 0 ]; then
            takeover=$(since "$t_cut")
            break
        fi
        sleep 0.1
    done
fi
if ! wait_final "$WORK/batch2.ids" 60; then
    fail "partition: only $FINAL_COUNT of 24 jobs ended within 60 s with work1 cut off"
    ip link set "$veth1" up
else
    note "partition: work1 cut off in $nheld $CUT_STEP step(s); work2 had them all after ${takeover:-?} s (lease 4 s); 24 jobs ended $(since "$t0") s after posting"
    # Before work1 comes back: what the jobs look like now must not change.
    snap=$(sql "SELECT id, status, lease_version, completed_at FROM jobs
                WHERE id IN ($(in_list "$WORK/batch2.ids")) ORDER BY id")
    ip link set "$veth1" up
    t_up=$(now)
    up_db=$(sql "SELECT NOW(6)")
    rejoined=
    for ((i = 0; i < 300; i++)); do
        n=$(sql "SELECT COUNT(*) FROM worker_heartbeats WHERE owner LIKE 'work1:%'
                 AND seen_at > '$up_db'")
        if [ "$n" -ge 2 ]; then
            rejoined=$(since "$t_up")
            break
        fi
        sleep 0.1
    done
    # work1 alone now (work2 paused): it must finish new jobs by itself.
    pause_host work2
    post_batch batch3 8 "$APP1" "$APP2"
    wait_final "$WORK/batch3.ids" 30
    resume_host work2
    s1=$(step_count work1 "$WORK/batch3.ids")
    snap2=$(sql "SELECT id, status, lease_version, completed_at FROM jobs
                 WHERE id IN ($(in_list "$WORK/batch2.ids")) ORDER BY id")
    cat "$WORK/batch2.ids" "$WORK/batch3.ids" >"$WORK/batch23.ids"
    fenced=$(grep -c 'event=job.lease_lost' "$WORK/work1/worker.log")
    note "work1 back: heartbeats after ${rejoined:-?} s, ran $s1 steps of 8 new jobs; its log shows $fenced refused stale writes (lease_lost)"
    if [ -z "$takeover" ]; then
        fail "partition: work1 held no $CUT_STEP lease at the cut, or work2 did not take it over within 30 s"
    elif [ -z "$rejoined" ]; then
        fail "partition: work1 did not come back (no heartbeat within 30 s)"
    elif [ "$snap" != "$snap2" ]; then
        fail "partition: jobs changed after work1 came back (fencing)"
        diff <(echo "$snap") <(echo "$snap2") | head -n 10 | sed 's/^/#   /'
    elif [ "$FINAL_COUNT" != 8 ] || [ "$s1" -eq 0 ]; then
        fail "partition: work1 alone ended $FINAL_COUNT of 8 new jobs after coming back"
    elif succeeded_once "$WORK/batch23.ids" && check creates "$PROV" "$WORK/batch23.ids"; then
        ok "partition: work2 took over work1's leases, every job succeeded once; work1 rejoined, works, and changed nothing it had lost"
    else
        fail "partition: jobs not succeeded exactly once (see above)"
    fi
fi

# ------------------------------------------------------------------ 5

# app1 down: every process of its host stopped.
app1_pids=$(ip netns pids "$(nsname app1)")
# shellcheck disable=SC2086  # a list of pids
kill -TERM $app1_pids 2>/dev/null
for ((i = 0; i < 50; i++)); do
    [ -z "$(ip netns pids "$(nsname app1)")" ] && break
    sleep 0.1
done
h1=$(curl -s -m 5 --noproxy '*' -o /dev/null -w '%{http_code}' "$APP1/healthz")
# work2 paused while the jobs are submitted, so that work1 submits them
# all and their webhooks go to app1 (its public_url); then it resumes.
pause_host work2
t0=$(now)
post_batch batch4 16 "$APP2"
list=$(in_list "$WORK/batch4.ids")
for ((i = 0; i < 150; i++)); do
    [ "$(sql "SELECT COUNT(*) FROM jobs WHERE id IN ($list) AND status = 'queued'")" = 0 ] && break
    sleep 0.1
done
resume_host work2
if [ "$h1" != 000 ]; then
    fail "app1 down: it still answers /healthz ($h1)"
elif [ "$POST_BAD" -ne 0 ]; then
    fail "app1 down: $POST_BAD of 16 posts to app2 were not answered 202"
elif ! wait_final "$WORK/batch4.ids" 60; then
    fail "app1 down: only $FINAL_COUNT of 16 jobs ended within 60 s"
else
    read -r via1 refused < <(check hooks "$PROV" "$(addr app1)" "$WORK/batch4.ids")
    note "app1 down: 16 jobs via app2 ended after $(since "$t0") s; $via1 had webhooks addressed to app1, $refused deliveries there failed"
    if [ "${via1:-0}" -eq 0 ] || [ "${refused:-0}" -eq 0 ]; then
        fail "app1 down: no webhook to app1 was refused (nothing to fail over)"
    elif succeeded_once "$WORK/batch4.ids" && check creates "$PROV" "$WORK/batch4.ids" &&
         check verify "$APP2" "$API_KEY" "$S3_BASE" "$WORK/batch4.ids"; then
        ok "app1 down: posts to app2 work; jobs whose webhooks went to app1 succeeded by polling"
    else
        fail "app1 down: jobs did not all succeed once (see above)"
    fi
fi

# A worker or app that crashed along the way would have said so.
if grep -E -m 3 'ERROR: [A-Za-z]+Sanitizer|runtime error:' "$WORK"/work?/worker.log "$WORK"/app?/app.log; then
    fail "a darkroom process reported errors"
fi
