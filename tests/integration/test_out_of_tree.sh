#!/usr/bin/env bash
# tests/integration/test_out_of_tree.sh — plugins/README.md, followed to
# the letter.
#
# The guide's commands are taken from the guide itself, not copied here:
# every ```sh block, line by line (a line ending in "\" joins the next),
# its ```ini blocks (appended to the config darkroom reads) and its one
# ```c block (saved as hello.c; it must be tests/plugins/example/hello.c
# byte for byte). Each sh line must be one this file knows (the table
# below): it is either run as written, or not run for a reason given in
# the table (a line that needs systemd, a line that says where darkroom is
# installed, for which the test sets the same variables to its own
# places). A line of the guide the table does not know, a table line the
# guide no longer has, an indented code block or a fence without a
# language fails the test, so the guide cannot drift from what is run.
#
# The lines run twice:
#   - plain: `make install` into /usr/local and /etc, as root, in a private
#     mount namespace where /usr/local and /etc are throw-away overlays
#     (needs root and unshare; otherwise said and not counted);
#   - staged: `make install DESTDIR=<scratch>/stage PREFIX=/usr`, then the
#     staged darkroom.fcgi (behind its own lighttpd) and `darkroom worker`
#     with a copy of the integration config whose paths point into the
#     stage, and a job through hello.so to `succeeded`.
# Before that, a few facts the guide states are checked against the code
# (the crash count of worker_crashed, also README.md's, the services
# table, the config key types, the mandatory operations, the file paths it
# names).
#
# Run by tests/run-integration.sh after the Python tests, with its
# environment (MariaDB, DARKROOM_CONF, DARKROOM_API_KEY, DARKROOM_TEST_DIR).
# DARKROOM_PLUGIN_GUIDE names another copy of the guide to check (e.g. an
# older one). Ends with "N passed, N failed"; its files are kept after a
# failure.

set -uo pipefail

ROOT=$(cd "$(dirname "${BASH_SOURCE[0]}")/../.." && pwd)
# The build under test: the one DARKROOM_BIN (set by the runner) is in.
if [ -n "${DARKROOM_BIN:-}" ]; then
    BUILD=$(cd "$(dirname "$DARKROOM_BIN")" && pwd)
