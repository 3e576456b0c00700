#!/usr/bin/env python3
"""tests/integration/test_cli.py — the `darkroom` command line (CONTRACT §3)
against the test service: every subcommand's --help, usage errors (exit 2,
one line on stderr), `jobs list|show|retry|cancel` and `outputs` compared
with the HTTP API, an unreachable database (exit 1), `darkroom
reprocess` after presets are added: exactly the missing renditions are
made, a second run makes none, and a run interrupted with SIGINT is
finished by running it again, with no rendition made twice; `darkroom
prune` ([retention], defaults 24h and 7d): --dry-run counts and changes
nothing, a run removes exactly the expired idempotency keys and webhook
delivery ids, and an idempotent request repeated after its key expired
makes a new job; `jobs show` lists a job's callback delivery and its
tries, and `jobs retry --callback` sends the callback again.
"""

import http.server
import json
import os
import re
import signal
import subprocess
import sys
import threading
import time
import urllib.error
import urllib.request

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
from harness import (callback_row, case, expect, expect_eq, expect_json, get, post, run,  # noqa: E402
                     settle_callback, sql, wait_until)
from engine_lib import Worker, create, fake_reset, wait_status  # noqa: E402

BIN = os.environ["DARKROOM_BIN"]
CONF = os.environ["DARKROOM_CONF"]
MEDIA = os.environ["DARKROOM_MEDIA"]
MODEL = "acme/cli-test"
STATE = {}


def cli(*args, conf=CONF, timeout=120):
    p = subprocess.run([BIN, "--config", conf, *args], capture_output=True, text=True,
                       timeout=timeout, stdin=subprocess.DEVNULL)
    return p.returncode, p.stdout, p.stderr


def expect_usage(args):
    rc, out, err = cli(*args)
    expect_eq(rc, 2, f"exit status of {args}")
    expect_eq(len(err.strip().splitlines()), 1, f"stderr lines of {args}: {err!r}")


def conf_with(name, extra="", replace=None):
    """A copy of the test config next to it, with EXTRA appended."""
    with open(CONF) as f:
        text = f.read()
    for old, new in (replace or {}).items():
        text = text.replace(old, new)
    path = os.path.join(os.path.dirname(CONF), name)
    with open(path, "w") as f:
        f.write(text + "\n" + extra)
    return path


def preset(name, width):
    return f'[preset "{name}"]\nwidth = {width}\nheight = {width}\nfit = inside\nformat = webp\nquality = 70\n'


def image_outputs():
    return [r[0] for r in sql(
        "SELECT o.id FROM outputs o JOIN jobs j ON j.id = o.job_id"
        f" WHERE o.kind = 'image' AND o.state = 'stored' AND j.model = '{MODEL}' ORDER BY o.id")]


def renditions(name):
    return sql(f"SELECT r.output_id, r.storage_key, r.created_at FROM renditions r"
               f" JOIN outputs o ON o.id = r.output_id JOIN jobs j ON j.id = o.job_id"
               f" WHERE r.name = '{name}' AND j.model = '{MODEL}' ORDER BY r.output_id")


# ------------------------------------------------------------ set-up


@case("set-up: image jobs run to succeeded with renditions [thumb]")
def _():
    fake_reset()
    w = Worker(2, name="cli-worker")
    try:
        ids = [create({"fake_width": 900, "fake_height": 700, "fake_seed": i}, model=MODEL,
                      renditions=["thumb"], metadata={"suite": "cli", "half": str(i % 2)})
               for i in range(6)]
        jobs = wait_status(ids, ("succeeded", "failed", "canceled"), timeout=60)
    finally:
        w.stop()
    expect_eq([j["status"] for j in jobs], ["succeeded"] * 6, "statuses")
    STATE["ids"] = ids


# ------------------------------------------------------------ usage


@case("every command and subcommand answers --help with exit 0")
def _():
    for args in (["--help"], ["migrate", "--help"], ["worker", "--help"],
                 ["config", "check", "--help"], ["plugins", "list", "--help"],
                 ["version", "--help"], ["jobs", "--help"], ["jobs", "list", "--help"],
                 ["jobs", "show", "--help"], ["jobs", "retry", "--help"],
                 ["jobs", "cancel", "--help"], ["outputs", "--help"],
                 ["reprocess", "--help"], ["prune", "--help"]):
        rc, out, err = cli(*args)
        expect_eq(rc, 0, f"exit status of {args}")
        expect("usage: darkroom" in out, f"usage text of {args}: {out[:200]!r}")


@case("jobs list --help names the seven statuses, as the API's error does")
def _():
    rc, out, _ = cli("jobs", "list", "--help")
    expect_eq(rc, 0, "exit status")
    expect("queued, starting, processing, persisting, succeeded, failed, canceled" in out,
           f"the statuses in jobs list --help: {out!r}")


@case("help COMMAND: a command's --help, a group's subcommands; help of nothing known: exit 2")
def _():
    for words in (["jobs", "list"], ["outputs"], ["reprocess"], ["config", "check"], ["version"]):
        rc, out, _ = cli("help", *words)
        want = cli(*words, "--help")[1]
        expect_eq((rc, out), (0, want), f"help {' '.join(words)}")
        expect(out.startswith("usage: darkroom " + " ".join(words)), f"help {words}: {out[:80]!r}")
    rc, out, _ = cli("help", "jobs")
    expect(rc == 0 and all(w in out for w in ("list", "show", "retry", "cancel")),
           f"help jobs: {rc} {out!r}")
    rc, out, _ = cli("help")
    expect(rc == 0 and "help COMMAND" in out and "jobs list" in out, f"help: {rc} {out[:200]!r}")
    for args in (["help", "nonsense"], ["help", "jobs", "frob"], ["help", "version", "extra"]):
        expect_usage(args)


