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

Then [retention] jobs: BENCH_PRUNE_JOBS (default 100000) failed jobs that
ended two days ago, each as the pipeline leaves a job (a metadata value,
two events, an idempotency key, a stored output and a rendition, 100 jobs
sharing each object, as equal bytes do), plus 1000 that ended now; prune
with `failed = 1d` deletes them 100 per transaction. Measured: wall time,
jobs per second, the longest transaction (prune's own figure: its row
locks are held that long), the longest statement from the server's log,
and the same client's latencies meanwhile.
"""

import os
import re
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
JOBS = int(os.environ.get("BENCH_PRUNE_JOBS", "100000"))
WORK = os.environ.get("DARKROOM_TEST_DIR", "/tmp")
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


def prune_under_load(conf, tag):
    """Run `darkroom prune` with `conf` while create_load() runs, with the
    server's log of every statement on; (process, wall seconds, the
    latencies of the creates made while prune ran)."""
    sql("SET GLOBAL log_output = 'TABLE', GLOBAL long_query_time = 0,"
        " GLOBAL slow_query_log = 1")
    sql("TRUNCATE mysql.slow_log")
    during = []
    stop = threading.Event()
    t = threading.Thread(target=create_load, args=(stop, tag, during))
    t.start()
    time.sleep(0.5)
    n_before = len(during)
    t0 = time.monotonic()
    p = subprocess.run([BIN, "--config", conf, "prune"], capture_output=True, text=True,
                       timeout=1800, stdin=subprocess.DEVNULL)
    wall = time.monotonic() - t0
    n_after = len(during)
    stop.set()
    t.join()
    sql("SET GLOBAL slow_query_log = 0")
    return p, wall, during[n_before:n_after]


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

    p, wall, lat = prune_under_load(CONF, "during")
    expect_eq(p.returncode, 0, f"prune exit status ({p.stderr})")
    expect(p.stdout.startswith(f"prune: {ROWS} idempotency_keys"), p.stdout)
    expect_eq(keys("idem_key LIKE 'old-%'"), 0, "expired keys left")
    expect_eq(keys("idem_key LIKE 'new-%'"), 1000, "fresh keys kept")

    rows = sql("SELECT COUNT(*), MAX(TIME_TO_SEC(query_time)), MAX(TIME_TO_SEC(lock_time)),"
               " SUM(TIME_TO_SEC(query_time)) FROM mysql.slow_log"
               " WHERE sql_text LIKE 'DELETE FROM idempotency_keys WHERE created_at%'")
    stmts, longest, lock, total = int(rows[0][0]), float(rows[0][1]), float(rows[0][2]), float(rows[0][3])
    expect(stmts >= ROWS // 1000, f"{stmts} DELETE statements logged")
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


def bench_jobs(where="1"):
    return int(sql(f"SELECT COUNT(*) FROM jobs WHERE model = 'acme/prune-jobs' AND {where}")[0][0])


@case(f"set-up: {JOBS} failed jobs that ended two days ago, 1000 that ended now")
def _():
    n = JOBS + 1000
    # ids: j_ + 26 Crockford characters, like a ULID's
    sql("INSERT INTO jobs (id, status, step, adapter, model, input, renditions,"
        " created_at, updated_at, completed_at)"
        " SELECT CONCAT('j_7PRVNE', LPAD(seq, 20, '0')), 'failed', 'done', 'replicate',"
        " 'acme/prune-jobs', '{}', '[\"thumb\"]', NOW(6) - INTERVAL 3 DAY, NOW(6),"
        f" IF(seq <= {JOBS}, NOW(6) - INTERVAL 2 DAY + INTERVAL seq MICROSECOND, NOW(6))"
        f" FROM seq_1_to_{n}")
    sql("INSERT INTO job_metadata (job_id, k, v) SELECT id, 'user_id', RIGHT(id, 3)"
        " FROM jobs WHERE model = 'acme/prune-jobs'")
    for kind in ("status", "error"):
        sql("INSERT INTO job_events (job_id, at, kind, from_status, to_status)"
            f" SELECT id, NOW(6), '{kind}', 'processing', 'failed' FROM jobs"
            " WHERE model = 'acme/prune-jobs'")
    sql("INSERT INTO idempotency_keys (scope, idem_key, request_hash, job_id, created_at)"
        " SELECT 'benchprunejobs00', id, REPEAT('0', 64), id, NOW(6) FROM jobs"
        " WHERE model = 'acme/prune-jobs'")
    sql("INSERT INTO outputs (job_id, idx, kind, state, storage_key, bytes, sha256, created_at)"
        " SELECT id, 0, 'image', 'stored', CONCAT('bp/', CAST(RIGHT(id, 20) AS UNSIGNED) DIV 100, '.png'),"
        " 1000, REPEAT('a', 64), NOW(6) FROM jobs WHERE model = 'acme/prune-jobs'")
    sql("INSERT INTO renditions (output_id, name, storage_key, content_type, width, height, bytes,"
        " preset_hash, created_at)"
        " SELECT o.id, 'thumb', REPLACE(o.storage_key, '.png', '/thumb.webp'), 'image/webp', 256, 256,"
        " 100, REPEAT('0', 16), NOW(6) FROM outputs o JOIN jobs j ON j.id = o.job_id"
        " WHERE j.model = 'acme/prune-jobs'")
    sql("INSERT INTO objects (storage_key, kind, bytes, refs, state, created_at, updated_at)"
        " SELECT o.storage_key, 'original', 1000, COUNT(*), 'stored', NOW(6), NOW(6)"
        " FROM outputs o JOIN jobs j ON j.id = o.job_id WHERE j.model = 'acme/prune-jobs'"
        " GROUP BY o.storage_key")
    sql("INSERT INTO objects (storage_key, kind, bytes, refs, state, created_at, updated_at)"
        " SELECT r.storage_key, 'rendition', 100, COUNT(*), 'stored', NOW(6), NOW(6)"
        " FROM renditions r JOIN outputs o ON o.id = r.output_id JOIN jobs j ON j.id = o.job_id"
        " WHERE j.model = 'acme/prune-jobs' GROUP BY r.storage_key")
    expect_eq(bench_jobs(), n, "jobs")


@case("prune [retention] failed = 1d: wall time, the longest transaction and statement; API latency meanwhile")
def _():
    with open(CONF) as f:
        text = f.read()
    expect("[retention]" not in text, "the integration configuration has its own [retention]")
    conf = os.path.join(WORK, "darkroom-bench-prune-jobs.conf")
    with open(conf, "w") as f:
        f.write(text + "\n[retention]\nfailed = 1d\n")
    shared = int(sql("SELECT COUNT(*) FROM objects WHERE storage_key LIKE 'bp/%'")[0][0])

    p, wall, lat = prune_under_load(conf, "jobs")
    expect_eq(p.returncode, 0, f"prune exit status ({p.stderr})")
    m = re.search(r"prune: jobs: (\d+) deleted in (\d+) transactions, the longest ([\d.]+) ms", p.stderr)
    expect(m, f"no jobs line in {p.stderr!r}")
    deleted, txs, longest_tx = int(m.group(1)), int(m.group(2)), float(m.group(3))
    expect_eq(deleted, JOBS, "jobs deleted")
    expect_eq(bench_jobs(), 1000, "jobs left (those that ended now)")
    expect_eq(int(sql("SELECT COUNT(*) FROM deletions WHERE kind = 'retention'"
                      f" AND requested_by = 'cli' AND jobs_deleted = {JOBS}")[0][0]), 1, "audit record")
    left = int(sql("SELECT COUNT(*) FROM objects WHERE storage_key LIKE 'bp/%'")[0][0])
    rows = sql("SELECT COUNT(*), MAX(TIME_TO_SEC(query_time)), MAX(TIME_TO_SEC(lock_time))"
               " FROM mysql.slow_log WHERE sql_text NOT LIKE 'SET %'")
    stmts, longest, lock = int(rows[0][0]), float(rows[0][1] or 0), float(rows[0][2] or 0)
    slow = sql("SELECT ROUND(TIME_TO_SEC(query_time) * 1000, 1), LEFT(REPLACE(sql_text, '\\n', ' '), 90)"
               " FROM mysql.slow_log WHERE sql_text NOT LIKE 'SET %' AND TIME_TO_SEC(query_time) > 0.1"
               " LIMIT 5")
    print("statements over 100 ms during job prune (ms, text):")
    for ms, text in slow:
        print(f"  {ms}  {text}")
    expect(len(lat) >= 5, f"{len(lat)} creates during prune")
    note = f"{JOBS} expired failed jobs of {JOBS + 1000}, 100 per transaction"
    record("prune", "prune jobs, wall time", wall, "s", "", note)
    record("prune", "jobs deleted per second", JOBS / wall, "jobs/s", "",
           "each: 7 rows and 2 references")
    record("prune", "longest job-deletion transaction", longest_tx, "ms", "",
           f"{txs} transactions (prune's own clock)")
    record("prune", "longest statement meanwhile", longest * 1000, "ms", "",
           f"{stmts} statements in the server's log; lock_time max {lock * 1000:.1f} ms")
    record("prune", "objects released and removed", shared - left, "", "",
           f"of {shared} shared by 100 jobs each")
    record("prune", "POST /v1/jobs with Idempotency-Key, p50, during job prune", percentile(lat, 50),
           "ms", "", f"{len(lat)} requests, one at a time")
    record("prune", "POST /v1/jobs with Idempotency-Key, max, during job prune", max(lat), "ms")


run()
