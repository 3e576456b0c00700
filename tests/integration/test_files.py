#!/usr/bin/env python3
"""tests/integration/test_files.py — uploaded input files end to end:
lighttpd + darkroom.fcgi + MariaDB, with `darkroom worker` and the fake
Replicate where a job uses one.

The cases: an upload (201, its SHA-256 and type from the bytes, stored
under the private files/ prefix that /media/ does not serve); a declared
type the bytes contradict (422) and bytes of no accepted type (415), with
nothing stored; a job whose input holds {"$file": id}: the fake Replicate
fetches the URL it is given and reads the same bytes, the job succeeds
and its shown input keeps the reference; an unknown file in a job or a
batch item (422 naming the field); the signed content URL with a bad
signature or past its expiry (403); delete while a running job uses the
file (409) and once it has ended (204); a body over [limits] max_upload
(413, no row, no object); list, show and delete through the CLI; expiry
by `darkroom prune` and by the worker.
"""

import hashlib
import json
import os
import random
import subprocess
import sys
import time
import urllib.parse
import urllib.request

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
from harness import (case, expect, expect_eq, expect_json, expect_problem, get, noisy_png,  # noqa: E402
                     post, request, request_raw, run, sql, wait_until)

from engine_lib import BIN, FINAL, Worker, creates_by_job, fake, fake_reset, wait_status  # noqa: E402

MEDIA = os.environ["DARKROOM_MEDIA"]
PNG = noisy_png(96, 64)
# A minimal JPEG header is enough for the type check (sniff.c reads the
# magic bytes), a ZIP's local file header likewise.
JPEG = b"\xff\xd8\xff\xe0\x00\x10JFIF\x00\x01\x01\x00\x00\x01\x00\x01\x00\x00" + os.urandom(4000)
ZIP = b"PK\x03\x04\x14\x00\x00\x00\x00\x00" + os.urandom(2000)
STATE = {}


def upload(data, ctype="image/png", query="", **kw):
    return request("POST", "/v1/files" + query, data, headers={"Content-Type": ctype}, **kw)


def count_files():
    return int(sql("SELECT COUNT(*) FROM files")[0][0])


def stored_objects():
    d = os.path.join(MEDIA, "files")
    return sorted(os.listdir(d)) if os.path.isdir(d) else []


def cli(*args):
    return subprocess.run([BIN, *args], capture_output=True, text=True, timeout=60,
                          stdin=subprocess.DEVNULL)


@case("upload: 201 with id, type and SHA-256 from the bytes, stored privately")
def upload_png():
    r = upload(PNG, query="?filename=photo%20one.png")
    f = expect_json(r, 201)
    expect(f["id"].startswith("f_") and len(f["id"]) == 28, f"file id {f['id']!r}")
    expect_eq(f["content_type"], "image/png", "content_type")
    expect_eq(f["bytes"], len(PNG), "bytes")
    expect_eq(f["sha256"], hashlib.sha256(PNG).hexdigest(), "sha256")
    expect_eq(f["filename"], "photo one.png", "filename")
    expect_eq(f["key"], "files/" + f["id"], "key")
    expect(f["url"].endswith(f"/v1/files/{f['id']}/content"), f"url {f['url']!r}")
    expect(f["created_at"] and f["expires_at"], "times")
    expect_eq(r.headers.get("Location"), f"/v1/files/{f['id']}", "Location")
    with open(os.path.join(MEDIA, "files", f["id"]), "rb") as fh:
        expect(fh.read() == PNG, "the stored object holds the bytes")
    again = expect_json(get(f"/v1/files/{f['id']}"), 200)
    expect_eq({k: again[k] for k in f}, f, "GET /v1/files/{id}")
    # private: not under the public media prefix, and not without the key
    expect_problem(get(f"/media/files/{f['id']}", key=None), (403, 404))
    expect_problem(get(f"/v1/files/{f['id']}/content", key=None), 401)
    body = get(f"/v1/files/{f['id']}/content")
    expect_eq(body.status, 200, "content with the API key")
    expect(body.body == PNG, "content bytes")
    expect_eq(body.headers.get("Content-Type"), "image/png", "content type")
    STATE["png"] = f
    zipped = expect_json(upload(ZIP, ctype="application/zip"), 201)
    expect_eq(zipped["content_type"], "application/zip", "a zip is taken")
    jpeg = expect_json(upload(JPEG, ctype="application/octet-stream"), 201)
    expect_eq(jpeg["content_type"], "image/jpeg", "octet-stream: the type of the bytes")
    expect_eq(jpeg["filename"], None, "no filename")
    STATE["jpeg"] = jpeg


