#!/usr/bin/env python3
"""tests/integration/test_delete.py — deleting jobs (CONTRACT "DELETE
/v1/jobs/{id}"), end to end: lighttpd + darkroom.fcgi + `darkroom worker`
processes + MariaDB + the fake Replicate + the fs sink (served under
/media/) and s3rver.

The cases: DELETE /v1/jobs/{id} (204 with no body, then 404; 409
job_not_ended and nothing touched for a job that has not ended; 404 for an
unknown or malformed id; 401 without a key); two jobs that stored the same
bytes, with the fs and the s3 sink: deleting one keeps the shared original
and renditions and removes the job's rows, deleting the other has the
worker remove the objects; a job storing the same bytes (held by the fake
between the pin of its first output and its index transaction) while the
other is deleted keeps them; s3rver down during a delete: the removal fails,
is recorded on the object's row and done once s3rver is back; DELETE
/v1/jobs?metadata.K=V (202, followed at GET /v1/deletions/{id} to done, a
job still running canceled and deleted too, other users' jobs and jobs made
after the request untouched, requested_by the key's scope) and its 422s;
`darkroom jobs delete` (ids, an unknown id, --metadata, usage, --help, run
with an empty environment); [retention] failed with `darkroom prune
--dry-run` and `darkroom prune` (exactly the old failed jobs, one audit
record, older audit records kept), and a worker with [retention] jobs
deleting old ended jobs by itself.
"""

import hashlib
import json
import os
import re
import subprocess
import sys
import time
import urllib.error
import urllib.request

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
from harness import (API_KEY, Fail, case, expect, expect_eq, expect_json, expect_problem,  # noqa: E402
                     get, post, request, run, sql, wait_until)
from engine_lib import S3_BUCKET, S3rver, Worker, fake  # noqa: E402

BIN = os.environ["DARKROOM_BIN"]
CONF = os.environ["DARKROOM_CONF"]
WORK = os.environ.get("DARKROOM_TEST_DIR", "/tmp")
BASE_URL = os.environ["DARKROOM_URL"].rstrip("/")
S3_URL = f"http://127.0.0.1:{os.environ['DARKROOM_S3_PORT']}/{S3_BUCKET}"
RUN = os.urandom(4).hex()
# Selector values of this run only: the database is shared with the other
# suites (the README's session makes jobs of user 42, for one).
U42, U7, U9 = f"42-{RUN}", f"7-{RUN}", f"9-{RUN}"
FINAL = ("succeeded", "failed", "canceled")
# The scope an API key's deletions are recorded under: 16 hex digits of
# its SHA-256 (as idempotency keys have it), never the key.
SCOPE = hashlib.sha256(API_KEY.encode()).hexdigest()[:16]
DELETION_ID = re.compile(r"^d_[0-9A-HJKMNP-TV-Z]{26}$")
STATE = {}


# ------------------------------------------------------------ helpers


def fake_reset():
    fake("/_reset", {})
    fake("/_control", {"start_delay": 0.1, "duration": 0.3})


def delete(path, key=API_KEY):
    return request("DELETE", path, key=key)


def create(inp=None, renditions=None, metadata=None, adapter="replicate", headers=None):
    body = {"adapter": adapter, "model": "acme/delete", "input": {"prompt": "a lighthouse", **(inp or {})},
            "renditions": renditions or []}
    if metadata:
        body["metadata"] = metadata
    return expect_json(post("/v1/jobs", body, headers=headers), 202)["id"]


def ended_null_job(metadata=None, headers=None):
    """A job of the null adapter canceled while queued (no worker runs):
    ended at once, nothing stored."""
    jid = create(metadata=metadata, adapter="null", headers=headers)
    expect_json(post(f"/v1/jobs/{jid}/cancel"), 202)
    expect_eq(job(jid)["status"], "canceled", f"{jid} canceled while queued")
    return jid


def job(jid):
    return expect_json(get(f"/v1/jobs/{jid}"), 200)


def wait_status(ids, statuses=FINAL, timeout=30):
    pending = set(ids)

    def check():
        for jid in list(pending):
            if job(jid)["status"] in statuses:
                pending.discard(jid)
        return not pending

    wait_until(check, timeout=timeout, interval=0.25, what=f"jobs {sorted(pending)} reaching {statuses}")
    return [job(j) for j in ids]


