#!/usr/bin/env python3
"""tests/bench/bench_batches.py — the batches section of `make bench`:
POST /v1/batches of 1000 items each through lighttpd and darkroom.fcgi
into MariaDB with durable commits (innodb_flush_log_at_trx_commit=1).

Each of BENCH_BATCHES_CLIENTS clients (default 2, one keep-alive
connection each) sends 1000-item batches one after another for
BENCH_BATCHES_SECONDS (default 10), after BENCH_BATCHES_WARMUP batches
(default 3) that are not counted. A batch is a typical request: the null
adapter (no provider call), a prompt and a seed per item, one metadata
key from the defaults and one of the item's own, no renditions.

Figures (benchlib.record): jobs/s created (every job committed: the
answer comes after the COMMIT), p50 and p99 of one 1000-item request,
and, in the note, the SQL statements and redo-log writes per batch.
Targets: >= 20000 jobs/s, p99 < 250 ms. The jobs and batches made are
deleted at the end, so later sections do not find them queued.
"""

import http.client
import json
import os
import sys
import threading
import time
import urllib.parse

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
import benchlib  # noqa: E402  (puts tests/integration on sys.path)
from benchlib import db_counters, percentile, per_request, record  # noqa: E402
from harness import case, expect, run, sql  # noqa: E402

URL = urllib.parse.urlsplit(os.environ["DARKROOM_URL"])
KEY = os.environ["DARKROOM_API_KEY"]
SECONDS = float(os.environ.get("BENCH_BATCHES_SECONDS", "10"))
WARMUP = int(os.environ.get("BENCH_BATCHES_WARMUP", "3"))
CLIENTS = int(os.environ.get("BENCH_BATCHES_CLIENTS", "2"))
ITEMS = 1000


def body(n):
    items = [{"input": {"prompt": f"a lighthouse at dusk, oil on canvas, take {i}", "seed": i},
              "metadata": {"item": str(i)}} for i in range(n)]
    return json.dumps({"defaults": {"adapter": "null", "model": "acme/flux", "renditions": [],
                                    "metadata": {"campaign": "bench"}},
                       "items": items}, separators=(",", ":")).encode()


BODY = body(ITEMS)
HEADERS = {"Authorization": f"Bearer {KEY}", "Content-Type": "application/json"}


def post(conn):
    """One batch on `conn`; its latency in seconds."""
    t0 = time.monotonic()
    conn.request("POST", "/v1/batches", body=BODY, headers=HEADERS)
    r = conn.getresponse()
    data = r.read()
    took = time.monotonic() - t0
    expect(r.status == 202, f"POST /v1/batches answered {r.status}: {data[:300]!r}")
    return took


@case("1000-item batches: jobs/s and the p99 of one request")
def batches():
    conns = [http.client.HTTPConnection(URL.hostname, URL.port, timeout=60) for _ in range(CLIENTS)]
    lat = [[] for _ in range(CLIENTS)]
    errors = []
    for _ in range(WARMUP):
        post(conns[0])
    before = db_counters()
    jobs_before = int(sql("SELECT COUNT(*) FROM jobs")[0][0])
    stop = time.monotonic() + SECONDS

    def client(k):
        try:
            while time.monotonic() < stop:
                lat[k].append(post(conns[k]))
        except Exception as e:  # reported below
            errors.append(e)

    t0 = time.monotonic()
    threads = [threading.Thread(target=client, args=(k,)) for k in range(CLIENTS)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    wall = time.monotonic() - t0
    after = db_counters()
    for c in conns:
        c.close()
    expect(not errors, f"a client failed: {errors[:1]}")
    samples = [x for one in lat for x in one]
    n = len(samples)
    made = int(sql("SELECT COUNT(*) FROM jobs")[0][0]) - jobs_before
    expect(made == n * ITEMS, f"{made} jobs made for {n} batches of {ITEMS}")
    note = (f"{CLIENTS} clients, {n} batches of {ITEMS} in {wall:.1f} s;"
            f" {per_request(before, after, n)} (per batch)")
    record("batches", f"POST /v1/batches ({ITEMS} items), jobs/s", made / wall, "jobs/s",
           ">= 20000", note)
    record("batches", f"POST /v1/batches ({ITEMS} items), p50", percentile(samples, 50) * 1000,
           "ms", "", note)
    record("batches", f"POST /v1/batches ({ITEMS} items), p99", percentile(samples, 99) * 1000,
           "ms", "< 250", note)
    # One client alone: the latency of a request that waits for no other.
    conn = http.client.HTTPConnection(URL.hostname, URL.port, timeout=60)
    alone = [post(conn) for _ in range(max(10, n // CLIENTS))]
    conn.close()
    record("batches", f"POST /v1/batches ({ITEMS} items), one client, p99",
           percentile(alone, 99) * 1000, "ms", "< 250", f"{len(alone)} batches one after another")


@case("the jobs and batches made are deleted")
def cleanup():
    benchlib.drop_jobs("j.batch_id IS NOT NULL")
    sql("DELETE FROM batches")
    expect(int(sql("SELECT COUNT(*) FROM jobs WHERE batch_id IS NOT NULL")[0][0]) == 0, "jobs left")


if __name__ == "__main__":
    run()
