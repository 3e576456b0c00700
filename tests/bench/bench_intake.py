#!/usr/bin/env python3
"""tests/bench/bench_intake.py — the intake section of `make bench`:
POST /v1/jobs through lighttpd, driven by wrk (tests/bench/intake.lua),
next to the ceiling of the same setup: tests/bench/hello_fcgi.c, a FastCGI
app that answers a tiny JSON 201 and does nothing else, run under the same
conf/lighttpd.conf (same number of processes) on its own port in the same
run. Also the peak resident set of the darkroom.fcgi processes after that
load (section "memory").

Figures (benchlib.record): requests/s of both and their ratio, p50 and p99
latency of both; the note says whether every POST created its job (rows
counted in the database), how many answers were not 2xx/3xx, and the SQL
statements and redo-log writes per job. Then, for comparison, darkroom
under a lighttpd of its own with more FastCGI processes
(DARKROOM_FCGI_PROCS, conf/lighttpd.conf), where concurrent commits share
a log write.

Knobs (environment): BENCH_INTAKE_SECONDS (default 10) per measured load,
after BENCH_INTAKE_WARMUP seconds (default 2) of the same load;
BENCH_INTAKE_CONNECTIONS (default 16) and BENCH_INTAKE_THREADS (default 2)
for wrk; BENCH_INTAKE_MORE_PROCS (default 4). Every process the section
starts is stopped at its end, failed or not.
"""

import json
import os
import subprocess
import sys

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
import benchlib  # noqa: E402  (puts tests/integration on sys.path)
from benchlib import db_counters, per_request, record  # noqa: E402
from harness import case, expect, run, sql  # noqa: E402

ROOT = os.path.abspath(os.path.join(os.path.dirname(__file__), "..", ".."))
HERE = os.path.dirname(os.path.abspath(__file__))
URL = os.environ["DARKROOM_URL"]
KEY = os.environ["DARKROOM_API_KEY"]
WORK = os.environ.get("DARKROOM_TEST_DIR", "/tmp")
SECONDS = int(os.environ.get("BENCH_INTAKE_SECONDS", "10"))
WARMUP = int(os.environ.get("BENCH_INTAKE_WARMUP", "2"))
CONNS = int(os.environ.get("BENCH_INTAKE_CONNECTIONS", "16"))
THREADS = int(os.environ.get("BENCH_INTAKE_THREADS", "2"))
HELLO_BIN = os.path.join(benchlib.BIN, "hello_fcgi")
FCGI_BIN = os.path.join(os.path.dirname(os.environ["DARKROOM_BIN"]), "darkroom.fcgi")
MORE_PROCS = int(os.environ.get("BENCH_INTAKE_MORE_PROCS", "8"))

# A typical job: the null adapter (no provider call), one metadata key,
# the default renditions.
BODY = json.dumps({"adapter": "null", "model": "acme/flux",
                   "input": {"prompt": "a lighthouse at dusk, oil on canvas", "seed": 42},
                   "metadata": {"user": "bench"}}, separators=(",", ":"))

_results = {}


def wrk(url, seconds, key=KEY, path="/v1/jobs", body=BODY):
    """Run wrk with intake.lua against url for `seconds`; return the
    figures done() wrote (dict; latencies in microseconds)."""
    out = os.path.join(WORK, "wrk-intake.json")
    if os.path.exists(out):
        os.unlink(out)
    env = dict(os.environ, BENCH_API_KEY=key or "", BENCH_PATH=path, BENCH_BODY=body,
               BENCH_WRK_OUT=out)
    cmd = ["wrk", f"-t{THREADS}", f"-c{CONNS}", f"-d{seconds}s", "--timeout", "5s",
           "-s", os.path.join(HERE, "intake.lua"), url + path]
    p = subprocess.run(cmd, env=env, capture_output=True, text=True, timeout=seconds + 60,
                       stdin=subprocess.DEVNULL)
    expect(p.returncode == 0 and os.path.exists(out),
           f"wrk failed ({p.returncode}): {p.stderr.strip()[-300:]} {p.stdout.strip()[-300:]}")
    with open(out) as f:
        fig = json.load(f)
    fig["rps"] = fig["requests"] / (fig["duration_us"] / 1e6)
    fig["errors"] = fig["connect"] + fig["read"] + fig["write"] + fig["timeout"]
    return fig


