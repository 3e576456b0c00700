#!/usr/bin/env python3
"""tests/integration/test_engine.py — the job engine end to end: lighttpd +
darkroom.fcgi + `darkroom worker` + MariaDB + the fake Replicate
(tests/fakes/replicate.py).

Each case creates jobs through the API, lets real worker processes run
them against the fake provider (with its faults switched on or off), and
checks where the jobs end: `persisting` with their outputs recorded (the
persistence pipeline is not part of this version), `failed` with the step
and code, or `canceled`; and that the provider saw each job submitted
exactly once.
"""

import base64
import hashlib
import hmac
import json
import os
import re
import signal
import statistics
import subprocess
import sys
import threading
import time
import urllib.request

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
from harness import (Fail, case, expect, expect_eq, expect_json, expect_problem,  # noqa: E402
                     get, post, request, run, sql, wait_until)

from engine_lib import (BIN, FAKE, FINAL, SECRET, SECRET_PREV, WORK, Worker,  # noqa: E402,F401
                        create, creates_by_job, events_of, expect_once, fake, fake_reset,
                        hook, job, outputs_of, sign, wait_status, with_worker)

# ================================================================ cases


@case("a job reaches persisting with its outputs recorded, for each output shape")
@with_worker(2)
def _(w):
    fake_reset()
    shapes = {"url": 1, "list": 2, "object": 1, "data": 1, "text": 1, "mixed": 2}
    ids = {shape: create({"fake_output": shape}) for shape in shapes}
    jobs = dict(zip(ids, wait_status(ids.values(), FINAL)))
    for shape, n in shapes.items():
        j = jobs[shape]
        expect_eq(j["status"], "succeeded", f"status of the {shape} job")
        expect(j["prediction"] and j["prediction"]["status"] == "succeeded",
               f"{shape}: prediction {j['prediction']!r}")
        expect_eq(j["progress"], 1, f"{shape}: progress")
        outs = outputs_of(j["id"])
        expect_eq(len(outs), n, f"{shape}: outputs recorded")
        for idx, kind, state, url, source, text in outs:
            expect_eq(state, "stored", f"{shape}: output state")
            if shape == "text":
                expect_eq(kind, "text", "text output kind")
                expect_eq(text, "Hello world!", "text tokens joined")
            elif source.startswith("data:") or re.fullmatch(r"[0-9a-z]{26}", source):
                # A data: URI: inline when small, else the id of its
                # decoded bytes (webhook_blobs) until they are stored.
                expect_eq(url, "NULL", "a data: output has no source URL")
            else:
                expect(url.startswith(FAKE + "/files/"), f"{shape}: source URL {url!r}")
    expect_once(ids.values())


@case("every webhook duplicated and shuffled: jobs still end right, once")
@with_worker(2)
def _(w):
    fake_reset(duplicate_webhooks=True, reorder_webhooks=True)
    ids = [create({"fake_output": "url"}) for _ in range(8)]
    jobs = wait_status(ids, FINAL)
    for j in jobs:
        expect_eq(j["status"], "succeeded", "status")
        expect_eq(len(outputs_of(j["id"])), 1, "outputs")
    expect_once(ids)
    dup = sum(1 for jid in ids for e in events_of(jid) if '"duplicate":"true"' in e[3])
    expect(dup > 0, "no duplicate delivery was recorded in the events")
    # Never backwards: once persisting, only succeeded may follow.
    for jid in ids:
        seen = False
        for kind, frm, to, detail in events_of(jid):
            if seen:
                expect(to in ("", "succeeded"), f"{jid} moved {frm}->{to} after persisting")
            seen = seen or to == "persisting"


@case("all webhooks dropped: polling finishes the jobs")
@with_worker(2)
def _(w):
    fake_reset(drop_webhooks=1)
    ids = [create({"fake_output": "list"}) for _ in range(4)]
    jobs = wait_status(ids, FINAL, timeout=40)
    for j in jobs:
        expect_eq(j["status"], "succeeded", "status")
        kinds = [e[0] for e in events_of(j["id"])]
        expect("webhook" not in kinds, f"a webhook arrived although all were dropped: {kinds}")
        expect("poll" in kinds, f"no poll in the events: {kinds}")
    expect_once(ids)