@case("bad arguments: exit 2 and one line on stderr")
def _():
    for args in (["nonsense"], ["jobs"], ["jobs", "frob"], ["jobs", "list", "--limit", "0"],
                 ["jobs", "list", "--limit", "abc"], ["jobs", "list", "--limit"],
                 ["jobs", "list", "--status", "done"], ["jobs", "list", "--cursor", "x"],
                 ["jobs", "list", "--bogus"], ["jobs", "show"], ["jobs", "show", "a", "b"],
                 ["jobs", "retry"], ["jobs", "cancel", "--force"],
                 ["outputs", "--sha256", "xyz"], ["outputs", "--since", "yesterday"],
                 ["outputs", "--metadata", "novalue"], ["outputs", "-q", ""],
                 ["outputs", "--limit", "101"], ["outputs", "--cursor", "j_1"],
                 ["reprocess"], ["reprocess", "--all", "--model", "x"],
                 ["reprocess", "--job", "nope"], ["reprocess", "--model", MODEL, "--preset", "nope"],
                 ["reprocess", "--until", "soon"], ["version", "extra"],
                 ["config", "frob"], ["plugins", "frob"],
                 ["jobs", "list", "--model", "a/b", "--model", "a/c"],
                 ["outputs", "--limit", "5", "--limit", "5"],
                 ["config"], ["plugins"], ["migrate", "--dir"], ["worker", "--processes"]):
        expect_usage(args)
    # The filters are checked by the API's code; the line names the option.
    for args, opt in ((["jobs", "list", "--status", "done"], "--status:"),
                      (["outputs", "--until", "soon"], "--until:"),
                      (["jobs", "list", "--model", "a/b", "--model", "a/c"], "--model:")):
        rc, out, err = cli(*args)
        expect(opt in err and "\n" not in err.strip(), f"stderr of {args}: {err!r}")


@case("version, config check and plugins list")
def _():
    rc, out, _ = cli("version")
    expect_eq(rc, 0, "version exit")
    expect(re.match(r"darkroom \S+ \(plugin ABI \d+\)", out), f"version: {out!r}")
    rc, out, _ = cli("config", "check")
    expect_eq((rc, out.startswith("ok: ")), (0, True), f"config check: {out!r}")
    rc, out, _ = cli("plugins", "list")
    expect_eq(rc, 0, "plugins list exit")
    expect("replicate" in out and "fs" in out, f"plugins list: {out!r}")


@case("without --config or DARKROOM_CONF: the checkout's conf/darkroom.conf, installed /etc/darkroom")
def _():
    root = os.path.dirname(os.path.dirname(os.path.dirname(os.path.abspath(__file__))))
    env = {k: v for k, v in os.environ.items() if not k.startswith(("DARKROOM_", "REPLICATE_"))}
    bin_dir = os.path.dirname(os.path.realpath(BIN))
    in_checkout = os.path.dirname(bin_dir) == root
    scratch = os.path.join(os.environ["DARKROOM_TEST_DIR"], "cli-bin")
    os.makedirs(scratch, exist_ok=True)
    # The same program outside any checkout (as installed) looks in /etc.
    copy = os.path.join(scratch, "darkroom")
    subprocess.run(["cp", BIN, copy], check=True)
    for prog, want in ((BIN, os.path.join(root, "conf", "darkroom.conf") if in_checkout else None),
                       (copy, "/etc/darkroom/darkroom.conf")):
        if want is None:
            continue
        p = subprocess.run([prog, "config", "check"], capture_output=True, text=True,
                           env=env, cwd="/", timeout=60, stdin=subprocess.DEVNULL)
        said = p.stdout + p.stderr
        if want.startswith("/etc/") and os.path.exists(want):
            expect(want in said, f"{prog} config check: {said!r}")
        elif want.startswith("/etc/"):
            expect(p.returncode == 1 and want in said and "--config" in said,
                   f"{prog} outside a checkout: {p.returncode} {said!r}")
        else:
            # ok, or an error about that file (build/plugins may be missing
            # when only another build folder was made): never /etc.
            expect(said.startswith(("ok: " + want, "darkroom: " + want)) and "/etc/" not in said,
                   f"{prog} in the checkout, from /: {p.returncode} {said!r}")
    if in_checkout and os.path.isdir(os.path.join(root, "build", "plugins")):
        p = subprocess.run([BIN, "plugins", "list"], capture_output=True, text=True,
                           env=env, cwd="/", timeout=60, stdin=subprocess.DEVNULL)
        expect(p.returncode == 0 and "exec" in p.stdout,
               f"plugins list from /: {p.returncode} {p.stdout + p.stderr!r}")


@case("an unreachable database: exit 1, 'database unavailable' on one line")
def _():
    with open(CONF) as f:
        sock = re.search(r"^socket = (.*)$", f.read(), re.M).group(1)
    bad = conf_with("cli-nodb.conf", replace={f"socket = {sock}": "socket = /nonexistent/db.sock"})
    for args in (["jobs", "list"], ["jobs", "show", STATE["ids"][0]], ["outputs"],
                 ["jobs", "cancel", STATE["ids"][0]]):
        rc, out, err = cli(*args, conf=bad)
        expect_eq(rc, 1, f"exit status of {args}")
        lines = err.strip().splitlines()
        expect(len(lines) == 1 and "database unavailable:" in lines[0], f"stderr of {args}: {err!r}")


def stored_secret():
    """The webhook secret [adapter "replicate2"] (none configured) keeps in plugin_kv."""
    rows = sql("SELECT v FROM plugin_kv WHERE instance = 'replicate2' AND k = 'webhook_secret'")
    return rows[0][0] if rows else None


@case("migrate also stores the adapters' upkeep data: replicate's webhook secret, before any worker ran")
def _():
    fake_reset()
    sql("DELETE FROM plugin_kv WHERE instance = 'replicate2'")
    rc, out, err = cli("migrate")
    expect_eq(rc, 0, f"exit status of migrate: {err!r}")
    expect_eq(err, "", "stderr of migrate")
    expect_eq(stored_secret(), os.environ["DARKROOM_REPLICATE_SECRET"], "the stored secret")


