#!/usr/bin/env bash
# tests/lib/check_fcgi_libs.sh - the FastCGI app links only what it uses.
#
# darkroom.fcgi answers the API and webhooks; it never decodes an image or
# stores an output. So it must not load libvips (nor the GLib that comes
# with it) or libs3, and must hold none of the pipeline's objects: no
# symbol defined by $BUILD/core/image.o, pipeline.o or download.o (the
# static archive links an object only when something references it). Nor
# does it make outbound requests: plugin_http.o, the plugins' HTTP client,
# is set by the CLI (worker, migrate) only (plugins_set_http).
#
# Usage: BUILD=build bash tests/lib/check_fcgi_libs.sh
# Prints one ok/FAIL line per check, then "N passed, N failed"; exits 1 on
# any failure.
set -u

build=${BUILD:-build}
app=$build/darkroom.fcgi
passed=0
failed=0

ok() { echo "ok   $1"; passed=$((passed + 1)); }
fail() { echo "FAIL $1"; failed=$((failed + 1)); }

if [ ! -x "$app" ]; then
    fail "darkroom.fcgi: $app not built"
    echo "$passed passed, $failed failed"
    exit 1
fi

if ! libs=$(ldd "$app" 2>&1); then
    fail "darkroom.fcgi: ldd failed: $libs"
else
    bad=$(printf '%s\n' "$libs" | awk '{ print $1 }' |
        grep -E '^lib(vips|s3|glib-2\.0|gobject-2\.0)\.so' | tr '\n' ' ')
    if [ -z "$bad" ]; then
        ok "darkroom.fcgi: links no libvips, GLib or libs3"
    else
        fail "darkroom.fcgi: links $bad"
    fi
fi

app_syms=$(nm "$app" 2>/dev/null | awk 'NF >= 3 && $2 ~ /[TDBR]/ { print $3 }' | sort -u)
for mod in image pipeline download plugin_http; do
    obj=$build/core/$mod.o
    if [ ! -f "$obj" ]; then
        fail "darkroom.fcgi: $obj not built"
        continue
    fi
    both=$(comm -12 <(nm --defined-only -g "$obj" | awk 'NF >= 3 { print $3 }' | sort -u) \
        <(printf '%s\n' "$app_syms") | head -n 5 | tr '\n' ' ')
    if [ -z "$both" ]; then
        ok "darkroom.fcgi: holds nothing of $mod.o"
    else
        fail "darkroom.fcgi: holds $mod.o (defines $both)"
    fi
done

echo "$passed passed, $failed failed"
[ "$failed" -eq 0 ]