@case("429s and 500s injected: jobs complete, each submitted once")
@with_worker(2)
def _(w):
    # Seeded: the fake's first six API calls answer 429, 429, 500, 429,
    # (no fault), 500, so both faults always fire; later calls draw on.
    fake_reset(rate_limit=0.3, error_rate=0.2, fault_seed=4)
    ids = [create({"fake_output": "url"}) for _ in range(10)]
    jobs = wait_status(ids, FINAL, timeout=60)
    for j in jobs:
        expect_eq(j["status"], "succeeded", f"status of {j['id']}")
    calls = fake("/_state")["calls"]
    expect(calls.get("429", 0) > 0 and calls.get("500", 0) > 0, f"faults did not fire: {calls}")
    expect_once(ids)
    fake("/_control", {"rate_limit": 0, "error_rate": 0})


@case("failed and aborted predictions fail the job with the provider's reason")
@with_worker(2)
def _(w):
    fake_reset()
    failed = create({"fake_outcome": "failed"})
    aborted = create({"fake_outcome": "aborted"})
    j1, j2 = wait_status([failed, aborted], FINAL)
    expect_eq(j1["status"], "failed", "failed prediction")
    expect_eq(j1["error"]["step"], "provider", "error step")
    expect_eq(j1["error"]["code"], "prediction_failed", "error code")
    expect("CUDA" in (j1["error"]["message"] or ""), f"provider message kept: {j1['error']}")
    expect_eq(j2["status"], "failed", "aborted prediction")
    expect_eq(j2["error"]["code"], "prediction_aborted", "error code")
    expect(j1["completed_at"] and j2["completed_at"], "completed_at set")


@case("cancel while running cancels at the provider")
@with_worker(2)
def _(w):
    fake_reset()
    jid = create({"fake_duration": 20})
    wait_status([jid], ("starting", "processing"))
    j = expect_json(post(f"/v1/jobs/{jid}/cancel"), 202)
    expect(j["status"] in ("starting", "processing", "canceled"), f"status after cancel: {j['status']}")
    j = wait_status([jid], FINAL)[0]
    expect_eq(j["status"], "canceled", "status")
    pid = j["prediction"]["id"]
    wait_until(lambda: fake("/_state")["predictions"][pid]["status"] == "canceled",
               timeout=10, what="the prediction canceled at the provider")
    expect_problem(post(f"/v1/jobs/{jid}/cancel"), 409)


@case("cancel while persisting: the job ends canceled and its pending outputs go with it")
def _():
    fake_reset(drop_webhooks=1)
    w = Worker(1, "engine-cancel-persist")
    try:
        j = running_job()
    finally:
        w.stop()
    jid = j["id"]
    # No worker runs: the succeeded webhook leaves the job persisting with
    # its output recorded as pending, and the cancel waits for a worker.
    body = succeeded_body(j)
    expect_eq(hook(body, sign(body)).status, 200, "succeeded webhook")
    expect_eq(job(jid)["status"], "persisting", "status after the webhook")
    pending = sql(f"SELECT COUNT(*) FROM outputs WHERE job_id = '{jid}' AND state = 'pending'")
    expect_eq(pending[0][0], "1", "pending outputs while persisting")
    expect_json(post(f"/v1/jobs/{jid}/cancel"), 202)
    w = Worker(1, "engine-cancel-persist-2")
    try:
        j = wait_status([jid], FINAL)[0]
    finally:
        w.stop()
    expect_eq(j["status"], "canceled", "status")
    pending = sql(f"SELECT COUNT(*) FROM outputs WHERE job_id = '{jid}' AND state = 'pending'")
    expect_eq(pending[0][0], "0", "pending outputs of the canceled job")


@case("retry of a failed job submits it again and it can succeed")
@with_worker(2)
def _(w):
    fake_reset(reject_creates=True)  # the provider refuses the input
    jid = create({"fake_output": "url"})
    j = wait_status([jid], FINAL)[0]
    expect_eq(j["status"], "failed", "status while the provider refuses")
    expect_eq(j["error"]["step"], "submit", "error step")
    fake("/_control", {"reject_creates": False})  # the provider recovers
    j = expect_json(post(f"/v1/jobs/{jid}/retry"), 202)
    expect_eq(j["status"], "queued", "status after retry")
    j = wait_status([jid], FINAL)[0]
    expect_eq(j["status"], "succeeded", "status after the retry ran")
    expect(j["error"] is None, f"error cleared: {j['error']}")
    expect_problem(post(f"/v1/jobs/{jid}/retry"), 409)


