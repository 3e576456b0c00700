#!/usr/bin/env python3
"""tests/integration/test_api.py — the HTTP API of CONTRACT.md §2, driven
through lighttpd and darkroom.fcgi against a real MariaDB.

Each case is a request and the answer it must get. Jobs go to the `null`
adapter of the test config; no worker runs, so jobs stay `queued`. The
cases run in order: the database-down cases come last but one, and the
last checks that the FastCGI processes survived everything before.
"""

import calendar
import os
import re
import secrets
import signal
import socket
import subprocess
import sys
import time
import urllib.parse

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))

from harness import (  # noqa: E402
    API_KEY, Fail, callback_row, case, db_ctl, expect, expect_eq, expect_json, expect_problem,
    expect_status, get, post, request, run, settle_callback, sql, wait_until,
)

API_KEY2 = os.environ.get("DARKROOM_API_KEY2", "")
RUN = secrets.token_hex(4)  # keeps this run's models apart from other rows
JOB_ID = re.compile(r"^j_[0-9A-HJKMNP-TV-Z]{26}$")
TIMESTAMP = re.compile(r"^\d{4}-\d\d-\d\dT\d\d:\d\d:\d\d\.\d{3}Z$")
VERSION = "5c7d5dc6dd8bf75c1acaa8565735e7986bc5b66206b55cca93cb72c9bf15ccaa"
UNKNOWN_ID = "j_00000000000000000000000000"

# Shared between cases.
state = {}


def job_body(**fields):
    """A valid create body; FIELDS replace or add members (None removes)."""
    body = {"adapter": "null", "model": "acme/model", "input": {"prompt": "x"}}
    for name, value in fields.items():
        if value is None:
            body.pop(name, None)
        else:
            body[name] = value
    return body


def create(body=None, headers=None, status=202):
    """POST /v1/jobs and return the job object of a STATUS answer."""
    r = post("/v1/jobs", job_body() if body is None else body, headers=headers)
    return expect_json(r, status)


def invalid(body, field, **kw):
    """POST BODY and expect 422 naming FIELD."""
    r = post("/v1/jobs", body, **kw)
    expect_problem(r, 422, field=field)


def list_jobs(query):
    r = get("/v1/jobs?" + query)
    page = expect_json(r, 200)
    expect(isinstance(page, dict) and isinstance(page.get("data"), list),
           f"list answer lacks a data array: {page!r}"[:300])
    expect("next_cursor" in page, "list answer lacks next_cursor")
    return page


def parse_time(text):
    """Seconds since the epoch of an ISO 8601 UTC time with milliseconds."""
    expect(isinstance(text, str) and TIMESTAMP.match(text),
           f"not an ISO 8601 UTC time with milliseconds: {text!r}")
    return calendar.timegm(time.strptime(text[:19], "%Y-%m-%dT%H:%M:%S")) + int(text[20:23]) / 1000


def fcgi_pids():
    """Pids of the processes lighttpd spawned (the FastCGI app)."""
    parent = os.environ.get("DARKROOM_LIGHTTPD_PID")
    expect(parent, "DARKROOM_LIGHTTPD_PID is not set")
    pids = set()
    for entry in os.listdir("/proc"):
        if not entry.isdigit():
            continue
        try:
            with open(f"/proc/{entry}/stat") as f:
                stat = f.read()
        except OSError:
            continue
        fields = stat[stat.rindex(")") + 2:].split()
        if fields[1] == parent and fields[0] != "Z":
            pids.add(int(entry))
    return pids


def crash_lines():
    """Lines of lighttpd's error log saying a FastCGI process ended, and of
    the app's stderr showing a crash or a sanitizer report."""
    found = []
    for var, pattern in (("DARKROOM_LIGHTTPD_ERRLOG", r"child (exited|signaled|died)"),
                         ("DARKROOM_APP_LOG", r"Segmentation fault|Sanitizer|runtime error:|Assertion .* failed")):
        path = os.environ.get(var)
        expect(path, f"{var} is not set")
        if not os.path.exists(path):
            continue
        with open(path, errors="replace") as f:
            found += [line.strip() for line in f if re.search(pattern, line)]
    return found


# ---------------------------------------------------------------- cases


@case("FastCGI processes are running")
def _():
    pids = fcgi_pids()
    expect(pids, "lighttpd has no child processes")
    state["fcgi_pids"] = pids
    expect_eq(crash_lines(), [], "crash lines in lighttpd's error log")


@case("GET /healthz answers 200 {\"status\":\"ok\"} without a key")
def _():
    r = get("/healthz", key=None)
    doc = expect_json(r, 200)
    expect_eq(doc.get("status"), "ok", "status")


@case("401 without Authorization")
def _():
    expect_problem(get("/v1/jobs", key=None), 401)
    expect_problem(post("/v1/jobs", job_body(), key=None), 401)
    expect_problem(get(f"/v1/jobs/{UNKNOWN_ID}", key=None), 401)


@case("401 with a wrong key")
def _():
    expect_problem(get("/v1/jobs", key="wrong-" + RUN), 401)
    expect_problem(get("/v1/jobs", key=API_KEY[:-1]), 401)
    expect_problem(get("/v1/jobs", key=API_KEY + "x"), 401)
    expect_problem(get("/v1/jobs", key=""), 401)
    expect_problem(get("/v1/jobs", headers={"Authorization": f"Basic {API_KEY}"}, key=None), 401)
    expect_problem(post("/v1/jobs", job_body(), key="wrong-" + RUN), 401)


@case("401 on /v1/outputs without a key")
def _():
    expect_problem(get("/v1/outputs", key=None), 401)


