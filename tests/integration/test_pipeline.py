#!/usr/bin/env python3
"""tests/integration/test_pipeline.py — the persistence pipeline end to end:
lighttpd + darkroom.fcgi + `darkroom worker` + MariaDB + the fake Replicate
(tests/fakes/replicate.py) + a real S3 server (s3rver).

Each case creates jobs through the API with explicit renditions, runs real
worker processes (with the environment the case needs: DARKROOM_SINK=s3,
DARKROOM_S3_SIGNATURE=v2, DARKROOM_DOWNLOAD_* …) and checks what ended up
where: the job object's outputs, the objects read back from the fs sink
through lighttpd's /media/ and from s3rver with plain GETs (their bytes,
sizes from the file headers, content types and cache headers), and for
hostile inputs the job's error step and code, with the worker processes
still the same ones; and a worker's peak RSS (VmHWM) persisting the same
pixels as an uncompressed and a compressed PNG, equal when images are
decoded from the downloaded file.

s3rver checks SigV2 signatures (a wrong secret gets 403) but not SigV4
ones; SigV4 signing is proven by tests/plugins/test_s3.c.

Rows keep storage keys; each `url` is made by the reading process's
active sink. The app's is fs, so the s3 cases read their outputs' URLs
through `darkroom jobs show` run with the worker's sink (DARKROOM_SINK=s3).
"""

import base64
import hashlib
import hmac
import http.server
import json
import os
import re
import signal
import socket
import struct
import subprocess
import sys
import threading
import time
import urllib.error
import urllib.parse
import urllib.request

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
from harness import (Fail, callback_row, case, expect, expect_eq, expect_json, get, post,  # noqa: E402
                     run, sql, wait_until)

from engine_lib import FAKE, S3_BUCKET, S3rver, Worker, fake, free_port, port_open  # noqa: E402,F401


FAKE_PORT = urllib.parse.urlsplit(FAKE).port
BIN = os.environ["DARKROOM_BIN"]
WORK = os.environ.get("DARKROOM_TEST_DIR", "/tmp")
MEDIA = os.environ["DARKROOM_MEDIA"]
BASE_URL = os.environ["DARKROOM_URL"].rstrip("/")


# The settings of the generated config's presets as the tag in their keys
# reads them (core/rendition.c rendition_preset_tag): the renderer version,
# width, height, fit (inside 1, cover 2), format (webp 1, avif 2, jpeg 3,
# png 4), quality.
TAG_SETTINGS = {"thumb": "r1:256:256:1:1:80", "card": "r1:1280:720:2:1:82",
                "small": "r1:64:64:1:3:80", "av": "r1:128:128:1:2:50"}


def tag(name):
    """The 8 hex digits of preset NAME's tag in rendition keys."""
    return hashlib.sha256(TAG_SETTINGS[name].encode()).hexdigest()[:8]


CALLBACK_SECRET = os.environ["DARKROOM_CALLBACK_SECRET"]
S3_PORT = int(os.environ["DARKROOM_S3_PORT"])
S3_URL = f"http://127.0.0.1:{S3_PORT}/{S3_BUCKET}"

FINAL = ("succeeded", "failed", "canceled")
CACHE_CONTROL = "public, max-age=31536000, immutable"
ALL_PRESETS = ["thumb", "card", "small", "av"]
# The presets of the generated config: (width, height, fit, content type).
PRESETS = {
    "thumb": (256, 256, "inside", "image/webp"),
    "card": (1280, 720, "cover", "image/webp"),
    "small": (64, 64, "inside", "image/jpeg"),
    "av": (128, 128, "inside", "image/avif"),
}
EXT = {"image/png": "png", "image/jpeg": "jpg", "image/webp": "webp", "image/avif": "avif",
       "text/plain; charset=utf-8": "txt"}
BASE83 = "0123456789ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz#$%*+,-.:;=?@[]^_{|}~"


# ------------------------------------------------------------ the fake


def fake_reset(**faults):
    fake("/_reset", {})
    settings = {"start_delay": 0.1, "duration": 0.3}
    settings.update(faults)
    fake("/_control", settings)


def fake_downloads():
    return len(fake("/_state")["downloads"])


# ------------------------------------------------------------ workers


def check_worker(w, leftover):
    """After W.stop() returned LEFTOVER: nothing outlived the supervisor
    and no worker process crashed."""
    expect(not leftover, f"{w.name}: worker processes outlived the supervisor")
    log = w.log_text()
    for bad in ("Sanitizer", "runtime error:", "event=worker.died"):
        expect(bad not in log, f"{w.name}.log shows {bad!r}")


def with_worker(processes=2, env=None, name="pipeline-worker"):
    """Decorator: run the case with a worker pool, stopped afterwards."""

    def wrap(fn):
        def inner():
            w = Worker(processes, name, env)
            try:
                fn(w)
            finally:
                leftover = w.stop()
            check_worker(w, leftover)
        return inner

    return wrap


def expect_same_workers(w, before):
    expect(w.proc.poll() is None, "the worker supervisor died")
    expect_eq(w.children(), before, "worker processes (none may have died and been replaced)")


def conf_copy(name, settings=None, extra="", plugins=None):
    """A copy of the test config as WORK/NAME.conf for one worker: each
    (section, key) of SETTINGS set to its value (replaced, or added at
    the top of the section), EXTRA sections appended, and with PLUGINS
    the plugin folder replaced."""
    lines = open(os.environ["DARKROOM_CONF"]).read().splitlines()
    settings = dict(settings or {})
    if plugins:
        settings[("server", "plugin_dir")] = plugins
    present, section = set(), None
    for line in lines:
        m = re.match(r"^\[(\w+)|^(\w+)\s*=", line)
        if m and m.group(1):
            section = m.group(1)
        elif m:
            present.add((section, m.group(2)))
    out, section = [], None
    for line in lines:
        m = re.match(r"^\[(\w+)", line)
        if m:
            section = m.group(1)
            out.append(line)
            for (sec, key), value in list(settings.items()):
                if sec == section and (sec, key) not in present:
                    out.append(f"{key} = {value}")
                    del settings[(sec, key)]
            continue
        m = re.match(r"^(\w+)\s*=", line)
        if m and (section, m.group(1)) in settings:
            out.append(f"{m.group(1)} = {settings.pop((section, m.group(1)))}")
            continue
        out.append(line)
    expect(not settings, f"conf_copy: sections not found for {settings}")
    path = os.path.join(WORK, f"{name}.conf")
    with open(path, "w") as f:
        f.write("\n".join(out) + "\n\n" + extra)
    return path


def fixture_plugins():
    """A plugin folder with the shipped plugins and the fixture leaky.so
    (tests/plugins/fixtures/leaky.c)."""
    plugins = os.path.join(WORK, "plugins-leaky")
    os.makedirs(plugins, exist_ok=True)
    build = os.path.dirname(BIN)
    src_dir = os.path.join(build, "plugins")
    wanted = {so: os.path.join(src_dir, so) for so in os.listdir(src_dir) if so.endswith(".so")}
    wanted["leaky.so"] = os.path.join(build, "tests", "fixtures", "leaky.so")
    for so, target in wanted.items():
        if not os.path.exists(os.path.join(plugins, so)):
            os.symlink(target, os.path.join(plugins, so))
    return plugins


def queued_for(adapter, inp=None):
    """A job created for the null adapter (the API knows no other adapter
    of these tests) and moved to ADAPTER before any worker sees it."""
    body = {"adapter": "null", "model": "acme/model", "input": {"prompt": "x", **(inp or {})},
            "renditions": []}
    jid = expect_json(post("/v1/jobs", body), 202)["id"]
    sql(f"UPDATE jobs SET adapter = '{adapter}' WHERE id = '{jid}'")
    return jid


def stored_with(data):
    """Objects of the fs sink holding bytes DATA (content-addressed)."""
    digest = sha256(data)
    folder = os.path.join(MEDIA, digest[:2])
    return [n for n in os.listdir(folder) if n.startswith(digest)] if os.path.isdir(folder) else []


def kill_worker(w):
    """Kill a worker pool at once, as a crash or a power cut would."""
    try:
        os.killpg(w.proc.pid, signal.SIGKILL)
    except ProcessLookupError:
        pass
    w.proc.wait()


# ------------------------------------------------------------ jobs


def create(inp=None, renditions=None, model="acme/flux", **extra):
    body = {"adapter": "replicate", "model": model, "input": {"prompt": "a lighthouse"},
            "renditions": list(renditions or [])}
    if inp:
        body["input"].update(inp)
    body.update(extra)
    return expect_json(post("/v1/jobs", body), 202)["id"]


def job(jid):
    return expect_json(get(f"/v1/jobs/{jid}"), 200)


def wait_status(ids, statuses=FINAL, timeout=30):
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


def events_of(jid):
    """The job's events as (kind, from, to, detail dict)."""
    out = []
    for kind, frm, to, detail in sql(
            f"SELECT kind, COALESCE(from_status, ''), COALESCE(to_status, ''),"
            f" COALESCE(detail, '') FROM job_events WHERE job_id = '{jid}' ORDER BY id"):
        try:
            d = json.loads(detail) if detail else {}
        except ValueError:
            d = {"raw": detail}
        out.append((kind, frm, to, d if isinstance(d, dict) else {"raw": d}))
    return out


def retries_of(jid, code=None):
    return [d for kind, _, _, d in events_of(jid)
            if kind == "retry_scheduled" and (code is None or d.get("code") == code)]


