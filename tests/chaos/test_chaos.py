#!/usr/bin/env python3
"""tests/chaos/test_chaos.py — fault injection against the whole service
(lighttpd + darkroom.fcgi + `darkroom worker` + MariaDB + sinks + the fake
Replicate), loopback only, each case bounded in time and ending with the
shared invariant check (check_invariants):

  - every job final, or progressing (non-final with run_at set or a lease);
  - no job created at the provider twice unless its events show a
    reconcile; no succeeded job with outputs not stored;
  - every succeeded job's outputs (and renditions) present in the sink,
    originals with the recorded SHA-256;
  - no orphan rows (outputs, renditions, job_metadata, job_events);
  - no impossible state (succeeded with an error, final with a lease).

Run by tests/run-integration.sh (its services and environment). Prints
`# chaos: case | tried | failed | lost` lines at the end.
"""

import hashlib
import json
import os
import random
import shutil
import signal
import socket
import subprocess
import sys
import threading
import time
import urllib.error
import urllib.request

HERE = os.path.dirname(os.path.abspath(__file__))
sys.path.insert(0, os.path.join(HERE, "..", "integration"))
from harness import (BASE_URL, Fail, case, expect, expect_eq, expect_json,  # noqa: E402
                     expect_problem, get, post, request, run, sql, db_ctl, wait_until)
from engine_lib import (FAKE, FINAL, S3_BUCKET, S3RVER_BIN, S3rver, WORK, Worker,  # noqa: E402,F401
                        free_port, port_open, creates_by_job, fake, fake_reset,
                        hook, job, sign)

MEDIA = os.environ["DARKROOM_MEDIA"]
CONF = os.environ["DARKROOM_CONF"]
LIGHTTPD_PID = int(os.environ.get("DARKROOM_LIGHTTPD_PID", "0") or 0)
RANK = {"queued": 0, "starting": 1, "processing": 2, "persisting": 3,
        "succeeded": 4, "failed": 4, "canceled": 4}
SUMMARY = []  # (case, tried, failed, lost)


def note(msg):
    print(f"# {msg}", flush=True)


def summary(name, tried, failed, lost):
    SUMMARY.append((name, tried, failed, lost))


# ------------------------------------------------------------ helpers


def create(inp=None, renditions=(), model="acme/flux", timeout=30):
    body = {"adapter": "replicate", "model": model, "input": {"prompt": "a lighthouse"},
            "renditions": list(renditions)}
    body["input"].update(inp or {})
    return expect_json(post("/v1/jobs", body, timeout=timeout), 202)["id"]


def in_list(ids):
    return ",".join(f"'{i}'" for i in ids)


def statuses(ids):
    out = {}
    ids = list(ids)
    for k in range(0, len(ids), 500):
        for jid, st in sql(f"SELECT id, status FROM jobs WHERE id IN ({in_list(ids[k:k + 500])})"):
            out[jid] = st
    return out


def wait_final(ids, timeout):
    """Wait (by SQL, cheap) until every job is final; return {id: status}."""
    ids = list(ids)
    deadline = time.monotonic() + timeout
    while True:
        st = statuses(ids)
        if all(st.get(j) in FINAL for j in ids):
            return st
        if time.monotonic() > deadline:
            left = [j for j in ids if st.get(j) not in FINAL]
            counts = {}
            for j in left:
                counts[st.get(j)] = counts.get(st.get(j), 0) + 1
            raise Fail(f"{len(left)} of {len(ids)} jobs not final within {timeout}s: {counts}")
        time.sleep(0.5)


def events(jid):
    return sql(f"SELECT kind, COALESCE(from_status, ''), COALESCE(to_status, ''),"
               f" COALESCE(detail, '') FROM job_events WHERE job_id = '{jid}' ORDER BY id")


def sha256(b):
    return hashlib.sha256(b).hexdigest()


def fetch(url, method="GET", timeout=30):
    req = urllib.request.Request(url, method=method)
    try:
        with urllib.request.urlopen(req, timeout=timeout) as r:
            return r.status, r.read()
    except urllib.error.HTTPError as e:
        return e.code, e.read() or b""


def fs_reader(root):
    def read(key):
        path = os.path.join(root, key)
        if not os.path.isfile(path):
            return 404, b""
        with open(path, "rb") as f:
            return 200, f.read()
    return read


def s3_reader(endpoint):
    def read(key):
        return fetch(f"{endpoint}/{S3_BUCKET}/{key}")
    return read


