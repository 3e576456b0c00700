#!/usr/bin/env python3
"""tests/bench/bench_latency.py — the latency section of `make bench`: how
long a job waits between the moment it could move on and the moment a
worker moves it, with idle workers (2 `darkroom worker` processes, s3
sink, the replicate adapter against the fake Replicate).

Figures (benchlib.record, median and p99 of each):

  * queue pickup: job created (jobs.created_at) → claimed by a worker (the
    submit step's start, jobs.submitted_at, taken right after the claim
    commits); the API wakes a worker through the wakeup socket. Target p99
    < 100 ms.
  * queue pickup on the clock: job due (a run_at set in the future, as a
    retry or a poll has) → claimed, nobody sending a wakeup: the workers
    sleep until the earliest run_at. BENCH_LATENCY_JOBS / 3 jobs (at least
    10), due 0.2 s apart. Target p99 < 100 ms.
  * persist pickup: the `succeeded` webhook applied (its job_events row,
    job now `persisting`) → the persist step claimed (the worker's
    step_done log line minus the step's duration; the log has millisecond
    timestamps).
  * `succeeded` webhook → job `succeeded` (job_events, microseconds), for
    a job without outputs (what the engine itself adds: wakeup, claim,
    index transaction) and for a job with one 1024x1024 noise PNG and the
    presets thumb + card (download, renditions, uploads to s3rver, index).

Jobs arrive one at a time, BENCH_LATENCY_GAP seconds apart on average
(default 0.2, exponential gaps), BENCH_LATENCY_JOBS of them (default 100)
without outputs, then BENCH_LATENCY_IMAGE_JOBS (default 30) with an image
0.5 s apart, so no job waits behind another: what is measured is the path,
not a queue. A case fails only when it could not measure.
"""

import os
import random
import re
import sys
import time
from datetime import datetime, timezone

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
from benchlib import percentile, record  # noqa: E402
from harness import case, expect, expect_json, post, run, sql  # noqa: E402
from engine_lib import Worker, fake_reset  # noqa: E402
import pipelib as pipe  # noqa: E402

JOBS = int(os.environ.get("BENCH_LATENCY_JOBS", "100"))
IMAGE_JOBS = int(os.environ.get("BENCH_LATENCY_IMAGE_JOBS", "30"))
GAP = float(os.environ.get("BENCH_LATENCY_GAP", "0.2"))
TIMEOUT = 60.0
NOTE = "2 idle worker processes, replicate adapter against the fake, s3 sink (s3rver)"

_worker = {}


def worker():
    """The section's worker pool (2 processes), started once."""
    if "w" not in _worker:
        w = Worker(2, "bench-latency", env={"DARKROOM_SINK": "s3"})
        _worker["w"] = w
        expect(pipe.worker_ready(w, 2), f"the worker processes did not start (see {w.log_path})")
    return _worker["w"]


def create(inp, renditions):
    body = {"adapter": "replicate", "model": "acme/flux",
            "input": dict({"prompt": "latency"}, **inp), "renditions": renditions}
    return expect_json(post("/v1/jobs", body), 202)["id"]


def paced(n, gap, make):
    """Create n jobs with make(i), gaps exponential around `gap` seconds
    (capped at 3 gaps); return their ids."""
    ids = []
    for i in range(n):
        ids.append(make(i))
        time.sleep(min(random.expovariate(1.0 / gap), 3 * gap))
    return ids


def us(ts):
    """Microseconds since the epoch of a DATETIME(6) text (UTC)."""
    d = datetime.strptime(ts, "%Y-%m-%d %H:%M:%S.%f").replace(tzinfo=timezone.utc)
    return int(d.timestamp()) * 1_000_000 + d.microsecond


def webhook_events(ids):
    """{job: (succeeded webhook at, succeeded at)} in microseconds, for the
    jobs whose `persisting` came from a webhook (not a poll)."""
    rows = sql("SELECT job_id,"
               " MIN(IF(kind = 'webhook' AND to_status = 'persisting', at, NULL)),"
               " MIN(IF(to_status = 'persisting', at, NULL)),"
               " MIN(IF(to_status = 'succeeded', at, NULL))"
               f" FROM job_events WHERE job_id IN ({pipe.in_list(ids)}) GROUP BY job_id")
    out = {}
    for jid, hook, first, done in rows:
        if hook != "NULL" and hook == first and done != "NULL":
            out[jid] = (us(hook), us(done))
    return out


def persist_claims(w):
    """{job: persist step claimed, µs, on the database's clock} from the
    worker log: the step_done line's time (UTC, ms) minus the step's
    duration."""
    offset = int(sql("SELECT TIMESTAMPDIFF(SECOND, UTC_TIMESTAMP(), NOW())")[0][0])
    pat = re.compile(r"^ts=(\S+)Z .*event=job\.step_done job=(\S+) step=persist "
                     r"adapter=\S+ duration_ms=([\d.]+)")
    out = {}
    for line in w.log_text().splitlines():
        m = pat.match(line)
        if m:
            d = datetime.strptime(m.group(1), "%Y-%m-%dT%H:%M:%S.%f").replace(tzinfo=timezone.utc)
            end = int(d.timestamp()) * 1_000_000 + d.microsecond
            out[m.group(2)] = end - int(float(m.group(3)) * 1000) + offset * 1_000_000
    return out