@case("a second configured key works")
def _():
    expect(API_KEY2, "DARKROOM_API_KEY2 is not set")
    r = get("/v1/jobs?limit=1", key=API_KEY2)
    expect_json(r, 200)


@case("POST /v1/jobs answers 202 with the job object")
def _():
    before = time.time()
    body = job_body(model=f"acme/create-{RUN}", input={"prompt": "a lighthouse", "steps": 4},
                    metadata={"user_id": "42", "project": "covers"})
    job = create(body)
    expect(isinstance(job, dict), f"job is not an object: {job!r}")
    expect(JOB_ID.match(str(job.get("id"))), f"bad job id {job.get('id')!r}")
    expect_eq(job.get("status"), "queued", "status")
    expect_eq(job.get("adapter"), "null", "adapter")
    expect_eq(job.get("model"), body["model"], "model")
    expect_eq(job.get("input"), body["input"], "input")
    expect_eq(job.get("metadata"), body["metadata"], "metadata")
    expect(isinstance(job.get("progress"), (int, float)) and not isinstance(job.get("progress"), bool),
           f"progress is not a number: {job.get('progress')!r}")
    expect(0 <= job["progress"] <= 1, f"progress out of range: {job['progress']!r}")
    expect_eq(job.get("attempts"), 0, "attempts")
    expect("error" in job, "job has no error member")
    expect_eq(job["error"], None, "error")
    expect_eq(job.get("outputs"), [], "outputs")
    created = parse_time(job.get("created_at"))
    expect(before - 120 <= created <= time.time() + 120,
           f"created_at {job['created_at']} is far from now")
    state["job"] = job


@case("GET /v1/jobs/{id} returns the same job")
def _():
    job = state.get("job") or create()
    r = get(f"/v1/jobs/{job['id']}")
    got = expect_json(r, 200)
    expect_eq(got, job, "job read back")


@case("the defaults apply: adapter and metadata may be left out")
def _():
    job = create(job_body(adapter=None, model=f"acme/defaults-{RUN}"))
    expect_eq(job.get("adapter"), "null", "default adapter")
    expect(job.get("metadata") in ({}, None), f"metadata without one given: {job.get('metadata')!r}")


@case("model may be owner/name:version or a bare version id")
def _():
    for model in (f"acme/model:{VERSION}", VERSION, "acme-corp/flux_1.dev"):
        job = create(job_body(model=model))
        expect(JOB_ID.match(str(job.get("id"))), f"no job for model {model!r}")


@case("Content-Type application/json; charset=utf-8 is accepted")
def _():
    r = post("/v1/jobs", job_body(), headers={"Content-Type": "application/json; charset=utf-8"})
    expect_json(r, 202)


@case("404 for an unknown job")
def _():
    expect_problem(get(f"/v1/jobs/{UNKNOWN_ID}"), 404)
    expect_problem(get("/v1/jobs/nope"), 404)
    expect_problem(post(f"/v1/jobs/{UNKNOWN_ID}/cancel"), 404)
    expect_problem(post(f"/v1/jobs/{UNKNOWN_ID}/retry"), 404)


@case("list: 50 jobs paged by 7 come once each, newest first")
def _():
    model = f"acme/pages-{RUN}"
    created = []
    for i in range(50):
        job = create(job_body(model=model, metadata={"n": str(i)}))
        created.append(job["id"])
    state["page_model"] = model
    seen, cursor, pages = [], None, 0
    while True:
        query = f"limit=7&model={model}" + (f"&cursor={cursor}" if cursor else "")
        page = list_jobs(query)
        pages += 1
        expect(len(page["data"]) <= 7, f"page {pages} has {len(page['data'])} items for limit=7")
        expect(pages <= 9, "more than 9 pages for 50 jobs by 7")
        seen.extend(page["data"])
        cursor = page["next_cursor"]
        if cursor is None:
            break
        expect(isinstance(cursor, str) and cursor, f"bad next_cursor {cursor!r}")
        expect(len(page["data"]) == 7, f"page {pages} is short ({len(page['data'])}) but has a next_cursor")
    ids = [j["id"] for j in seen]
    expect_eq(len(ids), 50, "number of jobs listed")
    expect_eq(len(set(ids)), 50, "distinct jobs listed")
    expect_eq(set(ids), set(created), "listed ids")
    expect_eq(sorted({j["metadata"]["n"] for j in seen}, key=int), [str(i) for i in range(50)],
              "metadata values listed")
    expect_eq(ids, sorted(ids, reverse=True), "order (ids descending)")
    times = [parse_time(j["created_at"]) for j in seen]
    expect_eq(times, sorted(times, reverse=True), "order (created_at descending)")
    # Jobs created in different milliseconds must be listed newest first;
    # within one millisecond the id decides.
    made = {job_id: i for i, job_id in enumerate(created)}
    for a, b, ta, tb in zip(seen, seen[1:], times, times[1:]):
        expect(ta == tb or made[a["id"]] > made[b["id"]],
               f"job #{made[a['id']]} listed before the newer job #{made[b['id']]}")


@case("list: default limit is 20, limit=100 gives all 50")
def _():
    model = state.get("page_model")
    expect(model, "needs the paging case")
    page = list_jobs(f"model={model}")
    expect_eq(len(page["data"]), 20, "default page size")
    expect(page["next_cursor"], "no next_cursor after a full default page")
    page = list_jobs(f"model={model}&limit=100")
    expect_eq(len(page["data"]), 50, "items with limit=100")
    expect_eq(page["next_cursor"], None, "next_cursor of the last page")


