#!/usr/bin/env python3
"""tests/integration/test_workflows.py — workflow jobs (POST /v1/jobs with
`steps`) end to end: lighttpd + darkroom.fcgi + MariaDB + `darkroom worker`
+ the fake Replicate.

A workflow's steps are jobs of their own (each with its prediction,
attempts, events and outputs); the workflow follows them. The cases: a
language model's concept drawn by an image model and finished by a third
step that gets darkroom's own URL of the image; every 422 of intake; a
step whose create fails once, retried alone; a step failing for good
(error.workflow_step) and a retry that runs only that step; cancel during
step 2 reaching its prediction; a worker SIGKILLed between steps; what a
client may do to a step; delete.
"""

import os
import signal
import subprocess
import sys
import time

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
from harness import (case, expect, expect_eq, expect_json, expect_problem, get, post,  # noqa: E402
                     request, run, sql, wait_until)

from engine_lib import BIN, FINAL, Worker, creates_by_job, fake, fake_reset  # noqa: E402

TEXT = "A golden loaf on a wooden board, steam rising"


def workflow(title="Ten tips for sourdough", image_extra=None, third=False, **extra):
    steps = [
        {"name": "concept", "adapter": "replicate", "model": "acme/llama",
         "input": {"prompt": "A thumbnail concept for: {input.title}",
                   "fake_output": "text", "fake_text": TEXT}},
        {"name": "image", "adapter": "replicate", "model": "acme/image",
         "input": {"prompt": {"$ref": "steps.concept.text"}, "aspect_ratio": "16:9",
                   "note": "{{literal}} and {not a path} for {input.title}"},
         "renditions": ["thumb"]},
    ]
    if image_extra:
        steps[1]["input"].update(image_extra)
    if third:
        steps.append({"name": "upscale", "adapter": "replicate", "model": "acme/upscale",
                      "input": {"image": {"$ref": "steps.image.outputs.0.url"},
                                "thumb": "{steps.image.outputs.0.renditions.thumb.url}",
                                "sha": {"$ref": "steps.image.outputs.0.sha256"}},
                      "renditions": []})
    body = {"input": {"title": title}, "steps": steps, "metadata": {"video_id": "v9"}}
    body.update(extra)
    return body


def create(body):
    return expect_json(post("/v1/jobs", body), 202)


def show(jid):
    return expect_json(get(f"/v1/jobs/{jid}"), 200)


def wait_job(jid, statuses=FINAL, timeout=60):
    wait_until(lambda: show(jid)["status"] in statuses, timeout=timeout, interval=0.25,
               what=f"workflow {jid} reaching {statuses}")
    return show(jid)


def fake_inputs(model):
    """Inputs the fake received for MODEL's predictions, in create order."""
    st = fake("/_state")
    order = [c["id"] for c in st["creates"] if c["model"] == model]
    return [st["predictions"][pid]["input"] for pid in order]


def statuses_seen(jid):
    return [r[0] for r in sql(f"SELECT to_status FROM job_events WHERE job_id = '{jid}'"
                              f" AND kind IN ('created', 'status', 'retry') ORDER BY id")]


def kill_group(w):
    try:
        os.killpg(w.proc.pid, signal.SIGKILL)
    except ProcessLookupError:
        pass
    w.proc.wait()
    w.log.close()


