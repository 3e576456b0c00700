#!/usr/bin/env python3
"""tests/fakes/cog.py — a fake Cog model container (Python standard library).

It speaks the part of Cog's HTTP API darkroom's `cog` adapter uses:

  GET  /health-check                {"status": READY|BUSY|STARTING|SETUP_FAILED}
                                    (BUSY by itself while a prediction runs)
  PUT  /predictions/{id}            with "Prefer: respond-async": 202 and the
                                    prediction runs in the background; a PUT
                                    with the id of a running or finished
                                    prediction attaches (202, not run again);
                                    409 while another prediction runs or
                                    when `busy_put` is set; 422 for an input
                                    with "fake_reject"
  POST /predictions/{id}/cancel     stops a running prediction (canceled)

Webhooks go to the PUT's "webhook" URL with "Authorization: Bearer TOKEN"
(--token, like WEBHOOK_AUTH_TOKEN): a "start" event (status processing)
and a "completed" one. A successful prediction's output is a data: URI of
a small PNG; input {"fake_output": "text"} makes it a string instead, and
{"fake_width": W, "fake_height": H} a W x H PNG that compresses like a
photo (1024 x 1024: a 2.7 MB webhook; 4000 x 3000: about 31 MB).

Control (tests):
  POST /_control  {"health": "READY"|"BUSY"|..., "duration": s,
                   "drop_webhooks": bool, "fail": bool, "busy_put": bool,
                   "drop_put_answer": n (the next n PUTs run but their
                   answer is lost: the connection closes unanswered),
                   "start_webhook_delay": s}
  POST /_reset    back to defaults, state forgotten
  GET  /_state    {"runs": {id: n}, "puts": {id: n}, "cancels": [id],
                   "deliveries": [{id, status, code}], "predictions": {...}}

Usage: cog.py --port PORT --token TOKEN
"""

import argparse
import base64
import json
import os
import struct
import threading
import time
import urllib.request
import zlib
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer


def tiny_png(w=8, h=8, rgb=(200, 40, 40)):
    """A valid w x h RGB PNG."""
    def chunk(kind, data):
        c = kind + data
        return struct.pack(">I", len(data)) + c + struct.pack(">I", zlib.crc32(c) & 0xFFFFFFFF)
    raw = b"".join(b"\x00" + bytes(rgb) * w for _ in range(h))
    return (b"\x89PNG\r\n\x1a\n" + chunk(b"IHDR", struct.pack(">IIBBBBB", w, h, 8, 2, 0, 0, 0))
            + chunk(b"IDAT", zlib.compress(raw)) + chunk(b"IEND", b""))


_NOISY = {}


def noisy_png(w, h):
    """noisy_png_new(w, h), made once per size (the last size kept)."""
    if (w, h) not in _NOISY:
        _NOISY.clear()
        _NOISY[(w, h)] = noisy_png_new(w, h)
    return _NOISY[(w, h)]


def noisy_png_new(w, h):
    """A valid w x h RGB PNG that compresses about as badly as a photo (a
    gradient under 5 bits of noise per channel): 1024 x 1024 is about 2 MB,
    4000 x 3000 about 23 MB."""
    def chunk(kind, data):
        c = kind + data
        return struct.pack(">I", len(data)) + c + struct.pack(">I", zlib.crc32(c) & 0xFFFFFFFF)
    comp = zlib.compressobj(6)
    out = []
    for y in range(h):
        base = y * 200 // h
        table = bytes(min(255, base + (b & 31)) for b in range(256))
        out.append(comp.compress(b"\0" + os.urandom(w * 3).translate(table)))
    out.append(comp.flush())
    return (b"\x89PNG\r\n\x1a\n" + chunk(b"IHDR", struct.pack(">IIBBBBB", w, h, 8, 2, 0, 0, 0))
            + chunk(b"IDAT", b"".join(out)) + chunk(b"IEND", b""))


PNG_URI = "data:image/png;base64," + base64.b64encode(tiny_png()).decode()
DEFAULTS = {"health": "READY", "duration": 0.5, "drop_webhooks": False, "fail": False,
            "busy_put": False, "drop_put_answer": 0, "start_webhook_delay": 0.0}


class State:
    def __init__(self, token):
        self.token = token
        self.lock = threading.Lock()
        self.reset()

    def reset(self):
        self.settings = dict(DEFAULTS)
        self.runs = {}
        self.puts = {}
        self.cancels = []
        self.deliveries = []
        self.predictions = {}
        self.running = None  # id of the running prediction

    def snapshot(self):
        return {"runs": self.runs, "puts": self.puts, "cancels": self.cancels,
                "deliveries": self.deliveries, "predictions": self.predictions,
                "settings": self.settings}


STATE = None


def deliver(pred, url):
    body = json.dumps(pred).encode()
    req = urllib.request.Request(url, data=body, method="POST", headers={
        "Content-Type": "application/json", "Authorization": f"Bearer {STATE.token}"})
    try:
        with urllib.request.urlopen(req, timeout=10) as r:
            code = r.status
    except urllib.error.HTTPError as e:
        code = e.code
    except OSError:
        code = 0
    with STATE.lock:
        STATE.deliveries.append({"id": pred["id"], "status": pred["status"], "code": code})


