#!/usr/bin/env python3
"""tests/integration/test_trainings.py — POST /v1/trainings end to end:
lighttpd + darkroom.fcgi + MariaDB + `darkroom worker` + the fake
Replicate's trainings.

A training is a job of kind 'training' run by the same engine as
predictions. The cases: intake refusals (a trainer without its version, an
adapter without trainings, a bad destination, ?kind=); a training whose
webhooks arrive out of order succeeds, its new version is stored and its
weights (a multi-MB tar) stored and indexed with the fake's SHA-256 and
kind 'weights'; a later job runs the new version; cancel reaches the
fake's cancel endpoint; a training past the adapter's training_deadline
(6s in the test config) fails with provider_deadline and is canceled at
the provider; an unknown destination fails with destination_not_found.

The worker runs with its own copy of the config whose [limits]
max_output_bytes is 16M (the shared one caps outputs at 4M), so an 8 MiB
weights file fits.
"""

import hashlib
import http.server
import os
import re
import subprocess
import sys
import threading
import time
import urllib.request

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
from harness import (case, expect, expect_eq, expect_json, expect_problem, get, post, request,  # noqa: E402
                     run, sql, wait_until)

from engine_lib import BIN, FAKE, WORK, Worker, fake, fake_reset, wait_status  # noqa: E402

TRAINER = "ostris/flux-dev-lora-trainer:" + "a" * 64
DEST = "acme/brand-style"
WEIGHTS = 8 * 1024 * 1024


def worker_conf():
    """The shared config with max_output_bytes raised for the weights."""
    path = os.path.join(WORK, "trainings.conf")
    with open(os.environ["DARKROOM_CONF"]) as f:
        text = f.read()
    text, n = re.subn(r"(?m)^max_output_bytes = .*$", "max_output_bytes = 16M", text)
    expect_eq(n, 1, "max_output_bytes lines replaced")
    with open(path, "w") as f:
        f.write(text)
    return path


CONF = worker_conf()


def train(**extra):
    body = {"adapter": "replicate", "trainer": TRAINER, "destination": DEST,
            "input": {"trigger_word": "ACME", "steps": 1000}}
    headers = extra.pop("headers", None)
    inp = extra.pop("input", None)
    if isinstance(inp, dict):
        body["input"].update(inp)
    elif inp is not None:
        body["input"] = inp
    body.update(extra)
    return post("/v1/trainings", body, headers=headers) if headers else post("/v1/trainings", body)


def trainings_at_fake(jid=None):
    return {k: v for k, v in fake("/_state")["predictions"].items()
            if v.get("training") and (jid is None or v.get("job") == jid)}


def with_worker(fn):
    def inner():
        w = Worker(2, name="trainings-worker", env={"DARKROOM_CONF": CONF})
        try:
            fn(w)
        finally:
            leftover = w.stop()
        expect(not leftover, "worker processes outlived the supervisor")
    inner.__name__ = fn.__name__
    return inner


@case("intake: a trainer without its version, an adapter without trainings, a bad destination: 422")
def intake_refusals():
    before = int(sql("SELECT COUNT(*) FROM jobs")[0][0])
    expect_problem(train(trainer="ostris/flux-dev-lora-trainer"), 422, "trainer")
    expect_problem(train(trainer="not a model"), 422, "trainer")
    expect_problem(train(adapter="null"), 422, "adapter")
    expect_problem(train(adapter="cog1"), 422, "adapter")
    expect_problem(train(adapter="nope"), 422, "adapter")
    expect_problem(train(destination="acme"), 422, "destination")
    expect_problem(train(destination="acme/brand-style:" + "b" * 64), 422, "destination")
    expect_problem(post("/v1/trainings", {"adapter": "replicate", "trainer": TRAINER,
                                          "input": {}}), 422, "destination")
    expect_problem(train(input="no"), 422, "input")
    expect_problem(train(model="acme/x"), 422, "model")
    expect_problem(train(renditions=["thumb"]), 422, "renditions")
    expect_problem(get("/v1/jobs?kind=batch"), 422, "kind")
    expect_eq(int(sql("SELECT COUNT(*) FROM jobs")[0][0]), before, "no job written")