@case("list: filters status=, model= and adapter= apply")
def _():
    model = f"acme/filters-{RUN}"
    jobs = [create(job_body(model=model)) for _ in range(3)]
    r = post(f"/v1/jobs/{jobs[0]['id']}/cancel")
    expect_status(r, 202, "cancel")
    queued = list_jobs(f"model={model}&status=queued")["data"]
    expect_eq(sorted(j["id"] for j in queued), sorted(j["id"] for j in jobs[1:]), "status=queued")
    canceled = list_jobs(f"model={model}&status=canceled")["data"]
    expect_eq([j["id"] for j in canceled], [jobs[0]["id"]], "status=canceled")
    everything = list_jobs(f"model={model}&adapter=null&limit=100")["data"]
    expect_eq(len(everything), 3, "adapter=null")
    expect(all(j["model"] == model for j in everything), "model= let other models through")
    other = list_jobs(f"model=acme/none-{RUN}")["data"]
    expect_eq(other, [], "model= with no jobs")
    for status in ("queued", "canceled"):
        for j in list_jobs(f"status={status}&limit=100")["data"]:
            expect_eq(j["status"], status, f"status filter {status}")


@case("list: limit=0, 101, -1 and abc answer 422 naming limit")
def _():
    for value in ("0", "101", "-1", "abc", "1.5"):
        expect_problem(get(f"/v1/jobs?limit={value}"), 422, field="limit")


@case("list: a bad cursor answers 422 naming cursor")
def _():
    for value in ("not-a-cursor", "AAAA", "%21%21", "Z" * 600, "j_00000000000000000000000000x"):
        expect_problem(get(f"/v1/jobs?cursor={value}"), 422, field="cursor")


def cancel_all(ids):
    """Cancel the queued jobs among IDS, so later test files do not find
    them waiting in the queue."""
    for job_id in ids:
        expect_status(post(f"/v1/jobs/{job_id}/cancel"), (202, 409), f"cancel {job_id}")


def ids_of(page):
    return sorted(j["id"] for j in page["data"])


def meta_query(filters):
    """metadata.K=V&... for FILTERS, a list of (key, value) pairs."""
    return "&".join(f"metadata.{urllib.parse.quote(k)}={urllib.parse.quote(v)}" for k, v in filters)


@case("list: metadata.KEY=VALUE filters jobs; several apply together (AND)")
def _():
    model = f"acme/meta-{RUN}"
    made = {}
    for name, md in (("u1a", {"user": "1", "project": "a"}), ("u1b", {"user": "1", "project": "b"}),
                     ("u2a", {"user": "2", "project": "a"}), ("none", {})):
        made[name] = create(job_body(model=model, metadata=dict(md, run=RUN)))["id"]
    state["meta_jobs"] = made

    def listed(filters, extra=""):
        return ids_of(list_jobs(meta_query([("run", RUN)] + filters) + "&limit=100" + extra))

    expect_eq(listed([]), sorted(made.values()), "metadata.run alone")
    expect_eq(listed([("user", "1")]), sorted([made["u1a"], made["u1b"]]), "user=1")
    expect_eq(listed([("user", "1"), ("project", "a")]), [made["u1a"]], "user=1 AND project=a")
    expect_eq(listed([("project", "a"), ("user", "2")]), [made["u2a"]], "project=a AND user=2")
    expect_eq(listed([("user", "2"), ("project", "b")]), [], "user=2 AND project=b")
    expect_eq(listed([("user", "3")]), [], "an unused value")
    expect_eq(listed([("nope", "1")]), [], "an unused key")
    # With the other filters.
    expect_eq(listed([("user", "1")], f"&model={model}&adapter=null&status=queued"),
              sorted([made["u1a"], made["u1b"]]), "with model, adapter and status")
    expect_eq(listed([("user", "1")], f"&model=acme/other-{RUN}"), [], "with another model")
    expect_status(post(f"/v1/jobs/{made['u1b']}/cancel"), 202, "cancel")
    expect_eq(listed([("user", "1")], "&status=canceled"), [made["u1b"]], "with status=canceled")
    expect_eq(listed([("user", "1")], "&status=queued"), [made["u1a"]], "with status=queued")


@case("list: metadata filters page with cursor, newest first, each job once")
def _():
    model = f"acme/meta-pages-{RUN}"
    created = [create(job_body(model=model, metadata={"run": RUN, "tag": "paged", "i": str(i)}))["id"]
               for i in range(11)]
    # Jobs of the same run without the tag must not show.
    for i in range(3):
        create(job_body(model=model, metadata={"run": RUN, "i": str(i)}))
    seen, cursor = [], None
    for _ in range(10):
        query = meta_query([("run", RUN), ("tag", "paged")]) + "&limit=4" + (f"&cursor={cursor}" if cursor else "")
        page = list_jobs(query)
        seen += [j["id"] for j in page["data"]]
        cursor = page["next_cursor"]
        if cursor is None:
            break
        expect_eq(len(page["data"]), 4, "a full page before the last")
    expect_eq(seen, sorted(created, reverse=True), "every tagged job once, newest first")
    cancel_all(j["id"] for j in list_jobs(meta_query([("run", RUN)]) + f"&model={model}&limit=100")["data"])


