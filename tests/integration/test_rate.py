#!/usr/bin/env python3
"""tests/integration/test_rate.py — the create-rate limit per adapter
instance ([adapter] rate, burst; core/ratelimit.h) end to end: lighttpd +
darkroom.fcgi + two `darkroom worker` pools (two "hosts") + MariaDB + the
fake Replicate enforcing a limit of its own (create_rate, create_burst:
a 429 with Retry-After past it).

darkroom is configured at 600/min (10/s) with a burst of 5. A booked
slot may be used up to 0.2 s late (core/ratelimit.h), so where the
creates arrive they can bunch by up to LATE = 0.2 s x 10/s = 2 creates
more than the burst; the fake, the provider, allows more than that: 12
creates/s with a burst of 10. A burst of 200 jobs then meets no 429 at
all, and the fake never sees more than rate + burst + LATE creates in
any one-second window. The same fake without darkroom's limit
does answer 429s, so it enforces.
"""

import concurrent.futures
import datetime
import json
import os
import subprocess
import sys
import time

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
from harness import case, expect, expect_eq, expect_json, get, post, run, sql, wait_until  # noqa: E402

from engine_lib import BIN, WORK, Worker, fake, fake_reset  # noqa: E402

RATE, BURST = 10, 5             # darkroom: rate = 600/min, burst = 5
LATE = 2                        # creates a slot used 0.2 s late may add
FAKE_RATE, FAKE_BURST = 12, 10  # the fake's own limit, above all of that


def limited_conf():
    """The harness's config with the limit on [adapter "replicate"]."""
    with open(os.environ["DARKROOM_CONF"]) as f:
        text = f.read()
    head = '[adapter "replicate"]\n'
    expect(head in text, "the harness config has no [adapter \"replicate\"]")
    text = text.replace(head, head + f"rate = {RATE * 60}/min\nburst = {BURST}\n", 1)
    path = os.path.join(WORK, "darkroom-rate.conf")
    with open(path, "w") as f:
        f.write(text)
    return path


def burst(n):
    """n text-output jobs of adapter replicate, created at once from 4
    threads; their ids."""
    def one(i):
        body = {"adapter": "replicate", "model": "acme/flux",
                "input": {"prompt": f"p{i}", "fake_output": "text"}}
        return expect_json(post("/v1/jobs", body), 202)["id"]

    with concurrent.futures.ThreadPoolExecutor(4) as pool:
        return list(pool.map(one, range(n)))


def wait_ended(ids, timeout):
    """Wait for every job of ids to end; {status: count}."""
    inlist = ",".join(f"'{j}'" for j in ids)

    def counts():
        rows = sql(f"SELECT status, COUNT(*) FROM jobs WHERE id IN ({inlist}) GROUP BY status")
        c = {r[0]: int(r[1]) for r in rows}
        return c if sum(c.get(s, 0) for s in ("succeeded", "failed", "canceled")) == len(ids) else None

    return wait_until(counts, timeout=timeout, interval=0.5, what=f"{len(ids)} jobs ending")


def create_times():
    """The fake's accepted creates, as epoch seconds, sorted."""
    out = []
    for c in fake("/_state")["creates"]:
        at = c["at"].replace("Z", "")
        base, _, frac = at.partition(".")
        t = datetime.datetime.strptime(base, "%Y-%m-%dT%H:%M:%S").replace(
            tzinfo=datetime.timezone.utc).timestamp()
        out.append(t + float("0." + (frac or "0")))
    return sorted(out)


def max_in_window(times, width=1.0):
    best, j = 0, 0
    for i, t in enumerate(times):
        while times[j] < t - width + 1e-9:
            j += 1
        best = max(best, i - j + 1)
    return best


def pools(n, conf=None):
    env = {"DARKROOM_CONF": conf} if conf else None
    return [Worker(3, name=f"rate-{k}", env=env) for k in range(n)]


