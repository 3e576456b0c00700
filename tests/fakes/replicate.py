#!/usr/bin/env python3
"""tests/fakes/replicate.py — a fake Replicate API server for darkroom's
integration tests (Python standard library only).

It speaks Replicate's documented HTTP API under /v1 on loopback, runs every
prediction through a timed lifecycle in a background thread, serves the
output files itself, sends Standard Webhooks-signed webhooks, and has
switchable faults.  See tests/fakes/README.md for the control API.

    python3 tests/fakes/replicate.py --port 0 [--token T] [--secret whsec_...]
                                     [--state-dir D] [--host H] [--verbose]
    python3 tests/fakes/replicate.py --self-test

Importable: `sign(secret, msg_id, timestamp, body)` and
`verify(secret, headers, body, tolerance=300, now=None)` implement the
Standard Webhooks scheme, for tests that check deliveries themselves.
"""

import argparse
import base64
import binascii
import collections
import hashlib
import hmac
import http.client
import json
import os
import random
import re
import secrets
import signal
import struct
import sys
import tarfile
import threading
import time
import traceback
import urllib.parse
import zlib
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer

# ---------------------------------------------------------------------------
# Standard Webhooks signing

DEFAULT_TOKEN = "r8_fake"


def secret_key(secret):
    """The HMAC key of a `whsec_...` secret (base64 after the prefix)."""
    if not isinstance(secret, str):
        raise ValueError("secret must be a string")
    s = secret[len("whsec_"):] if secret.startswith("whsec_") else secret
    try:
        return base64.b64decode(s, validate=True)
    except (binascii.Error, ValueError) as exc:
        raise ValueError("secret is not base64 after whsec_") from exc


def sign(secret, msg_id, timestamp, body):
    """Return the `v1,<base64>` signature of BODY (bytes or str)."""
    if isinstance(body, str):
        body = body.encode()
    content = ("%s.%s." % (msg_id, int(timestamp))).encode() + body
    mac = hmac.new(secret_key(secret), content, hashlib.sha256).digest()
    return "v1," + base64.b64encode(mac).decode()


def verify(secret, headers, body, tolerance=300, now=None):
    """True when HEADERS (a mapping, case-insensitive names) carry a valid
    Standard Webhooks signature of BODY under SECRET and a timestamp within
    TOLERANCE seconds of NOW."""
    h = {k.lower(): v for k, v in dict(headers).items()}
    msg_id, ts, sigs = h.get("webhook-id"), h.get("webhook-timestamp"), h.get("webhook-signature")
    if not msg_id or not ts or not sigs:
        return False
    try:
        ts_i = int(ts)
    except ValueError:
        return False
    now = time.time() if now is None else now
    if abs(now - ts_i) > tolerance:
        return False
    want = base64.b64decode(sign(secret, msg_id, ts_i, body)[3:])
    for entry in sigs.split():
        version, _, value = entry.partition(",")
        if version != "v1":
            continue
        try:
            got = base64.b64decode(value, validate=True)
        except (binascii.Error, ValueError):
            continue
        if hmac.compare_digest(got, want):
            return True
    return False


def new_secret():
    return "whsec_" + base64.b64encode(secrets.token_bytes(24)).decode()


# ---------------------------------------------------------------------------
# Output files: a generated PNG, and small real JPEG / WebP samples

# 64x48 baseline JPEG (made once with `vips copy g.png g.jpg[Q=80,strip]`).
SAMPLE_JPEG = base64.b64decode(
    "/9j/2wBDAAYEBQYFBAYGBQYHBwYIChAKCgkJChQODwwQFxQYGBcUFhYaHSUfGhsjHBYWICwg"
    "IyYnKSopGR8tMC0oMCUoKSj/2wBDAQcHBwoIChMKChMoGhYaKCgoKCgoKCgoKCgoKCgoKCgo"
    "KCgoKCgoKCgoKCgoKCgoKCgoKCgoKCgoKCgoKCgoKCj/wAARCAAwAEADASIAAhEBAxEB/8QA"
    "HwAAAQUBAQEBAQEAAAAAAAAAAAECAwQFBgcICQoL/8QAtRAAAgEDAwIEAwUFBAQAAAF9AQID"
    "AAQRBRIhMUEGE1FhByJxFDKBkaEII0KxwRVS0fAkM2JyggkKFhcYGRolJicoKSo0NTY3ODk6"
    "Q0RFRkdISUpTVFVWV1hZWmNkZWZnaGlqc3R1dnd4eXqDhIWGh4iJipKTlJWWl5iZmqKjpKWm"
    "p6ipqrKztLW2t7i5usLDxMXGx8jJytLT1NXW19jZ2uHi4+Tl5ufo6erx8vP09fb3+Pn6/8QA"
    "HwEAAwEBAQEBAQEBAQAAAAAAAAECAwQFBgcICQoL/8QAtREAAgECBAQDBAcFBAQAAQJ3AAEC"
    "AxEEBSExBhJBUQdhcRMiMoEIFEKRobHBCSMzUvAVYnLRChYkNOEl8RcYGRomJygpKjU2Nzg5"
    "OkNERUZHSElKU1RVVldYWVpjZGVmZ2hpanN0dXZ3eHl6goOEhYaHiImKkpOUlZaXmJmaoqOk"
    "paanqKmqsrO0tba3uLm6wsPExcbHyMnK0tPU1dbX2Nna4uPk5ebn6Onq8vP09fb3+Pn6/9oA"
    "DAMBAAIRAxEAPwD5qgs/ar8Fn7VpQWftWhDZ+1RGZnhcYZkNn7Vfhs/atOGz9qvwWftW0Zn0"
    "WFxhmwWftV+Cz9q0obP2q/DZ+1bRmfRYXGGbDZ+1X4bP2rThtPar8Fn7VtGZ9DhcYebQ2ftV"
    "+Cz9q04LP2q/BZ+1eDGZ/OOFxhmwWftV+Gz9q0obP2rQhs/atozPosLjDMhs/ar8Fn7VpwWf"
    "tV+Gz9q2jM+hwuMMyCz9q0IbP2rShs/ar8Np7VtGZ9FhcYebw2ftV+Gz9q0obP2rQgs/avBj"
    "M/nHC4wzILP2q/BZ+1acFn7Vfhs/atozPocLjDMhs/atCGz9q0obP2q/BZ+1bRmfRYXGGbBZ"
    "+1X4LP2rThs/ar8Nn7VtGZ9FhcYf/9k=")

# The VP8 bitstream of a 64x48 lossy WebP (from `vips copy g.png g.webp`);
# webp_bytes() wraps it in a RIFF/VP8X container.
SAMPLE_VP8 = base64.b64decode(
    "cAYAnQEqQAAwAD6ROphIMyMioa1IAmASCWQAtkf7xTh6k3RShmff5m1+a5///0YWJrWy6KhL"
    "JWLGS+AAAP7/WIRwqPhYhfApD5Fa9sY/DzhStiCc/Np8sIx+urqTafBR1Y88qTebwiZzau0+"
    "U2aHwMzAx2kSf+WvSfxEtP/c/i4YIVzibazpjJN7/eCGhfIH/Mobc5R+Ty2YfZoey+aSGFdt"
    "YrAlcqS0z2zIKtMyFvhQ4vBgRMSC+AAA")
SAMPLE_W, SAMPLE_H = 64, 48

# 64x48 AVIF (made once with `vips copy g.png g.avif[Q=40,strip,compression=av1]`
# from png_bytes("avif-sample")); avif_bytes() appends a `free` box naming the
# seed (readers skip it).
SAMPLE_AVIF = base64.b64decode(
    "AAAAHGZ0eXBhdmlmAAAAAGF2aWZtaWYxbWlhZgAAAOptZXRhAAAAAAAAACFoZGxyAAAAAAAA"
    "AABwaWN0AAAAAAAAAAAAAAAAAAAAAA5waXRtAAAAAAABAAAAImlsb2MAAAAAREAAAQABAAAA"
    "AAEOAAEAAAAAAAAAhgAAACNpaW5mAAAAAAABAAAAFWluZmUCAAAAAAEAAGF2MDEAAAAAamlw"
    "cnAAAABLaXBjbwAAABNjb2xybmNseAACAAIABoAAAAAMYXYxQ4EADAAAAAAUaXNwZQAAAAAA"
    "AABAAAAAMAAAABBwaXhpAAAAAAMICAgAAAAXaXBtYQAAAAAAAAABAAEEgYIDhAAAAI5tZGF0"
    "EgAKCRgVf72CBAQNCDJ3GYAOOZOFAL4o6vOP9A/eesE25Tz4APfmwj+WoEsDYrnCUuFNBXKm"
    "QiQlsMNwvttzu47uGNil7jPqSAsDNKs3emZWIOfTqDcvapsN9109fcf6b9xjrncktC3SZ/k9"
    "osRsY/ZOcj9a662JjX2F2C3YgtJ4NgBCzpQ=")

FORMATS = {  # fake_format -> (extension, content type)
    "png": ("png", "image/png"),
    "jpeg": ("jpg", "image/jpeg"),
    "webp": ("webp", "image/webp"),
    "avif": ("avif", "image/avif"),
}
EXT_FORMAT = {ext: fmt for fmt, (ext, _) in FORMATS.items()}
PNG_SIG = b"\x89PNG\r\n\x1a\n"
MAX_PIXELS = 100_000_000


def _png_chunk(ctype, data):
    return (struct.pack(">I", len(data)) + ctype + data
            + struct.pack(">I", zlib.crc32(ctype + data) & 0xFFFFFFFF))


def noisy_png_bytes(seed, width, height):
    """A valid RGB PNG that compresses about as badly as a photo (a
    gradient under 5 bits of noise per channel, from SEED): 1024 x 1024
    makes about 2 MB, 4000 x 3000 about 23 MB."""
    rnd = random.Random(seed)
    comp = zlib.compressobj(6)
    out = []
    for y in range(height):
        base = y * 200 // height
        table = bytes(min(255, base + (b & 31)) for b in range(256))
        out.append(comp.compress(b"\0" + rnd.randbytes(width * 3).translate(table)))
    out.append(comp.flush())
    ihdr = struct.pack(">IIBBBBB", width, height, 8, 2, 0, 0, 0)
    return (PNG_SIG + _png_chunk(b"IHDR", ihdr) + _png_chunk(b"IDAT", b"".join(out))
            + _png_chunk(b"IEND", b""))


def png_bytes(seed, width=64, height=48):
    """A valid RGB PNG whose gradient depends on SEED (a string)."""
    d = hashlib.sha256(seed.encode()).digest()
    r0, g0, b0, dx, dy = d[0], d[1], d[2], 1 + d[3] % 7, 1 + d[4] % 7
    ihdr = struct.pack(">IIBBBBB", width, height, 8, 2, 0, 0, 0)
    comp = zlib.compressobj(6)
    out = []
    if width * height <= 1_000_000:
        for y in range(height):
            row = bytearray(1 + 3 * width)
            for x in range(width):
                i = 1 + 3 * x
                row[i] = (r0 + x * dx) & 255
                row[i + 1] = (g0 + y * dy) & 255
                row[i + 2] = (b0 + (x + y) * 2) & 255
            out.append(comp.compress(bytes(row)))
    else:  # large images: vertical gradient only, rows built once each
        for y in range(height):
            row = b"\0" + bytes(((r0 + y) & 255, (g0 + y * dy) & 255, b0)) * width
            out.append(comp.compress(row))
    out.append(comp.flush())
    return (PNG_SIG + _png_chunk(b"IHDR", ihdr) + _png_chunk(b"IDAT", b"".join(out))
            + _png_chunk(b"IEND", b""))


