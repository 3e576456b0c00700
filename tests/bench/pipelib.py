"""tests/bench/pipelib.py — what the pipeline and latency sections of
`make bench` share: test images, output files served by lighttpd, worker
pools that are ready, and waiting for jobs through the database (one
query per round, not one HTTP request per job, so the waiting adds little
load to what is measured).
"""

import os
import struct
import subprocess
import time
import zlib

import benchlib  # noqa: F401  (puts tests/integration on sys.path)
from harness import sql

WORK = os.environ.get("DARKROOM_TEST_DIR", "/tmp")
MEDIA = os.environ.get("DARKROOM_MEDIA", os.path.join(WORK, "media"))
URL = os.environ.get("DARKROOM_URL", "http://127.0.0.1:8080")
PRESETS = ["thumb", "card"]  # default_renditions of conf/darkroom.conf


def make_image(path, width, height, fmt, blur):
    """A photo-like test image with the vips CLI: smooth noise (noise at
    1/blur the size, scaled up), saved as `path` with save options fmt."""
    small = path + ".small.v"
    subprocess.run(["vips", "gaussnoise", small, str(width // blur), str(height // blur),
                    "--sigma", "60", "--mean", "128"], check=True)
    subprocess.run(["vips", "cast", small, small + "8.v", "uchar"], check=True)
    subprocess.run(["vips", "bandjoin", f"{small}8.v {small}8.v {small}8.v", small + "3.v"],
                   check=True)
    ext = fmt.split("[", 1)
    target = path + ("[" + ext[1] if len(ext) > 1 else "")
    subprocess.run(["vips", "resize", small + "3.v", target, str(blur)], check=True)
    for f in (small, small + "8.v", small + "3.v"):
        os.unlink(f)


def tagged_png(png, tag):
    """PNG bytes with a private ancillary chunk naming `tag` before IEND:
    a distinct file (another SHA-256, other storage keys), the same
    image."""
    data = tag.encode()
    chunk = (struct.pack(">I", len(data)) + b"drBn" + data
             + struct.pack(">I", zlib.crc32(b"drBn" + data) & 0xFFFFFFFF))
    return png[:-12] + chunk + png[-12:]


def base_images(n=4):
    """n different 1024x1024 noise PNGs (bytes), made once per run."""
    out = []
    for i in range(n):
        path = os.path.join(WORK, f"bench-pipe-base-{i}.png")
        if not os.path.exists(path):
            make_image(path, 1024, 1024, "png", blur=2)
        with open(path, "rb") as f:
            out.append(f.read())
    return out


def files_for(tag, count):
    """Write `count` distinct 1024x1024 PNGs under the media directory,
    which lighttpd serves; return their URLs and the directory (for
    remove_files)."""
    bases = base_images()
    d = os.path.join(MEDIA, "bench-" + tag)
    os.makedirs(d, exist_ok=True)
    urls = []
    for i in range(count):
        name = f"out-{i}.png"
        with open(os.path.join(d, name), "wb") as f:
            f.write(tagged_png(bases[i % len(bases)], f"{tag}-{i}-{time.time_ns()}"))
        urls.append(f"{URL}/media/bench-{tag}/{name}")
    return urls, d


def remove_files(d):
    for f in os.listdir(d):
        os.unlink(os.path.join(d, f))
    os.rmdir(d)


def in_list(ids):
    return ",".join(f"'{i}'" for i in ids)


def wait_final(ids, timeout):
    """Wait until every job of ids is final or timeout seconds pass;
    return {status: count}."""
    deadline = time.monotonic() + timeout
    counts = {}
    while time.monotonic() < deadline:
        counts = {r[0]: int(r[1]) for r in
                  sql(f"SELECT status, COUNT(*) FROM jobs WHERE id IN ({in_list(ids)})"
                      " GROUP BY status")}
        if sum(counts.get(s, 0) for s in ("succeeded", "failed", "canceled")) == len(ids):
            return counts
        time.sleep(0.25)
    return counts


def worker_ready(w, n, timeout=20):
    """Wait until the n processes of worker pool w have started (their
    heartbeat rows); return their pids, or None."""
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        kids = w.children()
        if len(kids) == n:
            rows = sql("SELECT COUNT(*) FROM worker_heartbeats WHERE pid IN"
                       f" ({','.join(str(k) for k in kids)})")
            if int(rows[0][0]) >= n:
                return kids
        time.sleep(0.1)
    return None


# ------------------------------------------------------------ CPU time

_HZ = os.sysconf("SC_CLK_TCK")
_KINDS = (("mariadbd", "MariaDB"), ("s3rver", "s3rver"), ("darkroom.fcgi", "lighttpd + app"),
          ("lighttpd", "lighttpd + app"), ("tests/fakes/", "fakes"))


def _procs():
    out = {}
    for p in os.listdir("/proc"):
        if not p.isdigit():
            continue
        try:
            with open(f"/proc/{p}/stat") as f:
                st = f.read()
            with open(f"/proc/{p}/cmdline") as f:
                cmd = f.read().replace("\0", " ")
        except OSError:
            continue
        fields = st[st.rindex(")") + 2:].split()
        out[int(p)] = (cmd, int(fields[1]), (int(fields[11]) + int(fields[12])) / _HZ)
    return out


def cpu_snapshot():
    """CPU seconds used so far by the services of this run (the processes
    under tests/run-integration.sh, by kind) and by this program's reaped
    children (worker pools once stopped; also the mariadb client of
    sql()), as {kind: seconds}. Subtract two with cpu_delta()."""
    procs = _procs()
    top = os.getpid()
    while top > 1 and "run-integration.sh" not in procs.get(top, ("", 1))[0]:
        top = procs.get(top, ("", 1))[1]
    kids = {}
    for pid, (_, ppid, _) in procs.items():
        kids.setdefault(ppid, []).append(pid)
    out = {}
    stack = [top] if top > 1 else []
    while stack:
        for k in kids.get(stack.pop(), []):
            stack.append(k)
            cmd = procs[k][0]
            kind = next((name for key, name in _KINDS if key in cmd), None)
            if kind:
                out[(kind, k, cmd)] = procs[k][2]
    t = os.times()
    out[("workers", 0, "")] = t.children_user + t.children_system
    return out


def cpu_delta(a, b):
    """{kind: seconds} used between snapshots a and b."""
    agg = {}
    for key, secs in b.items():
        agg[key[0]] = agg.get(key[0], 0.0) + secs - a.get(key, 0.0)
    return agg
