#!/usr/bin/env bash
# tests/plugins/nm-check.sh - every plugin exports exactly one symbol, and
# s3.so does not link libs3.
#
# Plugins are built with -fvisibility=hidden and reach the core only
# through the dr_host table (collectd enforces the same in its build), so
# the dynamic symbol table of each $BUILD/plugins/*.so must define
# dr_plugin_entry and nothing else: a second symbol means a helper leaked
# out and could clash with another plugin or the core. A companion, a part
# of plugin P that P loads itself ($BUILD/plugins/P/PART.so, see the
# Makefile), must likewise define P_PART_entry and nothing else.
# And every symbol a plugin takes from elsewhere is found in the
# libraries it names itself (`ldd -r`): plugins link with -z defs, and none
# may count on the core or another plugin having loaded a library for it.
#
# The s3 sink's SigV2 transport is such a companion (s3/sigv2.so) so that
# a process maps libs3 only when a sink says signature = v2: s3.so itself
# must not need libs3 (ldd), and the companion must.
#
# Usage: BUILD=build bash tests/plugins/nm-check.sh
# Prints one line per check, then "N passed, N failed"; exits 1 on any
# failure (or when there is no plugin to check).
set -u

build=${BUILD:-build}
passed=0
failed=0

shopt -s nullglob
plugins=("$build"/plugins/*.so)
companions=("$build"/plugins/*/*.so)
if [ ${#plugins[@]} -eq 0 ]; then
    echo "nm-check: no plugins in $build/plugins (build them first)" >&2
    echo "0 passed, 1 failed"
    exit 1
fi

# exports SO WANT - SO defines the dynamic symbol WANT and no other.
exports() {
    local so=$1 want=$2 name syms names
    name=${so#"$build"/plugins/}
    if ! syms=$(nm -D --defined-only "$so" 2>&1); then
        echo "FAIL $name: nm failed: $syms"
        failed=$((failed + 1))
        return
    fi
    # "ADDRESS TYPE NAME": keep the names.
    names=$(printf '%s\n' "$syms" | awk 'NF >= 3 { print $3 }' | sort)
    undefined=$(ldd -r "$so" 2>&1 | grep -E 'undefined symbol' | head -n 3)
    if [ -n "$undefined" ]; then
        echo "FAIL $name: symbols no library it names defines:" \
            "$(printf '%s' "$undefined" | tr '\n\t' '  ')"
        failed=$((failed + 1))
    elif [ "$names" = "$want" ]; then
        echo "ok   $name: exports only $want, names its libraries"
        passed=$((passed + 1))
    else
        echo "FAIL $name: must export exactly $want, exports:" \
            "$(printf '%s' "$names" | tr '\n' ' ')"
        failed=$((failed + 1))
    fi
}

for so in "${plugins[@]}"; do
    exports "$so" dr_plugin_entry
done
for so in "${companions[@]}"; do
    part=${so#"$build"/plugins/}
    part=${part%.so}
    exports "$so" "${part//\//_}_entry"
done

# links SO yes|no LIB - whether `ldd SO` names LIB (a file name prefix).
links() {
    local so=$1 want=$2 lib=$3 name deps has=no
    name=${so#"$build"/plugins/}
    if [ ! -f "$so" ]; then
        echo "FAIL $name: missing (build it first)"
        failed=$((failed + 1))
        return
    fi
    if ! deps=$(ldd "$so" 2>&1); then
        echo "FAIL $name: ldd failed: $deps"
        failed=$((failed + 1))
        return
    fi
    printf '%s\n' "$deps" | awk '{ print $1 }' | grep -q "^$lib" && has=yes
    if [ "$has" = "$want" ]; then
        if [ "$want" = yes ]; then
            echo "ok   $name: links $lib"
        else
            echo "ok   $name: does not link $lib"
        fi
        passed=$((passed + 1))
    elif [ "$want" = yes ]; then
        echo "FAIL $name: should link $lib, ldd does not name it"
        failed=$((failed + 1))
    else
        echo "FAIL $name: must not link $lib (only its SigV2 companion" \
            "may), ldd names: $(printf '%s\n' "$deps" | grep "$lib" | tr -s ' \t' ' ')"
        failed=$((failed + 1))
    fi
}

links "$build/plugins/s3.so" no libs3.so
links "$build/plugins/s3/sigv2.so" yes libs3.so

echo "$passed passed, $failed failed"
[ "$failed" -eq 0 ]
