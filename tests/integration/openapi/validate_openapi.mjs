// Checks /openapi.json of the real idsync-dispatcher with validators that
// share no code with the server:
//   1. @apidevtools/swagger-parser validates the document against the
//      OpenAPI 3.0 JSON schema and resolves every $ref; the semantic rules
//      it skips for OpenAPI 3 (path parameters, unique operationIds,
//      required properties that exist) are checked here;
//   2. every operation in the document is called at least once over real
//      HTTP and must succeed with a status the document declares; each
//      response body is validated by openapi-response-validator against the
//      schema declared for its status code (error responses against
//      `default`), with string formats (RFC 3339 date-time, ...) checked
//      by ajv-formats; the successful requests must use only the query
//      parameters and body fields the document declares;
//   3. an operation in the document that was not exercised is a failure.
// Agents register on the gRPC agent spine (AgentSpine.Register), which the
// walk calls with a minimal gRPC client over node:http2, as idsync-agent
// would.
//
// Usage: node validate_openapi.mjs PATH/TO/idsync-dispatcher
//        (or IDSYNC_DISPATCHER=PATH node validate_openapi.mjs)
// The packages come from package-lock.json at the repository root (npm ci).
// Needs the sqlite3 command line tool (scripts/setup installs it) to seed
// accounts, entitlements and grants, which no built-in connector produces yet.
// Exits 0 when everything matches, 1 with every mismatch listed otherwise.
// The dispatcher is stopped at the end, also on failure.

import { spawn, spawnSync } from 'node:child_process';
import fs from 'node:fs';
import http2 from 'node:http2';
import os from 'node:os';
import path from 'node:path';
import { fileURLToPath } from 'node:url';

const NAME = 'openapi_validation';
const ROOT = path.resolve(path.dirname(fileURLToPath(import.meta.url)), '../../..');
const DEADLINE_MS = 100_000;  // Under ctest's TIMEOUT (120 s).
const REQUEST_TIMEOUT_MS = 30_000;
const METHODS =
    ['get', 'put', 'post', 'delete', 'options', 'head', 'patch', 'trace'];

function log(message) {
  console.log(`${NAME}: ${message}`);
}

class SetupError extends Error {}

// --- The independent validators --------------------------------------------

async function loadValidators() {
  try {
    const SwaggerParser = (await import('@apidevtools/swagger-parser')).default;
    const orv = (await import('openapi-response-validator')).default;
    const {fullFormats} = await import('ajv-formats/dist/formats.js');
    // ajv-formats' string formats (date-time, email, uri, ...) as the
    // predicates openapi-response-validator takes; without them it ignores
    // `format`. (int32/int64 apply to numbers, which it cannot take;
    // `type: integer` still holds.)
    const formats = {};
    for (const [name, f] of Object.entries(fullFormats)) {
      const check = typeof f === 'object' && !(f instanceof RegExp)
          ? (f.type === undefined || f.type === 'string' ? f.validate : null)
          : f;
      if (typeof check === 'function') formats[name] = check;
      if (check instanceof RegExp) formats[name] = (s) => check.test(s);
    }
    return {SwaggerParser, ResponseValidator: orv.default ?? orv, formats};
  } catch (e) {
    console.error(
        `${NAME}: FAILED: cannot load the validator packages from ` +
        `${path.join(ROOT, 'node_modules')} (${e.code ?? e.message}): ` +
        `run npm ci in ${ROOT}`);
    process.exit(1);
  }
}

// --- The dispatcher under test ---------------------------------------------

function bootstrap(bin, db) {
  const r = spawnSync(bin, ['bootstrap', '--tenant', 't', '--db', db],
                      {encoding: 'utf8', timeout: 30_000});
  if (r.status !== 0) {
    throw new SetupError(`bootstrap failed (exit ${r.status}): ${r.stderr}`);
  }
  const token = r.stdout.trim();
  if (!token.startsWith('idsync_svc_')) {
    throw new SetupError(`bootstrap printed no token: ${r.stdout}`);
  }
  return token;
}

// Starts `serve` on free ports; resolves with {http, grpc}, the ports from
// its log.
// The operator's token for /metrics on the API port.
const METRICS_TOKEN = 'openapi-operator-metrics-token';