@case("outputs: several metadata filters apply together (AND)")
def _():
    made = state.get("meta_jobs")
    expect(made, "needs the metadata list case")
    # No worker runs here: give the jobs stored outputs directly.
    for n, job_id in enumerate(made.values()):
        sha = f"{n:064x}"
        sql("INSERT INTO outputs (job_id, idx, kind, state, storage_key, content_type, bytes,"
            f" sha256, created_at) VALUES ('{job_id}', 0, 'image', 'stored', 'ab/{sha}.png',"
            f" 'image/png', 10, '{sha}', NOW(6))")

    def found(filters):
        r = get("/v1/outputs?" + meta_query([("run", RUN)] + filters) + "&limit=100")
        page = expect_json(r, 200)
        return sorted(o["job_id"] for o in page["data"])

    expect_eq(found([]), sorted(made.values()), "metadata.run alone")
    expect_eq(found([("user", "1")]), sorted([made["u1a"], made["u1b"]]), "user=1")
    expect_eq(found([("user", "1"), ("project", "a")]), [made["u1a"]], "user=1 AND project=a")
    expect_eq(found([("user", "2"), ("project", "b")]), [], "user=2 AND project=b")
    r = get("/v1/outputs?" + meta_query([("run", RUN), ("user", "1"), ("project", "a")])
            + f"&model=acme/meta-{RUN}&adapter=null&since=2000-01-01&limit=1")
    expect_eq([o["job_id"] for o in expect_json(r, 200)["data"]], [made["u1a"]], "with the other filters")
    cancel_all(made.values())


@case("metadata filters: a bad key, an impossible value, too many, a key twice: 422 naming it")
def _():
    for path in ("/v1/jobs", "/v1/outputs"):
        for query, field in (("metadata.a%20b=1", "metadata.a b"), ("metadata.=1", "metadata."),
                             ("metadata.a%2Fb=1", "metadata.a/b"), ("metadata..a=1", "metadata..a"),
                             ("metadata.-a=1", "metadata.-a"), ("metadata.%C3%A9=1", "metadata.\u00e9"),
                             ("metadata." + "k" * 65 + "=1", "metadata." + "k" * 65),
                             ("metadata.a=" + "x" * 4096, "metadata.a"),
                             ("metadata.a=1&metadata.a=2", "metadata.a"),
                             ("metadata.a=1&metadata.A=1", "metadata.A"),
                             ("metadata.ok=1&metadata.a=1&metadata.a=1", "metadata.a"),
                             ("&".join(f"metadata.k{i}=1" for i in range(17)), "metadata")):
            doc = expect_problem(get(f"{path}?{query}"), 422)
            expect_eq(doc.get("field"), field, f"field of {path}?{query[:60]}")
        # Within the rules: answered, even when nothing matches.
        for query in ("metadata.a=", "metadata.a=" + "x" * 4095, "metadata." + "k" * 64 + "=1",
                      "metadata.A.b_c-9=1", "&".join(f"metadata.k{i}=1" for i in range(16))):
            expect_json(get(f"{path}?{query}"), 200)
    # Any other parameter given twice is ambiguous too.
    for query, field in (("status=queued&status=failed", "status"), ("limit=1&limit=1", "limit")):
        expect_eq(expect_problem(get(f"/v1/jobs?{query}"), 422).get("field"), field, query)
    expect_eq(expect_problem(get("/v1/outputs?model=a/b&model=a/c"), 422).get("field"), "model",
              "model twice")


@case("Idempotency-Key: same key and body gives the same job (200)")
def _():
    key = f"idem-{RUN}-1"
    body = job_body(model=f"acme/idem-{RUN}", metadata={"k": "1"})
    first = create(body, headers={"Idempotency-Key": key})
    r = post("/v1/jobs", body, headers={"Idempotency-Key": key})
    again = expect_json(r, 200)
    expect_eq(again.get("id"), first["id"], "job id on replay")
    other = create(body, headers={"Idempotency-Key": f"idem-{RUN}-2"})
    expect(other["id"] != first["id"], "another key gave the same job")
    state["idem"] = (key, body)


@case("Idempotency-Key: same key with another body answers 409")
def _():
    key, body = state.get("idem") or (f"idem-{RUN}-3", job_body())
    if "idem" not in state:
        create(body, headers={"Idempotency-Key": key})
    changed = dict(body, input={"prompt": "something else"})
    expect_problem(post("/v1/jobs", changed, headers={"Idempotency-Key": key}), 409)


@case("400 for malformed JSON")
def _():
    for raw in (b'{"model": "acme/m", "input": {', b'{"model": "acme/m"} trailing', b"",
                b"{'model': 'acme/m'}", b'{"model": "acme/m", "input": {}, }'):
        r = post("/v1/jobs", raw, headers={"Content-Type": "application/json"})
        expect_problem(r, 400)


@case("400 for a key given twice in the body, at any level, naming it and where")
def _():
    model = f"acme/dup-{RUN}"
    for raw, key, where in (
            (b'{"adapter":"null","model":"%s","model":"acme/other","input":{}}', "model", "/model"),
            (b'{"adapter":"null","model":"%s","input":{"prompt":"a","steps":4,"prompt":"b"}}',
             "prompt", "/input/prompt"),
            (b'{"adapter":"null","model":"%s","input":{},"metadata":{"a":"1","b":"2","a":"3"}}',
             "a", "/metadata/a"),
            (b'{"adapter":"null","model":"%s","input":{"x":{"y":[0,{"k":1,"k":2}]}}}', "k", "/input/x/y/1/k"),
            (b'{"adapter":"null","model":"%s","input":{"p":1,"\\u0070":2}}', "p", "/input/p"),
            (b'{"input":{},"adapter":"null","model":"%s","input":{"p":1}}', "input", "/input")):
        r = post("/v1/jobs", raw.replace(b"%s", model.encode()), headers={"Content-Type": "application/json"})
        doc = expect_problem(r, 400)
        expect(f'"{key}"' in doc["detail"] and f"at {where} " in doc["detail"],
               f"detail names {key!r} at {where}: {doc['detail']!r}")
        expect(doc["type"].endswith(":duplicate_key"), f"type {doc['type']!r}")
    expect_eq(list_jobs(f"model={model}")["data"], [], "jobs made from bodies with a key twice")
    # The same key in different objects is fine.
    job = create(job_body(model=model, input={"a": {"k": 1}, "b": {"k": 1}, "k": [{"k": 1}, {"k": 2}]},
                          metadata={"k": "1"}))
    cancel_all([job["id"]])


