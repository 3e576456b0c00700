#!/usr/bin/env node
// tests/webhook/verify_delivery.js — check deliveries darkroom sent (client
// callbacks) with an independent implementation of Standard Webhooks, npm
// `standardwebhooks` (installed into the repository's node_modules/ by
// tests/lib/npm-deps.sh).
//
// Reads one JSON document on stdin:
//   {"secret": "whsec_…", "deliveries": [{"headers": {name: value},
//     "body_b64": "<the raw body, base64>"}, …]}
// and writes one JSON document on stdout: {"results": [{"ok": true,
// "payload": <what Webhook.verify returned>} | {"ok": false, "error":
// "<message>"}, …]}, one per delivery, in order. Exits 2 when it cannot
// run at all (no standardwebhooks, unreadable input).
"use strict";

let Webhook;
try {
    ({ Webhook } = require("standardwebhooks"));
} catch (e) {
    process.stderr.write(`verify_delivery: cannot load standardwebhooks (run tests/lib/npm-deps.sh): ${e.message}\n`);
    process.exit(2);
}

const chunks = [];
process.stdin.on("data", (c) => chunks.push(c));
process.stdin.on("end", () => {
    let input;
    try {
        input = JSON.parse(Buffer.concat(chunks).toString("utf8"));
    } catch (e) {
        process.stderr.write(`verify_delivery: input is not JSON: ${e.message}\n`);
        process.exit(2);
    }
    const wh = new Webhook(input.secret);
    const results = input.deliveries.map((d) => {
        const headers = {};
        for (const [k, v] of Object.entries(d.headers)) headers[k.toLowerCase()] = v;
        try {
            // The raw body as text: what a receiver hands verify().
            const body = Buffer.from(d.body_b64, "base64").toString("utf8");
            return { ok: true, payload: wh.verify(body, headers) };
        } catch (e) {
            return { ok: false, error: String(e && e.message ? e.message : e) };
        }
    });
    process.stdout.write(JSON.stringify({ results }) + "\n");
});
