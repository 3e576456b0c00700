#!/usr/bin/env python3
"""tests/bench/bench_upload_memory.py — the peak resident set (VmHWM) of
darkroom.fcgi taking one 100 MB upload (POST /v1/files).

A 100,000,000-byte body (a PNG's first bytes, so the type check takes it,
then pseudo-random bytes) is posted through lighttpd, which keeps it in a
temporary file and hands it on; the app spools it to its own temporary
file while hashing it (core/files.c), checks the type, stores it through
the fs sink under files/ and answers 201. VmHWM of every darkroom.fcgi
process lighttpd spawned is read before and after; the figure is the peak
of the process whose peak grew, with its peak before the upload. The
answer's SHA-256 is checked against the body's. The file is deleted
again afterwards.

Run alone with:
  bash tests/run-integration.sh tests/bench/bench_upload_memory.py
or as the upload_memory section of `make bench` (make bench
BENCH=upload_memory).
"""

import hashlib
import os
import random
import sys
import time

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
from benchlib import app_pids, record, vm_hwm_kib, vm_rss_kib  # noqa: E402
from harness import case, expect, expect_eq, noisy_png, request, run  # noqa: E402

LIGHTTPD_PID = int(os.environ["DARKROOM_LIGHTTPD_PID"])
SIZE = 100_000_000


@case("memory: darkroom.fcgi taking a 100 MB upload (POST /v1/files)")
def _():
    head = noisy_png(16, 16)
    body = head + random.Random(7).randbytes(SIZE - len(head))
    digest = hashlib.sha256(body).hexdigest()
    pids = app_pids(LIGHTTPD_PID)
    expect(pids, "no darkroom.fcgi process under lighttpd")
    # Wake every process first, so the figure is not its start-up.
    for _ in range(len(pids) * 2):
        request("GET", "/v1/files?limit=1")
    before = {p: vm_hwm_kib(p) for p in pids}
    t0 = time.monotonic()
    r = request("POST", "/v1/files", body, headers={"Content-Type": "image/png"}, timeout=300)
    took = time.monotonic() - t0
    expect_eq(r.status, 201, f"answer {r.body[:300]!r}")
    expect_eq(r.json["sha256"], digest, "sha256 of the stored file")
    expect_eq(r.json["bytes"], SIZE, "bytes")
    time.sleep(0.5)
    after = {p: vm_hwm_kib(p) for p in pids if os.path.exists(f"/proc/{p}")}
    grown = [p for p in after if after[p] > before[p]] or list(after)
    pid = max(grown, key=lambda p: after[p] - before[p])
    mib = SIZE / 1048576.0
    record("memory", "darkroom.fcgi peak RSS (VmHWM) taking a 100 MB upload",
           after[pid] / 1024.0, "MiB", f"< {before[pid] / 1024.0 + 8:.0f}",
           f"{mib:.1f} MiB body, spooled to a temporary file while hashed, stored by the fs"
           f" sink; peak before {before[pid] / 1024.0:.1f} MiB, resident after"
           f" {vm_rss_kib(pid) / 1024.0:.1f} MiB; {took:.2f} s through lighttpd"
           f" ({mib / took:.0f} MiB/s)")
    request("DELETE", f"/v1/files/{r.json['id']}")


run()
