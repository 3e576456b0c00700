#!/usr/bin/env python3
"""tests/integration/harness.py — a small test framework for darkroom's
integration tests (Python standard library only).

A test file registers its cases in order with the @case decorator and ends
with run():

    from harness import case, run, request, expect, expect_problem

    @case("401 without a key")
    def _():
        r = request("GET", "/v1/jobs", key=None)
        expect_problem(r, 401)

    run()

run() executes the cases in the order they were registered, one exception
per case at most, and prints one line per case ("ok   NAME" or
"FAIL NAME: REASON"), then the closing line "N passed, N failed"; it exits
1 when any case failed. `test_x.py -k WORD` runs only the cases whose name
contains WORD.

Environment (set by tests/run-integration.sh):
  DARKROOM_URL       base URL of the service, e.g. http://127.0.0.1:41234
  DARKROOM_API_KEY   a valid API key (DARKROOM_API_KEY2: a second one)
  MARIADB_SOCKET     socket of the test MariaDB; DARKROOM_DB its database
  DARKROOM_DB_CTL    command that takes `stop` or `start` and stops or
                     starts that MariaDB (same data, socket and port)
  DARKROOM_LIGHTTPD_PID, DARKROOM_LIGHTTPD_ERRLOG  the web server under test
  DARKROOM_APP_LOG   the FastCGI app's stderr
"""

import email.message
import http.client
import json
import os
import re
import shlex
import struct
import subprocess
import sys
import time
import traceback
import urllib.error
import urllib.parse
import urllib.request
import zlib

BASE_URL = os.environ.get("DARKROOM_URL", "http://127.0.0.1:8080").rstrip("/")
API_KEY = os.environ.get("DARKROOM_API_KEY", "")

_CASES = []


class Fail(AssertionError):
    """A case's expectation did not hold; the message says what."""


def case(name):
    """Register the decorated function as a case named NAME."""

    def register(fn):
        _CASES.append((name, fn))
        return fn

    return register


def expect(cond, message):
    """Fail the case with MESSAGE unless COND holds."""
    if not cond:
        raise Fail(message)


def expect_eq(actual, expected, what="value"):
    if actual != expected:
        raise Fail(f"{what}: expected {expected!r}, got {_short(actual)}")


def _short(value, limit=300):
    text = repr(value)
    return text if len(text) <= limit else text[:limit] + "…"


# ------------------------------------------------------------------ HTTP


class Response:
    """An HTTP answer: status (int), headers (case-insensitive .get),
    body (bytes), json (parsed when the content type is JSON, else None)."""

    def __init__(self, status, headers, body):
        self.status = status
        self.headers = headers
        self.body = body
        self.json = None
        ctype = self.content_type
        if ctype == "application/json" or ctype.endswith("+json"):
            try:
                self.json = json.loads(body.decode("utf-8"))
            except (UnicodeDecodeError, ValueError) as e:
                raise Fail(f"{ctype} answer is not valid JSON ({e}): {_short(body)}")

    @property
    def content_type(self):
        """The media type without parameters, lower-case ('' if none)."""
        value = self.headers.get("Content-Type") or ""
        return value.split(";")[0].strip().lower()

    def __repr__(self):
        return f"<{self.status} {self.content_type} {_short(self.body, 200)}>"


class _NoRedirect(urllib.request.HTTPRedirectHandler):
    def redirect_request(self, req, fp, code, msg, headers, newurl):
        return None


_OPENER = urllib.request.build_opener(_NoRedirect)


def request(method, path, body=None, headers=None, key=API_KEY, timeout=30, base=None):
    """Send one request to DARKROOM_URL (or BASE) + PATH and return a
    Response.

    BODY: bytes are sent as they are; any other value (dict, list, str,
    number) is encoded as JSON with Content-Type application/json unless
    HEADERS sets one. KEY: sent as "Authorization: Bearer KEY"; None sends
    no Authorization header. Redirects are not followed. Any answer leaking
    the API key fails the case.
    """
    hdrs = dict(headers or {})
    if key is not None:
        hdrs.setdefault("Authorization", f"Bearer {key}")
    data = None
    if body is not None:
        if isinstance(body, (bytes, bytearray)):
            data = bytes(body)
        else:
            data = json.dumps(body).encode("utf-8")
            if not any(h.lower() == "content-type" for h in hdrs):
                hdrs["Content-Type"] = "application/json"
    req = urllib.request.Request((base or BASE_URL) + path, data=data, headers=hdrs, method=method)
    try:
        with _OPENER.open(req, timeout=timeout) as resp:
            r = Response(resp.status, resp.headers, resp.read())
    except urllib.error.HTTPError as e:
        headers = e.headers if e.headers is not None else email.message.Message()
        r = Response(e.code, headers, e.read() or b"")
    except (urllib.error.URLError, OSError) as e:
        reason = getattr(e, "reason", e)
        raise Fail(f"{method} {path}: no answer ({reason})")
    for secret in _secrets():
        if secret.encode() in r.body:
            raise Fail(f"{method} {path}: the answer contains an API key")
    return r


