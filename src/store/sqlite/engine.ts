import type { Database, Statement } from 'better-sqlite3';
import { StoreError, StoreErrorCode } from '../errors.js';
import type { Compare, KeyValue, RangeResult, TxnOp, TxnOpResult, TxnRequest, TxnResult } from '../types.js';
import { byteRange } from '../validate.js';

/**
 * The synchronous heart of the SQLite backend: a kine-style revision log (`log`, one row per change,
 * stamped with the global revision) plus a materialised current view (`kv`) so reads at "now" stay
 * O(log n). Both are written in the same SQLite transaction, so they never disagree. Every method
 * here runs inside a transaction opened by the caller (SqliteStore); nothing here commits.
 */

const FORMAT = 1;

const SCHEMA = `
CREATE TABLE IF NOT EXISTS meta (name TEXT PRIMARY KEY, value INTEGER NOT NULL);
CREATE TABLE IF NOT EXISTS log (
  revision INTEGER NOT NULL,
  sub INTEGER NOT NULL,
  key BLOB NOT NULL,
  value TEXT NOT NULL,
  create_revision INTEGER NOT NULL,
  version INTEGER NOT NULL,
  lease INTEGER NOT NULL,
  deleted INTEGER NOT NULL,
  PRIMARY KEY (revision, sub)
) WITHOUT ROWID;
CREATE INDEX IF NOT EXISTS log_key ON log (key, revision);
CREATE TABLE IF NOT EXISTS kv (
  key BLOB PRIMARY KEY,
  value TEXT NOT NULL,
  create_revision INTEGER NOT NULL,
  mod_revision INTEGER NOT NULL,
  version INTEGER NOT NULL,
  lease INTEGER NOT NULL
) WITHOUT ROWID;
CREATE INDEX IF NOT EXISTS kv_lease ON kv (lease) WHERE lease != 0;
CREATE TABLE IF NOT EXISTS leases (id INTEGER PRIMARY KEY, ttl INTEGER NOT NULL, expires_at INTEGER NOT NULL);
`;

interface Row {
  key: Buffer;
  value: string;
  create_revision: number;
  mod_revision: number;
  version: number;
  lease: number;
}

export interface LogRow extends Row {
  deleted: number;
}

function toKv(row: Row): KeyValue {
  return {
    key: row.key.toString('utf8'),
    value: row.value,
    createRevision: row.create_revision,
    modRevision: row.mod_revision,
    version: row.version,
    lease: String(row.lease),
  };
}

export function logRowToKv(row: LogRow): KeyValue {
  return toKv(row);
}

function leaseNumber(lease: string | undefined): number {
  if (lease === undefined || lease === '0' || lease === '') return 0;
  const n = Number(lease);
  if (!Number.isSafeInteger(n) || n <= 0) {
    throw new StoreError(StoreErrorCode.LeaseNotFound, `lease ${lease} not found`);
  }
  return n;
}

/** A write in progress: the revision is allocated on the first change, so a no-op txn keeps it. */
class WriteContext {
  private rev = 0;
  private sub = 0;
  constructor(private readonly engine: SqliteEngine) {}
  next(): { revision: number; sub: number } {
    if (this.rev === 0) this.rev = this.engine.bumpRevision();
    return { revision: this.rev, sub: this.sub++ };
  }
}

export class SqliteEngine {
  private readonly st: Record<string, Statement>;

