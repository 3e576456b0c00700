"""tests/bench/benchlib.py — what the sections of `make bench` share.

Each section (tests/bench/bench_*.py or .sh) runs under
tests/run-integration.sh, so it has the integration environment (the
service behind lighttpd, MariaDB, the fake Replicate, s3rver; see
tests/integration/harness.py), plus:

  BENCH_OUT           the directory of the results (build/bench/)
  BENCH_BIN           the directory of the benchmark programs
                      (build/tests/bench/)
  BENCH_NODE          a node_modules/ directory holding sharp

A section records each figure with record(); tests/bench/report.py turns
the rows into the Markdown table and the chart. A figure is recorded, never
asserted: a case of a section fails only when it could not measure.
"""

import csv
import math
import os
import sys

OUT = os.environ.get("BENCH_OUT", "build/bench")
BIN = os.environ.get("BENCH_BIN", "build/tests/bench")
CSV = os.path.join(OUT, "results.csv")
FIELDS = ["section", "what", "value", "unit", "target", "note"]

sys.path.insert(0, os.path.join(os.path.dirname(os.path.abspath(__file__)),
                                "..", "integration"))
from harness import sql  # noqa: E402  (the integration harness)


def record(section, what, value, unit, target="", note=""):
    """Append one figure to results.csv and print it.

    section: intake, batches, webhooks, renditions, pipeline, memory, latency or prune;
    what: what was measured ("darkroom POST /v1/jobs, requests/s");
    value: a number; unit: "req/s", "ms", "MiB", ...;
    target: the goal as an operator and a number (">= 15000", "< 10"), or
    "" when the figure is for comparison; note: anything a reader needs
    (the competitor, the image, the number of samples)."""
    os.makedirs(OUT, exist_ok=True)
    new = not os.path.exists(CSV)
    with open(CSV, "a", newline="") as f:
        w = csv.writer(f)
        if new:
            w.writerow(FIELDS)
        w.writerow([section, what, f"{value:.6g}" if isinstance(value, float) else value,
                    unit, target, note])
    shown = f"{value:.6g}" if isinstance(value, float) else value
    print(f"bench: {section:10} {what}: {shown} {unit}", flush=True)


def percentile(values, p):
    """The p-th percentile (0..100) of values, nearest rank."""
    s = sorted(values)
    if not s:
        raise ValueError("no samples")
    k = max(0, min(len(s) - 1, math.ceil(p / 100.0 * len(s)) - 1))
    return s[k]


def vm_hwm_kib(pid):
    """The peak resident set (VmHWM) of process pid, in KiB."""
    with open(f"/proc/{pid}/status") as f:
        for line in f:
            if line.startswith("VmHWM:"):
                return int(line.split()[1])
    raise ValueError(f"no VmHWM for {pid}")


def vm_rss_kib(pid):
    """The current resident set (VmRSS) of process pid, in KiB."""
    with open(f"/proc/{pid}/status") as f:
        for line in f:
            if line.startswith("VmRSS:"):
                return int(line.split()[1])
    raise ValueError(f"no VmRSS for {pid}")


def drop_jobs(where):
    """Delete the jobs matching the SQL condition `where` (on jobs, alias
    j) and every row of theirs, so a load's thousands of jobs do not queue
    ahead of a later section's. Returns how many jobs matched."""
    n = int(sql(f"SELECT COUNT(*) FROM jobs j WHERE {where}")[0][0])
    for table in ("job_events", "job_metadata"):
        sql(f"DELETE t FROM {table} t JOIN jobs j ON j.id = t.job_id WHERE {where}")
    sql("DELETE r FROM renditions r JOIN outputs o ON o.id = r.output_id"
        f" JOIN jobs j ON j.id = o.job_id WHERE {where}")
    sql(f"DELETE o FROM outputs o JOIN jobs j ON j.id = o.job_id WHERE {where}")
    sql(f"DELETE j FROM jobs j WHERE {where}")
    return n


# Server counters read around a load, for the note: statements per request
# are the round trips to MariaDB; redo-log writes per request (each one a
# synchronous write, O_DIRECT) below the number of commits show group
# commit at work.
COUNTERS = ("Questions", "Innodb_log_writes")


def db_counters():
    """MariaDB's COUNTERS now, by name."""
    rows = sql("SHOW GLOBAL STATUS WHERE Variable_name IN ("
               + ", ".join(f"'{c}'" for c in COUNTERS) + ")")
    return {r[0]: int(r[1]) for r in rows}


def per_request(before, after, n):
    """'SQL statements/req 5.0, redo log writes/req 0.40' for n requests."""
    d = {c: (after.get(c, 0) - before.get(c, 0)) / max(n, 1) for c in COUNTERS}
    return (f"SQL statements/req {d['Questions']:.1f},"
            f" redo log writes/req {d['Innodb_log_writes']:.2f}")


def app_pids(pid):
    """The darkroom.fcgi processes among the descendants of pid."""
    found = []
    try:
        with open(f"/proc/{pid}/task/{pid}/children") as f:
            kids = [int(k) for k in f.read().split()]
    except OSError:
        return found
    for kid in kids:
        try:
            with open(f"/proc/{kid}/comm") as f:
                if f.read().strip() == "darkroom.fcgi":
                    found.append(kid)
        except OSError:
            continue
        found.extend(app_pids(kid))
    return found