def succeeded(ids, timeout=30):
    jobs = wait_status(ids, timeout=timeout)
    for j in jobs:
        expect_eq(j["status"], "succeeded", f"{j['id']}: status (error {j.get('error')})")
    return jobs


def keys_of(j):
    """Every storage key a job object names: originals and renditions."""
    keys = []
    for o in j["outputs"]:
        keys.append(o["key"])
        keys += [r["key"] for r in o["renditions"]]
    return keys


def fetch(url, method="GET"):
    req = urllib.request.Request(url, method=method)
    try:
        with urllib.request.urlopen(req, timeout=30) as r:
            return r.status, r.read()
    except urllib.error.HTTPError as e:
        return e.code, e.read() or b""


def fs_read(key):
    return fetch(f"{BASE_URL}/media/{key}")


def s3_reader(base=S3_URL):
    return lambda key: fetch(f"{base}/{key}")


def expect_stored(j, read, what):
    """Every object of job J reads back from the sink; the originals' bytes
    have their SHA-256."""
    for o in j["outputs"]:
        status, body = read(o["key"])
        expect_eq(status, 200, f"{what}: GET of the original {o['key']}")
        expect_eq(hashlib.sha256(body).hexdigest(), o["sha256"], f"{what}: SHA-256 of {o['key']}")
        for r in o["renditions"]:
            status, body = read(r["key"])
            expect(status == 200 and len(body) == r["bytes"],
                   f"{what}: GET of the rendition {r['key']}: {status}, {len(body)} bytes")


def wait_removed(keys, read, what, timeout=20):
    """Wait until no key reads back from the sink and no `objects` row
    is left for any."""
    last = {}

    def gone():
        last["in the sink"] = [k for k in keys if read(k)[0] != 404]
        last["rows"] = objects(keys)
        return not last["in the sink"] and not last["rows"]
    try:
        wait_until(gone, timeout=timeout, interval=0.3,
                   what=f"{what}: objects gone from the sink and from `objects`")
    except Fail as e:
        raise Fail(f"{e}; left: {last}")


def wait_objects(keys, pred, what, timeout=20):
    """Wait until PRED holds for objects(KEYS), every key having a row;
    return them."""
    last = {}

    def check():
        last.clear()
        last.update(objects(keys))
        return len(last) == len(keys) and pred(last)
    try:
        wait_until(check, timeout=timeout, interval=0.3, what=what)
    except Fail as e:
        raise Fail(f"{e}; rows: {last}")
    return dict(last)


def quote(values):
    return ", ".join("'" + v.replace("'", "''") + "'" for v in values)


def objects(keys):
    """{key: {refs, pins, state, attempts, last_error, later}} of the
    `objects` rows of KEYS; later: 1 when removal is put off by an hour
    or more."""
    if not keys:
        return {}
    rows = sql("SELECT storage_key, refs, pins, state, attempts, COALESCE(last_error, 'NULL'),"
               " COALESCE(remove_after > NOW(6) + INTERVAL 1 HOUR, 0)"
               f" FROM objects WHERE storage_key IN ({quote(keys)})")
    return {r[0]: {"refs": int(r[1]), "pins": int(r[2]), "state": r[3], "attempts": int(r[4]),
                   "last_error": None if r[5] == "NULL" else r[5], "later": r[6] == "1"} for r in rows}


def rows_of(jid, output_ids=()):
    """How many rows of each table still name job JID (renditions: of the
    outputs OUTPUT_IDS)."""
    counts = {}
    for table, col in (("jobs", "id"), ("outputs", "job_id"), ("job_events", "job_id"),
                       ("job_metadata", "job_id"), ("idempotency_keys", "job_id")):
        counts[table] = int(sql(f"SELECT COUNT(*) FROM {table} WHERE {col} = '{jid}'")[0][0])
    counts["renditions"] = int(sql("SELECT COUNT(*) FROM renditions WHERE output_id IN"
                                   f" ({quote(output_ids) or 'NULL'})")[0][0]) if output_ids else 0
    return counts


def output_ids(jid):
    return [r[0] for r in sql(f"SELECT id FROM outputs WHERE job_id = '{jid}'")]