  constructor(readonly db: Database) {
    this.initSchema();
    const s = (sql: string): Statement => db.prepare(sql);
    this.st = {
      getMeta: s('SELECT value FROM meta WHERE name = ?'),
      setMeta: s('INSERT INTO meta (name, value) VALUES (?, ?) ON CONFLICT(name) DO UPDATE SET value = excluded.value'),
      getKv: s('SELECT key, value, create_revision, mod_revision, version, lease FROM kv WHERE key = ?'),
      rangeKv: s('SELECT key, value, create_revision, mod_revision, version, lease FROM kv WHERE key >= ? AND key < ? ORDER BY key LIMIT ?'),
      rangeKvOpen: s('SELECT key, value, create_revision, mod_revision, version, lease FROM kv WHERE key >= ? ORDER BY key LIMIT ?'),
      countKv: s('SELECT count(*) AS n FROM kv WHERE key >= ? AND key < ?'),
      countKvOpen: s('SELECT count(*) AS n FROM kv WHERE key >= ?'),
      upsertKv: s(`INSERT INTO kv (key, value, create_revision, mod_revision, version, lease) VALUES (?, ?, ?, ?, ?, ?)
        ON CONFLICT(key) DO UPDATE SET value = excluded.value, mod_revision = excluded.mod_revision,
        version = excluded.version, lease = excluded.lease`),
      deleteKv: s('DELETE FROM kv WHERE key = ?'),
      appendLog: s('INSERT INTO log (revision, sub, key, value, create_revision, version, lease, deleted) VALUES (?, ?, ?, ?, ?, ?, ?, ?)'),
      historyAt: s(`SELECT l.key, l.value, l.create_revision, l.revision AS mod_revision, l.version, l.lease, l.deleted
        FROM log l JOIN (SELECT key, max(revision) AS r FROM log WHERE key >= ? AND key < ? AND revision <= ? GROUP BY key) m
        ON l.key = m.key AND l.revision = m.r ORDER BY l.key`),
      logAfter: s(`SELECT key, value, create_revision, revision AS mod_revision, version, lease, deleted
        FROM log WHERE revision > ? AND revision <= ? ORDER BY revision, sub`),
      leaseGet: s('SELECT id, ttl, expires_at FROM leases WHERE id = ?'),
      leaseInsert: s('INSERT INTO leases (id, ttl, expires_at) VALUES (?, ?, ?)'),
      leaseTouch: s('UPDATE leases SET expires_at = ? WHERE id = ?'),
      leaseDelete: s('DELETE FROM leases WHERE id = ?'),
      leaseExpired: s('SELECT id FROM leases WHERE expires_at <= ? ORDER BY expires_at LIMIT 100'),
      leaseKeys: s('SELECT key FROM kv WHERE lease = ? ORDER BY key'),
      compactLog: s(`DELETE FROM log WHERE revision < ? AND (deleted = 1 OR EXISTS (
        SELECT 1 FROM log l2 WHERE l2.key = log.key AND l2.revision > log.revision AND l2.revision <= ?))`),
    };
  }

  private initSchema(): void {
    const tables = this.db.prepare("SELECT name FROM sqlite_master WHERE type = 'table'").all() as { name: string }[];
    const names = new Set(tables.map((t) => t.name));
    if (names.size > 0 && !names.has('meta')) {
      throw new StoreError(StoreErrorCode.Corrupt, 'the database holds tables but is not a Berth store');
    }
    this.db.exec(SCHEMA);
    const format = this.db.prepare("SELECT value FROM meta WHERE name = 'format'").get() as { value: number } | undefined;
    if (format === undefined) {
      this.db.prepare("INSERT INTO meta (name, value) VALUES ('format', ?), ('revision', 1), ('compact_revision', 0), ('lease_seq', 0)").run(FORMAT);
    } else if (format.value !== FORMAT) {
      throw new StoreError(StoreErrorCode.Corrupt, `store format ${format.value} is not supported (this Berth reads format ${FORMAT})`);
    }
  }

  meta(name: string): number {
    return (this.st.getMeta!.get(name) as { value: number } | undefined)?.value ?? 0;
  }

  revision(): number {
    return this.meta('revision');
  }

  compactRevision(): number {
    return this.meta('compact_revision');
  }

  bumpRevision(): number {
    const rev = this.revision() + 1;
    this.st.setMeta!.run('revision', rev);
    return rev;
  }