function startDispatcher(bin, db, dir) {
  fs.mkdirSync(path.join(dir, 'imports', 't'), {recursive: true});
  fs.writeFileSync(path.join(dir, 'metrics.token'), METRICS_TOKEN,
                   {mode: 0o600});
  const child = spawn(bin, [
    'serve', '--db', db,  // The secrets key: DB.key, created on start.
    '--http-listen', '127.0.0.1:0', '--grpc-listen', '127.0.0.1:0',
    '--shutdown-grace', '5', '--metrics-listen', '',
    '--metrics-token-file', path.join(dir, 'metrics.token'),
    // Tenant t's files (its connectors read only these).
    '--import-dir', path.join(dir, 'imports'),
    // Webhooks below point at loopback.
    '--allow-private-callbacks',
  ], {stdio: ['ignore', 'pipe', 'pipe']});
  let output = '';
  const ready = new Promise((resolve, reject) => {
    const timer = setTimeout(
        () => reject(new SetupError(
            `the dispatcher did not report its ports in 20 s:\n${output}`)),
        20_000);
    const onData = (chunk) => {
      output += chunk.toString();
      const m = output.match(/ http=[^\s]*:(\d+) grpc=[^\s]*:(\d+)/);
      if (m) {
        clearTimeout(timer);
        resolve({http: Number(m[1]), grpc: Number(m[2])});
      }
    };
    child.stdout.on('data', onData);
    child.stderr.on('data', onData);
    child.on('exit', (code, signal) => {
      clearTimeout(timer);
      reject(new SetupError(
          `the dispatcher exited (${code ?? signal}) before serving:\n${output}`));
    });
    child.on('error', (e) => {
      clearTimeout(timer);
      reject(new SetupError(`cannot start ${bin}: ${e.message}`));
    });
  });
  return {child, ready, output: () => output};
}

async function stopDispatcher(child) {
  if (child.exitCode !== null || child.signalCode !== null) return;
  const exited = new Promise((resolve) => child.once('exit', resolve));
  child.kill('SIGTERM');
  const timer = setTimeout(() => child.kill('SIGKILL'), 10_000);
  await exited;
  clearTimeout(timer);
}

function sqlite(db, sql) {
  const r = spawnSync('sqlite3', ['-cmd', '.timeout 10000', db, sql],
                      {encoding: 'utf8', timeout: 30_000});
  if (r.error) {
    throw new SetupError(
        `cannot run sqlite3 (${r.error.code}): install it (scripts/setup)`);
  }
  if (r.status !== 0) throw new SetupError(`sqlite3 failed: ${r.stderr}`);
  return r.stdout.trim();
}

function writeCsv(file, rows) {
  const lines = ['employee_id,email,first_name,last_name,department'];
  for (let i = 1; i <= rows; ++i) {
    lines.push(`E${i},e${i}@example.com,First${i},Last${i},Dept${i % 4}`);
  }
  fs.writeFileSync(file, lines.join('\n') + '\n');
}

// --- A minimal gRPC client (unary calls, plaintext) -------------------------

// Protocol Buffers wire format, for the few messages the walk sends: string
// fields only.
function encodeStrings(fields) {
  const parts = [];
  const varint = (n) => {
    const bytes = [];
    while (n > 0x7f) {
      bytes.push((n & 0x7f) | 0x80);
      n >>>= 7;
    }
    bytes.push(n);
    return Buffer.from(bytes);
  };
  for (const [number, value] of Object.entries(fields)) {
    const bytes = Buffer.from(value, 'utf8');
    parts.push(varint((Number(number) << 3) | 2), varint(bytes.length), bytes);
  }
  return Buffer.concat(parts);
}

// Decodes varint (as Number) and length-delimited (as string) fields.
function decodeFields(buffer) {
  const fields = {};
  let at = 0;
  const varint = () => {
    let n = 0;
    let shift = 0;
    for (;;) {
      const b = buffer[at++];
      n += (b & 0x7f) * 2 ** shift;
      if ((b & 0x80) === 0) return n;
      shift += 7;
    }
  };
  while (at < buffer.length) {
    const key = varint();
    const number = Math.floor(key / 8);
    const type = key % 8;
    if (type === 0) {
      fields[number] = varint();
    } else if (type === 2) {
      const length = varint();
      fields[number] = buffer.subarray(at, at + length).toString('utf8');
      at += length;
    } else {
      throw new SetupError(`gRPC: cannot decode wire type ${type}`);
    }
  }
  return fields;
}

// One unary call: resolves with {code, message, fields} (the decoded
// response when code is 0).
function grpcUnary(port, method, request) {
  return new Promise((resolve, reject) => {
    const client = http2.connect(`http://127.0.0.1:${port}`);
    client.on('error', reject);
    const frame = Buffer.alloc(5 + request.length);
    frame.writeUInt32BE(request.length, 1);
    request.copy(frame, 5);
    const call = client.request({
      ':method': 'POST',
      ':path': method,
      'content-type': 'application/grpc',
      'te': 'trailers',
    });
    call.setTimeout(REQUEST_TIMEOUT_MS, () => {
      call.close();
      reject(new SetupError(`gRPC ${method}: timed out`));
    });
    let headers = {};
    let trailers = {};
    const chunks = [];
    call.on('response', (h) => { headers = h; });
    call.on('trailers', (t) => { trailers = t; });
    call.on('data', (chunk) => chunks.push(chunk));
    call.on('error', (e) => {
      client.close();
      reject(e);
    });
    call.on('end', () => {
      client.close();
      const code = Number(trailers['grpc-status'] ?? headers['grpc-status']);
      const message = decodeURIComponent(
          trailers['grpc-message'] ?? headers['grpc-message'] ?? '');
      const body = Buffer.concat(chunks);
      const fields = code === 0 && body.length >= 5
          ? decodeFields(body.subarray(5, 5 + body.readUInt32BE(1)))
          : {};
      resolve({code, message, fields});
    });
    call.end(frame);
  });
}