def request_raw(method, path, body=None, headers=None, key=API_KEY, timeout=30):
    """Send one request exactly as given and return a Response: unlike
    request(), nothing is added but Host and Accept-Encoding, so a POST
    without BODY goes out without Content-Length, as `curl -X POST URL`
    sends it. BODY (bytes) is sent after the headers; set its
    Content-Length in HEADERS yourself. A server that answers before it
    has read the whole body may close the connection: the answer is read
    all the same.
    """
    hdrs = dict(headers or {})
    if key is not None:
        hdrs.setdefault("Authorization", f"Bearer {key}")
    url = urllib.parse.urlsplit(BASE_URL)
    conn = http.client.HTTPConnection(url.hostname, url.port, timeout=timeout)
    try:
        try:
            conn.putrequest(method, path)
            for name, value in hdrs.items():
                conn.putheader(name, value)
            conn.endheaders()
        except OSError as e:
            raise Fail(f"{method} {path}: no answer ({e})")
        if body:
            try:
                conn.send(body)
            except (BrokenPipeError, ConnectionResetError):
                pass  # answered (and closed) before the body was read
        try:
            resp = conn.getresponse()
            r = Response(resp.status, resp.headers, resp.read())
        except (http.client.HTTPException, OSError) as e:
            raise Fail(f"{method} {path}: no answer ({e})")
    finally:
        conn.close()
    for secret in _secrets():
        if secret.encode() in r.body:
            raise Fail(f"{method} {path}: the answer contains an API key")
    return r


def _secrets():
    keys = [os.environ.get("DARKROOM_API_KEY", ""), os.environ.get("DARKROOM_API_KEY2", "")]
    return [k for k in keys if len(k) >= 8]


def get(path, **kw):
    return request("GET", path, **kw)


def post(path, body=None, **kw):
    return request("POST", path, body=body, **kw)


def expect_status(r, status, what=""):
    """Fail unless R's status is STATUS (an int or a tuple of ints)."""
    allowed = status if isinstance(status, tuple) else (status,)
    if r.status not in allowed:
        label = " or ".join(str(s) for s in allowed)
        raise Fail(f"{what + ': ' if what else ''}expected {label}, got {r!r}")


def expect_json(r, status):
    """Fail unless R is a JSON answer with STATUS; return the parsed body."""
    expect_status(r, status)
    expect(r.content_type == "application/json",
           f"expected Content-Type application/json, got {r.headers.get('Content-Type')!r}")
    return r.json


# Signs of internals in an error answer: SQL text, server error messages,
# stack traces, C source locations.
_LEAKS = re.compile(r"\bSELECT\b.*\bFROM\b|\bINSERT INTO\b|\bUPDATE \S+ SET\b|\bDELETE FROM\b"
                    r"|SQL syntax|Traceback \(most recent|\b\w+\.c:\d+")


def expect_problem(r, status, field=None):
    """Fail unless R is an RFC 9457 problem document with STATUS (int or
    tuple): Content-Type application/problem+json; members type, title,
    status (equal to the HTTP status) and detail; no SQL or source
    locations in it. FIELD, when given, must appear in detail.
    Returns the parsed document."""
    expect_status(r, status)
    expect(r.content_type == "application/problem+json",
           f"expected a problem document, got Content-Type {r.headers.get('Content-Type')!r}: {_short(r.body)}")
    doc = r.json
    expect(isinstance(doc, dict), f"problem document is not an object: {_short(doc)}")
    for member in ("type", "title", "detail"):
        expect(isinstance(doc.get(member), str) and doc[member] != "",
               f"problem document lacks a string {member!r}: {_short(doc)}")
    expect(doc.get("status") == r.status,
           f"problem status {doc.get('status')!r} differs from HTTP status {r.status}")
    expect(not _LEAKS.search(r.body.decode("utf-8", "replace")),
           f"problem document shows internals: {_short(doc)}")
    if field is not None:
        expect(field in doc["detail"], f"detail does not name {field!r}: {doc['detail']!r}")
    return doc


# ------------------------------------------------------------ database


