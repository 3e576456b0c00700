#!/usr/bin/env python3
"""tests/integration/smoke.py — the API and webhook smoke suite that
tests/integration/test_webservers.sh runs through every web server setup
(lighttpd spawning the app, lighttpd on an external socket, Apache with
mod_proxy_fcgi, Apache with mod_fcgid, nginx).

It checks what each server must get right in front of darkroom.fcgi:
routing every path to the app on REQUEST_URI, passing Authorization, the
webhook-* and Idempotency-Key headers and request bodies, a POST without
body or Content-Length (what `curl -X POST URL` sends) reaching the app,
the body limits (413 problem documents, from the app below 2 MiB and from
the server above; provider webhooks of several MB, Cog's and Replicate's
data: URI outputs, reaching the app, which refuses those over its
max_webhook_body itself, logged and counted; batches of several MB
reaching the app, which refuses those over its max_batch_body itself;
uploads of several MB reaching the app, their files never served under
/media/files/), and
/media/ served statically with Cache-Control on
the files' answers only, its errors being problem documents.
tests/integration/smoke_down.py checks the answers while the app is down.
Not named test_*.py, so run-integration.sh does not run it against its own
lighttpd a second time.

Environment: DARKROOM_URL, DARKROOM_API_KEY (harness.py);
DARKROOM_REPLICATE_SECRET, the webhook secret of [adapter "replicate"];
DARKROOM_SMOKE_MEDIA, a path under /media/ that exists in the fs sink's
root (answered with the bytes of DARKROOM_SMOKE_MEDIA_BODY);
DARKROOM_SMOKE_WEBHOOK_LIMIT, the app's [limits] max_webhook_body in
bytes (8 MiB unless set); DARKROOM_SMOKE_BATCH_LIMIT, its [limits]
max_batch_body (16 MiB unless set); DARKROOM_SMOKE_LOG_DIR, a directory whose *.log
files receive the app's log lines (the log check is skipped without it);
DARKROOM_SMOKE_DB, SOCKET:NAME:PASSWORD of the database (user and database
NAME), whose rows the large-webhook case reads. A worker runs meanwhile,
its webhook URLs naming the server under test, with [adapter "cog"] a
fake Cog and [adapter "replicate"] the fake Replicate.
"""

import base64
import glob
import hashlib
import hmac
import json
import os
import secrets
import subprocess
import time

from harness import (case, expect, expect_eq, expect_json, expect_problem,
                     expect_status, get, noisy_png, post, request, request_raw, run,
                     wait_until)

SECRET = os.environ.get("DARKROOM_REPLICATE_SECRET", "")
RUN = secrets.token_hex(4)
WEBHOOK_LIMIT = int(os.environ.get("DARKROOM_SMOKE_WEBHOOK_LIMIT", str(8 << 20)))
BATCH_LIMIT = int(os.environ.get("DARKROOM_SMOKE_BATCH_LIMIT", str(16 << 20)))
LOG_DIR = os.environ.get("DARKROOM_SMOKE_LOG_DIR", "")
DB = os.environ.get("DARKROOM_SMOKE_DB", "")


def job_body(**fields):
    body = {"adapter": "null", "model": "acme/smoke", "input": {"prompt": "x"}}
    body.update(fields)
    return body


def sign(body, secret=SECRET):
    """Standard Webhooks headers for BODY (as test_engine.py signs)."""
    msg_id = "msg_" + os.urandom(8).hex()
    ts = int(time.time())
    key = base64.b64decode(secret.split("_", 1)[1])
    mac = hmac.new(key, f"{msg_id}.{ts}.".encode() + body, hashlib.sha256).digest()
    return {"webhook-id": msg_id, "webhook-timestamp": str(ts),
            "webhook-signature": "v1," + base64.b64encode(mac).decode(),
            "Content-Type": "application/json"}


def hook(body, headers):
    return request("POST", "/v1/hooks/replicate", body=body, headers=headers, key=None)


def bare_post(path):
    """POST PATH with neither body nor Content-Length, as `curl -X POST
    URL` sends it (urllib would add Content-Length: 0)."""
    return request_raw("POST", path)