@case("a training whose adapter no longer runs trainings fails (adapter_no_trainings), never sent")
def adapter_lost_trainings():
    fake_reset()
    jid = expect_json(train(), 202)["id"]  # no worker runs yet
    sql(f"UPDATE jobs SET adapter = 'null' WHERE id = '{jid}'")
    w2 = Worker(1, name="trainings-null-worker", env={"DARKROOM_CONF": CONF})
    try:
        done = wait_status([jid], ("succeeded", "failed", "canceled"), timeout=30)[0]
    finally:
        w2.stop()
    expect_eq((done["status"], done["error"]["code"]), ("failed", "adapter_no_trainings"), "failed clearly")


@case("Idempotency-Key: the same training body gives the same job (200)")
def idempotent():
    fake_reset()
    first = expect_json(train(headers={"Idempotency-Key": "train-1"}), 202)
    again = expect_json(train(headers={"Idempotency-Key": "train-1"}), 200)
    expect_eq(again["id"], first["id"], "the same job")
    expect_eq(first["kind"], "training", "kind")
    expect_eq(first["training"], {"destination": DEST, "version": None}, "training before it ran")
    expect_eq(first["model"], TRAINER, "the trainer is the job's model")
    expect_json(post("/v1/jobs/" + first["id"] + "/cancel", {}), 202)


RESULT = {}


@case("webhooks out of order: succeeded, version stored, 8 MiB weights stored and indexed with the fake's SHA-256")
@with_worker
def succeeds(w):
    fake_reset(reorder_webhooks=True, weights_size=WEIGHTS, duration=0.8)
    job = expect_json(train(metadata={"customer": "42"}), 202)
    expect_eq(job["kind"], "training", "kind")
    done = wait_status([job["id"]], ("succeeded", "failed", "canceled"), timeout=40)[0]
    expect_eq(done["status"], "succeeded", f"status (error {done['error']})")
    trainings = trainings_at_fake(job["id"])
    expect_eq(len(trainings), 1, "trainings at the fake")
    (tid, t), = trainings.items()
    expect_eq(t["destination"], DEST, "destination sent")
    expect_eq(t["version"], "a" * 64, "the trainer's version in the URL")
    expect_eq(t["input"], {"trigger_word": "ACME", "steps": 1000}, "input sent as given")
    expect_eq(t["cancel_after"], None, "no Cancel-After on a training")
    expect_eq(done["prediction"]["id"], tid, "the training's id")
    expect_eq(done["training"]["version"], t["output"]["version"], "training.version")
    expect(re.fullmatch(DEST + r":[0-9a-f]{64}", done["training"]["version"]), "owner/name:<id>")
    expect_eq(len(done["outputs"]), 1, "one output")
    out = done["outputs"][0]
    expect_eq(out["kind"], "weights", "output kind")
    expect_eq(out["bytes"], WEIGHTS, "bytes")
    expect_eq(out["sha256"], t["weights_sha256"], "SHA-256 of the fake's weights")
    expect_eq(out["renditions"], [], "no renditions")
    with urllib.request.urlopen(out["url"], timeout=30) as r:
        stored = r.read()
    expect_eq(hashlib.sha256(stored).hexdigest(), t["weights_sha256"], "stored bytes")
    row = sql(f"SELECT kind, sha256 FROM outputs WHERE job_id = '{job['id']}'")
    expect_eq(row, [["weights", t["weights_sha256"]]], "indexed row")
    expect_eq(sql(f"SELECT training_version FROM jobs WHERE id = '{job['id']}'")[0][0],
              done["training"]["version"], "jobs.training_version")
    # The deliveries came out of order (start after completed), and the
    # late one changed nothing.
    def late_start():
        evs = [d["event"] for d in fake("/_state")["webhook_deliveries"] if d["prediction"] == tid]
        return "start" in evs and "completed" in evs and evs.index("completed") < evs.index("start")
    wait_until(late_start, timeout=10, interval=0.2, what="the start webhook after completed")
    expect_eq(expect_json(get(f"/v1/jobs/{job['id']}"), 200)["status"], "succeeded", "still succeeded")
    trained = [j["id"] for j in expect_json(get("/v1/jobs?kind=training&limit=100"), 200)["data"]]
    expect(job["id"] in trained, "listed under ?kind=training")
    preds = expect_json(get("/v1/jobs?kind=prediction&limit=100"), 200)["data"]
    expect(job["id"] not in [j["id"] for j in preds], "not under ?kind=prediction")
    expect(all(j["kind"] == "prediction" for j in preds), "predictions have kind prediction")
    found = expect_json(get(f"/v1/outputs?sha256={out['sha256']}"), 200)["data"]
    expect_eq([o["job_id"] for o in found], [job["id"]], "found in the output index")
    r = subprocess.run([BIN, "jobs", "show", job["id"]], capture_output=True, text=True, timeout=60,
                       stdin=subprocess.DEVNULL)
    expect_eq(r.returncode, 0, f"jobs show: {r.stderr}")
    expect(done["training"]["version"] in r.stdout, "jobs show prints the trained version")
    r = subprocess.run([BIN, "jobs", "list", "--kind", "training", "--json"], capture_output=True,
                       text=True, timeout=60, stdin=subprocess.DEVNULL)
    expect_eq(r.returncode, 0, f"jobs list --kind: {r.stderr}")
    expect(job["id"] in r.stdout, "jobs list --kind training")
    RESULT["version"] = done["training"]["version"]