# ------------------------------------------------------- webhook signatures


def running_job():
    """A job whose prediction runs long, for delivering webhooks by hand."""
    jid = create({"fake_duration": 60})
    j = wait_status([jid], ("starting", "processing"))[0]
    return j


def succeeded_body(j):
    pred = fake("/_state")["predictions"][j["prediction"]["id"]]
    pred = dict(pred)
    for k in ("webhook", "creates_for_job"):
        pred.pop(k, None)
    pred.update(status="succeeded", output=[f"{FAKE}/files/{pred['id']}/out-0.png"],
                metrics={"predict_time": 1.5}, completed_at="2026-11-23T10:00:00.123456789Z")
    return json.dumps(pred).encode()


def webhook_events(jid):
    """The job's events written by webhooks (the worker's polls write
    their own meanwhile)."""
    return [e for e in events_of(jid) if e[0] == "webhook"]


def unchanged(jid, before):
    after = job(jid)
    expect_eq(after["status"], before["status"], "status after a rejected delivery")
    expect_eq(len(webhook_events(jid)), before["_events"], "webhook events after a rejected delivery")


@case("webhook signatures: forged, tampered, stale, unknown versions and garbage are refused")
@with_worker(1)
def _(w):
    fake_reset(drop_webhooks=1)
    j = running_job()
    jid = j["id"]
    body = succeeded_body(j)
    j["_events"] = len(webhook_events(jid))
    now = int(time.time())
    cases = {
        "tampered body": (body.replace(b"succeeded", b"succeeded "), sign(body)),
        "wrong secret": (body, sign(body, secret="whsec_" + base64.b64encode(os.urandom(24)).decode())),
        "330 s old": (body, sign(body, ts=now - 330)),
        "330 s in the future": (body, sign(body, ts=now + 330)),
        "no headers": (body, {"Content-Type": "application/json"}),
    }
    h = sign(body)
    h["webhook-signature"] = h["webhook-signature"].replace("v1,", "v2,")
    cases["only a v2 entry"] = (body, h)
    for garbage in ("", "v1", "v1,", "v1,!!!!", "nonsense", "v1," + "A" * 5000):
        h = sign(body)
        h["webhook-signature"] = garbage
        cases[f"signature {garbage[:10]!r}"] = (body, h)
    h = sign(body)
    del h["webhook-timestamp"]
    cases["no timestamp"] = (body, h)
    h = sign(body)
    h["webhook-timestamp"] = "12x"
    cases["bad timestamp"] = (body, h)
    for name, (b, hdrs) in cases.items():
        r = hook(b, hdrs)
        expect_problem(r, 401)
        unchanged(jid, j)
    # An unknown version entry next to a good v1 one is fine; so is the
    # previous secret (rotation).
    h = sign(body, secret=SECRET_PREV)
    h["webhook-signature"] = "v2,Zm9vYmFy " + h["webhook-signature"]
    r = hook(body, h)
    expect_json(r, 200)
    expect(job(jid)["status"] in ("persisting", "succeeded"),
           "status after a delivery signed with the previous secret")
    expect_eq(wait_status([jid], FINAL)[0]["status"], "succeeded", "the job, stored before the case ends")


@case("webhook: the reference vector is accepted when its secret is configured, not otherwise")
def _():
    # The Standard Webhooks reference vector, signed with a secret this
    # darkroom does not have: authentic elsewhere, refused here.
    body = b'{"test": 2432232314}'
    h = {"webhook-id": "msg_p5jXN8AQM9LWM0D4loKWxJek", "webhook-timestamp": str(int(time.time())),
         "webhook-signature": "v1,g0hM9SsE+OTPJTGt/tmIKtSyZlE3uFJELVlNIOLJ1OE=",
         "Content-Type": "application/json"}
    expect_problem(hook(body, h), 401)


def hook2(body, headers):
    """POST a delivery to [adapter "replicate2"] (no webhook_secret
    configured); return the answer and the seconds it took."""
    t0 = time.monotonic()
    r = request("POST", "/v1/hooks/replicate2", body=body, headers=headers, key=None)
    return r, time.monotonic() - t0


def stored_secret():
    rows = sql("SELECT v FROM plugin_kv WHERE instance = 'replicate2' AND k = 'webhook_secret'")
    return rows[0][0] if rows else None


