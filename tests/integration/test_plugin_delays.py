#!/usr/bin/env python3
"""tests/integration/test_plugin_delays.py — delays a plugin asks for
(dr_error.retry_after) are clamped by the core: NaN, infinities, zero and
negative numbers mean "no usable answer" (the step's own backoff or poll
delay), and anything longer than a day — or, for a poll, than the
prediction's provider deadline — is cut to that.

The asking adapter is the fixture build/tests/fixtures/delays.so
(tests/plugins/fixtures/delays.c): its submit (model acme/submit) or its
get and cancel (model acme/poll) fail with the retry_after written in the
job's input. Only this test's worker knows it: it runs with a copy of the
config whose plugin folder holds the shipped plugins plus delays.so, an
[adapter "delays"] and a provider_deadline of 1 h. The API does not know
that adapter, so jobs are created for "null" and moved to "delays" in the
database before the worker starts.
"""

import json
import os
import sys
import time

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
from harness import case, expect, expect_eq, expect_json, post, run, sql, wait_until  # noqa: E402
from engine_lib import WORK, Worker, job  # noqa: E402

DAY = 86400.0
DEADLINE = 3600.0  # [worker] provider_deadline of this test's worker


def delays_conf():
    plugins = os.path.join(WORK, "plugins-delays")
    os.makedirs(plugins, exist_ok=True)
    build = os.path.dirname(os.environ["DARKROOM_BIN"])
    src_dir = os.path.join(build, "plugins")
    for so in os.listdir(src_dir):
        if so.endswith(".so") and not os.path.exists(os.path.join(plugins, so)):
            os.symlink(os.path.join(src_dir, so), os.path.join(plugins, so))
    fixture = os.path.join(build, "tests", "fixtures", "delays.so")
    if not os.path.exists(os.path.join(plugins, "delays.so")):
        os.symlink(fixture, os.path.join(plugins, "delays.so"))
    lines = []
    for line in open(os.environ["DARKROOM_CONF"]).read().splitlines():
        if line.startswith("plugin_dir = "):
            line = f"plugin_dir = {plugins}"
        lines.append(line)
        if line.strip() == "[worker]":
            lines.append(f"provider_deadline = {int(DEADLINE)}s")
    path = os.path.join(WORK, "darkroom-delays.conf")
    with open(path, "w") as f:
        f.write("\n".join(lines) + '\n\n[adapter "delays"]\nplugin = delays\n')
    return path


def delays_job(model, retry_after):
    body = {"adapter": "null", "model": model, "input": {"retry_after": retry_after}}
    jid = expect_json(post("/v1/jobs", body), 202)["id"]
    sql(f"UPDATE jobs SET adapter = 'delays' WHERE id = '{jid}'")
    return jid


def due_in(jid):
    """Seconds from now until the job is due, or None when run_at is NULL."""
    v = sql(f"SELECT TIMESTAMPDIFF(MICROSECOND, NOW(6), run_at) / 1e6 FROM jobs WHERE id = '{jid}'")[0][0]
    return None if v == "NULL" else float(v)


def retries(jid):
    """retry_in of the job's retry_scheduled events, as numbers."""
    out = []
    for (detail,) in sql(f"SELECT detail FROM job_events WHERE job_id = '{jid}'"
                         f" AND kind = 'retry_scheduled' ORDER BY id"):
        out.append((json.loads(detail).get("step"), float(json.loads(detail)["retry_in"])))
    return out


def forget(ids):
    where = ",".join(f"'{i}'" for i in ids)
    sql(f"DELETE FROM job_events WHERE job_id IN ({where})")
    sql(f"DELETE FROM jobs WHERE id IN ({where})")


# What each asked value becomes: None for "the step's own delay".
ASKED = {"nan": None, "inf": None, "-inf": None, "-5": None, "0": None,
         "30": 30.0, "1e9": DAY, "1e300": DAY}