def no_immutable(r, what):
    cc = r.headers.get("Cache-Control") or ""
    expect("immutable" not in cc and "max-age=31536000" not in cc,
           f"{what} carries the one-year Cache-Control: {cc!r}")


def prediction(pid):
    return json.dumps({"id": pid, "status": "succeeded", "version": "v" * 64,
                       "input": {"prompt": "x"},
                       "output": ["https://replicate.delivery/x/out.png"],
                       "created_at": "2026-01-01T00:00:00Z"}).encode()


def data_prediction(pid, image):
    """A finished prediction whose output is IMAGE inside it as a data:
    URI, as Cog (and Replicate, for some models) delivers it."""
    return json.dumps({"id": pid, "status": "succeeded", "version": "v" * 64,
                       "input": {"prompt": "x"},
                       "output": ["data:image/png;base64," + base64.b64encode(image).decode()],
                       "created_at": "2026-01-01T00:00:00Z"}).encode()


def scrape():
    r = get("/metrics", key=None)
    expect_status(r, 200, "/metrics")
    return r.body.decode()


def deliveries(text, result):
    """darkroom_webhook_deliveries_total{adapter="replicate",result=RESULT}
    in the exposition TEXT (0 when absent)."""
    want = f'darkroom_webhook_deliveries_total{{adapter="replicate",result="{result}"}} '
    for line in text.splitlines():
        if line.startswith(want):
            return float(line[len(want):])
    return 0.0


def refusals(reason):
    """Lines of the app's logs that refuse a replicate delivery for REASON."""
    want = f"event=webhook.refused adapter=replicate reason={reason} "
    n = 0
    for name in glob.glob(os.path.join(LOG_DIR, "*.log")):
        with open(name, "rb") as f:
            n += sum(1 for line in f if want.encode() in line)
    return n


@case("GET /healthz answers 200")
def _():
    expect_status(get("/healthz", key=None), 200)


@case("GET / serves the dashboard page and /metrics the Prometheus text")
def _():
    r = request("GET", "/", key=None)
    expect_eq(r.status, 200, "GET / status")
    expect(r.headers.get("Content-Type", "").startswith("text/html"), f"GET / type {r.headers.get('Content-Type')}")
    expect(b"darkroom" in r.body, "the dashboard page names darkroom")
    r = request("GET", "/metrics", key=None)
    expect_eq(r.status, 200, "GET /metrics status")
    expect(b"# TYPE darkroom_" in r.body, "metrics exposition")


@case("401 problem without an API key (and with a wrong one)")
def _():
    expect_problem(get("/v1/jobs", key=None), 401)
    expect_problem(get("/v1/jobs", key="drk_wrong_key_0000000000"), 401)


@case("create answers 202, and the job can be read back")
def _():
    job = expect_json(post("/v1/jobs", job_body()), 202)
    expect(isinstance(job.get("id"), str) and job["id"], f"no job id: {job}")
    again = expect_json(get(f"/v1/jobs/{job['id']}"), 200)
    expect_eq(again.get("id"), job["id"], "id of the job read back")


@case("list answers 200 with the jobs")
def _():
    doc = expect_json(get("/v1/jobs?limit=5"), 200)
    expect(isinstance(doc, dict) and isinstance(doc.get("data", doc.get("jobs")), list),
           f"no list of jobs: {doc}")


@case("404 and 405 are problem documents")
def _():
    expect_problem(get("/v1/jobs/job_doesnotexist000000"), 404)
    expect_problem(get("/v1/nosuchthing"), 404)
    expect_problem(request("PUT", "/v1/jobs", body={}), 405)


@case("DELETE reaches the app: 409 while a job runs, 204 without a body once it "
      "ended, then 404; a deletion by metadata answers 202 with Location")
def _():
    job = expect_json(post("/v1/jobs", job_body(metadata={"smoke": RUN})), 202)
    path = f"/v1/jobs/{job['id']}"
    expect_problem(request("DELETE", path), 409)
    expect_status(post(f"{path}/cancel"), 202)
    # With a prediction started (the worker runs), the cancel ends the
    # job once the provider was told.
    wait_until(lambda: expect_json(get(path), 200)["status"] == "canceled", timeout=30,
               what="the canceled job ended")
    r = request_raw("DELETE", path)
    expect_eq((r.status, r.body), (204, b""), "DELETE of an ended job")
    expect_problem(get(path), 404)
    expect_problem(request("DELETE", path), 404)
    r = request("DELETE", f"/v1/jobs?metadata.smoke={RUN}")
    doc = expect_json(r, 202)
    expect(doc.get("id", "").startswith("d_"), f"deletion: {doc}")
    expect_eq(r.headers.get("Location"), f"/v1/deletions/{doc['id']}", "Location")
    expect_eq(expect_json(get(f"/v1/deletions/{doc['id']}"), 200)["id"], doc["id"], "deletion read back")


