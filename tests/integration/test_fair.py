#!/usr/bin/env python3
"""tests/integration/test_fair.py — fair claims across tenants end to end:
lighttpd + darkroom.fcgi + `darkroom worker` + MariaDB + the fake Replicate.

Tenant "bulk" queues 60 jobs, then tenant "interactive" queues 3, and one
worker process works through them. With `[server] fair_key =
metadata.tenant` (in the config of both the app that takes the jobs and
the worker) the interactive jobs are done before bulk's 10th; with
fair_key unset the order is oldest first, as it always was, and they are
done last. Each case prints the completion positions.

The harness's app runs with the harness's config, which has no fair_key;
the fair case starts an app of its own (a second lighttpd on a free
port, its config a copy with fair_key added) to queue its jobs, since
intake is what records each job's tenant.
"""

import json
import os
import subprocess
import sys
import urllib.request

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
from harness import API_KEY, case, expect, expect_eq, run, sql  # noqa: E402

from engine_lib import WORK, Worker, create, fake_reset, free_port, job, wait_status  # noqa: E402

ROOT = os.path.abspath(os.path.join(os.path.dirname(__file__), "..", ".."))
SERVICES = os.path.join(ROOT, "tests", "lib", "services.sh")
FCGI = os.path.join(os.environ["DARKROOM_BIN"] + ".fcgi")
CONF = os.environ["DARKROOM_CONF"]
BULK, INTERACTIVE = 60, 3


def fair_conf():
    """A copy of the harness's config with fair_key set in [server]."""
    path = os.path.join(WORK, "fair.conf")
    text = open(CONF).read()
    expect("\n[server]\n" in text, "the harness config has a [server] section")
    with open(path, "w") as f:
        f.write(text.replace("\n[server]\n", "\n[server]\nfair_key = metadata.tenant\n", 1))
    return path


class App:
    """darkroom.fcgi (one process) under a lighttpd of its own, on a free
    port, with config CONF (tests/lib/services.sh lighttpd_start)."""

    def __init__(self, conf):
        self.dir = os.path.join(WORK, "fair-web")
        self.port = free_port()
        env = dict(os.environ, DARKROOM_FCGI_PROCS="1")
        subprocess.run(["bash", "-c", '. "$1"; shift; lighttpd_start "$@"', "fair-app", SERVICES,
                        self.dir, str(self.port), conf, FCGI],
                       check=True, env=env, stdin=subprocess.DEVNULL)

    def create(self, tenant):
        body = {"adapter": "replicate", "model": "acme/flux", "input": {"prompt": "a lighthouse"},
                "renditions": [], "metadata": {"tenant": tenant}}
        req = urllib.request.Request(f"http://127.0.0.1:{self.port}/v1/jobs",
                                     data=json.dumps(body).encode(), method="POST",
                                     headers={"Authorization": f"Bearer {API_KEY}",
                                              "Content-Type": "application/json"})
        with urllib.request.urlopen(req, timeout=30) as r:
            expect_eq(r.status, 202, "POST /v1/jobs on the fair app")
            return json.loads(r.read())["id"]

    def stop(self):
        subprocess.run(["bash", SERVICES, "lighttpd_stop", self.dir], stdin=subprocess.DEVNULL)


def due_now():
    return int(sql("SELECT COUNT(*) FROM jobs WHERE run_at <= NOW(6)")[0][0])


def work_through(make, worker_env):
    """Queue BULK jobs of tenant bulk and then INTERACTIVE of tenant
    interactive with make(tenant), run one worker process until all have
    ended, and return the 1-based completion positions of the interactive
    jobs and of bulk's 10th completion."""
    fake_reset(start_delay=0, duration=0.05)
    # Jobs another test file left due are claimed too: oldest first they
    # come before these, fairly they are the tenant "" (no tenant key);
    # either way the order of these jobs among themselves is what counts.
    left = due_now()
    if left:
        print(f"     {left} jobs of earlier tests due as well", flush=True)
    bulk = [make("bulk") for _ in range(BULK)]
    inter = [make("interactive") for _ in range(INTERACTIVE)]
    w = Worker(1, name="fair-worker", env=worker_env)
    try:
        wait_status(bulk + inter, ("succeeded", "failed", "canceled"), timeout=120)
    finally:
        w.stop()
    jobs = {jid: job(jid) for jid in bulk + inter}
    for jid, j in jobs.items():
        expect_eq(j["status"], "succeeded", f"status of {jid}")
    order = sorted(jobs, key=lambda jid: (jobs[jid]["completed_at"], jid))
    positions = [order.index(jid) + 1 for jid in inter]
    bulk_10th = [jid for jid in order if jid in bulk][9]
    print(f"     interactive done at positions {positions} of {len(order)}; "
          f"bulk's 10th at {order.index(bulk_10th) + 1}", flush=True)
    return positions, order.index(bulk_10th) + 1


@case("fair_key = metadata.tenant: 3 interactive jobs queued after 60 bulk ones are done before bulk's 10th")
def _():
    conf = fair_conf()
    app = App(conf)
    try:
        positions, tenth = work_through(app.create, {"DARKROOM_CONF": conf})
    finally:
        app.stop()
    for p in positions:
        expect(p < tenth, f"an interactive job done at {p}, after bulk's 10th ({tenth})")
    got = sql("SELECT fair_value, COUNT(*) FROM jobs WHERE fair_value IN ('bulk', 'interactive')"
              " GROUP BY fair_value ORDER BY fair_value")
    expect_eq([tuple(r) for r in got], [("bulk", str(BULK)), ("interactive", str(INTERACTIVE))],
              "tenants recorded at intake")


@case("fair_key unset: oldest first, as before: the interactive jobs are done among the last")
def _():
    def make(tenant):
        return create(renditions=[], metadata={"tenant": tenant})

    positions, _ = work_through(make, {})
    # Every submit is older than every persist step, so all are
    # submitted first, and the persist steps then run in the order their
    # webhooks came: the interactive jobs' came last, give or take.
    for p in positions:
        expect(p > BULK // 2, f"an interactive job done at {p}, before half the bulk jobs")


run()
