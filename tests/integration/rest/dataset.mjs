// The directory every API shape serves, generated deterministically from a
// user count, and the paging and rate-limit helpers the shapes share.
// See README.md.
import { Buffer } from 'node:buffer';

export const DEPARTMENTS = [
  'Engineering', 'Sales', 'Marketing', 'Finance', 'Human Resources',
  'Legal', 'Support', 'Operations', 'Product', 'Research',
];

// User i was last updated at 2024-01-01T00:00:00Z plus i minutes.
const BASE_TIME_MS = Date.UTC(2024, 0, 1);

// ISO-8601 UTC with whole seconds: 2024-01-01T00:01:00Z.
export function isoSeconds(ms) {
  return new Date(Math.floor(ms / 1000) * 1000).toISOString().replace('.000Z', 'Z');
}

const userId = (i) => `u${String(i).padStart(6, '0')}`;
const groupId = (j) => `g${String(j).padStart(4, '0')}`;

export class Dataset {
  constructor(count) {
    this.users = [];
    for (let i = 0; i < count; ++i) {
      this.users.push({
        index: i,
        id: userId(i),
        email: `user${i}@example.com`,
        first: `First${i}`,
        last: `Last${i}`,
        department: DEPARTMENTS[i % 10],
        manager: i > 0 ? userId(Math.floor(i / 10)) : null,
        active: true,
        updated_at: isoSeconds(BASE_TIME_MS + i * 60_000),
      });
    }
    const groupCount = Math.ceil(count / 50);
    this.groups = [];
    for (let j = 0; j < groupCount; ++j) this.groups.push({ id: groupId(j), name: `Group ${j}` });
    this.memberships_ = null;
  }

  // Flat {user, group} pairs of the users present, by user: user i is in
  // group i % groups, and also in group 0 when i % 7 == 0.
  memberships() {
    if (this.memberships_ === null) {
      const g = this.groups.length;
      this.memberships_ = [];
      for (const u of this.users) {
        this.memberships_.push({ user: u.id, group: groupId(u.index % g) });
        if (u.index % 7 === 0 && u.index % g !== 0) {
          this.memberships_.push({ user: u.id, group: groupId(0) });
        }
      }
    }
    return this.memberships_;
  }

  // The first `count` users move to department "Changed", updated a second
  // from now (whole seconds, so strictly after any earlier sync's clock).
  modify(count) {
    const when = isoSeconds(Date.now() + 1000);
    const changed = this.users.slice(0, count);
    for (const u of changed) {
      u.department = 'Changed';
      u.updated_at = when;
    }
    return changed.length;
  }

  // Removes the last `count` users; their memberships go with them.
  delete(count) {
    const removed = this.users.splice(Math.max(0, this.users.length - count));
    this.memberships_ = null;
    return removed.length;
  }
}

// Opaque cursors: base64url of a JSON position.
export function encodeCursor(offset) {
  return Buffer.from(JSON.stringify({ o: offset })).toString('base64url');
}

// The offset in a cursor, or null if it is not one of ours.
export function decodeCursor(cursor) {
  try {
    const o = JSON.parse(Buffer.from(cursor, 'base64url').toString('utf8')).o;
    return Number.isInteger(o) && o >= 0 ? o : null;
  } catch {
    return null;
  }
}

// Parses a non-negative integer query parameter; undefined when absent, NaN
// when malformed or out of [min, max].
export function intParam(value, min, max) {
  if (value === undefined) return undefined;
  if (typeof value !== 'string' || !/^\d+$/.test(value)) return NaN;
  const n = Number(value);
  return n >= min && n <= max ? n : NaN;
}

// The loop_cursor fault on page-numbered and offset chains: with pages
// numbered from 0, page 3 and later are served as pages 1, 2, 1, 2, ...
export function loopedPageIndex(index) {
  return index >= 3 ? 1 + ((index - 1) % 2) : index;
}

// A token bucket: `rate` tokens a second, at most `burst` saved up.
export class TokenBucket {
  constructor(rate, burst) {
    this.rate = rate;
    this.burst = burst;
    this.tokens = burst;
    this.last = Date.now();
  }

  // 0 if a request may go now, else the whole seconds to wait (Retry-After).
  take() {
    const now = Date.now();
    this.tokens = Math.min(this.burst, this.tokens + ((now - this.last) / 1000) * this.rate);
    this.last = now;
    if (this.tokens >= 1) {
      this.tokens -= 1;
      return 0;
    }
    return Math.max(1, Math.ceil((1 - this.tokens) / this.rate));
  }
}
