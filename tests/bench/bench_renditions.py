#!/usr/bin/env python3
"""tests/bench/bench_renditions.py — the renditions section of `make
bench`: the time to make one output's renditions, darkroom next to
vipsthumbnail, sharp and ImageMagick doing the same work.

The work: the default presets of conf/darkroom.conf (default_renditions,
thumb 256x256 inside WebP Q80 and card 1280x720 cover WebP Q82 as
shipped) from one image file, for three photo-like images
(tests/bench/testimages.py): a 1024x1024 PNG, a 1344x768 WebP and a
4000x3000 JPEG. Every tool writes the same dimensions (checked on the
files before timing: a cover box larger than the image is first shrunk to
the largest box of its aspect that fits, as darkroom does), the same
format and quality, metadata stripped, each in its best natural form:

  darkroom      image_process() of core/image.c, the twin of the
                image_process_fd() the worker calls on a downloaded output
                (same decode and encodes; tests/bench/bench_render.c,
                one long-running process, the file in memory): decode
                once, metadata (BlurHash, dominant colour, pHash), both
                presets, both encodes; one libvips thread as in the worker.
  sharp         sharp 0.33.5 (its own libvips 8.15) in one long-running
                Node process (tests/bench/sharp_render.js), the file in
                memory, cache off: presets one after the other ("seq"),
                and both at once with Promise.all ("par", two threads for
                one image).
  vipsthumbnail the CLI, one process per preset (process start included),
                and amortised: one process per preset for K copies of the
                file, its time divided by K.
  convert       ImageMagick 6 (/usr/bin/convert), one process for both
                presets (one decode, -thumbnail, jpeg:size hint for
                JPEG); it has no attention crop, so card is a centre crop.

Times are medians in ms per output (both presets), over BENCH_RENDITIONS_
ROUNDS rounds (default 5) in which every tool runs in turn on every image,
the order rotating from round to round, so a noisy neighbour hits every
tool alike. Each note gives the median CPU time per output too (every
thread of the process; for the CLIs their whole run): a tool with two
busy threads (sharp, vipsthumbnail) gets more of a loaded machine than
darkroom's one, so on a busy machine the CPU figures compare the work. The target on darkroom's row is the best (lowest) median of
vipsthumbnail and sharp making one output at a time (seq, CLI,
amortised); the ratio row says darkroom / that best, and its note the
ratio to sharp par too.
"""

import json
import os
import re
import shutil
import statistics
import subprocess
import sys
import time

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
from benchlib import BIN, record  # noqa: E402
from harness import case, expect, run  # noqa: E402
import testimages  # noqa: E402

ROOT = os.path.abspath(os.path.join(os.path.dirname(os.path.abspath(__file__)), "..", ".."))
WORK = os.path.join(os.environ.get("DARKROOM_TEST_DIR", "/tmp"), "bench-renditions")
NODE = os.environ.get("BENCH_NODE", os.path.join(ROOT, "build", "bench", "node", "node_modules"))
ROUNDS = int(os.environ.get("BENCH_RENDITIONS_ROUNDS", "5"))
PER_ROUND = 2   # iterations (or CLI runs) per tool, image and round
AMORTISE = 4    # files per vipsthumbnail process in the amortised form
CONVERT = "/usr/bin/convert"  # the real one: /usr/local/bin/convert is a shim
VIPSTHUMBNAIL = "/usr/bin/vipsthumbnail"
IMAGES = [  # label, width, height, ext, save options, blur (testimages.make)
    ("1024x1024 PNG", 1024, 1024, "png", "filter=all", 4),
    ("1344x768 WebP", 1344, 768, "webp", "Q=90", 4),
    ("4000x3000 JPEG", 4000, 3000, "jpg", "Q=90", 6),
]
TOOLS = ["darkroom", "sharp seq", "sharp par", "vipsthumbnail CLI",
         "vipsthumbnail amortised", "convert"]
COMPETITORS = ["sharp seq", "vipsthumbnail CLI", "vipsthumbnail amortised"]
WHAT = {
    "darkroom": "darkroom image_process (worker), {}",
    "sharp seq": "sharp, presets in turn, one Node process, {}",
    "sharp par": "sharp, presets in parallel (Promise.all), {}",
    "vipsthumbnail CLI": "vipsthumbnail CLI, a process per preset, {}",
    "vipsthumbnail amortised": f"vipsthumbnail, {AMORTISE} files per process, {{}}",
    "convert": "ImageMagick convert, one process, {}",
}

