#!/usr/bin/env python3
"""tests/integration/bench_pipeline.py — figures for the persistence
pipeline, printed, not asserted (a timed test would flake):

  * time per output for a 1024x1024 PNG through download, three renditions
    (thumb, card, small), upload to the fs sink and index: the span between
    the job's `persisting` and `succeeded` events, over N jobs, one worker;
  * the worker process's peak RSS (VmHWM) while it persists a 4000x3000
    JPEG.

Run it through the integration runner, which starts the services:

    bash tests/run-integration.sh tests/integration/bench_pipeline.py
"""

import http.server
import os
import statistics
import subprocess
import sys
import threading
import time

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
from harness import case, expect_eq, run, sql  # noqa: E402
from engine_lib import FINAL, Worker, create, fake_reset, job, wait_status  # noqa: E402

N = int(os.environ.get("DARKROOM_BENCH_JOBS", "20"))
WORK = os.environ.get("DARKROOM_TEST_DIR", "/tmp")


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


class Files:
    """A static file server on loopback for pre-made outputs, so the
    figures measure darkroom, not the fake generating images."""

    def __init__(self, directory):
        class Handler(http.server.SimpleHTTPRequestHandler):
            def __init__(self, *a, **kw):
                super().__init__(*a, directory=directory, **kw)

            def log_message(self, *a):
                pass

        self.srv = http.server.ThreadingHTTPServer(("127.0.0.1", 0), Handler)
        threading.Thread(target=self.srv.serve_forever, daemon=True).start()
        self.base = f"http://127.0.0.1:{self.srv.server_address[1]}"

    def close(self):
        self.srv.shutdown()


def span_ms(jid):
    rows = sql("SELECT UNIX_TIMESTAMP(MIN(IF(to_status = 'persisting', at, NULL))),"
               " UNIX_TIMESTAMP(MIN(IF(to_status = 'succeeded', at, NULL)))"
               f" FROM job_events WHERE job_id = '{jid}'")
    a, b = rows[0]
    return (float(b) - float(a)) * 1000


@case("figure: one 1024x1024 PNG output through download, 3 renditions, upload, index")
def _():
    files = Files(WORK)
    for i in range(N):
        make_image(os.path.join(WORK, f"bench-1024-{i}.png"), 1024, 1024, "png", blur=2)
    fake_reset()
    w = Worker(1, "bench-worker")
    try:
        # One at a time, so no job waits behind another in the queue.
        jobs = []
        for i in range(N):
            jid = create({"fake_output_urls": f"{files.base}/bench-1024-{i}.png"},
                         renditions=["thumb", "card", "small"])
            jobs += wait_status([jid], FINAL, timeout=120)
    finally:
        w.stop()
        files.close()
    for j in jobs:
        expect_eq(j["status"], "succeeded", "status")
    spans = sorted(span_ms(j["id"]) for j in jobs)
    print(f"# figure: persist step per 1024x1024 PNG output (download + thumb/card/small"
          f" + upload + index): median {statistics.median(spans):.1f} ms,"
          f" p90 {spans[int(len(spans) * 0.9) - 1]:.1f} ms, n={len(spans)}")


@case("figure: worker peak RSS on a 4000x3000 JPEG")
def _():
    path = os.path.join(WORK, "bench-4000x3000.jpg")
    make_image(path, 4000, 3000, "jpg[Q=85]", blur=10)

    files = Files(WORK)
    url = f"{files.base}/bench-4000x3000.jpg"
    fake_reset()
    w = Worker(1, "bench-rss")
    peak = 0
    try:
        time.sleep(1)
        child = w.children()[0]
        jid = create({"fake_output_urls": url}, renditions=["thumb", "card", "small"])
        deadline = time.monotonic() + 120
        while time.monotonic() < deadline:
            with open(f"/proc/{child}/status") as f:
                for line in f:
                    if line.startswith("VmHWM:"):
                        peak = int(line.split()[1])
            st = job(jid)
            if st["status"] in FINAL:
                break
            time.sleep(0.05)
        with open(f"/proc/{child}/status") as f:
            for line in f:
                if line.startswith("VmHWM:"):
                    peak = int(line.split()[1])
    finally:
        w.stop()
        files.close()
    expect_eq(st["status"], "succeeded", "status")
    print(f"# figure: worker peak RSS (VmHWM) persisting a 4000x3000 JPEG with 3 renditions:"
          f" {peak / 1024:.1f} MiB")


run()
