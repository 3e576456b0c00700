#!/usr/bin/env python3
"""tests/integration/test_dashboard.py — the dashboard at GET / in headless
Chromium (Debian's `chromium`, installed by tests/lib/deps.sh when missing),
driven over the DevTools protocol on a pipe (--remote-debugging-pipe: JSON
messages separated by NUL bytes on fds 3 and 4), so the test needs nothing
beyond the Python standard library.

Cases: the page loads and asks for the key; with the key it shows the
thumbnails of finished jobs (images actually decoded) and the error of a
failed job; Retry on the failed job restarts it until it succeeds; the job
page shows the timeline. Screenshots (the test's artifacts) are kept in
build/test-artifacts/ (next to DARKROOM_BIN), which outlives the temporary
directory; DASHBOARD_SCREENSHOT=path (not a DARKROOM_ variable: the runner
clears those) also copies the gallery screenshot there, e.g. to refresh
tests/integration/dashboard.png for the README.
"""

import base64
import json
import os
import shutil
import subprocess
import sys
import tempfile
import time

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
from harness import API_KEY, BASE_URL, Fail, case, expect, expect_eq, get, run, wait_until  # noqa: E402
from engine_lib import FINAL, WORK, Worker, create, fake, fake_reset, job, wait_status  # noqa: E402

ROOT = os.path.dirname(os.path.dirname(os.path.dirname(os.path.abspath(__file__))))
CHROMIUM = "/usr/bin/chromium"
ARTIFACTS = os.path.join(os.path.dirname(os.environ["DARKROOM_BIN"]), "test-artifacts")


class Browser:
    """Headless Chromium with one page, spoken to over the pipe."""

    def __init__(self):
        self.profile = tempfile.mkdtemp(prefix="chromium-", dir=WORK)
        r_ours, w_theirs = os.pipe()  # chromium writes fd 4
        r_theirs, w_ours = os.pipe()  # chromium reads fd 3

        def fds():
            os.dup2(r_theirs, 3)
            os.dup2(w_theirs, 4)

        args = [CHROMIUM, "--headless", "--no-sandbox", "--disable-gpu", "--disable-quic",
                "--no-first-run", "--disable-background-networking", "--disable-component-update",
                "--disable-sync", "--disable-dev-shm-usage", "--hide-scrollbars",
                "--remote-debugging-pipe", f"--user-data-dir={self.profile}",
                "--window-size=1200,800", "about:blank"]
        self.log = open(os.path.join(WORK, "chromium.log"), "ab")
        self.proc = subprocess.Popen(args, preexec_fn=fds, pass_fds=(3, 4),
                                     stdin=subprocess.DEVNULL, stdout=self.log, stderr=self.log)
        os.close(r_theirs)
        os.close(w_theirs)
        self.rd = os.fdopen(r_ours, "rb", buffering=0)
        self.wr = os.fdopen(w_ours, "wb", buffering=0)
        self.buf = b""
        self.next_id = 0
        self.events = []
        targets = self.call("Target.getTargets")["targetInfos"]
        page = [t for t in targets if t["type"] == "page"][0]
        self.session = self.call("Target.attachToTarget", targetId=page["targetId"], flatten=True)["sessionId"]
        self.page("Page.enable")
        self.page("Runtime.enable")
        self.page("Emulation.setDeviceMetricsOverride", width=1200, height=800, deviceScaleFactor=1, mobile=False)

    def _read(self):
        while b"\0" not in self.buf:
            chunk = self.rd.read(1 << 16)
            if not chunk:
                raise Fail("chromium closed the DevTools pipe")
            self.buf += chunk
        msg, self.buf = self.buf.split(b"\0", 1)
        return json.loads(msg)

    def call(self, method, session=None, **params):
        self.next_id += 1
        msg = {"id": self.next_id, "method": method, "params": params}
        if session:
            msg["sessionId"] = session
        self.wr.write(json.dumps(msg).encode() + b"\0")
        while True:
            m = self._read()
            if m.get("id") == self.next_id:
                if "error" in m:
                    raise Fail(f"{method}: {m['error']}")
                return m.get("result", {})
            self.events.append(m)

    def page(self, method, **params):
        return self.call(method, session=self.session, **params)

    def eval(self, expr):
        r = self.page("Runtime.evaluate", expression=expr, returnByValue=True, awaitPromise=True)
        if "exceptionDetails" in r:
            raise Fail(f"script failed: {expr[:80]!r}: {r['exceptionDetails'].get('text')}"
                       f" {r['exceptionDetails'].get('exception', {}).get('description', '')}")
        return r["result"].get("value")

    def goto(self, url):
        self.page("Page.navigate", url=url)
        wait_until(lambda: self.eval("document.readyState") == "complete", timeout=15, what=f"{url} loaded")

    def wait(self, expr, timeout=20, what=None):
        return wait_until(lambda: self.eval(expr), timeout=timeout, interval=0.25, what=what or expr)

    def screenshot(self, path):
        data = self.page("Page.captureScreenshot", format="png")["data"]
        with open(path, "wb") as f:
            f.write(base64.b64decode(data))
        return path

    def close(self):
        try:
            self.call("Browser.close")
        except Exception:
            pass
        try:
            self.proc.wait(timeout=10)
        except subprocess.TimeoutExpired:
            self.proc.kill()
            self.proc.wait()
        self.rd.close()
        self.wr.close()
        self.log.close()
        shutil.rmtree(self.profile, ignore_errors=True)


