import { chmodSync, closeSync, existsSync, mkdirSync, openSync, statSync } from 'node:fs';
import { dirname } from 'node:path';
import Database from 'better-sqlite3';
import { StoreError, StoreErrorCode, isStoreError } from '../errors.js';
import type {
  DeleteOptions,
  DeleteResult,
  KeyValue,
  Lease,
  LeaseInfo,
  PutOptions,
  PutResult,
  RangeOptions,
  RangeResult,
  Store,
  TxnRequest,
  TxnResult,
  Watch,
  WatchEvent,
  WatchOptions,
} from '../types.js';
import { byteRange, checkKey, checkLeaseId, checkRevision, checkTtl, checkTxn, checkValue } from '../validate.js';
import { WatchQueue, closedError } from '../watch-queue.js';
import { SqliteEngine, logRowToKv, type LogRow } from './engine.js';

export interface SqliteStoreOptions {
  /** A file path, or ':memory:' for a private in-process store. */
  path: string;
  /** How often expired leases are reaped and other processes' writes are picked up (ms). */
  tickMs?: number;
  /** Keep this many revisions of history; older ones are compacted automatically (0: never). */
  retainRevisions?: number;
  /** `full` fsyncs every commit (survives power loss); `normal` survives a process kill. */
  synchronous?: 'full' | 'normal';
}

interface Pending {
  run: () => unknown;
  resolve: (value: unknown) => void;
  reject: (err: unknown) => void;
}

interface SqliteWatcher {
  queue: WatchQueue;
  start: Buffer;
  end: Buffer | null | undefined;
  /** Revision up to which the log has been scanned for this watcher. */
  scanned: number;
}

function tightenMode(path: string): void {
  try {
    if ((statSync(path).mode & 0o077) !== 0) chmodSync(path, 0o600);
  } catch {
    // Not ours to change (another owner, read-only mount): opening says what is wrong.
  }
}

/** Turns SQLite's own failures into the store's coded errors, naming the file. */
function mapSqliteError(err: unknown, path: string): unknown {
  if (isStoreError(err)) return err;
  const code = (err as { code?: string }).code ?? '';
  const msg = err instanceof Error ? err.message : String(err);
  if (code === 'SQLITE_NOTADB' || code === 'SQLITE_CORRUPT' || code.startsWith('SQLITE_CORRUPT')) {
    return new StoreError(StoreErrorCode.Corrupt, `${path} is not a valid store database: ${msg}`, { cause: err });
  }
  if (code.startsWith('SQLITE_READONLY') || code === 'SQLITE_CANTOPEN' || code === 'SQLITE_PERM' || code === 'EACCES' || code === 'EROFS' || code === 'EPERM') {
    return new StoreError(StoreErrorCode.ReadOnly, `cannot write the store at ${path}: ${msg}`, { cause: err });
  }
  if (code === 'SQLITE_BUSY' || code === 'SQLITE_FULL' || code === 'SQLITE_IOERR' || code.startsWith('SQLITE_IOERR')) {
    return new StoreError(StoreErrorCode.Unavailable, `store at ${path} failed: ${msg}`, { cause: err, retryable: true });
  }
  return err;
}

/**
 * The embedded backend. Writes are queued and committed together in one IMMEDIATE transaction per
 * event-loop turn (group commit), each in its own savepoint so one bad write cannot fail its
 * neighbours; every promise resolves only after the commit is durable. Watchers read the log, so
 * writes by another process on the same file are seen too (on the next tick).
 */
export class SqliteStore implements Store {
  readonly description: string;
  private readonly db: Database.Database;
  private readonly engine: SqliteEngine;
  private queue: Pending[] = [];
  private flushScheduled = false;
  private readonly watchers = new Set<SqliteWatcher>();
  private readonly timer: NodeJS.Timeout;
  private closed = false;
  private lastSeenRevision = 0;
  private lastAutoCompact = 0;
  private readonly retain: number;