@case("concept -> image -> upscale: each step's input resolved from stored data, the job succeeds")
def three_steps():
    fake_reset()
    w = Worker(2, name="wf-worker")
    try:
        j = create(workflow(third=True))
        expect(j["id"].startswith("j_"), "a job id")
        expect_eq(j["kind"], "workflow", "kind")
        expect_eq(j["status"], "queued", "status at intake")
        expect_eq([s["name"] for s in j["steps"]], ["concept", "image", "upscale"], "steps in order")
        expect_eq([s["status"] for s in j["steps"]], ["queued"] * 3, "steps queued")
        expect_eq(j["steps"][1]["input"]["prompt"], {"$ref": "steps.concept.text"},
                  "a step's input is shown as written")
        done = wait_job(j["id"])
        expect_eq(done["status"], "succeeded", f"workflow status: {done.get('error')}")
        expect_eq([s["status"] for s in done["steps"]], ["succeeded"] * 3, "every step succeeded")
        text = done["steps"][0]["outputs"][0]
        expect_eq(text["kind"], "text", "the concept is a text output")
        img_inputs = fake_inputs("acme/image")
        expect_eq(len(img_inputs), 1, "one image prediction")
        expect_eq(img_inputs[0]["prompt"], TEXT, "the image model received the concept's text, joined")
        expect_eq(img_inputs[0]["note"], "{literal}} and {not a path} for Ten tips for sourdough",
                  "{{ is a brace, other braces stay text, {input.title} is replaced")
        expect_eq(fake_inputs("acme/llama")[0]["prompt"],
                  "A thumbnail concept for: Ten tips for sourdough", "a placeholder of the input")
        image_out = done["steps"][1]["outputs"][0]
        up = fake_inputs("acme/upscale")[0]
        expect_eq(up["image"], image_out["url"], "the upscaler got darkroom's URL of the image")
        expect("/media/" in up["image"] and fake("/_state") and "/files/" not in up["image"],
               f"never the provider's URL: {up['image']}")
        expect_eq(up["sha"], image_out["sha256"], "a $ref to the output's sha256")
        expect_eq(up["thumb"], image_out["renditions"][0]["url"], "a placeholder of a rendition URL")
        r = request("GET", "", key=None, base=up["image"])
        expect_eq(r.status, 200, "the provider can fetch the stored image")
        expect_eq(done["outputs"], done["steps"][2]["outputs"], "the job's outputs are its last step's")
        seen = statuses_seen(j["id"])
        expect_eq(seen, ["queued", "starting", "processing", "persisting", "succeeded"],
                  "the workflow's status moved forward only")
        counts = creates_by_job()
        for s in done["steps"]:
            expect_eq(counts.get(s["id"], 0), 1, f"one prediction for step {s['name']}")
        listed = expect_json(get("/v1/jobs?limit=100"), 200)["data"]
        ids = [x["id"] for x in listed]
        expect(j["id"] in ids, "the workflow is listed")
        mine = [x for x in listed if x["id"] == j["id"]][0]
        expect_eq(mine["outputs"], mine["steps"][2]["outputs"], "listed, its outputs are its last step's")
        expect_eq([s["status"] for s in mine["steps"]], ["succeeded"] * 3, "listed with its steps")
        expect(not any(s["id"] in ids for s in done["steps"]), "its steps are not listed as jobs")
        step = show(done["steps"][1]["id"])
        expect_eq(step["workflow_id"], j["id"], "a step names its workflow")
        expect_eq(step["name"], "image", "and its name")
        out = subprocess.run([BIN, "jobs", "show", j["id"]], capture_output=True, text=True,
                             timeout=60, stdin=subprocess.DEVNULL)
        expect_eq(out.returncode, 0, f"jobs show: {out.stderr}")
        for name in ("concept", "image", "upscale"):
            expect(name in out.stdout, f"jobs show lists step {name}: {out.stdout}")
    finally:
        expect(not w.stop(), "worker processes outlived the supervisor")


@case("intake: 422 naming the field for every bad workflow, nothing stored")
def bad_workflows():
    before = sql("SELECT COUNT(*) FROM jobs")[0][0]

    def bad(mutate, field, words):
        body = workflow()
        mutate(body)
        doc = expect_problem(post("/v1/jobs", body), 422, field)
        expect(words in doc["detail"], f"{field}: {doc['detail']!r} says {words!r}")

    def setp(i, key, value):
        def m(body):
            body["steps"][i]["input"][key] = value
        return m

    bad(setp(1, "prompt", {"$ref": "steps.nope.text"}), "steps[1].input.prompt", "no step named")
    bad(setp(0, "prompt", {"$ref": "steps.image.text"}), "steps[0].input.prompt", "forward reference")
    bad(setp(1, "prompt", {"$ref": "steps.image.text"}), "steps[1].input.prompt", "forward reference")
    bad(setp(1, "prompt", {"$ref": "steps.concept.words"}), "steps[1].input.prompt", "not a path")
    bad(setp(1, "prompt", "about {steps.concept.outputs.x.url}"), "steps[1].input.prompt", "not a path")
    bad(setp(1, "prompt", {"$ref": "input.subtitle"}), "steps[1].input.prompt", "no such value")
    bad(setp(1, "list", [1, {"$ref": "steps.concept.outputs.0.renditions.card.url"}]),
        "steps[1].input.list[1]", "no rendition")
    bad(setp(1, "prompt", {"$ref": "steps.concept.text", "x": 1}), "steps[1].input.prompt", "one member")
    bad(lambda b: b.update(steps=[dict(b["steps"][0], name=f"s{i}") for i in range(17)]),
        "steps", "at most 16")
    bad(lambda b: b.update(steps=[]), "steps", "1 to 16")
    bad(lambda b: b["steps"][1].update(name="concept"), "steps[1].name", "steps[0] too")
    bad(lambda b: b["steps"][1].pop("name"), "steps[1].name", "required")
    bad(lambda b: b["steps"][1].update(model="not a model"), "steps[1].model", "owner/name")
    bad(lambda b: b["steps"][1].update(adapter="nope"), "steps[1].adapter", "unknown adapter")
    bad(lambda b: b["steps"][1].update(renditions=["nope"]), "steps[1].renditions", "nope")
    bad(lambda b: b["steps"][1].update(colour="red"), "steps[1]", "unknown field")
    bad(lambda b: b.update(model="acme/flux"), "model", "each of its steps")
    bad(lambda b: b.pop("input"), "input", "required")
    expect_eq(sql("SELECT COUNT(*) FROM jobs")[0][0], before, "no job row written")