// swagger-parser checks an OpenAPI 3 document against the specification's
// JSON schema and resolves every $ref, but (unlike for Swagger 2.0) skips the
// rules no JSON schema can express. The ones this document can break:
function semanticProblems(doc) {
  const problems = [];
  const operationIds = new Map();
  for (const [template, item] of Object.entries(doc.paths)) {
    const inTemplate = [...template.matchAll(/\{([^}]+)\}/g)].map((m) => m[1]);
    for (const method of METHODS) {
      const op = item[method];
      if (!op) continue;
      const where = `${method.toUpperCase()} ${template}`;
      if (op.operationId) {
        if (operationIds.has(op.operationId)) {
          problems.push(`${where}: operationId ${op.operationId} is also ` +
                        `used by ${operationIds.get(op.operationId)}`);
        }
        operationIds.set(op.operationId, where);
      }
      const params = [...(item.parameters ?? []), ...(op.parameters ?? [])];
      const declared = params.filter((p) => p.in === 'path');
      for (const name of inTemplate) {
        const p = declared.find((d) => d.name === name);
        if (!p) problems.push(`${where}: path parameter {${name}} is not declared`);
        else if (p.required !== true) {
          problems.push(`${where}: path parameter {${name}} must be required`);
        }
      }
      for (const p of declared) {
        if (!inTemplate.includes(p.name)) {
          problems.push(`${where}: declares path parameter ${p.name}, ` +
                        `which the path does not have`);
        }
      }
      const seen = new Set();
      for (const p of params) {
        const key = `${p.in}:${p.in === 'header' ? p.name.toLowerCase() : p.name}`;
        if (seen.has(key)) problems.push(`${where}: parameter ${key} twice`);
        seen.add(key);
      }
    }
  }
  for (const [name, schema] of Object.entries(doc.components?.schemas ?? {})) {
    for (const field of schema.required ?? []) {
      if (!(field in (schema.properties ?? {}))) {
        problems.push(`components/schemas/${name}: required property ` +
                      `${field} is not among its properties`);
      }
    }
  }
  return problems;
}

// --- Checking responses against the document -------------------------------

class Checker {
  constructor(doc, validators) {
    this.doc = doc;
    this.validators = validators;
    this.cache = new Map();
    this.problems = [];
    this.exercised = new Set();
    this.validated = 0;
  }

  problem(message) {
    this.problems.push(message);
    console.error(`${NAME}: MISMATCH: ${message}`);
  }

  // Validates `body` against the schema of `responses[key]`.
  validateBody(cacheKey, responses, key, body, where) {
    let validator = this.cache.get(cacheKey);
    if (!validator) {
      validator = new this.validators.ResponseValidator({
        responses: {[key]: responses[key]},
        components: this.doc.components,
        customFormats: this.validators.formats,
      });
      this.cache.set(cacheKey, validator);
    }
    const result = validator.validateResponse(key, body);
    ++this.validated;
    if (result) {
      this.problem(`${where}: the body does not match the declared schema: ` +
                   JSON.stringify(result.errors) + `\n  body: ` +
                   JSON.stringify(body).slice(0, 2000));
      return false;
    }
    return true;
  }

  // Checks one exchange of operation `method template`. With `success`, the
  // call had to succeed with a status the document declares, and counts as
  // exercising the operation.
  check(method, template, reply, success) {
    const where = `${method} ${template} -> ${reply.status}`;
    const op = this.doc.paths?.[template]?.[method.toLowerCase()];
    if (!op) {
      this.problem(`${where}: the document has no such operation`);
      return;
    }
    const declared = String(reply.status) in op.responses;
    const key = declared ? String(reply.status) : 'default';
    if (success) {
      if (reply.status < 200 || reply.status > 299) {
        this.problem(`${where}: expected success, got ${reply.text.slice(0, 500)}`);
        return;
      }
      if (!declared) {
        this.problem(`${where}: succeeded with a status the document does not ` +
                     `declare (it declares ${Object.keys(op.responses)})`);
        return;
      }
    }
    const response = op.responses[key];
    if (!response) {
      this.problem(`${where}: status not declared and no default response`);
      return;
    }
    const media = Object.keys(response.content ?? {});
    const contentType =
        (reply.headers.get('content-type') ?? '').split(';')[0].trim();
    if (media.length > 0 && !media.includes(contentType)) {
      this.problem(`${where}: Content-Type ${contentType}, the document ` +
                   `declares ${media}`);
      return;
    }
    if (contentType === 'application/json') {
      if (reply.json === undefined) {
        this.problem(`${where}: the body is not JSON: ${reply.text.slice(0, 200)}`);
        return;
      }
      if (!this.validateBody(`${method} ${template} ${key}`, op.responses, key,
                             reply.json, where)) {
        return;
      }
    } else if (response.content?.[contentType]?.schema?.type !== 'string') {
      this.problem(`${where}: no schema to check ${contentType} against`);
      return;
    }
    if (success) this.exercised.add(`${method.toUpperCase()} ${template}`);
  }