@case("a declared type the bytes contradict is 422; bytes of no accepted type 415; no key 401; nothing stored")
def type_checks():
    before, objs = count_files(), stored_objects()
    d = expect_problem(upload(PNG, ctype="image/jpeg"), 422)
    expect("image/png" in d["detail"] and "image/jpeg" in d["detail"], d["detail"])
    expect_eq(d["type"], "urn:darkroom:problem:content_type_mismatch", "type")
    d = expect_problem(upload(b"<html><script>alert(1)</script></html>", ctype="image/png"), 415)
    expect_eq(d["type"], "urn:darkroom:problem:unsupported_media_type", "type")
    expect_problem(upload(b"", ctype="image/png"), 415)
    expect_problem(upload(PNG, query="?filename=" + "x" * 300), 422, "filename")
    expect_problem(upload(PNG, query="?other=1"), 422, "other")
    expect_problem(upload(PNG, key=None), 401)
    expect_problem(upload(PNG, key="drk_wrong_0123456789abcdef"), 401)
    expect_eq(count_files(), before, "no row")
    expect_eq(stored_objects(), objs, "no object")


@case("an unknown or malformed $file in a job or a batch item: 422 naming the field, nothing written")
def unknown_file():
    jobs = int(sql("SELECT COUNT(*) FROM jobs")[0][0])
    missing = "f_01JD00000000000000000000AA"
    d = expect_problem(post("/v1/jobs", {"adapter": "replicate", "model": "acme/flux",
                                         "input": {"image": {"$file": missing}}}), 422, missing)
    expect_eq(d.get("field"), "input.image", "field")
    d = expect_problem(post("/v1/jobs", {"adapter": "replicate", "model": "acme/flux",
                                         "input": {"images": ["x", {"$file": 7}]}}), 422)
    expect_eq(d.get("field"), "input.images[1]", "field of a malformed reference")
    good = {"model": "acme/flux", "input": {"image": {"$file": STATE["png"]["id"]}}}
    d = expect_problem(post("/v1/batches", {"defaults": {"adapter": "replicate"},
                                            "items": [good, {"model": "acme/flux",
                                                             "input": {"image": {"$file": missing}}}]}),
                       422, "items[1].input.image")
    expect_eq(d.get("field"), "items[1].input.image", "field of a batch item")
    expect_eq(int(sql("SELECT COUNT(*) FROM jobs")[0][0]), jobs, "no job written")


def fetches_for(pid):
    return [f for f in fake("/_state")["input_fetches"] if f["prediction"] == pid]


@case("a job with {\"$file\": id}: the provider fetches the bytes, the job succeeds, its input keeps $file")
def job_uses_file():
    fake_reset(fetch_inputs=True)
    f = STATE["png"]
    w = Worker(1, name="files-worker")
    try:
        r = expect_json(post("/v1/jobs", {"adapter": "replicate", "model": "acme/flux",
                                          "renditions": [],
                                          "input": {"prompt": "p", "image": {"$file": f["id"]},
                                                    "more": [{"$file": STATE["jpeg"]["id"]}]}}), 202)
        jid = r["id"]
        wait_status([jid], FINAL, timeout=40)
        j = expect_json(get(f"/v1/jobs/{jid}"), 200)
        expect_eq(j["status"], "succeeded", f"job status (error {j.get('error')})")
        expect_eq(j["input"]["image"], {"$file": f["id"]}, "the shown input keeps the reference")
        expect_eq(j["input"]["more"], [{"$file": STATE["jpeg"]["id"]}], "nested reference kept")
        reads = fetches_for(j["prediction"]["id"])
        expect_eq(len(reads), 2, f"the fake read both inputs: {reads}")
        by_path = {x["path"]: x for x in reads}
        one = by_path.get(f"/v1/files/{f['id']}/content")
        expect(one is not None, f"the URL is darkroom's signed content URL: {list(by_path)}")
        expect_eq(one["status"], 200, "fetch status")
        expect_eq(one["sha256"], f["sha256"], "the provider read the same bytes")
        two = by_path.get(f"/v1/files/{STATE['jpeg']['id']}/content")
        expect_eq(two and two["sha256"], STATE["jpeg"]["sha256"], "the nested one too")
        q = urllib.parse.parse_qs(urllib.parse.urlsplit(one["url"]).query)
        expect("exp" in q and "sig" in q, f"signed: {one['url']}")
        expect(int(q["exp"][0]) > time.time() + 3000, "valid for [files] url_ttl (1 h)")
        stored = sql(f"SELECT input FROM jobs WHERE id = '{jid}'")[0][0]
        expect("sig=" not in stored and "$file" in stored, "the stored input has no signed URL")
        STATE["signed"] = one["url"]
        STATE["linked"] = sql(f"SELECT file_id FROM job_files WHERE job_id = '{jid}' ORDER BY file_id")
    finally:
        w.stop()
        fake_reset()
    expect_eq(sorted(r[0] for r in STATE["linked"]), sorted([f["id"], STATE["jpeg"]["id"]]),
              "the job's links")