def expect_rows_gone(jid, outs):
    expect_eq(rows_of(jid, outs), {"jobs": 0, "outputs": 0, "job_events": 0, "job_metadata": 0,
                                   "idempotency_keys": 0, "renditions": 0}, f"rows left of {jid}")


def conf_copy(name, extra="", replace=None):
    """The test config as WORK/NAME.conf, REPLACE's lines swapped and
    EXTRA appended."""
    with open(CONF) as f:
        text = f.read()
    for old, new in (replace or {}).items():
        expect(old in text, f"conf_copy: {old!r} is not in the test config")
        text = text.replace(old, new)
    path = os.path.join(WORK, f"{name}.conf")
    with open(path, "w") as f:
        f.write(text + "\n" + extra)
    return path


def stop(w):
    """Stop worker W; nothing may outlive it, and no process crashed."""
    leftover = w.stop()
    expect(not leftover, f"{w.name}: worker processes outlived the supervisor")
    log = w.log_text()
    for bad in ("Sanitizer", "runtime error:", "event=worker.died"):
        expect(bad not in log, f"{w.name}.log shows {bad!r}")


def cli(*args, conf=CONF, env=None, timeout=60):
    p = subprocess.run([BIN, "--config", conf, *args], capture_output=True, text=True, timeout=timeout,
                       stdin=subprocess.DEVNULL, env=env)
    return p.returncode, p.stdout, p.stderr


def unknown_job_id():
    return "j_01" + "".join("0123456789ABCDEFGHJKMNPQRSTVWXYZ"[b % 32] for b in os.urandom(24))


def deletion_row(did):
    rows = sql("SELECT kind, state, requested_by, jobs_deleted, jobs_waiting, objects_released,"
               f" finished_at IS NOT NULL FROM deletions WHERE id = '{did}'")
    return rows[0] if rows else None


def shared_objects(sink):
    """Two jobs storing the same bytes in SINK ('fs' or 's3'), and a third
    storing others: deleting the first keeps the shared objects (removing
    the third's proves the worker's removal pass ran), deleting the second
    removes them."""
    env = {"DARKROOM_SINK": "s3"} if sink == "s3" else {}
    read = s3_reader() if sink == "s3" else fs_read
    fake_reset()
    w = Worker(2, f"delete-shared-{sink}", env)
    try:
        seed = f"shared-{sink}-{RUN}"
        inp = {"fake_seed": seed}
        a = create(inp, ["thumb", "small"], {"user_id": "1", "case": "shared"},
                   headers={"Idempotency-Key": f"del-{sink}-{RUN}-a"})
        b = create(inp, ["thumb", "small"], {"user_id": "1"})
        u = create({"fake_seed": f"{seed}-other"}, ["thumb"])
        ja, jb, ju = succeeded([a, b, u])
        oa, ob = ja["outputs"][0], jb["outputs"][0]
        expect_eq((ob["key"], ob["sha256"]), (oa["key"], oa["sha256"]), "key and SHA-256 of the second job")
        shared = keys_of(ja)
        expect_eq(sorted(keys_of(jb)), sorted(shared), "keys of the second job")
        expect_eq(len(shared), 3, "keys of one original and two renditions")
        expect_stored(ja, read, "shared")
        expect_stored(ju, read, "other")
        expect_eq({k: v["refs"] for k, v in objects(shared).items()}, {k: 2 for k in shared}, "refs of the shared keys")
        outs_a, outs_u = output_ids(a), output_ids(u)
        before = rows_of(a, outs_a)
        expect(before.pop("job_events") >= 3, "events of the first job")
        expect_eq(before, {"jobs": 1, "outputs": 1, "job_metadata": 2, "idempotency_keys": 1, "renditions": 2},
                  "rows of the first job before")

        for jid in (a, u):
            r = delete(f"/v1/jobs/{jid}")
            expect_eq((r.status, r.body), (204, b""), f"DELETE of {jid}")
        # The third job's objects going shows a removal pass ran since.
        wait_removed(keys_of(ju), read, "the other job's objects")
        expect_rows_gone(a, outs_a)
        expect_rows_gone(u, outs_u)
        expect_problem(get(f"/v1/jobs/{a}"), 404)
        expect_stored(ja, read, "shared, after the first job was deleted")
        left = objects(shared)
        expect_eq({k: (v["refs"], v["state"]) for k, v in left.items()}, {k: (1, "stored") for k in shared},
                  "refs and state of the shared keys")
        expect_eq(job(b)["outputs"], jb["outputs"], "the second job's outputs")

        r = delete(f"/v1/jobs/{b}")
        expect_eq(r.status, 204, f"DELETE of the second job: {r!r}")
        wait_removed(shared, read, "the shared objects")
        expect_problem(get(f"/v1/jobs/{b}"), 404)
    finally:
        stop(w)


