#!/usr/bin/env bash
# tests/integration/test_readme.sh — every shell line of README.md, run as
# written, against `make run`, so the README cannot drift from darkroom.
#
#   1. a copy of the checkout (its tracked and untracked files, and the
#      build's programs, so `make run` has nothing to build), as a fresh
#      clone would be after `make`;
#   2. the README's ```sh blocks are read: every line runs, except those
#      the table SKIP below names with the reason (`make run` itself is
#      started first, exactly as written; `make check` is this suite);
#   3. `make run` as written, from the copy, with a user's bare
#      environment (no DARKROOM_* variable); as root the whole test runs in
#      a network namespace of its own, so the README's port 8080 is used
#      as written without touching the machine's; otherwise 8080 becomes a
#      free port in the lines (the only change) and DARKROOM_PORT says so;
#   4. the blocks run in README order in one bash session from the copy's
#      root (variables such as KEY and ID carry over), under `set -e`:
#      every command must succeed, and every curl must answer a status its
#      comment names — "(202; 409 once …)" allows 202 and 409; a comment
#      naming none allows any 2xx — with every error a problem document;
#   5. every ```ini block passes `darkroom config check` (with the
#      server and sink sections a config needs besides);
#   6. SIGTERM stops make run cleanly.
#
# Prints each README line it ran ("# README:N …"), one "ok"/"FAIL" per
# block and per curl line, and ends with "N passed, N failed".
# Knobs: DARKROOM_BUILD_DIR or BUILD (default ./build); DARKROOM_TEST_KEEP=1
# keeps the temporary directory.

set -uo pipefail