else
    BUILD=${DARKROOM_BUILD_DIR:-${BUILD:-$ROOT/build}}
    case "$BUILD" in /*) ;; *) BUILD=$ROOT/$BUILD ;; esac
fi
GUIDE=${DARKROOM_PLUGIN_GUIDE:-$ROOT/plugins/README.md}
EXAMPLE=$ROOT/tests/plugins/example/hello.c

# -------------------------------------------------------------- the table
# Every line of the guide's sh blocks (comments and blank lines aside):
#   line:    the line, exactly (continuations joined with one space)
#   where:   checkout (darkroom's) or plugin (the folder holding hello.c)
#   plain:   "run", or why the plain run does not run it
#   staged:  "run", or why the staged run does not run it
# What the test does instead of a line it does not run is in stand_in().
TABLE=$(cat <<'EOF'
line: PREFIX=/usr/local DESTDIR=
where: plugin
plain: run
staged: the staged run is described by the next line

line: PREFIX=/usr DESTDIR=/tmp/stage
where: plugin
plain: the plain run installs into /usr/local (the line above)
staged: /tmp/stage may be another run's: the test sets PREFIX=/usr and DESTDIR=<its scratch folder>/stage

line: make install PREFIX="$PREFIX" DESTDIR="$DESTDIR"
where: checkout
plain: run
staged: run

line: export PKG_CONFIG_PATH="$DESTDIR$PREFIX/lib/pkgconfig" PKG_CONFIG_SYSROOT_DIR="$DESTDIR"
where: plugin
plain: run
staged: run

line: pkg-config --cflags darkroom-plugin
where: plugin
plain: run
staged: run

line: cc -shared -fPIC -fvisibility=hidden $(pkg-config --cflags darkroom-plugin) -o hello.so hello.c
where: plugin
plain: run
staged: run

line: cp hello.so "$(pkg-config --variable=plugindir darkroom-plugin)/"
where: plugin
plain: run
staged: run

line: darkroom config check
where: plugin
plain: run
staged: run

line: darkroom plugins list
where: plugin
plain: run
staged: run

line: systemctl restart darkroom-fcgi.service darkroom-worker.service
where: plugin
plain: needs systemd; the plain run starts no server (the job runs in the staged run)
staged: needs systemd; the test starts the staged darkroom.fcgi under lighttpd and the staged darkroom worker itself

line: KEY=$(cat /etc/darkroom/api_key) URL=http://127.0.0.1:8080
where: plugin
plain: no server runs in the plain run (the job runs in the staged run)
staged: the test sets KEY to the integration API key and URL to its own lighttpd on a free port

line: curl -s -X POST "$URL/v1/jobs" -H "Authorization: Bearer $KEY" -H 'Content-Type: application/json' -d '{"adapter": "hello", "model": "demo/hello", "input": {"prompt": "hi"}}'
where: plugin
plain: no server runs in the plain run (the job runs in the staged run)
staged: run
EOF
)

# The text output the guide promises for its job.
PROMISED_TEXT='Hello, darkroom from demo/hello'

passed=0
failed=0
ok() { echo "ok   $1"; passed=$((passed + 1)); }
fail() { echo "FAIL $1"; failed=$((failed + 1)); }
skip() { echo "skip $1"; }
# Stop here: the later steps need this one.
fatal() { fail "$1"; echo "$passed passed, $failed failed"; exit 1; }

declare -A T_WHERE=() T_PLAIN=() T_STAGED=() T_SEEN=()
T_LINES=()
load_table() {
    local l key val cur=
    while IFS= read -r l; do
        [ -z "$l" ] && continue
        key=${l%%: *}
        val=${l#*: }
        case "$key" in
            line) cur=$val; T_LINES+=("$cur") ;;
            where) T_WHERE[$cur]=$val ;;
            plain) T_PLAIN[$cur]=$val ;;
            staged) T_STAGED[$cur]=$val ;;
            *) echo "test_out_of_tree.sh: bad table line: $l" >&2; exit 2 ;;
        esac
    done <<<"$TABLE"
}
load_table

# extract_guide DIR — the guide's code blocks in order, as NUL-terminated
# records "kind<US>line number<US>text" in DIR/items (kind sh: one
# logical line; ini, c: the whole block). Problems with the guide's form
# go to stdout, one per line; the exit status is 1 when there are any.
extract_guide() {
    python3 - "$GUIDE" "$1" <<'PY'
import re
import sys

guide, out = sys.argv[1], sys.argv[2]
text = open(guide, encoding="utf-8").read()
lines = text.split("\n")
items, problems = [], []
fence = None
lang = ""
start = 0
body = []
prev_blank = True
last_text = ""   # the last non-blank line outside fences
for no, line in enumerate(lines, 1):
    if fence is None:
        m = re.match(r"^(`{3,}|~{3,})\s*([A-Za-z0-9_+-]*)\s*$", line)
        if m:
            fence, lang, start, body = m.group(1), m.group(2), no, []
            if not lang:
                problems.append(f"{guide}:{no}: a code block without a language (sh, c, ini or text)")
            continue
        # An indented code block: four spaces or a tab after a blank
        # line, not inside a list item.
        in_list = re.match(r"^(\s+|\d+\.\s|[-*]\s)", last_text) is not None
        if re.match(r"^( {4}|\t)\S", line) and prev_blank and not in_list:
            problems.append(f"{guide}:{no}: an indented code block: put commands in a ```sh block")
        prev_blank = line.strip() == ""
        if not prev_blank:
            last_text = line
        continue
    if line.startswith(fence) and line.strip() == fence:
        if lang == "sh":
            logical, first = None, start
            for i, l in enumerate(body, start + 1):
                if logical is None:
                    logical, first = "", i
                if logical:
                    l = l.lstrip()
                if l.endswith("\\"):
                    logical += l[:-1].rstrip() + " "
                    continue
                logical += l
                logical = logical.strip()
                if logical and not logical.startswith("#"):
                    if "<<" in logical:
                        problems.append(f"{guide}:{first}: a here-document: write commands the test can run line by line")
                    items.append(("sh", first, logical))
                logical = None
            if logical:
                problems.append(f"{guide}:{first}: the block ends inside a continued line")
        elif lang in ("ini", "c"):
            items.append((lang, start, "\n".join(body) + "\n"))
        fence = None
        prev_blank = True
        continue
    body.append(line)
if fence is not None:
    problems.append(f"{guide}:{start}: a code block that never ends")
with open(out + "/items", "wb") as f:
    for kind, no, t in items:
        f.write(f"{kind}\x1f{no}\x1f{t}\0".encode())
for p in problems:
    print(p)
sys.exit(1 if problems else 0)
PY
}

# check_facts — what the guide states against the code. One line per
# mismatch on stdout; exit status 1 when there is any.
check_facts() {
    python3 - "$GUIDE" "$ROOT" <<'PY'
import os
import re
import sys

guide, root = sys.argv[1], sys.argv[2]
g = open(guide, encoding="utf-8").read()
flat = re.sub(r"\s+", " ", g)
bad = []

def read(p):
    return open(os.path.join(root, p), encoding="utf-8").read()

words = "zero one two three four five six seven eight nine ten eleven twelve".split()

# The crash count: ENGINE_MAX_ABANDONED in core/engine.h.
m = re.search(r"^#define ENGINE_MAX_ABANDONED (\d+)$", read("core/engine.h"), re.M)
n = int(m.group(1))
said = re.findall(r"left unfinished (\w+) times in a row", flat)
if not said:
    bad.append("the guide does not say how many unfinished steps fail a job with worker_crashed")
for w in said:
    if w not in (str(n), words[n] if n < len(words) else None):
        bad.append(f"the guide says a step left unfinished '{w}' times fails the job; core/engine.h: ENGINE_MAX_ABANDONED {n}")
for w in re.findall(r"abandoned (\w+) times in a row", re.sub(r"\s+", " ", read("README.md"))):
    if w not in (str(n), words[n] if n < len(words) else None):
        bad.append(f"README.md says a lease abandoned '{w}' times fails the job; core/engine.h: ENGINE_MAX_ABANDONED {n}")

header = read("core/darkroom-plugin.h")
# The services table against struct dr_host.
host = re.search(r"typedef struct dr_host \{(.*?)\} dr_host;", header, re.S).group(1)
members = set(re.findall(r"\(\*(\w+)\)", host))
section = g.split("## The services table", 1)[1].split("\n## ", 1)[0]
listed = set()
for cell in re.findall(r"^\| `([a-z_/]+)\(", section, re.M):
    parts = cell.split("/")
    stem = parts[0].rsplit("_", 1)[0] + "_" if len(parts) > 1 else ""
    listed.add(parts[0])
    listed.update(stem + p for p in parts[1:])
for name in sorted(members - listed):
    bad.append(f"the services table lacks dr_host.{name}")
for name in sorted(listed - members):
    bad.append(f"the services table lists '{name}', which dr_host does not have")

# The config key types against enum dr_config_type.
types = set(re.findall(r"\bDR_CFG_([A-Z]+)\b\s*(?:=\s*\d+)?\s*,?\s*(?:/\*[^*]*\*/)?\s*\n",
                       re.search(r"typedef enum dr_config_type \{(.*?)\} dr_config_type;", header, re.S).group(1) + "\n"))