  range(key: string, opts: { prefix?: boolean; end?: string; limit?: number; revision?: number; countOnly?: boolean }): RangeResult {
    const current = this.revision();
    const at = opts.revision && opts.revision > 0 ? opts.revision : 0;
    if (at > current) {
      throw new StoreError(StoreErrorCode.FutureRevision, `revision ${at} is in the future (current revision is ${current})`);
    }
    const compacted = this.compactRevision();
    if (at > 0 && at < compacted) {
      throw new StoreError(StoreErrorCode.Compacted, `revision ${at} has been compacted (compacted to ${compacted})`, { compactRevision: compacted });
    }
    const { start, end } = byteRange(key, opts);
    const limit = opts.limit && opts.limit > 0 ? opts.limit : -1;
    if (at === 0 || at === current) {
      if (end === undefined) {
        const row = this.st.getKv!.get(start) as Row | undefined;
        const kvs = row && !opts.countOnly ? [toKv(row)] : [];
        return { kvs, count: row ? 1 : 0, more: false, revision: current };
      }
      const count = (end === null ? this.st.countKvOpen!.get(start) : this.st.countKv!.get(start, end)) as { n: number };
      if (opts.countOnly) return { kvs: [], count: count.n, more: false, revision: current };
      const rows = (end === null ? this.st.rangeKvOpen!.all(start, limit) : this.st.rangeKv!.all(start, end, limit)) as Row[];
      return { kvs: rows.map(toKv), count: count.n, more: rows.length < count.n, revision: current };
    }
    // A historical read: the newest log row per key at or below the revision.
    // Keys are UTF-8, which never contains 0xff, so four 0xff bytes stand for the end of the keyspace.
    const upper = end === undefined ? Buffer.concat([start, Buffer.from([0])]) : (end ?? Buffer.from([0xff, 0xff, 0xff, 0xff]));
    const rows = (this.st.historyAt!.all(start, upper, at) as LogRow[]).filter((r) => r.deleted === 0);
    const kvs = opts.countOnly ? [] : (limit > 0 ? rows.slice(0, limit) : rows).map(toKv);
    return { kvs, count: rows.length, more: limit > 0 && rows.length > limit, revision: current };
  }

  txn(req: TxnRequest): TxnResult {
    const ctx = new WriteContext(this);
    const succeeded = req.compare.every((c) => this.compare(c));
    const ops = succeeded ? req.success : (req.failure ?? []);
    const results = ops.map((op) => this.apply(ctx, op));
    return { succeeded, revision: this.revision(), results };
  }

  private apply(ctx: WriteContext, op: TxnOp): TxnOpResult {
    if (op.type === 'put') return { type: 'put', ...this.putOne(ctx, op.key, op.value, leaseNumber(op.lease)) };
    if (op.type === 'delete') return { type: 'delete', ...this.deleteRange(ctx, op.key, op) };
    const r = this.range(op.key, op);
    return { type: 'range', kvs: r.kvs, count: r.count, more: r.more };
  }

  private compare(c: Compare): boolean {
    const row = this.st.getKv!.get(Buffer.from(c.key, 'utf8')) as Row | undefined;
    let actual: string | number;
    switch (c.target) {
      case 'value':
        if (!row) return false;
        actual = row.value;
        break;
      case 'mod':
        actual = row?.mod_revision ?? 0;
        break;
      case 'create':
        actual = row?.create_revision ?? 0;
        break;
      case 'version':
        actual = row?.version ?? 0;
        break;
      case 'lease':
        actual = row?.lease ?? 0;
        break;
    }
    if (typeof actual === 'string') {
      // etcd compares values as bytes, not as UTF-16 code units.
      const order = Buffer.compare(Buffer.from(actual, 'utf8'), Buffer.from(String(c.value), 'utf8'));
      return c.op === '=' ? order === 0 : c.op === '!=' ? order !== 0 : c.op === '<' ? order < 0 : order > 0;
    }
    const expected = Number(c.value);
    switch (c.op) {
      case '=':
        return actual === expected;
      case '!=':
        return actual !== expected;
      case '<':
        return actual < expected;
      case '>':
        return actual > expected;
    }
  }

  putOne(ctx: WriteContext, key: string, value: string, lease: number): { prevKv?: KeyValue } {
    if (lease !== 0 && !this.st.leaseGet!.get(lease)) {
      throw new StoreError(StoreErrorCode.LeaseNotFound, `lease ${lease} not found`);
    }
    const k = Buffer.from(key, 'utf8');
    const prev = this.st.getKv!.get(k) as Row | undefined;
    const { revision, sub } = ctx.next();
    const create = prev ? prev.create_revision : revision;
    const version = prev ? prev.version + 1 : 1;
    this.st.appendLog!.run(revision, sub, k, value, create, version, lease, 0);
    this.st.upsertKv!.run(k, value, create, revision, version, lease);
    return prev ? { prevKv: toKv(prev) } : {};
  }

