#!/usr/bin/env python3
"""tests/integration/test_metrics.py — GET /metrics: a strict parse of the
Prometheus text exposition (format 0.0.4), and counters that move as jobs
run through the fake Replicate with a worker pool.
"""

import math
import os
import re
import sys

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
from harness import Fail, case, expect, expect_eq, expect_problem, get, request, run, sql, wait_until  # noqa: E402
from engine_lib import FINAL, Worker, create, fake_reset, hook, sign, wait_status  # noqa: E402

NAME = r"[a-zA-Z_:][a-zA-Z0-9_:]*"
LABEL_NAME = r"[a-zA-Z_][a-zA-Z0-9_]*"
TYPES = ("counter", "gauge", "histogram", "summary", "untyped")


def parse_value(text, where):
    if text in ("+Inf", "Inf"):
        return math.inf
    if text == "-Inf":
        return -math.inf
    if text == "NaN":
        return math.nan
    if not re.fullmatch(r"[-+]?(\d+\.?\d*|\.\d+)([eE][-+]?\d+)?", text):
        raise Fail(f"{where}: bad sample value {text!r}")
    return float(text)


def parse_labels(text, where):
    """Parse `a="x",b="y"` strictly (escapes \\\\, \\" and \\n only)."""
    labels, i = {}, 0
    while i < len(text):
        m = re.compile(LABEL_NAME + "=\"").match(text, i)
        if not m:
            raise Fail(f"{where}: bad label at {text[i:]!r}")
        name = m.group(0)[:-2]
        i = m.end()
        value = []
        while True:
            if i >= len(text):
                raise Fail(f"{where}: unterminated label value")
            c = text[i]
            if c == "\\":
                nxt = text[i + 1:i + 2]
                if nxt not in ("\\", '"', "n"):
                    raise Fail(f"{where}: bad escape \\{nxt}")
                value.append("\n" if nxt == "n" else nxt)
                i += 2
            elif c == '"':
                i += 1
                break
            elif c == "\n":
                raise Fail(f"{where}: raw newline in a label value")
            else:
                value.append(c)
                i += 1
        if name in labels:
            raise Fail(f"{where}: label {name} given twice")
        labels[name] = "".join(value)
        if i < len(text):
            if text[i] != ",":
                raise Fail(f"{where}: expected ',' at {text[i:]!r}")
            i += 1
            if i == len(text):
                break  # a trailing comma is allowed
    return labels


def family_of(name, types):
    for suffix in ("_bucket", "_sum", "_count"):
        if name.endswith(suffix) and types.get(name[:-len(suffix)]) in ("histogram", "summary"):
            return name[:-len(suffix)]
    return name


def parse(text):
    """Parse an exposition strictly; return {(name, frozenset(labels)): value}
    and the {family: type} map. Fails on anything the format forbids."""
    expect(text.endswith("\n"), "the exposition must end with a newline")
    types, helps, samples, seen_families, done = {}, {}, {}, [], set()
    for n, line in enumerate(text.split("\n")[:-1], 1):
        where = f"line {n} {line!r}"
        if line == "":
            raise Fail(f"{where}: empty line")
        if line.startswith("#"):
            m = re.fullmatch(r"# (HELP|TYPE) (" + NAME + r") (.*)", line)
            if not m:
                if line.startswith("# HELP") or line.startswith("# TYPE"):
                    raise Fail(f"{where}: malformed HELP/TYPE")
                continue  # a plain comment
            kind, name, rest = m.groups()
            if kind == "TYPE":
                expect(rest in TYPES, f"{where}: unknown type")
                expect(name not in types, f"{where}: second TYPE for {name}")
                expect(name not in done and not any(family_of(k[0], types) == name for k in samples),
                       f"{where}: TYPE after samples of {name}")
                types[name] = rest
            else:
                expect(name not in helps, f"{where}: second HELP for {name}")
                helps[name] = rest
            continue
        m = re.fullmatch(r"(" + NAME + r")(?:\{(.*)\})? (\S+)(?: (-?\d+))?", line)
        if not m:
            raise Fail(f"{where}: not a sample line")
        name, labels, value = m.group(1), parse_labels(m.group(2) or "", where), parse_value(m.group(3), where)
        fam = family_of(name, types)
        expect(fam in types, f"{where}: sample before the TYPE of {fam}")
        if not seen_families or seen_families[-1] != fam:
            expect(fam not in seen_families, f"{where}: samples of {fam} are not grouped")
            if seen_families:
                done.add(seen_families[-1])
            seen_families.append(fam)
        if types[fam] == "histogram" and name == fam:
            raise Fail(f"{where}: bare sample of histogram {fam}")
        key = (name, frozenset(labels.items()))
        expect(key not in samples, f"{where}: duplicate sample")
        samples[key] = value
    check_histograms(samples, types)
    return samples, types