@case("a 1 MiB body of 90,000 keys: the duplicate check is not quadratic")
def _():
    keys = ",".join(f'"k{(i * 7919) % 90000:05d}":0' for i in range(90000))
    for dup, status in (("", 202), (',"k00000":1', 400)):
        raw = ('{"adapter":"null","model":"acme/many-keys","input":{' + keys + dup + "}}").encode()
        expect(len(raw) < 1024 * 1024, f"body of {len(raw)} bytes")
        started = time.monotonic()
        r = post("/v1/jobs", raw, headers={"Content-Type": "application/json"}, timeout=60)
        took = time.monotonic() - started
        expect_status(r, status, f"{len(raw)} bytes{' with a duplicate' if dup else ''}")
        expect(took < 10, f"answered in {took:.1f} s")
        if status == 202:
            cancel_all([r.json["id"]])


@case("413 for a body over 1 MiB")
def _():
    body = job_body(input={"prompt": "x" * (1024 * 1024 + 1024)})
    expect_problem(post("/v1/jobs", body), 413)
    # Just under the limit is fine as far as size goes.
    r = post("/v1/jobs", job_body(input={"prompt": "y" * (1024 * 1024 - 1024)}))
    expect(r.status != 413, "a body under 1 MiB was refused as too large")


@case("415 for a body that is not JSON")
def _():
    raw = b'{"adapter": "null", "model": "acme/model", "input": {"prompt": "x"}}'
    for ctype in ("text/plain", "application/x-www-form-urlencoded", "application/jsonx"):
        expect_problem(post("/v1/jobs", raw, headers={"Content-Type": ctype}), 415)


@case("422 when input is missing or not an object")
def _():
    invalid(job_body(input=None), "input")
    for value in ("x", [1], 3, True):
        invalid(job_body(input=value), "input")
    invalid(dict(job_body(), input=None), "input")


@case("422 when model is missing or malformed")
def _():
    invalid(job_body(model=None), "model")
    for value in ("no spaces allowed", "a/b/c", "", "/name", "owner/", 42, ["acme/model"]):
        invalid(job_body(model=value), "model")


@case("422 for an unknown adapter")
def _():
    invalid(job_body(adapter="nope"), "adapter")
    invalid(job_body(adapter=5), "adapter")


@case("422 for an unknown rendition or renditions not a list")
def _():
    invalid(job_body(renditions=["nope"]), "renditions")
    invalid(job_body(renditions=["thumb", "nope"]), "renditions")
    invalid(job_body(renditions="thumb"), "renditions")
    invalid(job_body(renditions=[5]), "renditions")
    create(job_body(renditions=["thumb"]))
    create(job_body(renditions=[]))


@case("422 for bad metadata")
def _():
    invalid(job_body(metadata="x"), "metadata")
    invalid(job_body(metadata=["a"]), "metadata")
    invalid(job_body(metadata={"a": 1}), "metadata")
    invalid(job_body(metadata={"a": {"b": "c"}}), "metadata")
    invalid(job_body(metadata={"a": None}), "metadata")
    invalid(job_body(metadata={f"k{i}": "v" for i in range(17)}), "metadata")
    invalid(job_body(metadata={"a": "x" * 5000}), "metadata")
    invalid(job_body(metadata={f"k{i}": "x" * 300 for i in range(16)}), "metadata")
    job = create(job_body(metadata={f"k{i}": "v" for i in range(16)}))
    expect_eq(len(job.get("metadata", {})), 16, "metadata keys kept")
    create(job_body(metadata={"a": "x" * 1000}))


@case("422 for metadata keys that differ only in letter case")
def _():
    doc = expect_problem(post("/v1/jobs", job_body(metadata={"user": "1", "USER": "2"})), 422)
    expect_eq(doc.get("field"), "metadata", "field")
    expect("letter case" in doc["detail"], f"detail: {doc['detail']!r}")


@case("a metadata value of 4095 bytes (4096 with its key) is stored and found")
def _():
    value = RUN + "x" * (4095 - len(RUN))
    job = create(job_body(model=f"acme/long-meta-{RUN}", metadata={"v": value}))
    expect_eq(job["metadata"], {"v": value}, "metadata")
    page = list_jobs(meta_query([("v", value)]))
    expect_eq([j["id"] for j in page["data"]], [job["id"]], "found by its value")
    # 2047 two-byte characters and one more byte: 2048 characters.
    value = "\u00e9" * 2047 + "x"
    second = create(job_body(model=f"acme/long-meta-{RUN}", metadata={"v": value}))
    got = expect_json(get(f"/v1/jobs/{second['id']}"), 200)
    expect_eq(got["metadata"], {"v": value}, "metadata read back")
    cancel_all([job["id"], second["id"]])


