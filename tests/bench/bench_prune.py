#!/usr/bin/env python3
"""tests/bench/bench_prune.py — the prune section of `make bench`: how long
`darkroom prune` takes to remove many expired idempotency keys, how long
the longest of its statements runs and holds its locks, and what a client
creating jobs with an Idempotency-Key sees meanwhile.

BENCH_PRUNE_ROWS (default 100000) keys two days old are inserted at once
with the Sequence engine, plus 1000 fresh ones that must stay. The server's
slow query log (to its table, every statement) times each DELETE of the
run: query_time and lock_time of the longest. While prune runs, a client
posts jobs with new Idempotency-Keys one after another (as the API's
intake does: the same table, the newest end of its time index); its
latencies are compared with the same load just before.
"""

import os
import subprocess
import sys
import threading
import time

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
import benchlib  # noqa: E402  (puts tests/integration/ on sys.path)
from benchlib import percentile, record  # noqa: E402
from harness import case, expect, expect_eq, post, run, sql  # noqa: E402

BIN = os.environ["DARKROOM_BIN"]
CONF = os.environ["DARKROOM_CONF"]
ROWS = int(os.environ.get("BENCH_PRUNE_ROWS", "100000"))
BODY = {"adapter": "replicate", "model": "acme/prune-bench", "input": {"prompt": "a quay"}}
STATE = {}


def keys(where="1"):
    return int(sql(f"SELECT COUNT(*) FROM idempotency_keys WHERE {where}")[0][0])


def create_load(stop, tag, out):
    """POST /v1/jobs with a fresh Idempotency-Key until stop is set;
    append each latency (ms) to out."""
    i = 0
    while not stop.is_set():
        t0 = time.monotonic()
        r = post("/v1/jobs", BODY, headers={"Idempotency-Key": f"bench-{tag}-{i}"})
        out.append((time.monotonic() - t0) * 1000)
        if r.status != 202:
            raise RuntimeError(f"POST /v1/jobs answered {r.status}")
        i += 1


@case(f"set-up: {ROWS} idempotency keys two days old, 1000 fresh ones")
def _():
    sql("DELETE FROM idempotency_keys")
    sql("INSERT INTO idempotency_keys (scope, idem_key, request_hash, job_id, created_at)"
        " SELECT 'benchprune000000', CONCAT('old-', seq), REPEAT('0', 64),"
        " 'j_01M8457ED2RMPKJD94H30597VN', NOW(6) - INTERVAL 2 DAY - INTERVAL seq SECOND"
        f" FROM seq_1_to_{ROWS}")
    sql("INSERT INTO idempotency_keys (scope, idem_key, request_hash, job_id, created_at)"
        " SELECT 'benchprune000000', CONCAT('new-', seq), REPEAT('0', 64),"
        " 'j_01M8457ED2RMPKJD94H30597VN', NOW(6) FROM seq_1_to_1000")
    expect_eq(keys(), ROWS + 1000, "keys")


@case("prune: wall time, statements, the longest one and its lock time; API latency meanwhile")
def _():
    base = []
    stop = threading.Event()
    t = threading.Thread(target=create_load, args=(stop, "base", base))
    t.start()
    time.sleep(3)
    stop.set()
    t.join()

    sql("SET GLOBAL log_output = 'TABLE', GLOBAL long_query_time = 0,"
        " GLOBAL slow_query_log = 1")
    sql("TRUNCATE mysql.slow_log")
    during = []
    stop = threading.Event()
    t = threading.Thread(target=create_load, args=(stop, "during", during))
    t.start()
    time.sleep(0.5)
    n_before = len(during)
    t0 = time.monotonic()
    p = subprocess.run([BIN, "--config", CONF, "prune"], capture_output=True, text=True,
                       timeout=600, stdin=subprocess.DEVNULL)
    wall = time.monotonic() - t0
    n_after = len(during)
    stop.set()
    t.join()
    sql("SET GLOBAL slow_query_log = 0")
    expect_eq(p.returncode, 0, f"prune exit status ({p.stderr})")
    expect(p.stdout.startswith(f"prune: {ROWS} idempotency_keys"), p.stdout)
    expect_eq(keys("idem_key LIKE 'old-%'"), 0, "expired keys left")
    expect_eq(keys("idem_key LIKE 'new-%'"), 1000, "fresh keys kept")

    rows = sql("SELECT COUNT(*), MAX(TIME_TO_SEC(query_time)), MAX(TIME_TO_SEC(lock_time)),"
               " SUM(TIME_TO_SEC(query_time)) FROM mysql.slow_log"
               " WHERE sql_text LIKE 'DELETE FROM idempotency_keys WHERE created_at%'")
    stmts, longest, lock, total = int(rows[0][0]), float(rows[0][1]), float(rows[0][2]), float(rows[0][3])
    expect(stmts >= ROWS // 1000, f"{stmts} DELETE statements logged")
    lat = during[n_before:n_after]
    expect(len(lat) >= 5, f"{len(lat)} creates during prune")
    note = f"{ROWS} expired keys of {ROWS + 1000}, batches of 1000"
    record("prune", "darkroom prune, wall time", wall, "s", "", note)
    record("prune", "rows removed per second", ROWS / wall, "rows/s", "", note)
    record("prune", "DELETE statements", stmts, "", "", "the server's log")
    record("prune", "longest DELETE statement", longest * 1000, "ms", "< 100",
           f"sum of all: {total:.3f} s")
    record("prune", "longest lock time of a DELETE", lock * 1000, "ms", "", "the server's lock_time")
    record("prune", "POST /v1/jobs with Idempotency-Key, p50, before", percentile(base, 50), "ms",
           "", f"{len(base)} requests, one at a time")
    record("prune", "POST /v1/jobs with Idempotency-Key, max, before", max(base), "ms")
    record("prune", "POST /v1/jobs with Idempotency-Key, p50, during prune", percentile(lat, 50), "ms",
           "", f"{len(lat)} requests, one at a time")
    record("prune", "POST /v1/jobs with Idempotency-Key, max, during prune", max(lat), "ms")


run()
