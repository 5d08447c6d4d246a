// The in-memory directory behind scim_server.mjs: SCIM User and Group
// resources generated deterministically from a user count (README.md beside
// this file describes them), kept as plain SCIM JSON objects in index order.
import { DEPARTMENTS, isoSeconds } from '../rest/dataset.mjs';

export const CORE_USER = 'urn:ietf:params:scim:schemas:core:2.0:User';
export const CORE_GROUP = 'urn:ietf:params:scim:schemas:core:2.0:Group';
export const ENTERPRISE = 'urn:ietf:params:scim:schemas:extension:enterprise:2.0:User';

// User i was created and last modified at 2024-01-01T00:00:00Z plus i
// minutes, group j at 2024-01-01T00:00:00Z plus j minutes.
const BASE_TIME_MS = Date.UTC(2024, 0, 1);

export const userId = (i) => `u${String(i).padStart(6, '0')}`;
export const groupId = (j) => `g${String(j).padStart(4, '0')}`;

// One stored resource: its SCIM JSON (`raw`, what filters match against and
// what scimmy formats), the formatted copies made from it, and a version
// that changes with it.
class Entry {
  constructor(index, raw) {
    this.index = index;
    this.raw = raw;
    this.version = 0;
    this.formatted = new Map();  // attributes key -> formatted JSON object.
  }

  touch() {
    this.version += 1;
    this.formatted.clear();
  }
}

export class Directory {
  // `base` is the SCIM base URL (http://127.0.0.1:PORT/scim/v2), for $ref.
  constructor(count, base) {
    this.base = base;
    this.users = [];  // Entries, by index.
    this.groups = [];
    this.usersById = new Map();
    this.groupsById = new Map();
    this.generation = 0;  // Bumped on every change (filter caches).
    this.nextUser = count;
    for (let i = 0; i < count; ++i) this.addUser(this.generateUser(i), i);

    const g = Math.ceil(count / 50);
    this.nextGroup = g;
    const members = Array.from({ length: g }, () => []);
    for (let i = 0; i < count; ++i) {
      members[i % g].push(i);
      if (i % 7 === 0 && i % g !== 0) members[0].push(i);
    }
    for (let j = 0; j < g; ++j) {
      members[j].sort((a, b) => a - b);
      const when = isoSeconds(BASE_TIME_MS + j * 60_000);
      this.addGroup({
        schemas: [CORE_GROUP],
        id: groupId(j),
        externalId: `ext-${groupId(j)}`,
        displayName: `Group ${j}`,
        members: members[j].map((i) => this.memberOf(this.usersById.get(userId(i)).raw)),
        meta: { resourceType: 'Group', created: when, lastModified: when },
      }, j);
    }
  }

  generateUser(i) {
    const when = isoSeconds(BASE_TIME_MS + i * 60_000);
    const enterprise = { employeeNumber: `E${i}`, department: DEPARTMENTS[i % 10] };
    if (i > 0) {
      const manager = userId(Math.floor(i / 10));
      enterprise.manager = { value: manager, $ref: `${this.base}/Users/${manager}` };
    }
    return {
      schemas: [CORE_USER, ENTERPRISE],
      id: userId(i),
      externalId: `ext-${userId(i)}`,
      userName: `user${i}`,
      name: { givenName: `First${i}`, familyName: `Last${i}` },
      emails: [{ value: `user${i}@example.com`, type: 'work', primary: true }],
      active: true,
      [ENTERPRISE]: enterprise,
      meta: { resourceType: 'User', created: when, lastModified: when },
    };
  }

  memberOf(userRaw) {
    return { value: userRaw.id, $ref: `${this.base}/Users/${userRaw.id}`, type: 'User', display: userRaw.userName };
  }

  addUser(raw, index) {
    const entry = new Entry(index, raw);
    this.users.push(entry);
    this.usersById.set(raw.id, entry);
    this.generation += 1;
    return entry;
  }

  addGroup(raw, index) {
    const entry = new Entry(index, raw);
    this.groups.push(entry);
    this.groupsById.set(raw.id, entry);
    this.generation += 1;
    return entry;
  }

  changed(entry) {
    entry.touch();
    this.generation += 1;
  }

  // The first `count` users present: department "Changed", givenName
  // "Changed{i}", lastModified a second from now (whole seconds).
  modify(count) {
    const when = isoSeconds(Date.now() + 1000);
    const changed = this.users.slice(0, count);
    for (const u of changed) {
      u.raw[ENTERPRISE] = { ...(u.raw[ENTERPRISE] ?? {}), department: 'Changed' };
      u.raw.name = { ...(u.raw.name ?? {}), givenName: `Changed${u.index}` };
      u.raw.meta.lastModified = when;
      this.changed(u);
    }
    return changed.length;
  }

  // Removes the last `count` users present, and their group memberships.
  delete(count) {
    const removed = this.users.slice(Math.max(0, this.users.length - count));
    this.removeUsers(removed.map((u) => u.raw.id));
    return removed.length;
  }

  // Removes users by id; groups that lose members get lastModified = now + 1 s.
  removeUsers(ids) {
    const gone = new Set(ids.filter((id) => this.usersById.has(id)));
    if (gone.size === 0) return;
    this.users = this.users.filter((u) => !gone.has(u.raw.id));
    for (const id of gone) this.usersById.delete(id);
    const when = isoSeconds(Date.now() + 1000);
    for (const g of this.groups) {
      const members = g.raw.members ?? [];
      const kept = members.filter((m) => !gone.has(m.value));
      if (kept.length !== members.length) {
        g.raw.members = kept;
        g.raw.meta.lastModified = when;
        this.changed(g);
      }
    }
    this.generation += 1;
  }

  removeGroup(id) {
    if (!this.groupsById.delete(id)) return false;
    this.groups = this.groups.filter((g) => g.raw.id !== id);
    this.generation += 1;
    return true;
  }
}