def fcgi_pids():
    pids = []
    for d in os.listdir("/proc"):
        if not d.isdigit():
            continue
        try:
            with open(f"/proc/{d}/status") as f:
                st = f.read()
        except OSError:
            continue
        ppid = int(st.split("PPid:")[1].split()[0])
        if ppid == LIGHTTPD_PID:
            pids.append(int(d))
    return sorted(pids)


def rss_kib(pid):
    with open(f"/proc/{pid}/status") as f:
        for line in f:
            if line.startswith("VmRSS:"):
                return int(line.split()[1])
    return 0


def under_asan(pid):
    """Whether process pid runs with AddressSanitizer (`make sanitize`):
    its quarantine keeps up to 256 MiB of freed memory resident, so RSS
    growth says nothing there; LeakSanitizer reports leaks at exit instead
    (tests/run-integration.sh stops the app and reads its log)."""
    try:
        with open(f"/proc/{pid}/maps") as f:
            return "libasan" in f.read()
    except OSError:
        return False


def check_invariants(ids, reader=None, allow_nonfinal=False):
    """The shared invariant check over IDS (see the module docstring).
    READER(key) -> (status, bytes) reads the sink (default: the fs sink).
    Returns the number of violations found; fails the case on any."""
    reader = reader or fs_reader(MEDIA)
    ids = list(ids)
    problems = []
    rows = []
    for k in range(0, len(ids), 500):
        rows += sql("SELECT id, status, COALESCE(run_at, 'NULL'), COALESCE(lease_owner, 'NULL'),"
                    " COALESCE(error_code, 'NULL') FROM jobs WHERE id IN ("
                    + in_list(ids[k:k + 500]) + ")")
    seen = {r[0]: r for r in rows}
    lost = [j for j in ids if j not in seen]
    if lost:
        problems.append(f"{len(lost)} jobs lost (no row): {lost[:3]}")
    for jid, st, run_at, lease, err in rows:
        if st not in FINAL and not allow_nonfinal and run_at == "NULL" and lease == "NULL":
            problems.append(f"{jid} stuck in {st} (no run_at, no lease)")
        if st == "succeeded" and err != "NULL":
            problems.append(f"{jid} succeeded with error {err}")
        if st == "failed" and err == "NULL":
            problems.append(f"{jid} failed without an error code")
    # Created at the provider at most once per attempt (a retry to queued
    # starts a new one), unless the events show a reconcile.
    creates = creates_by_job()
    for jid in ids:
        n = creates.get(jid, 0)
        if n > 1:
            evs = events(jid)
            attempts = 1 + sum(1 for e in evs if e[0] == "retry" and e[2] == "queued")
            kinds = " ".join(e[0] + e[3] for e in evs)
            if n > attempts and "reconcil" not in kinds and "resubmit" not in kinds:
                problems.append(f"{jid} created {n} times at the provider over {attempts}"
                                " attempts without a reconcile")
    # Succeeded jobs: every output stored, present in the sink, right SHA-256.
    succ = [r[0] for r in rows if r[1] == "succeeded"]
    for k in range(0, len(succ), 300):
        part = in_list(succ[k:k + 300])
        for jid, n in sql(f"SELECT job_id, COUNT(*) FROM outputs WHERE job_id IN ({part})"
                          " AND state <> 'stored' GROUP BY job_id"):
            problems.append(f"{jid} succeeded with {n} outputs not stored")
        for jid, key, sha in sql(f"SELECT job_id, COALESCE(storage_key, 'NULL'), COALESCE(sha256, 'NULL')"
                                 f" FROM outputs WHERE job_id IN ({part}) AND state = 'stored'"):
            if key == "NULL":
                continue  # text kept inline
            status, body = reader(key)
            if status != 200:
                problems.append(f"{jid}: output {key} missing from the sink ({status})")
            elif sha != "NULL" and sha256(body) != sha:
                problems.append(f"{jid}: output {key} SHA-256 {sha256(body)} != recorded {sha}")
        for jid, key in sql("SELECT o.job_id, r.storage_key FROM renditions r JOIN outputs o"
                            f" ON o.id = r.output_id WHERE o.job_id IN ({part})"):
            status, _ = reader(key)
            if status != 200:
                problems.append(f"{jid}: rendition {key} missing from the sink ({status})")
    # Orphans, over the whole database.
    for what, q in (
            ("outputs", "SELECT COUNT(*) FROM outputs o LEFT JOIN jobs j ON j.id = o.job_id WHERE j.id IS NULL"),
            ("job_metadata", "SELECT COUNT(*) FROM job_metadata m LEFT JOIN jobs j ON j.id = m.job_id"
                             " WHERE j.id IS NULL"),
            ("job_events", "SELECT COUNT(*) FROM job_events e LEFT JOIN jobs j ON j.id = e.job_id WHERE j.id IS NULL"),
            ("renditions", "SELECT COUNT(*) FROM renditions r LEFT JOIN outputs o ON o.id = r.output_id"
                           " WHERE o.id IS NULL")):
        n = int(sql(q)[0][0])
        if n:
            problems.append(f"{n} orphan rows in {what}")
    if problems:
        raise Fail(f"invariants: {len(problems)} violations: " + "; ".join(problems[:8]))
    return len(lost)