def expect_failed(j, step, code, what=""):
    label = f"{what or j['id']}"
    expect_eq(j["status"], "failed", f"{label}: status")
    err = j.get("error") or {}
    expect_eq((err.get("step"), err.get("code")), (step, code),
              f"{label}: error step and code (message {err.get('message')!r})")


def expect_failed_code(j, codes, what=""):
    label = f"{what or j['id']}"
    expect_eq(j["status"], "failed", f"{label}: status")
    err = j.get("error") or {}
    expect(err.get("code") in codes,
           f"{label}: error code {err.get('code')!r} (step {err.get('step')!r},"
           f" message {err.get('message')!r}), wanted one of {codes}")
    return err


# ------------------------------------------------------------ HTTP reads


def fetch(url, method="GET"):
    """(status, headers, body) of a plain unauthenticated request."""
    req = urllib.request.Request(url, method=method)
    try:
        with urllib.request.urlopen(req, timeout=30) as r:
            return r.status, r.headers, r.read()
    except urllib.error.HTTPError as e:
        return e.code, e.headers, e.read() or b""


def sha256(data):
    return hashlib.sha256(data).hexdigest()


# ------------------------------------------------------------ image headers


def png_size(b):
    expect(b[:8] == b"\x89PNG\r\n\x1a\n" and b[12:16] == b"IHDR", "not a PNG")
    return struct.unpack(">II", b[16:24])


def jpeg_size(b):
    expect(b[:2] == b"\xff\xd8", "not a JPEG")
    i = 2
    while i + 4 <= len(b):
        if b[i] != 0xFF:
            raise Fail(f"JPEG: no marker at {i}")
        marker = b[i + 1]
        if marker == 0xFF:
            i += 1
            continue
        if marker in (0xD8, 0x01) or 0xD0 <= marker <= 0xD7:
            i += 2
            continue
        length = struct.unpack(">H", b[i + 2:i + 4])[0]
        if 0xC0 <= marker <= 0xCF and marker not in (0xC4, 0xC8, 0xCC):
            h, w = struct.unpack(">HH", b[i + 5:i + 9])
            return w, h
        i += 2 + length
    raise Fail("JPEG: no SOF marker")


def webp_size(b):
    expect(b[:4] == b"RIFF" and b[8:12] == b"WEBP", "not a WebP")
    fourcc, data = b[12:16], b[20:]
    if fourcc == b"VP8 ":
        expect(data[3:6] == b"\x9d\x01\x2a", "WebP VP8: no start code")
        w, h = struct.unpack("<HH", data[6:10])
        return w & 0x3FFF, h & 0x3FFF
    if fourcc == b"VP8L":
        expect(data[0] == 0x2F, "WebP VP8L: no signature")
        bits = int.from_bytes(data[1:5], "little")
        return (bits & 0x3FFF) + 1, ((bits >> 14) & 0x3FFF) + 1
    if fourcc == b"VP8X":
        return int.from_bytes(data[4:7], "little") + 1, int.from_bytes(data[7:10], "little") + 1
    raise Fail(f"WebP: unknown chunk {fourcc!r}")


def avif_size(b):
    expect(b[4:8] == b"ftyp" and b[8:12] in (b"avif", b"avis"), "not an AVIF")
    i = b.find(b"ispe")
    expect(i > 0, "AVIF: no ispe box")
    return struct.unpack(">II", b[i + 8:i + 16])


SIZE_OF = {"image/png": png_size, "image/jpeg": jpeg_size, "image/webp": webp_size,
           "image/avif": avif_size}


def box(w, h, preset):
    """The size a preset makes of a W x H image (never enlarged)."""
    bw, bh, fit, _ = PRESETS[preset]
    if fit == "inside":
        s = min(1.0, bw / w, bh / h)
        return max(1, round(w * s)), max(1, round(h * s))
    if bw > w or bh > h:
        k = min(w / bw, h / bh)
        bw, bh = min(w, max(1, round(bw * k))), min(h, max(1, round(bh * k)))
    return bw, bh


def near(a, b):
    return abs(a[0] - b[0]) <= 1 and abs(a[1] - b[1]) <= 1


# ------------------------------------------------------------ checks


def check_image_output(o, w, h, fmt, ctype, renditions, reader, what):
    """The output's fields, the original and each rendition read back
    with READER(url or key) -> (status, headers, body)."""
    expect_eq(o["kind"], "image", f"{what}: kind")
    expect_eq(o["content_type"], ctype, f"{what}: content_type")
    expect_eq((o["width"], o["height"]), (w, h), f"{what}: size")
    expect_eq(o["format"], fmt, f"{what}: format")
    sha = o["sha256"]
    expect(isinstance(sha, str) and len(sha) == 64, f"{what}: sha256 {sha!r}")
    expect_eq(o["key"], f"{sha[:2]}/{sha}.{EXT[ctype]}", f"{what}: key")
    bh = o.get("blurhash") or ""
    expect(len(bh) == 28 and bh[0] == BASE83[(4 - 1) + (3 - 1) * 9],
           f"{what}: blurhash {bh!r} is not a 4x3 one")
    dc = o.get("dominant_color") or ""
    expect(len(dc) == 7 and dc[0] == "#" and all(c in "0123456789abcdef" for c in dc[1:]),
           f"{what}: dominant_color {dc!r}")
    ph = o.get("phash") or ""
    expect(len(ph) == 16 and all(c in "0123456789abcdef" for c in ph), f"{what}: phash {ph!r}")
    # The original, byte for byte.
    status, headers, body = reader(o)
    expect_eq(status, 200, f"{what}: GET of the original")
    expect_eq(sha256(body), sha, f"{what}: SHA-256 of the stored original")
    expect_eq(len(body), o["bytes"], f"{what}: bytes of the stored original")
    expect_eq(SIZE_OF[ctype](body), (w, h), f"{what}: size in the stored original's header")
    expect_eq((headers.get("Content-Type") or "").lower(), ctype, f"{what}: Content-Type served")
    expect_eq(headers.get("Cache-Control"), CACHE_CONTROL, f"{what}: Cache-Control served")
    if o.get("source_url"):
        s2, _, src = fetch(o["source_url"])
        expect(s2 == 200 and sha256(src) == sha, f"{what}: the original differs from the provider's file")
    # Renditions.
    got = {r["name"]: r for r in o["renditions"]}
    expect_eq(sorted(got), sorted(renditions), f"{what}: renditions")
    for name in renditions:
        r = got[name]
        rtype = PRESETS[name][3]
        expect_eq(r["content_type"], rtype, f"{what}/{name}: content_type")
        want = box(w, h, name)
        expect(near((r["width"], r["height"]), want),
               f"{what}/{name}: size {r['width']}x{r['height']}, expected about {want[0]}x{want[1]}")
        expect_eq(r["key"], f"{sha[:2]}/{sha}/{name}.{tag(name)}.{EXT[rtype]}", f"{what}/{name}: key")
        status, headers, body = reader(r)
        expect_eq(status, 200, f"{what}/{name}: GET")
        expect_eq(len(body), r["bytes"], f"{what}/{name}: bytes")
        expect_eq(SIZE_OF[rtype](body), (r["width"], r["height"]), f"{what}/{name}: size in its header")
        expect_eq((headers.get("Content-Type") or "").lower(), rtype, f"{what}/{name}: Content-Type served")
        expect_eq(headers.get("Cache-Control"), CACHE_CONTROL, f"{what}/{name}: Cache-Control served")


def media_reader(item):
    """Read an fs-sink object through lighttpd's /media/, by its URL."""
    url = item["url"]
    expect(url == f"{BASE_URL}/media/{item['key']}", f"fs URL {url!r} is not /media/ + key")
    status, headers, body = fetch(url)
    if status == 200:
        expect_eq(headers.get("X-Content-Type-Options"), "nosniff", f"{url}: X-Content-Type-Options")
    return status, headers, body


def s3_reader(jid):
    def read(item):
        url = f"{S3_URL}/{item['key']}"
        expect_eq(item["url"], url, "S3 public URL")
        status, headers, body = fetch(url)
        if status == 200:
            expect_eq(headers.get("x-amz-meta-job-id"), jid, f"{url}: x-amz-meta-job-id")
            expect_eq(headers.get("x-amz-meta-model"), "acme/flux", f"{url}: x-amz-meta-model")
            hs, hh, _ = fetch(url, "HEAD")
            expect(hs == 200 and hh.get("Content-Length") == str(len(body))
                   and hh.get("Content-Type") == headers.get("Content-Type"),
                   f"{url}: HEAD disagrees with GET: {hs} {dict(hh)}")
        return status, headers, body
    return read


# ------------------------------------------------------------ servers


