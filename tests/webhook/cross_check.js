#!/usr/bin/env node
// tests/webhook/cross_check.js — core/webhook.c against an independent
// implementation of Standard Webhooks, npm `standardwebhooks` (installed
// into the repository's node_modules/ by tests/lib/npm-deps.sh).
//
// For each random case (secret, id, timestamp, body — unicode included):
//   a. standardwebhooks signs; `wh_tool verify` (webhook_verify) must
//      accept the delivery, also with decoy entries around the signature,
//      and must reject it once one thing is changed;
//   b. `wh_tool sign` (webhook_sign) signs; the signature must be the very
//      text standardwebhooks produces, standardwebhooks must accept it, and
//      must reject it once one thing is changed.
// Each of these four checks counts once. Ends with "N passed, N failed";
// exits 1 on any failure, 2 when it cannot run at all.
//
// Knobs: DARKROOM_BUILD_DIR or BUILD (where tests/webhook/wh_tool is built,
// default build/), WH_CROSS_CASES (default 200), WH_CROSS_SEED (the random
// seed, printed at the start so a failure can be replayed).
"use strict";

const path = require("path");
const fs = require("fs");
const { spawnSync } = require("child_process");

const ROOT = path.resolve(__dirname, "..", "..");
const build = process.env.DARKROOM_BUILD_DIR || process.env.BUILD || "build";
const TOOL = path.resolve(ROOT, build, "tests", "webhook", "wh_tool");
const CASES = Number(process.env.WH_CROSS_CASES || 200);
const SEED = Number(process.env.WH_CROSS_SEED || Math.floor(Math.random() * 2 ** 31));
const TOLERANCE = 300;

let Webhook;
try {
    ({ Webhook } = require("standardwebhooks"));
} catch (e) {
    console.log(`cross_check: cannot load standardwebhooks (run tests/lib/npm-deps.sh): ${e.message}`);
    console.log("0 passed, 1 failed");
    process.exit(2);
}
if (!fs.existsSync(TOOL)) {
    console.log(`cross_check: ${TOOL} is not built`);
    console.log("0 passed, 1 failed");
    process.exit(2);
}

// mulberry32: a small seeded generator, so a case can be replayed.
let state = SEED >>> 0;
function rand() {
    state = (state + 0x6d2b79f5) >>> 0;
    let t = state;
    t = Math.imul(t ^ (t >>> 15), t | 1);
    t ^= t + Math.imul(t ^ (t >>> 7), t | 61);
    return ((t ^ (t >>> 14)) >>> 0) / 4294967296;
}
const randInt = (lo, hi) => lo + Math.floor(rand() * (hi - lo + 1));
const pick = (list) => list[randInt(0, list.length - 1)];

function randBytes(n) {
    const b = Buffer.alloc(n);
    for (let i = 0; i < n; i++) b[i] = randInt(0, 255);
    return b;
}

// Pieces of text a body is made of: ASCII, JSON syntax, Latin-1, Greek,
// CJK, combining marks, right-to-left, astral emoji (surrogate pairs),
// control characters and NUL.
const PIECES = [
    () => String.fromCharCode(randInt(0x20, 0x7e)),
    () => pick(['{"', '": ', ", ", "}", "[", "]", "\\", '"', "null", "true", "0.5e-3"]),
    () => String.fromCharCode(randInt(0xa0, 0xff)),
    () => String.fromCharCode(randInt(0x391, 0x3c9)),
    () => String.fromCharCode(randInt(0x4e00, 0x9fff)),
    () => "e\u0301",
    () => String.fromCharCode(randInt(0x5d0, 0x5ea)),
    () => String.fromCodePoint(randInt(0x1f300, 0x1faff)),
    () => String.fromCodePoint(randInt(0x10000, 0x10ffff)),
    () => pick(["\n", "\r\n", "\t", "\u0000", "\u007f", "\u2028", "\ufeff"]),
];

function randBody() {
    const shape = randInt(0, 9);
    if (shape === 0) return "";
    if (shape === 1)
        return JSON.stringify({ id: `p_${randInt(0, 1e9)}`, status: "succeeded", output: ["https://replicate.delivery/x.png"], logs: "héllo 世界 🎉" });
    const n = shape === 2 ? randInt(2000, 20000) : randInt(1, 300);
    let s = "";
    while (s.length < n) s += pick(PIECES)();
    return s;
}

function randId() {
    const alphabet = "ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789_-";
    const n = rand() < 0.05 ? 256 - 4 : randInt(1, 40);
    let s = "msg_";
    for (let i = 0; i < n; i++) s += alphabet[randInt(0, alphabet.length - 1)];
    return s;
}

function randSecret() {
    const key = randBytes(pick([24, 32, randInt(1, 64), randInt(1, 256)]));
    return (rand() < 0.8 ? "whsec_" : "") + key.toString("base64");
}