def stop_worker(w):
    leftover = w.stop()
    expect(not leftover, f"{w.name}: worker processes outlived the supervisor")
    log = w.log_text()
    for bad in ("Sanitizer", "runtime error:"):
        expect(bad not in log, f"{w.name}.log shows {bad!r}")


def conf_copy(name, edit):
    """A copy of the test config with EDIT(text) -> text applied."""
    with open(CONF) as f:
        text = f.read()
    path = os.path.join(WORK, name)
    with open(path, "w") as f:
        f.write(edit(text))
    return path


# ================================================================ cases


@case("SIGKILL storm: random worker processes killed while jobs run; all succeed, once")
def _():
    fake_reset(start_delay=0.05, duration=0.1)
    n_jobs, n_kills = 300, 100
    t0 = time.monotonic()
    ids = [create({"fake_output": "url"}) for _ in range(n_jobs)]
    note(f"chaos kill: {n_jobs} jobs created in {time.monotonic() - t0:.1f}s")
    w = Worker(4, "chaos-kill")
    kills = 0
    rng = random.Random(1234)
    try:
        wait_until(lambda: len(w.children()) == 4, timeout=10, what="four worker processes")
        deadline = time.monotonic() + 90
        while kills < n_kills and time.monotonic() < deadline:
            kids = w.children()
            if kids:
                try:
                    os.kill(rng.choice(kids), signal.SIGKILL)
                    kills += 1
                except ProcessLookupError:
                    pass
            time.sleep(rng.uniform(0.1, 0.3))
            if kills % 25 == 0 and all(s in FINAL for s in statuses(ids).values()):
                # Jobs finished before the kills did: queue more so the
                # kills keep landing on work.
                ids += [create({"fake_output": "url"}) for _ in range(50)]
        note(f"chaos kill: {kills} SIGKILLs over {len(ids)} jobs in {time.monotonic() - t0:.1f}s")
        expect(w.proc.poll() is None, "the supervisor died")
        st = wait_final(ids, 120)
    finally:
        stop_worker(w)
    bad = [j for j, s in st.items() if s != "succeeded"]
    lost = check_invariants(ids)
    summary("sigkill storm", len(ids), len(bad), lost)
    note(f"chaos kill: {kills} kills, {len(ids)} jobs, {len(bad)} not succeeded,"
         f" {time.monotonic() - t0:.1f}s")
    expect(not bad, f"{len(bad)} jobs did not succeed: {[(j, st[j]) for j in bad[:5]]}")
    expect(kills >= n_kills, f"only {kills} of {n_kills} kills done")


@case("MariaDB down ~5 s during load: 503 problems meanwhile, never 500 or a hang; recovers")
def _():
    fake_reset(start_delay=0.05, duration=0.2)
    before = fcgi_pids()
    w = Worker(2, "chaos-db")
    ids = []
    answers = {}
    try:
        ids += [create({"fake_output": "url"}) for _ in range(40)]
        db_ctl("stop")
        t_down = time.monotonic()
        try:
            while time.monotonic() - t_down < 5:
                t = time.monotonic()
                r = post("/v1/jobs", {"adapter": "replicate", "model": "acme/flux",
                                      "input": {"prompt": "x"}}, timeout=15)
                took = time.monotonic() - t
                answers[r.status] = answers.get(r.status, 0) + 1
                if r.status == 202:
                    ids.append(r.json["id"])  # cannot happen with the db down; checked below
                else:
                    expect_problem(r, 503)
                expect(took < 10, f"POST /v1/jobs took {took:.1f}s with the database down")
                h = get("/healthz", key=None)
                expect_eq(h.status, 503, "healthz with the database down")
                time.sleep(0.2)
        finally:
            db_ctl("start")
        note(f"chaos db: answers while down {answers}")
        expect(set(answers) == {503}, f"answers while the database was down: {answers}")
        # Recovers by itself: the next requests succeed within a few seconds.
        wait_until(lambda: get("/healthz", key=None).status == 200, timeout=20,
                   what="healthz 200 after the restart")
        ids += [create({"fake_output": "url"}) for _ in range(20)]
        st = wait_final(ids, 90)
        expect(w.proc.poll() is None, "the worker supervisor died with the database")
    finally:
        stop_worker(w)
    after = fcgi_pids()
    expect_eq(after, before, "FastCGI processes (none may have died)")
    bad = [j for j, s in st.items() if s != "succeeded"]
    lost = check_invariants(ids)
    summary("mariadb down", len(ids), len(bad), lost)
    expect(not bad, f"{len(bad)} jobs did not succeed: {[(j, st[j]) for j in bad[:5]]}")