@case("migrate with Replicate's secret endpoint failing: exit 0, one warning line, nothing stored")
def _():
    fake_reset(fault_endpoints=["secret"], error_rate=1)
    try:
        sql("DELETE FROM plugin_kv WHERE instance = 'replicate2'")
        rc, out, err = cli("migrate")
        expect_eq(rc, 0, f"exit status of migrate: {err!r}")
        lines = err.strip().splitlines()
        expect(len(lines) == 1 and lines[0].startswith("darkroom migrate: warning: ")
               and '[adapter "replicate2"]' in lines[0], f"stderr of migrate: {err!r}")
        expect("r8_fake" not in err, "the token in the warning")
        expect_eq(stored_secret(), None, "a stored secret")
    finally:
        fake_reset()


@case("--metadata: KEY=VALUE, valid keys, at most 16, no key twice (exit 2, one line)")
def _():
    for cmd in (["jobs", "list"], ["outputs"]):
        for args in (["--metadata", "novalue"], ["--metadata", "=1"], ["--metadata", "a b=1"],
                     ["--metadata", "-a=1"], ["--metadata", "k" * 65 + "=1"],
                     ["--metadata", "a=" + "x" * 4096],
                     ["--metadata", "a=1", "--metadata", "a=2"],
                     ["--metadata", "a=1", "--metadata", "A=1"],
                     [a for i in range(17) for a in ("--metadata", f"k{i}=1")], ["--metadata"]):
            expect_usage(cmd + args)
    rc, out, err = cli("jobs", "list", "--metadata", "a=1", "--metadata", "a=2")
    expect("--metadata a=2" in err, f"stderr names the filter: {err!r}")
    for cmd in (["jobs", "list"], ["outputs"]):
        rc, out, _ = cli(*cmd, "--help")
        expect("--metadata K=V" in out and "repeat" in out, f"{cmd} --help: {out!r}")


# ------------------------------------------------------------ jobs


@case("jobs list: an aligned table of the API's jobs; --json is GET /v1/jobs")
def _():
    rc, out, err = cli("jobs", "list", "--model", MODEL, "--limit", "100")
    expect_eq(rc, 0, f"exit ({err})")
    lines = out.rstrip("\n").splitlines()
    head = lines[0]
    cols = ["ID", "STATUS", "ADAPTER", "MODEL", "PROGRESS", "CREATED", "ERROR"]
    starts = [head.index(c) for c in cols]
    expect_eq(starts, sorted(starts), "heading order")
    expect_eq(len(lines) - 1, 6, "rows")
    for line in lines[1:]:
        for p in starts[1:]:
            expect(line[p - 1] == " " and line[p] != " ", f"column at {p} in {line!r}")
        expect(line.split()[0] in STATE["ids"], f"id of {line!r}")
        expect("succeeded" in line and "100%" in line, f"row {line!r}")
    STATE["sample"] = out
    with open(os.path.join(os.path.dirname(CONF), "jobs-list-sample.txt"), "w") as f:
        f.write(out)
    rc, out, _ = cli("jobs", "list", "--model", MODEL, "--limit", "4", "--json")
    expect_eq(rc, 0, "--json exit")
    api = expect_json(get(f"/v1/jobs?model={MODEL}&limit=4"), 200)
    expect_eq(json.loads(out), api, "--json against GET /v1/jobs")
    rc, out, _ = cli("jobs", "list", "--status", "failed", "--model", MODEL)
    expect_eq((rc, out.strip().splitlines()[1:]), (0, []), "no failed jobs")


@case("jobs list --metadata K=V, repeatable: the jobs with all of them, like the API")
def _():
    rc, out, err = cli("jobs", "list", "--metadata", "suite=cli", "--metadata", "half=1", "--json")
    expect_eq(rc, 0, f"exit ({err})")
    api = expect_json(get("/v1/jobs?metadata.suite=cli&metadata.half=1"), 200)
    expect_eq(json.loads(out), api, "--json against GET /v1/jobs")
    expect_eq(sorted(j["id"] for j in api["data"]), sorted(STATE["ids"][1::2]), "jobs with half=1")
    rc, out, err = cli("jobs", "list", "--metadata", "suite=cli", "--model", MODEL, "--limit", "100")
    expect_eq(rc, 0, f"exit ({err})")
    expect_eq(sorted(line.split()[0] for line in out.strip().splitlines()[1:]), sorted(STATE["ids"]),
              "table rows with suite=cli")
    rc, out, _ = cli("jobs", "list", "--metadata", "suite=cli", "--metadata", "half=2")
    expect_eq((rc, out.strip().splitlines()[1:]), (0, []), "no job has half=2")


@case("jobs show: the job, its events and its outputs with renditions")
def _():
    jid = STATE["ids"][0]
    rc, out, err = cli("jobs", "show", jid)
    expect_eq(rc, 0, f"exit ({err})")
    for want in (f"id           {jid}", "status       succeeded", "EVENTS", "OUTPUTS",
                 "created", "persisting\u2192succeeded", "  thumb", "image/png"):
        expect(want in out, f"{want!r} in {out!r}")
    rc, out, _ = cli("jobs", "show", jid, "--json")
    expect_eq(json.loads(out), expect_json(get(f"/v1/jobs/{jid}"), 200), "--json")
    rc, out, err = cli("jobs", "show", "j_01JD3M6X2Q8Y7R5T4W3V2B1N0C")
    expect_eq(rc, 1, "unknown job")
    expect(err.strip().endswith("no job with id j_01JD3M6X2Q8Y7R5T4W3V2B1N0C"), err)