@case("a workflow: a $file in a step's input and one reached by $ref from the workflow's input both "
      "reach the provider as URLs; an unknown one in a step is 422 naming it")
def workflow_files():
    f, g = STATE["png"], STATE["jpeg"]
    bad = expect_problem(post("/v1/jobs", {
        "input": {"t": "x"},
        "steps": [{"name": "a", "adapter": "replicate", "model": "acme/flux",
                   "input": {"image": {"$file": "f_01KBX2Q7M3V9T6R5Y4W8N2P1C0"}}}]}), 422)
    expect_eq(bad.get("field"), "steps[0].input.image", f"the field: {bad}")
    fake_reset(fetch_inputs=True)
    w = Worker(1, name="files-wf-worker")
    try:
        wf = expect_json(post("/v1/jobs", {
            "input": {"photo": {"$file": g["id"]}},
            "steps": [{"name": "a", "adapter": "replicate", "model": "acme/flux", "renditions": [],
                       "input": {"image": {"$file": f["id"]}, "other": {"$ref": "input.photo"}}}]}), 202)
        wait_status([wf["id"]], FINAL, timeout=40)
        j = expect_json(get(f"/v1/jobs/{wf['id']}"), 200)
        expect_eq(j["status"], "succeeded", f"workflow status (error {j.get('error')})")
        step = j["steps"][0]
        expect_eq(step["input"]["other"], {"$ref": "input.photo"}, "the step's input as written")
        reads = {x["path"]: x["sha256"] for x in fetches_for(step["prediction"]["id"])}
        expect_eq(reads.get(f"/v1/files/{f['id']}/content"), f["sha256"], "the step's own file")
        expect_eq(reads.get(f"/v1/files/{g['id']}/content"), g["sha256"], "the workflow input's file")
        linked = sorted(r[0] for r in sql("SELECT file_id FROM job_files WHERE job_id IN"
                                          f" ('{wf['id']}', '{step['id']}')"))
        expect_eq(linked, sorted([f["id"], g["id"]]), "both files linked to the jobs using them")
    finally:
        w.stop()
        fake_reset()


@case("a lost create answer with a $file input: the reconcile finds the prediction (the same signed "
      "URL), nothing is created twice; the stored prediction keeps no signed URL")
def lost_create_with_file():
    fake_reset(create_then_fail=1, create_then_fail_mode=500, fault_budget=1, drop_webhooks=1)
    f = STATE["png"]
    w = Worker(1, name="files-lost-create-worker")
    try:
        jid = expect_json(post("/v1/jobs", {"adapter": "replicate", "model": "acme/flux", "renditions": [],
                                            "input": {"prompt": "lost", "image": {"$file": f["id"]}}}),
                          202)["id"]
        j = wait_status([jid], FINAL, timeout=60)[0]
        expect_eq(j["status"], "succeeded", f"job status (error {j.get('error')})")
        expect_eq(fake("/_state")["calls"].get("create_then_fail"), 1, "the lost answer")
        expect_eq(creates_by_job().get(jid, 0), 1, "created once at the provider")
        log = w.log_text()
        expect("replicate.reconciled" in log or "reconcile" in log, "the job was reconciled")
        stored = sql(f"SELECT prediction FROM jobs WHERE id = '{jid}'")[0][0] or ""
        expect("sig=" not in stored and "X-Amz-Signature" not in stored,
               "jobs.prediction keeps no signed URL")
    finally:
        w.stop()
        fake_reset()