STATE = {}


def browser():
    if "browser" not in STATE:
        if not os.access(CHROMIUM, os.X_OK):
            subprocess.run(["bash", os.path.join(ROOT, "tests/lib/deps.sh"), "chromium"], check=True,
                           stdin=subprocess.DEVNULL)
        STATE["browser"] = Browser()
    return STATE["browser"]


@case("GET / is a self-contained HTML page")
def _():
    r = get("/", key=None)
    expect_eq(r.status, 200, "status")
    expect_eq(r.content_type, "text/html", "content type")
    html = r.body.decode("utf-8")
    expect("<script" in html and "<style" in html, "inline script and style")
    for ext in ('src="http', 'href="http', "<link", 'src="//', "import("):
        expect(ext not in html, f"external asset reference {ext!r}")


@case("jobs for the gallery: two succeeded, one failed")
def _():
    fake_reset()
    w = Worker(2, name="dashboard-worker")
    try:
        ok = [create({"fake_output": "url", "prompt": f"a lighthouse {i}"}, model="acme/flux",
                     renditions=["thumb"]) for i in range(2)]
        wait_status(ok, FINAL, timeout=60)
        fake("/_control", {"reject_creates": True})
        bad = create({"fake_output": "url", "prompt": "refused"}, model="acme/refused", renditions=["thumb"])
        j = wait_status([bad], FINAL, timeout=60)[0]
        expect_eq(j["status"], "failed", "the refused job")
        fake("/_control", {"reject_creates": False})
    finally:
        w.stop()
    for jid in ok:
        expect_eq(job(jid)["status"], "succeeded", f"job {jid}")
    STATE["ok"], STATE["bad"] = ok, bad


@case("the dashboard asks for the API key once and keeps it")
def _():
    b = browser()
    b.goto(BASE_URL + "/")
    b.wait("!!document.querySelector('#login input[type=password]')", what="the key form")
    b.eval(f"document.getElementById('key').value = {json.dumps(API_KEY)};"
           " document.querySelector('#login button').click(); true")
    b.wait("document.querySelectorAll('#gallery .card').length >= 3", what="the gallery")
    expect_eq(b.eval("localStorage.getItem('darkroom.api_key')"), API_KEY, "key kept in localStorage")
    b.goto(BASE_URL + "/")
    b.wait("document.querySelectorAll('#gallery .card').length >= 3", what="the gallery after a reload")
    expect(not b.eval("!!document.getElementById('login')"), "no key form after a reload")


@case("the status filter offers every status (from the core's one list) and all")
def _():
    b = browser()
    got = b.eval("Array.prototype.map.call(document.querySelectorAll('#f-status option'),"
                 " function (o) { return o.value; })")
    expect_eq(got, ["", "queued", "starting", "processing", "persisting", "succeeded", "failed",
                    "canceled"], "the options of #f-status")


@case("succeeded jobs show their thumbnails, loaded, over a BlurHash placeholder")
def _():
    b = browser()
    for jid in STATE["ok"]:
        sel = f"#gallery .card[data-id='{jid}']"
        b.wait(f"(function(){{var i=document.querySelector(\"{sel} img\");"
               f" return !!i && i.complete && i.naturalWidth > 0;}})()", what=f"thumbnail of {jid} loaded")
        src = b.eval(f"document.querySelector(\"{sel} img\").src")
        expect("thumb" in src, f"the thumb rendition is shown: {src}")
        expect(b.eval(f"!!document.querySelector(\"{sel} canvas\")"), f"BlurHash canvas for {jid}")
        expect_eq(b.eval(f"document.querySelector(\"{sel} .status\").textContent"), "succeeded", "badge")
    # the placeholder is the decoded BlurHash, not a blank canvas
    painted = b.eval("(function(){var c=document.querySelector('#gallery .card canvas');"
                     " var d=c.getContext('2d').getImageData(0,0,c.width,c.height).data, s=0;"
                     " for (var i=0;i<d.length;i+=4) s+=d[i]+d[i+1]+d[i+2]; return s>0;})()")
    expect(painted, "the BlurHash canvas holds pixels")