# ================================================================ cases


@case("DELETE /v1/jobs/{id}: 204 and no body for an ended job, then GET 404 and DELETE 404;"
      " its Idempotency-Key makes a new job")
def _():
    idem = {"Idempotency-Key": f"del-idem-{RUN}"}
    jid = ended_null_job({"user_id": "3"}, headers=idem)
    r = delete(f"/v1/jobs/{jid}")
    expect_eq(r.status, 204, f"DELETE: {r!r}")
    expect_eq(r.body, b"", "body of the 204")
    expect_eq(r.headers.get("Content-Type"), None, "Content-Type of the 204")
    expect_problem(get(f"/v1/jobs/{jid}"), 404)
    expect_problem(delete(f"/v1/jobs/{jid}"), 404)
    expect_rows_gone(jid, [])
    # The key named the deleted job: the same request makes a new one.
    again = expect_json(post("/v1/jobs", {"adapter": "null", "model": "acme/delete",
                                          "input": {"prompt": "a lighthouse"}, "renditions": [],
                                          "metadata": {"user_id": "3"}}, headers=idem), 202)["id"]
    expect(again != jid, "the repeated request answered the deleted job")
    expect_json(post(f"/v1/jobs/{again}/cancel"), 202)
    expect_eq(delete(f"/v1/jobs/{again}").status, 204, "DELETE of the new job")
    row = sql("SELECT kind, state, requested_by, jobs_deleted FROM deletions"
              f" WHERE selector = '{{\"id\":\"{jid}\"}}'")
    expect_eq(row, [["job", "done", SCOPE, "1"]], "the audit record (kind, state, requested_by, jobs)")


@case("DELETE of a queued job: 409 job_not_ended, the job untouched; unknown and malformed ids 404;"
      " no key 401")
def _():
    jid = create(metadata={"user_id": "3"}, adapter="null")
    before = rows_of(jid)
    doc = expect_problem(delete(f"/v1/jobs/{jid}"), 409)
    expect_eq(doc["type"], "urn:darkroom:problem:job_not_ended", "problem type")
    expect_eq(job(jid)["status"], "queued", "status after the 409")
    expect_eq(rows_of(jid), before, "rows after the 409")
    expect_problem(delete(f"/v1/jobs/{jid}", key=None), 401)
    expect_problem(delete(f"/v1/jobs/{jid}", key="drk_wrong_" + "0" * 30), 401)
    expect_eq(job(jid)["status"], "queued", "status after the 401s")
    expect_problem(delete(f"/v1/jobs/{unknown_job_id()}"), 404)
    for bad in ("j_nope", "j_" + "0" * 27, "x" + jid[1:], jid.lower(), "%20"):
        expect_problem(delete(f"/v1/jobs/{bad}"), 404)
    expect_json(post(f"/v1/jobs/{jid}/cancel"), 202)
    expect_eq(delete(f"/v1/jobs/{jid}").status, 204, "DELETE once canceled")


@case("fs sink: two jobs with the same bytes; deleting one keeps the shared objects and drops its rows,"
      " deleting the other removes them")
def _():
    shared_objects("fs")


@case("s3 sink: two jobs with the same bytes; deleting one keeps the shared objects and drops its rows,"
      " deleting the other removes them")
def _():
    shared_objects("s3")


@case("a job storing the same bytes while the other job is deleted: its pin keeps them, nothing lost;"
      " deleting it removes them")
