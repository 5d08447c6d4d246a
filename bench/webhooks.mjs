#!/usr/bin/env node
// Webhook and callback benchmark (issue 4's figures), run by hand:
//
//   node bench/webhooks.mjs [--joiners 1000] [--records 100000] [--runs 3]
//
// 1. HR joiner latency: POST /api/v1/identities -> the signed
//    identity.created webhook verified (npm standardwebhooks) by a receiver
//    on loopback; p50/p95/p99 over --joiners sequential joiners.
// 2. A --records CSV sync through the API, without a callback_url and with
//    one whose receiver takes 5 s per request; median of --runs each.
// Needs a build (scripts/build) and npm ci. Prints a Markdown table.
import { spawn, spawnSync } from 'node:child_process';
import fs from 'node:fs';
import http from 'node:http';
import os from 'node:os';
import path from 'node:path';
import { fileURLToPath } from 'node:url';
import { parseArgs } from 'node:util';
import { Webhook } from 'standardwebhooks';

const ROOT = path.resolve(path.dirname(fileURLToPath(import.meta.url)), '..');
const BIN = path.join(ROOT, 'build/dispatcher/idsync-dispatcher');
const { values: args } = parseArgs({
  options: {
    joiners: { type: 'string', default: '1000' },
    records: { type: 'string', default: '100000' },
    runs: { type: 'string', default: '3' },
  },
});
const JOINERS = Number(args.joiners);
const RECORDS = Number(args.records);
const RUNS = Number(args.runs);

const dir = fs.mkdtempSync(path.join(os.tmpdir(), 'idsync-bench-webhooks-'));
const db = path.join(dir, 'idsync.db');

function freePort() {
  return new Promise((resolve) => {
    const s = http.createServer().listen(0, '127.0.0.1', () => {
      const { port } = s.address();
      s.close(() => resolve(port));
    });
  });
}

// The receiver: verifies each delivery and resolves whoever waits for an id.
let verifier = null;
let slowMs = 0;
const waiters = new Map();  // external_id -> resolve(receivedAtNs)
let verified = 0;
const receiver = http.createServer((req, res) => {
  let body = '';
  req.on('data', (c) => { body += c; });
  req.on('end', () => {
    const at = process.hrtime.bigint();
    if (verifier) {
      verifier.verify(body, req.headers);  // Throws on a bad signature.
      verified++;
      const msg = JSON.parse(body);
      for (const item of msg?.data?.items ?? []) {
        const w = waiters.get(item.external_id);
        if (w) { waiters.delete(item.external_id); w(at); }
      }
    }
    setTimeout(() => { res.writeHead(200); res.end(); }, slowMs);
  });
});
await new Promise((r) => receiver.listen(0, '127.0.0.1', r));
const receiverUrl = `http://127.0.0.1:${receiver.address().port}`;

const boot = spawnSync(BIN, ['bootstrap', '--tenant', 'bench', '--db', db]);
if (boot.status !== 0) throw new Error(`bootstrap: ${boot.stderr}`);
const token = boot.stdout.toString().trim();
const port = await freePort();
const dispatcher = spawn(BIN, ['serve', '--db', db, '--http-listen',
  `127.0.0.1:${port}`, '--grpc-listen', '127.0.0.1:0',
  '--allow-private-callbacks', '--metrics-listen', '', '--rate-limit', '100000',
  '--rate-burst', '100000'], { stdio: 'ignore' });
const base = `http://127.0.0.1:${port}`;
async function api(method, p, body, headers = {}) {
  const r = await fetch(base + p, {
    method,
    headers: { authorization: `Bearer ${token}`,
      'content-type': 'application/json', ...headers },
    body: body === undefined ? undefined : JSON.stringify(body),
  });
  const text = await r.text();
  if (r.status >= 300) throw new Error(`${method} ${p}: ${r.status} ${text}`);
  return JSON.parse(text);
}
for (let i = 0; ; i++) {
  try { await fetch(`${base}/health`); break; } catch (e) {
    if (i > 200) throw e;
    await new Promise((r) => setTimeout(r, 50));
  }
}

function pct(sorted, p) {
  return sorted[Math.min(sorted.length - 1, Math.floor(sorted.length * p))];
}
const median = (xs) => [...xs].sort((a, b) => a - b)[Math.floor(xs.length / 2)];

// 1. Joiner latency.
const hook = await api('POST', '/api/v1/webhooks',
  { url: `${receiverUrl}/hooks`, event_types: ['identity.created'] });
verifier = new Webhook(hook.secret);
const latencies = [];
for (let i = 0; i < JOINERS; i++) {
  const id = `bench-${i}`;
  const arrived = new Promise((r) => waiters.set(id, r));
  const t0 = process.hrtime.bigint();
  await api('POST', '/api/v1/identities', { external_id: id,
    email: `${id}@example.com`, first_name: 'B', last_name: 'J' },
  { 'idempotency-key': id });
  const at = await arrived;
  latencies.push(Number(at - t0) / 1e6);
}
latencies.sort((a, b) => a - b);
await api('DELETE', `/api/v1/webhooks/${hook.webhook.id}`);

// 2. Sync duration with and without a slow callback receiver.
const csv = path.join(dir, 'hr.csv');
const lines = ['external_id,email,first_name,last_name,department'];
for (let i = 0; i < RECORDS; i++) {
  lines.push(`E${i},e${i}@example.com,F${i},L${i},D${i % 10}`);
}
fs.writeFileSync(csv, lines.join('\n') + '\n');
const callbackSecret = (await api('GET', '/api/v1/callback-secret')).secret;
verifier = new Webhook(callbackSecret);
async function syncSeconds(name, callback) {
  const c = await api('POST', '/api/v1/connectors',
    { business_id: name, type: 'csv', config: { path: csv } });
  const t0 = process.hrtime.bigint();
  const run = await api('POST', `/api/v1/connectors/${c.id}/sync`,
    callback ? { callback_url: `${receiverUrl}/progress` } : {});
  for (;;) {
    const r = await api('GET', `/api/v1/sync-runs/${run.id}`);
    if (r.status !== 'running') {
      if (r.status !== 'succeeded') throw new Error(JSON.stringify(r));
      return Number(process.hrtime.bigint() - t0) / 1e9;
    }
    await new Promise((res) => setTimeout(res, 10));
  }
}
const plain = [];
const slow = [];
for (let i = 0; i < RUNS; i++) {
  slowMs = 0;
  plain.push(await syncSeconds(`plain${i}`, false));
  slowMs = 5000;
  slow.push(await syncSeconds(`slow${i}`, true));
}
slowMs = 0;

console.log(`| measure | value |
|---|---|
| joiner latency p50 (POST -> verified webhook), ${JOINERS} joiners | ${pct(latencies, 0.5).toFixed(1)} ms |
| joiner latency p95 | ${pct(latencies, 0.95).toFixed(1)} ms |
| joiner latency p99 | ${pct(latencies, 0.99).toFixed(1)} ms |
| ${RECORDS} CSV sync via API, no callback (median of ${RUNS}) | ${median(plain).toFixed(2)} s (${plain.map((x) => x.toFixed(2)).join(', ')}) |
| same, callback receiver taking 5 s per request | ${median(slow).toFixed(2)} s (${slow.map((x) => x.toFixed(2)).join(', ')}) |
| ratio slow / no callback | ${(median(slow) / median(plain)).toFixed(3)} |
| deliveries verified | ${verified} |`);
dispatcher.kill('SIGKILL');
receiver.close();
receiver.closeAllConnections?.();
fs.rmSync(dir, { recursive: true, force: true });
process.exit(0);
