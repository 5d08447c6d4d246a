#!/usr/bin/env node
// A real webhook receiver for testing idsync's webhook and progress-callback
// delivery (README.md beside this file is the contract):
//
//   node receiver.mjs [--secret whsec_...] [--verify-now SECONDS]
//        [--fail N] [--fail-status S] [--retry-after V] [--hang]
//        [--slow-ms MS] [--gone] [--status S] [--redirect URL]
//
// Every request outside /__control/ is recorded; a POST is an event delivery
// whose Standard Webhooks signature (webhook-id, webhook-timestamp,
// webhook-signature) is checked by the `standardwebhooks` npm package, an
// implementation independent of idsync's, and then answered per the current
// behaviour. Listens on 127.0.0.1, an ephemeral port, prints one line
// {"port":N} when ready, and serves until killed or, if stdin is a pipe,
// until stdin closes. /__control/* (no auth) sets the secret and behaviour
// and reports what was received.
import fs from 'node:fs';
import http from 'node:http';
import { parseArgs } from 'node:util';
import { Webhook } from 'standardwebhooks';

class BadRequest extends Error {}

const DEFAULT_BEHAVIOUR = Object.freeze({
  fail: 0,
  fail_status: 500,
  retry_after: null,
  hang: false,
  slow_ms: 0,
  gone: false,
  status: 200,
  redirect: null,
});

// Checks a behaviour object (the JSON of POST /__control/behaviour) and
// returns it complete, with the defaults for absent members. Throws
// BadRequest on unknown members or bad values.
function parseBehaviour(obj) {
  if (obj === null || typeof obj !== 'object' || Array.isArray(obj)) {
    throw new BadRequest('behaviour must be a JSON object');
  }
  const b = { ...DEFAULT_BEHAVIOUR };
  const int = (k, v, lo, hi) => {
    if (!Number.isInteger(v) || v < lo || v > hi) throw new BadRequest(`"${k}" must be an integer in [${lo}, ${hi}]`);
    return v;
  };
  const bool = (k, v) => {
    if (typeof v !== 'boolean') throw new BadRequest(`"${k}" must be true or false`);
    return v;
  };
  for (const [k, v] of Object.entries(obj)) {
    if (k === 'fail') b.fail = int(k, v, 0, 1e9);
    else if (k === 'fail_status') b.fail_status = int(k, v, 200, 599);
    else if (k === 'status') b.status = int(k, v, 200, 599);
    else if (k === 'slow_ms') b.slow_ms = int(k, v, 0, 3600000);
    else if (k === 'hang') b.hang = bool(k, v);
    else if (k === 'gone') b.gone = bool(k, v);
    else if (k === 'retry_after') {
      if (v !== null && typeof v !== 'string' && !Number.isInteger(v)) {
        throw new BadRequest('"retry_after" must be a string, an integer or null');
      }
      b.retry_after = v === null ? null : String(v);
    } else if (k === 'redirect') {
      if (v !== null && (typeof v !== 'string' || v === '')) throw new BadRequest('"redirect" must be a URL or null');
      b.redirect = v;
    } else throw new BadRequest(`unknown behaviour "${k}"`);
  }
  return b;
}

// Throws BadRequest unless the standardwebhooks package accepts `secret`.
function makeWebhook(secret) {
  if (typeof secret !== 'string') throw new BadRequest('"secret" must be a string or null');
  try {
    return new Webhook(secret);
  } catch (e) {
    throw new BadRequest(`bad secret: ${e.message}`);
  }
}

class Receiver {
  constructor() {
    this.secret = null;
    this.webhook = null;
    this.verifyNow = null;  // Unix seconds the verifier takes as now, or null.
    this.behaviour = { ...DEFAULT_BEHAVIOUR };
    this.events = [];
    this.seq = 0;
    this.attempts = new Map();  // webhook-id -> attempts so far.
    this.hanging = [];  // Deliveries held by `hang`, in arrival order.
    this.waiters = new Set();  // Open GET /__control/wait requests.
  }