@case("webhook without a configured secret: the app answers at once from the worker's stored copy, "
      "never waiting on the provider")
def _():
    # The fake's secret endpoint hangs (12 s, then no answer) and nothing
    # is stored yet: the delivery cannot be verified, 503, at once, and
    # the app did not ask the provider.
    fake_reset(fault_endpoints=["secret"], timeout_rate=1, timeout_sleep=12)
    sql("DELETE FROM plugin_kv WHERE instance = 'replicate2'")
    body = json.dumps({"id": "nosuchprediction0000000001", "status": "processing",
                       "input": {}, "output": None, "logs": ""}).encode()
    before = fake("/_state")["calls"]["secret"]
    r, took = hook2(body, sign(body))
    expect_problem(r, 503)
    expect(took < 2, f"the answer took {took:.1f} s: the app waited on the provider")
    r, took = hook2(body, sign(body, secret="whsec_" + base64.b64encode(os.urandom(24)).decode()))
    expect_problem(r, 503)
    expect(took < 2, f"a forged delivery's answer took {took:.1f} s")
    expect_eq(fake("/_state")["calls"]["secret"], before, "secret requests the app made")
    # The provider back: the worker fetches the secret when it starts and
    # stores it; the app verifies with it, at once, even with the
    # provider down again.
    fake("/_control", {"timeout_rate": 0})
    w = Worker(1)
    try:
        wait_until(stored_secret, timeout=30, what="the worker storing the webhook secret")
        expect_eq(stored_secret(), SECRET, "the stored secret")
        fake("/_control", {"timeout_rate": 1})
        r, took = hook2(body, sign(body))
        expect_eq(expect_json(r, 200)["status"], "unknown", "a delivery for an unknown prediction")
        expect(took < 2, f"the answer took {took:.1f} s")
        r, took = hook2(body, sign(body, secret="whsec_" + base64.b64encode(os.urandom(24)).decode()))
        expect_problem(r, 401)
        expect(took < 2, f"a forged delivery's answer took {took:.1f} s")
    finally:
        fake("/_control", {"timeout_rate": 0})
        leftover = w.stop()
    expect(not leftover, "worker processes outlived the supervisor")


@case("webhook: duplicates and unknown predictions get 200 and change nothing")
@with_worker(1)
def _(w):
    fake_reset(drop_webhooks=1)
    j = running_job()
    body = succeeded_body(j)
    h = sign(body)
    expect_eq(expect_json(hook(body, h), 200)["status"], "accepted", "first delivery")
    hooks = lambda: [e for e in events_of(j["id"]) if e[0] == "webhook"]  # noqa: E731
    n = len(hooks())
    expect_eq(expect_json(hook(body, h), 200)["status"], "duplicate", "same webhook-id again")
    after = hooks()
    expect_eq(len(after), n + 1, "webhook events after the duplicate")
    expect('"duplicate":"true"' in after[-1][3] and after[-1][2] == "",
           f"the duplicate is logged and moves nothing: {after[-1]}")
    # A late "processing" after "succeeded" never moves the job back.
    late = json.loads(body)
    late["status"] = "processing"
    late = json.dumps(late).encode()
    expect_eq(expect_json(hook(late, sign(late)), 200)["status"], "ignored", "late processing")
    expect(job(j["id"])["status"] in ("persisting", "succeeded"), "status after the late delivery")
    unknown = json.loads(body)
    unknown["id"] = "nosuchprediction0000000000"
    unknown = json.dumps(unknown).encode()
    expect_eq(expect_json(hook(unknown, sign(unknown)), 200)["status"], "unknown", "unknown prediction")
    # Authentic but not a prediction: 400, nothing recorded.
    expect_problem(hook(b"{}", sign(b"{}")), 400)
    expect_eq(wait_status([j["id"]], FINAL)[0]["status"], "succeeded", "the job, stored before the case ends")


