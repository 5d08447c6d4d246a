#!/usr/bin/env node
// A real SCIM 2.0 service provider (RFC 7643/7644) for the scim connector's
// tests: scimmy's resource handling mounted by scimmy-routers on express at
// /scim/v2, over an in-memory directory (README.md beside this file is the
// contract):
//
//   node scim_server.mjs --count N [--token T] [--no-filter] [--max-count M]
//        [--faults SPEC]
//
// Listens on 127.0.0.1, an ephemeral port, prints one line {"port":N} when
// ready, and serves until killed or, if stdin is a pipe, until stdin closes.
// /__control/* (no auth) changes the data, injects faults and reports stats.
import fs from 'node:fs';
import http from 'node:http';
import querystring from 'node:querystring';
import { parseArgs } from 'node:util';
import { Worker } from 'node:worker_threads';
import express from 'express';
import SCIMMY from 'scimmy';
import SCIMMYRouters from 'scimmy-routers';

import { Directory, groupId, userId } from './directory.mjs';
import { isoSeconds } from '../rest/dataset.mjs';

const ERROR_SCHEMA = 'urn:ietf:params:scim:api:messages:2.0:Error';
const DEFAULT_COUNT = 20;  // ListResponse's default page size in scimmy.

// Injected faults; `--faults` and POST /__control/faults replace the set.
class Faults {
  constructor(spec) {
    this.set(spec);
  }

  // Throws on a malformed spec, leaving the faults as they were.
  set(spec) {
    const f = { rate429: 0, http503: 0, shrinkTotal: false, slowMs: 0 };
    const count = (item, v) => {
      if (!/^\d+$/.test(v ?? '')) throw new Error(`bad fault "${item}": expected a count`);
      return Number(v);
    };
    for (const item of String(spec ?? '').split(',').map((s) => s.trim()).filter(Boolean)) {
      const [name, ...args] = item.split(':');
      if (name === 'none' && args.length === 0) continue;
      else if (name === 'rate429' && args.length === 1) f.rate429 = count(item, args[0]);
      else if (name === 'http503' && args.length === 1) f.http503 = count(item, args[0]);
      else if (name === 'shrink_total' && args.length === 0) f.shrinkTotal = true;
      else if (name === 'slow' && args.length === 1) f.slowMs = count(item, args[0]);
      else throw new Error(`unknown fault "${item}"`);
    }
    Object.assign(this, f);
    this.listPagesServed = 0;  // shrink_total counts list pages from here.
  }

  describe() {
    return {
      rate429: this.rate429,
      http503: this.http503,
      shrink_total: this.shrinkTotal,
      list_pages_served: this.listPagesServed,
      slow_ms: this.slowMs,
    };
  }
}

function newStats() {
  return { requests: 0, requests_by_path: {}, status_counts: {}, rate_limited: 0 };
}

// A SCIM error response for statuses scimmy's ErrorResponse refuses (429, 503).
function sendScimError(res, status, detail) {
  res.status(status).type('application/scim+json')
    .send(JSON.stringify({ schemas: [ERROR_SCHEMA], status: String(status), detail }));
}

class ServerState {
  constructor(opts) {
    this.opts = opts;
    this.faults = new Faults(opts.faults);
    this.stats = newStats();
    this.dir = null;   // Built once the port (and so $ref URLs) is known.
    this.filterCache = { key: null, generation: -1, entries: null };
  }

  entries(kind) {
    return kind === 'User' ? this.dir.users : this.dir.groups;
  }

  byId(kind) {
    return kind === 'User' ? this.dir.usersById : this.dir.groupsById;
  }

  // The entries of `kind` a scimmy Filter matches (all without a filter), in
  // index order. scimmy's Filter.match does the matching on the stored SCIM
  // JSON; the last result is kept until the data changes, so paging through
  // a filtered list costs one match.
  matching(kind, filter) {
    const all = this.entries(kind);
    if (!filter) return all;
    const key = `${kind}\n${filter.expression}`;
    const c = this.filterCache;
    if (c.key === key && c.generation === this.dir.generation) return c.entries;
    const matched = new Set(filter.match(all.map((e) => e.raw)));
    const entries = all.filter((e) => matched.has(e.raw));
    this.filterCache = { key, generation: this.dir.generation, entries };
    return entries;
  }