  // A request that succeeded must be one the document describes: query
  // parameters it declares, with values of their types, and a JSON body
  // that matches its requestBody schema.
  checkRequest(method, template, query, body) {
    const where = `${method} ${template} (request)`;
    const op = this.doc.paths?.[template]?.[method.toLowerCase()];
    if (!op) return;
    const params = [...(this.doc.paths[template].parameters ?? []),
                    ...(op.parameters ?? [])];
    for (const [name, value] of query) {
      const p = params.find((d) => d.in === 'query' && d.name === name);
      const type = p?.schema?.type;
      if (!p) {
        this.problem(`${where}: query parameter ${name} is not declared`);
      } else if ((type === 'integer' && !/^-?\d+$/.test(value)) ||
                 (type === 'boolean' && !['true', 'false'].includes(value))) {
        this.problem(`${where}: ${name}=${value} is not a ${type}`);
      }
    }
    const schema = op.requestBody?.content?.['application/json']?.schema;
    if (body === undefined) {
      if (op.requestBody?.required) {
        this.problem(`${where}: succeeded without the required body`);
      }
      return;
    }
    if (!schema) {
      this.problem(`${where}: sent a JSON body the document does not declare`);
      return;
    }
    const responses = {
      'request': {
        description: 'request body',
        content: {'application/json': {schema}},
      },
    };
    this.validateBody(`${method} ${template} request`, responses, 'request',
                      structuredClone(body), where);
  }

  // A body that must be a component schema (SSE data, unknown endpoints).
  checkComponent(name, body, where) {
    const responses = {
      '200': {
        description: name,
        content: {
          'application/json': {schema: {$ref: `#/components/schemas/${name}`}},
        },
      },
    };
    return this.validateBody(`component ${name}`, responses, '200', body, where);
  }

  unexercised() {
    const missing = [];
    for (const [template, item] of Object.entries(this.doc.paths)) {
      for (const method of METHODS) {
        const key = `${method.toUpperCase()} ${template}`;
        if (item[method] && !this.exercised.has(key)) missing.push(key);
      }
    }
    return missing;
  }
}

// --- The API client ----------------------------------------------------------

class Api {
  constructor(base, checker) {
    this.base = base;
    this.checker = checker;
    this.count = 0;
  }

  // One request. `template` names the operation in the document (default:
  // the path); `expect` is 'ok' (must succeed), a status number (an error
  // that must match `default`), or null (only recorded).
  async request(method, urlPath, {token, body, headers = {}, template,
                                  expect = 'ok'} = {}) {
    const h = {...headers};
    if (token) h.Authorization = `Bearer ${token}`;
    if (body !== undefined) h['Content-Type'] = 'application/json';
    ++this.count;
    const res = await fetch(this.base + urlPath, {
      method,
      headers: h,
      body: body === undefined ? undefined : JSON.stringify(body),
      signal: AbortSignal.timeout(REQUEST_TIMEOUT_MS),
    });
    const text = await res.text();
    let json;
    try {
      json = JSON.parse(text);
    } catch {
      json = undefined;
    }
    const reply = {status: res.status, headers: res.headers, text, json};
    const op = template ?? urlPath.split('?')[0];
    if (expect === 'ok') {
      this.checker.check(method, op, reply, true);
      const query = new URL(this.base + urlPath).searchParams;
      this.checker.checkRequest(method, op, query, body);
    } else if (typeof expect === 'number') {
      if (reply.status !== expect) {
        this.checker.problem(`${method} ${urlPath}: expected ${expect}, got ` +
                             `${reply.status} ${text.slice(0, 300)}`);
      } else {
        this.checker.check(method, op, reply, false);
      }
    }
    return reply;
  }
}

// Reads a run's Server-Sent Events until the server ends the stream.
async function watchRun(api, checker, token, runId) {
  const template = '/api/v1/sync-runs/{id}/events';
  const reply = await api.request('GET', `/api/v1/sync-runs/${runId}/events`,
                                  {token, template});
  const events = [];
  for (const block of reply.text.split('\n\n')) {
    const event = {};
    for (const line of block.split('\n')) {
      const m = line.match(/^(event|data|id): ?(.*)$/);
      if (m) event[m[1]] = m[2];
    }
    if (!event.data) continue;
    let run;
    try {
      run = JSON.parse(event.data);
    } catch {
      checker.problem(`${template}: event data is not JSON: ${event.data}`);
      continue;
    }
    checker.checkComponent('SyncRun', run, `${template} event '${event.event}'`);
    events.push({event: event.event, run});
  }
  const last = events[events.length - 1];
  if (!last || last.event !== 'end') {
    throw new SetupError(`the event stream of run ${runId} did not end with ` +
                         `'end': ${reply.text.slice(-500)}`);
  }
  return last.run;
}

// --- The walk over the whole API ---------------------------------------------