class Receiver:
    """A callback receiver on 127.0.0.1: answers the statuses of STATUSES
    in turn (the last one from then on) and records every request."""

    def __init__(self, statuses):
        self.statuses = list(statuses)
        self.requests = []
        self.lock = threading.Lock()
        outer = self

        class Handler(http.server.BaseHTTPRequestHandler):
            protocol_version = "HTTP/1.1"

            def log_message(self, *a):
                pass

            def do_POST(self):
                n = int(self.headers.get("Content-Length") or 0)
                body = self.rfile.read(n)
                with outer.lock:
                    outer.requests.append({"path": self.path, "headers": dict(self.headers),
                                           "body": body, "at": time.time()})
                    k = len(outer.requests) - 1
                    status = outer.statuses[min(k, len(outer.statuses) - 1)]
                out = b'{"ok":true}' if status < 300 else b'{"error":"try later"}'
                self.send_response(status)
                self.send_header("Content-Type", "application/json")
                self.send_header("Content-Length", str(len(out)))
                self.end_headers()
                self.wfile.write(out)

        self.server = http.server.ThreadingHTTPServer(("127.0.0.1", 0), Handler)
        self.server.daemon_threads = True
        self.port = self.server.server_address[1]
        self.thread = threading.Thread(target=self.server.serve_forever, daemon=True)
        self.thread.start()

    def close(self):
        self.server.shutdown()
        self.server.server_close()


class Dripper:
    """A loopback HTTP server whose every GET answers 200 with a file of
    LENGTH bytes declared, sent CHUNK bytes every EVERY seconds until the
    client hangs up. Records each request as [start, end] (monotonic; the
    end is when a write found the client gone)."""

    def __init__(self, chunk=1, every=1.0, length=100000):
        self.requests = []
        self.lock = threading.Lock()
        outer = self

        class Handler(http.server.BaseHTTPRequestHandler):
            def log_message(self, *a):
                pass

            def do_GET(self):
                rec = [time.monotonic(), None]
                with outer.lock:
                    outer.requests.append(rec)
                try:
                    self.send_response(200)
                    self.send_header("Content-Type", "image/png")
                    self.send_header("Content-Length", str(length))
                    self.end_headers()
                    self.wfile.flush()
                    sent = 0
                    while sent < length:
                        time.sleep(every)
                        n = min(chunk, length - sent)
                        self.wfile.write(b"\x89" * n)
                        self.wfile.flush()
                        sent += n
                except OSError:
                    pass
                finally:
                    rec[1] = time.monotonic()

        self.server = http.server.ThreadingHTTPServer(("127.0.0.1", 0), Handler)
        self.server.daemon_threads = True
        self.url = f"http://127.0.0.1:{self.server.server_address[1]}/out.png"
        self.thread = threading.Thread(target=self.server.serve_forever, daemon=True)
        self.thread.start()

    def starts(self):
        with self.lock:
            return [r[0] for r in self.requests]

    def close(self):
        self.server.shutdown()
        self.server.server_close()


ROOT = os.path.dirname(os.path.dirname(os.path.dirname(os.path.abspath(__file__))))


def standardwebhooks_verify(secret, reqs):
    """Each recorded request of REQS verified by npm `standardwebhooks`
    (tests/webhook/verify_delivery.js): a list of {"ok", "payload"} or
    {"ok": False, "error"}."""
    doc = {"secret": secret,
           "deliveries": [{"headers": r["headers"], "body_b64": base64.b64encode(r["body"]).decode()}
                          for r in reqs]}
    out = subprocess.run(["node", os.path.join(ROOT, "tests", "webhook", "verify_delivery.js")],
                         input=json.dumps(doc), capture_output=True, text=True, timeout=60, cwd=ROOT)
    if out.returncode != 0:
        raise Fail(f"verify_delivery.js exited {out.returncode}: {out.stderr.strip()}")
    return json.loads(out.stdout)["results"]


def webhook_valid(secret, headers, body, tolerance=300):
    """A Standard Webhooks v1 signature of BODY under SECRET in HEADERS."""
    h = {k.lower(): v for k, v in headers.items()}
    msg_id, ts, sigs = h.get("webhook-id"), h.get("webhook-timestamp"), h.get("webhook-signature")
    if not msg_id or not ts or not sigs or not ts.isdigit() or abs(time.time() - int(ts)) > tolerance:
        return False
    key = base64.b64decode(secret.split("_", 1)[1])
    want = hmac.new(key, f"{msg_id}.{ts}.".encode() + body, hashlib.sha256).digest()
    for entry in sigs.split():
        version, _, value = entry.partition(",")
        try:
            if version == "v1" and hmac.compare_digest(base64.b64decode(value), want):
                return True
        except ValueError:
            continue
    return False


# ================================================================ cases


def cli_job(jid, env=None):
    """The job object as `darkroom jobs show --json` prints it: the test
    config, with ENV added to the environment (another sink, another CDN
    base URL)."""
    p = subprocess.run([BIN, "jobs", "show", jid, "--json"], capture_output=True, text=True,
                       env={**os.environ, **(env or {})}, timeout=60, stdin=subprocess.DEVNULL)
    expect_eq(p.returncode, 0, f"darkroom jobs show {jid} ({p.stderr.strip()})")
    return json.loads(p.stdout)


def url_rows(jid):
    """(row, index, key, url) of a job's output rows ('o') and rendition
    rows (their preset), as stored."""
    return sql(f"SELECT 'o', idx, storage_key, url FROM outputs WHERE job_id = '{jid}'"
               " UNION ALL SELECT r.name, o.idx, r.storage_key, r.url FROM renditions r"
               f" JOIN outputs o ON o.id = r.output_id WHERE o.job_id = '{jid}' ORDER BY 1, 2")


def url_pairs(outputs):
    """(key, url) of each output and rendition of a job object's outputs."""
    pairs = []
    for o in outputs:
        pairs.append((o["key"], o["url"]))
        pairs += [(r["key"], r["url"]) for r in o["renditions"]]
    return sorted(pairs)


def urls_under(outputs, base):
    """What url_pairs() must be when every URL is BASE + / + key."""
    return sorted((key, f"{base}/{key}") for key, _ in url_pairs(outputs))


@case("fs sink: PNG, JPEG, WebP and AVIF become originals plus every preset, served by /media/")
@with_worker(2, name="pipeline-fs")
def _(w):
    fake_reset()
    specs = {
        "png": ({"fake_format": "png", "fake_width": 2000, "fake_height": 1500},
                2000, 1500, "png", "image/png"),
        "jpeg": ({"fake_format": "jpeg"}, 64, 48, "jpeg", "image/jpeg"),
        "webp": ({"fake_format": "webp"}, 64, 48, "webp", "image/webp"),
        "avif": ({"fake_format": "avif"}, 64, 48, "avif", "image/avif"),
    }
    ids = {name: create(spec[0], ALL_PRESETS) for name, spec in specs.items()}
    jobs = dict(zip(ids, wait_status(ids.values(), FINAL, timeout=60)))
    for name, (inp, width, height, fmt, ctype) in specs.items():
        j = jobs[name]
        expect_eq(j["status"], "succeeded", f"{name}: status (error {j.get('error')})")
        expect_eq(len(j["outputs"]), 1, f"{name}: outputs")
        check_image_output(j["outputs"][0], width, height, fmt, ctype, ALL_PRESETS, media_reader, name)
    card = {r["name"]: r for r in jobs["png"]["outputs"][0]["renditions"]}["card"]
    expect_eq((card["width"], card["height"]), (1280, 720), "card of a 2000x1500 image")


@case("s3 sink (SigV4): original and renditions read back from s3rver with their headers")
@with_worker(2, env={"DARKROOM_SINK": "s3"}, name="pipeline-s3v4")
def _(w):
    fake_reset()
    presets = ["thumb", "card", "small"]
    jid = create({"fake_width": 640, "fake_height": 480}, presets)
    j = wait_status([jid], timeout=40)[0]
    expect_eq(j["status"], "succeeded", f"status (error {j.get('error')})")
    # URLs are made by the reader's sink: read with the worker's (s3).
    o = cli_job(jid, {"DARKROOM_SINK": "s3"})["outputs"][0]
    check_image_output(o, 640, 480, "png", "image/png", presets, s3_reader(jid), "s3 v4")
    expect(not os.path.exists(os.path.join(MEDIA, o["key"])), "the s3 job also wrote to the fs sink")


@case("s3 sink (SigV2): stored with a good secret; a wrong secret fails the job at upload, once")
def _():
    fake_reset()
    w = Worker(1, "pipeline-s3v2", {"DARKROOM_SINK": "s3", "DARKROOM_S3_SIGNATURE": "v2"})
    try:
        jid = create({"fake_format": "jpeg"}, ["thumb"])
        j = wait_status([jid], timeout=40)[0]
    finally:
        leftover = w.stop()
    check_worker(w, leftover)
    expect_eq(j["status"], "succeeded", f"v2 status (error {j.get('error')})")
    o = cli_job(jid, {"DARKROOM_SINK": "s3"})["outputs"][0]
    check_image_output(o, 64, 48, "jpeg", "image/jpeg", ["thumb"], s3_reader(jid), "s3 v2")

    w = Worker(1, "pipeline-s3v2-wrong", {"DARKROOM_SINK": "s3", "DARKROOM_S3_SIGNATURE": "v2",
                                          "DARKROOM_S3_SECRET_KEY": "wrong-secret"})
    try:
        bad = create({"fake_format": "png"}, ["thumb"])
        j = wait_status([bad], timeout=40)[0]
        time.sleep(1.5)  # a retry would show now
        j2 = job(bad)
    finally:
        leftover = w.stop()
    check_worker(w, leftover)
    expect_failed(j, "upload", "sink_auth", "v2 with a wrong secret")
    expect_eq((j2["status"], j2["attempts"]), ("failed", j["attempts"]), "the failure is final")
    expect_eq(retries_of(bad), [], "retries of an authentication failure")
    expect("wrong-secret" not in json.dumps(j2), "the error shows the secret")
    expect_eq(j2["outputs"], [], "outputs indexed")
    # Nothing of it reached the bucket.
    src = fake("/_state")["predictions"][j2["prediction"]["id"]]["files"][0]
    sha = sha256(fetch(src)[2])
    for key in (f"{sha[:2]}/{sha}.png", f"{sha[:2]}/{sha}/thumb.{tag('thumb')}.webp"):
        status, _, _ = fetch(f"{S3_URL}/{key}", "HEAD")
        expect_eq(status, 404, f"HEAD of {key} stored with a wrong secret")