@case("a reference to an output the earlier step did not make fails the step at submit: bad_reference")
def bad_reference_at_submit():
    fake_reset()
    w = Worker(1, name="wf-badref-worker")
    try:
        j = create(workflow(image_extra={"prompt": {"$ref": "steps.concept.outputs.2.url"}}))
        done = wait_job(j["id"])
        expect_eq(done["status"], "failed", "the workflow failed")
        expect_eq((done["error"]["code"], done["error"]["workflow_step"]), ("bad_reference", "image"),
                  f"the step's error: {done['error']}")
        expect_eq(fake_inputs("acme/image"), [], "the image step was never sent")
    finally:
        expect(not w.stop(), "worker processes outlived the supervisor")


@case("a step whose create fails once is retried alone; the step before it never runs again")
def step_retried_alone():
    fake_reset(create_errors_for={"acme/image": 1})
    w = Worker(2, name="wf-retry-worker")
    try:
        j = create(workflow())
        done = wait_job(j["id"])
        expect_eq(done["status"], "succeeded", f"status: {done.get('error')}")
        expect_eq(fake("/_state")["calls"].get("create_errors_for"), 1, "the injected 500")
        counts = creates_by_job()
        concept, image = done["steps"]
        expect_eq(counts.get(concept["id"], 0), 1, "the concept ran once")
        expect_eq(counts.get(image["id"], 0), 1, "the image was created once")
        kinds = [r[0] for r in sql(f"SELECT kind FROM job_events WHERE job_id = '{image['id']}'")]
        expect("retry_scheduled" in kinds, f"the image step's own retry: {kinds}")
    finally:
        expect(not w.stop(), "worker processes outlived the supervisor")


@case("a step failing for good fails the workflow (workflow_step); retry runs only that step")
def fail_and_retry():
    fake_reset(fail_models=["acme/image"])
    w = Worker(2, name="wf-fail-worker")
    try:
        j = create(workflow())
        failed = wait_job(j["id"])
        expect_eq(failed["status"], "failed", "the workflow failed")
        expect_eq(failed["error"]["workflow_step"], "image", "error.workflow_step")
        expect_eq(failed["error"]["code"], failed["steps"][1]["error"]["code"],
                  "error.code is the step's")
        expect_eq([s["status"] for s in failed["steps"]], ["succeeded", "failed"], "step statuses")
        fake("/_control", {"fail_models": []})
        r = expect_json(post(f"/v1/jobs/{j['id']}/retry"), 202)
        expect(r["status"] in ("processing", "starting"), f"a retried workflow runs: {r['status']}")
        expect_eq(r["error"], None, "its error is cleared")
        done = wait_job(j["id"])
        expect_eq(done["status"], "succeeded", f"after retry: {done.get('error')}")
        counts = creates_by_job()
        expect_eq(counts.get(done["steps"][0]["id"], 0), 1, "the concept step never ran again")
        expect_eq(counts.get(done["steps"][1]["id"], 0), 2, "the image step ran twice")
        expect_eq(len(fake_inputs("acme/llama")), 1, "one language model prediction in all")
    finally:
        expect(not w.stop(), "worker processes outlived the supervisor")