@case("jobs cancel / retry: 0 with the new status, 1 for unknown ids and conflicts")
def _():
    done = STATE["ids"][0]
    rc, _, err = cli("jobs", "cancel", done)
    expect_eq(rc, 1, "cancel a succeeded job")
    expect("already ended" in err and len(err.strip().splitlines()) == 1, err)
    rc, _, err = cli("jobs", "retry", done)
    expect_eq(rc, 1, "retry a succeeded job")
    expect("only failed or canceled" in err, err)
    rc, _, err = cli("jobs", "retry", "j_01JD3M6X2Q8Y7R5T4W3V2B1N0C")
    expect_eq((rc, "no job with id" in err), (1, True), f"retry unknown: {err}")
    rc, _, err = cli("jobs", "cancel", "nope")
    expect_eq((rc, "no job with id" in err), (1, True), f"cancel unknown: {err}")
    # No worker runs now: a new job stays queued.
    jid = create(model="acme/cli-cancel", renditions=["thumb"])
    rc, out, _ = cli("jobs", "cancel", jid)
    expect_eq((rc, out.strip()), (0, f"{jid} canceled"), "cancel queued")
    rc, out, _ = cli("jobs", "retry", jid)
    expect_eq((rc, out.strip()), (0, f"{jid} queued"), "retry canceled")
    rc, out, _ = cli("jobs", "cancel", jid)
    expect_eq((rc, out.strip()), (0, f"{jid} canceled"), "cancel again")
    # A queued job with a callback_url canceled from the command line owes
    # its callback like any other end: pending and due now for a worker.
    jid = create(model="acme/cli-cancel", renditions=["thumb"], callback_url="https://app.example.com/cb")
    rc, out, _ = cli("jobs", "cancel", jid)
    expect_eq((rc, out.strip()), (0, f"{jid} canceled"), "cancel queued with a callback_url")
    expect_eq(sql(f"SELECT d.state, d.next_at <= NOW(6), j.run_at IS NOT NULL AND j.run_at <= NOW(6)"
                  f" FROM callback_deliveries d JOIN jobs j ON j.id = d.job_id WHERE d.job_id = '{jid}'"),
              [["pending", "1", "1"]], "callback pending and due")
    settle_callback(jid)  # no worker for it here


class Receiver:
    """A callback receiver on 127.0.0.1 answering STATUSES in turn (the
    last from then on); counts the requests."""

    def __init__(self, statuses):
        outer = self
        self.statuses, self.count = list(statuses), 0

        class Handler(http.server.BaseHTTPRequestHandler):
            def log_message(self, *a):
                pass

            def do_POST(self):
                self.rfile.read(int(self.headers.get("Content-Length") or 0))
                status = outer.statuses[min(outer.count, len(outer.statuses) - 1)]
                outer.count += 1
                self.send_response(status)
                self.send_header("Content-Length", "0")
                self.end_headers()

        self.server = http.server.HTTPServer(("127.0.0.1", 0), Handler)
        self.port = self.server.server_address[1]
        self.thread = threading.Thread(target=self.server.serve_forever, daemon=True)
        self.thread.start()

    def close(self):
        self.server.shutdown()
        self.server.server_close()


def show_field(out, name):
    """The value of field NAME in `jobs show` output."""
    for line in out.splitlines():
        if line.startswith(f"{name} ") and line[:12].strip() == name:
            return line[12:].strip()
    return None


@case("jobs show: the callback's delivery and its tries; jobs retry --callback sends it again (the same webhook-id)")
def _():
    fake_reset()
    rx = Receiver([410, 200])
    w = None
    url = f"http://127.0.0.1:{rx.port}/cb"
    try:
        jid = create(model="acme/cli-callback", renditions=["thumb"], callback_url=url)
        rc, out, err = cli("jobs", "retry", "--callback", jid)
        expect_eq(rc, 1, "retry --callback of a job that has not ended")
        expect("has not ended" in err and len(err.strip().splitlines()) == 1, err)
        rc, out, _ = cli("jobs", "show", jid)
        expect_eq((show_field(out, "callback"), show_field(out, "delivery")),
                  (url, "none, 0 attempts, last status -, next try -"), "a queued job's callback")
        expect("CALLBACK ATTEMPTS" not in out, out)
        expect_eq(cli("jobs", "cancel", jid)[0], 0, "cancel")
        rc, out, err = cli("jobs", "retry", "--callback", jid)
        expect_eq(rc, 1, "retry --callback of a callback still pending")
        expect("still being delivered" in err and len(err.strip().splitlines()) == 1, err)
        rc, out, _ = cli("jobs", "show", jid)
        expect(show_field(out, "delivery").startswith("pending, 0 attempts, last status -, next try 2"),
               f"the pending delivery: {show_field(out, 'delivery')!r}")
        w = Worker(1, name="cli-callback-worker")
        wait_until(lambda: callback_row(jid) == ("failed", 1), timeout=30, what="the 410 given up")
        msg = sql(f"SELECT id FROM callback_deliveries WHERE job_id = '{jid}'")[0][0]
        rc, out, err = cli("jobs", "show", jid)
        expect_eq(rc, 0, f"show ({err})")
        expect_eq(show_field(out, "delivery"), "failed, 1 attempt, last status 410, next try -", "after the 410")
        expect("\nCALLBACK ATTEMPTS\n" in out, out)
        rows = [ln.split() for ln in out.split("\nCALLBACK ATTEMPTS\n")[1].splitlines()[1:] if ln.strip()]
        expect_eq([(r[0], r[1], r[5]) for r in rows], [(msg, "1", "410")], f"attempt rows {rows}")
        expect(out.split("\nCALLBACK ATTEMPTS\n")[1].splitlines()[0].split()
               == ["WEBHOOK-ID", "TRY", "STARTED", "MS", "STATUS", "ERROR"], out)
        expect("callback_gone" in out.split("\nCALLBACK ATTEMPTS\n")[1], out)
        rc, out, err = cli("jobs", "retry", "--callback", jid)
        expect_eq((rc, out.strip(), err), (0, f"{jid} callback pending", ""), "retry --callback")
        wait_until(lambda: callback_row(jid) == ("delivered", 2), timeout=30, what="the resend delivered")
        rc, out, _ = cli("jobs", "show", jid)
        expect_eq(show_field(out, "delivery"), "delivered, 2 attempts, last status 200, next try -",
                  "after the resend")
        rows = [ln.split() for ln in out.split("\nCALLBACK ATTEMPTS\n")[1].splitlines()[1:] if ln.strip()]
        expect_eq([(r[0], r[1], r[5]) for r in rows], [(msg, "1", "410"), (msg, "2", "200")],
                  f"attempt rows {rows}")
        expect_eq(rx.count, 2, "POSTs received")
    finally:
        if w:
            w.stop()
        rx.close()
    # A job without a callback_url, and no job at all: exit 1, one line.
    plain = create(model="acme/cli-callback", renditions=["thumb"])
    expect_eq(cli("jobs", "cancel", plain)[0], 0, "cancel")
    rc, out, err = cli("jobs", "show", plain)
    expect_eq((show_field(out, "callback"), show_field(out, "delivery")), ("-", "-"), "no callback")
    rc, _, err = cli("jobs", "retry", "--callback", plain)
    expect_eq(rc, 1, "retry --callback without a callback_url")
    expect("no callback_url" in err and len(err.strip().splitlines()) == 1, err)
    rc, _, err = cli("jobs", "retry", "--callback", "j_01JD3M6X2Q8Y7R5T4W3V2B1N0C")
    expect_eq((rc, "no job with id" in err), (1, True), f"unknown: {err}")


