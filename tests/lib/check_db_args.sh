#!/usr/bin/env bash
# tests/lib/check_db_args.sh - a parameter of the wrong kind for core/db.h
# does not compile.
#
# The statement parameters of db_exec()/db_query() are dr_db_arg values made
# by DB_STR, DB_INT, DB_U64, DB_DBL, DB_BLOB (compound literals with
# designated initialisers) and passed as DB_ARGS(...). That the compiler
# refuses a mismatch is the point of the design, and it is only true of the
# flags the build uses (int-conversion is a warning that -Werror makes an
# error), so it is checked here by compiling small programs with those
# flags. Each case is a pair of one-line bodies in the same program: the
# right one must compile (so the harness, headers and flags are sound) and
# the wrong one must be refused with an error that points at that line.
#
# Usage: bash tests/lib/check_db_args.sh [INCLUDE_DIR]
# INCLUDE_DIR holds db.h and what it includes (default: core/ of this
# checkout); CC as for make (default cc). Prints one ok/FAIL line per case,
# then "N passed, N failed"; exits 1 on any failure.
set -u

ROOT=$(cd "$(dirname "${BASH_SOURCE[0]}")/../.." && pwd)
INC=${1:-$ROOT/core}
CC=${CC:-cc}
# The warning flags of the Makefile's WARN that matter here.
CFLAGS="-std=c11 -D_GNU_SOURCE -Wall -Wextra -Werror -fsyntax-only"

passed=0
failed=0
ok() { echo "ok   $1"; passed=$((passed + 1)); }
fail() { echo "FAIL $1"; failed=$((failed + 1)); }

work=$(mktemp -d "${TMPDIR:-/tmp}/darkroom-dbargs.XXXXXX")
trap 'rm -rf "$work"' EXIT

# The program around a body: its line is BODY_LINE.
BODY_LINE=14
program() {
    cat <<EOF
#include <stdint.h>
#include <stddef.h>
#include "db.h"

dr_status f(dr_db *db, const char *s, int64_t n, const void *p);
dr_status f(dr_db *db, const char *s, int64_t n, const void *p)
{
	dr_error err;
	static const char sql[] = "SELECT ?";

	(void)s;
	(void)n;
	(void)p;
	$1
}
EOF
}

# compile NAME BODY: the compiler's exit status; its messages in $work/NAME.log
compile() {
    program "$2" >"$work/$1.c"
    $CC $CFLAGS -I "$INC" "$work/$1.c" >"$work/$1.log" 2>&1
}

# case WHAT RIGHT WRONG
case_pair() {
    local what=$1 right=$2 wrong=$3
    if ! compile right "$right"; then
        fail "$what: the right form does not compile: $right"
        sed 's/^/    /' "$work/right.log"
        return
    fi
    if compile wrong "$wrong"; then
        fail "$what: compiles: $wrong"
        return
    fi
    # The error itself may be reported inside db.h's macros, with a note
    # "in expansion of macro" naming the body's line.
    if grep -q ': error: ' "$work/wrong.log" &&
        grep -q "wrong\.c:$BODY_LINE:[0-9]*: " "$work/wrong.log"; then
        ok "$what: refused"
    else
        fail "$what: refused, but not for its line $BODY_LINE: $wrong"
        sed 's/^/    /' "$work/wrong.log"
    fi
}

if [ ! -f "$INC/db.h" ]; then
    fail "no db.h in $INC"
    echo "$passed passed, $failed failed"
    exit 1
fi

case_pair "an integer to DB_STR" \
    'return db_exec(db, sql, NULL, &err, DB_ARGS(DB_STR(s)));' \
    'return db_exec(db, sql, NULL, &err, DB_ARGS(DB_STR(n)));'
case_pair "a string to DB_INT" \
    'return db_exec(db, sql, NULL, &err, DB_ARGS(DB_INT(n)));' \
    'return db_exec(db, sql, NULL, &err, DB_ARGS(DB_INT(s)));'
case_pair "a string to DB_U64" \
    'return db_query(db, sql, NULL, &err, DB_ARGS(DB_U64(n)));' \
    'return db_query(db, sql, NULL, &err, DB_ARGS(DB_U64(s)));'
case_pair "a string to DB_DBL" \
    'return db_query(db, sql, NULL, &err, DB_ARGS(DB_DBL(0.5)));' \
    'return db_query(db, sql, NULL, &err, DB_ARGS(DB_DBL(s)));'
case_pair "an integer as DB_BLOB's bytes" \
    'return db_exec(db, sql, NULL, &err, DB_ARGS(DB_BLOB(p, 3)));' \
    'return db_exec(db, sql, NULL, &err, DB_ARGS(DB_BLOB(n, 3)));'
case_pair "a bare string in DB_ARGS" \
    'return db_exec(db, sql, NULL, &err, DB_ARGS(DB_STR(s), DB_NULL));' \
    'return db_exec(db, sql, NULL, &err, DB_ARGS(s, DB_NULL));'
case_pair "the old type string and varargs" \
    'return db_exec(db, sql, NULL, &err, DB_ARGS(DB_STR(s)));' \
    'return db_exec(db, sql, NULL, &err, "s", s);'
case_pair "no list at all" \
    'return db_query(db, sql, NULL, &err, DB_NOARGS);' \
    'return db_query(db, sql, NULL, &err);'

echo "$passed passed, $failed failed"
[ "$failed" -eq 0 ]
