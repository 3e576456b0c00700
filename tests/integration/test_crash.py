#!/usr/bin/env python3
"""tests/integration/test_crash.py — a plugin that crashes its worker
process: the job fails with code worker_crashed after a few tries, the
supervisor replaces the dead workers, and other jobs still run.

The crashing adapter is the fixture build/tests/fixtures/crash.so
(tests/plugins/fixtures/crash.c, submit() calls abort()). Only this test's
worker knows it: it runs with a copy of the config whose plugin folder
holds the shipped plugins plus crash.so, and an [adapter "crash"]. The
API does not know that adapter, so the job is created for "null" and moved
to "crash" in the database before any worker runs.
"""

import os
import sys
import time

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
from harness import case, expect, expect_eq, expect_json, post, run, sql, wait_until  # noqa: E402
from engine_lib import FINAL, WORK, Worker, wait_status  # noqa: E402


def crash_conf():
    plugins = os.path.join(WORK, "plugins-crash")
    os.makedirs(plugins, exist_ok=True)
    src_dir = os.path.join(os.path.dirname(os.environ["DARKROOM_BIN"]), "plugins")
    for so in os.listdir(src_dir):
        if so.endswith(".so") and not os.path.exists(os.path.join(plugins, so)):
            os.symlink(os.path.join(src_dir, so), os.path.join(plugins, so))
    crash = os.path.join(os.path.dirname(os.environ["DARKROOM_BIN"]), "tests", "fixtures", "crash.so")
    if not os.path.exists(os.path.join(plugins, "crash.so")):
        os.symlink(crash, os.path.join(plugins, "crash.so"))
    text = open(os.environ["DARKROOM_CONF"]).read()
    lines = [f"plugin_dir = {plugins}" if line.startswith("plugin_dir = ") else line
             for line in text.splitlines()]
    path = os.path.join(WORK, "darkroom-crash.conf")
    with open(path, "w") as f:
        f.write("\n".join(lines) + '\n\n[adapter "crash"]\nplugin = crash\n')
    return path


@case("a plugin crashing its worker fails the job (worker_crashed); workers are replaced")
def _():
    body = {"adapter": "null", "model": "acme/model", "input": {"prompt": "x"}}
    jid = expect_json(post("/v1/jobs", body), 202)["id"]
    other = expect_json(post("/v1/jobs", body), 202)["id"]
    sql(f"UPDATE jobs SET adapter = 'crash' WHERE id = '{jid}'")
    w = Worker(2, name="worker-crash", env={"DARKROOM_CONF": crash_conf()})
    try:
        first = set(w.children())
        j = wait_status([jid], FINAL, timeout=60)[0]
        # The healthy job of the same queue still ran (the null adapter
        # leaves it starting for good).
        o = wait_status([other], ("starting",) + FINAL, timeout=30)[0]
        time.sleep(0.5)
        now = set(w.children())
        alive = w.proc.poll() is None
    finally:
        leftover = w.stop()
    expect(not leftover, "worker processes outlived the supervisor")
    expect(alive, "the supervisor died")
    expect_eq(j["status"], "failed", "status")
    expect_eq(j["error"]["code"], "worker_crashed", "code")
    expect("died or stalled" in j["error"]["message"], f"message {j['error']}")
    expect_eq(o["status"], "starting", "the other job")
    post(f"/v1/jobs/{other}/cancel")
    expect(len(now) == 2, f"worker processes after the crashes: {sorted(now)}")
    expect(now != first, f"no worker was replaced: {sorted(first)} -> {sorted(now)}")
    log = open(os.path.join(WORK, "worker-crash.log"), errors="replace").read()
    expect("worker_crashed" in log, "no worker_crashed log line")


run()
