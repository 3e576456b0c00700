#!/usr/bin/env python3
"""tests/integration/test_batches.py — POST /v1/batches end to end:
lighttpd + darkroom.fcgi + MariaDB (+ `darkroom worker` and the fake
Replicate where jobs run).

A batch is up to 1000 job requests merged over its defaults, validated
whole and created in one transaction; its counts come from its jobs. The
cases: 1000 items in one request; one bad item (422 naming items[N].field,
nothing written); an idempotent repeat; GET /v1/jobs?batch=; counts while 4
worker processes run a batch; cancel; a body over [limits] max_batch_body
(413 from the app, not from lighttpd); a deleted job leaving the counts.
"""

import base64
import hashlib
import hmac
import http.server
import json
import os
import sys
import threading
import time

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
from harness import (case, expect, expect_eq, expect_json, expect_problem, get, post,  # noqa: E402
                     request, run, sql, wait_until)

from engine_lib import BIN, Worker, fake_reset  # noqa: E402

import subprocess  # noqa: E402


def count(table, where="1=1"):
    return int(sql(f"SELECT COUNT(*) FROM {table} WHERE {where}")[0][0])


def totals():
    return (count("batches"), count("jobs"), count("job_metadata"), count("job_events"))


def batch(body, **kw):
    return post("/v1/batches", body, **kw)


def cli(*args):
    return subprocess.run([BIN, *args], capture_output=True, text=True, timeout=120,
                          stdin=subprocess.DEVNULL)


BIG = {}


@case("1000 items in one request: 202, every job queued, merged over the defaults")
def thousand():
    items = [{"key": f"k{i}", "input": {"prompt": f"p {i}", "seed": i},
              "metadata": {"item": str(i)}} for i in range(1000)]
    items[7]["model"] = "acme/other"
    items[8]["metadata"] = {"campaign": "mine"}
    before = totals()
    t0 = time.monotonic()
    b = expect_json(batch({"defaults": {"model": "acme/flux", "renditions": [],
                                        "metadata": {"campaign": "c7"}},
                           "items": items}), 202)
    took = time.monotonic() - t0
    print(f"     (1000 items: {took * 1000:.0f} ms)")
    expect(b["id"].startswith("b_") and len(b["id"]) == 28, f"batch id {b['id']!r}")
    expect_eq(b["status"], "running", "status")
    expect_eq(b["counts"], {"queued": 1000, "running": 0, "succeeded": 0, "failed": 0,
                            "canceled": 0}, "counts")
    expect_eq(len(b["jobs"]), 1000, "jobs listed")
    expect_eq([j["key"] for j in b["jobs"]], [f"k{i}" for i in range(1000)], "keys in item order")
    expect(b["completed_at"] is None and b["created_at"], "times")
    after = totals()
    expect_eq(after[0] - before[0], 1, "batch rows")
    expect_eq(after[1] - before[1], 1000, "job rows")
    # campaign + item each, but item 8's metadata is its own campaign only
    expect_eq(after[2] - before[2], 1999, "metadata rows")
    expect_eq(after[3] - before[3], 1000, "created events")
    j7 = expect_json(get(f"/v1/jobs/{b['jobs'][7]['id']}"), 200)
    expect_eq(j7["model"], "acme/other", "an item's own model")
    expect_eq(j7["batch_id"], b["id"], "the job's batch_id")
    expect_eq(j7["metadata"], {"campaign": "c7", "item": "7"}, "metadata merged key by key")
    j8 = expect_json(get(f"/v1/jobs/{b['jobs'][8]['id']}"), 200)
    expect_eq(j8["metadata"], {"campaign": "mine"}, "an item's key wins over the default's")
    expect_eq(j8["model"], "acme/flux", "the default model")
    ev = sql(f"SELECT kind, to_status, detail FROM job_events WHERE job_id = '{b['jobs'][8]['id']}'")
    expect_eq(ev[0][:2], ["created", "queued"], "the job's created event")
    expect(b["id"] in ev[0][2], f"the event names the batch: {ev[0][2]}")
    again = expect_json(get(f"/v1/batches/{b['id']}"), 200)
    expect_eq(again["jobs"], b["jobs"], "GET /v1/batches/{id} lists the same jobs")
    expect_eq(again["counts"], b["counts"], "counts read back")
    expect_eq(expect_json(get("/v1/jobs/" + b["jobs"][0]["id"]), 200)["batch_id"], b["id"], "batch_id")
    BIG["id"] = b["id"]
    BIG["jobs"] = [j["id"] for j in b["jobs"]]


