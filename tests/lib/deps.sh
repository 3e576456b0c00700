#!/usr/bin/env bash
# tests/lib/deps.sh — install the Debian packages darkroom needs, and only
# those that are missing.
#
# Sourced, it defines:
#   DARKROOM_BUILD_DEPS   packages needed to build (compiler, -dev libraries)
#   DARKROOM_TEST_DEPS    packages needed to run and test (servers, clients)
#   DARKROOM_BENCH_DEPS   packages `make bench` adds (load generator, the
#                         ImageMagick it compares with, gnuplot for the chart)
#   deps_missing PKG...   prints the packages of the list not installed
#   deps_install PKG...   installs the missing ones with apt-get
#
# Executed, it installs the named sets and packages: `deps.sh build test`
# (sets: build, test, bench, all — the default; `--build` etc. work too), or
# `deps.sh PKG...`.
#
# It runs non-interactively (no terminal, no standard input): apt-get update
# runs once, and only when something is missing; nothing is asked. Before
# installing it makes sure /usr/sbin/policy-rc.d forbids starting services,
# so installing lighttpd or mariadb-server does not start a daemon on port 80
# or 3306 behind our back; the file is left in place afterwards.

DARKROOM_BUILD_DEPS="libfcgi-dev libcurl4-openssl-dev libvips-dev libs3-dev libmariadb-dev libjson-c-dev libssl-dev pkg-config make gcc"
DARKROOM_BENCH_DEPS="wrk gnuplot-nox imagemagick"
DARKROOM_TEST_DEPS="libcmocka-dev jq mariadb-server mariadb-client lighttpd spawn-fcgi curl python3 apache2 libapache2-mod-fcgid nginx-light libfcgi-bin systemd groff-base pkg-config libvips-tools chromium clang-format"

# deps_missing PKG... — print, one per line, each package that dpkg does not
# report as "install ok installed".
deps_missing() {
    local pkg status
    for pkg in "$@"; do
        status=$(dpkg-query -W -f='${Status}' "$pkg" 2>/dev/null || true)
        if [ "$status" != "install ok installed" ]; then
            printf '%s\n' "$pkg"
        fi
    done
}

# Run a command as root: directly when we are root, through sudo otherwise.
_deps_as_root() {
    if [ "$(id -u)" -eq 0 ]; then
        "$@"
    elif command -v sudo >/dev/null 2>&1; then
        sudo -n "$@"
    else
        echo "deps: need root to run: $*" >&2
        return 1
    fi
}

# Make sure package installation does not start services. Debian's
# invoke-rc.d asks /usr/sbin/policy-rc.d; exit code 101 means "forbidden".
_deps_policy_rc() {
    local f=/usr/sbin/policy-rc.d
    if [ ! -e "$f" ]; then
        _deps_as_root sh -c "printf '#!/bin/sh\n# Installed by darkroom tests/lib/deps.sh: packages must not start services.\nexit 101\n' > $f && chmod 0755 $f"
    fi
}

# deps_install PKG... — install the packages that are missing. Returns
# apt-get's status; 0 when nothing was missing.
deps_install() {
    local missing
    missing=$(deps_missing "$@")
    if [ -z "$missing" ]; then
        return 0
    fi
    # shellcheck disable=SC2086  # word splitting of the package list is wanted
    echo "deps: installing:" $missing >&2
    _deps_policy_rc || return 1
    local apt_opts=(-q -o DPkg::Lock::Timeout=600)
    _deps_as_root env DEBIAN_FRONTEND=noninteractive \
        apt-get "${apt_opts[@]}" update </dev/null || return 1
    # shellcheck disable=SC2086
    _deps_as_root env DEBIAN_FRONTEND=noninteractive \
        apt-get "${apt_opts[@]}" install -y --no-install-recommends \
        -o Dpkg::Options::=--force-confdef -o Dpkg::Options::=--force-confold \
        $missing </dev/null || return 1
}

# Executed rather than sourced: install what the arguments name.
if [ "${BASH_SOURCE[0]}" = "$0" ]; then
    set -euo pipefail
    if [ "$#" -eq 0 ]; then
        set -- --all
    fi
    pkgs=()
    for arg in "$@"; do
        case "$arg" in
            build|--build) read -ra more <<<"$DARKROOM_BUILD_DEPS"; pkgs+=("${more[@]}") ;;
            test|--test)   read -ra more <<<"$DARKROOM_TEST_DEPS"; pkgs+=("${more[@]}") ;;
            bench|--bench) read -ra more <<<"$DARKROOM_BENCH_DEPS"; pkgs+=("${more[@]}") ;;
            all|--all)     read -ra more <<<"$DARKROOM_BUILD_DEPS $DARKROOM_TEST_DEPS"; pkgs+=("${more[@]}") ;;
            -h|--help)
                echo "usage: $0 [build] [test] [all] [PKG...]"
                exit 0 ;;
            -*) echo "deps: unknown option $arg" >&2; exit 2 ;;
            *) pkgs+=("$arg") ;;
        esac
    done
    deps_install "${pkgs[@]}"
fi