  // scimmy's outbound form of one entry (its Schema class applied, with the
  // request's attributes/excludedAttributes filter), cached per entry until
  // it changes: scimmy spends ~0.3 ms formatting one user.
  formatted(entry, Schema, basepath, attributes) {
    const key = attributes?.expression ?? '';
    let out = entry.formatted.get(key);
    if (out === undefined) {
      out = JSON.parse(JSON.stringify(new Schema(entry.raw, 'out', basepath, attributes)));
      if (entry.formatted.size >= 8) entry.formatted.clear();
      entry.formatted.set(key, out);
    }
    return out;
  }

  // GET /Users, /Groups (and POST .search): one page of the list as a scimmy
  // ListResponse. Paging per RFC 7644 3.4.2.4: startIndex (1-based, default
  // 1), count (default 20, at most --max-count; 0 gives totalResults only).
  listPage(Resource, resource) {
    const kind = Resource.schema.definition.name;  // "User" or "Group"
    if (resource.filter && !this.opts.filter) {
      throw new SCIMMY.Types.Error(400, 'invalidFilter', 'Filtering is not supported by this service provider');
    }
    const entries = this.matching(kind, resource.filter);
    const { startIndex = 1, count = DEFAULT_COUNT } = resource.constraints ?? {};
    const size = Math.min(count, this.opts.maxCount);
    const page = entries.slice(startIndex - 1, startIndex - 1 + size);
    const basepath = Resource.basepath();
    const Resources = page.map((e) => this.formatted(e, Resource.schema, basepath, resource.attributes));
    let totalResults = entries.length;
    if (this.faults.shrinkTotal) {
      this.faults.listPagesServed += 1;
      totalResults = Math.max(0, totalResults + (this.faults.listPagesServed % 2 === 1 ? 5 : -5));
    }
    const list = new SCIMMY.Messages.ListResponse(Resources, {
      startIndex, itemsPerPage: Resources.length, totalResults,
    });
    // ListResponse (scimmy 1.3.5) offsets its items by startIndex again when
    // it guesses they were not offset yet; ours are exactly the page.
    list.Resources = Resources;
    return list;
  }

  // Formats the initial directory in a worker thread (groups, then users
  // from the last: list walks go from the first), filling the cache with
  // what has not changed meanwhile. Only worth it for big directories.
  warmCache(base) {
    if (this.dir.users.length < 500) return;
    const job = (kind) => (e) => ({ kind, id: e.raw.id, version: e.version, raw: e.raw });
    const jobs = [...this.dir.groups.map(job('Group')), ...this.dir.users.map(job('User')).reverse()];
    const worker = new Worker(new URL('./format_worker.mjs', import.meta.url), { workerData: { basepath: base, jobs } });
    worker.on('message', (batch) => {
      for (const { kind, id, version, formatted } of batch) {
        const entry = this.byId(kind).get(id);
        if (entry && entry.version === version && !entry.formatted.has('')) entry.formatted.set('', formatted);
      }
    });
    worker.on('error', (e) => console.error('scim_server: format worker:', e));
    worker.unref();
  }

  // --- scimmy handlers ---

  egress(kind, resource) {
    if (resource.id) {
      const entry = this.byId(kind).get(resource.id);
      if (!entry) throw new SCIMMY.Types.Error(404, null, `Resource ${resource.id} not found`);
      return entry.raw;
    }
    return this.matching(kind, resource.filter).map((e) => e.raw);
  }