@case("an Idempotency-Key replay answers with its job (200) after the file it named was deleted")
def replay_after_delete():
    data = noisy_png(16, 16)
    f = expect_json(upload(data), 201)
    body = {"adapter": "null", "model": "acme/flux", "renditions": [],
            "input": {"prompt": "p", "image": {"$file": f["id"]}}}
    hdr = {"Idempotency-Key": "replay-" + f["id"]}
    j = expect_json(request("POST", "/v1/jobs", body, headers=hdr), 202)
    expect_json(post(f"/v1/jobs/{j['id']}/cancel"), 202)
    expect_eq(request("DELETE", f"/v1/files/{f['id']}").status, 204, "the file deleted once the job ended")
    again = expect_json(request("POST", "/v1/jobs", body, headers=hdr), 200)
    expect_eq(again["id"], j["id"], "the same job")
    expect_problem(post("/v1/jobs", body), 422, "input.image")


@case("the fake provider proves its reads: an input URL it cannot read fails the prediction")
def unreadable_input():
    f = expect_json(upload(PNG), 201)
    os.unlink(os.path.join(MEDIA, "files", f["id"]))  # the row stays, the bytes are gone
    fake_reset(fetch_inputs=True)
    w = Worker(1, name="files-unreadable-worker")
    try:
        jid = expect_json(post("/v1/jobs", {"adapter": "replicate", "model": "acme/flux", "renditions": [],
                                            "input": {"image": {"$file": f["id"]}}}), 202)["id"]
        wait_status([jid], FINAL, timeout=40)
        j = expect_json(get(f"/v1/jobs/{jid}"), 200)
        expect_eq(j["status"], "failed", "job status")
        expect(f"could not read input /v1/files/{f['id']}/content: HTTP 404" in json.dumps(j["error"]),
               f"the provider's error: {j['error']}")
    finally:
        w.stop()
        fake_reset()
    expect_eq(request("DELETE", f"/v1/files/{f['id']}").status, 204, "delete")


@case("s3 sink: the provider gets a presigned URL of the private object and reads the bytes")
def s3_presigned():
    port, bucket = os.environ["DARKROOM_S3_PORT"], os.environ["DARKROOM_S3_TEST_BUCKET"]
    fid = "f_01JD" + "".join(random.choice("0123456789ABCDEFGHJKMNPQRSTVWXYZ") for _ in range(22))
    data = noisy_png(40, 30)
    # The object as an upload through the s3 sink leaves it (s3rver takes
    # unsigned writes), and its row.
    req = urllib.request.Request(f"http://127.0.0.1:{port}/{bucket}/files/{fid}", data=data,
                                 method="PUT", headers={"Content-Type": "image/png"})
    with urllib.request.urlopen(req, timeout=10) as r:
        expect_eq(r.status, 200, "PUT to s3rver")
    sql(f"INSERT INTO files (id, content_type, bytes, sha256, storage_key, created_at)"
        f" VALUES ('{fid}', 'image/png', {len(data)}, '{hashlib.sha256(data).hexdigest()}',"
        f" 'files/{fid}', NOW(6))")
    fake_reset(fetch_inputs=True)
    w = Worker(1, name="files-s3-worker", env={"DARKROOM_SINK": "s3"})
    try:
        jid = expect_json(post("/v1/jobs", {"adapter": "replicate", "model": "acme/flux", "renditions": [],
                                            "input": {"image": {"$file": fid}}}), 202)["id"]
        wait_status([jid], FINAL, timeout=40)
        j = expect_json(get(f"/v1/jobs/{jid}"), 200)
        expect_eq(j["status"], "succeeded", f"job status (error {j.get('error')})")
        reads = fetches_for(j["prediction"]["id"])
        expect_eq(len(reads), 1, f"one input read: {reads}")
        u = urllib.parse.urlsplit(reads[0]["url"])
        expect_eq((u.netloc, u.path), (f"127.0.0.1:{port}", f"/{bucket}/files/{fid}"), "the S3 object's URL")
        q = urllib.parse.parse_qs(u.query)
        expect_eq(q.get("X-Amz-Algorithm"), ["AWS4-HMAC-SHA256"], "SigV4 query signing")
        expect_eq(q.get("X-Amz-Expires"), ["3600"], "valid for [files] url_ttl")
        expect("X-Amz-Signature" in q and "X-Amz-Credential" in q, f"signed: {u.query}")
        expect_eq(reads[0]["sha256"], hashlib.sha256(data).hexdigest(), "the provider read the bytes")
    finally:
        w.stop()
        fake_reset()