@case("a training's input file ({\"$file\"}): the provider fetches the zip through the URL it was given")
@with_worker
def file_input(w):
    fake_reset(fetch_inputs=True)
    data = b"PK\x03\x04\x14\x00\x00\x00\x00\x00" + os.urandom(5000)
    f = expect_json(request("POST", "/v1/files?filename=brand.zip", data,
                            headers={"Content-Type": "application/zip"}), 201)
    expect_eq(f["content_type"], "application/zip", "a zip of training images")
    jid = expect_json(train(input={"input_images": {"$file": f["id"]}}), 202)["id"]
    done = wait_status([jid], ("succeeded", "failed", "canceled"), timeout=60)[0]
    expect_eq(done["status"], "succeeded", f"status (error {done['error']})")
    expect_eq(done["input"]["input_images"], {"$file": f["id"]}, "the input as written")
    reads = [x for x in fake("/_state")["input_fetches"] if x["path"] == f"/v1/files/{f['id']}/content"]
    expect_eq([x["sha256"] for x in reads], [f["sha256"]], "the trainer read the uploaded bytes")


@case("a weights download longer than the lease keeps its worker: one download, no second claim")
@with_worker
def long_download(w):
    # 8 MiB at 1.4 MB/s: about 6 s, over the 4 s lease of the test config.
    fake_reset(weights_size=WEIGHTS, weights_rate=1400000)
    log_start = len(w.log_text())
    jid = expect_json(train(), 202)["id"]
    done = wait_status([jid], ("succeeded", "failed", "canceled"), timeout=40)[0]
    expect_eq(done["status"], "succeeded", f"status (error {done['error']})")
    (tid, t), = trainings_at_fake(jid).items()
    weights = [d for d in fake("/_state")["downloads"] if d["path"].endswith(tid + "/weights.tar")]
    expect_eq(len(weights), 1, "downloads of the weights")
    expect_eq(done["outputs"][0]["sha256"], t["weights_sha256"], "SHA-256")
    expect("event=job.lease_lost" not in w.log_text()[log_start:], "no lease lost")


class SlowS3(http.server.BaseHTTPRequestHandler):
    """An S3 endpoint that takes PUT bodies at 512 KiB/s (and has no
    object yet): a slow sink."""
    protocol_version = "HTTP/1.1"
    puts = []

    def log_message(self, *a):
        pass

    def do_HEAD(self):
        self.send_response(404)
        self.send_header("Content-Length", "0")
        self.end_headers()

    def do_GET(self):
        self.do_HEAD()

    def do_PUT(self):
        n = int(self.headers.get("Content-Length") or 0)
        t0 = time.monotonic()
        left = n
        while left > 0:
            chunk = self.rfile.read(min(65536, left))
            if not chunk:
                break
            left -= len(chunk)
            time.sleep(len(chunk) / (512 * 1024))
        SlowS3.puts.append((self.path, n, time.monotonic() - t0))
        self.send_response(200)
        self.send_header("ETag", '"x"')
        self.send_header("Content-Length", "0")
        self.end_headers()