@case("webhook: a deadlock with another transaction is run again, not answered 503")
@with_worker(1)
def _(w):
    # A client session holds the job row and then inserts the delivery's
    # key: the webhook's transaction (delivery first, then the job row)
    # closes a cycle, and InnoDB kills the lighter one, the webhook's.
    fake_reset(drop_webhooks=1)
    j = running_job()
    jid = j["id"]
    body = succeeded_body(j)
    h = sign(body)
    cmd = ["mariadb", "--no-defaults", f"--socket={os.environ['MARIADB_SOCKET']}", "-uroot",
           "-N", "-B", "--unbuffered", os.environ.get("DARKROOM_DB", "darkroom_test")]
    other = subprocess.Popen(cmd, stdin=subprocess.PIPE, stdout=subprocess.PIPE,
                             stderr=subprocess.PIPE, text=True)
    answer = {}
    try:
        # Heavy (many undo entries), so that it is not the victim.
        other.stdin.write(
            "BEGIN;\n"
            "INSERT INTO webhook_deliveries (adapter, delivery_key, delivery_id, received_at)"
            " SELECT 'deadlock-test', UNHEX(SHA2(seq, 256)), seq, NOW(6) FROM seq_1_to_300;\n"
            f"SELECT id FROM jobs WHERE id = '{jid}' FOR UPDATE;\n")
        other.stdin.flush()
        expect_eq(other.stdout.readline().strip(), jid, "the other session holds the job row")
        t = threading.Thread(target=lambda: answer.update(r=hook(body, h)))
        t.start()
        # The webhook's transaction has inserted its delivery; a worker's
        # poll may be waiting for the row too, having written nothing.
        wait_until(lambda: sql("SELECT COUNT(*) FROM information_schema.innodb_trx"
                               " WHERE trx_state = 'LOCK WAIT' AND trx_rows_modified > 0")[0][0] == "1",
                   timeout=10, interval=0.05, what="the webhook waiting for the job row")
        msg = h["webhook-id"].replace("'", "''")
        other.stdin.write(
            "INSERT INTO webhook_deliveries (adapter, delivery_key, delivery_id, received_at)"
            f" VALUES ('replicate', UNHEX(SHA2('{msg}', 256)), '{msg}', NOW(6));\n"
            "SELECT 'inserted';\nDO SLEEP(0.3);\nROLLBACK;\nSELECT 'rolled back';\n")
        other.stdin.flush()
        expect_eq(other.stdout.readline().strip(), "inserted",
                  "the other session's insert (it was not the deadlock's victim)")
        expect_eq(other.stdout.readline().strip(), "rolled back", "the other session ended")
        t.join(30)
        expect(not t.is_alive(), "the webhook is answered")
    finally:
        other.stdin.close()
        other.wait(30)
    expect_eq(expect_json(answer["r"], 200)["status"], "accepted", "the deadlocked webhook")
    # The worker stores its outputs before the case ends, so no job of
    # this case is left due for the next one.
    expect_eq(wait_status([jid], FINAL)[0]["status"], "succeeded", "the job after the delivery")


def sign_raw(body, msg_id):
    """Standard Webhooks headers for BODY with the id MSG_ID (bytes, sent
    as they are: http.client writes header text as Latin-1)."""
    ts = str(int(time.time()))
    key = base64.b64decode(SECRET.split("_", 1)[1])
    mac = hmac.new(key, msg_id + b"." + ts.encode() + b"." + body, hashlib.sha256).digest()
    return {"webhook-id": msg_id.decode("latin-1"), "webhook-timestamp": ts,
            "webhook-signature": "v1," + base64.b64encode(mac).decode(),
            "Content-Type": "application/json"}