# ------------------------------------------------------------ outputs


@case("outputs: the search of GET /v1/outputs, as a table or --json")
def _():
    rc, out, _ = cli("outputs", "--model", MODEL, "--metadata", "suite=cli", "--limit", "100",
                     "--json")
    expect_eq(rc, 0, "exit")
    api = expect_json(get(f"/v1/outputs?model={MODEL}&metadata.suite=cli&limit=100"), 200)
    expect_eq(json.loads(out), api, "--json against the API")
    expect_eq(len(api["data"]), 6, "outputs")
    rc, out, _ = cli("outputs", "--model", MODEL, "--since", "2000-01-01")
    lines = out.strip().splitlines()
    expect_eq(lines[0].split()[:3], ["JOB", "IDX", "KIND"], "heading")
    expect_eq(sorted(line.split()[0] for line in lines[1:]), sorted(STATE["ids"]), "jobs")
    rc, out, _ = cli("outputs", "--model", MODEL, "--until", "2000-01-01")
    expect_eq((rc, len(out.strip().splitlines())), (0, 1), "nothing before 2000")


@case("outputs --metadata, repeatable: the outputs of jobs with all of them, like the API")
def _():
    rc, out, err = cli("outputs", "--metadata", "suite=cli", "--metadata", "half=0", "--limit", "100",
                       "--json")
    expect_eq(rc, 0, f"exit ({err})")
    api = expect_json(get("/v1/outputs?metadata.suite=cli&metadata.half=0&limit=100"), 200)
    expect_eq(json.loads(out), api, "--json against the API")
    expect_eq(sorted(o["job_id"] for o in api["data"]), sorted(STATE["ids"][0::2]), "outputs with half=0")
    rc, out, _ = cli("outputs", "--metadata", "half=1", "--metadata", "suite=other")
    expect_eq((rc, len(out.strip().splitlines())), (0, 1), "no job has suite=other")


# ------------------------------------------------------------ reprocess


@case("reprocess --preset extra: exactly one new rendition per image output, objects stored")
def _():
    outs = image_outputs()
    expect(len(outs) >= 6, f"image outputs: {len(outs)}")
    def count():
        return len(sql("SELECT 1 FROM renditions r JOIN outputs o ON o.id = r.output_id"
                       f" JOIN jobs j ON j.id = o.job_id WHERE j.model = '{MODEL}'"))

    before = count()
    conf = conf_with("cli-extra.conf", preset("extra", 96))
    rc, out, err = cli("reprocess", "--model", MODEL, "--preset", "extra", "--dry-run", conf=conf)
    expect_eq(rc, 0, f"dry run ({err})")
    expect(f"{len(outs)} renditions to make" in out, out)
    expect_eq(count(), before, "dry run stores nothing")
    rc, out, err = cli("reprocess", "--model", MODEL, "--preset", "extra", conf=conf)
    expect_eq(rc, 0, f"exit ({err})")
    expect(f"{len(outs)} renditions made" in out, out)
    expect(re.search(rf"^reprocess: {len(outs)}/{len(outs)} outputs, [\d.]+/s, ETA \d+ s$", err,
                     re.M), f"progress lines on stderr: {err!r}")
    rows = renditions("extra")
    expect_eq([r[0] for r in rows], outs, "one extra rendition per output")
    expect_eq(count(), before + len(outs), "total")
    for _, key, _ in rows:
        expect(re.search(r"/extra\.[0-9a-f]{8}\.webp$", key) and os.path.getsize(os.path.join(MEDIA, key)) > 0,
               f"object {key}")
    jid = STATE["ids"][0]
    names = [r["name"] for r in expect_json(get(f"/v1/jobs/{jid}"), 200)["outputs"][0]["renditions"]]
    expect_eq(sorted(names), ["extra", "thumb"], "renditions in the job object")
    rc, out, err = cli("reprocess", "--model", MODEL, "--preset", "extra", conf=conf)
    expect_eq(rc, 0, f"second run ({err})")
    expect("0 renditions made" in out, out)
    expect_eq(renditions("extra"), rows, "second run changed nothing")
    # The job's own list ([thumb]) is current everywhere.
    rc, out, _ = cli("reprocess", "--model", MODEL, conf=conf)
    expect_eq((rc, "0 renditions made" in out), (0, True), out)


