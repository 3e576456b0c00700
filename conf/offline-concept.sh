#!/usr/bin/env bash
# conf/offline-concept.sh — the "language model" of `make run` without a
# Replicate token: writes a one-line thumbnail concept for a title to its
# standard output, which the exec adapter keeps as the job's text output
# ([adapter "concept"] in conf/darkroom.conf, stdout_text = true). The
# first step of the README's offline workflow; the offline generator
# (offline-model.sh) then draws the concept.
#
#   offline-concept.sh --title TEXT
#
# The title is only ever text: printed with printf '%s', never evaluated.
set -euo pipefail

title=""
while [ $# -gt 0 ]; do
    case "$1" in
        --title) title=${2-}; shift 2 ;;
        *) echo "offline-concept: unknown argument: $1" >&2; exit 2 ;;
    esac
done
[ -n "$title" ] || { echo "offline-concept: --title is required" >&2; exit 2; }
# At most 200 characters of it, so the drawn line stays readable.
printf '%s' "${title:0:200}: one bold object, warm light, clean background"