m = re.search(r"type \(((?:`[A-Z]+`,? ?)+)\)", flat)
named = set(re.findall(r"`([A-Z]+)`", m.group(1))) if m else set()
if types != named:
    bad.append(f"the guide's key types {sorted(named)} are not dr_config_type's {sorted(types)}")

# The mandatory operations against check_ops() in core/plugin.c.
ops = set(re.findall(r'missing = "(\w+)"', read("core/plugin.c")))
m = re.search(r"mandatory operations are present.*?for sinks;", flat)
if not m:
    bad.append("the guide does not list the mandatory operations")
else:
    named = set(re.findall(r"`(\w+)`", m.group(0).split("):", 1)[-1]))
    if named != ops:
        bad.append(f"the guide's mandatory operations {sorted(named)} are not core/plugin.c's {sorted(ops)}")

# Every file of the repository the guide names exists.
paths = set(re.findall(r"`((?:core|plugins|tests|conf|systemd|migrations)/[^`\s<>*]+)`", g))
paths |= {p[3:] for p in re.findall(r"\]\((\.\./[^)#\s]+)\)", g)}
for p in sorted(paths):
    m = re.match(r"^(.*)\{([^}]*)\}(.*)$", p)
    for q in ([m.group(1) + x + m.group(3) for x in m.group(2).split(",")] if m else [p]):
        if not os.path.exists(os.path.join(root, q)):
            bad.append(f"the guide names {q}, which does not exist")

