#!/usr/bin/env python3
"""tests/bench/bench_webhook_memory.py — the peak resident set (VmHWM) of
darkroom.fcgi taking one large provider webhook.

A signed Replicate-style delivery whose output is a 4000x3000 PNG as a
data: URI (a gradient under 5 bits of noise per channel, about 24 MB, so
a 31 MB body: what Cog sends for a photo) is posted to
/v1/hooks/replicate through lighttpd, for a prediction no job holds: the
app reads the body, takes the file out of it (core/datascan.c), verifies
the signature, lets the adapter parse the rest, stores the decoded file
in MariaDB (core/blobs.c) and, no job claiming it, deletes it again
(answer 200 "unknown"). VmHWM of every darkroom.fcgi process lighttpd
spawned is read before and after; the figure is the peak of the process
whose peak grew, with its peak before the delivery and its resident set
(VmRSS) half a second after the answer (what it keeps).

Run alone with:
  bash tests/run-integration.sh tests/bench/bench_webhook_memory.py
or as the webhook_memory section of `make bench`.
"""

import base64
import json
import os
import sys
import time

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
from benchlib import app_pids, record, vm_hwm_kib, vm_rss_kib  # noqa: E402
from harness import case, expect, noisy_png, run  # noqa: E402
from engine_lib import hook, sign  # noqa: E402

LIGHTTPD_PID = int(os.environ["DARKROOM_LIGHTTPD_PID"])


@case("memory: darkroom.fcgi taking a 31 MB webhook (a 4000x3000 PNG as a data: URI)")
def _():
    image = noisy_png(4000, 3000)
    body = json.dumps({"id": "benchhook" + os.urandom(4).hex() + "0" * 14,
                       "status": "succeeded", "version": "v" * 64, "input": {"prompt": "x"},
                       "output": ["data:image/png;base64," + base64.b64encode(image).decode()],
                       "created_at": "2026-01-01T00:00:00Z"}).encode()
    pids = app_pids(LIGHTTPD_PID)
    expect(pids, "no darkroom.fcgi process under lighttpd")
    before = {p: vm_hwm_kib(p) for p in pids}
    t0 = time.monotonic()
    r = hook(body, sign(body))
    took = time.monotonic() - t0
    expect(r.status in (200, 400), f"answer to the delivery: {r.status} {r.body[:300]!r}")
    answer = f"{r.status} " + (r.json.get("status", "") if r.status == 200 else r.json.get("detail", ""))
    time.sleep(0.5)  # the app frees the body after the answer has left
    after = {p: vm_hwm_kib(p) for p in pids if os.path.exists(f"/proc/{p}")}
    grown = [p for p in after if after[p] > before[p]]
    expect(grown, f"no darkroom.fcgi peak grew: {before} -> {after}")
    pid = max(grown, key=lambda p: after[p] - before[p])
    mib = len(body) / 1048576.0
    record("memory", "darkroom.fcgi peak RSS (VmHWM) taking a webhook of a 4000x3000 PNG data: URI",
           after[pid] / 1024.0, "MiB", f"< {2 * mib + before[pid] / 1024.0:.0f}",
           f"{mib:.1f} MiB body ({len(image) / 1048576.0:.1f} MiB PNG), unknown prediction: read,"
           f" scanned, verified, parsed, file stored and dropped, answered {answer!r}; peak before {before[pid] / 1024.0:.1f} MiB, resident after"
           f" {vm_rss_kib(pid) / 1024.0:.1f} MiB; {took:.2f} s through lighttpd")


run()