@case("a 1.5 MiB body is refused by the app with 413 (max_body, 1 MiB here), "
      "webhooks' larger limit notwithstanding")
def _():
    big = b'{"adapter":"null","model":"a/b","input":{"p":"' + b"x" * (3 << 19) + b'"}}'
    r = post("/v1/jobs", big, headers={"Content-Type": "application/json"})
    doc = expect_problem(r, 413)
    expect(str(1 << 20) in doc.get("detail", ""), f"the 413 is not the app's (max_body 1M): {doc}")


@case("a body over the web server's 2 MiB cap is refused with a 413 problem")
def _():
    big = b'{"adapter":"null","model":"a/b","input":{"p":"' + b"x" * (3 << 20) + b'"}}'
    r = request_raw("POST", "/v1/jobs", big,
                    headers={"Content-Type": "application/json", "Content-Length": str(len(big))})
    doc = expect_problem(r, 413)
    expect_eq(doc.get("type"), "urn:darkroom:problem:body_too_large", "problem type")


@case("a POST without body or Content-Length (curl -X POST) reaches the app: "
      "cancel 202, again 409, retry 202")
def _():
    job = expect_json(post("/v1/jobs", job_body(model="acme/bare")), 202)
    done = expect_json(bare_post(f"/v1/jobs/{job['id']}/cancel"), 202)
    expect_eq(done.get("id"), job["id"], "id of the canceled job")
    # Canceled at once while queued; once the worker has submitted it,
    # when the provider was told.
    wait_until(lambda: expect_json(get(f"/v1/jobs/{job['id']}"), 200)["status"] == "canceled",
               timeout=30, what="the job canceled")
    expect_problem(bare_post(f"/v1/jobs/{job['id']}/cancel"), 409)
    again = expect_json(bare_post(f"/v1/jobs/{job['id']}/retry"), 202)
    expect_eq(again.get("status"), "queued", "status after retry")
    # A create without a body gets the app's own refusal, not the server's.
    doc = expect_problem(bare_post("/v1/jobs"), (400, 415))
    expect(doc.get("type") != "urn:darkroom:problem:length_required",
           f"the server refused the bare POST itself: {doc}")


@case("an upload of 3 MiB (over the 2 MiB cap of other paths) reaches the app: 201; "
      "it is served to the API key, never under /media/files/")
def _():
    data = noisy_png(32, 32) + os.urandom(3 << 20)
    r = request_raw("POST", "/v1/files", data,
                    headers={"Content-Type": "image/png", "Content-Length": str(len(data))})
    f = expect_json(r, 201)
    expect_eq(f["sha256"], hashlib.sha256(data).hexdigest(), "sha256")
    expect_problem(get(f"/media/files/{f['id']}", key=None), (403, 404))
    body = get(f"/v1/files/{f['id']}/content")
    expect_eq(body.status, 200, "content with the API key")
    expect(body.body == data, "the bytes, whole")
    marker = "5ec7e7" + secrets.token_hex(8)
    expect_problem(get(f"/v1/files/{f['id']}/content?exp=9999999999&sig={marker}", key=None), 403)
    if LOG_DIR:
        def access_logs():
            text = ""
            for path in glob.glob(os.path.join(LOG_DIR, "*access*.log")):
                with open(path, errors="replace") as fh:
                    text += fh.read()
            return text

        # (a web server may hold its log lines for a second or so)
        wait_until(lambda: f"/v1/files/{f['id']}/content" in access_logs(), timeout=10,
                   what="the access log line of the request")
        expect(marker not in access_logs(), "the access logs keep no signature of a file URL")
    expect_eq(request("DELETE", f"/v1/files/{f['id']}").status, 204, "delete")