  setSecret(secret) {
    this.webhook = secret === null ? null : makeWebhook(secret);
    this.secret = secret;
  }

  setBehaviour(b) {
    this.behaviour = b;
    // Held deliveries are answered per the new behaviour, oldest first (they
    // stay held if it is `hang` again).
    for (const d of this.hanging.splice(0)) this.dispatch(d);
  }

  delivered() {
    return this.events.filter((e) => e.status !== null && e.status >= 200 && e.status <= 299);
  }

  reset() {
    const cleared = this.events.length;
    this.events = [];
    this.seq = 0;
    this.attempts.clear();
    return cleared;
  }

  // Webhook.verify() with the package's own clock check (±5 minutes of
  // Date.now(), or of verifyNow when set), plus the bare HMAC comparison
  // (Webhook.sign() of the header timestamp; no clock involved).
  verify(text, headers) {
    if (!this.webhook) return { signature_valid: false, hmac_valid: false, verify_error: 'no secret set' };
    const h = {
      'webhook-id': headers['webhook-id'],
      'webhook-timestamp': headers['webhook-timestamp'],
      'webhook-signature': headers['webhook-signature'],
    };
    let verifyError = null;
    const realNow = Date.now;
    try {
      if (this.verifyNow !== null) {
        const fixed = this.verifyNow * 1000;
        Date.now = () => fixed;
      }
      this.webhook.verify(text, h, { jsonParse: false });
    } catch (e) {
      verifyError = e.message;
    } finally {
      Date.now = realNow;
    }
    let hmacValid = false;
    const ts = parseInt(h['webhook-timestamp'] ?? '', 10);
    if (h['webhook-id'] && h['webhook-signature'] && !Number.isNaN(ts)) {
      const expected = this.webhook.sign(h['webhook-id'], new Date(ts * 1000), text);
      hmacValid = h['webhook-signature'].split(' ').includes(expected);
    }
    return { signature_valid: verifyError === null, hmac_valid: hmacValid, verify_error: verifyError };
  }

  // Records one request outside /__control/ (its body fully read) and
  // answers it.
  receive(req, res, raw) {
    const text = raw.toString('utf8');
    const headers = {};
    for (const [k, v] of Object.entries(req.headers)) {
      if (k === 'content-type' || k === 'user-agent' || k.startsWith('webhook-')) headers[k] = v;
    }
    let body = text;
    let bodyIsJson = false;
    try {
      body = JSON.parse(text);
      bodyIsJson = true;
    } catch {
      body = text;
    }
    const id = headers['webhook-id'] ?? null;
    const tsHeader = headers['webhook-timestamp'];
    let attempt = null;
    if (id !== null) {
      attempt = (this.attempts.get(id) ?? 0) + 1;
      this.attempts.set(id, attempt);
    }
    this.seq += 1;
    const rec = {
      seq: this.seq,
      method: req.method,
      path: req.url,
      id,
      timestamp: /^\d+$/.test(tsHeader ?? '') ? Number(tsHeader) : null,
      attempt,
      ...this.verify(text, headers),
      received_at_ms: Date.now(),
      status: null,
      answered_at_ms: null,
      closed_at_ms: null,
      body,
      body_is_json: bodyIsJson,
      headers,
    };
    this.events.push(rec);
    const d = { rec, res, timer: null };
    res.on('close', () => {
      if (rec.status !== null) return;
      // The client went away before we answered.
      rec.closed_at_ms = Date.now();
      if (d.timer) clearTimeout(d.timer);
      const i = this.hanging.indexOf(d);
      if (i >= 0) this.hanging.splice(i, 1);
    });
    if (req.method !== 'POST') {
      return this.answer(d, 405, { Allow: 'POST' }, { error: 'method_not_allowed' });
    }
    this.dispatch(d);
  }