def jpeg_bytes(seed):
    """The sample JPEG with a COM segment naming SEED (unique bytes)."""
    com = ("darkroom fake-replicate " + seed).encode()[:60000]
    return SAMPLE_JPEG[:2] + b"\xff\xfe" + struct.pack(">H", len(com) + 2) + com + SAMPLE_JPEG[2:]


def webp_bytes(seed):
    """The sample VP8 image in an extended (VP8X) WebP with an unknown
    'FKID' chunk naming SEED (readers ignore unknown chunks)."""
    def chunk(fourcc, data):
        return fourcc + struct.pack("<I", len(data)) + data + (b"\0" if len(data) & 1 else b"")
    vp8x = struct.pack("<I", 0) + struct.pack("<I", SAMPLE_W - 1)[:3] + struct.pack("<I", SAMPLE_H - 1)[:3]
    body = b"WEBP" + chunk(b"VP8X", vp8x) + chunk(b"VP8 ", SAMPLE_VP8) + chunk(b"FKID", seed.encode())
    return b"RIFF" + struct.pack("<I", len(body)) + body


def avif_bytes(seed):
    """The sample AVIF with a trailing `free` box naming SEED (the item
    locations are absolute offsets, so appending moves nothing)."""
    data = ("darkroom fake-replicate " + seed).encode()[:60000]
    return SAMPLE_AVIF + struct.pack(">I", len(data) + 8) + b"free" + data


# Hostile files (fake_file): what a provider, or someone posing as one,
# might serve.
FILE_KINDS = ("truncated", "bomb", "svg", "html", "big")
BIG_DEFAULT = 8 << 20  # bytes of a `big` file without fake_size


def bomb_png(width=100000, height=100000):
    """A valid PNG header declaring WIDTH x HEIGHT RGB pixels over a tiny
    IDAT (one zero row, compressed): every CRC is right, only the size
    lies. Decoders that trust the header allocate 30 GB."""
    ihdr = struct.pack(">IIBBBBB", width, height, 8, 2, 0, 0, 0)
    idat = zlib.compress(b"\0" * (1 + 3 * min(width, 1000)))
    return PNG_SIG + _png_chunk(b"IHDR", ihdr) + _png_chunk(b"IDAT", idat) + _png_chunk(b"IEND", b"")


def svg_bytes(seed):
    return ('<?xml version="1.0" encoding="UTF-8"?>\n'
            '<svg xmlns="http://www.w3.org/2000/svg" width="64" height="48">'
            '<script>alert(document.domain)</script>'
            '<rect width="64" height="48" fill="#c00"/><!-- %s --></svg>\n' % seed).encode()


def html_bytes(seed):
    return ('<!DOCTYPE html>\n<html><head><title>not an image</title></head>'
            '<body><script>alert(document.cookie)</script><!-- %s --></body></html>\n' % seed).encode()