// One thing changed: the body, the id, the timestamp or the secret.
function tamper(c) {
    const t = { ...c };
    switch (randInt(0, 3)) {
    case 0:
        t.body = c.body.length > 0 && rand() < 0.5 ? c.body.slice(0, -1) : c.body + " ";
        t.what = "body";
        break;
    case 1:
        t.id = c.id.slice(0, -1) + (c.id.endsWith("x") ? "y" : "x");
        t.what = "id";
        break;
    case 2:
        t.ts = c.ts + 1;
        t.what = "timestamp";
        break;
    default:
        t.secret = randSecret();
        t.what = "secret";
        break;
    }
    return t;
}

function run(args, input) {
    return spawnSync(TOOL, args, { input, maxBuffer: 1 << 20 });
}

// webhook_verify through wh_tool: "accepted", "rejected" or an error text.
function cVerify(secrets, headers, body, receivedAt) {
    const req = {
        headers,
        body_b64: Buffer.from(body, "utf8").toString("base64"),
        received_at: receivedAt,
    };
    const r = run(["verify", ...secrets], JSON.stringify(req));
    if (r.status === 0) return "accepted";
    if (r.status === 1) return "rejected";
    return `error (status ${r.status}, signal ${r.signal}): ${String(r.stderr).trim()}`;
}

// webhook_sign through wh_tool: the signature, or throws.
function cSign(secret, id, ts, body) {
    const r = run(["sign", secret, id, String(ts)], Buffer.from(body, "utf8"));
    if (r.status !== 0)
        throw new Error(`wh_tool sign: status ${r.status}, signal ${r.signal}: ${String(r.stderr).trim()}`);
    return String(r.stdout).trim();
}

const jsSign = (c) => new Webhook(c.secret).sign(c.id, new Date(c.ts * 1000), c.body);

function jsVerify(c, sig) {
    const headers = { "webhook-id": c.id, "webhook-timestamp": String(c.ts), "webhook-signature": sig };
    try {
        new Webhook(c.secret).verify(c.body, headers, { jsonParse: false });
        return "accepted";
    } catch (e) {
        return e.name === "WebhookVerificationError" ? "rejected" : `error: ${e.message}`;
    }
}

let passed = 0;
let failed = 0;
function check(ok, caseNo, what, detail) {
    if (ok) {
        passed++;
    } else {
        failed++;
        console.log(`FAIL case ${caseNo}: ${what}: ${detail}`);
    }
}

console.log(`cross_check: ${CASES} cases, seed ${SEED}, ${TOOL}`);
for (let i = 0; i < CASES; i++) {
    const now = Math.floor(Date.now() / 1000);
    const c = { secret: randSecret(), id: randId(), ts: now + randInt(-250, 250), body: randBody() };
    const label = `id ${c.id.slice(0, 24)} ts ${c.ts} body ${Buffer.byteLength(c.body)} bytes`;
    const headers = (t, sig) => ({ "webhook-id": t.id, "webhook-timestamp": String(t.ts), "webhook-signature": sig });

    // a. standardwebhooks signs, webhook_verify checks.
    try {
        const sig = jsSign(c);
        const other = new Webhook(randSecret()).sign(c.id, new Date(c.ts * 1000), c.body);
        const header = pick([sig, `${other} ${sig}`, `v2,${sig.slice(3)} ${sig}`, `${sig} v1a,xyz`]);
        const got = cVerify([c.secret], headers(c, header), c.body, now);
        check(got === "accepted", i, "webhook_verify of a standardwebhooks signature", `${got} (${label}, header ${header})`);

        const t = tamper(c);
        const tsig = t.what === "secret" ? jsSign(t) : sig;
        const bad = cVerify([c.secret], headers(t, tsig), t.body, now);
        check(bad === "rejected", i, `webhook_verify with the ${t.what} changed`, `${bad} (${label})`);
    } catch (e) {
        check(false, i, "signing with standardwebhooks", e.message);
    }

    // b. webhook_sign signs, standardwebhooks checks.
    try {
        const sig = cSign(c.secret, c.id, c.ts, c.body);
        const want = jsSign(c);
        const got = jsVerify(c, sig);
        check(sig === want && got === "accepted", i, "standardwebhooks check of webhook_sign",
            `wh_tool ${sig}, standardwebhooks ${want}, verify ${got} (${label})`);

        const t = tamper(c);
        const tsig = t.what === "secret" ? cSign(t.secret, c.id, c.ts, c.body) : sig;
        const bad = jsVerify({ ...t, secret: c.secret }, tsig);
        check(bad === "rejected", i, `standardwebhooks check of webhook_sign with the ${t.what} changed`, `${bad} (${label})`);
    } catch (e) {
        check(false, i, "webhook_sign", e.message);
    }
}

console.log(`${passed} passed, ${failed} failed`);
process.exit(failed === 0 ? 0 : 1);