@case("the same output twice is stored once (fake_seed): same key and SHA-256, one file")
@with_worker(2, name="pipeline-dedupe")
def _(w):
    fake_reset()
    seed = "dedupe-" + os.urandom(6).hex()
    first = wait_status([create({"fake_seed": seed}, ["thumb", "small"])])[0]
    expect_eq(first["status"], "succeeded", f"first job (error {first.get('error')})")
    o1 = first["outputs"][0]
    path = os.path.join(MEDIA, o1["key"])
    mtime = os.stat(path).st_mtime_ns
    second = wait_status([create({"fake_seed": seed}, ["thumb", "small"])])[0]
    expect_eq(second["status"], "succeeded", f"second job (error {second.get('error')})")
    o2 = second["outputs"][0]
    expect(o1["source_url"] != o2["source_url"], "the two jobs downloaded the same URL")
    expect_eq((o2["key"], o2["sha256"], o2["url"]), (o1["key"], o1["sha256"], o1["url"]),
              "key, sha256 and url of the second job")
    expect_eq(sorted((r["name"], r["key"]) for r in o2["renditions"]),
              sorted((r["name"], r["key"]) for r in o1["renditions"]), "rendition keys")
    sha = o1["sha256"]
    folder = os.path.join(MEDIA, sha[:2])
    entries = sorted(e for e in os.listdir(folder) if e.startswith(sha))
    expect_eq(entries, [sha, f"{sha}.png"], f"entries for {sha[:12]}… in the media folder")
    names = sorted(os.listdir(os.path.join(folder, sha)))
    expect_eq(names, [f"small.{tag('small')}.jpg", f"thumb.{tag('thumb')}.webp"], "renditions stored")
    expect_eq(os.stat(path).st_mtime_ns, mtime, "the original was written again")
    rows = sql(f"SELECT COUNT(*), COUNT(DISTINCT job_id) FROM outputs WHERE sha256 = '{sha}'")
    expect_eq(rows, [["2", "2"]], "outputs indexed with that sha256")


@case("URLs are made when read: new rows keep keys (url NULL); a stale stored URL is not shown;"
      " `jobs show` under another CDN base URL shows its host; nothing is written by reading")
@with_worker(2, name="pipeline-urls")
def _(w):
    fake_reset()
    jid = create({"fake_width": 320, "fake_height": 240}, ["thumb", "small"])
    j = wait_status([jid])[0]
    expect_eq(j["status"], "succeeded", f"status (error {j.get('error')})")
    rows = url_rows(jid)
    expect_eq(len(rows), 3, f"output and rendition rows: {rows}")
    expect(all(r[2] != "NULL" for r in rows), f"keys of the new rows: {rows}")
    expect_eq([r[3] for r in rows], ["NULL"] * 3, f"url columns of the new rows: {rows}")
    media = f"{BASE_URL}/media"
    expect_eq(url_pairs(j["outputs"]), urls_under(j["outputs"], media), "URLs of the job object")

    # Rows written under another host (the stored URL of an older
    # darkroom): the key and the app's sink make the URL, not the row.
    sql("UPDATE outputs SET url = CONCAT('http://old-cdn.example/', storage_key)"
        f" WHERE job_id = '{jid}'")
    sql("UPDATE renditions r JOIN outputs o ON o.id = r.output_id"
        " SET r.url = CONCAT('http://old-cdn.example/', r.storage_key)"
        f" WHERE o.job_id = '{jid}'")
    stale = url_rows(jid)
    j = job(jid)
    expect_eq(url_pairs(j["outputs"]), urls_under(j["outputs"], media), "GET /v1/jobs/{id} over stale rows")
    listed = expect_json(get(f"/v1/jobs?model=acme/flux&limit=100"), 200)["data"]
    mine = [x for x in listed if x["id"] == jid]
    expect_eq(len(mine), 1, "the job in GET /v1/jobs")
    expect_eq(url_pairs(mine[0]["outputs"]), urls_under(j["outputs"], media), "GET /v1/jobs over stale rows")
    found = expect_json(get(f"/v1/outputs?sha256={j['outputs'][0]['sha256']}&limit=100"), 200)["data"]
    found = [x for x in found if x["job_id"] == jid]
    expect_eq(len(found), 1, "the output in GET /v1/outputs")
    expect_eq(url_pairs(found), urls_under(j["outputs"], media), "GET /v1/outputs over stale rows")

    # Another CDN host, the same rows: `darkroom jobs show` run with it.
    cdn = "https://cdn.example.test/m"
    shown = cli_job(jid, {"DARKROOM_CDN_BASE_URL": cdn + "/"})
    expect_eq(url_pairs(shown["outputs"]), urls_under(j["outputs"], cdn), "jobs show under another CDN base URL")
    expect_eq(url_rows(jid), stale, "rows after reading them (nothing may be written)")


@case("`darkroom reprocess` from a shell with another CDN base URL stores no URL; the API shows the app's")
@with_worker(1, name="pipeline-urls-reprocess")
def _(w):
    fake_reset()
    jid = create({"fake_width": 320, "fake_height": 240}, ["thumb"])
    j = wait_status([jid])[0]
    expect_eq(j["status"], "succeeded", f"status (error {j.get('error')})")
    sql("UPDATE renditions r JOIN outputs o ON o.id = r.output_id SET r.preset_hash = '0000000000000000'"
        f" WHERE o.job_id = '{jid}' AND r.name = 'thumb'")
    # What a shell outside `make run` has: the default port's media URL.
    p = subprocess.run([BIN, "reprocess", "--job", jid, "--preset", "thumb"], capture_output=True,
                       text=True, timeout=120, stdin=subprocess.DEVNULL,
                       env={**os.environ, "DARKROOM_CDN_BASE_URL": "http://127.0.0.1:8080/media"})
    expect_eq(p.returncode, 0, f"reprocess ({p.stderr.strip()})")
    expect("1 renditions made" in p.stdout, p.stdout)
    rows = [r for r in url_rows(jid) if r[0] == "thumb"]
    expect_eq(len(rows), 1, f"thumb row: {rows}")
    expect_eq(rows[0][3], "NULL", f"url column of the remade thumb row: {rows}")
    j = job(jid)
    expect_eq(url_pairs(j["outputs"]), urls_under(j["outputs"], f"{BASE_URL}/media"),
              "URLs of the job after reprocess")


@case("text outputs are stored as .txt; data: outputs are decoded and stored")
@with_worker(2, name="pipeline-text")
def _(w):
    fake_reset()
    text_id = create({"fake_output": "text"}, ["thumb"])
    data_id = create({"fake_output": "data", "fake_format": "webp"}, ["thumb"])
    tj, dj = wait_status([text_id, data_id])
    expect_eq(tj["status"], "succeeded", f"text job (error {tj.get('error')})")
    o = tj["outputs"][0]
    expect_eq((o["kind"], o.get("text")), ("text", "Hello world!"), "text output")
    body = b"Hello world!"
    expect_eq(o["sha256"], sha256(body), "sha256 of the text")
    expect_eq(o["key"], f"{o['sha256'][:2]}/{o['sha256']}.txt", "key of the text")
    expect_eq(o["content_type"], "text/plain; charset=utf-8", "content type of the text")
    expect_eq(o["renditions"], [], "renditions of a text")
    status, headers, got = media_reader(o)
    expect_eq((status, got), (200, body), "the stored text")
    expect_eq(headers.get("Cache-Control"), CACHE_CONTROL, "Cache-Control of the text")

    expect_eq(dj["status"], "succeeded", f"data: job (error {dj.get('error')})")
    o = dj["outputs"][0]
    expect(o["source_url"] is None, f"a data: output has no source_url: {o['source_url']!r}")
    check_image_output(o, 64, 48, "webp", "image/webp", ["thumb"], media_reader, "data: webp")


@case("hostile files: truncated, 100000x100000 bomb, SVG and HTML served as image/png fail cleanly")
@with_worker(2, name="pipeline-hostile")
def _(w):
    fake_reset()
    wait_until(lambda: len(w.children()) == 2, timeout=10, what="two worker processes")
    before = w.children()
    cases = {
        "truncated": ("render", ("image_corrupt",)),
        "bomb": ("render", ("image_too_large",)),
        "svg": (None, ("unsupported_type",)),
        "html": (None, ("unsupported_type",)),
    }
    ids = {kind: create({"fake_file": kind, "fake_width": 256, "fake_height": 192}, ["thumb", "card"])
           for kind in cases}
    jobs = dict(zip(ids, wait_status(ids.values(), timeout=40)))
    for kind, (step, codes) in cases.items():
        err = expect_failed_code(jobs[kind], codes, kind)
        if step:
            expect_eq(err.get("step"), step, f"{kind}: error step")
        expect_eq(jobs[kind]["outputs"], [], f"{kind}: outputs indexed")
        expect_eq(retries_of(ids[kind]), [], f"{kind}: retries of a final error")
    expect_same_workers(w, before)