@case("an upload without an API key: 401 (where the server streams uploads, before the body is sent)")
def _():
    import socket
    from urllib.parse import urlsplit
    u = urlsplit(os.environ["DARKROOM_URL"])
    total = 60 << 20
    s = socket.create_connection((u.hostname, u.port), timeout=10)
    try:
        s.sendall(("POST /v1/files HTTP/1.1\r\nHost: %s\r\nContent-Type: image/png\r\n"
                   "Content-Length: %d\r\nConnection: close\r\n\r\n" % (u.netloc, total)).encode())
        s.sendall(noisy_png(8, 8) + b"\0" * (1 << 20))
        if os.environ.get("DARKROOM_SMOKE_UPLOAD_STREAMS") == "1":
            s.settimeout(5)
            head = s.recv(4096)
            expect(head.startswith(b"HTTP/1.1 401"),
                   f"a 401 after 1 MiB of 60: {head[:80]!r}")
        else:
            s.settimeout(30)
            sent = 1 << 20
            chunk = b"\0" * (1 << 20)
            try:
                while sent < total:
                    s.sendall(chunk)
                    sent += len(chunk)
                head = s.recv(4096)
            except (ConnectionResetError, BrokenPipeError):
                head = b"HTTP/1.1 401 (the server closed early)"
            expect(head.startswith(b"HTTP/1.1 401"), f"401 without a key: {head[:80]!r}")
    finally:
        s.close()


@case("a body under the limit passes whole (300 KiB): 202")
def _():
    # The bulk is not in "prompt", whose indexed column is smaller.
    expect_json(post("/v1/jobs", job_body(input={"prompt": "x", "data": "y" * (300 << 10)})), 202)


@case("signed webhook for an unknown prediction: 200 unknown; tampered: 401")
def _():
    expect(SECRET.startswith("whsec_"), "DARKROOM_REPLICATE_SECRET is not set")
    body = prediction("smoke" + RUN + "0" * 18)
    expect_eq(expect_json(hook(body, sign(body)), 200).get("status"), "unknown",
              "status of a delivery for an unknown prediction")
    h = sign(body)
    tampered = body.replace(b"succeeded", b"failed\x20\x20\x20")
    expect_problem(hook(tampered, h), 401)


@case("a signed 3 MB webhook (a 1024x1024 PNG as a data: URI) reaches the app: "
      "200 unknown")
def _():
    image = noisy_png(1024, 1024)
    body = data_prediction("smokebig" + RUN + "0" * 15, image)
    expect(2 << 20 < len(body) < WEBHOOK_LIMIT, f"webhook of {len(body)} bytes")
    r = hook(body, sign(body))
    expect_eq(expect_json(r, 200).get("status"), "unknown",
              f"status of a {len(body)}-byte delivery for an unknown prediction")


def db_value(sql):
    """One value from the smoke database (DARKROOM_SMOKE_DB is
    SOCKET:NAME:PASSWORD), as text."""
    sock, name, password = DB.split(":", 2)
    out = subprocess.run(["mariadb", "--no-defaults", f"--socket={sock}", f"-u{name}",
                          f"-p{password}", name, "-N", "-B", "-e", sql],
                         check=True, capture_output=True, text=True, timeout=30).stdout
    return out.strip()


@case("Cog and Replicate send 1024x1024 and 4000x3000 PNGs inside their webhooks "
      "(data: URIs of 2.7 and 31 MB): every job succeeds, its rows stay small")
