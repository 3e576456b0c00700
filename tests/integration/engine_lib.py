"""tests/integration/engine_lib.py — helpers shared by the integration
tests that run jobs end to end: the fake Replicate's control API, worker
pools, job creation and waiting, and Standard Webhooks signing.
"""

import base64
import hashlib
import hmac
import json
import os
import signal
import socket
import subprocess
import sys
import time
import urllib.request

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
from harness import expect, expect_eq, expect_json, get, post, request, sql, wait_until  # noqa: E402

FAKE = os.environ["DARKROOM_FAKE_REPLICATE"]
SECRET = os.environ["DARKROOM_REPLICATE_SECRET"]
SECRET_PREV = os.environ["DARKROOM_REPLICATE_SECRET_PREV"]
BIN = os.environ["DARKROOM_BIN"]
WORK = os.environ.get("DARKROOM_TEST_DIR", "/tmp")

FINAL = ("succeeded", "failed", "canceled")


# ------------------------------------------------------------ the fake


def fake(path, body=None):
    data = None if body is None else json.dumps(body).encode()
    req = urllib.request.Request(FAKE + path, data=data, method="POST" if data is not None else "GET",
                                 headers={"Content-Type": "application/json"})
    with urllib.request.urlopen(req, timeout=30) as r:
        raw = r.read()
    return json.loads(raw) if raw else None


def fake_reset(**faults):
    fake("/_reset", {})
    settings = {"start_delay": 0.1, "duration": 0.5}
    settings.update(faults)
    fake("/_control", settings)


def creates_by_job():
    counts = {}
    for c in fake("/_state")["creates"]:
        if c.get("job"):
            counts[c["job"]] = counts.get(c["job"], 0) + 1
    return counts


# ------------------------------------------------------------ workers


class Worker:
    """A `darkroom worker` supervisor with N processes, logs in WORK, with
    ENV added to this process's environment."""

    def __init__(self, processes=2, name="worker", env=None):
        self.name = name
        self.log_path = os.path.join(WORK, f"{name}.log")
        self.log = open(self.log_path, "ab")
        full_env = dict(os.environ)
        full_env.update(env or {})
        self.proc = subprocess.Popen([BIN, "worker", "--processes", str(processes)],
                                     stdout=self.log, stderr=subprocess.STDOUT, env=full_env,
                                     stdin=subprocess.DEVNULL, start_new_session=True)

    def children(self):
        out = subprocess.run(["pgrep", "-P", str(self.proc.pid)], capture_output=True, text=True)
        return sorted(int(p) for p in out.stdout.split())

    def stop(self, timeout=20):
        if self.proc.poll() is None:
            self.proc.send_signal(signal.SIGTERM)
            try:
                self.proc.wait(timeout=timeout)
            except subprocess.TimeoutExpired:
                os.killpg(self.proc.pid, signal.SIGKILL)
                self.proc.wait()
        # No process of the group may outlive the supervisor.
        try:
            os.killpg(self.proc.pid, 0)
            leftover = True
        except ProcessLookupError:
            leftover = False
        self.log.close()
        return leftover

    def log_text(self):
        with open(self.log_path, errors="replace") as f:
            return f.read()


def with_worker(processes=2):
    """Decorator: run the case with a worker pool, stopped afterwards."""

    def wrap(fn):
        def inner():
            w = Worker(processes)
            try:
                fn(w)
            finally:
                leftover = w.stop()
            expect(not leftover, "worker processes outlived the supervisor")
        return inner

    return wrap


# ------------------------------------------------------------ jobs


def create(inp=None, model="acme/flux", **extra):
    body = {"adapter": "replicate", "model": model, "input": {"prompt": "a lighthouse"}}
    if inp:
        body["input"].update(inp)
    body.update(extra)
    return expect_json(post("/v1/jobs", body), 202)["id"]


def job(jid):
    return expect_json(get(f"/v1/jobs/{jid}"), 200)


def wait_status(ids, statuses, timeout=30):
    ids = list(ids)
    pending = set(ids)

    def check():
        for jid in list(pending):
            if job(jid)["status"] in statuses:
                pending.discard(jid)
        return not pending

    wait_until(check, timeout=timeout, interval=0.25,
               what=f"{len(pending)} of {len(ids)} jobs reaching {statuses}")
    return [job(j) for j in ids]


def outputs_of(jid):
    return sql(f"SELECT idx, kind, state, COALESCE(source_url, 'NULL'),"
               f" LEFT(COALESCE(source, ''), 30), COALESCE(text, 'NULL')"
               f" FROM outputs WHERE job_id = '{jid}' ORDER BY idx")


def events_of(jid):
    return sql(f"SELECT kind, COALESCE(from_status, ''), COALESCE(to_status, ''),"
               f" COALESCE(detail, '') FROM job_events WHERE job_id = '{jid}' ORDER BY id")


def expect_once(ids):
    counts = creates_by_job()
    for jid in ids:
        expect_eq(counts.get(jid, 0), 1, f"creates at the provider for {jid}")


# ------------------------------------------------------------ signing


def sign(body, msg_id=None, ts=None, secret=SECRET):
    msg_id = msg_id or "msg_" + os.urandom(8).hex()
    ts = int(time.time()) if ts is None else ts
    key = base64.b64decode(secret.split("_", 1)[1])
    mac = hmac.new(key, f"{msg_id}.{ts}.".encode() + body, hashlib.sha256).digest()
    return {"webhook-id": msg_id, "webhook-timestamp": str(ts),
            "webhook-signature": "v1," + base64.b64encode(mac).decode(),
            "Content-Type": "application/json"}


def hook(body, headers, job_hint=None):
    path = "/v1/hooks/replicate" + (f"?job={job_hint}" if job_hint else "")
    return request("POST", path, body=body, headers=headers, key=None)




# ------------------------------------------------------------ s3rver

S3RVER_BIN = os.environ.get("DARKROOM_S3RVER_BIN", "")
S3_BUCKET = os.environ.get("DARKROOM_S3_TEST_BUCKET", "darkroom")


def free_port():
    s = socket.socket()
    s.bind(("127.0.0.1", 0))
    port = s.getsockname()[1]
    s.close()
    return port


def port_open(port):
    try:
        with socket.create_connection(("127.0.0.1", port), timeout=0.5):
            return True
    except OSError:
        return False


class S3rver:
    def __init__(self, name):
        self.port = free_port()
        self.dir = os.path.join(WORK, name)
        os.makedirs(self.dir, exist_ok=True)
        self.log = os.path.join(WORK, f"{name}.log")
        self.proc = None

    def start(self):
        with open(self.log, "ab") as log:
            self.proc = subprocess.Popen(
                ["node", S3RVER_BIN, "-d", self.dir, "-a", "127.0.0.1", "-p", str(self.port),
                 "--silent", "--configure-bucket", S3_BUCKET],
                stdout=log, stderr=subprocess.STDOUT, stdin=subprocess.DEVNULL, start_new_session=True)
        wait_until(lambda: port_open(self.port) or self.proc.poll() is not None, timeout=30,
                   what="s3rver listening")
        expect(self.proc.poll() is None, f"s3rver exited; see {self.log}")

    def stop(self):
        if self.proc and self.proc.poll() is None:
            self.proc.terminate()
            try:
                self.proc.wait(timeout=10)
            except subprocess.TimeoutExpired:
                self.proc.kill()
                self.proc.wait()
        self.proc = None