@case("a file over max_output_bytes sent chunked fails at download with output_too_large")
@with_worker(1, name="pipeline-big")
def _(w):
    fake_reset(chunked=True)
    wait_until(lambda: len(w.children()) == 1, timeout=10, what="one worker process")
    before = w.children()
    try:
        jid = create({"fake_file": "big", "fake_size": 6 << 20}, ["thumb"])
        j = wait_status([jid], timeout=40)[0]
    finally:
        fake("/_control", {"chunked": False})
    expect_failed(j, "download", "output_too_large", "chunked 6 MiB")
    expect_eq(retries_of(jid), [], "retries of output_too_large")
    expect_same_workers(w, before)


def vm_hwm_kib(pid):
    """The peak resident set (VmHWM) of process pid, in KiB."""
    with open(f"/proc/{pid}/status") as f:
        for line in f:
            if line.startswith("VmHWM:"):
                return int(line.split()[1])
    raise Fail(f"no VmHWM for {pid}")


def peak_persisting(conf, url, name):
    """The peak RSS (KiB) of a fresh one-process worker persisting the
    image at `url` (thumb + card), once its job has succeeded."""
    w = Worker(1, name, {"DARKROOM_CONF": conf})
    try:
        wait_until(lambda: len(w.children()) == 1 and int(sql(
            f"SELECT COUNT(*) FROM worker_heartbeats WHERE pid = {w.children()[0]}")[0][0]) >= 1,
            timeout=20, what="one worker process with a heartbeat")
        pid = w.children()[0]
        jid = create({"fake_output_urls": [url]}, ["thumb", "card"])
        j = wait_status([jid], timeout=60)[0]
        hwm = vm_hwm_kib(pid)
    finally:
        leftover = w.stop()
    check_worker(w, leftover)
    expect_eq(j["status"], "succeeded", f"{name}: status (error {j.get('error')})")
    return hwm


@case("images are decoded from the downloaded file: an uncompressed PNG costs the worker no more"
      " memory than the same pixels compressed")
def _():
    fake_reset()
    d = os.path.join(MEDIA, "pipeline-memory")
    os.makedirs(d, exist_ok=True)
    src = os.path.join(WORK, "pipeline-memory.v")
    # 4000x3000 smooth stripes: 47 KiB compressed, 34 MiB stored.
    subprocess.run(["vips", "sines", src + ".s.v", "4000", "3000", "--hfreq", "0.01",
                    "--vfreq", "0.02", "--uchar"], check=True)
    subprocess.run(["vips", "bandjoin", f"{src}.s.v {src}.s.v {src}.s.v", src + ".b.v"],
                   check=True)
    subprocess.run(["vips", "copy", src + ".b.v", src, "--interpretation", "srgb"], check=True)
    paths = {}
    for level in (0, 9):
        paths[level] = os.path.join(d, f"stripes-z{level}.png")
        subprocess.run(["vips", "copy", src, f"{paths[level]}[compression={level}]"], check=True)
    for f in (src, src + ".s.v", src + ".b.v"):
        os.unlink(f)
    sizes = {level: os.path.getsize(p) for level, p in paths.items()}
    expect(sizes[0] - sizes[9] > 24 << 20, f"PNG sizes {sizes}")
    conf = conf_copy("pipeline-memory", {("limits", "max_output_bytes"): "64M",
                                         ("limits", "max_image_bytes"): "64M"})
    peaks = {level: peak_persisting(conf, f"{BASE_URL}/media/pipeline-memory/"
                                    f"{os.path.basename(p)}", f"pipeline-memory-z{level}")
             for level, p in paths.items()}
    # Read into memory, the stored file would add its 34 MiB.
    extra = (peaks[0] - peaks[9]) * 1024
    expect(extra < (sizes[0] - sizes[9]) / 2,
           f"peak RSS {peaks[0] // 1024} MiB for the {sizes[0] >> 20} MiB PNG,"
           f" {peaks[9] // 1024} MiB for the {sizes[9] >> 20} MiB one")


@case("a slow drip is abandoned (download_too_slow, retried) and the job can be canceled")
def _():
    fake_reset(slow_drip=True)
    # A long retry delay, so the cancel surely comes between two tries.
    conf = conf_copy("pipeline-drip", {("worker", "retry_base"): "3s", ("worker", "retry_max"): "10s"})
    w = Worker(1, "pipeline-drip", {"DARKROOM_CONF": conf})
    before = None
    try:
        jid = create({"fake_format": "jpeg"}, ["thumb"])
        wait_until(lambda: len(w.children()) == 1, timeout=10, what="one worker process")
        before = w.children()
        t0 = time.monotonic()
        rs = wait_until(lambda: retries_of(jid, "download_too_slow"), timeout=15,
                        what="a retry_scheduled with download_too_slow")
        took = time.monotonic() - t0
        expect_eq(rs[0].get("step"), "download", "step of the retry")
        expect(took < 12, f"the drip was cut after {took:.1f} s")
        expect_eq(job(jid)["status"], "persisting", "status while retrying")
        expect_json(post(f"/v1/jobs/{jid}/cancel"), 202)
        j = wait_status([jid], timeout=20)[0]
        expect_eq(j["status"], "canceled", "status after cancel")
        expect_same_workers(w, before)
    finally:
        fake("/_control", {"slow_drip": False})
        leftover = w.stop()
    check_worker(w, leftover)


@case("a dripping output fails the job (download_too_slow) after one retry; other jobs flow meanwhile")
@with_worker(2, name="pipeline-dripper")
def _(w):
    fake_reset()
    drip = Dripper(chunk=1, every=1.0)
    try:
        wait_until(lambda: len(w.children()) == 2, timeout=10, what="two worker processes")
        t0 = time.monotonic()
        slow = create({"fake_output_urls": drip.url}, ["thumb"])
        others, took = [], []
        # Jobs submitted while the drip goes on each finish promptly:
        # the dripping output holds one worker at most, and not for long.
        for _ in range(3):
            time.sleep(1.0)
            t1 = time.monotonic()
            jid = create({}, ["thumb"])
            o = wait_status([jid], timeout=15)[0]
            took.append(time.monotonic() - t1)
            others.append(o)
        j = wait_status([slow], timeout=30)[0]
        elapsed = time.monotonic() - t0
        starts = drip.starts()
    finally:
        drip.close()
    for o in others:
        expect_eq(o["status"], "succeeded", f"a job submitted meanwhile (error {o.get('error')})")
    expect(max(took) < 8, f"jobs submitted meanwhile took {[round(t, 1) for t in took]} s")
    expect_failed(j, "download", "download_too_slow", "the dripping job")
    expect("low speed 2 times" in j["error"]["message"], f"message: {j['error']['message']}")
    expect_eq(len(retries_of(slow, "download_too_slow")), 1, "retries after a low-speed abandon")
    expect_eq(len(starts), 2, "requests the dripping server got")
    # Two tries of download_low_speed_time (2 s) each, and a short wait.
    expect(elapsed < 15, f"the dripping job took {elapsed:.1f} s to fail")
    expect_eq(sql(f"SELECT slow_fetches FROM outputs WHERE job_id = '{slow}'"), [["1"]],
              "slow_fetches recorded")


@case("an output's download_budget holds across a worker crash: download_timeout, one budget in all")
def _():
    fake_reset()
    budget = 6.0
    # 4 KiB/s: above download_low_speed (1k), and 256 s for the whole
    # file, far beyond download_timeout (20 s) and the budget.
    drip = Dripper(chunk=2048, every=0.5, length=1 << 20)
    conf = conf_copy("pipeline-budget", {("limits", "download_budget"): f"{budget:g}s"})
    w = Worker(1, "pipeline-budget-1", {"DARKROOM_CONF": conf})
    w2 = None
    try:
        jid = create({"fake_output_urls": drip.url}, ["thumb"])
        wait_until(drip.starts, timeout=15, what="the first download")
        first = drip.starts()[0]
        time.sleep(2.0)
        kill_worker(w)  # mid-download: the job is left to its lease (4 s)
        w2 = Worker(1, "pipeline-budget-2", {"DARKROOM_CONF": conf})
        j = wait_status([jid], timeout=30)[0]
        ended = time.monotonic()
        starts = drip.starts()
        # The server sees a hang-up at its next write or two.
        wait_until(lambda: all(b is not None for _, b in drip.requests), timeout=5,
                   what="the server seeing every download end")
        with drip.lock:
            spans = [(a, b) for a, b in drip.requests]
    finally:
        drip.close()
        leftover = w.stop()
        if w2:
            leftover = w2.stop() or leftover
    expect(not leftover, "worker processes outlived their supervisor")
    expect_failed(j, "download", "download_timeout", "the trickling job")
    expect("budget" in j["error"]["message"], f"message: {j['error']['message']}")
    expect(1 <= len(starts) <= 2, f"requests the server got: {len(starts)}")
    # The second worker went on counting from the first download: it did
    # not start a budget of its own (the lease alone takes 4 s).
    expect(ended - first < budget + 3, f"failed {ended - first:.1f} s after the first download began")
    for a, b in spans[1:]:
        expect(b is not None and b - first < budget + 2,
               f"a later download ran until {b - first:.1f} s after the first began")
    expect_eq(len(retries_of(jid)), 0, "retries scheduled after the budget was spent")
    # A retry of the failed job gives its output a new budget.
    expect_eq(sql(f"SELECT fetch_started_at IS NOT NULL FROM outputs WHERE job_id = '{jid}'"),
              [["1"]], "the budget's start recorded")
    expect_eq(expect_json(post(f"/v1/jobs/{jid}/retry"), 202)["status"], "persisting", "status after retry")
    expect_eq(sql(f"SELECT fetch_started_at IS NULL, slow_fetches FROM outputs WHERE job_id = '{jid}'"),
              [["1", "0"]], "the budget after a retry")
    expect_json(post(f"/v1/jobs/{jid}/cancel"), 202)