  deleteRange(ctx: WriteContext, key: string, opts: { prefix?: boolean; end?: string }): { deleted: number; prevKvs: KeyValue[] } {
    const { start, end } = byteRange(key, opts);
    let rows: Row[];
    if (end === undefined) {
      const row = this.st.getKv!.get(start) as Row | undefined;
      rows = row ? [row] : [];
    } else {
      rows = (end === null ? this.st.rangeKvOpen!.all(start, -1) : this.st.rangeKv!.all(start, end, -1)) as Row[];
    }
    for (const row of rows) {
      const { revision, sub } = ctx.next();
      this.st.appendLog!.run(revision, sub, row.key, '', row.create_revision, row.version, row.lease, 1);
      this.st.deleteKv!.run(row.key);
    }
    return { deleted: rows.length, prevKvs: rows.map(toKv) };
  }

  newContext(): WriteContext {
    return new WriteContext(this);
  }

  grantLease(ttl: number, now: number): { id: string; ttl: number } {
    const id = this.meta('lease_seq') + 1;
    this.st.setMeta!.run('lease_seq', id);
    this.st.leaseInsert!.run(id, ttl, now + ttl * 1000);
    return { id: String(id), ttl };
  }

  keepAlive(leaseId: string, now: number): number {
    const id = leaseNumber(leaseId);
    const lease = this.st.leaseGet!.get(id) as { ttl: number; expires_at: number } | undefined;
    if (!lease || lease.expires_at <= now) {
      throw new StoreError(StoreErrorCode.LeaseNotFound, `lease ${leaseId} not found or expired`);
    }
    this.st.leaseTouch!.run(now + lease.ttl * 1000, id);
    return lease.ttl;
  }

  /** Revokes a lease: one revision deleting all its keys (as etcd does). */
  revokeLease(leaseId: string): void {
    const id = leaseNumber(leaseId);
    if (!this.st.leaseGet!.get(id)) throw new StoreError(StoreErrorCode.LeaseNotFound, `lease ${leaseId} not found`);
    const ctx = this.newContext();
    for (const { key } of this.st.leaseKeys!.all(id) as { key: Buffer }[]) {
      this.deleteRange(ctx, key.toString('utf8'), {});
    }
    this.st.leaseDelete!.run(id);
  }

  leaseInfo(leaseId: string, now: number): { id: string; ttl: number; remaining: number; keys: string[] } {
    const id = leaseNumber(leaseId);
    const lease = this.st.leaseGet!.get(id) as { ttl: number; expires_at: number } | undefined;
    if (!lease || lease.expires_at <= now) return { id: leaseId, ttl: lease?.ttl ?? 0, remaining: -1, keys: [] };
    const keys = (this.st.leaseKeys!.all(id) as { key: Buffer }[]).map((r) => r.key.toString('utf8'));
    return { id: leaseId, ttl: lease.ttl, remaining: Math.ceil((lease.expires_at - now) / 1000), keys };
  }

  extendLeases(now: number): void {
    this.db.prepare('UPDATE leases SET expires_at = max(expires_at, ? + ttl * 1000)').run(now);
  }

  expiredLeases(now: number): string[] {
    return (this.st.leaseExpired!.all(now) as { id: number }[]).map((r) => String(r.id));
  }

  compact(revision: number): void {
    if (revision === 0) return;
    const current = this.revision();
    if (revision > current) {
      throw new StoreError(StoreErrorCode.FutureRevision, `cannot compact to ${revision}: current revision is ${current}`);
    }
    const done = this.compactRevision();
    if (revision <= done) {
      throw new StoreError(StoreErrorCode.Compacted, `revision ${revision} has already been compacted (compacted to ${done})`, { compactRevision: done });
    }
    this.st.compactLog!.run(revision, revision);
    this.st.setMeta!.run('compact_revision', revision);
  }

  /** Log rows with after < revision ≤ upTo, in order: what watchers stream. */
  logAfter(after: number, upTo: number): LogRow[] {
    return this.st.logAfter!.all(after, upTo) as LogRow[];
  }
}