async function exercise(api, checker, {admin, db, dir, grpcPort}) {
  const must = (condition, message) => {
    if (!condition) throw new SetupError(message);
  };
  const id = (reply) => {
    must(reply.json && Number.isInteger(reply.json.id),
         `no id in ${reply.status} ${reply.text.slice(0, 300)}`);
    return reply.json.id;
  };
  const auth = {token: admin};

  // Operations.
  await api.request('GET', '/health');
  await api.request('GET', '/openapi.json');
  await api.request('GET', '/metrics', {token: METRICS_TOKEN});

  // Connectors and a sync to completion.
  const hrCsv = path.join(dir, 'imports', 't', 'hr.csv');
  writeCsv(hrCsv, 5);
  const hr = id(await api.request('POST', '/api/v1/connectors', {
    ...auth,
    body: {business_id: 'hr', type: 'csv', config: {path: hrCsv}},
  }));
  await api.request('GET', '/api/v1/connectors?limit=10', auth);
  await api.request('GET', `/api/v1/connectors/${hr}`,
                    {...auth, template: '/api/v1/connectors/{id}'});
  await api.request('PATCH', `/api/v1/connectors/${hr}`, {
    ...auth,
    template: '/api/v1/connectors/{id}',
    body: {deletion_threshold: 0.5},
  });
  const tested = await api.request('POST', `/api/v1/connectors/${hr}/test`, {
    ...auth,
    template: '/api/v1/connectors/{id}/test',
  });
  must(tested.json?.ok === true, `connector test failed: ${tested.text}`);

  const syncTemplate = '/api/v1/connectors/{id}/sync';
  const syncBody = {chunk_size: 2};
  const started = await api.request('POST', `/api/v1/connectors/${hr}/sync`, {
    ...auth,
    template: syncTemplate,
    body: syncBody,
    headers: {'Idempotency-Key': 'sync-hr-1'},
  });
  const run = id(started);
  const replay = await api.request('POST', `/api/v1/connectors/${hr}/sync`, {
    ...auth,
    template: syncTemplate,
    body: syncBody,
    headers: {'Idempotency-Key': 'sync-hr-1'},
  });
  must(replay.headers.get('idempotent-replayed') === 'true' &&
           replay.json?.id === run,
       `the replay of sync-hr-1 was not a replay: ${replay.text}`);
  // Same key, another body: 422 with the Error schema.
  await api.request('POST', `/api/v1/connectors/${hr}/sync`, {
    ...auth,
    template: syncTemplate,
    body: {chunk_size: 3},
    headers: {'Idempotency-Key': 'sync-hr-1'},
    expect: 422,
  });
  const ended = await watchRun(api, checker, admin, run);
  must(ended.status === 'succeeded' && ended.processed === 5,
       `sync run ${run} ended ${JSON.stringify(ended)}`);
  await api.request('GET', `/api/v1/sync-runs/${run}`,
                    {...auth, template: '/api/v1/sync-runs/{id}'});
  await api.request('GET', `/api/v1/connectors/${hr}/runs?limit=5`,
                    {...auth, template: '/api/v1/connectors/{id}/runs'});
  // An ended run cannot be cancelled: 409.
  await api.request('POST', `/api/v1/sync-runs/${run}/cancel`, {
    ...auth,
    template: '/api/v1/sync-runs/{id}/cancel',
    expect: 409,
  });

  // A long run, cancelled while it runs, then its connector deleted.
  const bigCsv = path.join(dir, 'imports', 't', 'big.csv');
  writeCsv(bigCsv, 200_000);
  const big = id(await api.request('POST', '/api/v1/connectors', {
    ...auth,
    body: {business_id: 'big', type: 'csv', config: {path: bigCsv}},
  }));
  const bigRun = id(await api.request('POST', `/api/v1/connectors/${big}/sync`, {
    ...auth,
    template: syncTemplate,
    body: {chunk_size: 1},
  }));
  await api.request('POST', `/api/v1/sync-runs/${bigRun}/cancel`, {
    ...auth,
    template: '/api/v1/sync-runs/{id}/cancel',
  });
  const cancelled = await watchRun(api, checker, admin, bigRun);
  must(cancelled.status === 'cancelled',
       `run ${bigRun} ended ${cancelled.status}, not cancelled`);
  const deleted = await api.request('DELETE', `/api/v1/connectors/${big}`, {
    ...auth,
    template: '/api/v1/connectors/{id}',
  });
  must(deleted.json?.deleted === true, `delete: ${deleted.text}`);
  await api.request('DELETE', `/api/v1/connectors/${big}`, {
    ...auth,
    template: '/api/v1/connectors/{id}',
    expect: 404,
  });

  // Webhooks: endpoints on loopback (nothing listens there; deliveries
  // fail and retry, which the walk does not wait for).
  const hook = await api.request('POST', '/api/v1/webhooks', {
    ...auth,
    body: {
      url: 'http://127.0.0.1:9/hooks/idsync',
      event_types: ['identity.*', 'sync.completed'],
      enabled: true,
    },
  });
  must(hook.json?.webhook && /^whsec_/.test(hook.json.secret ?? ''),
       `webhook: ${hook.text}`);
  const hookId = hook.json.webhook.id;
  const spare = await api.request('POST', '/api/v1/webhooks', {
    ...auth,
    body: {url: 'http://127.0.0.1:9/spare', event_types: ['*']},
    headers: {'Idempotency-Key': 'spare-hook'},
  });
  const spareReplay = await api.request('POST', '/api/v1/webhooks', {
    ...auth,
    body: {url: 'http://127.0.0.1:9/spare', event_types: ['*']},
    headers: {'Idempotency-Key': 'spare-hook'},
  });
  must(spareReplay.headers.get('idempotent-replayed') === 'true' &&
           spareReplay.json?.secret === '' &&
           spareReplay.json?.webhook?.id === spare.json?.webhook?.id,
       `the replay of spare-hook: ${spareReplay.text}`);
  await api.request('POST', '/api/v1/webhooks', {
    ...auth,
    body: {url: 'http://127.0.0.1:9/x', event_types: ['identity.exploded']},
    expect: 400,
  });

  // Identities: the HR joiner.
  const firstPage =
      await api.request('GET', '/api/v1/identities?limit=2', auth);
  must(firstPage.json?.total === 5 && firstPage.json.next_cursor,
       `identities after the sync: ${firstPage.text}`);
  await api.request(
      'GET',
      `/api/v1/identities?limit=2&cursor=${firstPage.json.next_cursor}` +
          `&source=hr&include_inactive=true`,
      {...auth, template: '/api/v1/identities'});
  const joiner = id(await api.request('POST', '/api/v1/identities', {
    ...auth,
    body: {
      external_id: 'J1',
      email: 'j1@example.com',
      first_name: 'Grace',
      last_name: 'Hopper',
      department: 'Navy',
      manager_external_id: 'E1',
      attributes: {badge: '42'},
    },
  }));
  await api.request('GET', `/api/v1/identities/${joiner}`,
                    {...auth, template: '/api/v1/identities/{id}'});
  await api.request('PATCH', `/api/v1/identities/${joiner}`, {
    ...auth,
    template: '/api/v1/identities/{id}',
    body: {department: 'Research', attributes: {badge: ''}},
  });
  await api.request('POST', `/api/v1/identities/${joiner}/deactivate`, {
    ...auth,
    template: '/api/v1/identities/{id}/deactivate',
  });

  // The joiner's events reached the webhook's deliveries.
  await api.request('GET', '/api/v1/webhooks?limit=10', auth);
  const gotHook = await api.request('GET', `/api/v1/webhooks/${hookId}`,
                                    {...auth, template: '/api/v1/webhooks/{id}'});
  must(gotHook.json && !('secret' in gotHook.json),
       `webhook ${hookId}: ${gotHook.text}`);
  await api.request('PATCH', `/api/v1/webhooks/${hookId}`, {
    ...auth,
    template: '/api/v1/webhooks/{id}',
    body: {event_types: ['identity.*', 'sync.*'], enabled: true},
  });
  const deliveries = await api.request(
      'GET', `/api/v1/webhooks/${hookId}/deliveries?limit=10`,
      {...auth, template: '/api/v1/webhooks/{id}/deliveries'});
  must(deliveries.json?.items?.length >= 1,
       `deliveries of webhook ${hookId}: ${deliveries.text}`);
  const delivery = deliveries.json.items[0].id;
  await api.request(
      'POST', `/api/v1/webhooks/${hookId}/deliveries/${delivery}/replay`, {
        ...auth,
        template: '/api/v1/webhooks/{id}/deliveries/{delivery_id}/replay',
      });
  await api.request(
      'POST', `/api/v1/webhooks/${hookId}/deliveries/999999/replay`, {
        ...auth,
        template: '/api/v1/webhooks/{id}/deliveries/{delivery_id}/replay',
        expect: 404,
      });
  await api.request('DELETE', `/api/v1/webhooks/${spare.json.webhook.id}`, {
    ...auth,
    template: '/api/v1/webhooks/{id}',
  });
  const callbackSecret = await api.request('GET', '/api/v1/callback-secret',
                                           auth);
  must(/^whsec_/.test(callbackSecret.json?.secret ?? ''),
       `callback secret: ${callbackSecret.text}`);

  // Accounts, entitlements and grants: seeded into the store under the hr
  // connector (no built-in connector produces them yet).
  const now = Date.now() * 1000;
  const tenant = `(SELECT id FROM tenants WHERE name = 't')`;
  sqlite(db, `
    INSERT INTO accounts(tenant_id, connector_id, external_id,
      identity_external_id, username, email, display_name, status, attributes,
      created_at, updated_at)
    VALUES (${tenant}, ${hr}, 'A1', 'E1', 'e1', 'e1@example.com', 'First1',
      'enabled', '{"shell":"/bin/bash"}', ${now}, ${now});
    INSERT INTO entitlements(tenant_id, connector_id, external_id, name,
      description, type, attributes, created_at, updated_at)
    VALUES (${tenant}, ${hr}, 'G1', 'admins', 'Administrators', 'group', '{}',
      ${now}, ${now});
    INSERT INTO grants(tenant_id, connector_id, account_external_id,
      entitlement_external_id, attributes, created_at, updated_at)
    VALUES (${tenant}, ${hr}, 'A1', 'G1', NULL, ${now}, ${now});`);
  for (const kind of ['accounts', 'entitlements', 'grants']) {
    const list = await api.request('GET', `/api/v1/${kind}?source=hr`,
                                   {...auth, template: `/api/v1/${kind}`});
    must(list.json?.items?.length === 1, `${kind}: ${list.text}`);
    await api.request('GET', `/api/v1/${kind}/${list.json.items[0].id}`,
                      {...auth, template: `/api/v1/${kind}/{id}`});
  }
  const grantsOfE1 = await api.request(
      'GET', '/api/v1/grants?identity_external_id=E1',
      {...auth, template: '/api/v1/grants'});
  must(grantsOfE1.json?.total === 1, `grants of E1: ${grantsOfE1.text}`);

  // Tokens: an auditor reads and cannot write; a revoked token is refused.
  const created = await api.request('POST', '/api/v1/tokens', {
    ...auth,
    body: {name: 'dashboard', role: 'auditor'},
  });
  const auditor = created.json?.secret;
  must(typeof auditor === 'string', `token: ${created.text}`);
  await api.request('GET', '/api/v1/tokens', auth);
  await api.request('GET', '/api/v1/identities', {token: auditor});
  await api.request('POST', '/api/v1/identities', {
    token: auditor,
    body: {external_id: 'J2'},
    expect: 403,
  });
  await api.request('POST', `/api/v1/tokens/${created.json.token.id}/revoke`, {
    ...auth,
    template: '/api/v1/tokens/{id}/revoke',
  });
  await api.request('GET', '/api/v1/identities', {token: auditor, expect: 401});
  await api.request('GET', '/api/v1/audit-events?limit=100&action=sync.start',
                    {...auth, template: '/api/v1/audit-events'});

  // Agents: a one-time registration token, exchanged on the agent spine for
  // an agent and its token; listed, read, bound to a connector, revoked.
  const regBody = {name: 'branch-dc1', group: 'branch-sites'};
  const registration = await api.request(
      'POST', '/api/v1/agents/registration-tokens',
      {...auth, body: regBody, headers: {'Idempotency-Key': 'reg-dc1'}});
  const regToken = registration.json?.token ?? '';
  must(/^idsync_reg_/.test(regToken), `registration token: ${registration.text}`);
  const regReplay = await api.request(
      'POST', '/api/v1/agents/registration-tokens',
      {...auth, body: regBody, headers: {'Idempotency-Key': 'reg-dc1'}});
  must(regReplay.headers.get('idempotent-replayed') === 'true' &&
           regReplay.json?.token === '' &&
           regReplay.json?.id === registration.json.id,
       `the replay of reg-dc1: ${regReplay.text}`);
  const registered = await grpcUnary(
      grpcPort, '/idsync.v1.AgentSpine/Register', encodeStrings({1: regToken}));
  must(registered.code === 0,
       `AgentSpine.Register: code ${registered.code} ${registered.message}`);
  const agentId = registered.fields[1];
  const agentToken = registered.fields[2] ?? '';
  must(Number.isInteger(agentId) && /^idsync_agt_/.test(agentToken),
       `AgentSpine.Register answered ${JSON.stringify(registered.fields)}`);
  const again = await grpcUnary(
      grpcPort, '/idsync.v1.AgentSpine/Register', encodeStrings({1: regToken}));
  must(again.code === 7,  // PERMISSION_DENIED: it works once.
       `a second AgentSpine.Register: code ${again.code} ${again.message}`);
  const agents = await api.request('GET', '/api/v1/agents?limit=10', auth);
  must(agents.json?.total === 1 && agents.json.items[0].id === agentId &&
           agents.json.items[0].group === 'branch-sites',
       `agents: ${agents.text}`);
  await api.request('GET', `/api/v1/agents/${agentId}`,
                    {...auth, template: '/api/v1/agents/{id}'});
  // Agent and registration tokens only work on the spine.
  await api.request('GET', '/api/v1/agents', {token: agentToken, expect: 403});
  const onprem = await api.request('POST', '/api/v1/connectors', {
    ...auth,
    body: {
      business_id: 'onprem-hr',
      type: 'csv',
      mode: 'agent',
      agent: 'branch-sites',
      config: {path: '/srv/on-the-agent/hr.csv'},
    },
  });
  must(onprem.json?.mode === 'agent' && onprem.json.agent === 'branch-sites',
       `agent connector: ${onprem.text}`);
  await api.request('POST', '/api/v1/connectors', {
    ...auth,
    body: {business_id: 'unbound', type: 'csv', mode: 'agent', config: {}},
    expect: 400,
  });
  await api.request('POST', `/api/v1/connectors/${onprem.json.id}/test`, {
    ...auth,
    template: '/api/v1/connectors/{id}/test',
    expect: 409,
  });
  const revokedAgent = await api.request(
      'DELETE', `/api/v1/agents/${agentId}`,
      {...auth, template: '/api/v1/agents/{id}'});
  must(typeof revokedAgent.json?.revoked_at === 'string' &&
           revokedAgent.json.online === false,
       `DELETE agent ${agentId}: ${revokedAgent.text}`);
  await api.request('GET', '/api/v1/agents', {token: agentToken, expect: 401});
  await api.request('GET', '/api/v1/agents/999999', {
    ...auth,
    template: '/api/v1/agents/{id}',
    expect: 404,
  });

  // Errors match the default Error schema.
  await api.request('GET', '/api/v1/identities', {expect: 401});
  await api.request('GET', '/api/v1/identities/999999', {
    ...auth,
    template: '/api/v1/identities/{id}',
    expect: 404,
  });
  await api.request('GET', `/api/v1/sync-runs/999999/events`, {
    ...auth,
    template: '/api/v1/sync-runs/{id}/events',
    expect: 404,
  });
  await api.request('GET', '/api/v1/identities?limit=501', {...auth, expect: 400});
  await api.request('POST', '/api/v1/identities', {
    ...auth,
    body: {external_id: 'J3', bogus: true},
    expect: 400,
  });
  await api.request('POST', '/api/v1/identities', {
    ...auth,
    body: {external_id: 'J1'},
    expect: 409,
  });
  await api.request('POST', `/api/v1/connectors/${hr}/sync`, {
    ...auth,
    template: syncTemplate,
    body: {chunk_size: 0.5},
    expect: 400,
  });
  // An endpoint the document does not have: still the Error shape.
  const unknown = await api.request('GET', '/api/v1/nope', {...auth, expect: null});
  if (unknown.status !== 404) {
    checker.problem(`GET /api/v1/nope: expected 404, got ${unknown.status}`);
  } else {
    checker.checkComponent('Error', unknown.json, 'GET /api/v1/nope -> 404');
  }
}