def hostile_bytes(kind, fmt, seed, width=None, height=None):
    """The bytes of a fake_file KIND (`big` is the normal image; its size
    comes from sized_body)."""
    if kind == "truncated":
        whole = image_bytes(fmt, seed, width, height)
        return whole[:len(whole) // 2]
    if kind == "bomb":
        return bomb_png()
    if kind == "svg":
        return svg_bytes(seed)
    if kind == "html":
        return html_bytes(seed)
    return image_bytes(fmt, seed, width, height)


_image_cache = {}
_image_cache_lock = threading.Lock()


def image_bytes(fmt, seed, width=None, height=None, noise=False):
    key = (fmt, seed, width, height, noise)
    with _image_cache_lock:
        if key in _image_cache:
            return _image_cache[key]
    if fmt == "png" and noise:
        data = noisy_png_bytes(seed, width or 64, height or 48)
    elif fmt == "png":
        data = png_bytes(seed, width or 64, height or 48)
    elif fmt == "jpeg":
        data = jpeg_bytes(seed)
    elif fmt == "avif":
        data = avif_bytes(seed)
    else:
        data = webp_bytes(seed)
    with _image_cache_lock:
        if len(_image_cache) > 256 or len(data) > 8 << 20:
            _image_cache.clear()  # at most one large image kept
        _image_cache[key] = data
    return data


def sized_body(fmt, base, size):
    """(length, iterator of byte pieces) for a file of exactly SIZE bytes made
    from BASE: truncated when smaller; when larger, a PNG gets a private
    ancillary 'fkPd' chunk of zeros before IEND (still a valid PNG), other
    formats get zero padding after their end."""
    if size is None:
        return len(base), iter([base])
    if size <= len(base):
        return size, iter([base[:size]])
    pad = size - len(base)

    def zeros(n):
        block = b"\0" * 65536
        while n > 0:
            k = min(n, len(block))
            yield block[:k]
            n -= k

    if fmt == "png" and pad >= 12:
        inner = pad - 12

        def gen():
            yield base[:-12]
            yield struct.pack(">I", inner) + b"fkPd"
            crc = zlib.crc32(b"fkPd")
            for piece in zeros(inner):
                crc = zlib.crc32(piece, crc)
                yield piece
            yield struct.pack(">I", crc & 0xFFFFFFFF)
            yield base[-12:]
        return size, gen()

    def gen2():
        yield base
        yield from zeros(pad)
    return size, gen2()


def weights_bytes(seed, size):
    """A training's weights: a tar archive of SIZE bytes (one member of
    deterministic bytes derived from SEED), the same on every download."""
    rng = random.Random(hashlib.sha256(seed.encode()).digest())
    payload_len = size - 512 - 1024 - ((size - 1536) % 512)
    payload = rng.randbytes(payload_len)
    info = tarfile.TarInfo("lora.safetensors")
    info.size = payload_len
    info.mtime = 0
    header = info.tobuf(format=tarfile.USTAR_FORMAT)
    pad = b"\0" * (-payload_len % 512)
    return header + payload + pad + b"\0" * 1024


def data_uri(fmt, seed):
    return "data:%s;base64,%s" % (FORMATS[fmt][1], base64.b64encode(image_bytes(fmt, seed)).decode())


# ---------------------------------------------------------------------------
# Small helpers

ID_ALPHABET = "abcdefghijklmnopqrstuvwxyz234567"
HEX64 = re.compile(r"^[0-9a-f]{64}$")
NAME = r"[A-Za-z0-9][A-Za-z0-9._-]{0,99}"
MODEL_RE = re.compile(r"^(%s)/(%s)$" % (NAME, NAME))
MODEL_VERSION_RE = re.compile(r"^(%s)/(%s):([0-9a-f]{64})$" % (NAME, NAME))
EVENTS = ("start", "output", "logs", "completed")
FINAL = ("succeeded", "failed", "canceled", "aborted")
SHAPES = ("url", "list", "object", "data", "text", "mixed", "none")
OUTCOMES = ("succeeded", "failed", "canceled", "aborted")
TEXT_TOKENS = ["Hello", " world", "!"]
STEPS = 20


def iso_ns(ns):
    """ISO 8601 UTC with nanoseconds: 2026-11-23T10:00:00.123456789Z."""
    if ns is None:
        return None
    sec, frac = divmod(ns, 1_000_000_000)
    return time.strftime("%Y-%m-%dT%H:%M:%S", time.gmtime(sec)) + ".%09dZ" % frac


def new_id(length=26):
    return "".join(secrets.choice(ID_ALPHABET) for _ in range(length))


def parse_duration(text):
    """Seconds of a Cancel-After value: Go-style `10m`, `1h30m`, `5s`,
    `500ms`, `1.5s`, or a bare number of seconds.  ValueError if bad."""
    text = text.strip()
    if not text:
        raise ValueError("empty duration")
    if re.fullmatch(r"\d+(\.\d+)?", text):
        return float(text)
    units = {"h": 3600.0, "m": 60.0, "s": 1.0, "ms": 0.001, "us": 1e-6, "µs": 1e-6, "ns": 1e-9}
    total, pos = 0.0, 0
    for m in re.finditer(r"(\d+(?:\.\d+)?)(ms|us|µs|ns|h|m|s)", text):
        if m.start() != pos:
            raise ValueError("bad duration %r" % text)
        total += float(m.group(1)) * units[m.group(2)]
        pos = m.end()
    if pos != len(text):
        raise ValueError("bad duration %r" % text)
    return total


def mmss(seconds):
    seconds = int(max(0, seconds))
    return "%02d:%02d" % (seconds // 60, seconds % 60)


def progress_line(k, n, elapsed):
    """A tqdm-style line: `  45%|████▌     | 9/20 [00:01<00:01,  8.00it/s]`."""
    frac = k / n
    filled = frac * 10
    full = int(filled)
    bar = "█" * full
    if full < 10:
        part = int((filled - full) * 8)
        bar += " ▏▎▍▌▋▊▉"[part] if part else ""
    bar = bar.ljust(10)
    pct = "%4d%%" % int(frac * 100)
    if k == 0 or elapsed <= 0:
        return "%s|%s| %d/%d [%s<?, ?it/s]" % (pct, bar, k, n, mmss(elapsed))
    rate = k / elapsed
    remaining = (n - k) / rate
    return "%s|%s| %d/%d [%s<%s, %5.2fit/s]" % (pct, bar, k, n, mmss(elapsed), mmss(remaining), rate)


def problem(status, title, detail):
    return {"title": title, "detail": detail, "status": status}


class ApiError(Exception):
    def __init__(self, status, detail, title=None):
        super().__init__(detail)
        self.status = status
        self.detail = detail
        self.title = title or http.client.responses.get(status, "Error")


# ---------------------------------------------------------------------------
# Settings

DEFAULTS = {
    # lifecycle
    "start_delay": 0.2,            # s from create to processing
    "duration": 1.0,               # s of processing
    "file_ttl": 3600.0,            # s after completion until files vanish
    "page_size": 100,              # list page size
    "id_length": 26,               # prediction id length
    "create_status": 201,          # 201 or 202
    "files_base": None,            # base URL of output files (default: this server)
    # API faults (apply to /v1 calls)
    "rate_limit": 0.0,             # P(429)
    "create_rate": 0.0,            # creates/s enforced (GCRA, like Replicate's limit); 0 = none
    "create_burst": 1,             # creates allowed at once under create_rate
    "retry_after": 1,              # s in the 429 body and Retry-After
    "error_rate": 0.0,             # P(5xx)
    "error_codes": [500],          # picked from at random
    "slow": 0.0,                   # s added to every /v1 answer
    "timeout_rate": 0.0,           # P(no answer: sleep timeout_sleep, then close)
    "timeout_sleep": 35.0,
    "fault_endpoints": None,       # list of create/get/cancel/list/secret; None = all
    "fault_budget": None,          # faults left to inject; None = unlimited
    "fault_seed": None,            # an integer: fault draws from a generator seeded
                                   # with it, so the k-th API call gets the k-th draw
    "create_then_fail": 0.0,       # P(create happens, then the answer is lost)
    "create_then_fail_mode": "close",  # "close" (no answer) or an HTTP status (e.g. 500)
    "reject_creates": False,       # true or a detail string: every create 422
    "wait_unfinished": False,      # Prefer: wait answers after ~0.2 s, processing + partial output
    "fetch_inputs": False,         # GET every http(s) URL of a create's input first (as a model
                                   # reading its input image would); a failed fetch fails it
    # file faults
    "wrong_content_type": False,   # true (text/html) or a content type string
    "chunked": False,
    "slow_drip": False,            # true (0.2 s per byte) or seconds per byte
    # webhooks
    "duplicate_webhooks": False,
    "reorder_webhooks": False,
    "delay_webhooks": 0.0,
    "drop_webhooks": 0.0,
    "sign_with": None,             # another whsec_ secret (bad signature)
    "webhook_skew": 0.0,           # s added to webhook-timestamp (signed)
    "webhook_retry_window": 60.0,
    "webhook_timeout": 10.0,
    "intermediate_interval": 0.3,  # min s between intermediate deliveries
    # files held at a gate (input fake_hold) wait at most this long
    "hold_max": 60.0,
    # per model: its predictions fail; its first N creates answer 500
    "fail_models": [],
    "create_errors_for": {},
    # trainings: the models that exist as a destination ("owner/name"),
    # and the size of the weights file a succeeded training outputs
    "models": ["acme/brand-style"],
    "weights_size": 8 * 1024 * 1024,
    "weights_rate": 0,             # bytes/s the weights file is sent at; 0 = full speed
}
PROB_KEYS = {"rate_limit", "error_rate", "timeout_rate", "drop_webhooks", "create_then_fail"}
BOOL_KEYS = {"duplicate_webhooks", "reorder_webhooks", "wait_unfinished", "chunked", "fetch_inputs"}
NUM_KEYS = {"start_delay", "duration", "file_ttl", "slow", "timeout_sleep", "delay_webhooks",
            "webhook_retry_window", "webhook_timeout", "intermediate_interval", "hold_max"}
API_ENDPOINTS = ("create", "get", "cancel", "list", "secret")


def validate_settings(update):
    if not isinstance(update, dict):
        raise ApiError(400, "the control body must be a JSON object")
    for key, val in update.items():
        if key not in DEFAULTS:
            raise ApiError(400, "unknown setting %r (known: %s)" % (key, ", ".join(sorted(DEFAULTS))))
        isnum = isinstance(val, (int, float)) and not isinstance(val, bool)
        if key in PROB_KEYS:
            if not isnum or not 0 <= val <= 1:
                raise ApiError(400, "%s must be a probability 0..1" % key)
        elif key in BOOL_KEYS:
            if not isinstance(val, bool):
                raise ApiError(400, "%s must be true or false" % key)
        elif key in NUM_KEYS:
            if not isnum or val < 0:
                raise ApiError(400, "%s must be a number >= 0" % key)
        elif key == "webhook_skew":
            if not isnum:
                raise ApiError(400, "webhook_skew must be a number")
        elif key in ("page_size", "id_length"):
            if not isinstance(val, int) or isinstance(val, bool) or not 1 <= val <= (1000 if key == "page_size" else 64):
                raise ApiError(400, "%s must be an integer in range" % key)
        elif key == "create_rate":
            if not isnum or val < 0:
                raise ApiError(400, "create_rate must be a number >= 0")
        elif key == "create_burst":
            if not isinstance(val, int) or isinstance(val, bool) or val < 1:
                raise ApiError(400, "create_burst must be an integer >= 1")
        elif key == "retry_after":
            if not isnum or val < 0:
                raise ApiError(400, "retry_after must be a number >= 0")
        elif key == "create_status":
            if val not in (201, 202):
                raise ApiError(400, "create_status must be 201 or 202")
        elif key == "error_codes":
            if (not isinstance(val, list) or not val
                    or not all(isinstance(c, int) and not isinstance(c, bool) and 400 <= c <= 599 for c in val)):
                raise ApiError(400, "error_codes must be a non-empty list of HTTP status codes")
        elif key == "fault_endpoints":
            if val is not None and (not isinstance(val, list) or not all(v in API_ENDPOINTS for v in val)):
                raise ApiError(400, "fault_endpoints must be null or a list of %s" % ", ".join(API_ENDPOINTS))
        elif key == "fault_seed":
            if val is not None and (not isinstance(val, int) or isinstance(val, bool)):
                raise ApiError(400, "fault_seed must be null or an integer")
        elif key == "fault_budget":
            if val is not None and (not isinstance(val, int) or isinstance(val, bool) or val < 0):
                raise ApiError(400, "fault_budget must be null or an integer >= 0")
        elif key == "create_then_fail_mode":
            if val != "close" and not (isinstance(val, int) and not isinstance(val, bool) and 400 <= val <= 599):
                raise ApiError(400, "create_then_fail_mode must be \"close\" or an HTTP status")
        elif key in ("reject_creates", "wrong_content_type"):
            if not isinstance(val, (bool, str)):
                raise ApiError(400, "%s must be a boolean or a string" % key)
        elif key == "slow_drip":
            if not isinstance(val, bool) and not (isnum and val >= 0):
                raise ApiError(400, "slow_drip must be a boolean or seconds per byte")
        elif key == "sign_with":
            if val is not None:
                try:
                    if not isinstance(val, str) or not val.startswith("whsec_") or not secret_key(val):
                        raise ValueError("must be whsec_ followed by base64")
                except ValueError as exc:
                    raise ApiError(400, "sign_with: %s" % exc) from None
        elif key == "fail_models":
            if not isinstance(val, list) or not all(isinstance(m, str) for m in val):
                raise ApiError(400, "fail_models must be a list of model names")
        elif key == "create_errors_for":
            if not isinstance(val, dict) or not all(
                    isinstance(n, int) and not isinstance(n, bool) and n >= 0 for n in val.values()):
                raise ApiError(400, "create_errors_for must map model names to counts >= 0")
        elif key == "models":
            if not isinstance(val, list) or not all(isinstance(m, str) and MODEL_RE.match(m) for m in val):
                raise ApiError(400, "models must be a list of owner/name")
        elif key == "weights_rate":
            if not isinstance(val, (int, float)) or isinstance(val, bool) or val < 0:
                raise ApiError(400, "weights_rate must be a number of bytes per second >= 0")
        elif key == "weights_size":
            if not isinstance(val, int) or isinstance(val, bool) or not 1024 <= val <= 1 << 30:
                raise ApiError(400, "weights_size must be an integer 1024..2^30")
        elif key == "files_base":
            if val is not None and (not isinstance(val, str) or not re.match(r"^https?://[^/]+$", val)):
                raise ApiError(400, "files_base must be null or a base URL like http://localhost:1234")


# ---------------------------------------------------------------------------
# Predictions

class Prediction:
    def __init__(self, fake, pid, model, version, inp, webhook, events, cfg):
        self.id = pid
        self.model = model
        self.version = version
        self.input = inp
        self.webhook = webhook
        self.events = events
        self.job = None
        if webhook:
            q = urllib.parse.parse_qs(urllib.parse.urlsplit(webhook).query)
            self.job = q.get("job", [None])[0]
        self.seq = fake.next_seq()
        self.created_ns = time.time_ns()
        self.created_mono = time.monotonic()
        self.start_delay = cfg["start_delay"]
        self.duration = cfg["duration"]
        self.outcome = cfg["outcome"]
        self.shape = cfg["shape"]
        self.tokens = cfg.get("tokens") or list(TEXT_TOKENS)
        self.fmt = cfg["format"]
        self.size = cfg["size"]
        self.predict_time = cfg["predict_time"]
        self.file_ttl = cfg["file_ttl"]
        self.width, self.height = cfg["width"], cfg["height"]
        self.noise = cfg["noise"]
        self.output_urls = cfg["output_urls"]
        self.file_seed = cfg["seed"]
        self.file_kind = cfg["file"]
        self.hold_gate = cfg["hold"]
        self.hold_index = cfg["hold_index"]
        self.files_base = cfg["files_base"]
        self.api_base = cfg["api_base"]
        self.cancel_after = cfg["cancel_after"]
        self.cancel_deadline = (self.created_mono + cfg["cancel_after_s"]
                                if cfg["cancel_after_s"] is not None else None)
        self.status = "starting"
        self.started_ns = self.started_mono = None
        self.completed_ns = self.completed_mono = None
        self.logs = ""
        self.output = None
        self.error = None
        self.fetch_error = None  # fetch_inputs: why an input URL could not be read
        self.metrics = {}
        self.step = 0
        self.forced = False
        self.seed = int.from_bytes(hashlib.sha256(pid.encode()).digest()[:2], "big")
        # webhook delivery state
        self.pending = set()
        self.last_inter = -1e9
        self.outbox = collections.deque()
        self.held = []
        self.sender = None
        # a training (POST /v1/models/.../versions/.../trainings)
        self.destination = cfg.get("destination")
        self.weights_size = cfg.get("weights_size")
        self.trained = None  # the new version id, made when it succeeds

    @property
    def training(self):
        return self.destination is not None

    def collection(self):
        return "trainings" if self.training else "predictions"

    def weights_url(self):
        return "%s/files/%s/weights.tar" % (self.files_base, self.id)

    # -- outputs
    def file_url(self, n):
        return "%s/files/%s/out-%d.%s" % (self.files_base, self.id, n, FORMATS[self.fmt][0])

    def seed_of(self, n):
        """What output N's bytes derive from: fake_seed when given (equal
        seeds, equal files), else the prediction id."""
        return "%s:%d" % (self.file_seed if self.file_seed is not None else self.id, n)

    def body(self, n):
        """(length, iterator of pieces) of output N's file."""
        seed = self.seed_of(n)
        if self.file_kind is None:
            base = image_bytes(self.fmt, seed, self.width, self.height, self.noise)
        else:
            base = hostile_bytes(self.file_kind, self.fmt, seed, self.width, self.height)
        size = self.size
        if self.file_kind == "big" and size is None:
            size = BIG_DEFAULT
        return sized_body(self.fmt, base, size)

    def data_uri(self, n):
        length, pieces = self.body(n)
        return "data:%s;base64,%s" % (FORMATS[self.fmt][1], base64.b64encode(b"".join(pieces)).decode())

    def file_indexes(self):
        if self.training:
            return []
        if self.output_urls is not None:
            return []
        return {"url": [0], "list": [0, 1], "object": [0], "mixed": [0]}.get(self.shape, [])

    def full_output(self):
        if self.training:
            if self.trained is None:
                self.trained = hashlib.sha256(("trained:" + self.id).encode()).hexdigest()
            if self.input.get("fake_no_version") is True:  # a broken trainer
                return {"weights": self.weights_url()}
            return {"version": "%s:%s" % (self.destination, self.trained), "weights": self.weights_url()}
        if self.output_urls is not None:
            return self.output_urls
        s = self.shape
        if s == "url":
            return self.file_url(0)
        if s == "list":
            return [self.file_url(0), self.file_url(1)]
        if s == "object":
            return {"images": [self.file_url(0)], "meta": {"seed": 1}}
        if s == "data":
            return self.data_uri(0)
        if s == "text":
            return list(self.tokens)
        if s == "mixed":
            return [self.file_url(0), self.data_uri(1)]
        return None

    def partial_output(self, frac):
        """Output while processing.  `forced` (wait_unfinished) makes it at
        least half filled, and single-value shapes then show their value."""
        if self.training:
            return None
        if self.forced:
            frac = max(frac, 0.5)
        full = self.full_output()
        s = self.shape
        if self.output_urls is not None:
            if isinstance(full, list):
                return full[:1] if frac >= 0.5 else None
            return full if self.forced else None
        if s == "text":
            k = min(len(self.tokens) - 1, int(frac * len(self.tokens)))
            k = max(k, 1) if self.forced else k
            return self.tokens[:k] or None
        if s in ("list", "mixed"):
            return full[:1] if frac >= 0.5 else None
        if self.forced:
            if s == "object":
                return {"images": [self.file_url(0)]}
            return full
        return None

    # -- state
    def final(self):
        return self.status in FINAL

    def expired(self, fake, now):
        if self.completed_mono is None:
            return False
        ttl = self.file_ttl if self.file_ttl is not None else fake.settings["file_ttl"]
        return now >= self.completed_mono + ttl

    def public(self, fake, now=None):
        now = time.monotonic() if now is None else now
        removed = self.expired(fake, now)
        coll = self.collection()
        doc = {
            "id": self.id,
            "model": self.model,
            "version": self.version,
            "input": self.input,
            "logs": self.logs,
            "output": None if removed else self.output,
            "data_removed": removed,
            "error": self.error,
            "status": self.status,
            "source": "api",
            "created_at": iso_ns(self.created_ns),
            "started_at": iso_ns(self.started_ns),
            "completed_at": iso_ns(self.completed_ns),
            "urls": {
                "get": "%s/%s/%s" % (self.api_base, coll, self.id),
                "cancel": "%s/%s/%s/cancel" % (self.api_base, coll, self.id),
                "stream": "%s/stream/%s" % (self.api_base, self.id),
                "web": "https://replicate.com/p/%s" % self.id,
            },
            "metrics": dict(self.metrics),
        }
        if self.training:
            doc["destination"] = self.destination
            del doc["urls"]["stream"]
        return doc

    def nominal_start(self):
        return self.created_mono + self.start_delay

    def frac(self, now):
        if self.duration <= 0:
            return 1.0
        return min(1.0, max(0.0, (now - self.nominal_start()) / self.duration))


class Fake:
    def __init__(self, token, secret, host, verbose=False, state_dir=None):
        self.token = token
        self.secret = secret
        self.host = host
        self.port = None
        self.verbose = verbose
        self.state_dir = state_dir
        self.lock = threading.RLock()
        self.cond = threading.Condition(self.lock)
        self.gen = 0
        self._seq = 0
        with self.lock:
            self.reset_locked()

    def reset_locked(self):
        self.gen += 1
        self.settings = json.loads(json.dumps(DEFAULTS))
        self.fault_rng = random.Random()
        self.preds = collections.OrderedDict()
        self.active = set()
        self.creates = []
        self.deliveries = []
        self.downloads = []
        self.input_fetches = []  # fetch_inputs: one entry per URL read
        self.gates_open = set()  # fake_hold gates released by /_release
        self.held = []  # downloads waiting at a gate now
        self.calls = {k: 0 for k in ("create", "get", "cancel", "list", "secret", "429", "500",
                                     "train", "train_get", "train_cancel", "train_list")}
        self.create_tat = 0.0  # create_rate's GCRA (monotonic seconds)
        self.create_calls = []  # epoch seconds of every create call, answered or not
        self.cond.notify_all()

    def next_seq(self):
        self._seq += 1
        return self._seq

    @property
    def base(self):
        return "http://%s:%d" % (self.host, self.port)

    def count(self, key):
        self.calls[key] = self.calls.get(key, 0) + 1

    def log(self, line):
        if self.verbose:
            sys.stderr.write(line + "\n")
            sys.stderr.flush()
        if self.state_dir:
            try:
                with open(os.path.join(self.state_dir, "requests.log"), "a") as f:
                    f.write(line + "\n")
            except OSError:
                pass

    # -- lifecycle (called with the lock held)
    def tick(self, p, now):
        if p.final():
            return
        if p.cancel_deadline is not None and now >= p.cancel_deadline:
            self.finish(p, "aborted" if p.status == "starting" else "canceled", now)
            return
        if p.status == "starting":
            if p.outcome == "aborted":
                if now >= p.nominal_start() + p.duration:
                    self.finish(p, "aborted", now)
                return
            if now < p.nominal_start():
                return
            self.start(p, now)
        # processing
        if now >= p.nominal_start() + p.duration:
            self.finish(p, p.outcome, now)
            return
        self.advance(p, now)
        self.maybe_intermediate(p, now)

    def start(self, p, now):
        p.status = "processing"
        p.started_ns = time.time_ns()
        p.started_mono = now
        p.logs = "Using seed: %d\n%s\n" % (p.seed, progress_line(0, STEPS, 0))
        p.pending.add("logs")
        self.cond.notify_all()

    def advance(self, p, now):
        frac = p.frac(now)
        target = int(frac * STEPS)
        if p.status == "processing" and target >= STEPS and p.outcome != "succeeded":
            target = STEPS - 1
        changed = False
        while p.step < min(target, STEPS):
            p.step += 1
            p.logs += progress_line(p.step, STEPS, now - (p.started_mono or now)) + "\n"
            changed = True
        if changed:
            p.pending.add("logs")
        out = p.partial_output(frac)
        if out != p.output:
            p.output = out
            p.pending.add("output")
            changed = True
        if changed:
            self.cond.notify_all()

    def maybe_intermediate(self, p, now):
        if not p.pending or not p.webhook:
            p.pending.clear()
            return
        if now - p.last_inter < self.settings["intermediate_interval"]:
            return
        event = None
        if "output" in p.pending and "output" in p.events:
            event = "output"
        elif "logs" in p.pending and "logs" in p.events:
            event = "logs"
        elif "output" in p.pending and "logs" in p.events:
            event = "logs"
        p.pending.clear()
        if event:
            p.last_inter = now
            self.enqueue(p, event, now)

    def finish(self, p, status, now):
        if status == "succeeded":
            self.advance(p, max(now, p.nominal_start() + p.duration))
            while p.step < STEPS:
                p.step += 1
                p.logs += progress_line(p.step, STEPS, now - (p.started_mono or now)) + "\n"
            p.output = p.full_output()
        elif status == "failed":
            p.output = None
            p.error = p.fetch_error or "CUDA out of memory"
            p.logs += ("Traceback (most recent call last):\n"
                       "  File \"predict.py\", line 42, in predict\n"
                       "torch.OutOfMemoryError: CUDA out of memory\n")
        elif status == "aborted":
            p.output = None
        p.status = status
        p.completed_ns = time.time_ns()
        p.completed_mono = now
        if p.started_mono is not None:
            pt = p.predict_time if p.predict_time is not None else round(now - p.started_mono, 6)
            p.metrics = {"predict_time": pt}
        p.pending.clear()
        self.active.discard(p.id)
        if p.webhook and "completed" in p.events:
            self.enqueue(p, "completed", now)
        elif p.held:
            self.release_held(p, now)
        self.cond.notify_all()

    def cancel(self, p, now):
        if not p.final():
            self.finish(p, "canceled", now)

    def scheduler(self):
        while True:
            time.sleep(0.02)
            with self.lock:
                if not self.active:
                    self.cond.wait(0.5)  # idle: a create notifies
                now = time.monotonic()
                for pid in list(self.active):
                    p = self.preds.get(pid)
                    if p is None:
                        self.active.discard(pid)
                        continue
                    self.tick(p, now)

    # -- webhooks
    def enqueue(self, p, event, now):
        body = json.dumps(p.public(self, now)).encode()
        d = {"id": "msg_" + "".join(secrets.choice("ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789")
                                    for _ in range(27)),
             "event": event, "body": body,
             "due": now + float(self.settings["delay_webhooks"])}
        if self.settings["reorder_webhooks"] and event != "completed":
            p.held.append(d)
        else:
            p.outbox.append(d)
        if p.sender is None:
            p.sender = threading.Thread(target=self.sender, args=(p, self.gen), daemon=True)
            p.sender.start()
        self.cond.notify_all()

    def release_held(self, p, now):
        for d in p.held:
            d["due"] = now
            p.outbox.append(d)
        p.held = []
        if p.outbox and p.sender is None:
            p.sender = threading.Thread(target=self.sender, args=(p, self.gen), daemon=True)
            p.sender.start()
        self.cond.notify_all()

    def sender(self, p, gen):
        while True:
            with self.lock:
                if self.gen != gen:
                    return
                now = time.monotonic()
                if not p.outbox:
                    if p.final() and p.held:
                        self.release_held(p, now)
                        continue
                    if p.final():
                        p.sender = None
                        return
                    self.cond.wait(0.1)
                    continue
                d = p.outbox[0]
                if d["due"] > now:
                    self.cond.wait(min(0.1, d["due"] - now))
                    continue
                p.outbox.popleft()
            self.deliver(p, d, gen)
            if d["event"] == "completed":
                with self.lock:
                    if p.held:
                        self.release_held(p, time.monotonic())

    def deliver(self, p, d, gen):
        first = time.monotonic()
        attempt = 0
        backoff = 0.5
        while True:
            with self.lock:
                if self.gen != gen:
                    return
                st = dict(self.settings)
            attempt += 1
            if attempt == 1 and st["drop_webhooks"] > 0 and random.random() < st["drop_webhooks"]:
                self.record(p.id, d, attempt, None, None, dropped=True)
                return
            ok = False
            for copy in range(2 if st["duplicate_webhooks"] else 1):
                res = self.post_webhook(p.webhook, d["id"], d["body"], st)
                self.record(p.id, d, attempt, res["status_code"], res.get("error"), duplicate=copy > 0,
                            timestamp=res["timestamp"])
                ok = ok or (res["status_code"] is not None and 200 <= res["status_code"] < 300)
            if ok or d["event"] != "completed":
                return
            if time.monotonic() - first + backoff > float(st["webhook_retry_window"]):
                return
            time.sleep(backoff)
            backoff = min(backoff * 2, 10.0)

    def record(self, pid, d, attempt, status_code, error, dropped=False, duplicate=False, timestamp=None):
        with self.lock:
            self.deliveries.append({
                "prediction": pid, "webhook_id": d["id"], "event": d["event"],
                "status_code": status_code, "at": iso_ns(time.time_ns()), "attempt": attempt,
                "timestamp": timestamp, "error": error, "dropped": dropped, "duplicate": duplicate,
            })

    def post_webhook(self, url, msg_id, body, st, headers_override=None, secret=None, timestamp=None):
        """POST one delivery; never follows redirects.  Returns a dict with
        status_code (None on connection error), error, timestamp, signature."""
        ts = int(time.time() + float(st.get("webhook_skew") or 0)) if timestamp is None else int(timestamp)
        key = secret or st.get("sign_with") or self.secret
        sig = sign(key, msg_id, ts, body)
        headers = {
            "Content-Type": "application/json",
            "User-Agent": "Replicate-Webhooks/fake",
            "webhook-id": msg_id,
            "webhook-timestamp": str(ts),
            "webhook-signature": sig,
        }
        for k, v in (headers_override or {}).items():
            for existing in [h for h in headers if h.lower() == k.lower()]:
                del headers[existing]
            if v is not None:
                headers[k] = str(v)
        res = {"status_code": None, "timestamp": ts, "signature": sig, "webhook_id": msg_id, "error": None,
               "response_body": None}
        try:
            u = urllib.parse.urlsplit(url)
            if u.scheme not in ("http", "https") or not u.hostname:
                raise ValueError("not an http(s) URL: %r" % url)
            cls = http.client.HTTPSConnection if u.scheme == "https" else http.client.HTTPConnection
            kw = {}
            if u.scheme == "https":
                import ssl
                kw["context"] = ssl._create_unverified_context()  # test receivers use self-signed certs
            conn = cls(u.hostname, u.port, timeout=float(st.get("webhook_timeout") or 10), **kw)
            try:
                path = (u.path or "/") + ("?" + u.query if u.query else "")
                conn.request("POST", path, body=body, headers=headers)
                r = conn.getresponse()
                res["status_code"] = r.status
                res["response_body"] = r.read(4096).decode("utf-8", "replace")
            finally:
                conn.close()
        except Exception as exc:  # connection refused, timeout, bad URL ...
            res["error"] = "%s: %s" % (type(exc).__name__, exc)
        return res


# ---------------------------------------------------------------------------
# HTTP

def fetch_input_urls(inp, limit=256 << 20):
    """fetch_inputs: GET every http(s) URL among the input's string values
    (nested too), as a model reading its input files would. Returns the
    list of {"path", "status", "bytes", "sha256", "content_type", "error"}
    (path: the URL without its query, which may hold a signature) and the
    first failure's text, or None."""
    urls = []

    def walk(v):
        if isinstance(v, str) and re.match(r"^https?://", v):
            urls.append(v)
        elif isinstance(v, dict):
            for x in v.values():
                walk(x)
        elif isinstance(v, list):
            for x in v:
                walk(x)

    walk(inp)
    out, error = [], None
    for url in urls:
        u = urllib.parse.urlsplit(url)
        res = {"url": url, "path": u.path, "status": None, "bytes": 0, "sha256": None,
               "content_type": None, "error": None}
        try:
            conn_cls = http.client.HTTPSConnection if u.scheme == "https" else http.client.HTTPConnection
            conn = conn_cls(u.netloc, timeout=30)
            try:
                conn.request("GET", u.path + ("?" + u.query if u.query else ""))
                r = conn.getresponse()
                h = hashlib.sha256()
                n = 0
                while True:
                    chunk = r.read(1 << 16)
                    if not chunk:
                        break
                    n += len(chunk)
                    if n > limit:
                        raise ValueError("over %d bytes" % limit)
                    h.update(chunk)
                res.update(status=r.status, bytes=n, sha256=h.hexdigest(),
                           content_type=r.getheader("Content-Type"))
            finally:
                conn.close()
            if res["status"] != 200:
                res["error"] = "HTTP %d" % res["status"]
        except Exception as exc:  # connection refused, timeout, bad URL ...
            res["error"] = "%s: %s" % (type(exc).__name__, exc)
        if res["error"] and not error:
            error = "could not read input %s: %s" % (u.path, res["error"])
        out.append(res)
    return out, error


def read_steering(inp, settings):
    """Per-prediction settings from the input's fake_* fields (422 if bad)."""
    def num(key, default, lo=0.0, hi=None):
        v = inp.get(key, default)
        if v is default:
            return v
        if not isinstance(v, (int, float)) or isinstance(v, bool) or v < lo or (hi is not None and v > hi):
            raise ApiError(422, "input.%s must be a number >= %s" % (key, lo))
        return float(v)

    def choice(key, options, default):
        v = inp.get(key, default)
        if v not in options:
            raise ApiError(422, "input.%s must be one of %s" % (key, ", ".join(options)))
        return v

    cfg = {
        "outcome": choice("fake_outcome", OUTCOMES, "succeeded"),
        "shape": choice("fake_output", SHAPES, "url"),
        "format": choice("fake_format", tuple(FORMATS), "png"),
        "duration": num("fake_duration", settings["duration"]),
        "start_delay": num("fake_start_delay", settings["start_delay"]),
        "predict_time": num("fake_predict_time", None),
        "file_ttl": num("fake_file_ttl", None),
        "size": None, "width": None, "height": None, "noise": False, "output_urls": None,
        "seed": None, "file": None, "hold": None, "hold_index": None,
    }
    size = inp.get("fake_size")
    if size is not None:
        if not isinstance(size, int) or isinstance(size, bool) or not 0 <= size <= 1 << 40:
            raise ApiError(422, "input.fake_size must be an integer number of bytes")
        cfg["size"] = size
    for k in ("width", "height"):
        v = inp.get("fake_" + k)
        if v is not None:
            if not isinstance(v, int) or isinstance(v, bool) or not 1 <= v <= 65535:
                raise ApiError(422, "input.fake_%s must be an integer 1..65535" % k)
            cfg[k] = v
    if (cfg["width"] or 64) * (cfg["height"] or 48) > MAX_PIXELS:
        raise ApiError(422, "input.fake_width x fake_height is over %d pixels" % MAX_PIXELS)
    noise = inp.get("fake_noise")
    if noise is not None:
        if not isinstance(noise, bool):
            raise ApiError(422, "input.fake_noise must be a boolean")
        cfg["noise"] = noise
    if (cfg["width"] or cfg["height"] or cfg["noise"]) and cfg["format"] != "png":
        raise ApiError(422, "input.fake_width/fake_height need fake_format png")
    seed = inp.get("fake_seed")
    if seed is not None:
        if isinstance(seed, bool) or not isinstance(seed, (str, int)) or not 1 <= len(str(seed)) <= 200:
            raise ApiError(422, "input.fake_seed must be a string (1..200 characters) or an integer")
        cfg["seed"] = str(seed)
    kind = inp.get("fake_file")
    if kind is not None:
        if kind not in FILE_KINDS:
            raise ApiError(422, "input.fake_file must be one of %s" % ", ".join(FILE_KINDS))
        cfg["file"] = kind
    urls = inp.get("fake_output_urls")
    if urls is not None:
        if not (isinstance(urls, str) or (isinstance(urls, list) and all(isinstance(u, str) for u in urls))):
            raise ApiError(422, "input.fake_output_urls must be a string or a list of strings")
        cfg["output_urls"] = urls
    hold = inp.get("fake_hold")
    if hold is not None:
        if not isinstance(hold, str) or not 1 <= len(hold) <= 100:
            raise ApiError(422, "input.fake_hold must be a gate name (1..100 characters)")
        cfg["hold"] = hold
    text = inp.get("fake_text")
    if text is not None:
        if not isinstance(text, str) or not 1 <= len(text) <= 100000:
            raise ApiError(422, "input.fake_text must be a string (1..100000 characters)")
        # A language model's stream: words, each with the space before it.
        cfg["tokens"] = re.findall(r"\s*\S+|\s+$", text) or [text]
    idx = inp.get("fake_hold_index")
    if idx is not None:
        if not isinstance(idx, int) or isinstance(idx, bool) or idx < 0:
            raise ApiError(422, "input.fake_hold_index must be an output index (integer >= 0)")
        cfg["hold_index"] = idx
    return cfg


class FakeServer(ThreadingHTTPServer):
    daemon_threads = True
    allow_reuse_address = True
    request_queue_size = 512  # the default 5 resets connections under bursts


class Handler(BaseHTTPRequestHandler):
    protocol_version = "HTTP/1.1"
    server_version = "fake-replicate/1.0"
    # Headers and body go out in separate writes; with Nagle on, the body
    # waits for the client's delayed ACK (40 ms on Linux) on every answer
    # of a kept-alive connection, a stall no real API server has.
    disable_nagle_algorithm = True
    fake = None  # set on the class by main()

    # quiet default logging; one line per request with --verbose
    def log_message(self, fmt, *args):
        pass

    def log_request(self, code="-", size="-"):
        self.fake.log("%s %s %s %s" % (time.strftime("%H:%M:%S"), getattr(self, "command", None),
                                       getattr(self, "path", None), code))

    def send_error(self, code, message=None, explain=None):
        # Used by BaseHTTPRequestHandler for malformed requests: answer JSON.
        try:
            self.close_connection = True
            self.request_version = "HTTP/1.1"  # else an unparsable line gets a bare body
            self.respond(code, problem(code, http.client.responses.get(code, "Error"),
                                       message or "bad request"),
                         ctype="application/problem+json", extra={"Connection": "close"})
        except Exception:
            pass

    def do_GET(self):
        self.dispatch()

    def do_POST(self):
        self.dispatch()

    def do_HEAD(self):
        self.dispatch()

    def do_PUT(self):
        self.dispatch()

    def do_DELETE(self):
        self.dispatch()

    def do_PATCH(self):
        self.dispatch()

    # -- plumbing
    def respond(self, status, obj=None, ctype="application/json", extra=None, raw=None):
        body = raw if raw is not None else (b"" if obj is None else json.dumps(obj).encode())
        self.send_response(status)
        self.send_header("Content-Type", ctype)
        self.send_header("Content-Length", str(len(body)))
        for k, v in (extra or {}).items():
            self.send_header(k, v)
        self.end_headers()
        self.headers_sent = True
        if self.command != "HEAD":
            self.wfile.write(body)

    def fail(self, status, detail, title=None, extra=None):
        self.respond(status, problem(status, title or http.client.responses.get(status, "Error"), detail),
                     ctype="application/problem+json", extra=extra)

    def read_body(self):
        te = (self.headers.get("Transfer-Encoding") or "").lower()
        limit = 10 << 20
        if "chunked" in te:
            data = b""
            while True:
                line = self.rfile.readline(1024)
                try:
                    n = int(line.split(b";")[0].strip(), 16)
                except ValueError:
                    raise ApiError(400, "bad chunked request body") from None
                if n == 0:
                    while self.rfile.readline(1024) not in (b"\r\n", b"\n", b""):
                        pass
                    return data
                data += self.rfile.read(n)
                self.rfile.readline(1024)
                if len(data) > limit:
                    raise ApiError(413, "request body over 10 MiB")
        try:
            n = int(self.headers.get("Content-Length") or 0)
        except ValueError:
            raise ApiError(400, "bad Content-Length") from None
        if n > limit:
            self.close_connection = True
            raise ApiError(413, "request body over 10 MiB")
        return self.rfile.read(n) if n > 0 else b""

    def json_body(self, raw, required=True):
        if not raw.strip():
            if required:
                raise ApiError(400, "a JSON body is required")
            return {}
        try:
            return json.loads(raw)
        except (ValueError, UnicodeDecodeError) as exc:
            raise ApiError(400, "malformed JSON: %s" % exc) from None

    def dispatch(self):
        self.headers_sent = False
        code = "-"
        try:
            u = urllib.parse.urlsplit(self.path)
            self.query = urllib.parse.parse_qs(u.query)
            path = u.path
            raw = self.read_body()
            if path == "/v1" or path.startswith("/v1/"):
                self.api(path[3:], raw)
            elif path.startswith("/files/"):
                self.files(path)
            elif path.startswith("/_"):
                self.control(path, raw)
            else:
                raise ApiError(404, "no such path: %s" % path)
        except ApiError as exc:
            if not self.headers_sent:
                extra = {"Connection": "close"} if self.close_connection else None
                self.fail(exc.status, exc.detail, exc.title, extra)
        except (BrokenPipeError, ConnectionResetError, TimeoutError):
            self.close_connection = True
        except Exception as exc:
            traceback.print_exc(file=sys.stderr)
            self.close_connection = True
            if not self.headers_sent:
                try:
                    self.fail(500, "internal error in the fake: %s" % type(exc).__name__)
                except Exception:
                    pass

    # -- /v1
    def api(self, path, raw):
        fake = self.fake
        method, p = self.command, path.rstrip("/") or "/"
        route, args = None, ()
        if method == "POST" and p == "/predictions":
            route = "create"
            args = ("version", None, None)
        elif method == "POST" and re.fullmatch(r"/(models|deployments)/[^/]+/[^/]+/predictions", p):
            parts = p.split("/")
            route = "create"
            args = ("model" if parts[1] == "models" else "deployment",
                    urllib.parse.unquote(parts[2]), urllib.parse.unquote(parts[3]))
        elif method in ("GET", "HEAD") and p == "/predictions":
            route = "list"
        elif method in ("GET", "HEAD") and re.fullmatch(r"/predictions/[^/]+", p):
            route, args = "get", (urllib.parse.unquote(p.split("/")[2]),)
        elif method == "POST" and re.fullmatch(r"/predictions/[^/]+/cancel", p):
            route, args = "cancel", (urllib.parse.unquote(p.split("/")[2]),)
        elif method in ("GET", "HEAD") and p == "/webhooks/default/secret":
            route = "secret"
        elif method == "POST" and re.fullmatch(r"/models/[^/]+/[^/]+/versions/[^/]+/trainings", p):
            parts = p.split("/")
            route = "train"
            args = tuple(urllib.parse.unquote(x) for x in (parts[2], parts[3], parts[5]))
        elif method in ("GET", "HEAD") and p == "/trainings":
            route = "train_list"
        elif method in ("GET", "HEAD") and re.fullmatch(r"/trainings/[^/]+", p):
            route, args = "train_get", (urllib.parse.unquote(p.split("/")[2]),)
        elif method == "POST" and re.fullmatch(r"/trainings/[^/]+/cancel", p):
            route, args = "train_cancel", (urllib.parse.unquote(p.split("/")[2]),)

        auth = self.headers.get("Authorization") or ""
        if not hmac.compare_digest(auth.encode(), ("Bearer " + fake.token).encode()):
            with fake.lock:
                fake.count("401")
            raise ApiError(401, "You did not pass a valid authentication token", "Unauthenticated")
        if route is None:
            if re.fullmatch(r"/(predictions|models|deployments|webhooks|trainings)(/.*)?", p):
                raise ApiError(405 if method not in ("GET", "POST") else 404,
                               "no such endpoint: %s /v1%s" % (method, p))
            raise ApiError(404, "no such endpoint: %s /v1%s" % (method, p))

        with fake.lock:
            fake.count(route)
            if route == "create":
                fake.create_calls.append(time.time())
            st = dict(fake.settings)
        if st["slow"]:
            time.sleep(float(st["slow"]))
        fault = self.over_create_rate(st) if route == "create" else None
        if fault is None:
            fault = self.pick_fault(route, st)
        if fault == "timeout":
            time.sleep(float(st["timeout_sleep"]))
            self.close_connection = True
            self.headers_sent = True  # nothing is sent
            return
        if fault == "429":
            ra = st["retry_after"]
            ra_txt = ("%d" % ra) if float(ra).is_integer() else ("%g" % ra)
            self.respond(429, {"detail": "Request was throttled. Expected available in %s second%s."
                               % (ra_txt, "" if ra == 1 else "s"), "status": 429, "retry_after": ra},
                         ctype="application/problem+json", extra={"Retry-After": str(int(-(-ra // 1)))})
            return
        if isinstance(fault, int):
            if fault in (502, 503, 504):
                html = ("<html><head><title>%d %s</title></head><body><h1>%d %s</h1></body></html>"
                        % (fault, http.client.responses.get(fault, ""), fault,
                           http.client.responses.get(fault, ""))).encode()
                self.respond(fault, raw=html, ctype="text/html")
            else:
                self.fail(fault, "injected fault")
            return

        if route == "create":
            self.create(raw, st, *args)
        elif route == "train":
            self.create(raw, st, "training", args[0], (args[1], args[2]))
        elif route in ("get", "train_get"):
            with fake.lock:
                p = fake.preds.get(args[0])
                if p is None or p.training != (route == "train_get"):
                    raise ApiError(404, "%s not found" % ("Training" if route == "train_get" else "Prediction"),
                                   "Not found")
                out = p.public(fake)
            self.respond(200, out)
        elif route == "train_list":
            self.list_predictions(st, training=True)
        elif route in ("cancel", "train_cancel"):
            with fake.lock:
                p = fake.preds.get(args[0])
                if p is None or p.training != (route == "train_cancel"):
                    raise ApiError(404, "Prediction not found", "Not found")
                fake.cancel(p, time.monotonic())
                out = p.public(fake)
            self.respond(200, out)
        elif route == "list":
            self.list_predictions(st)
        elif route == "secret":
            self.respond(200, {"key": fake.secret})

    def over_create_rate(self, st):
        """create_rate: a GCRA over creates; over the limit, a 429 whose
        retry_after says when the next create is allowed (counted as
        "429" and "create_429")."""
        rate = float(st["create_rate"])
        if rate <= 0:
            return None
        fake = self.fake
        t = 1.0 / rate
        tau = (int(st["create_burst"]) - 1) * t
        with fake.lock:
            now = time.monotonic()
            tat = max(fake.create_tat, now)
            if tat - tau > now:
                fake.count("429")
                fake.count("create_429")
                wait = tat - tau - now
                st["retry_after"] = max(1, int(-(-wait // 1)))
                return "429"
            fake.create_tat = tat + t
        return None

    def pick_fault(self, route, st):
        fake = self.fake
        eps = st["fault_endpoints"]
        if eps is not None and route not in eps:
            return None
        fault = None
        with fake.lock:  # one call's draws in a row (fault_seed)
            rng = fake.fault_rng
            if st["timeout_rate"] and rng.random() < st["timeout_rate"]:
                fault = "timeout"
            elif st["rate_limit"] and rng.random() < st["rate_limit"]:
                fault = "429"
            elif st["error_rate"] and rng.random() < st["error_rate"]:
                fault = rng.choice(st["error_codes"])
        if fault is None:
            return None
        with fake.lock:
            budget = fake.settings["fault_budget"]
            if budget is not None:
                if budget <= 0:
                    return None
                fake.settings["fault_budget"] = budget - 1
            fake.count(str(fault))
        return fault

    def parse_prefer_wait(self):
        prefer = self.headers.get("Prefer")
        if not prefer:
            return None
        for tok in re.split(r"[,;]", prefer):
            tok = tok.strip()
            if tok == "wait":
                return 60
            if tok.startswith("wait="):
                try:
                    n = int(tok[5:].strip().strip('"'))
                except ValueError:
                    raise ApiError(422, "Prefer: wait must be an integer 1..60") from None
                if not 1 <= n <= 60:
                    raise ApiError(422, "Prefer: wait must be between 1 and 60 seconds")
                return n
        return None

    def create(self, raw, st, kind, owner, name):
        fake = self.fake
        body = self.json_body(raw)
        if not isinstance(body, dict):
            raise ApiError(422, "the request body must be a JSON object")
        if st["reject_creates"]:
            detail = st["reject_creates"] if isinstance(st["reject_creates"], str) else "- input: invalid input (injected)"
            raise ApiError(422, detail, "Input validation failed")
        destination = None
        if kind == "training":
            owner, name, tversion = owner, name[0], name[1]
            if not HEX64.match(tversion):
                raise ApiError(404, "The requested trainer version does not exist", "Not found")
            model, version = "%s/%s" % (owner, name), tversion
            destination = body.get("destination")
            if not isinstance(destination, str) or not MODEL_RE.match(destination):
                raise ApiError(422, "- destination: must be owner/name", "Invalid destination")
            if destination not in st["models"]:
                raise ApiError(404, "The specified training destination does not exist: %s" % destination,
                               "Not found")
        elif kind == "version":
            v = body.get("version")
            if not isinstance(v, str) or not v:
                raise ApiError(422, "- version: version is required", "Invalid version")
            if HEX64.match(v):
                model, version = "fake/model-%s" % v[:8], v
            elif MODEL_VERSION_RE.match(v):
                mm = MODEL_VERSION_RE.match(v)
                model, version = "%s/%s" % (mm.group(1), mm.group(2)), mm.group(3)
            elif MODEL_RE.match(v):
                model, version = v, hashlib.sha256(v.encode()).hexdigest()
            else:
                raise ApiError(422, "- version: %r is not owner/name, owner/name:<64 hex> or a 64-hex version id"
                               % v[:200], "Invalid version")
        else:
            if not re.fullmatch(NAME, owner) or not re.fullmatch(NAME, name):
                raise ApiError(422, "invalid %s name %s/%s" % (kind, owner[:100], name[:100]))
            model = "%s/%s" % (owner, name)
            version = hashlib.sha256(model.encode()).hexdigest()
        if "input" not in body:
            raise ApiError(422, "- input: input is required", "Input validation failed")
        inp = body["input"]
        if not isinstance(inp, dict):
            raise ApiError(422, "- input: input must be an object", "Input validation failed")
        webhook = body.get("webhook")
        if webhook is not None:
            if not isinstance(webhook, str) or not re.match(r"^https?://[^/\s]+", webhook):
                raise ApiError(422, "- webhook: must be an http(s) URL")
        events = body.get("webhook_events_filter")
        if events is None:
            events = list(EVENTS)
        elif not isinstance(events, list) or not all(e in EVENTS for e in events):
            raise ApiError(422, "- webhook_events_filter: values must be among %s" % ", ".join(EVENTS))
        cfg = read_steering(inp, st)
        if model in st["fail_models"]:
            cfg["outcome"] = "failed"
        with fake.lock:
            left = fake.settings["create_errors_for"].get(model, 0)
            if left > 0:
                fake.settings["create_errors_for"][model] = left - 1
                fake.count("create_errors_for")
        if left > 0:
            raise ApiError(500, "injected create error for %s" % model, "Internal Server Error")
        fetched, fetch_error = fetch_input_urls(inp) if st["fetch_inputs"] else ([], None)
        if fetch_error:
            cfg["outcome"] = "failed"
        cancel_after = self.headers.get("Cancel-After")
        cfg["cancel_after"] = cancel_after
        cfg["cancel_after_s"] = None
        if cancel_after is not None:
            try:
                cfg["cancel_after_s"] = parse_duration(cancel_after)
            except ValueError:
                raise ApiError(422, "Cancel-After: %r is not a duration like 10m or 30s" % cancel_after[:100]) from None
        wait = self.parse_prefer_wait()
        cfg["files_base"] = st["files_base"] or fake.base
        cfg["api_base"] = fake.base + "/v1"
        cfg["destination"] = destination
        cfg["weights_size"] = st["weights_size"]

        with fake.lock:
            pid = new_id(fake.settings["id_length"])
            while pid in fake.preds:
                pid = new_id(fake.settings["id_length"])
            p = Prediction(fake, pid, model, version, inp, webhook, set(events), cfg)
            p.fetch_error = fetch_error
            for f in fetched:
                f["prediction"] = pid
                fake.input_fetches.append(f)
            fake.preds[pid] = p
            fake.active.add(pid)
            fake.cond.notify_all()
            fake.creates.append({"id": pid, "job": p.job, "at": iso_ns(p.created_ns),
                                 "endpoint": kind, "model": model})
            if p.webhook and "start" in p.events:
                fake.enqueue(p, "start", time.monotonic())
            # create_then_fail: the prediction exists, but the answer is lost
            lost = False
            if st["create_then_fail"] and random.random() < st["create_then_fail"]:
                budget = fake.settings["fault_budget"]
                if budget is None or budget > 0:
                    if budget is not None:
                        fake.settings["fault_budget"] = budget - 1
                    lost = True
                    fake.count("create_then_fail")
        if lost:
            mode = st["create_then_fail_mode"]
            if mode == "close":
                self.close_connection = True
                self.headers_sent = True
                return
            self.fail(mode, "injected fault after the prediction was created")
            return

        if wait is not None:
            deadline = time.monotonic() + wait
            with fake.lock:
                if st["wait_unfinished"]:
                    short = time.monotonic() + min(0.2, wait)
                    while not p.final() and time.monotonic() < short:
                        fake.cond.wait(max(0.0, short - time.monotonic()))
                    if not p.final():
                        now = time.monotonic()
                        if p.status == "starting" and p.outcome != "aborted":
                            fake.start(p, now)
                        if p.status == "processing":
                            p.forced = True
                            fake.advance(p, now)
                else:
                    while not p.final() and time.monotonic() < deadline:
                        fake.cond.wait(min(0.5, max(0.0, deadline - time.monotonic())))
        with fake.lock:
            out = p.public(fake)
        self.respond(st["create_status"], out)

    def list_predictions(self, st, training=False):
        fake = self.fake
        cursor = (self.query.get("cursor") or [None])[0]
        before = None
        if cursor:
            try:
                before = int(base64.urlsafe_b64decode(cursor + "=" * (-len(cursor) % 4)).decode().split(":")[1])
            except Exception:
                raise ApiError(400, "invalid cursor") from None
        with fake.lock:
            items = [p for p in reversed(fake.preds.values())
                     if (before is None or p.seq < before) and p.training == training]
            page = items[:st["page_size"]]
            nxt = None
            if len(items) > len(page):
                c = base64.urlsafe_b64encode(("s:%d" % page[-1].seq).encode()).decode().rstrip("=")
                nxt = "%s/v1/%s?cursor=%s" % (fake.base, "trainings" if training else "predictions", c)
            now = time.monotonic()
            out = {"next": nxt, "previous": None, "results": [p.public(fake, now) for p in page]}
        self.respond(200, out)

    # -- /files
    def weights(self, path):
        """GET /files/<training id>/weights.tar: a succeeded training's
        weights (weights_bytes), sent in 64 KiB pieces."""
        fake = self.fake
        tid = path.split("/")[2]
        with fake.lock:
            fake.count("download")
            rec = {"path": path, "auth": self.headers.get("Authorization") is not None,
                   "at": iso_ns(time.time_ns()), "status": 404}
            fake.downloads.append(rec)
            p = fake.preds.get(tid)
            if p is None or not p.training or p.status != "succeeded" or p.expired(fake, time.monotonic()):
                raise ApiError(404, "file not found or expired")
            rec["status"] = 200
            rate = float(fake.settings["weights_rate"])
        data = weights_bytes(p.id, p.weights_size)
        self.send_response(200)
        self.send_header("Content-Type", "application/x-tar")
        self.send_header("Content-Length", str(len(data)))
        self.end_headers()
        self.headers_sent = True
        if self.command == "HEAD":
            return
        for off in range(0, len(data), 65536):
            self.wfile.write(data[off:off + 65536])
            if rate > 0:
                self.wfile.flush()
                time.sleep(65536 / rate)
        self.wfile.flush()

    def files(self, path):
        fake = self.fake
        if re.fullmatch(r"/files/[^/]+/weights\.tar", path):
            return self.weights(path)
        m = re.fullmatch(r"/files/([^/]+)/out-(\d+)\.([a-z]+)", path)
        if self.command not in ("GET", "HEAD"):
            raise ApiError(405, "files answer GET and HEAD only")
        with fake.lock:
            fake.count("download")
            rec = {"path": path, "auth": self.headers.get("Authorization") is not None,
                   "at": iso_ns(time.time_ns()), "status": 404}
            fake.downloads.append(rec)
            p = fake.preds.get(m.group(1)) if m else None
            n = int(m.group(2)) if m else -1
            ok = (p is not None and m.group(3) in EXT_FORMAT and EXT_FORMAT[m.group(3)] == p.fmt
                  and n in p.file_indexes() and not p.expired(fake, time.monotonic()))
            st = dict(fake.settings)
            if not ok:
                raise ApiError(404, "file not found or expired")
            rec["status"] = 200
            fmt = p.fmt
            gate = p.hold_gate if p.hold_index in (None, n) else None
        if gate is not None:
            self.hold(gate, path, st)
        length, pieces = p.body(n)
        ctype = FORMATS[fmt][1]
        if st["wrong_content_type"]:
            ctype = st["wrong_content_type"] if isinstance(st["wrong_content_type"], str) else "text/html; charset=utf-8"
        chunked = bool(st["chunked"])
        drip = st["slow_drip"]
        drip = 0.2 if drip is True else float(drip or 0)
        self.send_response(200)
        self.send_header("Content-Type", ctype)
        if chunked:
            self.send_header("Transfer-Encoding", "chunked")
        else:
            self.send_header("Content-Length", str(length))
        self.send_header("Cache-Control", "public, max-age=3600")
        self.end_headers()
        self.headers_sent = True
        if self.command == "HEAD":
            return
        w = self.wfile
        for piece in pieces:
            if drip:
                for i in range(len(piece)):
                    b = piece[i:i + 1]
                    w.write(b"1\r\n" + b + b"\r\n" if chunked else b)
                    w.flush()
                    time.sleep(drip)
                continue
            for off in range(0, len(piece), 16384):
                part = piece[off:off + 16384]
                if chunked:
                    w.write(b"%x\r\n" % len(part) + part + b"\r\n")
                else:
                    w.write(part)
        if chunked:
            w.write(b"0\r\n\r\n")
        w.flush()

    def hold(self, gate, path, st):
        """Wait, before answering, until GATE is released (POST /_release),
        the fake is reset, or hold_max seconds pass."""
        fake = self.fake
        with fake.cond:
            gen = fake.gen
            entry = {"path": path, "gate": gate, "since": iso_ns(time.time_ns())}
            fake.held.append(entry)
            deadline = time.monotonic() + float(st["hold_max"])
            while gate not in fake.gates_open and fake.gen == gen:
                left = deadline - time.monotonic()
                if left <= 0:
                    break
                fake.cond.wait(left)
            if fake.gen == gen:
                fake.held.remove(entry)

    # -- control
    def control(self, path, raw):
        fake = self.fake
        method = self.command
        if path == "/_control" and method == "POST":
            update = self.json_body(raw)
            validate_settings(update)
            with fake.lock:
                fake.settings.update(update)
                if update.get("fault_seed") is not None:
                    fake.fault_rng.seed(update["fault_seed"])
                out = dict(fake.settings)
            self.respond(200, out)
        elif path == "/_control" and method == "GET":
            with fake.lock:
                out = dict(fake.settings)
            self.respond(200, out)
        elif path == "/_reset" and method == "POST":
            with fake.lock:
                fake.reset_locked()
            self.respond(200, {"ok": True})
        elif path == "/_state" and method in ("GET", "HEAD"):
            with fake.lock:
                out = json.dumps(self.state()).encode()
            self.respond(200, raw=out)
        elif path == "/_send_webhook" and method == "POST":
            self.send_webhook(self.json_body(raw))
        elif path == "/_redirect":
            to = (self.query.get("to") or [None])[0]
            if not to:
                raise ApiError(400, "/_redirect needs ?to=URL")
            code = int((self.query.get("code") or ["302"])[0])
            if code not in (301, 302, 303, 307, 308):
                raise ApiError(400, "code must be a redirect status")
            self.respond(code, raw=b"", extra={"Location": to})
        elif path == "/_release" and method == "POST":
            req = self.json_body(raw)
            gate = req.get("gate") if isinstance(req, dict) else None
            if not isinstance(gate, str) or not gate:
                raise ApiError(400, "/_release needs {\"gate\": NAME}")
            with fake.cond:
                waiting = sum(1 for h in fake.held if h["gate"] == gate)
                fake.gates_open.add(gate)
                fake.cond.notify_all()
            self.respond(200, {"gate": gate, "released": waiting})
        elif path == "/_health":
            self.respond(200, {"ok": True})
        else:
            raise ApiError(404, "no such control path: %s %s" % (method, path))

    def state(self):
        fake = self.fake
        now = time.monotonic()
        per_job = collections.Counter(c["job"] for c in fake.creates if c["job"] is not None)
        preds = {}
        for p in fake.preds.values():
            d = p.public(fake, now)
            d.update({
                "webhook": p.webhook,
                "webhook_events_filter": sorted(p.events, key=EVENTS.index),
                "job": p.job,
                "creates_for_job": per_job.get(p.job, 0) if p.job else None,
                "cancel_after": p.cancel_after,
                "files": [p.file_url(n) for n in p.file_indexes()],
                "training": p.training,
                "weights_sha256": (hashlib.sha256(weights_bytes(p.id, p.weights_size)).hexdigest()
                                   if p.training and p.status == "succeeded" else None),
                "fake": {"outcome": p.outcome, "output": p.shape, "format": p.fmt, "duration": p.duration,
                         "start_delay": p.start_delay, "size": p.size, "seed": p.file_seed,
                         "file": p.file_kind, "hold": p.hold_gate, "hold_index": p.hold_index},
            })
            preds[p.id] = d
        return {"predictions": preds, "creates": list(fake.creates), "create_calls": list(fake.create_calls), "webhook_deliveries": list(fake.deliveries),
                "downloads": list(fake.downloads), "input_fetches": list(fake.input_fetches),
                "calls": dict(fake.calls), "settings": dict(fake.settings),
                "held": [dict(h) for h in fake.held], "gates_open": sorted(fake.gates_open),
                "secret": fake.secret}

    def send_webhook(self, req):
        fake = self.fake
        if not isinstance(req, dict):
            raise ApiError(400, "the body must be a JSON object")
        pid = req.get("prediction")
        event = req.get("event", "completed")
        if event not in EVENTS:
            raise ApiError(400, "event must be one of %s" % ", ".join(EVENTS))
        headers = req.get("headers") or {}
        if not isinstance(headers, dict):
            raise ApiError(400, "headers must be an object")
        secret = req.get("secret")
        if secret is not None:
            try:
                secret_key(secret)
            except ValueError as exc:
                raise ApiError(400, "secret: %s" % exc) from None
        ts = req.get("timestamp")
        if ts is not None and (not isinstance(ts, (int, float)) or isinstance(ts, bool)):
            raise ApiError(400, "timestamp must be an integer")
        with fake.lock:
            p = fake.preds.get(pid) if isinstance(pid, str) else None
            st = dict(fake.settings)
            if "body_raw" in req:
                if not isinstance(req["body_raw"], str):
                    raise ApiError(400, "body_raw must be a string")
                body = req["body_raw"].encode()
            elif "body" in req:
                body = json.dumps(req["body"]).encode()
            elif p is not None:
                body = json.dumps(p.public(fake)).encode()
            else:
                raise ApiError(404, "unknown prediction %r and no body given" % (pid,))
            to = req.get("to") or (p.webhook if p else None)
        if not isinstance(to, str) or not to:
            raise ApiError(400, "no webhook URL: give \"to\" or use a prediction created with a webhook")
        msg_id = req.get("id") or ("msg_" + secrets.token_hex(12))
        if not isinstance(msg_id, str):
            raise ApiError(400, "id must be a string")
        res = fake.post_webhook(to, msg_id, body, st, headers, secret=secret, timestamp=ts)
        fake.record(pid if isinstance(pid, str) else None, {"id": msg_id, "event": event}, 1,
                    res["status_code"], res["error"], timestamp=res["timestamp"])
        self.respond(200, res)


# ---------------------------------------------------------------------------
# Self-test

def self_test():
    results = []

    def check(name, cond):
        results.append((name, bool(cond)))
        print(("ok   " if cond else "FAIL ") + name)

    sec = "whsec_MfKQ9r8GKYqrTwjUPD8ILPZIo2LaLaSw"
    mid, ts, body = "msg_p5jXN8AQM9LWM0D4loKWxJek", 1614265330, b'{"test": 2432232314}'
    want = "v1,g0hM9SsE+OTPJTGt/tmIKtSyZlE3uFJELVlNIOLJ1OE="
    check("reference vector signature", sign(sec, mid, ts, body) == want)
    w = weights_bytes("t1", 8 * 1024 * 1024)
    check("weights: 8 MiB, the same every time", len(w) == 8 * 1024 * 1024 and w == weights_bytes("t1", len(w)))
    import io
    with tarfile.open(fileobj=io.BytesIO(w)) as tf:
        members = tf.getmembers()
    check("weights: a tar of one member", [m.name for m in members] == ["lora.safetensors"])
    check("weights: another size is a tar too", len(weights_bytes("t2", 5000)) % 512 == 0)
    hdr = {"webhook-id": mid, "webhook-timestamp": str(ts), "webhook-signature": want}
    check("verify accepts the vector", verify(sec, hdr, body, now=ts))
    check("verify rejects the vector with last char A",
          not verify(sec, dict(hdr, **{"webhook-signature": want[:-1] + "A"}), body, now=ts))
    check("verify accepts one good v1 among others",
          verify(sec, dict(hdr, **{"webhook-signature": "v2,abc v1,AAAA " + want}), body, now=ts))
    check("verify rejects a changed body", not verify(sec, hdr, body + b" ", now=ts))
    check("verify rejects a timestamp 301 s off", not verify(sec, hdr, body, now=ts + 301))
    check("verify accepts a timestamp 299 s off", verify(sec, hdr, body, now=ts - 299))
    s2 = new_secret()
    check("generated secret has 24 key bytes", s2.startswith("whsec_") and len(secret_key(s2)) == 24)

    def png_ok(data):
        if not data.startswith(PNG_SIG):
            return False
        i, idat, w = 8, b"", None
        while i < len(data):
            n = struct.unpack(">I", data[i:i + 4])[0]
            t, d = data[i + 4:i + 8], data[i + 8:i + 8 + n]
            if struct.unpack(">I", data[i + 8 + n:i + 12 + n])[0] != zlib.crc32(t + d) & 0xFFFFFFFF:
                return False
            if t == b"IHDR":
                w, h = struct.unpack(">II", d[:8])
            elif t == b"IDAT":
                idat += d
            elif t == b"IEND":
                return i + 12 + n == len(data) and len(zlib.decompress(idat)) == h * (1 + 3 * w)
            i += 12 + n
        return False

    a, b = png_bytes("p1:0"), png_bytes("p2:0")
    check("PNG is valid (CRCs, IDAT size)", png_ok(a))
    check("PNGs differ by seed", a != b)
    check("large PNG (2000x2500) is valid", png_ok(png_bytes("x", 2000, 2500)))
    n, pieces = sized_body("png", a, 100000)
    padded = b"".join(pieces)
    check("padded PNG has the exact size and stays valid", n == len(padded) == 100000 and png_ok(padded))
    n, pieces = sized_body("png", a, 100)
    check("fake_size below the image truncates", n == 100 and b"".join(pieces) == a[:100])
    j = jpeg_bytes("abc")
    check("JPEG: SOI, COM, EOI", j[:4] == b"\xff\xd8\xff\xfe" and j.endswith(b"\xff\xd9") and b"abc" in j)
    wb = webp_bytes("abc")
    check("WebP: RIFF size matches", wb[:4] == b"RIFF" and struct.unpack("<I", wb[4:8])[0] == len(wb) - 8
          and wb[8:16] == b"WEBPVP8X")
    check("data URI", data_uri("png", "q").startswith("data:image/png;base64,iVBOR"))
    av = avif_bytes("abc")
    check("AVIF: ftyp avif, seed box at the end", av[4:12] == b"ftypavif" and av.endswith(b"abc")
          and av != avif_bytes("abd"))

    def crcs_ok(data):
        i = 8
        while i < len(data):
            n = struct.unpack(">I", data[i:i + 4])[0]
            t, d = data[i + 4:i + 8], data[i + 8:i + 8 + n]
            if struct.unpack(">I", data[i + 8 + n:i + 12 + n])[0] != zlib.crc32(t + d) & 0xFFFFFFFF:
                return False
            i += 12 + n
        return i == len(data)

    bomb = hostile_bytes("bomb", "png", "s")
    check("bomb PNG: 100000x100000 in IHDR, CRCs right, tiny",
          bomb[:8] == PNG_SIG and struct.unpack(">II", bomb[16:24]) == (100000, 100000)
          and crcs_ok(bomb) and len(bomb) < 200)
    whole = image_bytes("png", "s")
    check("truncated PNG: the first half of the image",
          hostile_bytes("truncated", "png", "s") == whole[:len(whole) // 2])
    check("svg and html kinds", hostile_bytes("svg", "png", "s").startswith(b"<?xml")
          and b"<svg" in hostile_bytes("svg", "png", "s")
          and hostile_bytes("html", "png", "s").startswith(b"<!DOCTYPE html>"))
    check("ISO 8601 with nanoseconds",
          iso_ns(1795428000123456789) == "2026-11-23T10:00:00.123456789Z")
    check("id: 26 chars of lowercase base32", re.fullmatch(r"[a-z2-7]{26}", new_id()))
    check("durations", parse_duration("10m") == 600 and parse_duration("1h30m") == 5400
          and parse_duration("500ms") == 0.5 and parse_duration("5") == 5)
    try:
        parse_duration("ten minutes")
        bad = False
    except ValueError:
        bad = True
    check("bad duration refused", bad)
    check("progress line", progress_line(9, 20, 1.125) == "  45%|████▌     | 9/20 [00:01<00:01,  8.00it/s]")
    import shutil
    import subprocess
    import tempfile
    if shutil.which("vipsheader"):
        with tempfile.TemporaryDirectory() as d:
            for ext, data in (("png", padded), ("jpg", j), ("webp", wb), ("avif", av)):
                fn = os.path.join(d, "t." + ext)
                with open(fn, "wb") as f:
                    f.write(data)
                r = subprocess.run(["vips", "avg", fn + "[fail_on=warning]"], capture_output=True, text=True)
                check("libvips decodes the %s" % ext, r.returncode == 0)
    passed = sum(1 for _, ok in results if ok)
    failed = len(results) - passed
    print("%d passed, %d failed" % (passed, failed))
    return 0 if failed == 0 else 1


# ---------------------------------------------------------------------------

def main(argv=None):
    ap = argparse.ArgumentParser(description="Fake Replicate API server for darkroom's tests.")
    ap.add_argument("--port", type=int, default=0, help="port (0: pick a free one)")
    ap.add_argument("--host", default="127.0.0.1")
    ap.add_argument("--token", default=DEFAULT_TOKEN, help="accepted API token (default r8_fake)")
    ap.add_argument("--secret", help="webhook secret whsec_... (default: random)")
    ap.add_argument("--state-dir", help="write port, url, secret, token, pid and requests.log here")
    ap.add_argument("--verbose", action="store_true", help="log one line per request to stderr")
    ap.add_argument("--self-test", action="store_true", help="check signing and file generation, then exit")
    a = ap.parse_args(argv)
    if a.self_test:
        return self_test()
    secret = a.secret or new_secret()
    try:
        if not secret.startswith("whsec_") or not secret_key(secret):
            raise ValueError("must be whsec_ followed by base64")
    except ValueError as exc:
        ap.error("--secret: %s" % exc)
    if a.state_dir:
        os.makedirs(a.state_dir, exist_ok=True)
    fake = Fake(a.token, secret, a.host, a.verbose, a.state_dir)
    Handler.fake = fake
    try:
        httpd = FakeServer((a.host, a.port), Handler)
    except OSError as exc:
        print("fake-replicate: cannot listen on %s:%d: %s" % (a.host, a.port, exc.strerror or exc), file=sys.stderr)
        return 2
    fake.port = httpd.server_address[1]
    threading.Thread(target=fake.scheduler, daemon=True).start()

    def stop(signum, frame):
        threading.Thread(target=httpd.shutdown, daemon=True).start()
    signal.signal(signal.SIGTERM, stop)
    signal.signal(signal.SIGINT, stop)

    if a.state_dir:
        for name, val in (("port", fake.port), ("url", fake.base), ("secret", secret),
                          ("token", a.token), ("pid", os.getpid())):
            with open(os.path.join(a.state_dir, name), "w") as f:
                f.write("%s\n" % val)
    print("fake-replicate listening on %s" % fake.base, flush=True)
    try:
        httpd.serve_forever(poll_interval=0.2)
    finally:
        httpd.server_close()
    return 0


if __name__ == "__main__":
    sys.exit(main())
