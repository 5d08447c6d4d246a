// The five API shapes: each mounts users, groups and memberships endpoints on
// an express app with its own field names, paging and auth. `state` is the
// ServerState from api_shapes.mjs. See README.md for the exact contract.
import crypto from 'node:crypto';
import express from 'express';

import {
  TokenBucket, decodeCursor, encodeCursor, intParam, loopedPageIndex,
} from './dataset.mjs';

// The three collections, rendered for a shape.
function collections(state, render) {
  return {
    users: () => state.data.users.map(render.user),
    groups: () => state.data.groups.map(render.group),
    memberships: () => state.data.memberships().map(render.membership),
  };
}

function bearer(req) {
  const m = /^Bearer\s+(\S+)$/i.exec(req.get('authorization') ?? '');
  return m ? m[1] : null;
}

// Simple JSON errors {error, message} for the paged and offset shapes.
function plainError(res, status, code, message) {
  if (status === 401) res.set('WWW-Authenticate', 'Bearer');
  res.status(status).json({ error: code, message });
}

// OAuth-style errors for the token-protected shapes (RFC 6750 on 401).
function oauthError(res, status, code, message) {
  if (status === 401) res.set('WWW-Authenticate', `Bearer error="${code}"`);
  res.status(status).json(message ? { error: code, error_description: message } : { error: code });
}

function staticBearer(token, sendError) {
  return (req, res, next) => {
    if (bearer(req) !== token) return sendError(res, 401, 'unauthorized', 'missing or invalid bearer token');
    next();
  };
}

// --- paged: page/limit, {items, pagination}, static workspace token. -------
function paged(app, state) {
  const bucket = new TokenBucket(500 / 60, 50);
  const guard = [state.apiGuard(plainError, bucket), staticBearer('wsk_live_test', plainError)];
  const render = {
    user: (u) => ({
      id: u.id, email: u.email, given_name: u.first, family_name: u.last, department: u.department,
      manager_id: u.manager, status: u.active ? 'active' : 'inactive', updated_at: u.updated_at,
    }),
    group: (g) => ({ id: g.id, name: g.name }),
    membership: (m) => ({ user_id: m.user, group_id: m.group }),
  };
  const all = collections(state, render);
  for (const name of ['users', 'groups', 'memberships']) {
    app.get(`/api/v1/${name}`, ...guard, (req, res) => {
      const page = intParam(req.query.page, 1, 1e9) ?? 1;
      const limit = intParam(req.query.limit, 1, 200) ?? 50;
      if (Number.isNaN(page) || Number.isNaN(limit)) {
        return plainError(res, 400, 'invalid_parameter', 'page must be >= 1 and limit in [1, 200]');
      }
      let items = all[name]();
      if (name === 'users' && req.query.updated_since !== undefined) {
        const since = Date.parse(req.query.updated_since);
        if (Number.isNaN(since)) return plainError(res, 400, 'invalid_parameter', 'updated_since must be ISO-8601');
        items = items.filter((u) => Date.parse(u.updated_at) >= since);
      }
      const looping = name === 'users' && state.faults.loopCursor;
      const index = looping ? loopedPageIndex(page - 1) : page - 1;
      const maxPage = looping ? page + 1 : Math.ceil(items.length / limit);
      state.sendPage(res, name === 'users', {
        items: items.slice(index * limit, (index + 1) * limit),
        pagination: { page, limit, total_count: items.length, max_page: maxPage },
      });
    });
  }
  return plainError;
}

// --- offset: offset/limit {items, total, limit, offset}; cursor memberships.
function offset(app, state) {
  const bucket = new TokenBucket(100, 200);
  const guard = [state.apiGuard(plainError, bucket), staticBearer('off_test_token', plainError)];
  const render = {
    user: (u) => ({
      user_id: u.id,
      mail: u.email,
      name: { given: u.first, family: u.last },
      org: { department: u.department, manager: u.manager ? { user_id: u.manager } : null },
      active: u.active,
      meta: { last_modified: u.updated_at },
    }),
    group: (g) => ({ group_id: g.id, display_name: g.name }),
    membership: (m) => ({ user: { user_id: m.user }, group: { group_id: m.group } }),
  };
  const all = collections(state, render);
  for (const name of ['users', 'groups']) {
    app.get(`/api/${name}`, ...guard, (req, res) => {
      const start = intParam(req.query.offset, 0, 1e9) ?? 0;
      const limit = intParam(req.query.limit, 1, 500) ?? 100;
      if (Number.isNaN(start) || Number.isNaN(limit)) {
        return plainError(res, 400, 'invalid_parameter', 'offset must be >= 0 and limit in [1, 500]');
      }
      const items = all[name]();
      let from = start;
      let total = items.length;
      if (name === 'users' && state.faults.loopCursor) {
        from = loopedPageIndex(Math.floor(start / limit)) * limit;
        total = start + 2 * limit;
      }
      state.sendPage(res, name === 'users', { items: items.slice(from, from + limit), total, limit, offset: start });
    });
  }
  app.get('/api/memberships', ...guard, (req, res) => {
    const limit = intParam(req.query.limit, 1, 1000) ?? 100;
    const start = req.query.cursor === undefined ? 0 : decodeCursor(String(req.query.cursor));
    if (Number.isNaN(limit) || start === null) {
      return plainError(res, 400, 'invalid_parameter', 'bad cursor, or limit not in [1, 1000]');
    }
    const items = all.memberships();
    const end = start + limit;
    res.json({ items: items.slice(start, end), next_cursor: end < items.length ? encodeCursor(end) : null });
  });
  return plainError;
}

