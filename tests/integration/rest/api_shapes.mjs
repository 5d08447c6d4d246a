#!/usr/bin/env node
// Real HTTP servers in the API shapes the rest connector must sync from, for
// its tests (README.md beside this file is the contract):
//
//   node api_shapes.mjs --shape paged|offset|oidc|password|apikey --count N
//        [--token-ttl SECONDS] [--faults SPEC] [--hmac-secret S]
//
// Listens on 127.0.0.1, an ephemeral port, prints one line {"port":N} when
// ready, and serves until killed or, if stdin is a pipe, until stdin closes.
// /__control/* (no auth) changes the data, injects faults and reports stats.
import fs from 'node:fs';
import http from 'node:http';
import { parseArgs } from 'node:util';
import express from 'express';

import { Dataset } from './dataset.mjs';
import { SHAPES } from './shapes.mjs';

// Injected faults; `--faults` and POST /__control/faults replace the set.
class Faults {
  constructor(spec) {
    this.set(spec);
  }

  // Throws on a malformed spec, leaving the faults as they were.
  set(spec) {
    const f = { rate429: 0, http500: 0, malformedUsersPage: 0, loopCursor: false, expireTokenAfter: 0, slowMs: 0 };
    const count = (item, v) => {
      if (!/^\d+$/.test(v ?? '')) throw new Error(`bad fault "${item}": expected a count`);
      return Number(v);
    };
    for (const item of String(spec ?? '').split(',').map((s) => s.trim()).filter(Boolean)) {
      const [name, ...args] = item.split(':');
      if (name === 'none') continue;
      else if (name === 'rate429') f.rate429 = count(item, args[0]);
      else if (name === 'http500') f.http500 = count(item, args[0]);
      else if (name === 'malformed' && args[0] === 'users') f.malformedUsersPage = count(item, args[1]);
      else if (name === 'loop_cursor' && args.length === 0) f.loopCursor = true;
      else if (name === 'expire_token_after') f.expireTokenAfter = count(item, args[0]);
      else if (name === 'slow') f.slowMs = count(item, args[0]);
      else throw new Error(`unknown fault "${item}"`);
    }
    Object.assign(this, f);
    this.usersPagesServed = 0;  // malformed:users:P counts from here.
  }

  describe() {
    return {
      rate429: this.rate429,
      http500: this.http500,
      malformed_users_page: this.malformedUsersPage,
      users_pages_served: this.usersPagesServed,
      loop_cursor: this.loopCursor,
      expire_token_after: this.expireTokenAfter,
      slow_ms: this.slowMs,
    };
  }
}

function newStats() {
  return { requests: 0, requests_by_path: {}, status_counts: {}, tokens_issued: 0, rate_limited: 0 };
}

// What the shapes share: data, faults, stats, token use counts.
class ServerState {
  constructor(opts) {
    this.data = new Dataset(opts.count);
    this.faults = new Faults(opts.faults);
    this.stats = newStats();
    this.tokenTtl = opts.tokenTtl;
    this.hmacSecret = opts.hmacSecret;
    this.tokenUses = new Map();
    this.baseUrl = '';  // http://127.0.0.1:PORT once listening.
  }

  // Middleware for data endpoints: injected 429/500 first, then the shape's
  // own rate limit (a TokenBucket), answered with the shape's error sender.
  apiGuard(sendError, bucket = null) {
    return (req, res, next) => {
      const f = this.faults;
      if (f.rate429 > 0) {
        f.rate429 -= 1;
        res.set('Retry-After', '1');
        return sendError(res, 429, 'rate_limited', 'too many requests (injected)');
      }
      if (f.http500 > 0) {
        f.http500 -= 1;
        return sendError(res, 500, 'internal_error', 'internal error (injected)');
      }
      const wait = bucket ? bucket.take() : 0;
      if (wait > 0) {
        res.set('Retry-After', String(wait));
        return sendError(res, 429, 'rate_limited', 'rate limit exceeded');
      }
      next();
    };
  }

  // Counts one authorized API request made with `token`; false once the
  // expire_token_after:K fault says the token has had its K requests.
  useToken(token) {
    const uses = (this.tokenUses.get(token) ?? 0) + 1;
    if (this.faults.expireTokenAfter > 0 && uses > this.faults.expireTokenAfter) return false;
    this.tokenUses.set(token, uses);
    return true;
  }