def _():
    expect(DB, "DARKROOM_SMOKE_DB is not set")
    sizes = [(1024, 1024), (4000, 3000)]
    jobs = []
    for w, h in sizes:
        jobs.append(("cog", w, h, expect_json(post("/v1/jobs", {
            "adapter": "cog", "model": "local/model",
            "input": {"prompt": "x", "fake_width": w, "fake_height": h}}), 202)["id"]))
        jobs.append(("replicate", w, h, expect_json(post("/v1/jobs", {
            "adapter": "replicate", "model": "acme/photo",
            "input": {"prompt": "x", "fake_output": "data", "fake_noise": True,
                      "fake_width": w, "fake_height": h, "fake_seed": f"smoke{w}",
                      "fake_duration": 0.3}}), 202)["id"]))

    def ended():
        docs = [expect_json(get(f"/v1/jobs/{jid}"), 200) for _, _, _, jid in jobs]
        return docs if all(d["status"] in ("succeeded", "failed", "canceled") for d in docs) else None
    docs = wait_until(ended, timeout=150, interval=0.5, what="the four jobs ended")
    for (adapter, w, h, jid), doc in zip(jobs, docs):
        what = f"{adapter} {w}x{h} job {jid}"
        expect_eq(doc["status"], "succeeded", f"{what} (error {doc.get('error')})")
        out = doc["outputs"][0]
        expect_eq((out.get("width"), out.get("height")), (w, h), f"{what}: stored size")
        expect(out.get("bytes", 0) > (1 << 20), f"{what}: {out.get('bytes')} bytes stored")
        expect(out.get("source_url") is None, f"{what}: source_url {str(out.get('source_url'))[:80]}")
        # Rows: the prediction and the output's source hold references,
        # never the megabytes of base64; the files left MariaDB.
        pred = int(db_value(f"SELECT COALESCE(LENGTH(prediction), 0) FROM jobs WHERE id = '{jid}'"))
        expect(pred < 65536, f"{what}: jobs.prediction holds {pred} bytes")
        src = int(db_value(f"SELECT MAX(LENGTH(source)) FROM outputs WHERE job_id = '{jid}'"))
        expect(src < 1024, f"{what}: outputs.source holds {src} bytes")
        left = int(db_value(f"SELECT COUNT(*) FROM webhook_blobs WHERE job_id = '{jid}'"))
        expect_eq(left, 0, f"{what}: rows of webhook_blobs left")