@case("webhook: webhook-ids up to 256 bytes (any bytes the verifier takes) are applied once; repeats are duplicates")
@with_worker(1)
def _(w):
    fake_reset(drop_webhooks=1)
    j = running_job()
    pred = json.loads(succeeded_body(j))
    pred.update(status="processing", output=None, logs=" 10%|#")
    body = json.dumps(pred).encode()
    tail = os.urandom(8).hex()
    ids = {
        "256 ASCII bytes": ("msg_" + tail + "x" * 256)[:256],
        "the same but one letter's case": ("msg_" + tail + "X" + "x" * 255)[:256],
        "256 bytes with quotes, spaces and backslashes": ('m "q" \\ ' + tail + "y" * 256)[:256],
        "128 UTF-8 characters (256 bytes)": "é" * 128,
    }
    ids["256 bytes that are not UTF-8"] = (b"msg_\xff\xfe\xc0\xaf" + tail.encode() + b"\x80" * 256)[:256]
    for what, msg_id in ids.items():
        raw = msg_id if isinstance(msg_id, bytes) else msg_id.encode()
        h = sign_raw(body, raw)
        r = hook(body, h)
        expect_eq(expect_json(r, 200)["status"], "accepted", f"{what}: first delivery")
        r = hook(body, h)
        expect_eq(expect_json(r, 200)["status"], "duplicate", f"{what}: the same delivery again")
    rows = sql("SELECT COUNT(*), MIN(OCTET_LENGTH(delivery_id)) FROM webhook_deliveries"
               f" WHERE adapter = 'replicate' AND delivery_id LIKE '%{tail}%'")
    expect_eq(rows, [["4", "256"]], "the four ids naming this run, stored whole")
    # Each delivery is in the job's events as a JSON detail naming its id
    # (bytes that are not UTF-8 shown as U+FFFD).
    timeline = expect_json(get(f"/v1/jobs/{j['id']}/events"), 200)["data"]
    named = [e["detail"].get("delivery_id", "") for e in timeline
             if e["kind"] == "webhook" and isinstance(e["detail"], dict)]
    for what, msg_id in ids.items():
        want = msg_id.decode("utf-8", "replace") if isinstance(msg_id, bytes) else msg_id
        expect_eq(named.count(want), 2, f"{what}: events naming the delivery (applied, duplicate)")
    # 257 bytes is over the verifier's limit: refused, nothing stored.
    h = sign(body, msg_id="msg_" + "z" * 253)
    expect_problem(hook(body, h), 401)
    expect_eq(job(j["id"])["status"], "processing", "status")


@case("webhook: a failed prediction with a 3000-character error fails the job, its message cut to fit")
@with_worker(1)
def _(w):
    fake_reset(drop_webhooks=1)
    j = running_job()
    pred = json.loads(succeeded_body(j))
    text = "CUDA out of memory: " + "ü" * 1490 + " " + "x" * 1490
    pred.update(status="failed", output=None, error=text)
    body = json.dumps(pred).encode()
    expect_eq(expect_json(hook(body, sign(body)), 200)["status"], "accepted", "the failure delivery")
    jj = job(j["id"])
    expect_eq(jj["status"], "failed", "status")
    expect_eq(jj["error"]["code"], "prediction_failed", "code")
    msg = jj["error"]["message"]
    expect(text.startswith(msg) and 0 < len(msg) <= 1024,
           f"message: {len(msg)} characters, a prefix of the provider's text")


@case("webhook: predict_time and progress from the logs are kept")
@with_worker(1)
def _(w):
    fake_reset(drop_webhooks=1)
    j = running_job()
    pred = json.loads(succeeded_body(j))
    pred.update(status="processing", output=None,
                logs="Using seed: 1\n 10%|#         | 2/20\n 45%|████▌     | 9/20 [00:01<00:01]")
    body = json.dumps(pred).encode()
    expect_json(hook(body, sign(body)), 200)
    jj = job(j["id"])
    expect_eq(jj["status"], "processing", "status")
    expect(abs(jj["progress"] - 0.45) < 0.001, f"progress {jj['progress']}")
    pred.update(status="succeeded", output=[f"{FAKE}/files/{pred['id']}/out-0.png"], metrics={"predict_time": 2.25})
    body = json.dumps(pred).encode()
    expect_json(hook(body, sign(body)), 200)
    jj = job(j["id"])
    expect_eq(jj["prediction"]["predict_time"], 2.25, "predict_time")


# ------------------------------------------------------- concurrency, crashes


@case("4 worker processes, 500 jobs: every job submitted exactly once and finished")
@with_worker(4)
def _(w):
    fake_reset(start_delay=0.05, duration=0.2)
    ids = [create({"fake_output": "url"}) for _ in range(500)]
    wait_status(ids, FINAL, timeout=180)
    rows = sql("SELECT status, COUNT(*) FROM jobs WHERE id IN ("
               + ",".join(f"'{i}'" for i in ids) + ") GROUP BY status")
    expect_eq(rows, [["succeeded", "500"]], "statuses of the 500 jobs")
    expect_once(ids)


