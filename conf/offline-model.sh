#!/usr/bin/env bash
# conf/offline-model.sh — the model of `make run` without a Replicate token:
# a seeded colour field (Perlin noise, one seed per band) with the prompt
# written on it, made with the vips command-line tool (libvips-tools).
# The exec adapter runs it (conf/darkroom.conf, [adapter "exec"]):
#
#   offline-model.sh --prompt TEXT [--seed N] [--width W] [--height H]
#                    [--out DIR]
#
# Writes DIR/out.png (DIR defaults to the current directory, the job's
# directory under the exec adapter). The prompt is only ever text: it goes
# to `vips text` as one argument after `--`, with the Pango markup
# characters &, < and > escaped; nothing here evaluates it.
set -euo pipefail

prompt="" seed=0 width=768 height=512 out=.
while [ $# -gt 0 ]; do
    case "$1" in
        --prompt) prompt=${2-}; shift 2 ;;
        --seed) seed=${2-}; shift 2 ;;
        --width) width=${2-}; shift 2 ;;
        --height) height=${2-}; shift 2 ;;
        --out) out=${2-}; shift 2 ;;
        *) echo "offline-model: unknown argument: $1" >&2; exit 2 ;;
    esac
done

int_in() { # VALUE MIN MAX NAME
    case "$1" in ''|*[!0-9]*) echo "offline-model: $4 must be an integer" >&2; exit 2 ;; esac
    if [ "${#1}" -gt 9 ] || [ "$1" -lt "$2" ] || [ "$1" -gt "$3" ]; then
        echo "offline-model: $4 must be $2..$3" >&2
        exit 2
    fi
}
int_in "$seed" 0 2147483647 seed
int_in "$width" 64 2048 width
int_in "$height" 64 2048 height
[ -d "$out" ] || { echo "offline-model: no directory $out" >&2; exit 2; }

tmp=$(mktemp -d "${TMPDIR:-/tmp}/offline-model.XXXXXX")
trap 'rm -rf "$tmp"' EXIT

# Three bands of noise with seeds derived from --seed: a soft colour field.
cell=$(( (width > height ? width : height) / 3 + 1 ))
for b in 0 1 2; do
    vips perlin "$tmp/n$b.v" "$width" "$height" --cell-size "$cell" \
        --seed $(( (seed * 3 + b) % 2147483647 ))
done
vips bandjoin "$tmp/n0.v $tmp/n1.v $tmp/n2.v" "$tmp/noise.v"
# Perlin is about -1..1: map to mid-range colours.
vips linear "$tmp/noise.v" "$tmp/field.v" "110 110 110" "128 118 140" --uchar

# The prompt as text, never as markup: escape what Pango would parse.
text=${prompt:- }
text=${text//'&'/'&amp;'}
text=${text//'<'/'&lt;'}
text=${text//'>'/'&gt;'}
vips text --width $(( width - 40 )) --dpi 110 --rgba -- "$tmp/text.v" "$text" \
    || vips text --rgba -- "$tmp/text.v" "?"
vips composite2 "$tmp/field.v" "$tmp/text.v" "$tmp/out.v" over --x 20 --y 20
vips copy "$tmp/out.v" "$out/out.png"