@case("every length intake accepts is stored: metadata values to the 4 KiB total, 255-character model and Idempotency-Key, 2048-byte callback_url")
def _():
    made = []
    for md in ({"a": "x" * 4095}, {"k": "é" * 2000}, {"k1": "y" * 2040, "k2": "z" * 2040}):
        job = create(job_body(metadata=md))
        made.append(job["id"])
        expect_eq(expect_json(get(f"/v1/jobs/{job['id']}"), 200)["metadata"], md, "metadata read back")
    model = "o" * 100 + "/" + "n" * 154
    url = "https://app.example.com/" + "p" * (2048 - 24)
    key = "k" * 255
    job = create(job_body(model=model, callback_url=url), headers={"Idempotency-Key": key})
    expect_eq((job["model"], len(url)), (model, 2048), "model kept")
    again = create(job_body(model=model, callback_url=url), headers={"Idempotency-Key": key}, status=200)
    expect_eq(again["id"], job["id"], "the same job for the same 255-character key")
    cancel_all(made + [job["id"]])
    # Canceled, the last one owes a callback to a host no test serves:
    # settle it, so no later file finds it due.
    settle_callback(job["id"])


@case("422 for a callback_url that is not an http(s) URL")
def _():
    for value in ("ftp://example.com/hook", "not a url", "javascript:alert(1)", "//example.com/x", 5):
        invalid(job_body(callback_url=value), "callback_url")
    create(job_body(callback_url="https://app.example.com/hooks/darkroom"))


@case("POST /v1/jobs/{id}/callback/retry: 404 unknown, 405 GET, 409 not ended / no callback_url / still pending; 202 makes a given-up delivery pending again, the same webhook-id, its tries kept")
def _():
    expect_problem(post("/v1/jobs/j_01ARZ3NDEKTSV4RRFFQ69G5FAV/callback/retry"), 404)
    plain = create(job_body(model=f"acme/cbretry-{RUN}"))
    expect_problem(get(f"/v1/jobs/{plain['id']}/callback/retry"), 405)
    expect_problem(post(f"/v1/jobs/{plain['id']}/callback/retry"), 409, field="not ended")
    cancel_all([plain["id"]])
    expect_problem(post(f"/v1/jobs/{plain['id']}/callback/retry"), 409, field="callback_url")
    job = create(job_body(model=f"acme/cbretry-{RUN}", callback_url="https://app.example.com/cb"))
    cancel_all([job["id"]])
    # Canceled while queued: its callback is pending (no worker here).
    expect_problem(post(f"/v1/jobs/{job['id']}/callback/retry"), 409, field="still being delivered")
    msg = sql(f"SELECT id FROM callback_deliveries WHERE job_id = '{job['id']}'")
    expect_eq(len(msg), 1, "one delivery of the cancel")
    settle_callback(job["id"])
    sql(f"UPDATE callback_deliveries SET attempts = 8, last_status = 500 WHERE job_id = '{job['id']}'")
    cb = expect_json(get(f"/v1/jobs/{job['id']}"), 200)["callback"]
    expect_eq(cb, {"url": "https://app.example.com/cb", "state": "failed", "attempts": 8,
                   "last_status": 500, "next_at": None}, "the job object's callback, given up")
    got = expect_json(post(f"/v1/jobs/{job['id']}/callback/retry"), 202)
    expect_eq((got["id"], got["status"]), (job["id"], "canceled"), "the job object answered")
    expect_eq((got["callback"]["state"], got["callback"]["attempts"]), ("pending", 8),
              "the answer's callback: pending again, its tries kept")
    expect(TIMESTAMP.match(got["callback"]["next_at"] or ""), f"next_at {got['callback']['next_at']!r}")
    row = sql(f"SELECT d.id, d.state, d.attempts, d.round_start, d.next_at <= NOW(6),"
              f" j.run_at IS NOT NULL AND j.run_at <= NOW(6)"
              f" FROM callback_deliveries d JOIN jobs j ON j.id = d.job_id WHERE d.job_id = '{job['id']}'")
    expect_eq(row, [[msg[0][0], "pending", "8", "8", "1", "1"]],
              "the same delivery (webhook-id) pending, its schedule from the start, due now")
    events = expect_json(get(f"/v1/jobs/{job['id']}/events"), 200)
    text = str(events)
    expect("requested" in text, f"a callback event records the request: {text[-300:]}")
    # Settle it, so no later file finds it due for a host no test serves.
    settle_callback(job["id"])