def sql(query):
    """Run QUERY on the test database with the mariadb client; return the
    rows as lists of strings (NULL as 'NULL')."""
    cmd = ["mariadb", "--no-defaults", f"--socket={os.environ['MARIADB_SOCKET']}", "-uroot",
           "-N", "-B", os.environ.get("DARKROOM_DB", "darkroom_test"), "-e", query]
    p = subprocess.run(cmd, capture_output=True, text=True, timeout=60)
    if p.returncode != 0:
        raise Fail(f"SQL failed: {query!r}: {p.stderr.strip()}")
    return [line.split("\t") for line in p.stdout.splitlines()]


def callback_row(jid):
    """Job JID's latest callback delivery (callback_deliveries) as (state,
    attempts); ("none", 0) when it has none."""
    rows = sql(f"SELECT state, attempts FROM callback_deliveries WHERE job_id = '{jid}'"
               f" ORDER BY created_at DESC, id DESC LIMIT 1")
    return (rows[0][0], int(rows[0][1])) if rows else ("none", 0)


def settle_callback(jid):
    """Give up job JID's pending callback deliveries and take the job off
    the queue: for a callback to a host no test serves, so that no later
    file finds it due."""
    sql(f"UPDATE callback_deliveries SET state = 'failed', next_at = NULL"
        f" WHERE job_id = '{jid}' AND state = 'pending'")
    sql(f"UPDATE jobs SET run_at = NULL WHERE id = '{jid}'")


def db_ctl(action):
    """Stop or start the test MariaDB: ACTION is 'stop' or 'start'."""
    cmd = shlex.split(os.environ["DARKROOM_DB_CTL"]) + [action]
    p = subprocess.run(cmd, capture_output=True, text=True, timeout=120, stdin=subprocess.DEVNULL)
    if p.returncode != 0:
        raise Fail(f"database {action} failed ({p.returncode}): {p.stderr.strip()[-500:]}")


def wait_until(fn, timeout=10.0, interval=0.2, what="condition"):
    """Call FN until it returns a true value or TIMEOUT seconds pass; return
    that value, or fail naming WHAT and the last result or exception."""
    deadline = time.monotonic() + timeout
    last = None
    while True:
        try:
            last = fn()
            if last:
                return last
        except Fail as e:
            last = e
        if time.monotonic() >= deadline:
            raise Fail(f"{what}: not within {timeout:g}s (last: {_short(last)})")
        time.sleep(interval)


# --------------------------------------------------------------- runner


def _where(exc):
    """file:line of the innermost frame in a test file, for the FAIL line."""
    here = os.path.abspath(__file__)
    loc = ""
    for frame in traceback.extract_tb(exc.__traceback__):
        if os.path.abspath(frame.filename) != here:
            loc = f"{os.path.basename(frame.filename)}:{frame.lineno}"
    return loc


def run(argv=None):
    """Run the registered cases in order, print a line each and the closing
    'N passed, N failed' line, and exit 1 if any failed."""
    argv = sys.argv[1:] if argv is None else argv
    only = None
    if len(argv) >= 2 and argv[0] == "-k":
        only = argv[1]
    passed = failed = 0
    for name, fn in _CASES:
        if only is not None and only not in name:
            continue
        try:
            fn()
        except Exception as e:  # one failing case must not stop the others
            failed += 1
            kind = "" if isinstance(e, Fail) else f"{type(e).__name__}: "
            where = _where(e)
            reason = f"{kind}{e}".replace("\n", " ")
            print(f"FAIL {name}: {reason}" + (f" [{where}]" if where else ""), flush=True)
        else:
            passed += 1
            print(f"ok   {name}", flush=True)
    print(f"{passed} passed, {failed} failed", flush=True)
    sys.exit(1 if failed else 0)


def noisy_png(width, height):
    """A real RGB PNG of WIDTH x HEIGHT that compresses about as badly as a
    photo: a gradient under 5 bits of noise per channel (1024 x 1024 makes
    about 2 MB, 2.7 MB as base64)."""
    rows = []
    for y in range(height):
        base = y * 200 // height
        table = bytes(min(255, base + (b & 31)) for b in range(256))
        rows.append(b"\0" + os.urandom(width * 3).translate(table))

    def chunk(kind, data):
        return (struct.pack(">I", len(data)) + kind + data
                + struct.pack(">I", zlib.crc32(kind + data) & 0xFFFFFFFF))
    return (b"\x89PNG\r\n\x1a\n"
            + chunk(b"IHDR", struct.pack(">IIBBBBB", width, height, 8, 2, 0, 0, 0))
            + chunk(b"IDAT", zlib.compress(b"".join(rows), 6))
            + chunk(b"IEND", b""))
