// tests/bench/sharp_render.js — the sharp side of the renditions section
// of `make bench` (tests/bench/bench_renditions.py): the same presets
// darkroom renders, made by sharp in one long-running Node process, the
// natural way to use it.
//
//   node sharp_render.js MODE PRESETS
//
// MODE is "seq" (one preset after the other, as darkroom's worker does)
// or "par" (both presets at once with Promise.all, which lets sharp use
// two libuv threads for one image). PRESETS is JSON: a list of
// {name, width, height, fit ("inside" | "cover"), quality} — WebP, the
// box already made what darkroom makes of it (a cover box larger than
// the image shrunk to fit), so every tool writes the same dimensions.
//
// Standard input carries commands, one a line: "N FILE [OUTDIR]". For
// each, the file is read into memory once (as darkroom's worker has it),
// then N iterations each make every preset from that buffer, and the
// answer is one line on standard output: the file, the N iteration times
// in milliseconds, "cpu" and the N iterations' CPU times in milliseconds
// (the whole process: sharp's threads included). With OUTDIR the outputs of the last iteration
// are written there as <file name>.<preset>.webp.
//
// sharp's operation cache is off: it would let iterations after the
// first reuse the decode of an identical buffer, which a service that
// sees each image once never gets (darkroom runs libvips without a cache).
// Everything else is sharp's default: its thread count (the cores),
// metadata stripped, auto-orientation with rotate(), shrink-on-load,
// Lanczos 3, WebP effort 4 without smart subsampling.

'use strict';

const fs = require('fs');
const path = require('path');
const readline = require('readline');
const sharp = require('sharp');

const mode = process.argv[2];
const presets = JSON.parse(process.argv[3] || '[]');
if ((mode !== 'seq' && mode !== 'par') || !presets.length) {
  process.stderr.write('usage: node sharp_render.js seq|par PRESETS-JSON\n');
  process.exit(2);
}
sharp.cache(false);

function one(buf, p) {
  const opts = p.fit === 'cover'
    ? { fit: 'cover', position: sharp.strategy.attention, withoutEnlargement: true }
    : { fit: 'inside', withoutEnlargement: true };
  return sharp(buf)
    .rotate()
    .resize(p.width, p.height, opts)
    .webp({ quality: p.quality })
    .toBuffer();
}

async function iteration(buf) {
  if (mode === 'par') {
    return Promise.all(presets.map((p) => one(buf, p)));
  }
  const out = [];
  for (const p of presets) {
    out.push(await one(buf, p));
  }
  return out;
}

async function command(line) {
  const [count, file, outDir] = line.split(' ');
  const n = parseInt(count, 10);
  const buf = fs.readFileSync(file);
  const times = [];
  const cpu = [];
  let last = null;
  for (let i = 0; i < n; i++) {
    const t0 = process.hrtime.bigint();
    const c0 = process.cpuUsage();
    last = await iteration(buf);
    times.push(Number(process.hrtime.bigint() - t0) / 1e6);
    const c = process.cpuUsage(c0);
    cpu.push((c.user + c.system) / 1e3);
  }
  if (outDir) {
    presets.forEach((p, i) => {
      fs.writeFileSync(path.join(outDir, `${path.basename(file)}.${p.name}.webp`), last[i]);
    });
  }
  const ms = (list) => list.map((t) => t.toFixed(3)).join(' ');
  process.stdout.write(`${file} ${ms(times)} cpu ${ms(cpu)}\n`);
}

async function main() {
  const rl = readline.createInterface({ input: process.stdin });
  for await (const line of rl) {
    if (line.trim()) {
      await command(line.trim());
    }
  }
}

main().catch((e) => {
  process.stderr.write(`sharp_render: ${e.stack || e}\n`);
  process.exit(1);
});