// Next position of a cursor chain on users, with the loop_cursor fault: the
// third page's successor is the second page, forever.
function nextStart(state, isUsers, start, limit, length) {
  if (isUsers && state.faults.loopCursor && start >= 2 * limit) return limit;
  return start + limit < length || (isUsers && state.faults.loopCursor) ? start + limit : null;
}

// --- oidc: client credentials from a real oidc-provider; Link paging. -------
async function oidc(app, state) {
  const { default: Provider } = await import('oidc-provider');  // Only this shape needs it.
  const issuer = `${state.baseUrl}/oidc`;
  const { privateKey } = crypto.generateKeyPairSync('rsa', { modulusLength: 2048 });
  const provider = new Provider(issuer, {
    // Secret sent either way: HTTP Basic, or client_id + client_secret in the form.
    clients: [{
      client_id: 'idsync-test',
      client_secret: 'idsync-test-secret',
      grant_types: ['client_credentials'],
      response_types: [],
      redirect_uris: [],
      scope: 'openid email roles',
    }],
    claims: { email: ['email', 'email_verified'], roles: ['roles'] },
    scopes: ['openid', 'email', 'roles'],
    features: {
      clientCredentials: { enabled: true },
      introspection: { enabled: true },
      devInteractions: { enabled: false },
    },
    ttl: { ClientCredentials: state.tokenTtl },
    clockTolerance: 0,  // Tokens die exactly at expiry (default: 15 s late).
    jwks: { keys: [{ ...privateKey.export({ format: 'jwk' }), kid: 'test', alg: 'RS256', use: 'sig' }] },
    cookies: { keys: [crypto.randomBytes(16).toString('hex')] },
  });
  provider.on('grant.success', () => { state.stats.tokens_issued += 1; });
  provider.on('server_error', (ctx, err) => console.error('oidc-provider:', err));
  app.use('/oidc', provider.callback());

  const auth = async (req, res, next) => {
    const token = bearer(req);
    const found = token ? await provider.ClientCredentials.find(token) : undefined;
    if (!found || found.isExpired || !state.useToken(token)) return oauthError(res, 401, 'invalid_token');
    next();
  };
  const guard = [state.apiGuard(oauthError), auth];
  const render = {
    user: (u) => ({
      id: u.id,
      status: u.active ? 'ACTIVE' : 'DEPROVISIONED',
      lastUpdated: u.updated_at,
      profile: {
        login: u.email, email: u.email, firstName: u.first, lastName: u.last,
        department: u.department, managerId: u.manager,
      },
    }),
    group: (g) => ({ id: g.id, profile: { name: g.name } }),
    membership: (m) => ({ userId: m.user, groupId: m.group }),
  };
  const all = collections(state, render);
  for (const name of ['users', 'groups', 'memberships']) {
    app.get(`/v1/${name}`, ...guard, (req, res) => {
      const limit = intParam(req.query.limit, 1, 500) ?? 100;
      const start = req.query.after === undefined ? 0 : decodeCursor(String(req.query.after));
      if (Number.isNaN(limit) || start === null) {
        return oauthError(res, 400, 'invalid_request', 'bad after cursor, or limit not in [1, 500]');
      }
      const items = all[name]();
      const next = nextStart(state, name === 'users', start, limit, items.length);
      if (next !== null) {
        res.set('Link', `<${state.baseUrl}/v1/${name}?limit=${limit}&after=${encodeCursor(next)}>; rel="next"`);
      }
      state.sendPage(res, name === 'users', items.slice(start, start + limit));
    });
  }
  return oauthError;
}

