#!/usr/bin/env python3
"""tests/integration/test_cog.py — the `cog` adapter end to end: lighttpd +
darkroom.fcgi + `darkroom worker` + MariaDB + two fake Cog containers
(tests/fakes/cog.py) configured as [adapter "cog1"] and [adapter "cog2"].

Cog has no way to read a prediction back, so every result arrives by
webhook, authenticated by the instance's bearer token.
"""

import json
import os
import sys
import urllib.request

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
from harness import Fail, case, expect, expect_eq, expect_json, expect_problem, post, request, run, wait_until  # noqa: E402,F401
from engine_lib import FINAL, WORK, Worker, events_of, job, outputs_of, wait_status, with_worker  # noqa: E402

COG = {"cog1": os.environ["DARKROOM_FAKE_COG1"], "cog2": os.environ["DARKROOM_FAKE_COG2"]}
TOKEN = {"cog1": os.environ["DARKROOM_COG1_TOKEN"], "cog2": os.environ["DARKROOM_COG2_TOKEN"]}


def cog(name, path, body=None):
    data = None if body is None else json.dumps(body).encode()
    req = urllib.request.Request(COG[name] + path, data=data, method="GET" if data is None else "POST",
                                 headers={"Content-Type": "application/json"})
    with urllib.request.urlopen(req, timeout=30) as r:
        return json.loads(r.read() or b"null")


def cog_reset(name="cog1", **settings):
    cog(name, "/_reset", {})
    if settings:
        cog(name, "/_control", settings)


def create(adapter="cog1", **inp):
    body = {"adapter": adapter, "model": "local/model", "input": {"prompt": "a lighthouse", **inp}}
    return expect_json(post("/v1/jobs", body), 202)["id"]


def expect_png_stored(jid):
    outs = outputs_of(jid)
    expect_eq(len(outs), 1, f"outputs of {jid}")
    idx, kind, state, url, source, text = outs[0]
    expect(kind in ("file", "image"), f"output kind {kind!r}")
    expect(source.startswith("data:image/png"), f"source {source!r}")
    expect_eq(state, "stored", "output state")


@case("a job through cog1 succeeds with its data: PNG stored, run once")
@with_worker(2)
def _(w):
    cog_reset("cog1")
    jid = create()
    j = wait_status([jid], FINAL)[0]
    expect_eq(j["status"], "succeeded", "status")
    expect_eq(j["prediction"]["id"], jid, "the prediction id is the job id")
    expect_png_stored(jid)
    st = cog("cog1", "/_state")
    expect_eq(st["runs"].get(jid), 1, "runs at the container")
    codes = [d["code"] for d in st["deliveries"] if d["id"] == jid]
    expect(codes and all(c == 200 for c in codes), f"webhook answers {codes}")


@case("a second instance, cog2, runs its own jobs with its own token")
@with_worker(2)
def _(w):
    cog_reset("cog1")
    cog_reset("cog2")
    jid = create("cog2", fake_output="text")
    j = wait_status([jid], FINAL)[0]
    expect_eq(j["status"], "succeeded", "status")
    outs = outputs_of(jid)
    expect_eq([o[1] for o in outs], ["text"], "a text output")
    expect_eq(outs[0][5], "Hello from Cog", "text")
    expect_eq(cog("cog2", "/_state")["runs"].get(jid), 1, "runs at cog2")
    expect(jid not in cog("cog1", "/_state")["runs"], "cog1 saw the job")


@case("wrong or missing bearer on /v1/hooks/cog1: 401 and nothing changes")
@with_worker(1)
def _(w):
    cog_reset("cog1", drop_webhooks=True, duration=30)
    jid = create()
    wait_status([jid], ("starting", "processing"))
    before = job(jid)
    n_events = len(events_of(jid))
    body = {"id": jid, "status": "succeeded", "output": ["data:image/png;base64,AAAA"]}
    for headers in ({}, {"Authorization": "Bearer " + TOKEN["cog2"]},
                    {"Authorization": "Bearer " + TOKEN["cog1"][:-1]},
                    {"Authorization": TOKEN["cog1"]}):
        r = request("POST", f"/v1/hooks/cog1?job={jid}", body=body, headers=headers, key=None)
        expect_problem(r, 401)
    after = job(jid)
    expect_eq(after["status"], before["status"], "status")
    expect_eq(len(events_of(jid)), n_events, "events")
    # The right token is accepted.
    r = request("POST", f"/v1/hooks/cog1?job={jid}", body={"id": jid, "status": "canceled"},
                headers={"Authorization": "Bearer " + TOKEN["cog1"]}, key=None)
    expect_eq(r.status, 200, f"right token: {r!r}")
    expect_eq(wait_status([jid], FINAL)[0]["status"], "canceled", "status after the right token")