@case("reprocess: a changed preset is made again; other presets stay")
def _():
    outs = [r[0] for r in sql(
        "SELECT o.id FROM outputs o WHERE o.job_id = '%s' AND o.kind = 'image'" % STATE["ids"][1])]
    conf = conf_with("cli-extra2.conf", preset("extra", 80))
    old = {r[0]: r for r in renditions("extra")}
    rc, out, err = cli("reprocess", "--job", STATE["ids"][1], "--preset", "extra", conf=conf)
    expect_eq(rc, 0, f"exit ({err})")
    expect(f"{len(outs)} renditions made" in out, out)
    new = {r[0]: r for r in renditions("extra")}
    for oid in new:
        expect_eq(new[oid] != old[oid], oid in outs, f"output {oid} remade")


@case("reprocess interrupted with SIGINT: a rerun finishes, nothing made twice")
def _():
    outs = image_outputs()
    conf = conf_with("cli-late.conf", preset("late", 200))
    p = subprocess.Popen([BIN, "--config", conf, "reprocess", "--model", MODEL, "--preset", "late"],
                         stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True,
                         stdin=subprocess.DEVNULL)
    first = p.stderr.readline()
    p.send_signal(signal.SIGINT)
    out, err = p.communicate(timeout=60)
    expect(first.startswith("reprocess: 1/"), f"first progress line: {first!r}")
    expect_eq(p.returncode, 130, f"interrupted exit ({err})")
    expect("interrupted" in err, err)
    partial = renditions("late")
    expect(0 < len(partial) < len(outs), f"{len(partial)} of {len(outs)} made before the stop")
    time.sleep(0.01)  # created_at of the rerun's renditions differ
    rc, out, err = cli("reprocess", "--model", MODEL, "--preset", "late", conf=conf)
    expect_eq(rc, 0, f"rerun ({err})")
    expect(f"{len(outs) - len(partial)} renditions made" in out, out)
    after = renditions("late")
    expect_eq([r[0] for r in after], outs, "one late rendition per output")
    for r in partial:
        expect(r in after, f"rendition of output {r[0]} made again")


@case("reprocess remakes a pipeline rendition byte for byte: same row, key and object")
def _():
    jid = STATE["ids"][2]
    cols = "r.output_id, r.name, r.storage_key, r.url, r.content_type, r.width, r.height, r.bytes, r.preset_hash"
    where = f" FROM renditions r JOIN outputs o ON o.id = r.output_id WHERE o.job_id = '{jid}' AND r.name = 'thumb'"
    made = sql(f"SELECT {cols}{where} ORDER BY r.output_id")
    expect(len(made) >= 1, f"thumb renditions of job {jid}: {made}")
    objects = {}
    for row in made:
        with open(os.path.join(MEDIA, row[2]), "rb") as f:
            objects[row[2]] = f.read()
        os.unlink(os.path.join(MEDIA, row[2]))
    at = sql(f"SELECT MAX(r.created_at){where}")[0][0]
    # The rows look stale, so reprocess makes them again.
    sql("UPDATE renditions r JOIN outputs o ON o.id = r.output_id SET r.preset_hash = '0000000000000000'"
        f" WHERE o.job_id = '{jid}' AND r.name = 'thumb'")
    time.sleep(0.01)
    rc, out, err = cli("reprocess", "--job", jid, "--preset", "thumb")
    expect_eq(rc, 0, f"exit ({err})")
    expect(f"{len(made)} renditions made" in out, out)
    expect_eq(sql(f"SELECT {cols}{where} ORDER BY r.output_id"), made, "rows as the pipeline wrote them")
    expect(sql(f"SELECT MIN(r.created_at){where}")[0][0] > at, "created_at of the rows made again")
    for key, body in objects.items():
        with open(os.path.join(MEDIA, key), "rb") as f:
            expect(f.read() == body, f"object {key}: the bytes the pipeline stored")


# ------------------------------------------------------------ prune


def idem_keys(where):
    return int(sql(f"SELECT COUNT(*) FROM idempotency_keys WHERE {where}")[0][0])


def deliveries(where):
    return int(sql(f"SELECT COUNT(*) FROM webhook_deliveries WHERE {where}")[0][0])


@case("prune: set-up: idempotency keys 2 days old and 1 hour old, webhook ids 8 days and 1 day old")
def _():
    sql("INSERT INTO idempotency_keys (scope, idem_key, request_hash, job_id, created_at)"
        " SELECT 'prunetest0000000', CONCAT('old-', seq), REPEAT('0', 64),"
        " 'j_01M8457ED2RMPKJD94H30597VN', NOW(6) - INTERVAL 2 DAY - INTERVAL seq SECOND"
        " FROM seq_1_to_1234")
    sql("INSERT INTO idempotency_keys (scope, idem_key, request_hash, job_id, created_at)"
        " SELECT 'prunetest0000000', CONCAT('new-', seq), REPEAT('0', 64),"
        " 'j_01M8457ED2RMPKJD94H30597VN', NOW(6) - INTERVAL 1 HOUR FROM seq_1_to_5")
    sql("INSERT INTO webhook_deliveries (adapter, delivery_key, delivery_id, received_at)"
        " SELECT 'prunetest', UNHEX(SHA2(CONCAT('old-', seq), 256)), CONCAT('old-', seq),"
        " NOW(6) - INTERVAL 8 DAY FROM seq_1_to_7")
    sql("INSERT INTO webhook_deliveries (adapter, delivery_key, delivery_id, received_at)"
        " SELECT 'prunetest', UNHEX(SHA2(CONCAT('new-', seq), 256)), CONCAT('new-', seq),"
        " NOW(6) - INTERVAL 1 DAY FROM seq_1_to_3")
    STATE["expired"] = (idem_keys("created_at < NOW(6) - INTERVAL 1 DAY"),
                        deliveries("received_at < NOW(6) - INTERVAL 7 DAY"))
    STATE["total"] = (idem_keys("1"), deliveries("1"))
    expect(STATE["expired"][0] >= 1234 and STATE["expired"][1] >= 7, f"expired rows: {STATE['expired']}")