@case("local files: only the exec-like adapter's own job folder; /etc/passwd, other jobs, symlinks refused")
def _():
    fake_reset()
    root = os.path.join(WORK, "leaky-work")
    outside = os.path.join(WORK, "leaky-outside")
    os.makedirs(outside, exist_ok=True)
    secret = b"outside the work folder " + os.urandom(8).hex().encode()
    with open(os.path.join(outside, "secret.txt"), "wb") as f:
        f.write(secret)
    other_job = "j_00000000000000000000000000"
    other = b"another job's file " + os.urandom(8).hex().encode()
    os.makedirs(os.path.join(root, f"{other_job}-1"), exist_ok=True)
    with open(os.path.join(root, f"{other_job}-1", "out.txt"), "wb") as f:
        f.write(other)
    job_file = os.path.join(root, "{job}-1", "out.txt")
    extra = "".join(
        f'[adapter "{name}"]\nplugin = leaky\n' + "".join(f"{k} = {v}\n" for k, v in keys.items()) + "\n"
        for name, keys in {
            "leak_path": {"kind": "path", "output": "/etc/passwd"},
            "leak_url": {"kind": "url", "output": "/etc/passwd"},
            "leak_other": {"kind": "path", "root": root,
                           "output": os.path.join(root, f"{other_job}-1", "out.txt")},
            "leak_dotdot": {"kind": "path", "root": root,
                            "output": os.path.join(root, "{job}-1", "..", "..", "leaky-outside",
                                                   "secret.txt")},
            "leak_link": {"kind": "path", "root": root, "output": job_file},
            "leak_ok": {"kind": "path", "root": root, "output": job_file},
        }.items())
    conf = conf_copy("pipeline-leaky", extra=extra, plugins=fixture_plugins())
    ids = {name: queued_for(name) for name in
           ("leak_path", "leak_url", "leak_other", "leak_dotdot", "leak_link", "leak_ok")}
    ok = b"this job's own output " + os.urandom(8).hex().encode()
    for name in ("leak_dotdot", "leak_link", "leak_ok"):
        os.makedirs(os.path.join(root, f"{ids[name]}-1"), exist_ok=True)
    with open(os.path.join(root, f"{ids['leak_ok']}-1", "out.txt"), "wb") as f:
        f.write(ok)
    os.symlink(os.path.join(outside, "secret.txt"), os.path.join(root, f"{ids['leak_link']}-1", "out.txt"))
    w = Worker(2, "pipeline-leaky", {"DARKROOM_CONF": conf})
    try:
        jobs = dict(zip(ids, wait_status(ids.values(), timeout=30)))
    finally:
        leftover = w.stop()
    check_worker(w, leftover)
    j = jobs.pop("leak_ok")
    expect_eq(j["status"], "succeeded", f"its own job folder (error {j.get('error')})")
    expect_eq([o["sha256"] for o in j["outputs"]], [sha256(ok)], "the output stored")
    expect(stored_with(ok), "the job's own file is not in the sink")
    for name, j in jobs.items():
        want = "url_not_allowed" if name == "leak_url" else "local_file_not_allowed"
        expect_failed(j, "download", want, name)
        expect_eq(retries_of(ids[name]), [], f"{name}: retries")
        expect_eq(j["outputs"], [], f"{name}: outputs")
    with open("/etc/passwd", "rb") as f:
        expect_eq(stored_with(f.read()), [], "/etc/passwd in the sink")
    expect_eq(stored_with(secret), [], "the file outside the work folder in the sink")
    expect_eq(stored_with(other), [], "another job's file in the sink")


@case("exec: an output swapped for a symlink (file or job folder) after the run is refused")
def _():
    fake_reset()
    src = os.path.join(WORK, "exec-src")
    work = os.path.join(WORK, "exec-work")
    outside = os.path.join(WORK, "exec-outside")
    os.makedirs(src, exist_ok=True)
    os.makedirs(outside, exist_ok=True)
    made = b"what the program made " + os.urandom(8).hex().encode()
    with open(os.path.join(src, "out.txt"), "wb") as f:
        f.write(made)
    secret = b"not for the sink " + os.urandom(8).hex().encode()
    with open(os.path.join(outside, "out.txt"), "wb") as f:
        f.write(secret)
    extra = (f'[adapter "exec"]\nplugin = exec\nprogram = /bin/cp\n'
             f'args = {os.path.join(src, "out.txt")} out.txt\nworkdir = {work}\ntimeout = 10s\n')
    conf = conf_copy("pipeline-exec", extra=extra)
    ids = {name: queued_for("exec") for name in ("file link", "folder link", "untouched")}
    # First the program runs and its outputs are recorded, but the sink
    # is down: the jobs wait in persisting with their files listed.
    w = Worker(1, "pipeline-exec-1", {"DARKROOM_CONF": conf, "DARKROOM_SINK": "s3",
                                      "DARKROOM_S3_ENDPOINT": f"http://127.0.0.1:{free_port()}"})
    try:
        wait_until(lambda: all(retries_of(j, "sink_unavailable") for j in ids.values()),
                   timeout=30, what="every job waiting for the sink")
    finally:
        leftover = w.stop()
    check_worker(w, leftover)
    # Then, as something the program left behind could, the files are
    # swapped: one for a symlink out of the work folder, one job folder
    # for a symlink to another folder holding the same name.
    link_dir = os.path.join(work, f"{ids['file link']}-1")
    os.unlink(os.path.join(link_dir, "out.txt"))
    os.symlink(os.path.join(outside, "out.txt"), os.path.join(link_dir, "out.txt"))
    folder = os.path.join(work, f"{ids['folder link']}-1")
    subprocess.run(["rm", "-rf", folder], check=True)
    os.symlink(outside, folder)
    w = Worker(1, "pipeline-exec-2", {"DARKROOM_CONF": conf})
    try:
        jobs = dict(zip(ids, wait_status(ids.values(), timeout=30)))
    finally:
        leftover = w.stop()
    check_worker(w, leftover)
    j = jobs.pop("untouched")
    expect_eq(j["status"], "succeeded", f"the untouched exec job (error {j.get('error')})")
    expect_eq([o["sha256"] for o in j["outputs"]], [sha256(made)], "its output")
    for name, j in jobs.items():
        expect_failed(j, "download", "local_file_not_allowed", name)
    expect_eq(stored_with(secret), [], "the file behind the symlinks in the sink")


def url_job(urls):
    return create({"fake_output_urls": urls}, ["thumb"])


@case("URL rules: redirects off the allowlist or to 0.0.0.0, file://, http:// when not allowed")
def _():
    fake_reset()
    home = f"http://127.0.0.1:{FAKE_PORT}"
    redirect = f"{home}/_redirect?to="
    q = urllib.parse.quote
    target = "/files/nosuchprediction/out-0.png"
    # Default policy of the tests: http allowed, private allowed, hosts 127.0.0.1.
    w = Worker(2, "pipeline-urls")
    try:
        wait_until(lambda: len(w.children()) == 2, timeout=10, what="two worker processes")
        before = w.children()
        n0 = fake_downloads()
        ids = {
            "redirect to localhost": url_job(redirect + q(f"http://localhost:{FAKE_PORT}{target}")),
            "redirect to [::1]": url_job(redirect + q(f"http://[::1]:{FAKE_PORT}{target}")),
            "redirect to file://": url_job(redirect + q("file:///etc/passwd")),
            "redirect to gopher://": url_job(redirect + q(f"gopher://127.0.0.1:{FAKE_PORT}/_GET%20/")),
        }
        # A file:// output goes to the downloader, which refuses it.
        literal = create({"fake_output_urls": "file:///etc/passwd"}, ["thumb"])
        jobs = dict(zip(ids, wait_status(ids.values())))
        lj = wait_status([literal])[0]
        expect_same_workers(w, before)
    finally:
        leftover = w.stop()
    check_worker(w, leftover)
    for name, j in jobs.items():
        err = expect_failed_code(j, ("url_not_allowed",), name)
        expect_eq(err.get("step"), "download", f"{name}: step")
        expect("redirect" in (err.get("message") or ""), f"{name}: not refused at the redirect: {err}")
    expect_eq(fake_downloads(), n0, "downloads reaching the fake's /files/")
    expect_failed(lj, "download", "url_not_allowed", "a file:// output")

    # Any host allowed, private addresses too: 0.0.0.0 (which Linux treats
    # as this host) stays refused.
    w = Worker(1, "pipeline-urls-any", {"DARKROOM_DOWNLOAD_HOSTS": "*"})
    try:
        jid = url_job(redirect + q(f"http://0.0.0.0:{FAKE_PORT}{target}"))
        j = wait_status([jid])[0]
    finally:
        leftover = w.stop()
    check_worker(w, leftover)
    expect_failed(j, "download", "address_not_allowed", "redirect to 0.0.0.0")
    expect_eq(fake_downloads(), n0, "downloads reaching the fake's /files/")

    # Only `localhost` allowed: the fake reached by that name redirects to
    # 127.0.0.1 (another port), which is not on the allowlist.
    w = Worker(1, "pipeline-urls-localhost", {"DARKROOM_DOWNLOAD_HOSTS": "localhost"})
    try:
        jid = url_job(f"http://localhost:{FAKE_PORT}/_redirect?to="
                      + q(f"http://127.0.0.1:{free_port()}/x.png"))
        j = wait_status([jid])[0]
    finally:
        leftover = w.stop()
    check_worker(w, leftover)
    err = expect_failed_code(j, ("url_not_allowed", "address_not_allowed"), "redirect to 127.0.0.1")
    expect("redirect" in (err.get("message") or ""), f"not refused at the redirect: {err}")

    # http:// refused when not allowed, even to an allowed host.
    fake_reset()
    w = Worker(1, "pipeline-urls-https", {"DARKROOM_DOWNLOAD_ALLOW_HTTP": "0"})
    try:
        jid = create({}, ["thumb"])
        j = wait_status([jid])[0]
    finally:
        leftover = w.stop()
    check_worker(w, leftover)
    expect_failed(j, "download", "url_not_allowed", "http:// with ALLOW_HTTP=0")
    expect_eq(fake_downloads(), 0, "downloads reaching the fake")