@case("cancel during step 2 cancels step 2's prediction; the workflow ends canceled")
def cancel_step_two():
    fake_reset()
    w = Worker(2, name="wf-cancel-worker")
    try:
        j = create(workflow(image_extra={"fake_duration": 60}))
        wait_until(lambda: show(j["id"])["steps"][1]["prediction"] is not None, timeout=30,
                   what="step 2 submitted")
        expect_eq(show(j["id"])["status"], "processing", "the workflow is processing")
        expect_json(post(f"/v1/jobs/{j['id']}/cancel"), 202)
        done = wait_job(j["id"])
        expect_eq(done["status"], "canceled", "the workflow was canceled")
        expect_eq(done["steps"][1]["status"], "canceled", "step 2 was canceled")
        pid = done["steps"][1]["prediction"]["id"]
        expect_eq(fake("/_state")["predictions"][pid]["status"], "canceled",
                  "the provider's prediction was canceled")
        expect_problem(post(f"/v1/jobs/{j['id']}/cancel"), 409)
    finally:
        expect(not w.stop(), "worker processes outlived the supervisor")


@case("a cancel while a step is storing its outputs: the step ends, the next never runs")
def cancel_while_storing():
    fake_reset()
    w = Worker(1, name="wf-cancel-store-worker")
    try:
        body = workflow()
        body["steps"] = [
            {"name": "a", "adapter": "replicate", "model": "acme/image",
             "input": {"prompt": "x", "fake_hold": "g1"}},
            {"name": "b", "adapter": "replicate", "model": "acme/upscale",
             "input": {"image": {"$ref": "steps.a.outputs.0.url"}}}]
        j = create(body)
        wait_until(lambda: fake("/_state")["held"], timeout=30, what="step a's download held")
        expect_json(post(f"/v1/jobs/{j['id']}/cancel"), 202)
        fake("/_release", {"gate": "g1"})
        done = wait_job(j["id"])
        expect_eq(done["status"], "canceled", "the workflow was canceled")
        expect_eq(done["error"], None, "a cancel is not an error")
        expect_eq(fake_inputs("acme/upscale"), [], "step b never ran")
        expect_eq(done["steps"][1]["status"], "queued", "step b never started")
        again = expect_problem(post(f"/v1/jobs/{j['id']}/cancel"), 409)
        expect("ended" in again["detail"], again["detail"])
    finally:
        expect(not w.stop(), "worker processes outlived the supervisor")


@case("a worker SIGKILLed between steps: nothing lost, nothing run twice")
def sigkill_between_steps():
    fake_reset()
    w = Worker(1, name="wf-kill-worker")
    j = create(workflow(image_extra={"fake_duration": 2}))
    try:
        wait_until(lambda: show(j["id"])["steps"][0]["status"] == "succeeded", timeout=30,
                   interval=0.05, what="step 1 succeeded")
    finally:
        kill_group(w)
    mid = show(j["id"])
    expect(mid["status"] not in FINAL, f"the workflow has not ended: {mid['status']}")
    expect(mid["progress"] >= 0.5, f"one step of two done shows: {mid['progress']}")
    w2 = Worker(2, name="wf-kill-worker2")
    try:
        done = wait_job(j["id"], timeout=90)
        expect_eq(done["status"], "succeeded", f"status: {done.get('error')}")
        counts = creates_by_job()
        for s in done["steps"]:
            expect_eq(counts.get(s["id"], 0), 1, f"step {s['name']} created once")
    finally:
        expect(not w2.stop(), "worker processes outlived the supervisor")


@case("a step is not acted on alone (409); deleting the workflow deletes its steps")
def steps_and_delete():
    wf = [r[0] for r in sql("SELECT id FROM jobs WHERE kind = 'workflow' AND status IN"
                            " ('succeeded', 'failed', 'canceled') LIMIT 1")][0]
    steps = [r[0] for r in sql(f"SELECT id FROM jobs WHERE parent_id = '{wf}'")]
    expect(steps, "the workflow has steps")
    for path, method in ((f"/v1/jobs/{steps[0]}/cancel", "POST"), (f"/v1/jobs/{steps[0]}/retry", "POST"),
                         (f"/v1/jobs/{steps[0]}", "DELETE")):
        doc = expect_problem(request(method, path), 409)
        expect("workflow" in doc["detail"], f"{method} {path}: {doc['detail']}")
    r = request("DELETE", f"/v1/jobs/{wf}")
    expect_eq(r.status, 204, "the workflow is deleted")
    left = sql(f"SELECT COUNT(*) FROM jobs WHERE id = '{wf}' OR parent_id = '{wf}'")[0][0]
    expect_eq(int(left), 0, "its steps went with it")
    outs = sql("SELECT COUNT(*) FROM outputs WHERE job_id IN ('" + "','".join(steps) + "')")[0][0]
    expect_eq(int(outs), 0, "and their outputs")


if __name__ == "__main__":
    run()