def _():
    fake_reset()
    # A download held for seconds: the lease and the low-speed limit
    # outlast it, so the job stays with the worker holding it.
    conf = conf_copy("delete-pin", replace={"lease = 4s": "lease = 60s",
                                            "download_low_speed_time = 2s": "download_low_speed_time = 60s",
                                            "download_timeout = 20s": "download_timeout = 60s"})
    gate = f"pin-{RUN}"
    seed = f"pin-{RUN}"
    holder = Worker(1, "delete-pin-holder", {"DARKROOM_CONF": conf})
    remover = None
    try:
        a = create({"fake_seed": seed}, ["thumb"])
        ja = succeeded([a])[0]
        keys = keys_of(ja)
        # B's first output has A's bytes; its second waits at the gate,
        # after B pinned the first one's keys (outputs are stored in order).
        b = create({"fake_seed": seed, "fake_output": "list", "fake_hold": gate, "fake_hold_index": 1},
                   ["thumb"])
        wait_until(lambda: [h for h in fake("/_state")["held"] if h["gate"] == gate], timeout=20,
                   what="B's second output held at the fake")
        expect_eq(job(b)["status"], "persisting", "B while held")
        expect_eq({k: (v["refs"], v["pins"]) for k, v in objects(keys).items()}, {k: (1, 1) for k in keys},
                  "refs and pins of A's keys while B stores them")

        r = delete(f"/v1/jobs/{a}")
        expect_eq(r.status, 204, f"DELETE of A: {r!r}")
        # A removal pass (a second worker: the first one is busy with B)
        # finds the objects pinned and puts them off until the pin ends.
        remover = Worker(1, "delete-pin-remover", {"DARKROOM_CONF": conf})
        wait_objects(keys, lambda o: all(v["refs"] == 0 and v["later"] for v in o.values()),
                     "A's reference gone and the removal put off until B's pin ends", timeout=15)
        time.sleep(2)  # more passes may come: none may take them
        expect_stored(ja, fs_read, "A's objects while B is held")

        expect_eq(fake("/_release", {"gate": gate})["released"], 1, "downloads released")
        jb = succeeded([b])[0]
        expect_eq(jb["outputs"][0]["key"], ja["outputs"][0]["key"], "B's first output key")
        expect_eq(sorted(keys_of(jb)[:2]), sorted(keys), "B's first output and its rendition")
        expect_stored(jb, fs_read, "B")
        expect_eq({k: (v["refs"], v["pins"], v["state"]) for k, v in objects(keys).items()},
                  {k: (1, 0, "stored") for k in keys}, "refs, pins and state of the shared keys after B")

        expect_eq(delete(f"/v1/jobs/{b}").status, 204, "DELETE of B")
        wait_removed(keys_of(jb), fs_read, "B's objects")
    finally:
        try:
            fake("/_release", {"gate": gate})
        finally:
            try:
                stop(holder)
            finally:
                if remover:
                    stop(remover)


@case("s3rver down during a delete: 204, rows gone, the removal fails and is recorded on the object;"
      " once s3rver is back the retry removes it")
def _():
    fake_reset()
    s3 = S3rver("s3rver-delete")
    s3.start()
    base = f"http://127.0.0.1:{s3.port}"
    read = s3_reader(f"{base}/{S3_BUCKET}")
    w = Worker(1, "delete-s3down", {"DARKROOM_SINK": "s3", "DARKROOM_S3_ENDPOINT": base})
    try:
        jid = create({"fake_seed": f"s3down-{RUN}"}, ["thumb"])
        j = succeeded([jid])[0]
        keys = keys_of(j)
        expect_stored(j, read, "before")
        outs = output_ids(jid)
        s3.stop()
        r = delete(f"/v1/jobs/{jid}")
        expect_eq(r.status, 204, f"DELETE with s3rver down: {r!r}")
        expect_rows_gone(jid, outs)
        expect_problem(get(f"/v1/jobs/{jid}"), 404)
        rows = wait_objects(keys, lambda o: all(v["attempts"] >= 1 and v["last_error"] for v in o.values()),
                            "failed removals recorded")
        expect_eq({v["state"] for v in rows.values()}, {"removing"}, "state of the kept rows")
        s3.start()
        expect_stored(j, read, "after s3rver came back, before the retry")
        # Stands for the backoff passing (DR_OBJECT_RETRY_BASE, 60 s):
        # the retry is due now.
        sql(f"UPDATE objects SET remove_after = NOW(6) WHERE storage_key IN ({quote(keys)})")
        wait_removed(keys, read, "objects after s3rver came back")
    finally:
        try:
            stop(w)
        finally:
            s3.stop()


@case("DELETE /v1/jobs?metadata.user_id=42: 202 and a deletion followed to done; a running job canceled"
      " and deleted; user 7's jobs and a job made after the request untouched")