for b in bad:
    print(b)
sys.exit(1 if bad else 0)
PY
}

# ------------------------------------------------------ running the guide

# Where a run keeps its things: set by plain_main / staged_main.
RUN=            # plain or staged
RUN_SRC=        # the plugin's folder
RUN_CONF=       # the config darkroom reads in this run
RUN_OUT=        # per-line output files

# expect LINE OUTPUT — what must hold after LINE ran (exit status 0 is
# checked before). Returns 0 when it holds, else 1 with the reason in
# WHY. Runs in the test's shell: the curl line sets JOB_ID.
WHY=
expect() {
    local line=$1 out=$2 got syms f
    WHY=
    case "$line" in
        "make install "*)
            for f in "$DESTDIR$PREFIX/include/darkroom-plugin.h" "$DESTDIR$PREFIX/lib/pkgconfig/darkroom-plugin.pc" \
                     "$DESTDIR$PREFIX/bin/darkroom" "$DESTDIR$PREFIX/bin/darkroom.fcgi"; do
                [ -e "$f" ] || { WHY="no $f"; return 1; }
            done ;;
        "pkg-config --cflags darkroom-plugin")
            got=$(tr -s ' \n' ' ' <"$out" | sed 's/ *$//')
            [ "$got" = "-I$DESTDIR$PREFIX/include" ] || { WHY="printed '$got', not '-I$DESTDIR$PREFIX/include'"; return 1; } ;;
        "cc "*)
            syms=$(nm -D --defined-only "$RUN_SRC/hello.so" 2>&1 | awk '{ print $3 }')
            [ "$syms" = dr_plugin_entry ] || { WHY="hello.so exports: $syms"; return 1; } ;;
        "cp hello.so "*)
            cmp -s "$RUN_SRC/hello.so" "$DESTDIR$PREFIX/lib/darkroom/plugins/hello.so" \
                || { WHY="hello.so is not in $DESTDIR$PREFIX/lib/darkroom/plugins"; return 1; } ;;
        "darkroom config check")
            [ "$(command -v darkroom)" = "$DESTDIR$PREFIX/bin/darkroom" ] \
                || { WHY="darkroom is $(command -v darkroom), not the installed one"; return 1; }
            grep -qxF "ok: $RUN_CONF" "$out" || { WHY="no 'ok: $RUN_CONF'"; return 1; } ;;
        "darkroom plugins list")
            grep -qE '^hello +adapter +1\.0 +example adapter: answers at once with a PNG and text$' "$out" \
                || { WHY="no hello line"; return 1; } ;;
        "curl "*)
            JOB_ID=$(python3 -c 'import json, sys; print(json.load(sys.stdin)["id"])' <"$out" 2>/dev/null)
            [ -n "$JOB_ID" ] || { WHY="no job id in the answer"; return 1; } ;;
    esac
    return 0
}