ROOT=$(cd "$(dirname "${BASH_SOURCE[0]}")/../.." && pwd)
BUILD=${DARKROOM_BUILD_DIR:-${BUILD:-build}}
case "$BUILD" in /*) ;; *) BUILD=$ROOT/$BUILD ;; esac

# As root: again, in a network namespace of our own (loopback only).
if [ -z "${DARKROOM_README_NETNS:-}" ] && [ "$(id -u)" = 0 ] &&
    command -v unshare >/dev/null 2>&1 && command -v ip >/dev/null 2>&1; then
    if unshare --net true 2>/dev/null; then
        exec unshare --net -- env DARKROOM_README_NETNS=1 DARKROOM_BUILD_DIR="$BUILD" \
            bash "${BASH_SOURCE[0]}" "$@"
    fi
fi
NETNS=0
if [ -n "${DARKROOM_README_NETNS:-}" ]; then
    ip link set lo up || { echo "FAIL cannot bring loopback up in the namespace"; echo "0 passed, 1 failed"; exit 1; }
    NETNS=1
fi

passed=0
failed=0
ok() { echo "ok   $*"; passed=$((passed + 1)); }
fail() { echo "FAIL $*"; failed=$((failed + 1)); }
finish() {
    echo "$passed passed, $failed failed"
    [ "$failed" -eq 0 ]
    exit
}

TMP=$(mktemp -d "${TMPDIR:-/tmp}/darkroom-readme.XXXXXX")
COPY=$TMP/darkroom
MAKE_PID=""

# shellcheck source=tests/lib/makerun.sh
. "$ROOT/tests/lib/makerun.sh"

cleanup() {
    local rc=$?
    makerun_kill "$MAKE_PID" "$COPY"
    if [ "${DARKROOM_TEST_KEEP:-0}" = 1 ] || [ "$failed" -ne 0 ]; then
        rm -rf "$COPY/var/mysql"
        echo "kept $TMP"
    else
        rm -rf "$TMP"
    fi
    exit "$rc"
}
trap cleanup EXIT

# -- 1. the copy
mkdir -p "$COPY"
if ! (cd "$ROOT" && git ls-files -z --cached --others --exclude-standard |
        xargs -0 cp -p --parents -t "$COPY" 2>"$TMP/copy.err"); then
    fail "cannot copy the checkout: $(head -n 3 "$TMP/copy.err")"
    finish
fi
mkdir -p "$COPY/build"
for f in darkroom darkroom.fcgi libdarkroom.a core plugins; do
    [ -e "$BUILD/$f" ] && cp -a "$BUILD/$f" "$COPY/build/"
done

# -- 2. the README's shell lines
PORT=8080
[ "$NETNS" = 1 ] || PORT=$(python3 -c 'import socket
s = socket.socket(); s.bind(("127.0.0.1", 0)); print(s.getsockname()[1])')
if ! python3 - "$COPY/README.md" "$TMP" "$PORT" <<'EOF'; then
import re, sys
readme, tmp, port = sys.argv[1], sys.argv[2], sys.argv[3]
# Lines not run, with the reason; anything else in a ```sh block runs.
SKIP = [
    (r"^make run\b", "started first, as written, in the background"),
    (r"^make check\b", "the suite this test is part of"),
    (r"^(useradd|chgrp|systemctl) ",
     "a system install: tests/integration/test_install.sh and "
     "test_systemd.sh cover it"),
]
lines = open(readme, encoding="utf-8").read().split("\n")
script, blocks, curls, runs, skipped = [], [], [], [], []
start = None
for n, line in enumerate(lines, 1):
    text = line
    if start is None:
        if re.fullmatch(r"```sh\s*", line):
            start = n
            text = "__readme_block_start %d" % n
        else:
            text = ""
    elif re.fullmatch(r"```\s*", line):
        blocks.append((start, n))
        text = "__readme_block_end %d" % start
        start = None
    else:
        body = line.strip()
        reason = next((r for p, r in SKIP if re.search(p, body)), None)
        if reason:
            skipped.append((n, body, reason))
            text = ":"
        elif body and not body.startswith("#"):
            runs.append((n, body))
            if re.search(r"(^|[\s(|;$])curl\s", body):
                prev = lines[n - 2].strip() if n >= 2 else ""
                allowed = []
                if prev.startswith("#"):
                    for group in re.findall(r"\(([^)]*)\)", prev):
                        allowed = re.findall(r"\b[1-5]\d\d\b", group)
                        if allowed:
                            break
                curls.append((n, allowed))
            if re.search(r"curl\s.*(\s-w\b|--write-out|\s-D\b|--dump-header)", body):
                sys.exit("README:%d: a curl line with -w or -D; the test "
                         "reads the status with -D itself" % n)
    if port != "8080":
        text = text.replace("127.0.0.1:8080", "127.0.0.1:" + port)
    script.append(text)
if start is not None:
    sys.exit("README:%d: a ```sh block that never ends" % start)
# Each ```ini block, for `config check`.
ini, cur = [], None
for n, line in enumerate(lines, 1):
    if cur is None and re.fullmatch(r"```ini\s*", line):
        cur = (n, [])
    elif cur is not None and re.fullmatch(r"```\s*", line):
        ini.append(cur)
        cur = None
    elif cur is not None:
        cur[1].append(line)
for n, body in ini:
    with open("%s/ini-%d" % (tmp, n), "w") as f:
        f.write("\n".join(body) + "\n")
if not blocks or not curls:
    sys.exit("README.md has no ```sh block with curl lines")
open(tmp + "/readme.sh", "w").write("\n".join(script) + "\n")
# A block whose lines are all skipped has nothing to pass or fail.
with open(tmp + "/blocks", "w") as f:
    for a, b in blocks:
        if any(a < n < b for n, _ in runs):
            f.write("%d %d\n" % (a, b))
with open(tmp + "/curls", "w") as f:
    for n, allowed in curls:
        f.write("%d %s\n" % (n, ",".join(allowed) or "2xx"))
with open(tmp + "/runs", "w") as f:
    for n, body in runs:
        f.write("%d %s\n" % (n, body))
with open(tmp + "/skipped", "w") as f:
    for n, body, reason in skipped:
        f.write("%d %s — %s\n" % (n, body, reason))
EOF
    fail "README.md: its shell blocks cannot be read"
    finish
fi
while read -r n rest; do echo "# README:$n not run: $rest"; done <"$TMP/skipped"
grep -q 'make run' "$TMP/skipped" || { fail "README.md shows no 'make run' line"; finish; }

# The shell the README lines run in: a user's bare environment.
USER_ENV=(env -i "PATH=/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin"
    "HOME=$TMP/home" "LANG=C.UTF-8" "TERM=dumb")
mkdir -p "$TMP/home"
for v in ASAN_OPTIONS UBSAN_OPTIONS LSAN_OPTIONS; do
    [ -n "${!v:-}" ] && USER_ENV+=("$v=${!v}")
done
[ "$PORT" = 8080 ] || USER_ENV+=("DARKROOM_PORT=$PORT")

# -- 3. make run, as written
MAKE_LINE=$(grep -m 1 ' make run' "$TMP/skipped" | sed 's/^[0-9]* //; s/ — .*//')
OUT=$TMP/make-run.out
(cd "$COPY" && exec setsid "${USER_ENV[@]}" bash -c "$MAKE_LINE") </dev/null >"$OUT" 2>&1 &
MAKE_PID=$!
if makerun_wait_up "$OUT" "$MAKE_PID"; then
    ok "'$MAKE_LINE' came up on port $PORT$([ "$NETNS" = 1 ] && echo ' (own network namespace)')"
else
    fail "'$MAKE_LINE' did not come up"
    tail -n 30 "$OUT"
    finish
fi