// --- password: OAuth2 password grant at /connect/token; stop on empty page.
function password(app, state) {
  const tokens = new Map();  // access token -> expiry (ms since epoch)
  app.post('/connect/token', express.urlencoded({ extended: false }), (req, res) => {
    const p = req.body ?? {};
    if (p.grant_type !== 'password') return oauthError(res, 400, 'unsupported_grant_type');
    if (p.client_id !== 'pw-client') return oauthError(res, 401, 'invalid_client');
    if (p.username !== 'svc-idsync' || p.password !== 'pw-api-secret') return oauthError(res, 400, 'invalid_grant');
    const token = `pw_${crypto.randomBytes(24).toString('hex')}`;
    tokens.set(token, Date.now() + state.tokenTtl * 1000);
    state.stats.tokens_issued += 1;
    res.set('Cache-Control', 'no-store').json({ access_token: token, token_type: 'Bearer', expires_in: state.tokenTtl });
  });
  const auth = (req, res, next) => {
    const token = bearer(req);
    const expiry = token ? tokens.get(token) : undefined;
    if (expiry === undefined || expiry <= Date.now() || !state.useToken(token)) {
      return oauthError(res, 401, 'invalid_token');
    }
    next();
  };
  const guard = [state.apiGuard(oauthError), auth];
  const render = {
    user: (u) => ({
      identityId: u.id, emailAddress: u.email, firstName: u.first, lastName: u.last,
      department: u.department, managerIdentityId: u.manager, enabled: u.active, modifiedAt: u.updated_at,
    }),
    group: (g) => ({ groupId: g.id, groupName: g.name }),
    membership: (m) => ({ identityId: m.user, groupId: m.group }),
  };
  const all = collections(state, render);
  for (const [path, name] of [['identities', 'users'], ['groups', 'groups'], ['memberships', 'memberships']]) {
    app.get(`/api/${path}`, ...guard, (req, res) => {
      const page = intParam(req.query.page, 0, 1e9) ?? 0;
      const size = intParam(req.query.size, 1, 500) ?? 100;
      if (Number.isNaN(page) || Number.isNaN(size)) {
        return oauthError(res, 400, 'invalid_request', 'page must be >= 0 and size in [1, 500]');
      }
      const index = name === 'users' && state.faults.loopCursor ? loopedPageIndex(page) : page;
      state.sendPage(res, name === 'users', { data: all[name]().slice(index * size, (index + 1) * size), page });
    });
  }
  return oauthError;
}

// --- apikey: raw key + fixed headers, envelope errors, optional HMAC. -------
function apikey(app, state) {
  let requestCounter = 0;
  const sendError = (res, status, code, message, details = null) => {
    requestCounter += 1;
    res.status(status).json({
      success: false, code, error: { message, details }, requestId: `req_${String(requestCounter).padStart(8, '0')}`,
    });
  };
  const auth = (req, res, next) => {
    const key = req.get('authorization');
    if (key === undefined) return sendError(res, 401, 'missing_api_key', 'the authorization header is required');
    if (key !== 'ak_raw_key_123') return sendError(res, 401, 'invalid_api_key', 'the API key is not valid');
    if (req.get('x-client-id') !== 'idsync-client') {
      return sendError(res, 401, 'invalid_client_id', 'x-client-id is missing or unknown',
        { header: 'x-client-id', received: req.get('x-client-id') ?? null });
    }
    if (state.hmacSecret !== null) {
      const problem = signatureProblem(req, state.hmacSecret);
      if (problem) return sendError(res, 401, 'bad_signature', problem);
    }
    next();
  };
  const guard = [express.raw({ type: () => true }), state.apiGuard(sendError), auth];
  const render = {
    user: (u) => ({
      uid: u.id,
      emails: [{ type: 'work', value: u.email }],
      names: { first: u.first, last: u.last },
      department: u.department,
      managerUid: u.manager,
      isActive: u.active,
      updatedAt: u.updated_at,
    }),
    group: (g) => ({ gid: g.id, title: g.name }),
    membership: (m) => ({ uid: m.user, gid: m.group }),
  };
  const all = collections(state, render);
  for (const name of ['users', 'groups', 'memberships']) {
    app.get(`/v2/${name}`, ...guard, (req, res) => {
      const limit = intParam(req.query.limit, 1, 500) ?? 100;
      const start = req.query.next === undefined ? 0 : decodeCursor(String(req.query.next));
      if (Number.isNaN(limit)) return sendError(res, 400, 'invalid_parameter', 'limit must be in [1, 500]', { param: 'limit' });
      if (start === null) return sendError(res, 400, 'invalid_parameter', 'next is not a valid cursor', { param: 'next' });
      const items = all[name]();
      const next = nextStart(state, name === 'users', start, limit, items.length);
      state.sendPage(res, name === 'users', {
        success: true,
        data: { records: items.slice(start, start + limit), next: next === null ? null : encodeCursor(next) },
      });
    });
  }
  return (res, status, code, message) => sendError(res, status, code, message);
}

// Why a request's HMAC signature is not acceptable, or null if it is.
function signatureProblem(req, secret) {
  const timestamp = req.get('x-timestamp');
  const signature = req.get('x-signature');
  if (!timestamp || !/^\d+$/.test(timestamp)) return 'x-timestamp (unix seconds) is required';
  if (Math.abs(Date.now() / 1000 - Number(timestamp)) > 300) return 'x-timestamp is more than 300 s away';
  if (!signature) return 'x-signature is required';
  const body = Buffer.isBuffer(req.body) ? req.body : Buffer.alloc(0);
  const canonical = [
    req.method, req.originalUrl, timestamp, crypto.createHash('sha256').update(body).digest('hex'),
  ].join('\n');
  const expected = `v1=${crypto.createHmac('sha256', secret).update(canonical).digest('base64')}`;
  const a = Buffer.from(signature);
  const b = Buffer.from(expected);
  return a.length === b.length && crypto.timingSafeEqual(a, b) ? null : 'x-signature does not match';
}

// name -> async (app, state) => the shape's error sender (res, status, code, message).
export const SHAPES = { paged, offset, oidc, password, apikey };