@case("GET /v1/jobs?batch=: that batch's jobs only, paged; a bad batch id is 422")
def list_by_batch():
    bid = BIG["id"]
    page = expect_json(get(f"/v1/jobs?batch={bid}&limit=100"), 200)
    expect_eq(len(page["data"]), 100, "a full page")
    expect(all(j["batch_id"] == bid for j in page["data"]), "only the batch's jobs")
    expect_eq([j["id"] for j in page["data"]], BIG["jobs"][::-1][:100], "newest first")
    expect(page["next_cursor"], "a next page")
    other = expect_json(batch({"items": [{"model": "acme/flux", "input": {"x": 1}}]}), 202)
    only = expect_json(get(f"/v1/jobs?batch={other['id']}"), 200)
    expect_eq([j["id"] for j in only["data"]], [other["jobs"][0]["id"]], "the other batch")
    expect_eq(other["jobs"][0]["key"], None, "an item without key")
    expect_problem(get("/v1/jobs?batch=j_01"), 422, "batch")
    r = cli("jobs", "list", "--batch", other["id"], "--json")
    expect_eq(r.returncode, 0, f"jobs list --batch: {r.stderr}")
    expect_eq([j["id"] for j in json.loads(r.stdout)["data"]], [other["jobs"][0]["id"]], "CLI list")


@case("one bad item: 422 naming items[N].field, and nothing written")
def bad_item():
    good = {"model": "acme/flux", "input": {"prompt": "x"}}
    cases = [
        ({"items": [good, good, good, {"model": "acme/flux", "input": "no"}]}, "items[3].input"),
        ({"items": [good, {"model": "acme/flux"}]}, "items[1].input"),
        ({"items": [good, {"key": "a", **good}, {"key": "a", **good}]}, "items[2].key"),
        ({"items": [good, {**good, "adapter": "nope"}]}, "items[1].adapter"),
        ({"items": [good, {**good, "renditions": ["nope"]}]}, "items[1].renditions"),
        ({"items": [good, {**good, "metadata": {"k": 5}}]}, "items[1].metadata"),
        ({"items": [good, {**good, "colour": 1}]}, "items[1]"),
        ({"defaults": {"model": "not a model!"}, "items": [{"input": {}}]}, "defaults.model"),
        ({"defaults": {"key": "x"}, "items": [good]}, "defaults.key"),
        ({"items": []}, "items"),
        ({"items": [good] * 1001}, "items"),
        ({"items": [good, 5]}, "items[1]"),
        ({"items": good}, "items"),
        ({}, "items"),
        ({"items": [good], "extra": 1}, "extra"),
        ({"items": [good], "callback_url": "ftp://example.com/h"}, "callback_url"),
    ]
    before = totals()
    for body, field in cases:
        doc = expect_problem(batch(body), 422, field)
        expect_eq(doc.get("field"), field if field != "extra" else "body", f"field of {field}")
    expect_eq(totals(), before, "rows after the refused batches")
    expect_problem(request("POST", "/v1/batches", body=b"{", headers={"Content-Type": "application/json"}), 400)
    expect_problem(request("POST", "/v1/batches", body=b"{}", headers={"Content-Type": "text/plain"}), 415)
    expect_problem(get("/v1/batches"), 405)
    expect_problem(get("/v1/batches/b_nope"), 404)
    expect_problem(get("/v1/batches/b_01KBAAAAAAAAAAAAAAAAAAAAAA"), 404)
    expect_eq(totals(), before, "rows after the refused requests")