@case("a rate-limited submit waits the asked delay, clamped to 1 day; NaN, inf, 0 and negative take the default (5 s)")
def _():
    ids = {asked: delays_job("acme/submit", asked) for asked in ASKED}
    w = Worker(1, name="worker-delays-submit", env={"DARKROOM_CONF": delays_conf()})
    try:
        wait_until(lambda: all(retries(j) for j in ids.values()), timeout=30,
                   what="a retry_scheduled event for every job")
    finally:
        leftover = w.stop()
    try:
        expect(not leftover, "worker processes outlived the supervisor")
        for asked, jid in ids.items():
            want = ASKED[asked] if ASKED[asked] is not None else 5.0
            step, got = retries(jid)[0]
            expect_eq((step, got), ("submit", want), f"retry_in for retry_after {asked}")
            left = due_in(jid)
            expect(left is not None and want - 30 <= left <= want + 1,
                   f"retry_after {asked}: due in {left} s, wanted about {want}")
            j = job(jid)
            expect_eq((j["status"], j["attempts"]), ("queued", 0),
                      f"retry_after {asked}: a 429 is no try")
        log = w.log_text()
        expect("event=job.write_failed" not in log, "a delay made a write fail")
    finally:
        forget(ids.values())


@case("a rate-limited poll waits the asked delay, clamped to the provider deadline; a failing cancel's delay to 1 day")
def _():
    ids = {asked: delays_job("acme/poll", asked) for asked in ASKED}
    w = Worker(1, name="worker-delays-poll", env={"DARKROOM_CONF": delays_conf()})
    try:
        # After the submit the job is polled (poll_min 0.5 s .. poll_max
        # 2 s); its get() then asks for the delay.
        started = time.monotonic()
        wait_until(lambda: all(job(j)["status"] == "starting" for j in ids.values()), timeout=30,
                   what="every job submitted")
        time.sleep(max(0, 6 - (time.monotonic() - started)))
        for asked, jid in ids.items():
            want = ASKED[asked]
            if want is None:
                # The poll delay (at most poll_max 2 s, plus jitter), or
                # the 4 s lease while a poll runs.
                def short(jid=jid):
                    left = due_in(jid)
                    return left is not None and left <= 2.3
                wait_until(short, timeout=15, what=f"retry_after {asked}: due again within poll_max")
            else:
                want = min(want, DEADLINE)
                left = due_in(jid)
                expect(left is not None and want - 60 <= left <= want + 1,
                       f"retry_after {asked}: next poll in {left} s, wanted about {want}")
        # Canceling makes each job due now; the fixture's cancel fails
        # (retryable) with the same delay: a counted retry, clamped.
        for jid in ids.values():
            expect_json(post(f"/v1/jobs/{jid}/cancel"), 202)
        wait_until(lambda: all(any(s == "cancel" or s == "poll" for s, _ in retries(j)) for j in ids.values()),
                   timeout=30, what="a retry_scheduled event of the cancel for every job")
    finally:
        leftover = w.stop()
    try:
        expect(not leftover, "worker processes outlived the supervisor")
        for asked, jid in ids.items():
            step, got = retries(jid)[0]
            if ASKED[asked] is None:
                # The step's backoff (retry_base 0.2 s .. retry_max 2 s).
                expect(0 < got <= 2.0, f"retry_after {asked}: cancel retry_in {got}")
            else:
                expect_eq(got, ASKED[asked], f"retry_after {asked}: cancel retry_in")
        log = w.log_text()
        expect("event=job.write_failed" not in log, "a delay made a write fail")
    finally:
        forget(ids.values())


@case("a prediction id longer than 64 characters fails the submit (bad_prediction_id) after max_attempts, never a stuck job")
def _():
    jid = delays_job("acme/longid", "0")
    w = Worker(1, name="worker-delays-longid", env={"DARKROOM_CONF": delays_conf()})
    try:
        wait_until(lambda: job(jid)["status"] == "failed", timeout=60, what="the job failed")
    finally:
        leftover = w.stop()
    try:
        expect(not leftover, "worker processes outlived the supervisor")
        j = job(jid)
        expect_eq((j["error"]["step"], j["error"]["code"], j["attempts"]), ("submit", "bad_prediction_id", 10),
                  f"error {j['error']}")
        expect_eq(j["prediction"], None, "no prediction recorded")
        expect("event=job.apply_failed" not in w.log_text(), "the id reached the database")
    finally:
        forget([jid])


run()