class App:
    """A second lighttpd + darkroom.fcgi on a free port with this file's
    config and database, its environment ENV (None drops a variable):
    conf/lighttpd.conf as tests/lib/services.sh's lighttpd_start runs it,
    in a process group of its own, stopped with stop()."""

    def __init__(self, name, env):
        root = os.path.dirname(os.path.dirname(os.path.dirname(os.path.abspath(__file__))))
        sock = socket.socket()
        sock.bind(("127.0.0.1", 0))
        self.port = sock.getsockname()[1]
        sock.close()
        var = os.path.join(os.environ.get("DARKROOM_TEST_DIR", "/tmp"), name)
        os.makedirs(os.path.join(var, "media"), exist_ok=True)
        # The config runs $DARKROOM_ROOT/build/darkroom.fcgi: for the
        # program of another build (make sanitize's, whose plugins need
        # it), a root of links, as lighttpd_start makes.
        fcgi = os.path.abspath(os.environ["DARKROOM_BIN"] + ".fcgi")
        default = os.path.join(root, "build", "darkroom.fcgi")
        app_root = root
        if not (os.path.exists(default) and os.path.samefile(fcgi, default)):
            app_root = os.path.join(var, "approot")
            os.makedirs(os.path.join(app_root, "build"), exist_ok=True)
            for link, target in ((os.path.join(app_root, "build", "darkroom.fcgi"), fcgi),
                                 (os.path.join(app_root, "conf"), os.path.join(root, "conf"))):
                if os.path.lexists(link):
                    os.unlink(link)
                os.symlink(target, link)
        full = dict(os.environ, DARKROOM_PORT=str(self.port), DARKROOM_ROOT=app_root, DARKROOM_VAR=var,
                    DARKROOM_FCGI_PROCS="1")
        for k, v in env.items():
            if v is None:
                full.pop(k, None)
            else:
                full[k] = v
        self.log = open(os.path.join(var, "lighttpd.out"), "ab")
        self.proc = subprocess.Popen(["lighttpd", "-D", "-f", os.path.join(root, "conf", "lighttpd.conf")],
                                     env=full, stdout=self.log, stderr=subprocess.STDOUT,
                                     stdin=subprocess.DEVNULL, start_new_session=True)
        self.base = f"http://127.0.0.1:{self.port}"
        try:
            wait_until(lambda: self.proc.poll() is not None or self._healthy(), timeout=30,
                       what=f"{name} answering /healthz")
            expect(self.proc.poll() is None, f"lighttpd of {name} exited; see {var}")
        except Fail:
            self.stop()
            raise

    def _healthy(self):
        try:
            return request("GET", "/healthz", key=None, timeout=5, base=self.base).status == 200
        except Fail:
            return False

    def post(self, path, body):
        return request("POST", path, body, base=self.base)

    def stop(self):
        """Stop lighttpd, then whatever of its group is left (the app)."""
        if self.proc.poll() is None:
            self.proc.terminate()
            try:
                self.proc.wait(timeout=15)
            except subprocess.TimeoutExpired:
                self.proc.kill()
                self.proc.wait()
        try:
            os.killpg(self.proc.pid, signal.SIGTERM)
        except ProcessLookupError:
            pass
        self.log.close()


@case("callback_url to a loopback, private or localhost address through an app without DARKROOM_CALLBACK_ALLOW_PRIVATE: 422 naming callback_url; a host name is accepted (checked when the worker connects)")
def _():
    private = ["http://127.0.0.1:8080/cb", "http://localhost/", "http://[::1]/", "http://10.0.0.1/",
               "https://192.168.1.20/hook", "https://169.254.169.254/latest"]
    made = []
    # The suite's own app allows them (run-integration.sh sets the variable).
    for url in private[:4]:
        made.append(create(job_body(model=f"acme/cb-intake-{RUN}", callback_url=url))["id"])
    app = App("app-no-private", {"DARKROOM_CALLBACK_ALLOW_PRIVATE": None})
    try:
        for url in private:
            doc = expect_problem(app.post("/v1/jobs", job_body(callback_url=url)), 422, field="callback_url")
            expect("DARKROOM_CALLBACK_ALLOW_PRIVATE" in doc["detail"], f"{url}: {doc['detail']!r}")
        for url in ("https://app.example.com/hooks/darkroom", "http://hooks.example.org:8080/x"):
            job = expect_json(app.post("/v1/jobs", job_body(model=f"acme/cb-intake-{RUN}", callback_url=url)),
                              202)
            expect_eq(job["callback"], {"url": url, "state": "none", "attempts": 0, "last_status": None,
                                        "next_at": None}, f"{url}: the new job's callback")
            made.append(job["id"])
    finally:
        app.stop()
        cancel_all(made)
        for jid in made:
            settle_callback(jid)


@case("422 for an unknown top-level field, naming it")
def _():
    invalid(job_body(bogus_field=1), "bogus_field")


@case("a 100 KiB prompt is accepted and kept whole in the input")
def _():
    prompt = "é" + "a lighthouse at dawn, " * 4700
    job = create(job_body(input={"prompt": prompt}))
    expect_eq(job["input"]["prompt"], prompt, "prompt")


@case("422 for a body that is a JSON array or scalar")
def _():
    for raw in (b"[]", b'[{"model": "acme/model", "input": {}}]', b"42", b'"x"', b"null"):
        r = post("/v1/jobs", raw, headers={"Content-Type": "application/json"})
        expect_problem(r, 422)


@case("deep nesting answers a problem document, not a crash")
def _():
    for depth in (1000, 20000):
        raw = (b'{"adapter": "null", "model": "acme/model", "input": {"x": '
               + b"[" * depth + b"]" * depth + b"}}")
        r = post("/v1/jobs", raw, headers={"Content-Type": "application/json"})
        expect_problem(r, (400, 422))
    expect_json(get("/healthz", key=None), 200)


@case("400 for invalid UTF-8 in a string")
def _():
    for raw in (b'{"adapter": "null", "model": "acme/model", "input": {"prompt": "\xff\xfe"}}',
                b'{"adapter": "null", "model": "acme/model", "input": {"\xc3": "x"}}',
                b'{"adapter": "null", "model": "acme/model", "input": {"prompt": "\xc0\xaf"}}'):
        r = post("/v1/jobs", raw, headers={"Content-Type": "application/json"})
        expect_problem(r, 400)


@case("404 for an unknown path")
def _():
    expect_problem(get("/v1/nope"), 404)
    expect_problem(get("/v1/jobs/x/y/z"), 404)
    expect_problem(get("/nope", key=None), 404)


@case("405 with Allow for a wrong method")
def _():
    r = request("PUT", "/v1/jobs", body={})
    expect_problem(r, 405)
    allow = r.headers.get("Allow") or ""
    methods = {m.strip().upper() for m in allow.split(",")}
    expect_eq(methods, {"GET", "POST", "DELETE"}, f"Allow header of /v1/jobs: {allow!r}")
    job = state.get("job") or create()
    r = request("PUT", f"/v1/jobs/{job['id']}", body={})
    expect_problem(r, 405)
    expect_eq(r.headers.get("Allow"), "GET, DELETE", "Allow header of a job")
    r = get(f"/v1/jobs/{job['id']}/cancel")
    expect_problem(r, 405)
    expect("POST" in (r.headers.get("Allow") or "").upper(), f"Allow header: {r.headers.get('Allow')!r}")