# stand_in LINE — what the staged run does instead of a line it skips.
stand_in() {
    case "$1" in
        "PREFIX=/usr DESTDIR=/tmp/stage")
            PREFIX=/usr DESTDIR=$T_DIR/stage ;;
        "systemctl restart "*)
            lighttpd_start "$T_DIR/web" "$WEB_PORT" "$RUN_CONF" "$DESTDIR$PREFIX/bin/darkroom.fcgi" \
                || { echo "lighttpd with the staged darkroom.fcgi did not start"; return 1; }
            DARKROOM_CONF=$RUN_CONF setsid "$DESTDIR$PREFIX/bin/darkroom" worker --processes 1 \
                >"$T_DIR/worker.log" 2>&1 </dev/null &
            WORKER_PID=$! ;;
        "KEY="*)
            KEY=$DARKROOM_API_KEY URL=http://127.0.0.1:$WEB_PORT ;;
    esac
}

# follow_guide — run the guide's items for $RUN, in order.
follow_guide() {
    local kind no text how where out rc n=0
    while IFS=$'\x1f' read -r -d '' kind no text; do
        case "$kind" in
            c) continue ;;   # saved as hello.c before the run
            ini)
                if printf '\n%s' "$text" >>"$RUN_CONF"; then
                    ok "$RUN: guide line $no: the ini block, appended to $RUN_CONF"
                else
                    fail "$RUN: cannot append the guide's ini block (line $no) to $RUN_CONF"
                    return 1
                fi
                continue ;;
        esac
        if [ "$RUN" = plain ]; then how=${T_PLAIN[$text]}; else how=${T_STAGED[$text]}; fi
        if [ "$how" != run ]; then
            skip "$RUN: guide line $no: $text ($how)"
            if [ "$RUN" = staged ] && ! stand_in "$text"; then
                fail "$RUN: what the test does instead of guide line $no failed"
                return 1
            fi
            continue
        fi
        where=${T_WHERE[$text]}
        n=$((n + 1))
        out=$RUN_OUT/$n.out
        if [ "$where" = checkout ]; then cd "$ROOT" || return 1; else cd "$RUN_SRC" || return 1; fi
        # shellcheck disable=SC2294  # the line is the guide's, run as written
        { eval "$text"; } >"$out" 2>&1 </dev/null
        rc=$?
        cd "$ROOT" || return 1
        if [ "$rc" -ne 0 ]; then
            fail "$RUN: guide line $no: $text: exit status $rc: $(tail -n 5 "$out" | tr '\n' ' ')"
            return 1
        fi
        if expect "$text" "$out"; then
            ok "$RUN: guide line $no: $text"
        else
            fail "$RUN: guide line $no: $text: $WHY"
            return 1
        fi
    done <"$T_ITEMS"
    return 0
}