def two(what, samples_ms, target_p99, note):
    record("latency", f"{what}, median", percentile(samples_ms, 50), "ms", "", note)
    record("latency", f"{what}, p99", percentile(samples_ms, 99), "ms", target_p99,
           f"{note}; n={len(samples_ms)}")


@case("latency: jobs due later (queue pickup on the clock)")
def _():
    # Created before the pool starts, then made due 3 s on, DUE_GAP apart:
    # no request, so no wakeup; the workers' own timers must fetch them.
    fake_reset(start_delay=0.05, duration=0.1)
    n = max(10, JOBS // 3)
    ids = [create({"fake_output": "none"}, []) for _ in range(n)]
    sql("UPDATE jobs SET run_at = NOW(6) + INTERVAL (3000000 + 200000 *"
        f" FIND_IN_SET(id, '{','.join(ids)}')) MICROSECOND WHERE id IN ({pipe.in_list(ids)})")
    due = {r[0]: us(r[1]) for r in sql(
        f"SELECT id, run_at FROM jobs WHERE id IN ({pipe.in_list(ids)})")}
    worker()
    counts = pipe.wait_final(ids, TIMEOUT)
    expect(counts.get("succeeded", 0) == len(ids), f"not every job succeeded: {counts}")
    rows = sql("SELECT id, submitted_at FROM jobs"
               f" WHERE id IN ({pipe.in_list(ids)}) AND attempts = 1")
    pickup = [(us(at) - due[jid]) / 1000.0 for jid, at in rows if at != "NULL"]
    expect(len(pickup) >= n * 0.9, f"only {len(pickup)} first submits to measure")
    two("queue pickup, job due → claimed by a worker (timer, no wakeup)", pickup, "< 100",
        f"{NOTE}; jobs due 0.2 s apart")


@case("latency: jobs without outputs (queue pickup, persist pickup, webhook → succeeded)")
def _():
    w = worker()
    fake_reset(start_delay=0.05, duration=0.1)
    ids = paced(JOBS, GAP, lambda i: create({"fake_output": "none"}, []))
    counts = pipe.wait_final(ids, TIMEOUT)
    expect(counts.get("succeeded", 0) == len(ids), f"not every job succeeded: {counts}")
    rows = sql("SELECT TIMESTAMPDIFF(MICROSECOND, created_at, submitted_at) FROM jobs"
               f" WHERE id IN ({pipe.in_list(ids)}) AND attempts = 1")
    pickup = [int(r[0]) / 1000.0 for r in rows if r[0] != "NULL"]
    expect(len(pickup) >= len(ids) * 0.9, f"only {len(pickup)} first submits to measure")
    two("queue pickup, job created → claimed by a worker", pickup, "< 100",
        f"{NOTE}; jobs {GAP:g} s apart on average, wakeup socket")
    hooks = webhook_events(ids)
    expect(len(hooks) >= len(ids) * 0.8, f"only {len(hooks)} jobs ended by a webhook")
    claims = persist_claims(w)
    persist = [(claims[j] - h) / 1000.0 for j, (h, _) in hooks.items() if j in claims]
    expect(len(persist) >= len(hooks) * 0.9, f"only {len(persist)} persist claims in the log")
    two("persist pickup, succeeded webhook → persist step claimed", persist, "< 100",
        f"{NOTE}; claim time from the worker log (1 ms resolution)")
    two("succeeded webhook → job succeeded, no outputs",
        [(d - h) / 1000.0 for h, d in hooks.values()], "",
        f"{NOTE}; what the engine adds: wakeup, claim, index transaction")


@case("latency: jobs with one 1024x1024 PNG (webhook → succeeded)")
def _():
    w = worker()
    urls, d = pipe.files_for("latency", IMAGE_JOBS)
    try:
        fake_reset(start_delay=0.05, duration=0.1)
        ids = paced(IMAGE_JOBS, 0.5,
                    lambda i: create({"fake_output_urls": urls[i]}, pipe.PRESETS))
        counts = pipe.wait_final(ids, TIMEOUT)
    finally:
        pipe.remove_files(d)
    expect(counts.get("succeeded", 0) == len(ids), f"not every job succeeded: {counts}")
    hooks = webhook_events(ids)
    expect(len(hooks) >= len(ids) * 0.8, f"only {len(hooks)} jobs ended by a webhook")
    two("succeeded webhook → job succeeded, one 1024x1024 PNG, thumb + card",
        [(d - h) / 1000.0 for h, d in hooks.values()], "",
        f"{NOTE}; download, renditions, 3 uploads, index; jobs 0.5 s apart")


@case("latency: the worker pool stops cleanly")
def _():
    w = _worker.pop("w", None)
    if w is not None:
        expect(not w.stop(), "worker processes outlived the supervisor")


run()