def stop(ws):
    left = [w.stop() for w in ws]
    expect(not any(left), "worker processes outlived their supervisor")


# ================================================================ cases


@case("without darkroom's limit, a burst of 40 creates meets the fake's 429s")
def _():
    fake_reset(create_rate=FAKE_RATE, create_burst=FAKE_BURST, start_delay=0.05, duration=0.1)
    ws = pools(2)
    try:
        t0 = time.monotonic()
        counts = wait_ended(burst(40), timeout=40)
        elapsed = time.monotonic() - t0
    finally:
        stop(ws)
    calls = fake("/_state")["calls"]
    n429 = calls.get("create_429", 0)
    print(f"# figure: no limit, 40 jobs: {n429} x 429, {elapsed:.1f} s, "
          f"max creates in 1 s: {max_in_window(create_times())}")
    expect(n429 > 0, f"the fake answered no 429 to 40 creates at once: {calls}")
    expect_eq(counts.get("succeeded"), 40, f"jobs succeeded (429s are retried): {counts}")


@case("rate = 600/min, burst = 5: 200 jobs from two pools, no 429, <= rate + burst a second")
def _():
    conf = limited_conf()
    fake_reset(create_rate=FAKE_RATE, create_burst=FAKE_BURST, start_delay=0.05, duration=0.1)
    ws = pools(2, conf)
    try:
        t0 = time.monotonic()
        ids = burst(200)
        # The limit is visible while it works.
        time.sleep(3)
        metrics = get("/metrics").body.decode()
        limits = subprocess.run([BIN, "limits", "--json"], capture_output=True, text=True,
                                timeout=30, env=dict(os.environ, DARKROOM_CONF=conf))
        table = subprocess.run([BIN, "limits"], capture_output=True, text=True,
                               timeout=30, env=dict(os.environ, DARKROOM_CONF=conf))
        counts = wait_ended(ids, timeout=60)
        elapsed = time.monotonic() - t0
    finally:
        stop(ws)
    calls = fake("/_state")["calls"]
    times = create_times()
    n429 = calls.get("create_429", 0)
    span = times[-1] - times[0]
    peak = max_in_window(times)
    print(f"# figure: rate 10/s burst 5, 200 jobs, 2 pools x 3 processes: {n429} x 429, "
          f"{elapsed:.1f} s to all succeeded, creates {len(times)} over {span:.1f} s "
          f"= {(len(times) - 1) / span:.2f}/s, max in any 1 s: {peak}")
    expect_eq(counts.get("succeeded"), 200, f"jobs succeeded: {counts}")
    expect_eq(len(times), 200, "creates at the fake (one per job)")
    expect_eq(n429, 0, "429s from the fake")
    expect(peak <= RATE + BURST + LATE,
           f"{peak} creates in one second (limit {RATE} + burst {BURST} + {LATE} late)")
    # 200 creates at 10/s after a burst of 5 take at least ~19.5 s.
    expect(span >= (200 - BURST) / RATE * 0.95, f"200 creates in {span:.1f} s: faster than the limit")

    expect('darkroom_rate_limit_per_second{adapter="replicate"} 10\n' in metrics,
           "no darkroom_rate_limit_per_second for replicate in /metrics")
    expect('darkroom_rate_limit_burst{adapter="replicate"} 5\n' in metrics,
           "no darkroom_rate_limit_burst for replicate in /metrics")
    expect('darkroom_rate_limit_booked_seconds{adapter="replicate"} ' in metrics,
           "no darkroom_rate_limit_booked_seconds in /metrics")
    after = get("/metrics").body.decode()
    limited = [ln for ln in after.splitlines()
               if ln.startswith('darkroom_rate_limited_total{adapter="replicate"} ')]
    expect(limited and float(limited[0].split()[-1]) >= 150,
           f"darkroom_rate_limited_total: {limited}")
    expect_eq(limits.returncode, 0, f"darkroom limits --json: {limits.stderr}")
    rows = {r["adapter"]: r for r in json.loads(limits.stdout)}
    expect_eq((rows["replicate"]["rate_per_second"], rows["replicate"]["burst"]), (10, 5),
              "darkroom limits: replicate")
    expect(rows["replicate"]["booked_seconds"] > 0, f"nothing booked ahead: {rows['replicate']}")
    expect_eq(rows["null"]["rate_per_second"], None, "darkroom limits: null has no limit")
    print("# darkroom limits, 3 s into the burst:\n" + "".join("#   " + ln + "\n" for ln in table.stdout.splitlines()), end="")
    lines = table.stdout.splitlines()
    expect_eq(lines[0].split(), ["ADAPTER", "RATE", "BURST", "BOOKED_AHEAD", "LINE_AHEAD"], "darkroom limits heading")
    rep = [ln.split() for ln in lines if ln.startswith("replicate ")]
    expect(rep and rep[0][1:3] == ["10/s", "5"], f"darkroom limits: {table.stdout!r}")
    expect([ln.split() for ln in lines if ln.startswith("null ")] == [["null", "off", "-", "-", "-"]],
           f"darkroom limits, null: {table.stdout!r}")