_state = {}


# ------------------------------------------------------------ presets


def default_presets():
    """The default_renditions of conf/darkroom.conf as a list of dicts
    (name, width, height, fit, format, quality), read with a minimal
    parser of its INI syntax (darkroom checks the file; this only reads)."""
    sections, cur = {}, None
    with open(os.path.join(ROOT, "conf", "darkroom.conf")) as f:
        for line in f:
            line = line.strip()
            if not line or line[0] in "#;":
                continue
            m = re.match(r'^\[\s*(\w+)(?:\s+"?([^"\]]+)"?)?\s*\]$', line)
            if m:
                cur = sections.setdefault((m.group(1), m.group(2)), {})
                continue
            k, _, v = line.partition("=")
            cur[k.strip()] = v.strip()
    names = [n.strip() for n in sections[("server", None)]
             .get("default_renditions", "thumb, card").split(",") if n.strip()]
    out = []
    for n in names:
        s = sections[("preset", n)]
        out.append({"name": n, "width": int(s["width"]), "height": int(s["height"]),
                    "fit": s.get("fit", "inside"), "format": s.get("format", "webp"),
                    "quality": int(s.get("quality", "80"))})
    return out


def boxes_for(presets, w, h):
    """The presets with the box darkroom fits to for a w x h image: a
    cover box larger than the image shrinks to the largest box of its
    aspect that fits (core/image.c render())."""
    out = []
    for p in presets:
        q = dict(p)
        if p["fit"] == "cover" and (p["width"] > w or p["height"] > h):
            k = min(w / p["width"], h / p["height"])
            q["width"] = min(w, max(1, int(p["width"] * k + 0.5)))
            q["height"] = min(h, max(1, int(p["height"] * k + 0.5)))
        out.append(q)
    return out


def inside_size(w, h, bw, bh):
    """What an inside fit of w x h in bw x bh gives, never enlarged."""
    s = min(1.0, bw / w, bh / h)
    return max(1, round(w * s)), max(1, round(h * s))


# ------------------------------------------------------------ tools


class Server:
    """A long-running timer process (bench_render or sharp_render.js):
    one line "N FILE [OUTDIR]" in, one line "FILE t1 .. tN" (ms) out."""

    def __init__(self, argv, env=None):
        self.proc = subprocess.Popen(argv, stdin=subprocess.PIPE, stdout=subprocess.PIPE,
                                     text=True, bufsize=1, env=env)

    def times(self, n, path, out_dir=None):
        """n samples (wall ms, CPU ms) of one output."""
        self.proc.stdin.write(f"{n} {path}" + (f" {out_dir}" if out_dir else "") + "\n")
        self.proc.stdin.flush()
        line = self.proc.stdout.readline().split()
        expect(len(line) == 2 * n + 2 and line[n + 1] == "cpu",
               f"{self.proc.args[0]} failed on {path}")
        return [(float(w), float(c)) for w, c in zip(line[1:n + 1], line[n + 2:])]

    def close(self):
        if self.proc.poll() is None:
            self.proc.stdin.close()
            try:
                self.proc.wait(timeout=10)
            except subprocess.TimeoutExpired:
                self.proc.kill()
                self.proc.wait()


def wall(argv):
    """Run argv; (wall ms, CPU ms) of the process, its start included."""
    t0 = time.perf_counter()
    proc = subprocess.Popen(argv, stdout=subprocess.DEVNULL, stderr=subprocess.PIPE)
    err = proc.stderr.read().decode(errors="replace")
    _, status, usage = os.wait4(proc.pid, 0)
    t = (time.perf_counter() - t0) * 1e3
    proc.stderr.close()
    expect(os.waitstatus_to_exitcode(status) == 0,
           f"{os.path.basename(argv[0])} failed: {err.strip()[:300]}")
    return t, (usage.ru_utime + usage.ru_stime) * 1e3


def total(samples, divide=1):
    """The sum of (wall, CPU) samples, divided."""
    return (sum(w for w, _ in samples) / divide, sum(c for _, c in samples) / divide)