@case("the signed content URL: 200 as given, 403 with a bad signature or past its expiry")
def signed_url():
    u = urllib.parse.urlsplit(STATE["signed"])
    path = u.path
    q = urllib.parse.parse_qs(u.query)
    exp, sig = q["exp"][0], q["sig"][0]
    ok = get(f"{path}?exp={exp}&sig={sig}", key=None)
    expect_eq(ok.status, 200, "as given, without the API key")
    expect(ok.body == PNG, "the bytes")
    bad = sig[:-1] + ("0" if sig[-1] != "0" else "1")
    expect_problem(get(f"{path}?exp={exp}&sig={bad}", key=None), 403)
    expect_problem(get(f"{path}?exp={int(exp) + 1}&sig={sig}", key=None), 403)
    expect_problem(get(f"{path}?exp=1000&sig={sig}", key=None), 403)
    expect_problem(get(f"{path}?sig={sig}", key=None), 403)
    other = STATE["jpeg"]["id"]
    expect_problem(get(f"/v1/files/{other}/content?exp={exp}&sig={sig}", key=None), 403)


@case("delete while a running job uses the file: 409; once the job has ended: 204, row and object gone")
def delete_in_use():
    f = expect_json(upload(PNG), 201)
    r = expect_json(post("/v1/jobs", {"adapter": "replicate", "model": "acme/flux", "renditions": [],
                                      "input": {"image": {"$file": f["id"]}}}), 202)
    d = expect_problem(request("DELETE", f"/v1/files/{f['id']}"), 409)
    expect(r["id"] in d["detail"], f"names the job: {d['detail']}")
    expect_eq(expect_json(get(f"/v1/files/{f['id']}"), 200)["jobs_running"], 1, "jobs_running")
    expect_json(post(f"/v1/jobs/{r['id']}/cancel"), 202)
    gone = request("DELETE", f"/v1/files/{f['id']}")
    expect_eq(gone.status, 204, f"delete after the job ended: {gone!r}")
    expect_problem(get(f"/v1/files/{f['id']}"), 404)
    expect_problem(request("DELETE", f"/v1/files/{f['id']}"), 404)
    expect(f["id"] not in stored_objects(), "the object is gone")
    expect_eq(sql(f"SELECT COUNT(*) FROM job_files WHERE file_id = '{f['id']}'"), [["0"]], "links gone")


@case("a body over [limits] max_upload (100 MiB): 413 from the app, no row, no object")
def too_large():
    before, objs = count_files(), stored_objects()
    size = 100 * 1024 * 1024 + 1
    body = PNG + bytes(size - len(PNG))
    r = request_raw("POST", "/v1/files", body,
                    headers={"Content-Type": "image/png", "Content-Length": str(size)}, timeout=120)
    d = expect_problem(r, 413)
    expect_eq(d["type"], "urn:darkroom:problem:body_too_large", "the app's own 413")
    expect("104857600" in d["detail"], d["detail"])
    expect_eq(count_files(), before, "no row")
    expect_eq(stored_objects(), objs, "no object")