def _():
    fake_reset()
    w = Worker(2, "delete-selector")
    try:
        mine = [create({"fake_seed": f"sel-{RUN}-{i}"}, ["thumb"] if i == 0 else [], {"user_id": U42})
                for i in range(3)]
        mine.append(create({"fake_outcome": "failed"}, [], {"user_id": U42, "plan": "free"}))
        others = [create({"fake_seed": f"sel7-{RUN}-{i}"}, ["thumb"], {"user_id": U7}) for i in range(2)]
        running = create({"fake_duration": 60}, [], {"user_id": U42})
        ended = wait_status(mine + others)
        expect_eq([j["status"] for j in ended], ["succeeded"] * 3 + ["failed"] + ["succeeded"] * 2,
                  "statuses of the ended jobs")
        jr = wait_status([running], ("processing",), timeout=20)[0]
        keys = [k for j in ended[:4] for k in keys_of(j)]
        expect_eq(len(keys), 4, "keys of user 42's jobs (three originals, one rendition)")
        doc = expect_problem(delete(f"/v1/jobs/{running}"), 409)
        expect_eq(doc["type"], "urn:darkroom:problem:job_not_ended", "problem type for a processing job")

        r = delete(f"/v1/jobs?metadata.user_id={U42}")
        d = expect_json(r, 202)
        expect(DELETION_ID.match(d.get("id", "")), f"deletion id {d.get('id')!r}")
        expect(d.get("state") in ("queued", "running", "done"), f"state {d.get('state')!r}")
        expect(isinstance(d.get("counts"), dict) and "jobs_deleted" in d["counts"], f"counts in {d}")
        expect_eq(r.headers.get("Location"), f"/v1/deletions/{d['id']}", "Location")
        later = create({"fake_seed": f"sel-later-{RUN}"}, [], {"user_id": U42})

        def done():
            got = expect_json(get(f"/v1/deletions/{d['id']}"), 200)
            return got if got["state"] == "done" else None
        got = wait_until(done, timeout=30, interval=0.5, what="the deletion done")
        expect_eq(got["counts"], {"jobs_deleted": 5, "jobs_waiting": 0, "objects_released": 4}, "counts")
        expect_eq((got["id"], got["kind"], got["selector"]), (d["id"], "selector", {"metadata.user_id": U42}),
                  "id, kind and selector")
        expect_eq(got["requested_by"], SCOPE, "requested_by: the key's scope")
        expect(got["finished_at"] and got["created_at"], f"created_at and finished_at: {got}")
        for jid in mine + [running]:
            expect_problem(get(f"/v1/jobs/{jid}"), 404)
            expect_rows_gone(jid, [])
        pred = fake("/_state")["predictions"][jr["prediction"]["id"]]
        expect_eq(pred["status"], "canceled", "the running job's prediction at the provider")
        for j in ended[4:]:
            expect_eq(job(j["id"]), j, f"user 7's job {j['id']}")
        expect_eq(job(later)["metadata"], {"user_id": U42}, "the job made after the request")
        wait_removed(keys, fs_read, "user 42's objects")
        expect_stored(ended[4], fs_read, "user 7's objects")
        STATE["selector"] = d["id"]
        wait_status([later])
    finally:
        stop(w)


@case("DELETE /v1/jobs: without a filter or with another parameter 422; unknown deletion 404")
def _():
    recorded = sql("SELECT COUNT(*) FROM deletions")
    doc = expect_problem(delete("/v1/jobs"), 422, field="metadata")
    expect_eq(doc.get("field"), "metadata", "field")
    for q in ("status=failed", "metadata.user_id=42&status=failed", "limit=5", "metadata.=1",
              "metadata.user%20id=1", "metadata.a=1&metadata.A=2"):
        expect_problem(delete(f"/v1/jobs?{q}"), 422)
    expect_problem(delete("/v1/jobs?metadata.user_id=42", key=None), 401)
    for did in ("d_unknown", "d_" + unknown_job_id()[2:], "x", "d_" + "0" * 27):
        expect_problem(get(f"/v1/deletions/{did}"), 404)
    expect_problem(get(f"/v1/deletions/{STATE.get('selector', 'd_x')}", key=None), 401)
    expect_problem(delete(f"/v1/deletions/{STATE.get('selector', 'd_x')}"), 405)
    expect_eq(sql("SELECT COUNT(*) FROM deletions"), recorded, "deletions recorded for the refused requests")