@case("private addresses in odd spellings are refused before any connection")
def _():
    fake_reset()
    tail = f":{FAKE_PORT}/files/nosuchprediction/out-0.png"
    urls = {
        "decimal 2130706433": f"http://2130706433{tail}",
        "short hex 0x7f.1": f"http://0x7f.1{tail}",
        "mapped [::ffff:127.0.0.1]": f"http://[::ffff:127.0.0.1]{tail}",
        "169.254.169.254": "http://169.254.169.254/latest/meta-data",
        "plain 127.0.0.1": f"http://127.0.0.1{tail}",
        "octal 0177.0.0.1": f"http://0177.0.0.1{tail}",
        "[::1]": f"http://[::1]{tail}",
    }
    w = Worker(2, "pipeline-private", {"DARKROOM_DOWNLOAD_ALLOW_PRIVATE": "0",
                                       "DARKROOM_DOWNLOAD_HOSTS": "*"})
    try:
        wait_until(lambda: len(w.children()) == 2, timeout=10, what="two worker processes")
        before = w.children()
        ids = {name: url_job(u) for name, u in urls.items()}
        jobs = dict(zip(ids, wait_status(ids.values())))
        expect_same_workers(w, before)
    finally:
        leftover = w.stop()
    check_worker(w, leftover)
    for name, j in jobs.items():
        err = expect_failed_code(j, ("address_not_allowed", "url_not_allowed"), name)
        expect_eq(err.get("step"), "download", f"{name}: step")
        expect_eq(retries_of(ids[name]), [], f"{name}: retries")
    expect_eq(fake_downloads(), 0, "downloads reaching the fake (a connection got through)")


@case("S3 down during a job: the job waits (sink_unavailable) and succeeds once S3 is back")
def _():
    fake_reset()
    s3 = S3rver("s3rver-down")
    endpoint = f"http://127.0.0.1:{s3.port}"
    w = Worker(1, "pipeline-s3down", {"DARKROOM_SINK": "s3", "DARKROOM_S3_ENDPOINT": endpoint})
    try:
        jid = create({}, ["thumb"])
        rs = wait_until(lambda: retries_of(jid, "sink_unavailable"), timeout=20,
                        what="a retry_scheduled with sink_unavailable")
        expect_eq(rs[0].get("step"), "upload", "step of the retry")
        expect_eq(job(jid)["status"], "persisting", "status while S3 is down")
        s3.start()
        j = wait_status([jid], timeout=40)[0]
        expect_eq(j["status"], "succeeded", f"status once S3 is back (error {j.get('error')})")
        o = cli_job(jid, {"DARKROOM_SINK": "s3", "DARKROOM_S3_ENDPOINT": endpoint})["outputs"][0]
        expect_eq(o["url"], f"{endpoint}/{S3_BUCKET}/{o['key']}", "public URL")
        status, _, body = fetch(o["url"])
        expect(status == 200 and sha256(body) == o["sha256"], "the object in the restarted S3")
    finally:
        leftover = w.stop()
        s3.stop()
    check_worker(w, leftover)


@case("callback: delivered with a Standard Webhooks envelope and signature (npm standardwebhooks verifies it), retried 5 s after a 500 with the same webhook-id")
@with_worker(1, name="pipeline-callback")
def _(w):
    fake_reset()
    rx = Receiver([500, 200])
    try:
        jid = create({}, ["thumb"], callback_url=f"http://127.0.0.1:{rx.port}/cb")
        j = wait_status([jid], timeout=30)[0]
        expect_eq(j["status"], "succeeded", f"status (error {j.get('error')})")
        # Between the two tries, the job object shows the delivery
        # waiting for its next try.
        wait_until(lambda: callback_row(jid) == ("pending", 1), timeout=30, what="the first try failed")
        cb = job(jid)["callback"]
        expect_eq({k: cb[k] for k in ("url", "state", "attempts", "last_status")},
                  {"url": f"http://127.0.0.1:{rx.port}/cb", "state": "pending", "attempts": 1, "last_status": 500},
                  f"the job object's callback between the tries: {cb}")
        expect(cb["next_at"] and cb["next_at"] > j["completed_at"], f"next_at after the end: {cb}")
        wait_until(lambda: callback_row(jid)[0] == "delivered", timeout=30, what="callback delivered")
        time.sleep(1.5)  # nothing more may come
        reqs = list(rx.requests)
    finally:
        rx.close()
    expect_eq(job(jid)["callback"], {"url": f"http://127.0.0.1:{rx.port}/cb", "state": "delivered",
                                     "attempts": 2, "last_status": 200, "next_at": None},
              "the job object's callback once delivered")
    tries = attempt_rows(jid)
    expect_eq([(t[1], t[2]) for t in tries], [("1", "500"), ("2", "200")], f"attempt rows {tries}")
    expect(tries[0][3].startswith("callback_rejected") and tries[1][3] == "NULL", f"attempt errors {tries}")
    expect_eq({t[0] for t in tries}, {reqs[0]["headers"].get("webhook-id")}, "attempt rows of the one webhook-id")
    expect_eq(sql(f"SELECT COUNT(*) FROM callback_deliveries WHERE job_id = '{jid}'"), [["1"]], "deliveries")
    expect_eq(len(reqs), 2, "callback POSTs (a 500, then a 200)")
    ids = {r["headers"].get("webhook-id") for r in reqs}
    expect(len(ids) == 1 and None not in ids, f"webhook-ids of the two tries: {ids}")
    verified = standardwebhooks_verify(CALLBACK_SECRET, reqs)
    for k, r in enumerate(reqs):
        expect_eq(r["path"], "/cb", f"try {k + 1}: path")
        expect(verified[k]["ok"], f"try {k + 1}: standardwebhooks refuses it: {verified[k]}")
        expect(webhook_valid(CALLBACK_SECRET, r["headers"], r["body"]),
               f"try {k + 1}: the signature does not verify: {r['headers']}")
        expect((r["headers"].get("Content-Type") or "").startswith("application/json"),
               f"try {k + 1}: Content-Type {r['headers'].get('Content-Type')!r}")
        doc = json.loads(r["body"])
        expect_eq(verified[k].get("payload"), doc, f"try {k + 1}: the payload standardwebhooks returns")
        expect_eq(sorted(doc), ["data", "timestamp", "type"], f"try {k + 1}: envelope fields")
        expect_eq(doc["type"], "job.succeeded", f"try {k + 1}: type")
        expect_eq(doc["timestamp"], j["completed_at"], f"try {k + 1}: timestamp (when the job ended)")
        expect_eq((doc["data"]["id"], doc["data"]["status"]), (jid, "succeeded"),
                  f"try {k + 1}: job id and status")
        expect_eq(doc["data"]["outputs"], j["outputs"], f"try {k + 1}: outputs in the callback")
        expect("callback" not in doc["data"], f"try {k + 1}: the message's job carries no callback state")
    # The verifier is no rubber stamp: one byte changed, or another
    # secret, and it refuses.
    tampered = dict(reqs[1], body=reqs[1]["body"].replace(b"job.succeeded", b"job.succeedeD"))
    other = "whsec_" + base64.b64encode(b"another secret of 24 bytes!").decode()
    expect(not standardwebhooks_verify(CALLBACK_SECRET, [tampered])[0]["ok"], "standardwebhooks took a changed body")
    expect(not standardwebhooks_verify(other, [reqs[1]])[0]["ok"], "standardwebhooks took another secret")
    gap = reqs[1]["at"] - reqs[0]["at"]
    expect(4.5 <= gap <= 15, f"the retry came {gap:.1f} s after the first try (the schedule says 5 s)")
    deliveries = [d for kind, _, _, d in events_of(jid) if kind == "callback"]
    states = [d.get("delivery") for d in deliveries]
    expect_eq(states, ["failed", "delivered"], f"callback events {deliveries}")
    expect_eq(deliveries[0].get("http_status"), "500", "status recorded for the failed try")
    expect_eq(deliveries[0].get("webhook_id"), deliveries[1].get("webhook_id"), "webhook ids in the events")
    expect_eq(job(jid)["status"], "succeeded", "the job's status after its callback")