@case("GET /v1/files: newest first, paged; darkroom files list|show|delete")
def list_and_cli():
    a = expect_json(upload(PNG), 201)
    b = expect_json(upload(JPEG, ctype="image/jpeg", query="?filename=b.jpg"), 201)
    page = expect_json(get("/v1/files?limit=1"), 200)
    expect_eq([x["id"] for x in page["data"]], [b["id"]], "newest first")
    expect_eq(page["next_cursor"], b["id"], "next_cursor")
    page2 = expect_json(get(f"/v1/files?limit=1&cursor={page['next_cursor']}"), 200)
    expect_eq([x["id"] for x in page2["data"]], [a["id"]], "the next page")
    expect_problem(get("/v1/files?limit=0"), 422, "limit")
    expect_problem(get("/v1/files?cursor=j_nope"), 422, "cursor")
    r = cli("files", "list", "--json", "--limit", "2")
    expect_eq(r.returncode, 0, f"files list --json: {r.stderr}")
    expect_eq([x["id"] for x in json.loads(r.stdout)["data"]], [b["id"], a["id"]], "CLI list")
    r = cli("files", "list")
    expect_eq(r.returncode, 0, r.stderr)
    expect("RUNNING JOBS" in r.stdout and b["id"] in r.stdout and "b.jpg" in r.stdout, r.stdout)
    r = cli("files", "show", a["id"], "--json")
    expect_eq(r.returncode, 0, r.stderr)
    expect_eq(json.loads(r.stdout)["sha256"], a["sha256"], "CLI show --json")
    r = cli("files", "show", a["id"])
    expect(r.returncode == 0 and a["sha256"] in r.stdout and "files/" + a["id"] in r.stdout, r.stdout)
    r = cli("files", "delete", a["id"])
    expect_eq((r.returncode, r.stdout.strip()), (0, f"deleted {a['id']}"), f"CLI delete: {r.stderr}")
    expect_problem(get(f"/v1/files/{a['id']}"), 404)
    expect(a["id"] not in stored_objects(), "the object is gone")
    r = cli("files", "delete", a["id"])
    expect(r.returncode == 1 and a["id"] in r.stderr and r.stdout == "", f"again: {r.stderr!r}")
    r = cli("files", "show", "j_notafile")
    expect(r.returncode == 1 and "not a file id" in r.stderr, r.stderr)


@case("expiry: `darkroom prune` and the worker delete files past [files] ttl that no running job uses")
def expiry():
    old = expect_json(upload(PNG), 201)
    busy = expect_json(upload(PNG), 201)
    r = expect_json(post("/v1/jobs", {"adapter": "replicate", "model": "acme/flux", "renditions": [],
                                      "input": {"image": {"$file": busy["id"]}}}), 202)
    sql(f"UPDATE files SET expires_at = NOW(6) - INTERVAL 1 SECOND WHERE id IN ('{old['id']}', '{busy['id']}')")
    p = cli("prune", "--dry-run")
    expect_eq(p.returncode, 0, f"prune --dry-run: {p.stderr}")
    expect(", 1 files (past [files] ttl)," in p.stdout, p.stdout)
    expect_json(get(f"/v1/files/{old['id']}"), 200)
    p = cli("prune")
    expect_eq(p.returncode, 0, f"prune: {p.stderr}")
    expect(", 1 files (past [files] ttl)," in p.stdout, p.stdout)
    expect("files (past [files] ttl)" in p.stdout, p.stdout)
    expect_problem(get(f"/v1/files/{old['id']}"), 404)
    expect(old["id"] not in stored_objects(), "the expired object is gone")
    expect_json(get(f"/v1/files/{busy['id']}"), 200)
    expect_json(post(f"/v1/jobs/{r['id']}/cancel"), 202)
    expect_eq(cli("prune").returncode, 0, "prune again")
    expect_problem(get(f"/v1/files/{busy['id']}"), 404)
    # The worker's first process does the same at its start, then every minute.
    late = expect_json(upload(PNG), 201)
    sql(f"UPDATE files SET expires_at = NOW(6) - INTERVAL 1 SECOND WHERE id = '{late['id']}'")
    w = Worker(1, name="files-expiry-worker")
    try:
        wait_until(lambda: get(f"/v1/files/{late['id']}").status == 404, timeout=20,
                   what="the expired file deleted by the worker")
    finally:
        w.stop()
    expect(late["id"] not in stored_objects(), "its object is gone")
    expect(f"event=file.expired file={late['id']}" in w.log_text(), "the worker's log line")


if __name__ == "__main__":
    run()