def vt_argv(files, p, out_dir, tag):
    """vipsthumbnail making preset p of every file of files."""
    argv = [VIPSTHUMBNAIL] + files + ["--size", f"{p['width']}x{p['height']}"]
    if p["fit"] == "cover":
        argv += ["--smartcrop", "attention"]
    return argv + ["-o", os.path.join(out_dir, f"%s.{tag}.webp[Q={p['quality']},strip]")]


def convert_argv(path, presets, w, h, out_dir):
    """One convert process making every preset from one decode: each but
    the last from a clone, written with -write; a JPEG is decoded at the
    smallest DCT scale still twice the largest box (the jpeg:size hint
    of ImageMagick's documentation)."""
    base = os.path.basename(path)
    argv = [CONVERT]
    if path.endswith(".jpg"):
        need = min(1.0, max((max if p["fit"] == "cover" else min)(p["width"] / w, p["height"] / h)
                            for p in presets))
        k = min(1.0, 2 * need)
        argv += ["-define", f"jpeg:size={int(w * k)}x{int(h * k)}"]
    argv += [path, "-auto-orient"]

    def ops(p):
        size = f"{p['width']}x{p['height']}"
        if p["fit"] == "cover":
            return ["-thumbnail", size + "^", "-gravity", "center", "-extent", size,
                    "-quality", str(p["quality"])]
        return ["-thumbnail", size + ">", "-quality", str(p["quality"])]

    for p in presets[:-1]:
        argv += ["(", "+clone"] + ops(p) + [
            "-write", os.path.join(out_dir, f"{base}.{p['name']}.webp"), "+delete", ")"]
    p = presets[-1]
    return argv + ops(p) + [os.path.join(out_dir, f"{base}.{p['name']}.webp")]


def render_conf():
    """conf/darkroom.conf without its api_key_file (var/api_key exists only
    after `make run`), next to the original so its relative paths hold."""
    path = os.path.join(WORK, "darkroom.conf")
    with open(os.path.join(ROOT, "conf", "darkroom.conf")) as f:
        text = "".join(line for line in f if not line.startswith("api_key_file"))
    text = text.replace("= ../", "= " + os.path.join(ROOT, ""))
    with open(path, "w") as f:
        f.write(text)
    return path


def measure(tool, img, out_dir=None):
    """Samples (wall ms, CPU ms) per output of one tool on one image, one
    round."""
    path, presets = img["path"], img["presets"]
    if tool == "darkroom":
        return _state["darkroom"].times(PER_ROUND, path)
    if tool in ("sharp seq", "sharp par"):
        return _state[tool].times(PER_ROUND, path, out_dir)
    if tool == "vipsthumbnail CLI":
        return [total([wall(vt_argv([path], p, out_dir or WORK, p["name"])) for p in presets])
                for _ in range(PER_ROUND)]
    if tool == "vipsthumbnail amortised":
        return [total([wall(vt_argv(img["copies"], p, WORK, p["name"])) for p in presets],
                      AMORTISE)]
    if tool == "convert":
        return [wall(convert_argv(path, presets, img["w"], img["h"], out_dir or WORK))
                for _ in range(PER_ROUND)]
    raise ValueError(tool)


# ------------------------------------------------------------ cases