@case("darkroom jobs delete ID...: a line per job; an unknown or running id exit 1, one line each,"
      " the others deleted; --metadata prints the counts; usage exit 2; --help")
def _():
    a, b, c, d = (ended_null_job({"user_id": "5"}) for _ in range(4))
    rc, out, err = cli("jobs", "delete", a, b)
    expect_eq((rc, err), (0, ""), "exit status and stderr")
    expect_eq(out, f"{a} deleted (0 objects released)\n{b} deleted (0 objects released)\n", "stdout")
    for jid in (a, b):
        expect_problem(get(f"/v1/jobs/{jid}"), 404)

    unknown = unknown_job_id()
    rc, out, err = cli("jobs", "delete", c, unknown, d)
    expect_eq(rc, 1, f"exit status with an unknown id ({err!r})")
    expect_eq(len(err.splitlines()), 1, f"stderr lines: {err!r}")
    expect(unknown in err, f"stderr names the unknown id: {err!r}")
    expect_eq(out, f"{c} deleted (0 objects released)\n{d} deleted (0 objects released)\n", "stdout")
    for jid in (c, d):
        expect_problem(get(f"/v1/jobs/{jid}"), 404)

    queued = create(metadata={"user_id": "5"}, adapter="null")
    rc, out, err = cli("jobs", "delete", queued)
    expect_eq((rc, out), (1, ""), "exit status and stdout for a queued job")
    expect(len(err.splitlines()) == 1 and "not ended" in err, f"stderr: {err!r}")
    expect_eq(job(queued)["status"], "queued", "the queued job")
    expect_json(post(f"/v1/jobs/{queued}/cancel"), 202)

    sel = [ended_null_job({"user_id": U9}) for _ in range(2)]
    keep = ended_null_job({"user_id": f"10-{RUN}"})
    rc, out, err = cli("jobs", "delete", "--metadata", f"user_id={U9}")
    expect_eq(rc, 0, f"exit status of --metadata ({err!r})")
    m = re.fullmatch(r"(d_[0-9A-Z]{26}) done: 2 jobs deleted, 0 objects released\n", out)
    expect(m, f"stdout of --metadata: {out!r}")
    expect_eq(deletion_row(m.group(1)), ["selector", "done", "cli", "2", "0", "0", "1"], "its audit record")
    for jid in sel:
        expect_problem(get(f"/v1/jobs/{jid}"), 404)
    expect_eq(job(keep)["status"], "canceled", "user 10's job")

    # As from a shell of its own: nothing but PATH and the config file.
    env = {"PATH": "/usr/bin:/bin", "HOME": WORK, "LANG": "C"}
    rc, out, err = cli("jobs", "delete", keep, queued, env=env)
    expect_eq((rc, err), (0, ""), "exit status and stderr with an empty environment")
    expect_eq(out, f"{keep} deleted (0 objects released)\n{queued} deleted (0 objects released)\n", "stdout")

    for args in ([], ["--metadata", "user_id=9", a], ["--metadata", "novalue"], ["--status", "failed", a],
                 ["--metadata", "user id=9"]):
        rc, out, err = cli("jobs", "delete", *args)
        expect_eq((rc, out), (2, ""), f"exit status and stdout of jobs delete {args}")
        expect_eq(len(err.splitlines()), 1, f"stderr lines of jobs delete {args}: {err!r}")
    rc, out, err = cli("jobs", "delete", "--help")
    expect_eq(rc, 0, "exit status of --help")
    expect(out.startswith("usage: darkroom jobs delete"), f"--help: {out[:200]!r}")
    rc, out, _ = cli("jobs", "--help")
    expect(re.search(r"^\s+delete\b", out, re.M), f"jobs --help lists delete: {out!r}")


@case("[retention] failed = 1h: prune --dry-run counts and changes nothing; prune deletes exactly the old"
      " failed jobs, leaves a retention record and keeps older records")