@case("callback: POST /v1/jobs/{id}/callback/retry sends a delivered callback again, the same message (webhook-id)")
@with_worker(1, name="pipeline-callback-redeliver")
def _(w):
    fake_reset()
    rx = Receiver([200])
    try:
        jid = create({}, ["thumb"], callback_url=f"http://127.0.0.1:{rx.port}/cb")
        wait_status([jid], timeout=30)
        wait_until(lambda: callback_row(jid) == ("delivered", 1), timeout=30, what="the first delivery")
        got = expect_json(post(f"/v1/jobs/{jid}/callback/retry"), 202)
        expect_eq(got["id"], jid, "the job object answered")
        # Svix's resend: the same delivery tried again, its tries counted on.
        wait_until(lambda: len(rx.requests) >= 2 and callback_row(jid) == ("delivered", 2), timeout=30,
                   what="the second delivery")
        time.sleep(1)
        reqs = list(rx.requests)
    finally:
        rx.close()
    expect_eq(len(reqs), 2, "callback POSTs")
    expect_eq(reqs[0]["headers"].get("webhook-id"), reqs[1]["headers"].get("webhook-id"), "the same message")
    verified = standardwebhooks_verify(CALLBACK_SECRET, reqs)
    expect(all(v["ok"] for v in verified), f"standardwebhooks: {verified}")
    kinds = [d.get("delivery") for kind, _, _, d in events_of(jid) if kind == "callback"]
    expect_eq(kinds, ["delivered", "requested", "delivered"], "callback events")
    tries = attempt_rows(jid)
    expect_eq([t[:3] for t in tries], [(reqs[0]["headers"].get("webhook-id"), "1", "200"),
                                       (reqs[0]["headers"].get("webhook-id"), "2", "200")],
              "one delivery, two attempt rows")
    expect_eq({k: job(jid)["callback"][k] for k in ("state", "attempts", "last_status", "next_at")},
              {"state": "delivered", "attempts": 2, "last_status": 200, "next_at": None},
              "the job object's callback after the resend")


def attempt_rows(jid):
    """The tries of job JID's callback deliveries as (webhook-id, attempt,
    HTTP status or 'NULL', error or 'NULL'), oldest first."""
    return [tuple(r) for r in sql(
        f"SELECT a.delivery_id, a.attempt, COALESCE(a.http_status, 'NULL'), COALESCE(a.error, 'NULL')"
        f" FROM callback_attempts a JOIN callback_deliveries d ON d.id = a.delivery_id"
        f" WHERE d.job_id = '{jid}' ORDER BY d.created_at, a.attempt")]


def check_callback(r, jid, status, what):
    expect(webhook_valid(CALLBACK_SECRET, r["headers"], r["body"]),
           f"{what}: the signature does not verify: {r['headers']}")
    doc = json.loads(r["body"])
    expect_eq(doc["type"], f"job.{status}", f"{what}: type")
    expect_eq((doc["data"]["id"], doc["data"]["status"]), (jid, status), f"{what}: job id and status")


@case("callback: a queued job canceled before any worker ran gets its signed callback, and again after a retry")
def _():
    fake_reset(duration=30)
    rx = Receiver([200])
    w = None
    try:
        jid = create({}, ["thumb"], callback_url=f"http://127.0.0.1:{rx.port}/cb")
        got = expect_json(post(f"/v1/jobs/{jid}/cancel"), 202)
        expect_eq(got["status"], "canceled", "status after cancel")
        expect_eq(callback_row(jid), ("pending", 0), "callback state of the canceled queued job")
        w = Worker(1, "pipeline-cancel-callback")
        wait_until(lambda: callback_row(jid)[0] == "delivered", timeout=20,
                   what="the callback of the canceled job delivered")
        expect_eq(len(rx.requests), 1, "callback POSTs for the first cancel")
        check_callback(rx.requests[0], jid, "canceled", "first cancel")
        # A retry starts the job's callback afresh: its next end is
        # delivered (and counted) on its own.
        got = expect_json(post(f"/v1/jobs/{jid}/retry"), 202)
        expect_eq(got["callback"]["state"], "none", "the job object's callback while the retried job runs")
        expect_eq(callback_row(jid), ("delivered", 1), "the first end's delivery, kept")
        wait_until(lambda: job(jid)["status"] in ("starting", "processing"), timeout=20,
                   what="the retried job running at the provider")
        expect_json(post(f"/v1/jobs/{jid}/cancel"), 202)
        wait_until(lambda: callback_row(jid)[0] == "delivered" and len(rx.requests) >= 2, timeout=30,
                   what="the callback of the second cancel delivered")
        time.sleep(1.0)  # nothing more may come
        reqs = list(rx.requests)
    finally:
        if w:
            leftover = w.stop()
        rx.close()
    check_worker(w, leftover)
    expect_eq(len(reqs), 2, "callback POSTs in all")
    check_callback(reqs[1], jid, "canceled", "second cancel")
    expect(reqs[0]["headers"].get("webhook-id") != reqs[1]["headers"].get("webhook-id"),
           "a new end is a new delivery with a new webhook-id")
    ids = [r["headers"].get("webhook-id") for r in reqs]
    expect(None not in ids and ids[0] != ids[1], f"each end has its own webhook-id: {ids}")
    delivered = [d for kind, _, _, d in events_of(jid) if kind == "callback"]
    expect_eq([d.get("delivery") for d in delivered], ["delivered", "delivered"], f"callback events {delivered}")
    rows = sql(f"SELECT id, type, state, attempts FROM callback_deliveries WHERE job_id = '{jid}'"
               f" ORDER BY created_at")
    expect_eq(rows, [[ids[0], "job.canceled", "delivered", "1"], [ids[1], "job.canceled", "delivered", "1"]],
              "a delivery per end, keyed by the webhook-id it was sent with")
    expect_eq(job(jid)["callback"]["state"], "delivered", "the job object shows the latest delivery")


@case("callback: a canceled queued job without a callback_url is parked (no callback, no claim)")
def _():
    jid = create({}, ["thumb"])
    expect_eq(expect_json(post(f"/v1/jobs/{jid}/cancel"), 202)["status"], "canceled", "status")
    expect_eq(callback_row(jid), ("none", 0), "callback state")
    expect_eq(job(jid)["callback"], None, "the job object's callback")
    expect_eq(sql(f"SELECT run_at IS NULL FROM jobs WHERE id = '{jid}'")[0][0], "1", "run_at cleared")


@case("callback: a job object that cannot be rendered counts as a failed try, logged, and ends after the schedule's 8 tries")
def _():
    rx = Receiver([200])
    w = None
    try:
        jid = create({}, ["thumb"], callback_url=f"http://127.0.0.1:{rx.port}/cb")
        expect_json(post(f"/v1/jobs/{jid}/cancel"), 202)
        # Two 9 MB text outputs: the job object (over 16 MiB) cannot be
        # built, on every try.
        sql(f"INSERT INTO outputs (job_id, idx, kind, state, text, created_at) VALUES"
            f" ('{jid}', 0, 'text', 'stored', REPEAT('a', 9000000), NOW(6)),"
            f" ('{jid}', 1, 'text', 'stored', REPEAT('b', 9000000), NOW(6))")
        sql(f"UPDATE callback_deliveries SET state = 'pending', next_at = NOW(6) WHERE job_id = '{jid}'")
        sql(f"UPDATE jobs SET run_at = NOW(6) WHERE id = '{jid}'")
        # The schedule (27 h) shortened ten thousand times: about 10 s.
        w = Worker(1, "pipeline-callback-render", {"DARKROOM_TEST_CALLBACK_SCALE": "0.0001"})
        wait_until(lambda: callback_row(jid)[0] == "failed", timeout=60,
                   what="the unrenderable callback given up")
        state, attempts = callback_row(jid)
        time.sleep(5)  # longer than a lease: it is not claimed again
        expect_eq(callback_row(jid), (state, attempts), "callback state once given up")
        expect_eq(sql(f"SELECT run_at IS NULL FROM jobs WHERE id = '{jid}'")[0][0], "1", "run_at cleared")
    finally:
        if w:
            leftover = w.stop()
        rx.close()
        sql(f"DELETE FROM outputs WHERE job_id = '{jid}'")
    check_worker(w, leftover)
    expect_eq(len(rx.requests), 0, "nothing was POSTed")
    expect_eq(attempts, 8, "callback attempts (the schedule's tries)")
    tries = attempt_rows(jid)
    expect_eq([(t[1], t[2]) for t in tries], [(str(k), "NULL") for k in range(1, 9)], "attempt rows, no answer")
    expect(all(t[3].startswith("callback_unrenderable") for t in tries), f"attempt errors {tries[:1]}")
    failed = [d for kind, _, _, d in events_of(jid) if kind == "callback"]
    expect_eq(len(failed), 8, f"callback events {failed[:2]}")
    expect(all(d.get("delivery") == "failed" and d.get("code") == "callback_unrenderable" for d in failed),
           f"callback events {failed[:2]}")
    expect_eq([d.get("given_up") for d in failed], [None] * 7 + ["true"], "given_up on the last try only")
    lines = [ln for ln in w.log_text().splitlines() if "event=callback.failed" in ln and jid in ln]
    expect_eq(len(lines), 8, "event=callback.failed lines")
    expect(all("reason=" in ln and "code=callback_unrenderable" in ln for ln in lines), f"log line {lines[:1]}")

run()
