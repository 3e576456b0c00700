#!/usr/bin/env bash
# tests/plugins/nm-check.sh - every plugin exports exactly one symbol.
#
# Plugins are built with -fvisibility=hidden and reach the core only
# through the dr_host table (collectd enforces the same in its build), so
# the dynamic symbol table of each $BUILD/plugins/*.so must define
# dr_plugin_entry and nothing else: a second symbol means a helper leaked
# out and could clash with another plugin or the core. And every symbol a
# plugin takes from elsewhere is found in the libraries it names itself
# (`ldd -r`): plugins link with -z defs, and none may count on the core
# or another plugin having loaded a library for it.
#
# Usage: BUILD=build bash tests/plugins/nm-check.sh
# Prints one line per plugin, then "N passed, N failed"; exits 1 on any
# failure (or when there is no plugin to check).
set -u

build=${BUILD:-build}
passed=0
failed=0

shopt -s nullglob
plugins=("$build"/plugins/*.so)
if [ ${#plugins[@]} -eq 0 ]; then
    echo "nm-check: no plugins in $build/plugins (build them first)" >&2
    echo "0 passed, 1 failed"
    exit 1
fi

for so in "${plugins[@]}"; do
    name=$(basename "$so")
    if ! syms=$(nm -D --defined-only "$so" 2>&1); then
        echo "FAIL $name: nm failed: $syms"
        failed=$((failed + 1))
        continue
    fi
    # "ADDRESS TYPE NAME": keep the names.
    names=$(printf '%s\n' "$syms" | awk 'NF >= 3 { print $3 }' | sort)
    undefined=$(ldd -r "$so" 2>&1 | grep -E 'undefined symbol' | head -n 3)
    if [ -n "$undefined" ]; then
        echo "FAIL $name: symbols no library it names defines:" \
            "$(printf '%s' "$undefined" | tr '\n\t' '  ')"
        failed=$((failed + 1))
    elif [ "$names" = "dr_plugin_entry" ]; then
        echo "ok   $name: exports only dr_plugin_entry, names its libraries"
        passed=$((passed + 1))
    else
        echo "FAIL $name: must export exactly dr_plugin_entry, exports:" \
            "$(printf '%s' "$names" | tr '\n' ' ')"
        failed=$((failed + 1))
    fi
done

echo "$passed passed, $failed failed"
[ "$failed" -eq 0 ]