def check_histograms(samples, types):
    for fam, t in types.items():
        if t != "histogram":
            continue
        series = {}
        for (name, labels), value in samples.items():
            if name == fam + "_bucket":
                d = dict(labels)
                expect("le" in d, f"{fam}: bucket without le")
                base = frozenset((k, v) for k, v in labels if k != "le")
                series.setdefault(base, []).append((parse_value(d["le"], fam), value))
        for base, buckets in series.items():
            buckets.sort()
            expect(buckets[-1][0] == math.inf, f"{fam}{dict(base)}: no le=\"+Inf\" bucket")
            for (_, a), (_, b) in zip(buckets, buckets[1:]):
                expect(a <= b, f"{fam}{dict(base)}: buckets not cumulative")
            count = samples.get((fam + "_count", base))
            expect(count is not None and samples.get((fam + "_sum", base)) is not None,
                   f"{fam}{dict(base)}: _sum or _count missing")
            expect_eq(buckets[-1][1], count, f"{fam}{dict(base)} +Inf bucket vs _count")


def scrape():
    r = get("/metrics", key=None)
    expect_eq(r.status, 200, "GET /metrics status")
    ctype = r.headers.get("Content-Type") or ""
    expect(ctype.startswith("text/plain") and "version=0.0.4" in ctype, f"Content-Type {ctype!r}")
    return parse(r.body.decode("utf-8"))[0]


def val(samples, name, **labels):
    return samples.get((name, frozenset(labels.items())), 0.0)


def total(samples, name, **labels):
    """Sum of NAME over every series whose labels include LABELS."""
    want = set(labels.items())
    return sum(v for (n, ls), v in samples.items() if n == name and want <= set(ls))


@case("the strict parser refuses broken expositions")
def _():
    bad = ["x 1\n",  # no TYPE
           "# TYPE x counter\nx{a=\"1} 1\n",  # unterminated label
           "# TYPE x counter\nx{a=\"\\t\"} 1\n",  # bad escape
           "# TYPE x counter\nx one\n",
           "# TYPE h histogram\nh_bucket{le=\"1\"} 2\nh_bucket{le=\"+Inf\"} 1\nh_sum 1\nh_count 1\n",
           "# TYPE x gauge\n# TYPE y gauge\nx 1\ny 1\nx{a=\"b\"} 2\n"]
    for text in bad:
        try:
            parse(text)
        except Fail:
            continue
        raise Fail(f"accepted {text!r}")
    parse("# HELP x a\n# TYPE x counter\nx{a=\"q\\\"\\\\\\n\"} 1.5e3\n")


@case("GET /metrics is a valid exposition without an API key")
def _():
    s = scrape()
    for name in ("darkroom_worker_processes", "darkroom_queue_depth", "darkroom_queue_oldest_seconds",
                 "darkroom_downloaded_bytes_total", "darkroom_stored_bytes_total"):
        expect((name, frozenset()) in s, f"{name} missing")
    for step in ("submit", "provider_run", "download", "render", "upload", "index"):
        expect(("darkroom_step_duration_seconds_count", frozenset({("step", step)})) in s,
               f"step_duration histogram for {step} missing")


@case("POST /metrics is 405")
def _():
    r = request("POST", "/metrics", body={}, key=None)
    expect_problem(r, 405)