@case("S3 down for 30 s during load: jobs wait (sink_unavailable), then succeed with their objects")
def _():
    fake_reset(start_delay=0.05, duration=0.2)
    s3 = S3rver("chaos-s3")
    endpoint = f"http://127.0.0.1:{s3.port}"
    s3.start()
    w = Worker(2, "chaos-s3", {"DARKROOM_SINK": "s3", "DARKROOM_S3_ENDPOINT": endpoint})
    ids = []
    try:
        ids += [create({"fake_output": "url", "fake_seed": f"s3a-{i}"}, ["thumb"]) for i in range(10)]
        wait_final(ids[:5], 40)
        s3.stop()
        t_down = time.monotonic()
        ids += [create({"fake_output": "url", "fake_seed": f"s3b-{i}"}, ["thumb"]) for i in range(20)]
        waiting = wait_until(
            lambda: int(sql("SELECT COUNT(DISTINCT job_id) FROM job_events WHERE kind = 'retry_scheduled'"
                            f" AND detail LIKE '%sink_unavailable%' AND job_id IN ({in_list(ids)})")[0][0]),
            timeout=25, what="a job waiting with sink_unavailable")
        time.sleep(max(0, 30 - (time.monotonic() - t_down)))
        st_down = statuses(ids)
        failed_down = [j for j, s in st_down.items() if s == "failed"]
        waiting = int(sql("SELECT COUNT(DISTINCT job_id) FROM job_events WHERE kind = 'retry_scheduled'"
                          f" AND detail LIKE '%sink_unavailable%' AND job_id IN ({in_list(ids)})")[0][0])
        note(f"chaos s3: down 30 s; {waiting} jobs waited with sink_unavailable;"
             f" statuses then {sorted(set(st_down.values()))}")
        s3.start()
        st = wait_final(ids, 90)
        expect(not failed_down, f"jobs failed while S3 was down: {failed_down[:3]}")
        bad = [j for j, s in st.items() if s != "succeeded"]
        lost = check_invariants(ids, reader=s3_reader(endpoint))
        summary("s3 down 30s", len(ids), len(bad), lost)
        expect(not bad, f"{len(bad)} jobs did not succeed: {[(j, st[j]) for j in bad[:5]]}")
    finally:
        stop_worker(w)
        s3.stop()


@case("provider chaos: 429/500/timeouts on 20% of calls, webhooks duplicated/reordered/delayed/dropped")
def _():
    fake_reset(start_delay=0.05, duration=0.2, rate_limit=0.1, error_rate=0.1, timeout_rate=0.02,
               timeout_sleep=3, duplicate_webhooks=True, reorder_webhooks=True,
               delay_webhooks=0.5, drop_webhooks=0.3)
    conf = conf_copy("chaos-provider.conf", lambda t: t.replace(
        "[adapter \"replicate\"]\n", "[adapter \"replicate\"]\ntimeout = 2s\nconnect_timeout = 1s\n", 1))
    w = Worker(4, "chaos-provider", {"DARKROOM_CONF": conf})
    try:
        ids = [create({"fake_output": "url"}) for _ in range(60)]
        st = wait_final(ids, 150)
    finally:
        fake("/_control", {"rate_limit": 0, "error_rate": 0, "timeout_rate": 0, "drop_webhooks": 0,
                           "duplicate_webhooks": False, "reorder_webhooks": False, "delay_webhooks": 0})
        stop_worker(w)
    calls = fake("/_state")["calls"]
    note(f"chaos provider: fake calls {calls}")
    counts = creates_by_job()
    multi = {j: counts[j] for j in ids if counts.get(j, 0) > 1}
    note(f"chaos provider: jobs created more than once: {len(multi)} {list(multi.items())[:3]}")
    bad = [j for j, s in st.items() if s != "succeeded"]
    if bad:
        note("chaos provider: not succeeded: " + ", ".join(
            f"{j}={st[j]}:{job(j).get('error')}" for j in bad[:5]))
    lost = check_invariants(ids)
    summary("provider chaos", len(ids), len(bad), lost)
    expect(calls.get("429", 0) > 0 and calls.get("500", 0) > 0, f"faults did not fire: {calls}")
    # Jobs may fail only with a provider error after retries are exhausted;
    # they must all be final (checked) and none created twice unreconciled.
    for j in bad:
        err = job(j).get("error") or {}
        expect(err.get("code"), f"{j} {st[j]} without a clear error: {err}")