  userIngress(resource, instance) {
    const data = JSON.parse(JSON.stringify(instance));
    const dir = this.dir;
    const existing = resource.id ? dir.usersById.get(resource.id) : null;
    if (resource.id && !existing) throw new SCIMMY.Types.Error(404, null, `Resource ${resource.id} not found`);
    const name = String(data.userName).toLowerCase();
    for (const u of dir.users) {
      if (u !== existing && String(u.raw.userName).toLowerCase() === name) {
        throw new SCIMMY.Types.Error(409, 'uniqueness', `userName ${data.userName} is already taken`);
      }
    }
    const when = isoSeconds(Date.now() + 1000);
    if (existing) {
      existing.raw = {
        ...data,
        id: existing.raw.id,
        meta: { resourceType: 'User', created: existing.raw.meta.created, lastModified: when },
      };
      dir.changed(existing);
      for (const g of dir.groups) {  // Keep members[].display in step.
        const m = (g.raw.members ?? []).find((x) => x.value === existing.raw.id);
        if (m && m.display !== existing.raw.userName) {
          m.display = existing.raw.userName;
          dir.changed(g);
        }
      }
      return existing.raw;
    }
    const index = dir.nextUser++;
    return dir.addUser({
      ...data, id: userId(index), meta: { resourceType: 'User', created: when, lastModified: when },
    }, index).raw;
  }

  groupIngress(resource, instance) {
    const data = JSON.parse(JSON.stringify(instance));
    const dir = this.dir;
    const existing = resource.id ? dir.groupsById.get(resource.id) : null;
    if (resource.id && !existing) throw new SCIMMY.Types.Error(404, null, `Resource ${resource.id} not found`);
    const seen = new Set();
    const members = [];
    for (const m of data.members ?? []) {
      const user = dir.usersById.get(m.value);
      if (!user) throw new SCIMMY.Types.Error(400, 'invalidValue', `No user with id ${m.value}`);
      if (!seen.has(m.value)) members.push(dir.memberOf(user.raw));
      seen.add(m.value);
    }
    const when = isoSeconds(Date.now() + 1000);
    if (existing) {
      existing.raw = {
        ...data,
        id: existing.raw.id,
        members,
        meta: { resourceType: 'Group', created: existing.raw.meta.created, lastModified: when },
      };
      dir.changed(existing);
      return existing.raw;
    }
    const index = dir.nextGroup++;
    return dir.addGroup({
      ...data, id: groupId(index), members, meta: { resourceType: 'Group', created: when, lastModified: when },
    }, index).raw;
  }

  degress(kind, resource) {
    if (!this.byId(kind).has(resource.id)) {
      throw new SCIMMY.Types.Error(404, null, `Resource ${resource.id} not found`);
    }
    if (kind === 'User') this.dir.removeUsers([resource.id]);
    else this.dir.removeGroup(resource.id);
  }
}