def _():
    fake_reset()
    w = Worker(2, "delete-retention")
    try:
        failed = [create({"fake_outcome": "failed"}, [], {"suite": f"ret-{RUN}"}) for _ in range(3)]
        ok = [create({"fake_seed": f"ret-{RUN}-{i}"}, ["thumb"], {"suite": f"ret-{RUN}"}) for i in range(2)]
        jobs = wait_status(failed + ok)
    finally:
        stop(w)
    expect_eq([j["status"] for j in jobs], ["failed"] * 3 + ["succeeded"] * 2, "statuses")
    old = failed[:2] + ok
    sql(f"UPDATE jobs SET completed_at = completed_at - INTERVAL 2 HOUR WHERE id IN ({quote(old)})")
    # Earlier audit records, made old: retention never removes them.
    records = [r[0] for r in sql("SELECT id FROM deletions")]
    expect(len(records) >= 3, f"audit records of the earlier cases: {records}")
    sql("UPDATE deletions SET created_at = created_at - INTERVAL 400 DAY,"
        " updated_at = updated_at - INTERVAL 400 DAY, finished_at = finished_at - INTERVAL 400 DAY")
    expired = sorted(r[0] for r in sql("SELECT id FROM jobs WHERE status = 'failed'"
                                       " AND completed_at < NOW(6) - INTERVAL 1 HOUR"))
    expect(set(failed[:2]) <= set(expired), f"the old failed jobs among {expired}")
    total = int(sql("SELECT COUNT(*) FROM jobs")[0][0])

    conf = conf_copy("delete-retention", "[retention]\nfailed = 1h\n")
    rc, out, err = cli("prune", "--dry-run", conf=conf)
    expect_eq(rc, 0, f"exit status of --dry-run ({err!r})")
    expect(f", {len(expired)} jobs (ended before their [retention] setting), " in out
           and out.endswith("; nothing changed (dry run)\n"), f"--dry-run summary: {out!r}")
    expect_eq(int(sql("SELECT COUNT(*) FROM jobs")[0][0]), total, "jobs after --dry-run")

    rc, out, err = cli("prune", conf=conf)
    expect_eq(rc, 0, f"exit status of prune ({err!r})")
    expect(out.startswith("prune: ") and f", {len(expired)} jobs (ended before their [retention] setting), "
           in out, f"prune summary: {out!r}")
    expect_eq(int(sql("SELECT COUNT(*) FROM jobs")[0][0]), total - len(expired), "jobs after prune")
    expect_eq(sql(f"SELECT COUNT(*) FROM jobs WHERE id IN ({quote(expired)})"), [["0"]], "old failed jobs left")
    for j in jobs[2:]:
        expect_eq(job(j["id"])["status"], j["status"], f"{j['id']} after prune")
    rec = sql("SELECT requested_by, jobs_deleted, selector, state FROM deletions WHERE kind = 'retention'"
              f" AND id NOT IN ({quote(records)})")
    expect_eq(rec, [["cli", str(len(expired)), '{"succeeded":0,"failed":3600,"canceled":0}', "done"]],
              "the retention record")
    kept = [r[0] for r in sql("SELECT id FROM deletions")]
    expect(set(records) <= set(kept), f"audit records removed by prune: {set(records) - set(kept)}")
    STATE["retention_old_ok"] = (ok, jobs[3:])
    STATE["retention_recent"] = failed[2]


@case("a worker with [retention] jobs = 1h deletes the old ended jobs and their objects by itself")
def _():
    ok, jobs = STATE["retention_old_ok"]
    keys = [k for j in jobs for k in keys_of(j)]
    before = int(sql("SELECT COUNT(*) FROM deletions WHERE requested_by = 'retention'")[0][0])
    conf = conf_copy("delete-retention-worker", "[retention]\njobs = 1h\n")
    w = Worker(1, "delete-retention-worker", {"DARKROOM_CONF": conf})
    try:
        wait_until(lambda: all(get(f"/v1/jobs/{jid}").status == 404 for jid in ok), timeout=20,
                   what="the old succeeded jobs deleted by the worker")
        wait_removed(keys, fs_read, "their objects")
    finally:
        stop(w)
    expect_eq(job(STATE["retention_recent"])["status"], "failed", "the recent failed job")
    rec = sql("SELECT kind, state, jobs_deleted >= 2 FROM deletions WHERE requested_by = 'retention'"
              " ORDER BY created_at")
    expect_eq(len(rec), before + 1, f"retention records by the worker: {rec}")
    expect_eq(rec[-1], ["retention", "done", "1"], "the worker's record")


run()