@case("prune --dry-run: the counts of expired rows per table; nothing changes")
def _():
    rc, out, err = cli("prune", "--dry-run")
    expect_eq(rc, 0, f"exit status ({err})")
    k, d = STATE["expired"]
    expect_eq(out, f"prune: would remove {k} idempotency_keys (older than 1d), {d} webhook_deliveries"
              " (older than 7d), 0 webhook_blobs (older than 1h), jobs kept (retention off), 0 files (past [files] ttl),"
              " 0 objects (no longer used); nothing changed (dry run)\n", "summary")
    expect_eq((idem_keys("1"), deliveries("1")), STATE["total"], "rows after a dry run")


@case("prune: the expired rows go, a progress line per table on stderr; newer rows stay; again: 0")
def _():
    rc, out, err = cli("prune")
    expect_eq(rc, 0, f"exit status ({err})")
    k, d = STATE["expired"]
    expect_eq(out, f"prune: {k} idempotency_keys (older than 1d), {d} webhook_deliveries (older than 7d),"
              " 0 webhook_blobs (older than 1h), jobs kept (retention off), 0 files (past [files] ttl),"
              " 0 objects (no longer used)\n", "summary")
    expect_eq(err, f"prune: idempotency_keys: {k} rows removed\nprune: webhook_deliveries: {d} rows removed\n"
              "prune: webhook_blobs: 0 rows removed\n",
              "progress")
    expect_eq((idem_keys("created_at < NOW(6) - INTERVAL 1 DAY"),
               deliveries("received_at < NOW(6) - INTERVAL 7 DAY")), (0, 0), "expired rows left")
    expect_eq((idem_keys("idem_key LIKE 'new-%'"), deliveries("delivery_id LIKE 'new-%'")), (5, 3),
              "newer rows kept")
    expect_eq((idem_keys("1"), deliveries("1")), (STATE["total"][0] - k, STATE["total"][1] - d), "rows left")
    rc, out, err = cli("prune")
    expect_eq((rc, out), (0, "prune: 0 idempotency_keys (older than 1d), 0 webhook_deliveries (older than 7d),"
                          " 0 webhook_blobs (older than 1h), jobs kept (retention off), 0 files (past [files] ttl),"
                          " 0 objects (no longer used)\n"),
              f"a second run ({err})")


@case("prune with [retention] idempotency_keys = off and webhook_deliveries = 1h")
def _():
    conf = conf_with("cli-retention.conf", "[retention]\nidempotency_keys = off\nwebhook_deliveries = 1h\n")
    sql("UPDATE idempotency_keys SET created_at = NOW(6) - INTERVAL 30 DAY WHERE idem_key = 'new-1'")
    rc, out, err = cli("prune", conf=conf)
    expect_eq((rc, out), (0, "prune: idempotency_keys kept (retention off), 3 webhook_deliveries (older than 1h),"
                          " 0 webhook_blobs (older than 1h), jobs kept (retention off), 0 files (past [files] ttl),"
                          " 0 objects (no longer used)\n"),
              f"summary ({err})")
    expect_eq(deliveries("adapter = 'prunetest'"), 0, "webhook ids of a day ago")
    expect_eq(idem_keys("idem_key = 'new-1'"), 1, "an old key with retention off")
    rc, out, err = cli("prune", conf=conf_with("cli-retention-bad.conf", "[retention]\nforever = 30d\n"))
    expect_eq(rc, 1, "exit status with an unknown key")
    expect(re.search(r"cli-retention-bad\.conf:\d+: .*'forever'", err), f"file:line in {err!r}")
    sql("DELETE FROM idempotency_keys WHERE scope = 'prunetest0000000'")


@case("worker: the first process removes expired keys and webhook ids at its start, one log line per table")
def _():
    sql("INSERT INTO idempotency_keys (scope, idem_key, request_hash, job_id, created_at)"
        " SELECT 'prunetest0000000', CONCAT('w-', seq), REPEAT('0', 64),"
        " 'j_01M8457ED2RMPKJD94H30597VN', NOW(6) - INTERVAL 3 DAY FROM seq_1_to_2500")
    sql("INSERT INTO webhook_deliveries (adapter, delivery_key, delivery_id, received_at)"
        " SELECT 'prunetest', UNHEX(SHA2(CONCAT('w-', seq), 256)), CONCAT('w-', seq),"
        " NOW(6) - INTERVAL 9 DAY FROM seq_1_to_4")
    w = Worker(2, name="cli-retention-worker")
    try:
        wait_until(lambda: idem_keys("idem_key LIKE 'w-%'") == 0
                   and deliveries("delivery_id LIKE 'w-%'") == 0,
                   timeout=20, what="expired rows removed by the worker")
        log = wait_until(lambda: "event=retention.pruned table=webhook_deliveries" in w.log_text()
                         and w.log_text(), timeout=10, what="the worker's log lines")
    finally:
        w.stop()
    expect("event=retention.pruned table=idempotency_keys rows=2500" in log, log[-2000:])
    expect("event=retention.pruned table=webhook_deliveries rows=4" in log, log[-2000:])