def run_prediction(pid, url):
    with STATE.lock:
        s = dict(STATE.settings)
        pred = STATE.predictions[pid]
    drop = s["drop_webhooks"]
    if s["start_webhook_delay"]:
        time.sleep(s["start_webhook_delay"])
    with STATE.lock:
        pred["status"] = "processing"
        pred["started_at"] = time.strftime("%Y-%m-%dT%H:%M:%S.000000Z", time.gmtime())
        start = dict(pred)
    if url and not drop:
        deliver(start, url)
    end = time.monotonic() + s["duration"]
    while time.monotonic() < end:
        with STATE.lock:
            if pred["status"] == "canceled":
                break
        time.sleep(0.05)
    big_uri = None
    w = pred["input"].get("fake_width")
    if w and not s["fail"]:  # made outside the lock: seconds for 4000 x 3000
        png = noisy_png(int(w), int(pred["input"].get("fake_height") or w))
        big_uri = "data:image/png;base64," + base64.b64encode(png).decode()
    with STATE.lock:
        if pred["status"] != "canceled":
            if s["fail"]:
                pred["status"] = "failed"
                pred["error"] = "CUDA out of memory (fake)"
            else:
                pred["status"] = "succeeded"
                inp = pred["input"]
                text = inp.get("fake_output") == "text"
                if text:
                    pred["output"] = "Hello from Cog"
                elif big_uri:
                    pred["output"] = [big_uri]
                else:
                    pred["output"] = [PNG_URI]
                pred["metrics"] = {"predict_time": s["duration"]}
            pred["logs"] = " 50%|#####     | 1/2\n100%|##########| 2/2\n"
        pred["completed_at"] = time.strftime("%Y-%m-%dT%H:%M:%S.000000Z", time.gmtime())
        STATE.running = None
        done = dict(pred)
    if url and not drop:
        deliver(done, url)


class Handler(BaseHTTPRequestHandler):
    protocol_version = "HTTP/1.1"

    def log_message(self, fmt, *args):
        pass

    def reply(self, code, doc=None):
        body = b"" if doc is None else json.dumps(doc).encode()
        self.send_response(code)
        self.send_header("Content-Type", "application/json")
        self.send_header("Content-Length", str(len(body)))
        self.end_headers()
        self.wfile.write(body)

    def body(self):
        n = int(self.headers.get("Content-Length") or 0)
        raw = self.rfile.read(n) if n else b""
        try:
            return json.loads(raw) if raw else {}
        except ValueError:
            return None

    def do_GET(self):
        if self.path == "/health-check":
            with STATE.lock:
                status = STATE.settings["health"]
                if status == "READY" and STATE.running:
                    status = "BUSY"
            return self.reply(200, {"status": status, "setup": {"status": "succeeded"}})
        if self.path == "/_state":
            with STATE.lock:
                return self.reply(200, STATE.snapshot())
        self.reply(404, {"detail": "Not Found"})

    def do_PUT(self):
        parts = self.path.split("/")
        doc = self.body()
        if len(parts) != 3 or parts[1] != "predictions" or not parts[2]:
            return self.reply(404, {"detail": "Not Found"})
        pid = parts[2]
        if not isinstance(doc, dict) or not isinstance(doc.get("input"), dict):
            return self.reply(422, {"detail": "input: field required"})
        with STATE.lock:
            STATE.puts[pid] = STATE.puts.get(pid, 0) + 1
            async_ = "respond-async" in (self.headers.get("Prefer") or "")
            if pid in STATE.predictions:
                pred = dict(STATE.predictions[pid])  # attach: not run again
                start = False
            elif STATE.settings["busy_put"] or STATE.running:
                return self.reply(409, {"detail": "Already running a prediction"})
            elif "fake_reject" in doc["input"]:
                return self.reply(422, {"detail": "input.fake_reject: not allowed"})
            else:
                pred = {"id": pid, "input": doc["input"], "status": "starting", "output": None,
                        "error": None, "logs": "", "webhook": doc.get("webhook"),
                        "created_at": time.strftime("%Y-%m-%dT%H:%M:%S.000000Z", time.gmtime())}
                STATE.predictions[pid] = pred
                STATE.runs[pid] = STATE.runs.get(pid, 0) + 1
                STATE.running = pid
                pred = dict(pred)
                start = True
            drop = STATE.settings["drop_put_answer"] > 0
            if drop:
                STATE.settings["drop_put_answer"] -= 1
        if start:
            threading.Thread(target=run_prediction, args=(pid, doc.get("webhook")),
                             daemon=True).start()
        if drop:
            self.close_connection = True
            return
        self.reply(202 if async_ else 200, pred)

    def do_POST(self):
        doc = self.body()
        parts = self.path.split("/")
        if self.path == "/_control":
            with STATE.lock:
                STATE.settings.update(doc or {})
                return self.reply(200, STATE.settings)
        if self.path == "/_reset":
            with STATE.lock:
                STATE.reset()
            return self.reply(200, {})
        if len(parts) == 4 and parts[1] == "predictions" and parts[3] == "cancel":
            pid = parts[2]
            with STATE.lock:
                STATE.cancels.append(pid)
                pred = STATE.predictions.get(pid)
                if not pred:
                    return self.reply(404, {"detail": "Not Found"})
                if pred["status"] in ("starting", "processing"):
                    pred["status"] = "canceled"
            return self.reply(200, {})
        self.reply(404, {"detail": "Not Found"})


def main():
    global STATE
    ap = argparse.ArgumentParser()
    ap.add_argument("--port", type=int, required=True)
    ap.add_argument("--token", required=True)
    args = ap.parse_args()
    STATE = State(args.token)
    srv = ThreadingHTTPServer(("127.0.0.1", args.port), Handler)
    srv.daemon_threads = True
    srv.serve_forever()


if __name__ == "__main__":
    main()