@case("disk full: fs sink on a 2 MiB tmpfs; jobs wait or fail with sink_full, nothing corrupt")
def _():
    root = os.path.join(WORK, "chaos-tiny")
    os.makedirs(root, exist_ok=True)
    p = subprocess.run(["mount", "-t", "tmpfs", "-o", "size=2m", "tmpfs", root],
                       capture_output=True, text=True)
    if p.returncode != 0:
        note(f"chaos disk: SKIPPED, cannot mount a tmpfs: {p.stderr.strip()}")
        summary("disk full (skipped)", 0, 0, 0)
        return
    try:
        conf = conf_copy("chaos-disk.conf", lambda t: t.replace(f"root = {MEDIA}\n", f"root = {root}\n", 1))
        fake_reset(start_delay=0.05, duration=0.1)
        w = Worker(2, "chaos-disk", {"DARKROOM_CONF": conf})
        try:
            ids = [create({"fake_output": "url", "fake_size": 600_000, "fake_seed": f"disk-{i}"})
                   for i in range(8)]
            time.sleep(1)
            wait_until(lambda: sum(1 for _, s in statuses(ids).items() if s == "succeeded") >= 2,
                       timeout=30, what="some jobs stored before the disk fills")

            def settled():
                full = sql("SELECT COUNT(DISTINCT job_id) FROM job_events WHERE job_id IN"
                           f" ({in_list(ids)}) AND detail LIKE '%sink_full%'")[0][0]
                st = statuses(ids)
                return int(full) > 0 and all(s in ("succeeded", "failed", "persisting") for s in st.values())
            wait_until(settled, timeout=40, what="the other jobs waiting or failed with sink_full")
            time.sleep(2)
            st = statuses(ids)
        finally:
            stop_worker(w)
        counts = {}
        for s in st.values():
            counts[s] = counts.get(s, 0) + 1
        note(f"chaos disk: 8 jobs of 600 kB on 2 MiB: {counts}")
        for j, s in st.items():
            if s == "failed":
                err = job(j).get("error") or {}
                expect_eq(err.get("code"), "sink_full", f"{j}: error code")
        # Nothing corrupt: no temporary files, every object's name is its SHA-256.
        leftovers, corrupt = [], []
        for d, _, files in os.walk(root):
            for f in files:
                path = os.path.join(d, f)
                if f.startswith(".tmp."):
                    leftovers.append(path)
                    continue
                with open(path, "rb") as fh:
                    h = sha256(fh.read())
                if not f.startswith(h):
                    corrupt.append(f)
        expect(not leftovers, f"temporary files left in the full sink: {leftovers[:3]}")
        expect(not corrupt, f"objects whose content does not match their name: {corrupt[:3]}")
        # Free space; the waiting jobs finish (a second worker, same config).
        w = Worker(2, "chaos-disk-2", {"DARKROOM_CONF": conf})
        try:
            p = subprocess.run(["mount", "-o", "remount,size=16m", root], capture_output=True, text=True)
            expect(p.returncode == 0, f"remount: {p.stderr}")
            st2 = wait_final(ids, 60)
        finally:
            stop_worker(w)
        lost = check_invariants(ids, reader=fs_reader(root))
        bad = [j for j, s in st2.items() if s != "succeeded"]
        note(f"chaos disk: after freeing space: {sorted(st2.values()).count('succeeded')} succeeded,"
             f" {len(bad)} not")
        summary("disk full", len(ids), len(bad), lost)
        for j in bad:
            expect_eq((job(j).get("error") or {}).get("code"), "sink_full", f"{j}: error code")
    finally:
        subprocess.run(["umount", "-l", root], capture_output=True)


# ------------------------------------------------------------ hostile requests


HOST, PORT = BASE_URL.split("//")[1].split(":")
PORT = int(PORT)
KEY = os.environ.get("DARKROOM_API_KEY", "")