  // Answers (or holds) one POST per the current behaviour.
  dispatch(d) {
    const b = this.behaviour;
    if (b.hang) {
      this.hanging.push(d);
      return;
    }
    let status;
    const headers = {};
    let body;
    if (b.fail > 0) {
      b.fail -= 1;
      status = b.fail_status;
      if (b.retry_after !== null) headers['Retry-After'] = b.retry_after;
      body = { error: 'injected_failure' };
    } else if (b.gone) {
      status = 410;
      body = { error: 'gone' };
    } else if (b.redirect !== null) {
      status = 302;
      headers.Location = b.redirect;
      body = { error: 'moved', location: b.redirect };
    } else {
      status = b.status;
      body = { ok: true };
    }
    if (b.slow_ms > 0) d.timer = setTimeout(() => this.answer(d, status, headers, body), b.slow_ms);
    else this.answer(d, status, headers, body);
  }

  answer(d, status, headers, body) {
    const { rec, res } = d;
    d.timer = null;
    if (rec.closed_at_ms !== null || res.destroyed) return;
    rec.status = status;
    rec.answered_at_ms = Date.now();
    const noBody = status === 204 || status === 205 || status === 304;
    const text = noBody ? '' : JSON.stringify(body);
    res.writeHead(status, {
      ...headers,
      ...(noBody ? {} : { 'Content-Type': 'application/json; charset=utf-8', 'Content-Length': Buffer.byteLength(text) }),
    });
    res.end(text);
    if (status >= 200 && status <= 299) this.wakeWaiters();
  }

  wakeWaiters() {
    if (this.waiters.size === 0) return;
    const delivered = this.delivered();
    for (const w of [...this.waiters]) {
      if (delivered.length >= w.count) w.finish(false);
    }
  }

  // GET /__control/wait?count=N&timeout_ms=T
  wait(res, query) {
    const count = intParam(query, 'count', 1, 0, 1e9);
    const timeoutMs = intParam(query, 'timeout_ms', 10000, 0, 3600000);
    let timer = null;
    const w = {
      count,
      finish: (timedOut) => {
        if (!this.waiters.delete(w)) return;
        clearTimeout(timer);
        sendJson(res, 200, { events: this.delivered(), timed_out: timedOut });
      },
    };
    this.waiters.add(w);
    res.on('close', () => {
      this.waiters.delete(w);
      clearTimeout(timer);
    });
    if (this.delivered().length >= count) return w.finish(false);
    timer = setTimeout(() => w.finish(true), timeoutMs);
  }

  describeBehaviour() {
    return { behaviour: { ...this.behaviour }, hanging: this.hanging.length };
  }
}

function intParam(query, name, dflt, lo, hi) {
  const v = query.get(name);
  if (v === null) return dflt;
  if (!/^\d+$/.test(v) || Number(v) < lo || Number(v) > hi) {
    throw new BadRequest(`${name} must be an integer in [${lo}, ${hi}]`);
  }
  return Number(v);
}

function sendJson(res, status, obj) {
  const text = JSON.stringify(obj);
  res.writeHead(status, { 'Content-Type': 'application/json; charset=utf-8', 'Content-Length': Buffer.byteLength(text) });
  res.end(text);
}

function parseJsonBody(raw) {
  const text = raw.toString('utf8');
  if (text.trim() === '') return {};
  try {
    return JSON.parse(text);
  } catch (e) {
    throw new BadRequest(`body is not JSON: ${e.message}`);
  }
}

