#!/usr/bin/env python3
"""tests/bench/bench_webhooks.py — the webhooks section of `make bench`:
signed Replicate "succeeded" deliveries per second, verified and applied.

The jobs are made directly in the database as the engine leaves a job
whose prediction runs at Replicate (status processing, step poll, a
prediction id, submitted_at set), many at once with the Sequence engine.
Each delivery is signed here (Standard Webhooks, the adapter's current
secret, engine_lib.sign) and written out as a complete HTTP request to
the URL the engine gives the provider (/v1/hooks/replicate?job=ID&at=US);
wrk (tests/bench/webhooks.lua) sends each once. The rate is what the
database shows applied (jobs moved to persisting with their output row,
one "webhook" event each) divided by wrk's run time, so a rejected or
repeated delivery never counts.

A short warm-up load with its own jobs comes first; it also sizes the
measured set (enough deliveries for the whole run at 1.5 times the
warm-up rate). Knobs: BENCH_WEBHOOKS_SECONDS (default 10),
BENCH_WEBHOOKS_WARMUP (2), BENCH_WEBHOOKS_CONNECTIONS (16),
BENCH_WEBHOOKS_THREADS (2), BENCH_WEBHOOKS_MAX_JOBS (250000).
"""

import json
import os
import subprocess
import sys
import time
from urllib.parse import urlsplit

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
import benchlib  # noqa: E402  (puts tests/integration on sys.path)
from benchlib import db_counters, per_request, record  # noqa: E402
from harness import case, expect, run, sql  # noqa: E402
from engine_lib import FAKE, sign  # noqa: E402

HERE = os.path.dirname(os.path.abspath(__file__))
URL = os.environ["DARKROOM_URL"]
WORK = os.environ.get("DARKROOM_TEST_DIR", "/tmp")
SECONDS = int(os.environ.get("BENCH_WEBHOOKS_SECONDS", "10"))
WARMUP = int(os.environ.get("BENCH_WEBHOOKS_WARMUP", "2"))
CONNS = int(os.environ.get("BENCH_WEBHOOKS_CONNECTIONS", "16"))
THREADS = int(os.environ.get("BENCH_WEBHOOKS_THREADS", "2"))
MAX_JOBS = int(os.environ.get("BENCH_WEBHOOKS_MAX_JOBS", "250000"))
HOST = urlsplit(URL).netloc




def make_jobs(tag, n):
    """Create n jobs running at the (fake) provider: ids j_0<tag><seq>,
    predictions bench<tag><seq>. Returns [(job id, prediction id,
    submitted_at in microseconds)]."""
    sql("INSERT INTO jobs (id, status, step, adapter, model, input, renditions,"
        " prediction_id, prediction_status, progress, run_at, lease_version,"
        " submitted_at, provider_deadline, created_at, updated_at)"
        f" SELECT CONCAT('j_0{tag}', LPAD(seq, 22, '0')), 'processing', 'poll',"
        " 'replicate', 'acme/flux', '{\"prompt\":\"a lighthouse\"}', '[\"thumb\"]',"
        f" CONCAT('bench{tag}', seq), 'processing', 0.5, NOW(6) + INTERVAL 1 DAY, 1,"
        " NOW(6) - INTERVAL 3 SECOND, NOW(6) + INTERVAL 1 HOUR,"
        " NOW(6) - INTERVAL 4 SECOND, NOW(6) - INTERVAL 3 SECOND"
        f" FROM seq_1_to_{n}")
    rows = sql("SELECT id, prediction_id,"
               " TIMESTAMPDIFF(MICROSECOND, FROM_UNIXTIME(0), submitted_at)"
               f" FROM jobs WHERE id LIKE 'j\\_0{tag}%'")
    expect(len(rows) == n, f"made {len(rows)} of {n} jobs")
    return [(r[0], r[1], int(r[2])) for r in rows]


def write_requests(jobs, path):
    """Sign one succeeded delivery per job and write THREADS files of raw
    HTTP requests for webhooks.lua, round robin."""
    files = [open(f"{path}.{t + 1}", "wb") for t in range(THREADS)]
    try:
        for i, (jid, pred, at) in enumerate(jobs):
            body = json.dumps({
                "id": pred, "version": "5c7d5dc6dd8bf75c1acaa8565735e7986bc5b66206b55cca93cb72c9bf15ccaa",
                "status": "succeeded", "input": {"prompt": "a lighthouse"},
                "output": [f"{FAKE}/files/{pred}/out-0.png"], "error": None,
                "metrics": {"predict_time": 1.5},
                "created_at": "2026-11-23T10:00:00.000000Z",
                "completed_at": "2026-11-23T10:00:01.500000Z",
            }, separators=(",", ":")).encode()
            h = sign(body, msg_id=f"msg_{pred}")
            head = (f"POST /v1/hooks/replicate?job={jid}&at={at} HTTP/1.1\r\n"
                    f"Host: {HOST}\r\n"
                    f"Content-Type: application/json\r\n"
                    f"webhook-id: {h['webhook-id']}\r\n"
                    f"webhook-timestamp: {h['webhook-timestamp']}\r\n"
                    f"webhook-signature: {h['webhook-signature']}\r\n"
                    f"Content-Length: {len(body)}\r\n\r\n").encode()
            req = head + body
            f = files[i % THREADS]
            f.write(b"%d\n" % len(req))
            f.write(req)
    finally:
        for f in files:
            f.close()