@case("cancel of a queued job answers 202 canceled; again 409")
def _():
    job = create(job_body(model=f"acme/cancel-{RUN}"))
    r = post(f"/v1/jobs/{job['id']}/cancel")
    got = expect_json(r, 202)
    expect_eq(got.get("id"), job["id"], "id")
    expect_eq(got.get("status"), "canceled", "status after cancel")
    expect_eq(expect_json(get(f"/v1/jobs/{job['id']}"), 200).get("status"), "canceled", "status read back")
    expect_problem(post(f"/v1/jobs/{job['id']}/cancel"), 409)
    state["canceled"] = job["id"]


@case("retry of a queued job answers 409")
def _():
    job = create(job_body(model=f"acme/retry-{RUN}"))
    expect_problem(post(f"/v1/jobs/{job['id']}/retry"), 409)
    expect_eq(expect_json(get(f"/v1/jobs/{job['id']}"), 200).get("status"), "queued", "status after refused retry")


@case("retry of a canceled job starts it again")
def _():
    job_id = state.get("canceled")
    expect(job_id, "needs the cancel case")
    r = post(f"/v1/jobs/{job_id}/retry")
    got = expect_json(r, (200, 202))
    expect_eq(got.get("id"), job_id, "id")
    expect(got.get("status") in ("queued", "starting", "processing"),
           f"status after retry: {got.get('status')!r}")


@case("no answer repeats a header")
def _():
    job = state.get("job") or create()
    answers = {
        "/healthz": get("/healthz", key=None),
        "/metrics": get("/metrics", key=None),
        "/": get("/", key=None),
        "/v1/jobs": get("/v1/jobs?limit=1"),
        "/v1/jobs/{id}": get(f"/v1/jobs/{job['id']}"),
        "/v1/outputs": get("/v1/outputs?limit=1"),
        "401": get("/v1/jobs", key=None),
        "404": get("/v1/nope"),
        "405": request("PUT", "/v1/jobs", body={}),
        "422": get("/v1/jobs?limit=0"),
        "400": post("/v1/jobs", b"{", headers={"Content-Type": "application/json"}),
    }
    for what, r in answers.items():
        names = [name.lower() for name, _ in r.headers.items()]
        twice = sorted({n for n in names if names.count(n) > 1})
        expect_eq(twice, [], f"headers sent more than once by {what} ({r.status})")
        expect(r.headers.get("Cache-Control"), f"{what}: no Cache-Control")
    expect_eq(answers["/metrics"].headers.get("Cache-Control"), "no-store", "/metrics Cache-Control")
    expect_eq(answers["/"].headers.get("Cache-Control"), "no-cache", "dashboard Cache-Control")
    expect_eq(answers["/v1/jobs"].headers.get("Cache-Control"), "no-store", "/v1/jobs Cache-Control")


@case("database down: /healthz, create and read answer 503")
def _():
    job = state.get("job") or create()
    state["job_before_outage"] = job
    db_ctl("stop")
    state["db_stopped"] = True

    def health_503():
        r = get("/healthz", key=None)
        return r if r.status == 503 else None

    r = wait_until(health_503, timeout=5, what="/healthz answering 503")
    expect(r.content_type in ("application/json", "application/problem+json"),
           f"/healthz 503 Content-Type {r.headers.get('Content-Type')!r}")
    started = time.monotonic()
    expect_problem(post("/v1/jobs", job_body()), 503)
    expect_problem(get(f"/v1/jobs/{job['id']}"), 503)
    expect_problem(get("/v1/jobs"), 503)
    # Both FastCGI processes see the outage: ask several times.
    for _ in range(4):
        expect_problem(get(f"/v1/jobs/{job['id']}"), 503)
    expect(time.monotonic() - started < 30, "answers during the outage took over 30 s")
    expect_problem(get("/v1/jobs", key=None), 401)


@case("database back: within 10 s /healthz is 200 and jobs work again")
def _():
    db_ctl("start")
    wait_until(lambda: get("/healthz", key=None).status == 200, timeout=10,
               what="/healthz answering 200 after the database came back")
    # Several rounds so every FastCGI process has reconnected.
    for i in range(6):
        expect_json(get("/healthz", key=None), 200)
        job = create(job_body(model=f"acme/after-outage-{RUN}", metadata={"i": str(i)}))
        expect_eq(job.get("status"), "queued", "status of a job created after the outage")
    before = state.get("job_before_outage")
    if before:
        expect_eq(expect_json(get(f"/v1/jobs/{before['id']}"), 200).get("id"), before["id"],
                  "job created before the outage")
    page = list_jobs(f"model=acme/after-outage-{RUN}")
    expect_eq(len(page["data"]), 6, "jobs created after the outage")


@case("FastCGI processes did not crash")
def _():
    before = state.get("fcgi_pids")
    expect(before, "needs the first case")
    now = fcgi_pids()
    expect_eq(now, before, "FastCGI pids (a change means a process died and was respawned)")
    expect_eq(crash_lines(), [], "crash lines in lighttpd's error log")


if __name__ == "__main__":
    try:
        run()
    finally:
        # Never leave the database down for the next test file.
        if state.get("db_stopped"):
            try:
                db_ctl("start")
            except Fail:
                pass