# ------------------------------------------------------------ plain run
# Executed as `unshare -m ... test_out_of_tree.sh --plain DIR`: a private
# mount namespace, /usr/local and /etc overlaid by folders under DIR.
# Prints ok/FAIL lines and leaves "passed failed" in DIR/counts.
plain_main() {
    T_DIR=$1
    T_ITEMS=$T_DIR/items
    local d
    for d in usr-local etc; do
        mkdir -p "$T_DIR/ov/$d/upper" "$T_DIR/ov/$d/work" || exit 1
    done
    if ! mount -t overlay overlay -o "lowerdir=/usr/local,upperdir=$T_DIR/ov/usr-local/upper,workdir=$T_DIR/ov/usr-local/work" /usr/local \
        || ! mount -t overlay overlay -o "lowerdir=/etc,upperdir=$T_DIR/ov/etc/upper,workdir=$T_DIR/ov/etc/work" /etc; then
        fail "plain: cannot overlay /usr/local and /etc in a private mount namespace"
        echo "$passed $failed" >"$T_DIR/counts"
        exit 1
    fi
    unset DARKROOM_CONF PREFIX DESTDIR PKG_CONFIG_PATH PKG_CONFIG_SYSROOT_DIR KEY URL
    case ":$PATH:" in *:/usr/local/bin:*) ;; *) PATH=/usr/local/bin:$PATH ;; esac
    export BUILD
    RUN=plain
    RUN_SRC=$T_DIR/plain/src
    RUN_OUT=$T_DIR/plain/out
    RUN_CONF=/etc/darkroom/darkroom.conf
    mkdir -p "$RUN_SRC" "$RUN_OUT"
    cp "$T_DIR/hello.c" "$RUN_SRC/hello.c"
    follow_guide
    echo "$passed $failed" >"$T_DIR/counts"
    exit 0
}

if [ "${1:-}" = --plain ]; then
    plain_main "$2"
fi

# ------------------------------------------------------------ main
# shellcheck source=tests/lib/services.sh
. "$ROOT/tests/lib/services.sh"

T_DIR=$(mktemp -d "${DARKROOM_TEST_DIR:-${TMPDIR:-/tmp}}/out-of-tree.XXXXXX")
T_ITEMS=$T_DIR/items
WORKER_PID=
finish() {
    local rc=$?
    set +e
    if [ -n "$WORKER_PID" ]; then
        kill -TERM "$WORKER_PID" 2>/dev/null
        for _ in $(seq 1 100); do kill -0 "$WORKER_PID" 2>/dev/null || break; sleep 0.1; done
        kill -KILL -- "-$WORKER_PID" 2>/dev/null
        wait "$WORKER_PID" 2>/dev/null
    fi
    services_cleanup
    # Kept for a look after a failure.
    if [ "$rc" -eq 0 ] && [ "$failed" -eq 0 ]; then
        rm -rf "$T_DIR"
    else
        echo "test_out_of_tree: its files are in $T_DIR" >&2
    fi
}
trap finish EXIT
trap 'exit 130' INT
trap 'exit 143' TERM

# -- 1. the guide's form and its table
if problems=$(extract_guide "$T_DIR"); then
    ok "the guide's code blocks are all fenced with a language"
else
    fail "the guide's code blocks: $(printf '%s' "$problems" | tr '\n' ';')"
fi
[ -f "$T_ITEMS" ] || fatal "no code blocks read from $GUIDE"

n_c=0
unknown=()
while IFS=$'\x1f' read -r -d '' kind no text; do
    case "$kind" in
        c)
            n_c=$((n_c + 1))
            printf '%s' "$text" >"$T_DIR/hello.c" ;;
        sh)
            if [ -n "${T_WHERE[$text]+set}" ]; then
                T_SEEN[$text]=1
            else
                unknown+=("$GUIDE:$no: $text")
            fi ;;
    esac
done <"$T_ITEMS"
if [ "$n_c" -eq 1 ] && cmp -s "$T_DIR/hello.c" "$EXAMPLE"; then
    ok "the guide's C block is tests/plugins/example/hello.c"
else
    fail "the guide must hold tests/plugins/example/hello.c as its one \`\`\`c block (found $n_c, or it differs)"
fi
if [ "${#unknown[@]}" -eq 0 ]; then
    ok "every command of the guide is known to this test"
else
    for u in "${unknown[@]}"; do
        fail "a command of the guide this test does not know (run it or give the reason it is not run, in the table): $u"
    done
fi
stale=0
for l in "${T_LINES[@]}"; do
    if [ -z "${T_SEEN[$l]+set}" ]; then
        fail "the table has a line the guide no longer has: $l"
        stale=1
    fi
done
[ "$stale" -eq 0 ] && ok "every line of the table is in the guide"