class Server:
    """Another lighttpd under conf/lighttpd.conf on a free port, running
    the FastCGI program `fcgi_bin` (DARKROOM_FCGI_PROCS=procs when given),
    started through tests/lib/services.sh by a bash that stops it when its
    standard input closes (so even a crash of this script stops it)."""

    SCRIPT = ('. "$1/tests/lib/services.sh"; services_trap; '
              'lighttpd_start "$2" "$3" "$4" "$5" || exit 1; '
              'echo "ready $LIGHTTPD_PID"; read -r _ || true')

    def __init__(self, name, fcgi_bin, procs=None):
        d = os.path.join(WORK, name)
        port = subprocess.run(["bash", "-c", f'. "{ROOT}/tests/lib/services.sh"; free_port'],
                              capture_output=True, text=True, check=True).stdout.strip()
        env = dict(os.environ)
        if procs:
            env["DARKROOM_FCGI_PROCS"] = str(procs)
        self.url = f"http://127.0.0.1:{port}"
        self.proc = subprocess.Popen(
            ["bash", "-c", self.SCRIPT, "bash", ROOT, d, port, os.environ["DARKROOM_CONF"],
             fcgi_bin], stdin=subprocess.PIPE, stdout=subprocess.PIPE, text=True, env=env)
        line = self.proc.stdout.readline()
        if not line.startswith("ready"):
            self.stop()
            raise AssertionError(f"lighttpd with {fcgi_bin} did not start (see {d})")

    def stop(self):
        if self.proc.poll() is None:
            self.proc.stdin.close()
            try:
                self.proc.wait(timeout=60)
            except subprocess.TimeoutExpired:
                self.proc.kill()
                self.proc.wait()


def fcgi_pids():
    """The darkroom.fcgi processes lighttpd runs (its children)."""
    parent = os.environ["DARKROOM_LIGHTTPD_PID"]
    pids = []
    for name in os.listdir("/proc"):
        if not name.isdigit():
            continue
        try:
            with open(f"/proc/{name}/stat") as f:
                ppid = f.read().rsplit(")", 1)[1].split()[1]
            exe = os.readlink(f"/proc/{name}/exe")
        except OSError:
            continue
        if ppid == parent and os.path.basename(exe).startswith("darkroom.fcgi"):
            pids.append(int(name))
    return pids




def ms(us):
    return us / 1000.0


@case("hello-world FastCGI app under the same lighttpd config (the ceiling)")
def _():
    expect(os.access(HELLO_BIN, os.X_OK), f"missing {HELLO_BIN} (make bench builds it)")
    h = Server("hello-web", HELLO_BIN)
    try:
        wrk(h.url, WARMUP, path="/v1/jobs")
        fig = wrk(h.url, SECONDS, path="/v1/jobs")
    finally:
        h.stop()
    expect(fig["requests"] > 0, "no request completed")
    _results["hello"] = fig
    note = (f"wrk -t{THREADS} -c{CONNS} -d{SECONDS}s, {fig['requests']} requests,"
            f" non-2xx/3xx {fig['status']}, socket errors {fig['errors']}")
    record("intake", "hello-world FastCGI POST, requests/s", fig["rps"], "req/s", "", note)
    record("intake", "hello-world FastCGI POST, p50 latency", ms(fig["p50_us"]), "ms", "", note)
    record("intake", "hello-world FastCGI POST, p99 latency", ms(fig["p99_us"]), "ms", "", note)


