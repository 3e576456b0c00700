#!/usr/bin/env node
// tests/core/blurhash_vectors.js - BlurHash test vectors from the npm
// package `blurhash` (the TypeScript encoder of github.com/woltapp/blurhash),
// an implementation independent of core/image.c.
//
//   npm install --no-save blurhash@2.0.5     (into ./node_modules, ignored)
//   node tests/core/blurhash_vectors.js
//
// prints the rows of npm_vectors[] in tests/core/test_imagehash.c. The pixels
// come from the deterministic patterns below, which the C test and
// tests/core/blurhash_vectors.py generate the same way (integer arithmetic
// only, so every language agrees byte for byte).
'use strict';

const { encode } = require('blurhash');

// The vectors: pattern, width, height, x components, y components, seed.
const VECTORS = [
  ['hgrad', 32, 24, 4, 3, 0],
  ['hgrad_rev', 32, 24, 4, 3, 0],
  ['noise', 32, 32, 4, 3, 1],
  ['noise', 17, 9, 9, 9, 42],
  ['solid', 8, 8, 4, 3, 0],
  ['solid', 8, 8, 1, 1, 0],
  ['stripes', 40, 20, 5, 4, 0],
  ['radial', 31, 31, 4, 3, 0],
  ['radial', 64, 48, 9, 9, 0],
  ['noise', 1, 1, 4, 3, 7],
  ['hgrad', 2, 2, 2, 2, 0],
  ['noise', 32, 24, 1, 9, 3],
  ['stripes', 3, 50, 9, 1, 0],
  ['radial', 20, 30, 4, 3, 0],
];

// RGB bytes, rows top to bottom; see pattern() in test_imagehash.c.
function pattern(name, w, h, seed) {
  const px = new Uint8Array(w * h * 3);
  let s = seed >>> 0;
  for (let y = 0; y < h; y++) {
    for (let x = 0; x < w; x++) {
      const o = (y * w + x) * 3;
      let r, g, b;
      if (name === 'hgrad' || name === 'hgrad_rev') {
        r = Math.floor((x * 255) / Math.max(w - 1, 1));
        g = Math.floor((y * 255) / Math.max(h - 1, 1));
        b = 64;
        if (name === 'hgrad_rev') { r = 255 - r; g = 255 - g; b = 192; }
      } else if (name === 'noise') {
        const c = [];
        for (let k = 0; k < 3; k++) {
          s = (Math.imul(s, 1664525) + 1013904223) >>> 0;
          c.push(s >>> 24);
        }
        [r, g, b] = c;
      } else if (name === 'solid') {
        r = 200; g = 30; b = 90;
      } else if (name === 'stripes') {
        const v = Math.floor(x / 3) % 2 ? 230 : 20;
        r = v; g = 255 - v; b = (y * 7) % 256;
      } else if (name === 'radial') {
        const dx = 2 * x - (w - 1), dy = 2 * y - (h - 1);
        const d2 = dx * dx + dy * dy;
        const m = (w - 1) * (w - 1) + (h - 1) * (h - 1) + 1;
        r = 255 - Math.floor((d2 * 255) / m);
        g = Math.floor((d2 * 255) / m);
        b = (x * y) % 256;
      } else {
        throw new Error('unknown pattern ' + name);
      }
      px[o] = r; px[o + 1] = g; px[o + 2] = b;
    }
  }
  return px;
}

for (const [name, w, h, xc, yc, seed] of VECTORS) {
  const rgb = pattern(name, w, h, seed);
  const rgba = new Uint8ClampedArray(w * h * 4);
  for (let i = 0; i < w * h; i++) {
    rgba[i * 4] = rgb[i * 3];
    rgba[i * 4 + 1] = rgb[i * 3 + 1];
    rgba[i * 4 + 2] = rgb[i * 3 + 2];
    rgba[i * 4 + 3] = 255;
  }
  const hash = encode(rgba, w, h, xc, yc);
  console.log(`\t{ "${name}", ${w}, ${h}, ${xc}, ${yc}, ${seed}, "${hash}" },`);
}