@case("Idempotency-Key covers the batch: same body 200 and the same batch, another body 409")
def idempotent():
    body = {"defaults": {"model": "acme/flux"}, "items": [{"key": "a", "input": {"n": 1}},
                                                          {"key": "b", "input": {"n": 2}}]}
    key = "batch-" + os.urandom(6).hex()
    first = expect_json(batch(body, headers={"Idempotency-Key": key}), 202)
    before = totals()
    again = expect_json(batch(body, headers={"Idempotency-Key": key}), 200)
    expect_eq(again["id"], first["id"], "the same batch")
    expect_eq(again["jobs"], first["jobs"], "the same jobs")
    other = dict(body, items=body["items"][:1])
    expect_problem(batch(other, headers={"Idempotency-Key": key}), 409)
    expect_eq(totals(), before, "nothing written by the repeats")
    # Another API key is another scope.
    third = expect_json(batch(body, headers={"Idempotency-Key": key},
                              key=os.environ["DARKROOM_API_KEY2"]), 202)
    expect(third["id"] != first["id"], "another key's batch")


@case("body over [limits] max_batch_body: 413 problem from the app; under it, accepted")
def too_large():
    limit = 16 << 20
    pad = "x" * (limit + 1024)
    body = json.dumps({"items": [{"model": "acme/flux", "input": {"pad": pad}}]}).encode()
    expect(len(body) > limit and len(body) < 17 << 20, "between the app's and lighttpd's limits")
    before = totals()
    doc = expect_problem(request("POST", "/v1/batches", body=body,
                                 headers={"Content-Type": "application/json"}, timeout=120), 413)
    expect(str(limit) in doc["detail"], f"the app's own 413 (its limit named): {doc['detail']}")
    expect_eq(totals(), before, "nothing written")
    # 2.1 MB: over the 1 MiB of every other request, under the batch
    # limit, each item's input under the 1 MiB a job's input may hold.
    pad = "y" * (700 << 10)
    ok = expect_json(batch({"items": [{"model": "acme/flux", "input": {"pad": pad}}] * 3},
                           timeout=120), 202)
    expect_eq(ok["counts"]["queued"], 3, "a 2.1 MB batch")
    # One item's input over 1 MiB: refused as POST /v1/jobs refuses it.
    pad = "y" * (2 << 20)
    expect_problem(batch({"items": [{"model": "acme/flux", "input": {"pad": pad}}]}, timeout=120),
                   422, field="items[0].input")
    expect_problem(request("POST", "/v1/jobs", body=json.dumps(
        {"model": "acme/flux", "input": {"pad": pad}}).encode(),
        headers={"Content-Type": "application/json"}), 413)