  constructor(private readonly options: SqliteStoreOptions) {
    this.description = options.path === ':memory:' ? 'memory://' : `sqlite://${options.path}`;
    this.retain = options.retainRevisions ?? 100_000;
    try {
      if (options.path !== ':memory:') {
        mkdirSync(dirname(options.path), { recursive: true });
        // Owner-only from the first byte: the store holds config secrets and token hashes, and
        // SQLite gives its -wal and -shm files the database file's mode.
        if (!existsSync(options.path)) closeSync(openSync(options.path, 'a', 0o600));
        else tightenMode(options.path);
      }
      this.db = new Database(options.path, { timeout: 5000 });
      if (options.path !== ':memory:') this.db.pragma('journal_mode = WAL');
      this.db.pragma(`synchronous = ${options.synchronous === 'normal' ? 'NORMAL' : 'FULL'}`);
      this.engine = new SqliteEngine(this.db);
      // Also a write probe: a read-only file is refused now, not on the first acknowledged write.
      // Leases get their full TTL again, as etcd grants on restart: time the store was closed
      // must not expire every holder at once before it could send a keep-alive.
      this.db.transaction(() => this.engine.extendLeases(Date.now())).immediate();
    } catch (err) {
      throw mapSqliteError(err, options.path);
    }
    this.lastSeenRevision = this.engine.revision();
    this.timer = setInterval(() => this.tick(), options.tickMs ?? 100);
    this.timer.unref();
  }

  /** Runs reads in one deferred transaction: one snapshot, even while another process writes. */
  private read<T>(fn: () => T): Promise<T> {
    if (this.closed) return Promise.reject(closedError(this.description));
    try {
      return Promise.resolve(this.db.transaction(fn).deferred());
    } catch (err) {
      return Promise.reject(mapSqliteError(err, this.options.path));
    }
  }

  private write<T>(fn: () => T): Promise<T> {
    if (this.closed) return Promise.reject(closedError(this.description));
    return new Promise<T>((resolve, reject) => {
      this.queue.push({ run: fn, resolve: resolve as (v: unknown) => void, reject });
      if (!this.flushScheduled) {
        this.flushScheduled = true;
        setImmediate(() => this.flush());
      }
    });
  }

  private flush(): void {
    this.flushScheduled = false;
    const batch = this.queue;
    this.queue = [];
    if (batch.length === 0) return;
    const outcomes: { ok: boolean; value: unknown }[] = [];
    try {
      this.db
        .transaction(() => {
          for (const op of batch) {
            try {
              outcomes.push({ ok: true, value: this.db.transaction(op.run)() });
            } catch (err) {
              outcomes.push({ ok: false, value: mapSqliteError(err, this.options.path) });
            }
          }
        })
        .immediate();
    } catch (err) {
      const mapped = mapSqliteError(err, this.options.path);
      for (const op of batch) op.reject(mapped);
      return;
    }
    batch.forEach((op, i) => {
      const o = outcomes[i];
      if (o?.ok) op.resolve(o.value);
      else op.reject(o?.value);
    });
    this.pump();
  }

  private tick(): void {
    if (this.closed) return;
    try {
      const now = Date.now();
      const expired = this.engine.expiredLeases(now);
      for (const id of expired) {
        this.write(() => {
          // Re-checked inside the write: a keep-alive may have landed first.
          if (this.engine.expiredLeases(Date.now()).includes(id)) this.engine.revokeLease(id);
        }).catch(() => undefined);
      }
      if (this.retain > 0 && now - this.lastAutoCompact > 60_000) {
        this.lastAutoCompact = now;
        const target = this.engine.revision() - this.retain;
        if (target > this.engine.compactRevision()) this.compact(target).catch(() => undefined);
      }
      // Writes by another process on the same file.
      if (this.engine.revision() !== this.lastSeenRevision) this.pump();
    } catch {
      // A failing tick (disk gone) shows up on the next real call as a coded error.
    }
  }

  /** Streams new log rows to every watcher that is behind. */
  private pump(): void {
    if (this.closed) return;
    try {
      this.db.transaction(() => this.pumpSnapshot()).deferred();
    } catch (err) {
      for (const w of [...this.watchers]) w.queue.fail(mapSqliteError(err, this.options.path));
    }
  }

  private pumpSnapshot(): void {
    const current = this.engine.revision();
    this.lastSeenRevision = current;
    const compacted = this.engine.compactRevision();
    for (const w of this.watchers) {
      if (w.scanned >= current) continue;
      if (w.scanned + 1 < compacted) {
        w.queue.fail(
          new StoreError(StoreErrorCode.Compacted, `watch from revision ${w.scanned + 1} failed: history is compacted to ${compacted}`, { compactRevision: compacted }),
        );
        continue;
      }
      // Bounded slices keep one slow catch-up from holding the event loop.
      const upTo = Math.min(current, w.scanned + 10_000);
      const events: WatchEvent[] = [];
      for (const row of this.engine.logAfter(w.scanned, upTo)) {
        if (!inRange(row, w.start, w.end)) continue;
        events.push(toEvent(row));
      }
      w.scanned = upTo;
      const last = events[events.length - 1];
      if (last) w.queue.push({ events, revision: last.kv.modRevision });
      if (upTo < current) setImmediate(() => this.pump());
    }
  }