# -- 2. facts
if problems=$(check_facts); then
    ok "the guide's crash count, services, key types, operations and paths match the code"
else
    while IFS= read -r p; do fail "$p"; done <<<"$problems"
fi
# The runs below follow the guide only once it is all known.
if [ "$failed" -ne 0 ]; then
    echo "$passed passed, $failed failed"
    exit 1
fi

# -- 3. the plain run, in a private mount namespace
if [ "$(id -u)" -ne 0 ] || ! command -v unshare >/dev/null 2>&1 || ! unshare -m true 2>/dev/null; then
    skip "plain: installing into /usr/local needs root and a private mount namespace (unshare -m)"
else
    had_hello=0
    [ -e /usr/local/lib/darkroom/plugins/hello.so ] && had_hello=1
    unshare -m --propagation private bash "${BASH_SOURCE[0]}" --plain "$T_DIR"
    if read -r p f <"$T_DIR/counts" 2>/dev/null; then
        passed=$((passed + p))
        failed=$((failed + f))
    else
        fail "plain: the run in the mount namespace ended without counts"
    fi
    if { [ "$had_hello" = 0 ] && [ -e /usr/local/lib/darkroom/plugins/hello.so ]; } ||
        grep -qs 'drk_plain_install_test_key' /etc/darkroom/api_key; then
        fail "plain: the run wrote into the real /usr/local or /etc"
    fi
fi

# -- 4. the staged run
RUN=staged
RUN_SRC=$T_DIR/staged/src
RUN_OUT=$T_DIR/staged/out
RUN_CONF=$T_DIR/darkroom.conf
mkdir -p "$RUN_SRC" "$RUN_OUT"
cp "$T_DIR/hello.c" "$RUN_SRC/hello.c"
WEB_PORT=$(free_port)
STAGE=$T_DIR/stage
# The integration config with its paths in the stage (the guide: "a config
# whose plugin_dir and migrations_dir point into DESTDIR").
sed -e "s|^plugin_dir = .*|plugin_dir = $STAGE/usr/lib/darkroom/plugins|" \
    -e "s|^migrations_dir = .*|migrations_dir = $STAGE/usr/share/darkroom/migrations|" \
    -e "s|^public_url = .*|public_url = http://127.0.0.1:$WEB_PORT|" \
    -e "s|^wakeup_socket = .*|wakeup_socket = $T_DIR/wakeup.sock|" \
    "$DARKROOM_CONF" >"$RUN_CONF"
export DARKROOM_CONF=$RUN_CONF BUILD
PATH=$STAGE/usr/bin:$PATH
unset PREFIX DESTDIR PKG_CONFIG_PATH PKG_CONFIG_SYSROOT_DIR KEY URL
JOB_ID=
follow_guide
if [ -z "$JOB_ID" ]; then
    fail "staged: the guide's commands created no job"
else
    doc=
    status=
    for _ in $(seq 1 120); do
        doc=$(curl -sS -H "Authorization: Bearer $KEY" "$URL/v1/jobs/$JOB_ID")
        status=$(printf '%s' "$doc" | python3 -c 'import json, sys; print(json.load(sys.stdin)["status"])' 2>/dev/null)
        case "$status" in succeeded|failed|canceled) break ;; esac
        sleep 0.25
    done
    if [ "$status" = succeeded ]; then
        ok "staged: the job through hello.so succeeded"
    else
        echo "$doc"
        tail -n 20 "$T_DIR/worker.log"
        fail "staged: the job through hello.so ended '$status'"
    fi
    if grep -qF "$PROMISED_TEXT" "$GUIDE" && printf '%s' "$doc" | grep -qF "$PROMISED_TEXT"; then
        ok "staged: the job shows the text output the guide promises ($PROMISED_TEXT)"
    else
        fail "staged: '$PROMISED_TEXT' is not in both the guide and the job: $doc"
    fi
fi

echo "$passed passed, $failed failed"
[ "$failed" -eq 0 ]