def wrk(path, seconds):
    out = os.path.join(WORK, "wrk-webhooks.json")
    if os.path.exists(out):
        os.unlink(out)
    env = dict(os.environ, BENCH_HOOKS_FILE=path, BENCH_WRK_OUT=out)
    cmd = ["wrk", f"-t{THREADS}", f"-c{CONNS}", f"-d{seconds}s", "--timeout", "5s",
           "-s", os.path.join(HERE, "webhooks.lua"), URL + "/v1/hooks/replicate"]
    p = subprocess.run(cmd, env=env, capture_output=True, text=True, timeout=seconds + 120,
                       stdin=subprocess.DEVNULL)
    expect(p.returncode == 0 and os.path.exists(out),
           f"wrk failed ({p.returncode}): {p.stderr.strip()[-300:]} {p.stdout.strip()[-300:]}")
    with open(out) as f:
        fig = json.load(f)
    fig["seconds"] = fig["duration_us"] / 1e6
    fig["errors"] = fig["connect"] + fig["read"] + fig["write"] + fig["timeout"]
    return fig


def applied(tag):
    """(jobs of set tag now persisting, their output rows, their webhook
    events)."""
    like = f"'j\\_0{tag}%'"
    jobs = int(sql(f"SELECT COUNT(*) FROM jobs WHERE id LIKE {like}"
                   " AND status = 'persisting' AND prediction_status = 'succeeded'")[0][0])
    outs = int(sql(f"SELECT COUNT(*) FROM outputs WHERE job_id LIKE {like}")[0][0])
    events = int(sql(f"SELECT COUNT(*) FROM job_events WHERE job_id LIKE {like}"
                     " AND kind = 'webhook' AND to_status = 'persisting'")[0][0])
    return jobs, outs, events


def load(tag, n, seconds):
    jobs = make_jobs(tag, n)
    path = os.path.join(WORK, f"hooks-{tag}")
    write_requests(jobs, path)
    try:
        c0 = db_counters()
        fig = wrk(path, seconds)
        fig["counters"] = per_request(c0, db_counters(), fig["requests"])
    finally:
        for t in range(THREADS):
            try:
                os.unlink(f"{path}.{t + 1}")
            except OSError:
                pass
    # Let the requests still in flight when wrk stopped finish.
    last = None
    for _ in range(50):
        now = applied(tag)
        if now == last:
            break
        last = now
        time.sleep(0.2)
    fig["jobs"], fig["outputs"], fig["events"] = last
    fig["n"] = n
    fig["rate"] = fig["jobs"] / fig["seconds"]
    return fig


@case("signed Replicate deliveries: verified and applied per second")
def _():
    # Tags unused in this database (a section run twice on one database
    # gets new ones): letters of job ids, Crockford base 32.
    tags = []
    for t in (a + b + c for a in "WM" for b in "ABCDEFGHJK" for c in "ABCDEFGHJK"):
        if not sql(f"SELECT 1 FROM jobs WHERE id LIKE 'j\\_0{t}%' LIMIT 1"):
            tags.append(t)
        if len(tags) == 2:
            break
    expect(len(tags) == 2, "no unused job id tags left")
    warm = load(tags[0], max(5000, 2500 * WARMUP), WARMUP)
    expect(warm["jobs"] > 0, f"no warm-up delivery was applied: {warm}")
    n = int(min(MAX_JOBS, max(5000, warm["rate"] * SECONDS * 1.5)))
    if warm["jobs"] >= warm["n"]:
        n = MAX_JOBS  # the warm-up ran out: its rate is only a lower bound
    fig = load(tags[1], n, SECONDS)
    expect(fig["jobs"] > 0, f"no delivery was applied: {fig}")
    exhausted = fig["requests"] > n
    ok = fig["jobs"] == fig["outputs"] == fig["events"]
    note = (f"wrk -t{THREADS} -c{CONNS} -d{SECONDS}s; {fig['requests']} answers for {n}"
            f" deliveries, {fig['jobs']} jobs moved to persisting, {fig['outputs']} output rows,"
            f" {fig['events']} webhook events" + ("" if ok else " (MISMATCH)") +
            f"; non-2xx/3xx {fig['status']}, socket errors {fig['errors']}" +
            ("; deliveries ran out, repeats were duplicates" if exhausted else "") +
            "; " + fig["counters"])
    record("webhooks", "signed succeeded deliveries applied, per second", fig["rate"], "deliveries/s",
           ">= 15000", note)
    record("webhooks", "webhook p50 latency", fig["p50_us"] / 1000.0, "ms", "", note)
    record("webhooks", "webhook p99 latency", fig["p99_us"] / 1000.0, "ms", "", note)
    for tag in tags:
        benchlib.drop_jobs(f"j.id LIKE 'j\\_0{tag}%'")


run()
