#!/usr/bin/env bash
# tests/lib/npm-deps.sh — install the npm packages the tests use into the
# repository's node_modules/ (gitignored), and only when one is missing or
# at another version.
#
# Sourced, it defines:
#   DARKROOM_NPM_DEPS   the packages, each NAME@VERSION
#   npm_deps_missing    prints the packages of the list not installed as
#                       pinned
#   npm_deps_install    installs the list when something is missing
#
# Executed, it installs the list (Node.js and npm first, from Debian's
# packages through tests/lib/deps.sh, when the machine has none).
#
# Reproducible without a lockfile: every package is pinned to an exact
# version, and so is each package those pull in (standardwebhooks needs
# @stablelib/base64 and fast-sha256), so npm has nothing to choose. The
# whole list is installed in one `npm install`: with no package.json to
# record them, a later install of part of the list would prune the rest.
# --no-save and --no-package-lock keep npm from writing package.json or
# package-lock.json at the top of the repository, whose layout is fixed;
# --prefer-offline takes what npm's cache already holds.

DARKROOM_NPM_ROOT=$(cd "$(dirname "${BASH_SOURCE[0]}")/../.." && pwd)

# standardwebhooks: the independent peer of tests/webhook/cross_check.js.
# s3rver: the S3-compatible server of tests/integration/test_s3.sh. Its own
# dependency tree (koa, winston, ... about a hundred packages) is too large
# to pin here: npm resolves it within s3rver 3.7.1's declared ranges.
DARKROOM_NPM_DEPS="standardwebhooks@1.1.1 @stablelib/base64@1.0.1 fast-sha256@1.3.0 s3rver@3.7.1"

# npm_deps_missing — print, one per line, each NAME@VERSION of the list
# that node_modules/ does not hold at exactly that version.
npm_deps_missing() {
    local dep name version have json
    for dep in $DARKROOM_NPM_DEPS; do
        name=${dep%@*}
        version=${dep##*@}
        json=$DARKROOM_NPM_ROOT/node_modules/$name/package.json
        have=
        if [ -f "$json" ]; then
            have=$(sed -n 's/^[[:space:]]*"version"[[:space:]]*:[[:space:]]*"\([^"]*\)".*/\1/p' "$json" | head -n 1)
        fi
        if [ "$have" != "$version" ]; then
            printf '%s\n' "$dep"
        fi
    done
}

# npm_deps_install — install the whole list when any of it is missing.
# Returns npm's status; 0 when nothing was missing.
npm_deps_install() {
    local missing
    missing=$(npm_deps_missing)
    if [ -z "$missing" ]; then
        return 0
    fi
    if ! command -v node >/dev/null 2>&1 || ! command -v npm >/dev/null 2>&1; then
        bash "$DARKROOM_NPM_ROOT/tests/lib/deps.sh" nodejs npm || return 1
    fi
    # shellcheck disable=SC2086  # word splitting of the lists is wanted
    echo "npm-deps: installing:" $missing >&2
    # shellcheck disable=SC2086
    npm install --no-save --no-package-lock --no-audit --no-fund \
        --prefer-offline --loglevel=error --prefix "$DARKROOM_NPM_ROOT" \
        $DARKROOM_NPM_DEPS </dev/null >&2 || return 1
    missing=$(npm_deps_missing)
    if [ -n "$missing" ]; then
        # shellcheck disable=SC2086
        echo "npm-deps: still missing after npm install:" $missing >&2
        return 1
    fi
}

# Executed rather than sourced: install the list.
if [ "${BASH_SOURCE[0]}" = "$0" ]; then
    set -euo pipefail
    case "${1:-}" in
        "") ;;
        -h|--help) sed -n '2,21p' "$0"; exit 0 ;;
        *) echo "usage: $0" >&2; exit 2 ;;
    esac
    npm_deps_install
fi