@case("counters and gauges move as jobs run")
def _():
    fake_reset()
    before = scrape()
    w = Worker(2, name="metrics-worker")
    try:
        wait_until(lambda: val(scrape(), "darkroom_worker_processes") == 2, timeout=15,
                   what="2 worker processes alive")
        ids = [create({"fake_output": "url"}, model="acme/metrics") for _ in range(3)]
        jobs = wait_status(ids, FINAL, timeout=60)
        expect(all(j["status"] == "succeeded" for j in jobs), f"jobs ended {[j['status'] for j in jobs]}")
        # A forged delivery is refused and counted.
        body = b'{"id":"nope","status":"succeeded"}'
        headers = sign(body, secret="whsec_" + "QUFBQUFBQUFBQUFBQUFBQUFBQUFBQUFB")
        expect_eq(hook(body, headers).status, 401, "forged webhook")
    finally:
        w.stop()
    # A process writes its increments within a second (metrics.h); the
    # scrape may be answered by the other FastCGI process.
    steps = ("submit", "provider_run", "download", "render", "upload", "index")

    def caught_up():
        s = scrape()
        ok = all(val(s, "darkroom_step_duration_seconds_count", step=st)
                 >= val(before, "darkroom_step_duration_seconds_count", step=st) + 3 for st in steps)
        return s if ok else None
    try:
        after = wait_until(caught_up, timeout=5, what="step counts written")
    except Fail:
        after = scrape()
    expect(total(after, "darkroom_jobs", status="succeeded", adapter="replicate")
           >= total(before, "darkroom_jobs", status="succeeded", adapter="replicate") + 3,
           "darkroom_jobs{status=succeeded} grew by 3")
    for step in steps:
        b = val(before, "darkroom_step_duration_seconds_count", step=step)
        a = val(after, "darkroom_step_duration_seconds_count", step=step)
        expect(a >= b + 3, f"step {step}: _count {b} -> {a}, expected +3")
        expect(val(after, "darkroom_step_duration_seconds_sum", step=step)
               >= val(before, "darkroom_step_duration_seconds_sum", step=step), f"step {step}: _sum shrank")
    predicted = val(after, "darkroom_predict_seconds_total", model="acme/metrics")
    expect(predicted > 0, f"predict_time of acme/metrics: {predicted}")
    expect(val(after, "darkroom_downloaded_bytes_total") > val(before, "darkroom_downloaded_bytes_total"),
           "downloaded bytes grew")
    expect(val(after, "darkroom_stored_bytes_total") > val(before, "darkroom_stored_bytes_total"),
           "stored bytes grew")
    expect(total(after, "darkroom_provider_responses_total", adapter="replicate", status="ok")
           >= total(before, "darkroom_provider_responses_total", adapter="replicate", status="ok") + 3,
           "provider responses ok grew by 3")
    expect_eq(val(after, "darkroom_webhook_deliveries_total", adapter="replicate", result="bad_signature"),
              val(before, "darkroom_webhook_deliveries_total", adapter="replicate", result="bad_signature") + 1,
              "bad_signature deliveries")
    hooks_before = total(before, "darkroom_webhook_deliveries_total", adapter="replicate")
    hooks_after = total(after, "darkroom_webhook_deliveries_total", adapter="replicate")
    expect(hooks_after >= hooks_before + 1 + 3, f"webhook deliveries {hooks_before} -> {hooks_after}")
    s = wait_until(lambda: (lambda m: m if val(m, "darkroom_worker_processes") == 0 else None)(scrape()),
                   timeout=10, what="no worker alive after the pool stopped")
    due = sql("SELECT id, status, step, adapter, model, run_at, NOW(6), attempts"
              " FROM jobs WHERE run_at <= NOW(6)")
    expect_eq(val(s, "darkroom_queue_depth"), 0.0, f"queue depth with nothing due (due: {due})")


@case("queue depth and the oldest due job's age show jobs nobody runs")
def _():
    ids = [create({"fake_output": "url"}, model="acme/queued") for _ in range(2)]
    s = wait_until(lambda: (lambda m: m if val(m, "darkroom_queue_oldest_seconds") >= 1 else None)(scrape()),
                   timeout=10, what="the oldest due job at least 1 s old")
    expect(val(s, "darkroom_queue_depth") >= 2, f"queue depth {val(s, 'darkroom_queue_depth')}")
    expect(val(s, "darkroom_jobs", status="queued", adapter="replicate") >= 2, "queued jobs counted")
    w = Worker(1, name="metrics-drain")
    try:
        wait_status(ids, FINAL, timeout=60)
    finally:
        w.stop()


@case("counters survive a restart of the FastCGI app (they live in the database)")
def _():
    import signal
    import subprocess
    before = scrape()
    lighttpd = os.environ["DARKROOM_LIGHTTPD_PID"]
    apps = subprocess.run(["pgrep", "-P", lighttpd], capture_output=True, text=True).stdout.split()
    expect(apps, "the app's processes under lighttpd")
    for pid in apps:
        os.kill(int(pid), signal.SIGTERM)
    after = wait_until(lambda: scrape(), timeout=20, what="/metrics answering after the restart")
    still = subprocess.run(["pgrep", "-P", lighttpd], capture_output=True, text=True).stdout.split()
    expect(not set(still) & set(apps), "the app processes were replaced")
    for name, labels in (("darkroom_stored_bytes_total", {}), ("darkroom_downloaded_bytes_total", {}),
                         ("darkroom_step_duration_seconds_count", {"step": "download"}),
                         ("darkroom_webhook_deliveries_total", {"adapter": "replicate", "result": "bad_signature"})):
        expect_eq(val(after, name, **labels), val(before, name, **labels), f"{name}{labels} after the restart")


run()