@case("darkroom POST /v1/jobs under load: throughput, latency, jobs stored")
def _():
    wrk(URL, WARMUP)
    before = int(sql("SELECT COUNT(*) FROM jobs")[0][0])
    c0 = db_counters()
    fig = wrk(URL, SECONDS)
    c1 = db_counters()
    after = int(sql("SELECT COUNT(*) FROM jobs")[0][0])
    created = after - before
    expect(fig["requests"] > 0, "no request completed")
    _results["darkroom"] = fig
    ok = fig["status"] == 0 and fig["errors"] == 0 and created >= fig["requests"]
    note = (f"wrk -t{THREADS} -c{CONNS} -d{SECONDS}s, {fig['requests']} answers,"
            f" {created} jobs stored, non-2xx/3xx {fig['status']},"
            f" socket errors {fig['errors']}" + ("" if ok else " (NOT all created)") +
            "; " + per_request(c0, c1, created))
    record("intake", "darkroom POST /v1/jobs, requests/s", fig["rps"], "req/s", ">= 15000", note)
    record("intake", "darkroom POST /v1/jobs, p50 latency", ms(fig["p50_us"]), "ms", "", note)
    record("intake", "darkroom POST /v1/jobs, p99 latency", ms(fig["p99_us"]), "ms", "< 10", note)
    hello = _results.get("hello")
    if hello:
        record("intake", "darkroom / hello-world ceiling", fig["rps"] / hello["rps"], "ratio",
               ">= 0.25", f"{fig['rps']:.0f} / {hello['rps']:.0f} req/s, same run and config")


@case("darkroom POST /v1/jobs with more FastCGI processes (group commit)")
def _():
    srv = Server("intake-more-procs", FCGI_BIN, MORE_PROCS)
    try:
        wrk(srv.url, WARMUP)
        c0 = db_counters()
        fig = wrk(srv.url, SECONDS)
        c1 = db_counters()
    finally:
        srv.stop()
    expect(fig["requests"] > 0, "no request completed")
    note = (f"DARKROOM_FCGI_PROCS={MORE_PROCS}, wrk -t{THREADS} -c{CONNS} -d{SECONDS}s,"
            f" non-2xx/3xx {fig['status']}, socket errors {fig['errors']}; "
            + per_request(c0, c1, fig["requests"]))
    record("intake", f"darkroom POST /v1/jobs, {MORE_PROCS} processes, requests/s", fig["rps"],
           "req/s", "", note)
    record("intake", f"darkroom POST /v1/jobs, {MORE_PROCS} processes, p99 latency",
           ms(fig["p99_us"]), "ms", "", note)


@case("darkroom.fcgi peak RSS after the intake load")
def _():
    pids = fcgi_pids()
    expect(pids, "no darkroom.fcgi process under lighttpd")
    peak = max(benchlib.vm_hwm_kib(p) for p in pids)
    rss = max(benchlib.vm_rss_kib(p) for p in pids)
    # What the resident set is made of: pages of shared libraries (clean,
    # shared with every process mapping them) and the process's own.
    roll = {}
    with open(f"/proc/{pids[0]}/smaps_rollup") as f:
        for line in f:
            parts = line.split()
            if len(parts) == 3 and parts[2] == "kB":
                roll[parts[0].rstrip(":")] = int(parts[1])
    with open(f"/proc/{pids[0]}/maps") as f:
        libs = len({line.split()[-1] for line in f if ".so" in line})
    record("memory", "darkroom.fcgi peak RSS (VmHWM) under intake load", peak / 1024.0, "MiB",
           "< 8", f"largest of {len(pids)} processes; current RSS {rss / 1024.0:.1f} MiB, of it"
           f" shared clean {roll.get('Shared_Clean', 0) / 1024.0:.1f} MiB (pages of {libs}"
           f" shared libraries), private {(roll.get('Private_Dirty', 0) + roll.get('Private_Clean', 0)) / 1024.0:.1f} MiB;"
           f" PSS {roll.get('Pss', 0) / 1024.0:.1f} MiB")


@case("the load's jobs are removed (later sections start with an empty queue)")
def _():
    n = benchlib.drop_jobs("j.adapter = 'null' AND j.model = 'acme/flux' AND j.status = 'queued'")
    left = int(sql("SELECT COUNT(*) FROM jobs WHERE status = 'queued'")[0][0])
    expect(left == 0, f"{left} queued jobs left")
    print(f"# intake: removed {n} jobs", flush=True)


run()
