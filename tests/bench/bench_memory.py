#!/usr/bin/env python3
"""tests/bench/bench_memory.py — the memory section of `make bench`: the
peak resident set (VmHWM) of a real `darkroom worker` process persisting
one large image.

For each image a fresh worker (one process, DARKROOM_SINK=s3) takes one
job through the replicate adapter and the fake Replicate, whose output URL
points at the image served by lighttpd over loopback; the worker downloads
it, checks and hashes it, renders the presets thumb and card (the
default_renditions of conf/darkroom.conf), uploads the original and both
renditions to s3rver and indexes them. VmHWM is read from
/proc/PID/status once the job has succeeded, before the worker stops; a
fresh process per image, so one image's peak does not hide the next. The
idle figure is the same process before its job: what the image adds is
the difference.

The images (tests/bench/testimages.py): a 4000x3000 photo-like JPEG
(target < 96 MiB) and a 50-megapixel (10000x5000) photo-like PNG. The
integration configuration caps outputs at 4M, so the worker runs with a
copy of it whose [limits] allow these files (max_output_bytes,
max_image_bytes; max_pixels stays at its default of 100 million).

Then, for the same two images, the peak RSS of a bench_render process
(tests/bench/bench_render.c) rendering them once with the file read into
memory (image_process()) and decoded from the file's descriptor
(image_process_fd(), which libvips reads as it decodes, what the worker's
pipeline does with its downloaded file): what handing the render step the
file saves.

Bounded: each job waits at most BENCH_MEMORY_TIMEOUT seconds (default
60). A case fails only when it could not measure (the job did not
succeed).
"""

import os
import re
import subprocess
import sys
import time

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
from benchlib import BIN, record, vm_hwm_kib  # noqa: E402
from harness import case, expect, expect_json, post, run, sql  # noqa: E402
from engine_lib import Worker, fake_reset, wait_status  # noqa: E402
import testimages  # noqa: E402

WORK = os.environ.get("DARKROOM_TEST_DIR", "/tmp")
MEDIA = os.environ["DARKROOM_MEDIA"]
URL = os.environ["DARKROOM_URL"]
CONF = os.environ["DARKROOM_CONF"]
TIMEOUT = float(os.environ.get("BENCH_MEMORY_TIMEOUT", "60"))
PRESETS = ["thumb", "card"]


def big_conf():
    """A copy of the integration configuration with limits for large
    files."""
    with open(CONF) as f:
        text = f.read()
    text, n = re.subn(r"(?m)^max_output_bytes = .*$",
                      "max_output_bytes = 512M\nmax_image_bytes = 256M", text)
    expect(n == 1, "no max_output_bytes line in the integration configuration")
    path = os.path.join(WORK, "darkroom-bench-memory.conf")
    with open(path, "w") as f:
        f.write(text)
    return path


def serve(path):
    """The URL of `path` under lighttpd's media directory."""
    d = os.path.join(MEDIA, "bench-memory")
    os.makedirs(d, exist_ok=True)
    target = os.path.join(d, os.path.basename(path))
    if not os.path.exists(target):
        try:
            os.link(path, target)
        except OSError:
            with open(path, "rb") as src, open(target, "wb") as dst:
                dst.write(src.read())
    return f"{URL}/media/bench-memory/{os.path.basename(path)}"


def ready_child(w, timeout=20):
    """The pid of the worker's one process once it has a heartbeat row."""
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        kids = w.children()
        if len(kids) == 1:
            rows = sql(f"SELECT COUNT(*) FROM worker_heartbeats WHERE pid = {kids[0]}")
            if int(rows[0][0]) >= 1:
                return kids[0]
        time.sleep(0.1)
    return None


def peak(label, path):
    """Run one job persisting `path` in a fresh worker; (idle, peak) KiB."""
    url = serve(path)
    fake_reset(start_delay=0.0, duration=0.05)
    w = Worker(1, "bench-memory-" + label.split()[0],
               env={"DARKROOM_SINK": "s3", "DARKROOM_CONF": big_conf()})
    try:
        pid = ready_child(w)
        expect(pid, f"the worker did not start (see {w.log_path})")
        idle = vm_hwm_kib(pid)
        body = {"adapter": "replicate", "model": "acme/flux",
                "input": {"prompt": "bench", "fake_output_urls": [url]},
                "renditions": PRESETS}
        jid = expect_json(post("/v1/jobs", body), 202)["id"]
        final = wait_status([jid], ("succeeded", "failed", "canceled"), timeout=TIMEOUT)[0]
        hwm = vm_hwm_kib(pid)
    finally:
        w.stop()
    expect(final["status"] == "succeeded",
           f"{label}: job {final['status']}: {str(final.get('error'))[:300]}")
    stored = sql(f"SELECT COUNT(*) FROM outputs WHERE job_id = '{jid}' AND state = 'stored'")
    expect(int(stored[0][0]) == 1, f"{label}: output not stored")
    return idle, hwm


def figure(label, path, target):
    idle, hwm = peak(label, path)
    mib = os.path.getsize(path) / 1048576.0
    record("memory", f"worker peak RSS (VmHWM) persisting a {label}", hwm / 1024.0, "MiB",
           target, f"{mib:.1f} MiB file; thumb + card (webp), s3rver; idle worker before the"
           f" job {idle / 1024.0:.1f} MiB; a fresh worker process")


def render_peak(path, from_fd):
    """Peak RSS (KiB) of one bench_render process rendering thumb + card
    of `path` once: read into memory (image_process) or decoded from its
    descriptor (image_process_fd, what the worker does)."""
    argv = [os.path.join(BIN, "bench_render"), "-c", big_conf(), "-p", ",".join(PRESETS),
            "-n", "1"] + (["-f"] if from_fd else []) + [path]
    proc = subprocess.Popen(argv, stdout=subprocess.DEVNULL, stderr=subprocess.PIPE)
    _, status, usage = os.wait4(proc.pid, 0)
    err = proc.stderr.read().decode(errors="replace")
    proc.stderr.close()
    expect(os.waitstatus_to_exitcode(status) == 0, f"bench_render failed: {err[:300]}")
    return usage.ru_maxrss


@case("memory: worker persisting a 4000x3000 JPEG")
def _():
    figure("4000x3000 JPEG", testimages.make(4000, 3000, "jpg", "Q=90", blur=6), "< 96")


@case("memory: worker persisting a 50-megapixel PNG")
def _():
    figure("10000x5000 PNG (50 MP)", testimages.make(10000, 5000, "png", "filter=all", blur=8), "")


@case("memory: image_process from memory and from the file (bench_render)")
def _():
    for label, path in (("4000x3000 JPEG", testimages.make(4000, 3000, "jpg", "Q=90", blur=6)),
                        ("10000x5000 PNG", testimages.make(10000, 5000, "png", "filter=all",
                                                           blur=8))):
        mem, fd = render_peak(path, False), render_peak(path, True)
        record("memory", f"render process peak RSS, file in memory, {label}", mem / 1024.0,
               "MiB", "", "bench_render: image_process() on the bytes, the download read into"
               " memory (what the worker did before it decoded from the file); thumb + card")
        record("memory", f"render process peak RSS, decoded from the file, {label}",
               fd / 1024.0, "MiB", "", f"bench_render -f: image_process_fd(), as the worker calls it; "
               f"{(mem - fd) / 1024.0:.0f} MiB less than from memory")


run()