# -- 4. the blocks, in order, in one session
cat >"$TMP/prelude.sh" <<'EOF'
# Sourced by bash (BASH_ENV) before the README lines.
__readme_block_start() { echo "start $1" >>"$README_TEST_DIR/progress"; }
__readme_block_end() { echo "end $1" >>"$README_TEST_DIR/progress"; }
# curl as the README writes it, plus -D to read the status line and
# Content-Type of the answer: logs "LINE STATUS VERDICT", and fails when
# the status is not one the README's comment allows.
curl() {
    local -
    set +e
    local called=${BASH_LINENO[0]} line=0 allowed=2xx n a h rc status ctype verdict
    while read -r n a; do
        [ "$n" -le "$called" ] && { line=$n; allowed=$a; }
    done <"$README_TEST_DIR/curls"
    h=$(mktemp)
    command curl -D "$h" "$@"
    rc=$?
    status=$(awk '/^HTTP\//{s=$2} END{print s}' "$h")
    ctype=$(awk 'tolower($1)=="content-type:"{$1=""; c=$0} END{print c}' "$h" | tr -d '\r' | sed 's/^ *//')
    rm -f "$h"
    verdict=ok
    if [ "$rc" -ne 0 ]; then
        verdict="curl exited with $rc"
    elif [ "$allowed" = 2xx ] && [ "${status:0:1}" != 2 ]; then
        verdict="answered $status, not 2xx"
    elif [ "$allowed" != 2xx ] && [[ ",$allowed," != *",$status,"* ]]; then
        verdict="answered $status, not one of $allowed"
    elif [ "${status:0:1}" != 2 ] && [[ "$ctype" != application/problem+json* ]]; then
        verdict="answered $status as '$ctype', not a problem document"
    fi
    echo "$line $status $verdict" >>"$README_TEST_DIR/http"
    [ "$verdict" = ok ]
}
trap 'echo "$LINENO $BASH_COMMAND" >>"$README_TEST_DIR/errors"' ERR
EOF
: >"$TMP/progress"
: >"$TMP/http"
: >"$TMP/errors"
(cd "$COPY" && timeout -k 5 300 "${USER_ENV[@]}" README_TEST_DIR="$TMP" BASH_ENV="$TMP/prelude.sh" \
    bash -e -o pipefail "$TMP/readme.sh") </dev/null >"$TMP/session.log" 2>&1
rc=$?
while read -r n rest; do echo "# README:$n $rest"; done <"$TMP/runs"

while read -r a b; do
    if grep -qx "end $a" "$TMP/progress"; then
        ok "README:$a-$b: every line ran and succeeded"
    elif grep -qx "start $a" "$TMP/progress"; then
        err=$(head -n 1 "$TMP/errors")
        err=${err%% *}
        fail "README:$a-$b: stopped at README:$err: $(sed -n "${err:-0}p" "$COPY/README.md" | sed 's/^ *//') (session status $rc)"
    else
        fail "README:$a-$b: not reached"
    fi
done <"$TMP/blocks"
while read -r n allowed; do
    calls=$(awk -v n="$n" '$1 == n' "$TMP/http")
    if [ -z "$calls" ]; then
        fail "README:$n: the curl never ran"
    elif bad=$(awk -v n="$n" '$1 == n && $3 != "ok"' "$TMP/http") && [ -n "$bad" ]; then
        fail "README:$n: $(head -n 1 <<<"$bad" | cut -d' ' -f3-)"
    else
        ok "README:$n: curl answered $(awk '{print $2}' <<<"$calls" | sort -u | tr '\n' ' ')(allowed: $allowed)"
    fi
done <"$TMP/curls"
if [ "$failed" -ne 0 ]; then
    echo "--- the session's output (last 40 lines)"
    tail -n 40 "$TMP/session.log"
fi

# -- the ```ini blocks: each, with the little a config needs besides,
# passes `config check` (from conf/, as the shipped config, so relative
# paths resolve alike).
for f in "$TMP"/ini-*; do
    [ -e "$f" ] || continue
    n=${f##*/ini-}
    conf=$COPY/conf/readme-ini-$n.conf
    {
        printf '[server]\nplugin_dir = ../build/plugins\napi_keys = drk_readme_ini_check_0123456789\n'
        printf '[sink "fs"]\nroot = %s\nbase_url = http://127.0.0.1:8080/media\n\n' "$TMP/ini-media"
        # A block of other settings still needs an adapter to load.
        grep -q '^\[adapter ' "$f" || printf '[adapter "null"]\n\n'
        cat "$f"
    } >"$conf"
    out=$(cd "$COPY" && "${USER_ENV[@]}" build/darkroom --config "$conf" config check 2>&1)
    if [ "$(head -c 4 <<<"$out")" = "ok: " ]; then
        ok "README:$n: the ini block passes config check"
    else
        fail "README:$n: the ini block: $out"
    fi
    rm -f "$conf"
done

# -- 5. SIGTERM
makerun_stop "make run" "$MAKE_PID" "$OUT" "$COPY" && MAKE_PID=""

finish