@case("cancel: every job not yet ended, through the job cancel path; then completed")
def cancel():
    bid = BIG["id"]
    r = post(f"/v1/batches/{bid}/cancel")
    b = expect_json(r, 202)
    expect_eq(b["counts"]["canceled"], 1000, "counts after cancel")
    expect_eq(b["status"], "completed", "status")
    expect(b["completed_at"], "completed_at set by the last job's end")
    expect_eq(count("jobs", f"batch_id = '{bid}' AND status = 'canceled'"), 1000, "canceled rows")
    expect_eq(count("job_events", f"kind = 'status' AND to_status = 'canceled' AND job_id IN"
                                  f" (SELECT id FROM jobs WHERE batch_id = '{bid}')"), 1000,
              "each job's canceled event")
    again = expect_json(post(f"/v1/batches/{bid}/cancel"), 202)
    expect_eq(again["completed_at"], b["completed_at"], "completed once")
    expect_problem(post("/v1/batches/b_01KBAAAAAAAAAAAAAAAAAAAAAA/cancel"), 404)
    # The CLI: list, show, cancel.
    r = cli("batches", "show", bid)
    expect(r.returncode == 0 and bid in r.stdout and "completed" in r.stdout and "k999" in r.stdout,
           f"batches show: {r.stdout[-300:]} {r.stderr}")
    r = cli("batches", "show", bid, "--json")
    expect_eq(json.loads(r.stdout)["counts"]["canceled"], 1000, "batches show --json")
    r = cli("batches", "list", "--json", "--limit", "100")
    expect(bid in [x["id"] for x in json.loads(r.stdout)["data"]], "batches list --json")
    r = cli("batches", "list")
    expect(r.returncode == 0 and bid in r.stdout, f"batches list: {r.stderr}")
    r = cli("batches", "cancel", bid)
    expect(r.returncode == 0 and "0 jobs asked to cancel" in r.stdout, f"batches cancel: {r.stdout}")
    r = cli("batches", "show", "b_01KBAAAAAAAAAAAAAAAAAAAAAA")
    expect_eq(r.returncode, 1, "show of an unknown batch")
    r = cli("batches", "--help")
    expect_eq(r.returncode, 0, "batches --help")


@case("4 worker processes run a batch: counts always add up, completed exactly once at the end")
def workers():
    fake_reset(start_delay=0.05, duration=0.2)
    n = 60
    items = [{"key": f"w{i}", "input": {"prompt": f"w {i}", "fake_output": "text",
                                         "fake_outcome": "failed" if i % 6 == 0 else "succeeded"}}
             for i in range(n)]
    b = expect_json(batch({"defaults": {"adapter": "replicate", "model": "acme/flux",
                                        "renditions": []}, "items": items}), 202)
    bid = b["id"]
    seen = []
    stop = threading.Event()

    def watch():
        while not stop.is_set():
            r = get(f"/v1/batches/{bid}")
            if r.status == 200:
                seen.append(r.json)
            time.sleep(0.05)

    w = Worker(4, name="batch-worker")
    t = threading.Thread(target=watch)
    t.start()
    try:
        wait_until(lambda: expect_json(get(f"/v1/batches/{bid}"), 200)["status"] == "completed",
                   timeout=120, interval=0.3, what="the batch completing")
    finally:
        stop.set()
        t.join()
        leftover = w.stop()
    expect(not leftover, "worker processes outlived the supervisor")
    final = expect_json(get(f"/v1/batches/{bid}"), 200)
    expect_eq(final["counts"], {"queued": 0, "running": 0, "succeeded": 50, "failed": 10,
                                "canceled": 0}, "final counts")
    expect(final["completed_at"], "completed_at")
    expect(len(seen) > 3, f"counts seen while running: {len(seen)}")
    ended = -1
    for s in seen:
        c = s["counts"]
        expect_eq(sum(c.values()), n, f"counts add up: {c}")
        done = c["succeeded"] + c["failed"]
        expect(done >= ended, "ended jobs never go down")
        ended = done
        expect_eq(s["status"] == "completed", done == n, f"status {s['status']} with {c}")
    # completed_at was set with the end of the last job, not before (a
    # later statement of its transaction: NOW(6) is per statement).
    gap = sql(f"SELECT TIMESTAMPDIFF(MICROSECOND, (SELECT MAX(completed_at) FROM jobs"
              f" WHERE batch_id = '{bid}'), completed_at) FROM batches WHERE id = '{bid}'")[0][0]
    expect(0 <= int(gap) < 1000000, f"the batch completed with its last job ({gap} us after)")