// scimmy's User and Group resources, with list reads answered page by page
// from the directory (scimmy's own read() formats every item the egress
// handler returns before paging, i.e. the whole list on every page).
function declareResources(state) {
  class Users extends SCIMMY.Resources.User {
    async read(ctx) {
      return this.id ? super.read(ctx) : state.listPage(Users, this);
    }
  }
  class Groups extends SCIMMY.Resources.Group {
    async read(ctx) {
      return this.id ? super.read(ctx) : state.listPage(Groups, this);
    }
  }
  SCIMMY.Resources.declare(Users, {
    name: 'User',
    extensions: [{ schema: SCIMMY.Schemas.EnterpriseUser, required: false }],
    egress: (resource) => state.egress('User', resource),
    ingress: (resource, instance) => state.userIngress(resource, instance),
    degress: (resource) => state.degress('User', resource),
  });
  SCIMMY.Resources.declare(Groups, {
    name: 'Group',
    egress: (resource) => state.egress('Group', resource),
    ingress: (resource, instance) => state.groupIngress(resource, instance),
    degress: (resource) => state.degress('Group', resource),
  });
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
    res.json({ modified: state.dir.modify(count(req)), users: state.dir.users.length });
  });
  router.post('/delete', (req, res) => {
    res.json({ deleted: state.dir.delete(count(req)), users: state.dir.users.length });
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
  router.use((req, res) => res.status(404).json({ error: `no route for ${req.method} ${req.path}` }));
  router.use((err, req, res, next) => res.status(err.status ?? 500).json({ error: err.message }));
  return router;
}

// startIndex and count as numbers, as scimmy expects them (express 5 parses
// req.query afresh on every access, so the router's own cast is lost).
function parseQuery(text) {
  const q = querystring.parse(text);
  for (const key of ['startIndex', 'count']) {
    if (typeof q[key] === 'string' && /^-?\d+$/.test(q[key])) q[key] = Number(q[key]);
  }
  return q;
}

async function main() {
  const { values } = parseArgs({
    options: {
      count: { type: 'string', default: '0' },
      token: { type: 'string', default: 'scim-test-token' },
      'no-filter': { type: 'boolean', default: false },
      'max-count': { type: 'string', default: '200' },
      faults: { type: 'string', default: '' },
    },
  });
  const count = Number(values.count);
  const maxCount = Number(values['max-count']);
  if (!/^\d+$/.test(values.count) || !Number.isSafeInteger(count)) {
    throw new Error('--count must be a non-negative integer');
  }
  if (!/^\d+$/.test(values['max-count']) || maxCount < 1 || maxCount > 100000) {
    throw new Error('--max-count must be an integer in [1, 100000]');
  }
  if (!values.token) throw new Error('--token must not be empty');
  const state = new ServerState({
    faults: values.faults, filter: !values['no-filter'], maxCount, token: values.token,
  });

  const app = express();
  app.disable('x-powered-by');
  app.set('etag', false);
  app.set('query parser', parseQuery);
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
  // Injected 429/503, before authentication.
  app.use('/scim/v2', (req, res, next) => {
    const f = state.faults;
    if (f.rate429 > 0) {
      f.rate429 -= 1;
      res.set('Retry-After', '1');
      return sendScimError(res, 429, 'Too many requests (injected)');
    }
    if (f.http503 > 0) {
      f.http503 -= 1;
      res.set('Retry-After', '1');
      return sendScimError(res, 503, 'Service unavailable (injected)');
    }
    next();
  });

  const server = http.createServer(app);
  await new Promise((resolve, reject) => {
    server.once('error', reject);
    server.listen(0, '127.0.0.1', resolve);
  });
  const { port } = server.address();
  const origin = `http://127.0.0.1:${port}`;
  state.dir = new Directory(count, `${origin}/scim/v2`);
  state.warmCache(`${origin}/scim/v2`);

  declareResources(state);
  app.use('/scim/v2', new SCIMMYRouters({
    type: 'bearer',
    docUri: 'https://datatracker.ietf.org/doc/html/rfc6750',
    handler: (req) => {
      const got = req.get('authorization');
      // The scheme name is case-insensitive (RFC 7235), the token is not.
      if (got === undefined || !/^bearer /i.test(got) || got.slice(7).trim() !== values.token) {
        req.res.set('WWW-Authenticate', got === undefined ? 'Bearer realm="scim"' : 'Bearer realm="scim", error="invalid_token"');
        throw new Error(got === undefined ? 'Authorization header missing' : 'Invalid bearer token');
      }
    },
    baseUri: () => origin,
  }));
  // SCIMMYRouters sets patch, filter, sort and bulk as supported; say what
  // this server really does.
  SCIMMY.Config.set({
    patch: true,
    bulk: false,
    sort: false,
    etag: false,
    changePassword: false,
    filter: { supported: state.opts.filter, maxResults: maxCount },
  });
  app.use((req, res) => {
    res.status(404).type('application/scim+json')
      .send(JSON.stringify({ schemas: [ERROR_SCHEMA], status: '404', detail: `No route for ${req.method} ${req.path}` }));
  });
  app.use((err, req, res, next) => {
    console.error(err);
    if (!res.headersSent) {
      res.status(500).type('application/scim+json')
        .send(JSON.stringify({ schemas: [ERROR_SCHEMA], status: '500', detail: String(err.message) }));
    }
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
  console.error(`scim_server: ${e.message}`);
  process.exit(2);
});
