#!/usr/bin/env bash
# tests/bench/run.sh — the benchmark suite of `make bench`: figures, not
# tests. Every section tests/bench/bench_<name>.py or .sh runs under
# tests/run-integration.sh (MariaDB with durable commits, lighttpd with
# darkroom.fcgi, the fake Replicate and s3rver on free loopback ports,
# stopped at the end even after a failure) and appends its figures to
# build/bench/results.csv (tests/bench/benchlib.py); tests/bench/report.py
# then prints the table and writes build/bench/results.md and chart.png.
#
#   tests/bench/run.sh            every section
#   tests/bench/run.sh NAME...    only bench_NAME (intake, webhooks, ...)
#
# Bounded: every load has a fixed duration or count, and each section has
# DARKROOM_TEST_TIMEOUT seconds (default 900). Loopback only. Expects the
# build (make bench builds it first) and the Debian packages of
# `tests/lib/deps.sh build test bench`; installs sharp (npm), the Node
# image library the renditions are compared with, into build/bench/node/.

set -euo pipefail

ROOT=$(cd "$(dirname "${BASH_SOURCE[0]}")/../.." && pwd)
BUILD=${DARKROOM_BUILD_DIR:-${BUILD:-build}}
case "$BUILD" in /*) ;; *) BUILD=$ROOT/$BUILD ;; esac
OUT=$BUILD/bench
SHARP_VERSION=0.33.5
cd "$ROOT"

sections=()
if [ "$#" -gt 0 ]; then
    for name in "$@"; do
        found=
        for f in tests/bench/bench_"$name".py tests/bench/bench_"$name".sh; do
            [ -f "$f" ] && { sections+=("$ROOT/$f"); found=1; }
        done
        [ -n "$found" ] || { echo "bench: no section $name in tests/bench/" >&2; exit 2; }
    done
else
    for f in tests/bench/bench_*.py tests/bench/bench_*.sh; do
        [ -f "$f" ] && sections+=("$ROOT/$f")
    done
fi

[ "${#sections[@]}" -gt 0 ] || { echo "bench: no sections in tests/bench/" >&2; exit 2; }

mkdir -p "$OUT"
rm -f "$OUT/results.csv" "$OUT/results.md" "$OUT/chart.png"

# sharp, pinned, in its own prefix: it is large and only the benchmark uses
# it, so `make check` never installs it.
if ! node -e "process.exit(require('$OUT/node/node_modules/sharp/package.json').version === '$SHARP_VERSION' ? 0 : 1)" 2>/dev/null; then
    echo "bench: installing sharp@$SHARP_VERSION with npm"
    mkdir -p "$OUT/node"
    npm install --silent --no-save --no-package-lock --no-audit --no-fund \
        --prefix "$OUT/node" "sharp@$SHARP_VERSION" >"$OUT/npm.log" 2>&1 \
        || { tail -n 20 "$OUT/npm.log" >&2; echo "bench: cannot install sharp" >&2; exit 1; }
fi

# The machine, for the report.
{
    echo "date: $(date -u '+%Y-%m-%d %H:%M UTC')"
    echo "cpu: $(sed -n 's/^model name[[:space:]]*: //p' /proc/cpuinfo | head -n 1), $(nproc) cores"
    echo "memory: $(awk '/^MemTotal/ { printf "%.0f GiB", $2 / 1048576 }' /proc/meminfo)"
    echo "kernel: $(uname -sr)"
    echo "darkroom: $(git -C "$ROOT" rev-parse --short HEAD 2>/dev/null || echo unknown), gcc -O2"
    echo "libvips: $(pkg-config --modversion vips), sharp: $SHARP_VERSION (libvips $(node -p "require('$OUT/node/node_modules/sharp').versions.vips"))"
    echo "lighttpd: $(lighttpd -v 2>&1 | head -n 1 | cut -d' ' -f1)"
    echo "mariadb: $(mariadbd --version | sed 's/.*Ver \([^ ]*\).*/\1/'), innodb_flush_log_at_trx_commit=1"
} >"$OUT/machine.txt"

status=0
BENCH_OUT=$OUT BENCH_BIN=$BUILD/tests/bench \
BENCH_NODE=$OUT/node/node_modules \
    bash tests/run-integration.sh "${sections[@]}" || status=$?

if [ -s "$OUT/results.csv" ]; then
    python3 tests/bench/report.py "$OUT" || status=1
else
    echo "bench: no figures recorded" >&2
    status=1
fi
exit "$status"