@case("Idempotency-Key: a repeat after the key expired (24h) makes a new job, even before prune ran")
def _():
    body = {"adapter": "replicate", "model": "acme/retention-test", "input": {"prompt": "a harbour"}}
    key = {"Idempotency-Key": "retention-%d" % os.getpid()}
    first = expect_json(post("/v1/jobs", body, headers=key), 202)["id"]
    expect_eq(expect_json(post("/v1/jobs", body, headers=key), 200)["id"], first, "a repeat within 24h")
    sql("UPDATE idempotency_keys SET created_at = NOW(6) - INTERVAL 25 HOUR"
        f" WHERE idem_key = '{key['Idempotency-Key']}'")
    second = expect_json(post("/v1/jobs", body, headers=key), 202)["id"]
    expect(second != first, f"a new job after expiry: {first} then {second}")
    expect_eq(expect_json(post("/v1/jobs", body, headers=key), 200)["id"], second,
              "a repeat now answers the new job")
    other = dict(body, input={"prompt": "another"})
    expect_eq(post("/v1/jobs", other, headers=key).status, 409, "another body with the live key")
    for jid in (first, second):
        post(f"/v1/jobs/{jid}/cancel")


# ------------------------------------------------------------ superseded objects


THUMB = '[preset "thumb"]\nwidth = 256\nheight = 256\nfit = inside\nformat = webp\nquality = 80\n'


def fetch(url):
    with urllib.request.urlopen(url, timeout=30) as r:
        return r.status, r.read()


@case("reprocess after thumb's quality changed: a new key and URL serve the new bytes; the old object"
      " stays for [retention] superseded, then prune removes it; the job shows the new URL")
def _():
    jid = STATE["ids"][3]
    old = expect_json(get(f"/v1/jobs/{jid}"), 200)["outputs"][0]
    (t_old,) = [r for r in old["renditions"] if r["name"] == "thumb"]
    status, body_old = fetch(t_old["url"])
    expect_eq((status, body_old[:4]), (200, b"RIFF"), f"the thumb served at {t_old['url']}")
    expect(re.search(r"/thumb\.[0-9a-f]{8}\.webp$", t_old["key"]), f"a tagged key: {t_old['key']}")
    with open(CONF) as f:
        expect(THUMB in f.read(), "the test config's thumb preset as this test knows it")
    conf = conf_with("cli-quality.conf", "[retention]\nsuperseded = 1s\n",
                     replace={THUMB: THUMB.replace("quality = 80", "quality = 40")})
    rc, out, err = cli("reprocess", "--job", jid, "--preset", "thumb", conf=conf)
    expect_eq(rc, 0, f"reprocess ({err})")
    expect("1 renditions made" in out, out)
    new = expect_json(get(f"/v1/jobs/{jid}"), 200)["outputs"][0]
    (t_new,) = [r for r in new["renditions"] if r["name"] == "thumb"]
    expect(t_new["key"] != t_old["key"] and t_new["url"] != t_old["url"],
           f"a new key and URL: {t_old['key']} -> {t_new['key']}")
    status, body_new = fetch(t_new["url"])
    expect_eq((status, body_new[:4]), (200, b"RIFF"), "the new thumb served")
    expect(body_new != body_old, "the new URL serves other bytes than the old")
    expect_eq(t_new["bytes"], len(body_new), "bytes of the new thumb")
    # Within the grace the old URL still answers (pages rendered before).
    expect_eq(fetch(t_old["url"]), (200, body_old), "the old URL within the grace")
    expect_eq(sql(f"SELECT refs, state FROM objects WHERE storage_key = '{t_old['key']}'"),
              [["0", "removing"]], "the old key's row")
    expect_eq(sql(f"SELECT refs, state FROM objects WHERE storage_key = '{t_new['key']}'"),
              [["1", "stored"]], "the new key's row")
    time.sleep(1.2)
    rc, out, err = cli("prune", conf=conf)
    expect_eq(rc, 0, f"prune ({err})")
    m = re.search(r", (\d+) objects \(no longer used\)\n$", out)
    expect(m and int(m.group(1)) >= 1, f"objects removed in {out!r}")
    expect(not os.path.exists(os.path.join(MEDIA, t_old["key"])), f"{t_old['key']} left in the sink")
    try:
        status = fetch(t_old["url"])[0]
    except urllib.error.HTTPError as e:
        status = e.code
    expect_eq(status, 404, "the old URL after the grace")
    expect_eq(sql(f"SELECT COUNT(*) FROM objects WHERE storage_key = '{t_old['key']}'"), [["0"]],
              "the old key's row")
    expect_eq(fetch(t_new["url"]), (200, body_new), "the new URL after prune")
    again = expect_json(get(f"/v1/jobs/{jid}"), 200)["outputs"][0]
    expect_eq([r["url"] for r in again["renditions"] if r["name"] == "thumb"], [t_new["url"]],
              "the job object's thumb URL")


@case("worker with [retention] superseded = 1s: its first process removes a superseded object at its start")
def _():
    jid = STATE["ids"][4]
    (t_old,) = [r for r in expect_json(get(f"/v1/jobs/{jid}"), 200)["outputs"][0]["renditions"]
                if r["name"] == "thumb"]
    conf = os.path.join(os.path.dirname(CONF), "cli-quality.conf")
    rc, out, err = cli("reprocess", "--job", jid, "--preset", "thumb", conf=conf)
    expect_eq((rc, "1 renditions made" in out), (0, True), f"reprocess ({out} {err})")
    path = os.path.join(MEDIA, t_old["key"])
    expect(os.path.exists(path), f"{t_old['key']} removed before the grace")
    time.sleep(1.2)
    w = Worker(2, name="cli-objects-worker", env={"DARKROOM_CONF": conf})
    try:
        wait_until(lambda: not os.path.exists(path), timeout=20, what="the object removed by the worker")
        log = wait_until(lambda: f"event=object.removed key={t_old['key']}" in w.log_text() and w.log_text(),
                         timeout=10, what="the worker's log line")
    finally:
        w.stop()
    expect("event=objects.removed removed=" in log, log[-2000:])
    expect_eq(sql(f"SELECT COUNT(*) FROM objects WHERE storage_key = '{t_old['key']}'"), [["0"]],
              "the old key's row")


run()