@case("weights uploaded to a sink slower than the lease (3 MiB at 512 KiB/s, lease 4 s): stored once")
def slow_upload():
    srv = http.server.ThreadingHTTPServer(("127.0.0.1", 0), SlowS3)
    threading.Thread(target=srv.serve_forever, daemon=True).start()
    fake_reset(weights_size=3 * 1024 * 1024, duration=0.5)
    jid = expect_json(train(), 202)["id"]
    w = Worker(2, name="trainings-slow-sink", env={"DARKROOM_CONF": CONF, "DARKROOM_SINK": "s3",
                                                   "DARKROOM_S3_ENDPOINT": "http://127.0.0.1:%d" %
                                                   srv.server_address[1]})
    try:
        done = wait_status([jid], ("succeeded", "failed", "canceled"), timeout=120)[0]
        log = w.log_text()
    finally:
        leftover = w.stop()
        srv.shutdown()
    expect(not leftover, "worker processes outlived the supervisor")
    expect_eq(done["status"], "succeeded", f"status (error {done['error']})")
    weights = [p for p in SlowS3.puts if p[1] == 3 * 1024 * 1024]
    expect_eq(len(weights), 1, f"one upload of the weights: {SlowS3.puts}")
    expect(weights[0][2] > 4, f"the upload outlasted the lease: {weights[0][2]:.1f} s")
    expect_eq(log.count("event=job.lease_lost"), 0, "no lease lost")


@case("a later job runs the trained version as its model")
@with_worker
def later_job(w):
    expect("version" in RESULT, "the training case ran")
    fake_reset()
    jid = expect_json(post("/v1/jobs", {"adapter": "replicate", "model": RESULT["version"],
                                        "input": {"prompt": "ACME mug"}, "renditions": []}), 202)["id"]
    done = wait_status([jid], ("succeeded", "failed", "canceled"), timeout=30)[0]
    expect_eq(done["status"], "succeeded", f"status (error {done['error']})")
    expect_eq(done["kind"], "prediction", "kind")
    preds = fake("/_state")["predictions"]
    expect_eq([p["version"] for p in preds.values()], [RESULT["version"].split(":")[1]],
              "the provider ran the trained version")


@case("cancel: reaches the fake's trainings cancel endpoint")
@with_worker
def cancel(w):
    fake_reset(duration=30)
    jid = expect_json(train(), 202)["id"]
    wait_status([jid], ("processing",), timeout=20)
    expect_json(post(f"/v1/jobs/{jid}/cancel", {}), 202)
    done = wait_status([jid], ("canceled", "failed", "succeeded"), timeout=20)[0]
    expect_eq(done["status"], "canceled", "status")
    st = fake("/_state")
    expect(st["calls"].get("train_cancel", 0) >= 1, f"train_cancel calls: {st['calls']}")
    expect_eq([t["status"] for t in trainings_at_fake(jid).values()], ["canceled"], "canceled at the fake")


@case("deadline: past training_deadline the job fails with provider_deadline and the fake got a cancel")
@with_worker
def deadline(w):
    # The first webhook comes late, so the worker's own record of the create
    # sets the deadline.
    fake_reset(duration=60, delay_webhooks=1.0)
    jid = expect_json(train(), 202)["id"]
    done = wait_status([jid], ("failed", "canceled", "succeeded"), timeout=30)[0]
    expect_eq(done["status"], "failed", "status")
    expect_eq(done["error"]["code"], "provider_deadline", "error code")
    st = fake("/_state")
    expect(st["calls"].get("train_cancel", 0) >= 1, f"train_cancel calls: {st['calls']}")
    expect_eq([t["status"] for t in trainings_at_fake(jid).values()], ["canceled"], "canceled at the fake")


@case("a destination the provider does not have: failed with destination_not_found")
@with_worker
def unknown_destination(w):
    fake_reset()
    jid = expect_json(train(destination="acme/nothing-here"), 202)["id"]
    done = wait_status([jid], ("failed", "canceled", "succeeded"), timeout=20)[0]
    expect_eq(done["status"], "failed", "status")
    expect_eq(done["error"]["code"], "destination_not_found", "error code")
    expect("destination" in done["error"]["message"], f"message: {done['error']['message']}")
    expect_eq(trainings_at_fake(jid), {}, "nothing created at the fake")


@case("a succeeded training without a new version: failed with training_version_missing, nothing stored")
@with_worker
def no_version(w):
    fake_reset()
    jid = expect_json(train(input={"fake_no_version": True}), 202)["id"]
    done = wait_status([jid], ("failed", "canceled", "succeeded"), timeout=20)[0]
    expect_eq(done["status"], "failed", "status")
    expect_eq(done["error"]["code"], "training_version_missing", "error code")
    expect_eq(done["training"]["version"], None, "no version")
    expect_eq(sql(f"SELECT COUNT(*) FROM outputs WHERE job_id = '{jid}' AND state = 'stored'"),
              [["0"]], "nothing stored")


if __name__ == "__main__":
    run()