async function main() {
  const bin = process.argv[2] ?? process.env.IDSYNC_DISPATCHER;
  if (!bin) {
    console.error(`usage: node validate_openapi.mjs PATH/TO/idsync-dispatcher`);
    process.exit(2);
  }
  const validators = await loadValidators();
  const dir = fs.mkdtempSync(path.join(os.tmpdir(), 'idsync-openapi-'));
  const db = path.join(dir, 'store.db');
  let dispatcher;
  const cleanup = () => {  // Also after the watchdog's exit.
    if (dispatcher) dispatcher.child.kill('SIGKILL');
    fs.rmSync(dir, {recursive: true, force: true});
  };
  process.on('exit', cleanup);
  const watchdog = setTimeout(() => {
    console.error(`${NAME}: FAILED: timed out after ${DEADLINE_MS} ms`);
    process.exit(1);  // The exit handler kills the dispatcher.
  }, DEADLINE_MS);
  watchdog.unref();

  const started = Date.now();
  let checker;
  let api;
  let error;
  try {
    const admin = bootstrap(bin, db);
    dispatcher = startDispatcher(bin, db, dir);
    const ports = await dispatcher.ready;
    const port = ports.http;
    log(`dispatcher on 127.0.0.1:${port} (gRPC ${ports.grpc})`);

    const res = await fetch(`http://127.0.0.1:${port}/openapi.json`,
                            {signal: AbortSignal.timeout(REQUEST_TIMEOUT_MS)});
    if (res.status !== 200) {
      throw new SetupError(`GET /openapi.json answered ${res.status}`);
    }
    const doc = await res.json();
    try {
      // validate() dereferences its argument in place: give it a copy.
      await validators.SwaggerParser.validate(structuredClone(doc));
      log(`swagger-parser: the document is valid OpenAPI ${doc.openapi} ` +
          `(${Object.keys(doc.paths).length} paths)`);
    } catch (e) {
      throw new SetupError(`swagger-parser rejects the document: ${e.message}`);
    }
    const semantic = semanticProblems(doc);
    if (semantic.length > 0) {
      throw new SetupError(`the document breaks OpenAPI rules:\n    ` +
                           semantic.join('\n    '));
    }
    checker = new Checker(doc, validators);
    api = new Api(`http://127.0.0.1:${port}`, checker);
    await exercise(api, checker, {admin, db, dir, grpcPort: ports.grpc});
  } catch (e) {
    error = e;
  } finally {
    if (dispatcher) await stopDispatcher(dispatcher.child);
    fs.rmSync(dir, {recursive: true, force: true});
  }

  const problems = checker ? [...checker.problems] : [];
  if (error) {
    problems.push(error instanceof SetupError ? error.message : error.stack);
    if (dispatcher && !(error instanceof SetupError && /dispatcher/.test(error.message))) {
      console.error(`${NAME}: dispatcher output:\n${dispatcher.output().slice(-4000)}`);
    }
  }
  if (checker && !error) {
    for (const op of checker.unexercised()) {
      problems.push(`${op}: in the document but not exercised by this test`);
    }
  }
  const seconds = ((Date.now() - started) / 1000).toFixed(1);
  if (problems.length > 0) {
    console.error(`${NAME}: FAILED with ${problems.length} problem(s):`);
    for (const p of problems) console.error(`  - ${p}`);
    process.exit(1);
  }
  log(`OK: ${checker.exercised.size} operations exercised, ` +
      `${checker.validated} bodies validated, ${api.count} requests, ` +
      `${seconds} s`);
  process.exit(0);
}

await main();