def raw(data, read_timeout=10, close_write=False):
    """Send DATA on a fresh connection; return the status line's code (0: none)."""
    s = socket.create_connection((HOST, PORT), timeout=read_timeout)
    try:
        try:
            s.sendall(data)
        except OSError:
            pass
        if close_write:
            s.shutdown(socket.SHUT_WR)
        buf = b""
        t0 = time.monotonic()
        while b"\r\n" not in buf and time.monotonic() - t0 < read_timeout:
            try:
                chunk = s.recv(4096)
            except socket.timeout:
                break
            except OSError:
                break
            if not chunk:
                break
            buf += chunk
        if buf.startswith(b"HTTP/"):
            return int(buf.split(b" ")[1])
        return 0
    finally:
        s.close()


def post_raw(body, ctype="application/json", extra=""):
    return (f"POST /v1/jobs HTTP/1.1\r\nHost: {HOST}\r\nAuthorization: Bearer {KEY}\r\n"
            f"Content-Type: {ctype}\r\n{extra}").encode()


def alive():
    r = get("/healthz", key=None, timeout=10)
    expect_eq(r.status, 200, "healthz after hostile input")


@case("hostile requests: broken UTF-8, 1 MB headers, lying Content-Length, deep JSON, odd numbers")
def _():
    pids = fcgi_pids()
    expect(pids, "no FastCGI processes found under lighttpd")
    tried = failed = 0
    results = {}

    def check(name, ok, got):
        nonlocal tried, failed
        tried += 1
        results[name] = got
        if not ok:
            failed += 1
            raise Fail(f"{name}: got {got!r}")

    body = b'{"adapter":"replicate","model":"acme/flux","input":{"prompt":"a \xff\xfe lighthouse"}}'
    r = request("POST", "/v1/jobs", body=body, headers={"Content-Type": "application/json"})
    expect_problem(r, 400)
    check("broken utf-8", True, r.status)
    body = b'{"adapter":"replicate","model":"acme/flux","input":{"prompt":"\xed\xa0\x80"}}'  # surrogate
    r = request("POST", "/v1/jobs", body=body, headers={"Content-Type": "application/json"})
    expect_problem(r, 400)
    check("utf-8 surrogate", True, r.status)
    # 1 MB header: the web server refuses it; nothing reaches the app.
    code = raw(b"GET /v1/jobs HTTP/1.1\r\nHost: x\r\nX-Big: " + b"a" * (1 << 20) + b"\r\n\r\n")
    check("1 MB header", code in (0, 400, 413, 431), code)
    alive()
    # Content-Length larger than what is sent, then the client closes.
    t = time.monotonic()
    code = raw(post_raw("", extra="Content-Length: 1000\r\n\r\n").rstrip(b"\r\n") + b"\r\n\r\n" + b'{"a":12345',
               read_timeout=15, close_write=True)
    took = time.monotonic() - t
    check("Content-Length over what is sent", code in (0, 400, 408) and took < 15, (code, round(took, 1)))
    alive()
    # ... and kept open: the server must go on answering others meanwhile.
    hang = [socket.create_connection((HOST, PORT), timeout=5) for _ in range(8)]
    try:
        for s_ in hang:
            s_.sendall(post_raw("", extra="Content-Length: 1000\r\n").rstrip(b"\r\n") + b"\r\n\r\n" + b'{"a":1')
        t = time.monotonic()
        for _ in range(5):
            alive()
            expect_eq(get("/v1/jobs?limit=1").status, 200, "list while 8 bodies hang")
        took = time.monotonic() - t
        check("8 half-sent bodies held open", took < 5, round(took, 2))
    finally:
        for s_ in hang:
            s_.close()
    # Content-Length smaller than what is sent: the rest is a (bad) next request.
    body = json.dumps({"adapter": "replicate", "model": "acme/flux", "input": {"prompt": "x"}}).encode()
    code = raw(post_raw("", extra=f"Content-Length: 10\r\nConnection: close\r\n").rstrip(b"\r\n")
               + b"\r\n\r\n" + body)
    check("Content-Length under what is sent", code == 400, code)
    alive()
    code = raw(post_raw("", extra="Content-Length: -5\r\n").rstrip(b"\r\n") + b"\r\n\r\n")
    check("negative Content-Length", code in (400, 411, 413), code)
    code = raw(post_raw("", extra="Content-Length: 99999999999999999999999\r\n").rstrip(b"\r\n") + b"\r\n\r\n")
    check("huge Content-Length", code in (400, 413), code)
    # Deep JSON.
    deep = b'{"adapter":"replicate","model":"acme/flux","input":{"prompt":"x","d":' + b"[" * 10000 \
        + b"]" * 10000 + b"}}"
    r = request("POST", "/v1/jobs", body=deep, headers={"Content-Type": "application/json"})
    expect_problem(r, 400)
    check("deep json", True, r.status)
    # Numbers out of range: accepted or refused, never a crash.
    for lit in (b"1e999", b"-0", b"18446744073709551616", b"-1e-999", b"1" * 5000, b"0.0000e-99999"):
        body = b'{"adapter":"replicate","model":"acme/flux","input":{"prompt":"x","n":' + lit + b"}}"
        r = request("POST", "/v1/jobs", body=body, headers={"Content-Type": "application/json"})
        ok = r.status in (202, 400, 422)
        if r.status != 202:
            expect_problem(r, (400, 422))
        else:
            post(f"/v1/jobs/{r.json['id']}/cancel")
        check(f"number {lit[:20].decode()}", ok, r.status)
    for field in (b'"metadata":{"k":1e999}', b'"renditions":[1e999]', b'"metadata":{"k":18446744073709551616}'):
        body = b'{"adapter":"replicate","model":"acme/flux","input":{"prompt":"x"},' + field + b"}"
        r = request("POST", "/v1/jobs", body=body, headers={"Content-Type": "application/json"})
        if r.status == 202:
            post(f"/v1/jobs/{r.json['id']}/cancel")
        else:
            expect_problem(r, (400, 422))
        check(f"field {field[:24].decode()}", r.status in (202, 400, 422), r.status)
    alive()
    expect_eq(fcgi_pids(), pids, "FastCGI processes after the hostile requests")
    # Memory stays bounded: 2000 more hostile requests.
    for _ in range(100):
        request("POST", "/v1/jobs", body=deep, headers={"Content-Type": "application/json"})
    rss0 = {p: rss_kib(p) for p in pids}
    bodies = [deep, b'{"input":"\xff"}', b'{"adapter":"replicate","model":"acme/flux","input":{"n":1e999}}',
              b"{" * 3000, b'{"adapter":' + b'"' + b"x" * 500000 + b'"}', b"[" + b"1," * 100000 + b"1]"]
    t0 = time.monotonic()
    statuses_seen = {}
    for i in range(2000):
        b = bodies[i % len(bodies)]
        r = request("POST", "/v1/jobs", body=b, headers={"Content-Type": "application/json"})
        statuses_seen[r.status] = statuses_seen.get(r.status, 0) + 1
        if r.status == 202:
            post(f"/v1/jobs/{r.json['id']}/cancel")
    rss1 = {p: rss_kib(p) for p in pids}
    growth = {p: rss1[p] - rss0[p] for p in pids}
    note(f"chaos hostile: 2000 requests in {time.monotonic() - t0:.1f}s, answers {statuses_seen};"
         f" RSS KiB before {rss0} after {rss1}")
    note("chaos hostile: results " + ", ".join(f"{k}={v}" for k, v in results.items()))
    if any(under_asan(p) for p in pids):
        note("chaos hostile: AddressSanitizer build, RSS bound left to LeakSanitizer at exit")
    else:
        check("memory bounded", all(g < 2048 for g in growth.values()), growth)
    expect(500 not in statuses_seen, f"500 answers: {statuses_seen}")
    expect_eq(fcgi_pids(), pids, "FastCGI processes after 2000 hostile requests")
    summary("hostile requests", tried + 2000, failed, 0)