@case("resubmits after a failed create pass the limit too (rate = 2/s, burst = 1)")
def _():
    # Every job's first create answers 500 ("maybe created"): the next
    # try reconciles (the fake lists nothing) and submits again. Every
    # create call, failed or not, goes through the limit: 12 calls at
    # 2/s, never more than 3 in a second (without the limit on resubmits
    # the six retries come back together after retry_base, 0.2 s).
    with open(os.environ["DARKROOM_CONF"]) as f:
        text = f.read()
    text = text.replace('[adapter "replicate"]\n', '[adapter "replicate"]\nrate = 2/s\n', 1)
    conf = os.path.join(WORK, "darkroom-rate2.conf")
    with open(conf, "w") as f:
        f.write(text)
    fake_reset(error_rate=1, error_codes=[500], fault_endpoints=["create"], fault_budget=6,
               start_delay=0.05, duration=0.1)
    ws = pools(2, conf)
    try:
        ids = burst(6)
        counts = wait_ended(ids, timeout=30)
    finally:
        stop(ws)
    st = fake("/_state")
    calls = sorted(st["create_calls"])
    peak = max_in_window(calls)
    print(f"# figure: rate 2/s burst 1, 6 jobs whose first create fails: {len(calls)} create calls "
          f"over {calls[-1] - calls[0]:.1f} s, max in any 1 s: {peak}")
    expect_eq(counts.get("succeeded"), 6, f"jobs succeeded: {counts}")
    expect_eq(st["calls"].get("500", 0), 6, "creates answered 500")
    expect_eq(len(calls), 12, "create calls (6 failed, 6 resubmitted)")
    expect(peak <= 2 + 1, f"{peak} create calls in one second (rate 2 + burst 1)")


@case("config check names a bad rate or burst")
def _():
    for bad, key in (("rate = 600", "rate"), ("rate = 10/day", "rate"), ("burst = 0", "burst")):
        with open(os.environ["DARKROOM_CONF"]) as f:
            text = f.read().replace('[adapter "replicate"]\n', f'[adapter "replicate"]\n{bad}\n', 1)
        path = os.path.join(WORK, "darkroom-badrate.conf")
        with open(path, "w") as f:
            f.write(text)
        p = subprocess.run([BIN, "--config", path, "config", "check"], capture_output=True,
                           text=True, timeout=30)
        expect(p.returncode != 0, f"config check accepted {bad!r}")
        lines = p.stderr.strip().splitlines()
        expect_eq(len(lines), 1, f"config check's stderr for {bad!r}: {p.stderr!r}")
        expect(f"bad value for '{key}' in [adapter \"replicate\"]" in lines[0] and ":" in lines[0],
               f"config check for {bad!r}: {lines[0]!r}")


run()