class Receiver:
    """Callback receiver on 127.0.0.1: answers 200 and records each POST."""

    def __init__(self):
        self.requests = []
        outer = self

        class Handler(http.server.BaseHTTPRequestHandler):
            protocol_version = "HTTP/1.1"

            def log_message(self, *a):
                pass

            def do_POST(self):
                body = self.rfile.read(int(self.headers.get("Content-Length") or 0))
                outer.requests.append({"headers": dict(self.headers), "body": body})
                self.send_response(200)
                self.send_header("Content-Length", "0")
                self.end_headers()

        self.server = http.server.ThreadingHTTPServer(("127.0.0.1", 0), Handler)
        self.server.daemon_threads = True
        self.port = self.server.server_address[1]
        threading.Thread(target=self.server.serve_forever, daemon=True).start()

    def of_type(self, kind):
        return [r for r in self.requests if json.loads(r["body"])["type"] == kind]

    def close(self):
        self.server.shutdown()
        self.server.server_close()


def verify(req):
    """The Standard Webhooks signature of a recorded request, with
    darkroom's callback secret."""
    h = {k.lower(): v for k, v in req["headers"].items()}
    key = base64.b64decode(os.environ["DARKROOM_CALLBACK_SECRET"].split("_", 1)[1])
    signed = f"{h['webhook-id']}.{h['webhook-timestamp']}.".encode() + req["body"]
    want = base64.b64encode(hmac.new(key, signed, hashlib.sha256).digest()).decode()
    return any(s == "v1," + want for s in h["webhook-signature"].split())


@case("batch.completed: sent once to the batch's callback_url when its last job ends, "
      "signed, with the batch object; the jobs' own callbacks as well")
def completed_callback():
    fake_reset(start_delay=0.05, duration=0.2)
    rx = Receiver()
    w = Worker(4, name="batch-callback-worker")
    try:
        url = f"http://127.0.0.1:{rx.port}/hooks"
        items = [{"key": f"c{i}", "input": {"prompt": f"c {i}", "fake_output": "text"}} for i in range(6)]
        items[5]["input"]["fake_outcome"] = "failed"
        b = expect_json(batch({"defaults": {"adapter": "replicate", "model": "acme/flux", "renditions": [],
                                            "callback_url": url + "/job"},
                               "items": items, "callback_url": url}), 202)
        bid = b["id"]
        # And a batch whose jobs have no callback_url: the job that
        # completes it carries the batch's message alone.
        quiet = expect_json(batch({"defaults": {"adapter": "replicate", "model": "acme/flux",
                                                "renditions": []},
                                   "items": [{"input": {"prompt": f"q {i}", "fake_output": "text"}}
                                             for i in range(3)],
                                   "callback_url": url + "/quiet"}), 202)["id"]
        wait_until(lambda: len(rx.of_type("batch.completed")) >= 2 and len(rx.requests) >= 8,
                   timeout=90, interval=0.3, what="the batches' and the jobs' callbacks")
        time.sleep(3)  # time for a second message, which must not come
    finally:
        leftover = w.stop()
        rx.close()
    expect(not leftover, "worker processes outlived the supervisor")
    done = rx.of_type("batch.completed")
    expect_eq(len(done), 2, "batch.completed messages (one per batch)")
    q = [r for r in done if json.loads(r["body"])["data"]["id"] == quiet]
    expect_eq(len(q), 1, "the quiet batch's message")
    expect(verify(q[0]), "its signature verifies")
    expect_eq(json.loads(q[0]["body"])["data"]["counts"]["succeeded"], 3, "its counts")
    done = [r for r in done if r is not q[0]]
    msg = done[0]
    expect(verify(msg), "the batch.completed signature verifies")
    h = {k.lower(): v for k, v in msg["headers"].items()}
    expect_eq(h["webhook-id"], "msg_" + bid, "webhook-id")
    doc = json.loads(msg["body"])
    final = expect_json(get(f"/v1/batches/{bid}"), 200)
    expect_eq(doc["data"], final, "data: the batch object")
    expect_eq(doc["timestamp"], final["completed_at"], "timestamp: when it completed")
    expect_eq(doc["data"]["counts"], {"queued": 0, "running": 0, "succeeded": 5, "failed": 1,
                                      "canceled": 0}, "counts in the message")
    jobs_msgs = [json.loads(r["body"]) for r in rx.requests if r is not msg and r is not q[0]]
    expect_eq(sorted(m["data"]["id"] for m in jobs_msgs), sorted(j["id"] for j in b["jobs"]),
              "each job's own callback, once")
    expect(all(m["data"]["batch_id"] == bid for m in jobs_msgs), "the jobs' batch_id")
    expect_eq(sql(f"SELECT state, attempts FROM callback_deliveries WHERE id = 'msg_{bid}'"),
              [["delivered", "1"]], "the delivery's row")
    expect_eq(count("jobs", f"batch_id IN ('{bid}', '{quiet}') AND run_at IS NOT NULL"), 0,
              "no job left due")