@case("SIGKILL of a worker mid-step and of the supervisor: everything completes")
def _():
    fake_reset(slow=1.5)  # every API call takes 1.5 s: kills land mid-step
    ids = [create({"fake_output": "url"}) for _ in range(12)]
    w = Worker(2, "worker-kill")
    try:
        wait_until(lambda: len(w.children()) == 2, timeout=10, what="two worker processes")
        time.sleep(1.0)
        victim = w.children()[0]
        os.kill(victim, signal.SIGKILL)
        wait_until(lambda: len(w.children()) == 2 and victim not in w.children(),
                   timeout=10, what="the killed worker replaced")
        time.sleep(1.0)
        os.kill(w.proc.pid, signal.SIGKILL)  # the supervisor
        w.proc.wait()
        wait_until(lambda: not w.children() and subprocess.run(
            ["pgrep", "-f", f"{BIN} worker"], capture_output=True).returncode != 0,
            timeout=15, what="children gone after the supervisor's death")
    finally:
        w.stop()
    fake("/_control", {"slow": 0})
    w2 = Worker(2, "worker-after-kill")
    try:
        jobs = wait_status(ids, FINAL, timeout=60)
    finally:
        w2.stop()
    for j in jobs:
        expect_eq(j["status"], "succeeded", f"status of {j['id']}")
    expect_once(ids)


@case("a worker stopped past its lease cannot write after it resumes")
def _():
    fake_reset(slow=3)  # the create answer takes 3 s; the lease is 4 s
    jid = create({"fake_output": "url"})
    w = Worker(1, "worker-stop")
    child = None
    try:
        wait_until(lambda: job(jid)["attempts"] >= 1, timeout=10, what="the submit begun")
        child = w.children()[0]
        os.kill(child, signal.SIGSTOP)
        time.sleep(5)  # past the lease
        fake("/_control", {"slow": 0})
        w2 = Worker(1, "worker-stop-2")
        try:
            wait_status([jid], FINAL, timeout=30)
            version = sql(f"SELECT lease_version, status FROM jobs WHERE id = '{jid}'")[0]
            n_events = len(events_of(jid))
            os.kill(child, signal.SIGCONT)
            time.sleep(4)  # the resumed worker gets its answer and tries to write
            expect_eq(sql(f"SELECT lease_version, status FROM jobs WHERE id = '{jid}'")[0],
                      version, "lease version and status after the stale worker resumed")
            expect_eq(len(events_of(jid)), n_events, "events after the stale worker resumed")
        finally:
            w2.stop()
    finally:
        if child:
            os.kill(child, signal.SIGCONT)
        w.stop()
    log = open(os.path.join(WORK, "worker-stop.log"), errors="replace").read()
    expect("lease_lost" in log, "the stale worker did not notice its lost lease")


# ------------------------------------------------------------ figures


@case("figures: succeeded webhook -> persisting latency over 200 jobs; idle load")
@with_worker(2)
def _(w):
    fake_reset(drop_webhooks=1, duration=60)  # webhooks are sent by hand below
    ids = [create({"fake_output": "url"}) for _ in range(200)]
    jobs = wait_status(ids, ("starting", "processing"), timeout=60)
    to_persisting, to_succeeded = [], []
    for j in jobs:
        body = succeeded_body(j)
        h = sign(body)
        t0 = time.monotonic()
        expect_json(hook(body, h), 200)
        # The webhook applies the state before answering; the pipeline
        # then stores the output.
        t1 = None
        while True:
            st = job(j["id"])["status"]
            if st in ("persisting", "succeeded") and t1 is None:
                t1 = time.monotonic()
            if st in FINAL:
                break
            time.sleep(0.002)
        expect_eq(st, "succeeded", "status")
        to_persisting.append((t1 - t0) * 1000)
        to_succeeded.append((time.monotonic() - t0) * 1000)
    for name, lat in (("persisting", to_persisting), ("succeeded", to_succeeded)):
        lat.sort()
        p99 = lat[int(len(lat) * 0.99) - 1]
        print(f"# figure: succeeded webhook -> job {name}: median {statistics.median(lat):.1f} ms,"
              f" p99 {p99:.1f} ms over {len(lat)} jobs")
    # Idle load: queries the worker pool sends while nothing is due.
    sql("UPDATE jobs SET run_at = NULL")
    time.sleep(2)
    q0 = int(sql("SHOW GLOBAL STATUS LIKE 'Questions'")[0][1])
    time.sleep(10)
    q1 = int(sql("SHOW GLOBAL STATUS LIKE 'Questions'")[0][1])
    # Two of those are this measurement's own statements.
    print(f"# figure: idle pool of 2 workers: {(q1 - q0 - 1) / 10:.2f} queries/s")


run()