function control(rx, req, res, raw) {
  const url = new URL(req.url, 'http://127.0.0.1');
  const route = `${req.method} ${url.pathname}`;
  const obj = () => {
    const o = parseJsonBody(raw);
    if (o === null || typeof o !== 'object' || Array.isArray(o)) throw new BadRequest('body must be a JSON object');
    return o;
  };
  switch (route) {
    case 'GET /__control/events':
      return sendJson(res, 200, { events: rx.events });
    case 'GET /__control/delivered':
      return sendJson(res, 200, { events: rx.delivered() });
    case 'GET /__control/wait':
      return rx.wait(res, url.searchParams);
    case 'POST /__control/reset':
      return sendJson(res, 200, { cleared: rx.reset() });
    case 'GET /__control/behaviour':
      return sendJson(res, 200, rx.describeBehaviour());
    case 'POST /__control/behaviour':
      rx.setBehaviour(parseBehaviour(parseJsonBody(raw)));
      return sendJson(res, 200, rx.describeBehaviour());
    case 'GET /__control/secret':
      return sendJson(res, 200, { secret: rx.secret });
    case 'POST /__control/secret': {
      const o = obj();
      if (!('secret' in o)) throw new BadRequest('body must be {"secret": "whsec_..."} or {"secret": null}');
      rx.setSecret(o.secret);
      return sendJson(res, 200, { secret: rx.secret });
    }
    case 'GET /__control/clock':
      return sendJson(res, 200, { now: rx.verifyNow });
    case 'POST /__control/clock': {
      const o = obj();
      if (!('now' in o) || (o.now !== null && (!Number.isInteger(o.now) || o.now < 0))) {
        throw new BadRequest('body must be {"now": <unix seconds>} or {"now": null}');
      }
      rx.verifyNow = o.now;
      return sendJson(res, 200, { now: rx.verifyNow });
    }
    default:
      return sendJson(res, 404, { error: `no control route ${route}` });
  }
}

function main() {
  const { values } = parseArgs({
    options: {
      secret: { type: 'string' },
      'verify-now': { type: 'string' },
      fail: { type: 'string' },
      'fail-status': { type: 'string' },
      'retry-after': { type: 'string' },
      hang: { type: 'boolean' },
      'slow-ms': { type: 'string' },
      gone: { type: 'boolean' },
      status: { type: 'string' },
      redirect: { type: 'string' },
    },
  });
  const num = (flag) => {
    const v = values[flag];
    if (!/^\d+$/.test(v)) throw new BadRequest(`--${flag} must be a non-negative integer`);
    return Number(v);
  };
  const rx = new Receiver();
  if (values.secret !== undefined) rx.setSecret(values.secret);
  if (values['verify-now'] !== undefined) rx.verifyNow = num('verify-now');
  const b = {};
  if (values.fail !== undefined) b.fail = num('fail');
  if (values['fail-status'] !== undefined) b.fail_status = num('fail-status');
  if (values['retry-after'] !== undefined) b.retry_after = values['retry-after'];
  if (values.hang) b.hang = true;
  if (values['slow-ms'] !== undefined) b.slow_ms = num('slow-ms');
  if (values.gone) b.gone = true;
  if (values.status !== undefined) b.status = num('status');
  if (values.redirect !== undefined) b.redirect = values.redirect;
  rx.setBehaviour(parseBehaviour(b));

  const server = http.createServer((req, res) => {
    const chunks = [];
    req.on('data', (c) => chunks.push(c));
    req.on('end', () => {
      const raw = Buffer.concat(chunks);
      try {
        if (req.url === '/__control' || req.url.startsWith('/__control/') || req.url.startsWith('/__control?')) {
          control(rx, req, res, raw);
        } else {
          rx.receive(req, res, raw);
        }
      } catch (e) {
        if (!(e instanceof BadRequest)) console.error(e);
        if (!res.headersSent) sendJson(res, e instanceof BadRequest ? 400 : 500, { error: e.message });
      }
    });
  });
  server.listen(0, '127.0.0.1', () => {
    // A launcher that holds our stdin as a pipe may die without killing us.
    const stdin = fs.fstatSync(0);
    if (stdin.isFIFO() || stdin.isSocket()) {
      process.stdin.on('end', () => process.exit(0));
      process.stdin.on('error', () => process.exit(0));
      process.stdin.resume();
    }
    process.on('SIGTERM', () => process.exit(0));
    process.stdout.write(`${JSON.stringify({ port: server.address().port })}\n`);
  });
  server.on('error', (e) => {
    console.error(`receiver: ${e.message}`);
    process.exit(1);
  });
}

try {
  main();
} catch (e) {
  console.error(`receiver: ${e.message}`);
  process.exit(2);
}