  // Sends a 200 JSON page; the P-th users page under malformed:users:P is cut
  // in half, so it is not valid JSON.
  sendPage(res, isUsers, body) {
    const text = JSON.stringify(body);
    if (isUsers) {
      this.faults.usersPagesServed += 1;
      if (this.faults.usersPagesServed === this.faults.malformedUsersPage) {
        return res.status(200).type('application/json').send(text.slice(0, Math.floor(text.length / 2)));
      }
    }
    res.status(200).type('application/json').send(text);
  }
}

function controlRoutes(state) {
  const router = express.Router();
  router.use(express.json());
  const count = (req) => {
    const n = req.body?.count;
    if (!Number.isInteger(n) || n < 0) throw Object.assign(new Error('body must be {"count": N}'), { status: 400 });
    return n;
  };
  router.post('/modify', (req, res) => {
    res.json({ modified: state.data.modify(count(req)), users: state.data.users.length });
  });
  router.post('/delete', (req, res) => {
    res.json({ deleted: state.data.delete(count(req)), users: state.data.users.length });
  });
  router.post('/faults', (req, res) => {
    try {
      state.faults.set(req.body?.spec ?? '');
    } catch (e) {
      return res.status(400).json({ error: e.message });
    }
    res.json({ faults: state.faults.describe() });
  });
  router.get('/faults', (req, res) => res.json({ faults: state.faults.describe() }));
  router.get('/stats', (req, res) => res.json(state.stats));
  router.post('/reset_stats', (req, res) => {
    state.stats = newStats();
    res.json(state.stats);
  });
  router.use((err, req, res, next) => res.status(err.status ?? 500).json({ error: err.message }));
  return router;
}

async function main() {
  const { values } = parseArgs({
    options: {
      shape: { type: 'string' },
      count: { type: 'string', default: '0' },
      'token-ttl': { type: 'string', default: '3600' },
      faults: { type: 'string', default: '' },
      'hmac-secret': { type: 'string' },
    },
  });
  const shape = SHAPES[values.shape];
  if (!shape) throw new Error(`--shape must be one of ${Object.keys(SHAPES).join(', ')}`);
  const count = Number(values.count);
  const tokenTtl = Number(values['token-ttl']);
  if (!Number.isInteger(count) || count < 0) throw new Error('--count must be a non-negative integer');
  if (!Number.isInteger(tokenTtl) || tokenTtl < 1) throw new Error('--token-ttl must be a positive integer');
  if (values['hmac-secret'] !== undefined && values.shape !== 'apikey') {
    throw new Error('--hmac-secret applies to --shape apikey only');
  }
  const state = new ServerState({
    count, tokenTtl, faults: values.faults, hmacSecret: values['hmac-secret'] ?? null,
  });

  const app = express();
  app.disable('x-powered-by');
  app.set('etag', false);
  app.use('/__control', controlRoutes(state));
  // Stats and slow:MS cover every request outside /__control.
  app.use((req, res, next) => {
    const stats = state.stats;
    stats.requests += 1;
    stats.requests_by_path[req.path] = (stats.requests_by_path[req.path] ?? 0) + 1;
    res.on('finish', () => {
      stats.status_counts[res.statusCode] = (stats.status_counts[res.statusCode] ?? 0) + 1;
      if (res.statusCode === 429) stats.rate_limited += 1;
    });
    if (state.faults.slowMs > 0) setTimeout(next, state.faults.slowMs);
    else next();
  });

  const server = http.createServer(app);
  await new Promise((resolve, reject) => {
    server.once('error', reject);
    server.listen(0, '127.0.0.1', resolve);
  });
  const { port } = server.address();
  state.baseUrl = `http://127.0.0.1:${port}`;
  const sendError = await shape(app, state);
  app.use((req, res) => sendError(res, 404, 'not_found', `no route for ${req.method} ${req.path}`));
  app.use((err, req, res, next) => {
    console.error(err);
    sendError(res, err.status ?? 500, err.status ? 'invalid_request' : 'internal_error', err.message);
  });

  // A launcher that holds our stdin as a pipe may die without killing us.
  const stdin = fs.fstatSync(0);
  if (stdin.isFIFO() || stdin.isSocket()) {
    process.stdin.on('end', () => process.exit(0));
    process.stdin.on('error', () => process.exit(0));
    process.stdin.resume();
  }
  process.on('SIGTERM', () => process.exit(0));
  process.stdout.write(`${JSON.stringify({ port })}\n`);
}

main().catch((e) => {
  console.error(`api_shapes: ${e.message}`);
  process.exit(2);
});
