#!/usr/bin/env bash
# shellcheck disable=SC2016  # the bash -c scripts get their values as $1, $2, ...
# tests/integration/test_install.sh — `make install DESTDIR=TMP PREFIX=/usr`
# and the installed files at work: the binaries run, `plugins list` finds
# the installed plugins through the installed config, pkg-config finds
# darkroom-plugin and a plugin builds outside the tree with it, the man
# pages render without warnings, the units carry the installed paths, and
# a second install keeps an edited config (writing darkroom.conf.new).
#
# Ends with "N passed, N failed". Knobs: DARKROOM_BUILD_DIR or BUILD (the
# build installed: `make install BUILD=...`).

set -uo pipefail

ROOT=$(cd "$(dirname "${BASH_SOURCE[0]}")/../.." && pwd)
BUILD=${DARKROOM_BUILD_DIR:-${BUILD:-build}}
case "$BUILD" in "$ROOT"/*) BUILD=${BUILD#"$ROOT"/} ;; esac

while IFS= read -r var; do
    case "$var" in DARKROOM_TEST_RUN) ;; DARKROOM_*|REPLICATE_*) unset "$var" ;; esac
done < <(compgen -e)

TMP=$(mktemp -d "${TMPDIR:-/tmp}/darkroom-install.XXXXXX")
trap 'rm -rf "$TMP"' EXIT
D=$TMP/root
passed=0
failed=0
ok()   { echo "ok   $1"; passed=$((passed + 1)); }
fail() { echo "FAIL $1"; failed=$((failed + 1)); }

# check NAME CMD... — one case: CMD succeeds.
check() {
    local name=$1 out
    shift
    if out=$("$@" 2>&1); then
        ok "$name"
    else
        fail "$name: $(printf '%s' "$out" | tail -n 5 | tr '\n' ' ')"
    fi
}

if ! make -C "$ROOT" --no-print-directory -s install BUILD="$BUILD" DESTDIR="$D" PREFIX=/usr \
        >"$TMP/install.log" 2>&1; then
    fail "make install DESTDIR PREFIX=/usr: $(tail -n 5 "$TMP/install.log" | tr '\n' ' ')"
    echo "$passed passed, $failed failed"
    exit 1
fi
ok "make install DESTDIR PREFIX=/usr"

check "the files are where they belong" bash -c '
    D=$1
    for f in usr/bin/darkroom usr/bin/darkroom.fcgi usr/include/darkroom-plugin.h \
             usr/lib/pkgconfig/darkroom-plugin.pc etc/darkroom/darkroom.conf \
             usr/lib/darkroom/plugins/fs.so usr/lib/darkroom/plugins/null.so \
             usr/lib/darkroom/plugins/replicate.so usr/lib/darkroom/plugins/s3.so \
             usr/lib/darkroom/plugins/s3/sigv2.so \
             usr/share/darkroom/migrations/0001_init.sql \
             usr/lib/systemd/system/darkroom-fcgi.socket \
             usr/lib/systemd/system/darkroom-fcgi.service \
             usr/lib/systemd/system/darkroom-worker.service \
             usr/share/man/man1/darkroom.1 usr/share/man/man5/darkroom.conf.5; do
        [ -f "$D/$f" ] || { echo "missing $f"; exit 1; }
    done
    [ -x "$D/usr/bin/darkroom" ] && [ -x "$D/usr/bin/darkroom.fcgi" ]' _ "$D"

check "installed darkroom version runs" bash -c '"$1/usr/bin/darkroom" version | grep -q "0\."' _ "$D"
check "installed darkroom.fcgi --version runs" "$D/usr/bin/darkroom.fcgi" --version

# The installed config names system paths (/etc/darkroom/api_key, ...);
# for this run its api_key_file points into the staging root.
conf=$TMP/darkroom.conf
sed "s|^api_key_file = .*|api_key_file = $TMP/api_key|" "$D/etc/darkroom/darkroom.conf" >"$conf"
echo "drk_install_test_key_0123456789" >"$TMP/api_key"
chmod 0600 "$TMP/api_key"
check "the installed config has system paths" bash -c '
    c=$1
    grep -qx "plugin_dir = /usr/lib/darkroom/plugins" "$c" &&
    grep -qx "migrations_dir = /usr/share/darkroom/migrations" "$c" &&
    grep -qx "socket = /run/mysqld/mysqld.sock" "$c" &&
    grep -qx "wakeup_socket = /run/darkroom/wakeup.sock" "$c" &&
    grep -qx "api_key_file = /etc/darkroom/api_key" "$c" &&
    grep -qx "root = /var/lib/darkroom/media" "$c" &&
    ! grep -E "^[a-z_]+ = \.\./" "$c"' _ "$D/etc/darkroom/darkroom.conf"
check "plugins list --dir finds the installed plugins" bash -c '
    out=$("$1/usr/bin/darkroom" --config "$2" plugins list --dir "$1/usr/lib/darkroom/plugins") || { echo "$out"; exit 1; }
    for p in fs null replicate s3; do
        printf "%s\n" "$out" | grep -qw "$p" || { echo "no $p in: $out"; exit 1; }
    done' _ "$D" "$conf"

# pkg-config: with the sysroot the flags point into the staging root.
export PKG_CONFIG_PATH=$D/usr/lib/pkgconfig PKG_CONFIG_SYSROOT_DIR=$D
check "pkg-config --cflags darkroom-plugin" bash -c '
    [ "$(echo $(pkg-config --cflags darkroom-plugin))" = "-I$1/usr/include" ] &&
    [ "$(pkg-config --modversion darkroom-plugin)" = "$(sed -n "s/^VERSION := //p" "$2/Makefile")" ] &&
    [ "$(PKG_CONFIG_SYSROOT_DIR= pkg-config --variable=plugindir darkroom-plugin)" = /usr/lib/darkroom/plugins ]' _ "$D" "$ROOT"
check "a plugin builds outside the tree against the installed header" bash -c '
    cc -std=c11 -Wall -Wextra -Werror -shared -fPIC -fvisibility=hidden \
        $(pkg-config --cflags darkroom-plugin) -o "$1/hello.so" "$2/tests/plugins/example/hello.c" &&
    mkdir -p "$1/extra" && cp "$1/hello.so" "$1/extra/" &&
    "$3/usr/bin/darkroom" --config "$4" plugins list --dir "$1/extra" | grep -qw hello' \
    _ "$TMP" "$ROOT" "$D" "$conf"
unset PKG_CONFIG_PATH PKG_CONFIG_SYSROOT_DIR

# Man pages: groff with all warnings; mandoc's lint when installed.
for page in man1/darkroom.1 man5/darkroom.conf.5; do
    check "man page $page renders without warnings" bash -c '
        out=$(LC_ALL=C.UTF-8 groff -man -Tutf8 -ww -z "$1" 2>&1) && [ -z "$out" ] || { echo "$out"; exit 1; }
        [ "$(groff -man -Tutf8 "$1" 2>/dev/null | wc -l)" -gt 20 ] || { echo "too short"; exit 1; }
        if command -v mandoc >/dev/null 2>&1; then mandoc -T lint -W warning "$1"; fi' \
        _ "$D/usr/share/man/$page"
done

check "units run the installed binaries" bash -c '
    grep -qx "ExecStart=/usr/bin/darkroom.fcgi" "$1/darkroom-fcgi.service" &&
    grep -qx "ExecStart=/usr/bin/darkroom worker" "$1/darkroom-worker.service" &&
    ! grep -q /usr/local "$1"/*' _ "$D/usr/lib/systemd/system"

# A second install keeps the administrator's config.
echo "# edited by the administrator" >>"$D/etc/darkroom/darkroom.conf"
cp "$D/etc/darkroom/darkroom.conf" "$TMP/edited.conf"
if make -C "$ROOT" --no-print-directory -s install BUILD="$BUILD" DESTDIR="$D" PREFIX=/usr \
        >"$TMP/install2.log" 2>&1; then
    check "a second install keeps an edited config and writes darkroom.conf.new" bash -c '
        cmp -s "$1/etc/darkroom/darkroom.conf" "$2" &&
        [ -f "$1/etc/darkroom/darkroom.conf.new" ] &&
        ! grep -q "edited by the administrator" "$1/etc/darkroom/darkroom.conf.new"' _ "$D" "$TMP/edited.conf"
else
    fail "second make install: $(tail -n 5 "$TMP/install2.log" | tr '\n' ' ')"
fi

echo "$passed passed, $failed failed"
[ "$failed" -eq 0 ]