# ------------------------------------------------------------ contention


@case("contention: one job canceled, retried and webhooked from 8 threads; consistent end")
def _():
    fake_reset(start_delay=0.05, duration=0.3, drop_webhooks=0.5)
    w1 = Worker(2, "chaos-cont-1")
    w2 = Worker(2, "chaos-cont-2")
    ids = []
    five = []
    errors = []
    try:
        for rnd in range(6):
            jid = create({"fake_output": "url", "fake_duration": 1.5})
            ids.append(jid)
            # Wait for the prediction so webhooks can name it.
            j = wait_until(lambda: (lambda x: x if x.get("prediction") else None)(job(jid)),
                           timeout=20, what="the prediction")
            pid = j["prediction"]["id"]
            stop = time.monotonic() + 4

            def body_for(status):
                pred = {"id": pid, "status": status, "model": "acme/flux", "version": None,
                        "input": {"prompt": "a lighthouse"}, "logs": "", "error": None,
                        "output": [f"{FAKE}/files/{pid}/out-0.png"] if status == "succeeded" else None,
                        "metrics": {"predict_time": 0.5} if status == "succeeded" else {},
                        "created_at": "2026-11-23T10:00:00Z"}
                if status == "failed":
                    pred["error"] = "boom"
                return json.dumps(pred).encode()

            def actor(k):
                rng = random.Random(rnd * 100 + k)
                while time.monotonic() < stop:
                    try:
                        act = rng.choice(("cancel", "retry", "hook", "get"))
                        if act == "cancel":
                            r = post(f"/v1/jobs/{jid}/cancel", timeout=15)
                        elif act == "retry":
                            r = post(f"/v1/jobs/{jid}/retry", timeout=15)
                        elif act == "hook":
                            b = body_for(rng.choice(("processing", "succeeded", "failed", "canceled")))
                            r = hook(b, sign(b), job_hint=jid)
                        else:
                            r = get(f"/v1/jobs/{jid}", timeout=15)
                        if r.status >= 500:
                            five.append((act, r.status, r.body[:200]))
                    except Exception as e:  # noqa: BLE001
                        errors.append(f"{type(e).__name__}: {e}")
                    time.sleep(rng.uniform(0, 0.05))

            threads = [threading.Thread(target=actor, args=(k,)) for k in range(8)]
            for t in threads:
                t.start()
            for t in threads:
                t.join()
        st = wait_final(ids, 60)
        time.sleep(1)  # anything still in flight lands now
        st2 = statuses(ids)
    finally:
        stop_worker(w1)
        stop_worker(w2)
    if five:
        dl = sql("SHOW ENGINE INNODB STATUS")
        text = "\n".join("\t".join(r) for r in dl).replace("\\n", "\n")
        i = text.find("LATEST DETECTED DEADLOCK")
        note(f"chaos contention: {len(five)} 5xx answers: {five[:3]}")
        note("chaos contention: InnoDB " + (text[i:i + 1500].replace("\n", " | ") if i >= 0
                                            else "reports no deadlock"))
        five_log = [ln for ln in open(os.environ["DARKROOM_APP_LOG"], errors="replace")
                    if "level=error" in ln]
        note(f"chaos contention: app.log error lines: {len(five_log)} {five_log[:2]}")
    expect(not errors, f"request errors under contention: {errors[:3]}")
    expect_eq(st2, st, "statuses moved after they were final and nothing acted")
    # Events: a chain (each from equals the previous to), never backwards
    # except an explicit retry, which starts a final job again at the step
    # that failed (queued, or persisting when storing failed).
    bad_seq = []
    for jid in ids:
        prev = None
        for kind, frm, to, detail in events(jid):
            if not to:
                continue
            if prev is not None and frm and frm != prev:
                bad_seq.append(f"{jid}: {kind} {frm}->{to} after {prev}")
            if frm and RANK[to] < RANK[frm] and not (
                    kind == "retry" and frm in FINAL and to in ("queued", "persisting")):
                bad_seq.append(f"{jid}: backwards {kind} {frm}->{to}")
            prev = to
        if prev is not None and prev != st[jid]:
            bad_seq.append(f"{jid}: last event to {prev}, status {st[jid]}")
    note("chaos contention: final statuses " + ", ".join(sorted(st.values())))
    note(f"chaos contention: event-sequence problems {len(bad_seq)}: {bad_seq[:4]}")
    try:
        lost = check_invariants(ids)
        inv = None
    except Fail as e:
        lost, inv = 0, e
    summary("contention", len(ids), len({b.split(':')[0] for b in bad_seq}) + len(five)
            + (1 if inv else 0), lost)
    if inv:
        raise inv
    # Webhooks of a prediction from before a retry moving the new attempt.
    stale = 0
    for jid in ids:
        preds = []
        for kind, frm, to, detail in events(jid):
            if kind == "retry":
                preds.append(None)
            try:
                d = json.loads(detail) if detail else {}
            except ValueError:
                d = {}
            p = d.get("prediction") if isinstance(d, dict) else None
            if kind != "webhook" or not p or not to:
                if p and kind == "submit":
                    preds.append(p)
                continue
            if p in preds[:-1] and preds and preds[-1] != p:
                stale += 1
    note(f"chaos contention: status changes by webhooks of a superseded prediction: {stale}")
    expect(not bad_seq, f"event sequences: {bad_seq[:5]}")
    expect(not five, f"5xx answers under contention: {five[:3]}")
    # A succeeded job has its outputs (checked); a failed one an error;
    # a canceled one no pending outputs.
    for jid in ids:
        if st[jid] == "canceled":
            n = sql(f"SELECT COUNT(*) FROM outputs WHERE job_id = '{jid}' AND state = 'pending'")[0][0]
            expect_eq(n, "0", f"{jid}: pending outputs of a canceled job")


@case("chaos summary")
def _():
    print("# chaos: case | tried | failed | lost", flush=True)
    for name, tried, failed, lost in SUMMARY:
        print(f"# chaos: {name} | {tried} | {failed} | {lost}", flush=True)


run()