  get(key: string, options: { revision?: number } = {}): Promise<KeyValue | undefined> {
    return this.range(key, options).then((r) => r.kvs[0]);
  }

  range(key: string, options: RangeOptions = {}): Promise<RangeResult> {
    return this.read(() => {
      checkRevision('revision', options.revision);
      return this.engine.range(key, options);
    });
  }

  put(key: string, value: string, options: PutOptions = {}): Promise<PutResult> {
    try {
      checkKey(key);
      checkValue(key, value);
      if (options.lease) checkLeaseId(options.lease);
    } catch (err) {
      return Promise.reject(err);
    }
    return this.write(() => {
      const r = this.engine.txn({ compare: [], success: [{ type: 'put', key, value, ...(options.lease ? { lease: options.lease } : {}) }] });
      const first = r.results[0];
      return first?.type === 'put' && first.prevKv ? { revision: r.revision, prevKv: first.prevKv } : { revision: r.revision };
    });
  }

  delete(key: string, options: DeleteOptions = {}): Promise<DeleteResult> {
    try {
      byteRange(key, options);
    } catch (err) {
      return Promise.reject(err);
    }
    return this.write(() => {
      const r = this.engine.txn({ compare: [], success: [{ type: 'delete', key, ...options }] });
      const first = r.results[0];
      return first?.type === 'delete'
        ? { revision: r.revision, deleted: first.deleted, prevKvs: first.prevKvs }
        : { revision: r.revision, deleted: 0, prevKvs: [] };
    });
  }

  txn(request: TxnRequest): Promise<TxnResult> {
    try {
      checkTxn(request);
    } catch (err) {
      return Promise.reject(err);
    }
    // A transaction that can only read needs no write lock and no place in the commit queue.
    const readOnly = [...request.success, ...(request.failure ?? [])].every((op) => op.type === 'range');
    if (readOnly) return this.read(() => this.engine.txn(request));
    return this.write(() => this.engine.txn(request));
  }

  async watch(key: string, options: WatchOptions = {}): Promise<Watch> {
    if (this.closed) throw closedError(this.description);
    checkRevision('startRevision', options.startRevision);
    const { start, end } = byteRange(key, options);
    const from = options.startRevision && options.startRevision > 0 ? options.startRevision - 1 : this.engine.revision();
    const watcher: SqliteWatcher = {
      start,
      end,
      scanned: from,
      queue: new WatchQueue(from, () => this.watchers.delete(watcher)),
    };
    this.watchers.add(watcher);
    if (from < this.engine.revision() || from + 1 < this.engine.compactRevision()) setImmediate(() => this.pump());
    return watcher.queue;
  }

  grantLease(ttlSeconds: number): Promise<Lease> {
    try {
      checkTtl(ttlSeconds);
    } catch (err) {
      return Promise.reject(err);
    }
    return this.write(() => this.engine.grantLease(ttlSeconds, Date.now()));
  }

  keepAliveOnce(leaseId: string): Promise<number> {
    return this.write(() => this.engine.keepAlive(leaseId, Date.now()));
  }

  revokeLease(leaseId: string): Promise<void> {
    return this.write(() => this.engine.revokeLease(leaseId));
  }

  leaseInfo(leaseId: string): Promise<LeaseInfo> {
    return this.read(() => this.engine.leaseInfo(leaseId, Date.now()));
  }

  compact(revision: number): Promise<void> {
    try {
      checkRevision('revision', revision);
    } catch (err) {
      return Promise.reject(err);
    }
    return this.write(() => this.engine.compact(revision));
  }

  currentRevision(): Promise<number> {
    return this.read(() => this.engine.revision());
  }

  async close(): Promise<void> {
    if (this.closed) return;
    // Let queued writes commit: they may already be promised to callers.
    if (this.queue.length > 0) this.flush();
    this.closed = true;
    clearInterval(this.timer);
    for (const w of [...this.watchers]) w.queue.fail(closedError(this.description));
    this.db.close();
  }
}

function inRange(row: LogRow, start: Buffer, end: Buffer | null | undefined): boolean {
  if (end === undefined) return row.key.equals(start);
  if (Buffer.compare(row.key, start) < 0) return false;
  return end === null || Buffer.compare(row.key, end) < 0;
}

function toEvent(row: LogRow): WatchEvent {
  const kv = logRowToKv(row);
  if (row.deleted) return { type: 'delete', kv: { ...kv, value: '', createRevision: 0, version: 0, lease: '0' } };
  return { type: 'put', kv };
}