@case("BUSY health: the job waits (retry events), then runs when READY")
@with_worker(1)
def _(w):
    cog_reset("cog1", health="BUSY")
    jid = create()
    wait_until(lambda: any(e[0] == "retry_scheduled" and "cog_busy" in e[3] for e in events_of(jid)),
               timeout=15, what="a retry for a busy container")
    expect_eq(job(jid)["status"], "queued", "status while busy")
    expect(jid not in cog("cog1", "/_state")["puts"], "submitted while busy")
    cog("cog1", "/_control", {"health": "READY"})
    j = wait_status([jid], FINAL, timeout=30)[0]
    expect_eq(j["status"], "succeeded", "status")
    expect_eq(cog("cog1", "/_state")["runs"].get(jid), 1, "runs")


@case("409 on PUT: a delayed retry, then success")
@with_worker(1)
def _(w):
    cog_reset("cog1", busy_put=True)
    jid = create()
    wait_until(lambda: cog("cog1", "/_state")["puts"].get(jid, 0) >= 1, timeout=15, what="a PUT")
    wait_until(lambda: any(e[0] == "retry_scheduled" and "cog_busy" in e[3] for e in events_of(jid)),
               timeout=15, what="a retry after 409")
    cog("cog1", "/_control", {"busy_put": False})
    j = wait_status([jid], FINAL, timeout=30)[0]
    expect_eq(j["status"], "succeeded", "status")
    expect_eq(cog("cog1", "/_state")["runs"].get(jid), 1, "runs")


@case("the PUT's answer lost: the retried PUT attaches, the model runs once")
@with_worker(1)
def _(w):
    cog_reset("cog1", drop_put_answer=1, start_webhook_delay=2, duration=2)
    jid = create()
    j = wait_status([jid], FINAL, timeout=30)[0]
    expect_eq(j["status"], "succeeded", "status")
    st = cog("cog1", "/_state")
    expect(st["puts"].get(jid, 0) >= 2, f"PUTs {st['puts'].get(jid)}: no second PUT")
    expect_eq(st["runs"].get(jid), 1, "runs")
    expect_png_stored(jid)


@case("cancel while running: canceled, and the container saw the cancel")
@with_worker(1)
def _(w):
    cog_reset("cog1", duration=30)
    jid = create()
    wait_status([jid], ("starting", "processing"))
    expect_json(post(f"/v1/jobs/{jid}/cancel"), 202)
    j = wait_status([jid], FINAL)[0]
    expect_eq(j["status"], "canceled", "status")
    wait_until(lambda: jid in cog("cog1", "/_state")["cancels"], timeout=10, what="the cancel at Cog")


@case("a failed prediction fails the job with the container's error")
@with_worker(1)
def _(w):
    cog_reset("cog1", fail=True)
    jid = create()
    j = wait_status([jid], FINAL)[0]
    expect_eq(j["status"], "failed", "status")
    expect_eq(j["error"]["code"], "prediction_failed", "code")
    expect("CUDA" in j["error"]["message"], f"message {j['error']}")


def short_deadline_conf():
    src = open(os.environ["DARKROOM_CONF"]).read()
    path = os.path.join(WORK, "darkroom-short-deadline.conf")
    with open(path, "w") as f:
        f.write(src.replace("[worker]\n", "[worker]\nprovider_deadline = 3s\n", 1))
    return path


@case("webhooks never come: the job fails after the deadline (provider_deadline)")
def _():
    cog_reset("cog1", drop_webhooks=True, duration=60)
    w = Worker(1, name="worker-deadline", env={"DARKROOM_CONF": short_deadline_conf()})
    try:
        jid = create()
        j = wait_status([jid], FINAL, timeout=30)[0]
    finally:
        leftover = w.stop()
    expect(not leftover, "worker processes outlived the supervisor")
    expect_eq(j["status"], "failed", "status")
    expect_eq(j["error"]["code"], "provider_deadline", "code")
    expect("deadline" in j["error"]["message"], f"message {j['error']}")
    wait_until(lambda: jid in cog("cog1", "/_state")["cancels"], timeout=10,
               what="the cancel at Cog after the deadline")


run()