@case("a failed job shows its error with the step")
def _():
    b = browser()
    sel = f"#gallery .card[data-id='{STATE['bad']}']"
    text = b.wait(f"(document.querySelector(\"{sel} .error\")||{{}}).textContent", what="error text")
    err = job(STATE["bad"])["error"]
    expect(text.startswith("submit"), f"error names the step: {text!r}")
    expect(err["code"] in text, f"error names the code {err['code']}: {text!r}")
    expect(b.eval(f"!!document.querySelector(\"{sel} button.retry\")"), "a Retry button")
    os.makedirs(ARTIFACTS, exist_ok=True)
    path = b.screenshot(os.path.join(ARTIFACTS, "dashboard.png"))
    print(f"     screenshot: {path}", flush=True)
    out = os.environ.get("DASHBOARD_SCREENSHOT")
    if out:
        shutil.copyfile(path, out)


@case("Retry on the failed job restarts it and it succeeds")
def _():
    b = browser()
    jid = STATE["bad"]
    w = Worker(2, name="dashboard-retry")
    try:
        b.eval(f"document.querySelector(\"#gallery .card[data-id='{jid}'] button.retry\").click(); true")
        wait_until(lambda: job(jid)["attempts"] >= 1 and job(jid)["status"] != "failed", timeout=10,
                   what="the job restarted")
        j = wait_status([jid], FINAL, timeout=60)[0]
        expect_eq(j["status"], "succeeded", "status after the retry")
        b.wait(f"(document.querySelector(\"#gallery .card[data-id='{jid}']\")||{{dataset:{{}}}})"
               ".dataset.status === 'succeeded'", what="the card shows succeeded")
        b.wait(f"(function(){{var i=document.querySelector(\"#gallery .card[data-id='{jid}'] img\");"
               " return !!i && i.complete && i.naturalWidth > 0;})()", what="its thumbnail")
    finally:
        w.stop()


@case("the job page shows the event timeline and the renditions")
def _():
    b = browser()
    jid = STATE["bad"]
    b.eval(f"document.querySelector(\"#gallery .card[data-id='{jid}']\").click(); true")
    b.wait(f"(document.getElementById('job')||{{dataset:{{}}}}).dataset.id === '{jid}'", what="the job page")
    kinds = b.wait("(function(){var r=[].map.call(document.querySelectorAll('#timeline tbody tr td:nth-child(2)'),"
                   " function(td){return td.textContent;}); return r.length ? r : null;})()", what="timeline rows")
    expect("created" in kinds and "submit" in kinds, f"timeline kinds: {kinds}")
    links = b.eval("[].map.call(document.querySelectorAll('.out li a'), function(a){return a.textContent;})")
    expect("thumb" in links, f"rendition links: {links}")
    b.screenshot(os.path.join(ARTIFACTS, "dashboard-job.png"))


@case("a workflow's page shows its steps as a timeline, each linking to its step")
def _():
    fake_reset()
    w = Worker(2, name="dashboard-wf-worker")
    try:
        body = {"input": {"title": "Sourdough"},
                "steps": [{"name": "concept", "adapter": "replicate", "model": "acme/llama",
                           "input": {"prompt": "{input.title}", "fake_output": "text"}},
                          {"name": "image", "adapter": "replicate", "model": "acme/flux",
                           "input": {"prompt": {"$ref": "steps.concept.text"}}, "renditions": ["thumb"]}]}
        from harness import post
        wf = post("/v1/jobs", body).json["id"]
        wait_status([wf], FINAL, timeout=60)
    finally:
        w.stop()
    b = browser()
    b.eval(f"location.hash = '#/jobs/{wf}'; true")
    rows = b.wait("(function(){var r=[].map.call(document.querySelectorAll('#steps tbody tr'),"
                  " function(tr){return [tr.children[1].textContent, tr.children[2].textContent];});"
                  " return r.length ? r : null;})()", what="the steps table")
    expect_eq(rows, [["concept", "succeeded"], ["image", "succeeded"]], "steps, in order, with their status")
    link = b.eval("document.querySelector('#steps tbody tr a').getAttribute('href')")
    expect(link.startswith("#/jobs/j_"), f"a step links to its own page: {link}")
    b.screenshot(os.path.join(ARTIFACTS, "dashboard-workflow.png"))


@case("GET /v1/jobs/{id}/events needs a key and knows unknown jobs")
def _():
    from harness import expect_problem
    expect_problem(get(f"/v1/jobs/{STATE['bad']}/events", key=None), 401)
    expect_problem(get("/v1/jobs/j_00000000000000000000000000/events"), 404)
    ev = get(f"/v1/jobs/{STATE['bad']}/events").json["data"]
    expect(ev[0]["kind"] == "created" and ev[0]["at"].endswith("Z"), f"first event: {ev[0]}")


if __name__ == "__main__":
    import atexit
    atexit.register(lambda: STATE["browser"].close() if "browser" in STATE else None)
    run()