@case("renditions: images, tools and identical output sizes")
def _():
    shutil.rmtree(WORK, ignore_errors=True)
    os.makedirs(WORK)
    presets = default_presets()
    expect(presets and all(p["format"] == "webp" for p in presets),
           f"the comparison writes WebP; default presets are {presets}")
    env = dict(os.environ, NODE_PATH=NODE)
    _state["darkroom"] = Server([os.path.join(BIN, "bench_render"), "-c", render_conf(), "-"])
    images = []
    for label, w, h, ext, opts, blur in IMAGES:
        path = testimages.make(w, h, ext, opts, blur)
        boxes = boxes_for(presets, w, h)
        copies = []
        for i in range(AMORTISE):
            c = os.path.join(WORK, f"copy{i}-{os.path.basename(path)}")
            shutil.copyfile(path, c)
            copies.append(c)
        images.append({"label": label, "path": path, "w": w, "h": h, "presets": boxes,
                       "copies": copies})
    _state["images"] = images
    for mode in ("seq", "par"):
        _state["sharp " + mode] = SharpByImage(mode, images, env)

    # Same work: every tool's files have darkroom's dimensions.
    for img in images:
        d = os.path.join(WORK, "out-" + img["label"].split()[0])
        os.makedirs(d)
        r = subprocess.run([os.path.join(BIN, "bench_render"), "-c", render_conf(), "-n", "1",
                            "-o", d, img["path"]], capture_output=True, text=True)
        expect(r.returncode == 0, f"bench_render failed: {r.stderr.strip()[:300]}")
        want = {}
        for m in re.finditer(r"^\s+(\w+): (\d+)x(\d+) ", r.stderr, re.M):
            want[m.group(1)] = (int(m.group(2)), int(m.group(3)))
        for tool in TOOLS[1:]:
            td = os.path.join(d, tool.replace(" ", "-"))
            os.makedirs(td)
            measure(tool, img, td)
            if tool == "vipsthumbnail amortised":
                continue  # the CLI form's command, on copies
            for p in img["presets"]:
                base = os.path.basename(img["path"])
                if tool.startswith("vipsthumbnail"):
                    base = os.path.splitext(base)[0]  # its %s has no extension
                f = os.path.join(td, f"{base}.{p['name']}.webp")
                expect(os.path.exists(f), f"{tool} wrote no {f}")
                got = testimages.size_of(f)
                expect(got == want.get(p["name"]),
                       f"{tool} made {p['name']} {got[0]}x{got[1]} of {img['label']},"
                       f" darkroom {want.get(p['name'])}")


class SharpByImage:
    """sharp_render.js processes, one per image (its boxes are the image's,
    see boxes_for), behind the Server interface."""

    def __init__(self, mode, images, env):
        script = os.path.join(ROOT, "tests", "bench", "sharp_render.js")
        self.by_path = {img["path"]: Server(["node", script, mode, json.dumps(img["presets"])],
                                            env=env) for img in images}

    def times(self, n, path, out_dir=None):
        return self.by_path[path].times(n, path, out_dir)

    def close(self):
        for s in self.by_path.values():
            s.close()


@case("renditions: time per output, interleaved rounds")
def _():
    expect("images" in _state, "set-up failed")
    images = _state["images"]
    samples = {(t, img["label"]): [] for t in TOOLS for img in images}
    try:
        for rnd in range(ROUNDS):
            for i, img in enumerate(images):
                k = (rnd + i) % len(TOOLS)
                for tool in TOOLS[k:] + TOOLS[:k]:
                    samples[(tool, img["label"])] += measure(tool, img)
    finally:
        for key in ("darkroom", "sharp seq", "sharp par"):
            if key in _state:
                _state[key].close()
    names = "+".join(p["name"] for p in default_presets())
    for img in images:
        med = {t: statistics.median(w for w, _ in samples[(t, img["label"])]) for t in TOOLS}
        cpu = {t: statistics.median(c for _, c in samples[(t, img["label"])]) for t in TOOLS}
        best_tool = min(COMPETITORS, key=lambda t: med[t])
        best = med[best_tool]
        boxes = ", ".join(f"{p['name']} {p['width']}x{p['height']} {p['fit']} WebP Q{p['quality']}"
                          for p in img["presets"])
        for t in TOOLS:
            n = len(samples[(t, img["label"])])
            if t == "darkroom":
                record("renditions", WHAT[t].format(img["label"]), med[t], "ms",
                       f"<= {best:.1f}",
                       f"{boxes}; decode + metadata + encodes, 1 libvips thread;"
                       f" target: best of vipsthumbnail and sharp ({best_tool});"
                       f" median of {n}; CPU {cpu[t]:.0f} ms")
            else:
                record("renditions", WHAT[t].format(img["label"]), med[t], "ms", "",
                       f"{boxes}; median of {n}; CPU {cpu[t]:.0f} ms"
                       + ("; centre crop (no attention crop)" if t == "convert" else ""))
        record("renditions", f"darkroom / best of vipsthumbnail and sharp, {img['label']}",
               med["darkroom"] / best, "x", "<= 1",
               f"best: {best_tool}; CPU per output darkroom {cpu['darkroom']:.0f} ms,"
               f" {best_tool} {cpu[best_tool]:.0f} ms; darkroom / sharp par"
               f" {med['darkroom'] / med['sharp par']:.2f}; {names}")


run()