@case("a webhook over max_webhook_body gets the app's 413 problem, logged and counted")
def _():
    before_metric = deliveries(scrape(), "too_large")
    before_log = refusals("too_large") if LOG_DIR else 0
    # Valid JSON, signed: only its size is wrong.
    body = data_prediction("smokehuge" + RUN + "0" * 14, os.urandom((WEBHOOK_LIMIT + (1 << 20)) * 3 // 4))
    expect(WEBHOOK_LIMIT < len(body) < (65 << 20), f"webhook of {len(body)} bytes")
    r = request_raw("POST", "/v1/hooks/replicate", body,
                    headers=dict(sign(body), **{"Content-Length": str(len(body))}), key=None)
    doc = expect_problem(r, 413)
    expect_eq(doc.get("type"), "urn:darkroom:problem:body_too_large", "problem type")
    # The app's document names its own limit; the server's does not.
    expect(str(WEBHOOK_LIMIT) in doc.get("detail", ""),
           f"the 413 is not the app's (limit {WEBHOOK_LIMIT}): {doc}")
    wait_until(lambda: deliveries(scrape(), "too_large") == before_metric + 1,
               timeout=10, what="darkroom_webhook_deliveries_total{result=too_large} + 1")
    if LOG_DIR:
        wait_until(lambda: refusals("too_large") == before_log + 1, timeout=10,
                   what="one event=webhook.refused reason=too_large line more")


@case("refused deliveries are logged and counted: signed but not JSON (400, "
      "unparsable), tampered (401, bad_signature)")
def _():
    m0 = scrape()
    logs0 = (refusals("unparsable"), refusals("bad_signature")) if LOG_DIR else None
    garbage = b'{"id": "smokebad' + RUN.encode() + b'", "status": '
    doc = expect_problem(hook(garbage, sign(garbage)), 400)
    expect_eq(doc.get("type"), "urn:darkroom:problem:bad_delivery", "problem type")
    body = prediction("smoketamp" + RUN + "0" * 14)
    expect_problem(hook(body + b" ", sign(body)), 401)
    wait_until(lambda: (lambda m: deliveries(m, "unparsable") == deliveries(m0, "unparsable") + 1
                        and deliveries(m, "bad_signature") == deliveries(m0, "bad_signature") + 1)(scrape()),
               timeout=10, what="unparsable and bad_signature deliveries + 1 each")
    if LOG_DIR:
        wait_until(lambda: (refusals("unparsable"), refusals("bad_signature"))
                   == (logs0[0] + 1, logs0[1] + 1), timeout=10,
                   what="one event=webhook.refused line more for each reason")


def batch_of(pad_bytes):
    return json.dumps({"defaults": job_body(), "items": [
        {"key": "a", "input": {"pad": "x" * pad_bytes}}, {"key": "b"}]}).encode()


@case("POST /v1/batches: a batch of several MB reaches the app (202); one over the "
      "app's max_batch_body gets the app's 413 problem; one far over, the server's")
def _():
    # 3.5 MB: five inputs of 700 kB (a job's input holds at most 1 MiB).
    keys = ["a", "b", "c", "d", "e"]
    body = json.dumps({"defaults": job_body(), "items": [
        {"key": k, "input": {"pad": k * (700 << 10)}} for k in keys]}).encode()
    expect(len(body) > 3 << 20, f"batch of {len(body)} bytes")
    r = request("POST", "/v1/batches", body=body, headers={"Content-Type": "application/json"},
                timeout=120)
    b = expect_json(r, 202)
    expect_eq([j["key"] for j in b["jobs"]], keys, "the batch's jobs")
    # Canceled at once while queued; once the worker has submitted a job,
    # when the provider was told.
    expect_json(post(f"/v1/batches/{b['id']}/cancel"), 202)
    wait_until(lambda: expect_json(get(f"/v1/batches/{b['id']}"), 200)["status"] == "completed",
               timeout=30, what="the batch canceled")
    body = batch_of(BATCH_LIMIT + 1024)
    expect(BATCH_LIMIT < len(body) < (17 << 20), f"batch of {len(body)} bytes")
    doc = expect_problem(request("POST", "/v1/batches", body=body,
                                 headers={"Content-Type": "application/json"}, timeout=120), 413)
    expect_eq(doc.get("type"), "urn:darkroom:problem:body_too_large", "problem type")
    expect(str(BATCH_LIMIT) in doc.get("detail", ""),
           f"the 413 is not the app's (limit {BATCH_LIMIT}): {doc}")
    body = batch_of(18 << 20)
    r = request_raw("POST", "/v1/batches", body,
                    headers={"Content-Type": "application/json", "Content-Length": str(len(body))},
                    timeout=120)
    expect_problem(r, 413)


@case("Idempotency-Key: the same request again answers 200 with the same job")
def _():
    key = f"smoke-{RUN}"
    body = job_body(model="acme/idem")
    first = expect_json(post("/v1/jobs", body, headers={"Idempotency-Key": key}), 202)
    second = expect_json(post("/v1/jobs", body, headers={"Idempotency-Key": key}), 200)
    expect_eq(second.get("id"), first.get("id"), "id of the replayed job")


@case("/media/ serves the stored file with Cache-Control and nosniff")
def _():
    path = os.environ.get("DARKROOM_SMOKE_MEDIA", "")
    expect(path.startswith("/media/"), "DARKROOM_SMOKE_MEDIA is not set")
    r = get(path, key=None)
    expect_status(r, 200, path)
    expect_eq(r.body, os.environ.get("DARKROOM_SMOKE_MEDIA_BODY", "").encode(), "media bytes")
    cc = r.headers.get("Cache-Control") or ""
    expect("immutable" in cc and "max-age=31536000" in cc, f"Cache-Control: {cc!r}")
    expect_eq((r.headers.get("X-Content-Type-Options") or "").lower(), "nosniff",
              "X-Content-Type-Options")
    expect_eq(r.content_type, "image/png", "Content-Type of a .png")
    etag = r.headers.get("ETag")
    expect(etag, "no ETag on a stored file")
    r = get(path, key=None, headers={"If-None-Match": etag})
    expect_status(r, 304, "conditional GET with the ETag")
    cc = r.headers.get("Cache-Control") or ""
    expect("immutable" in cc and "max-age=31536000" in cc, f"Cache-Control of a 304: {cc!r}")


@case("a missing /media/ file (404) and a /media/ directory (403 or 404) are "
      "problems without the one-year Cache-Control")
def _():
    r = get(f"/media/ab/missing-{RUN}.png", key=None)
    no_immutable(r, "a 404 under /media/")
    expect_problem(r, 404)
    r = get("/media/ab/", key=None)
    no_immutable(r, f"a {r.status} under /media/")
    expect_problem(r, (403, 404))


run()