@case("a deleted job leaves its batch's counts and list")
def deleted_job():
    b = expect_json(batch({"items": [{"model": "acme/flux", "input": {"i": i}} for i in range(3)]}), 202)
    bid = b["id"]
    expect_json(post(f"/v1/batches/{bid}/cancel"), 202)
    r = request("DELETE", f"/v1/jobs/{b['jobs'][0]['id']}")
    expect_eq(r.status, 204, "delete")
    after = expect_json(get(f"/v1/batches/{bid}"), 200)
    expect_eq(after["counts"]["canceled"], 2, "counts without the deleted job")
    expect_eq([j["id"] for j in after["jobs"]], [j["id"] for j in b["jobs"][1:]], "jobs listed")


@case("a workflow item: its steps are stored with it, it runs as a workflow, the batch counts it once")
def workflow_item():
    steps = [{"name": "concept", "model": "acme/llama", "input": {"prompt": "{input.title}",
                                                                  "fake_output": "text"}},
             {"name": "image", "model": "acme/flux", "input": {"prompt": {"$ref": "steps.concept.text"}}}]
    bad = {"items": [{"model": "acme/flux", "input": {"p": 1}},
                     {"input": {"title": "t"}, "steps": [dict(steps[0], name="a b"), steps[1]]}]}
    before = totals()
    doc = expect_problem(batch(bad), 422, "items[1].steps[0].name")
    expect_eq(doc.get("field"), "items[1].steps[0].name", "the field")
    # a default model cannot apply to a workflow, whose steps name theirs
    doc = expect_problem(batch({"defaults": {"model": "acme/flux"},
                                "items": [{"input": {"title": "t"}, "steps": steps}]}), 422, "defaults.model")
    expect_eq(totals(), before, "nothing written")
    fake_reset()
    b = expect_json(batch({"items": [{"key": "one", "adapter": "replicate", "model": "acme/flux",
                                      "input": {"prompt": "x"}},
                                     {"key": "wf", "input": {"title": "Sourdough"},
                                      "steps": [dict(s, adapter="replicate") for s in steps]}]}), 202)
    expect_eq(b["counts"]["queued"], 2, "two jobs counted, not the steps")
    wf = b["jobs"][1]["id"]
    expect_eq(int(sql(f"SELECT COUNT(*) FROM jobs WHERE parent_id = '{wf}'")[0][0]), 2, "its steps")
    w = Worker(2, name="batch-wf-worker")
    try:
        wait_until(lambda: expect_json(get(f"/v1/batches/{b['id']}"), 200)["status"] == "completed",
                   timeout=90, interval=0.3, what="the batch completing")
    finally:
        leftover = w.stop()
    expect(not leftover, "worker processes outlived the supervisor")
    done = expect_json(get(f"/v1/batches/{b['id']}"), 200)
    expect_eq(done["counts"]["succeeded"], 2, f"both succeeded: {done['counts']}")
    j = expect_json(get(f"/v1/jobs/{wf}"), 200)
    expect_eq((j["kind"], j["batch_id"], [s["status"] for s in j["steps"]]),
              ("workflow", b["id"], ["succeeded", "succeeded"]), "the workflow item")


if __name__ == "__main__":
    run()
