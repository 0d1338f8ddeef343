import { createPrivateKey, X509Certificate } from 'node:crypto';
import { Etcd3, isRecoverableError, type IKeyValue, type IRequestOp, type IResponseOp, type Watcher } from 'etcd3';
import { StoreError, StoreErrorCode, isStoreError } from '../errors.js';
import type {
  Compare,
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
  TxnOp,
  TxnOpResult,
  TxnRequest,
  TxnResult,
  Watch,
  WatchOptions,
} from '../types.js';
import { byteRange, checkKey, checkLeaseId, checkRevision, checkTtl, checkTxn, checkValue } from '../validate.js';
import { WatchQueue, closedError } from '../watch-queue.js';

/** PEM contents: the cluster CA that signed etcd's certificate, and this client's certificate and key. */
export interface EtcdTls {
  ca: string;
  cert: string;
  key: string;
}

export interface EtcdStoreOptions {
  /** host:port pairs. */
  endpoints: string[];
  /**
   * TLS with a client certificate. etcd (--client-cert-auth) takes the certificate's CN as the user,
   * so no password is sent; without this the connection is plain and unauthenticated.
   */
  tls?: EtcdTls;
  /** Give up on an unreachable cluster after this long (ms), with a coded `store_unavailable`. */
  retryForMs?: number;
  /** Deadline for one call (ms). */
  callTimeoutMs?: number;
}

/**
 * The key `currentRevision` reads (count only; it never exists) to learn the revision with a
 * linearizable read. With etcd auth on, every user needs read permission on it, and on nothing else
 * outside its own prefixes (src/cluster/etcd-auth.ts grants it).
 */
export const REVISION_PROBE_KEY = '\u0000';

const TARGET = { value: 'Value', mod: 'Mod', create: 'Create', version: 'Version', lease: 'Lease' } as const;
const RESULT = { '=': 'Equal', '!=': 'NotEqual', '<': 'Less', '>': 'Greater' } as const;
const FIELD = { value: 'value', mod: 'mod_revision', create: 'create_revision', version: 'version', lease: 'lease' } as const;

function toKv(kv: IKeyValue): KeyValue {
  return {
    key: kv.key.toString('utf8'),
    value: kv.value.toString('utf8'),
    createRevision: Number(kv.create_revision),
    modRevision: Number(kv.mod_revision),
    version: Number(kv.version),
    lease: String(kv.lease ?? '0'),
  };
}

/** Fails early, naming the part, on credentials that are not PEM: grpc's own error names none. */
function checkTls(tls: EtcdTls): void {
  const check = (what: string, fn: () => unknown): void => {
    try {
      fn();
    } catch (err) {
      throw new StoreError(StoreErrorCode.InvalidArgument, `etcd TLS: ${what} is not valid PEM: ${(err as Error).message}`, { cause: err });
    }
  };
  check('the CA certificate', () => new X509Certificate(tls.ca));
  check('the client certificate', () => new X509Certificate(tls.cert));
  check('the client key', () => createPrivateKey(tls.key));
}

/** etcd turned the caller away: its certificate (handshake alerts from the server) or its user (etcd auth). */
const REFUSED = /alert bad certificate|alert certificate required|alert unknown ca|alert certificate (expired|revoked|unknown)|permission denied|user name not found|authentication failed|invalid auth token/i;
/** This client could not verify etcd's certificate against the CA it was given. */
const UNTRUSTED = /unable to verify|unable to get local issuer|self.signed certificate|certificate verify failed|certificate has expired|Hostname\/IP does not match|ERR_TLS_CERT_ALTNAME_INVALID/i;

/** Whether a failure happened before the request could reach etcd (nothing to double-apply). */
function neverSent(err: unknown): boolean {
  const msg = err instanceof Error ? err.message : String(err);
  // The client's per-host circuit breaker refuses calls to a host that keeps failing: not sent either.
  return /ECONNREFUSED|No connection established|failed to connect|connection refused|ENOTFOUND|EHOSTUNREACH|circuit breaker is open/i.test(msg);
}

function rangeEnd(key: string, opts: { prefix?: boolean; end?: string }): { key: Buffer; range_end?: Buffer } {
  const { start, end } = byteRange(key, opts);
  if (end === undefined) return { key: start };
  // etcd spells "to the end of the keyspace" as a range_end of one zero byte, and "from the start"
  // as a key of one zero byte (an empty key is refused).
  return { key: start.length === 0 ? Buffer.from([0]) : start, range_end: end ?? Buffer.from([0]) };
}

/**
 * The real etcd (v3 API) through the maintained `etcd3` client. Calls go to etcd's raw RPCs rather
 * than the client's builders, so revisions, prev-kvs and txn results keep etcd's exact semantics;
 * every failure leaves this file as a StoreError.
 */
export class EtcdStore implements Store {
  readonly description: string;
  private readonly client: Etcd3;
  private closed = false;
  private readonly watches = new Set<WatchQueue>();

  constructor(private readonly options: EtcdStoreOptions) {
    this.description = `${options.tls ? 'etcd+tls' : 'etcd'}://${options.endpoints.join(',')}`;
    const timeout = options.callTimeoutMs ?? 5000;
    const tls = options.tls;
    if (tls) checkTls(tls);
    this.client = new Etcd3({
      hosts: options.endpoints.map((e) => `${tls ? 'https' : 'http'}://${e}`),
      ...(tls
        ? { credentials: { rootCertificate: Buffer.from(tls.ca), certChain: Buffer.from(tls.cert), privateKey: Buffer.from(tls.key) } }
        : {}),
      dialTimeout: timeout,
      defaultCallOptions: (ctx) => (ctx.isStream ? {} : { deadline: Date.now() + timeout }),
    });
  }

  /**
   * Runs one call, retrying with exponential backoff while the cluster is unreachable. A read is
   * retried on any transient failure. A write is retried only when it certainly never reached etcd
   * (the connection was refused): after a timeout it may have committed, and sending it again could
   * apply it twice, so the caller gets a non-retryable error saying the outcome is unknown.
   */
  private async call<T>(what: string, fn: () => Promise<T>, kind: 'read' | 'write' = 'read'): Promise<T> {
    if (this.closed) throw closedError(this.description);
    const deadline = Date.now() + (this.options.retryForMs ?? 10_000);
    let delay = 50;
    for (;;) {
      try {
        return await fn();
      } catch (err) {
        let mapped = this.mapError(err, what);
        if (kind === 'write' && mapped.retryable && !neverSent(err)) {
          mapped = new StoreError(StoreErrorCode.Unavailable, `${mapped.message} (the write may or may not have been applied)`, { cause: err, retryable: false });
        }
        const left = deadline - Date.now();
        if (!mapped.retryable || this.closed || left <= 0) throw mapped;
        await new Promise((r) => setTimeout(r, Math.min(delay, left)));
        delay = Math.min(delay * 2, 1000);
      }
    }
  }

  private mapError(err: unknown, what: string): StoreError {
    if (isStoreError(err)) return err;
    const msg = err instanceof Error ? err.message : String(err);
    const is = (s: string): boolean => msg.includes(s);
    if (is('required revision has been compacted')) return new StoreError(StoreErrorCode.Compacted, `${what}: ${msg}`, { cause: err });
    if (is('future revision')) return new StoreError(StoreErrorCode.FutureRevision, `${what}: ${msg}`, { cause: err });
    if (is('lease not found') || err?.constructor?.name === 'EtcdLeaseInvalidError') {
      return new StoreError(StoreErrorCode.LeaseNotFound, `${what}: lease not found (${msg})`, { cause: err });
    }
    if (REFUSED.test(msg)) {
      const who = this.options.tls ? "this client's certificate (is it signed by the cluster CA, and is its CN an etcd user with access to the key?)" : 'this client (etcd requires TLS client certificates?)';
      return new StoreError(StoreErrorCode.PermissionDenied, `${what}: etcd at ${this.options.endpoints.join(', ')} refused ${who}: ${msg}`, { cause: err });
    }
    if (this.options.tls && UNTRUSTED.test(msg)) {
      return new StoreError(StoreErrorCode.Unavailable, `${what}: etcd at ${this.options.endpoints.join(', ')} has a certificate this client does not trust (not signed by the given CA, or not for this address): ${msg}`, { cause: err, retryable: false });
    }
    if (is('request is too large')) return new StoreError(StoreErrorCode.ValueTooLarge, `${what}: ${msg}`, { cause: err });
    if (is('duplicate key') || is('key is not provided') || is('too many operations') || err?.constructor?.name === 'GRPCInvalidArgumentError') {
      return new StoreError(StoreErrorCode.InvalidArgument, `${what}: ${msg}`, { cause: err });
    }
    if (err instanceof Error && (isRecoverableError(err) || /unavailable|ECONNREFUSED|deadline|No connection|connect|circuit breaker/i.test(msg))) {
      return new StoreError(StoreErrorCode.Unavailable, `${what}: etcd at ${this.options.endpoints.join(', ')} is unreachable: ${msg}`, {
        cause: err,
        retryable: true,
      });
    }
    return new StoreError(StoreErrorCode.Unavailable, `${what}: etcd at ${this.options.endpoints.join(', ')} failed: ${msg}`, { cause: err, retryable: false });
  }

  async get(key: string, options: { revision?: number } = {}): Promise<KeyValue | undefined> {
    return (await this.range(key, options)).kvs[0];
  }

  async range(key: string, options: RangeOptions = {}): Promise<RangeResult> {
    checkRevision('revision', options.revision);
    const req = {
      ...rangeEnd(key, options),
      limit: options.limit ?? 0,
      revision: options.revision ?? 0,
      count_only: options.countOnly ?? false,
    };
    const res = await this.call(`range ${key}`, () => this.client.kv.range(req));
    return { kvs: res.kvs.map(toKv), count: Number(res.count), more: res.more, revision: Number(res.header.revision) };
  }

  async put(key: string, value: string, options: PutOptions = {}): Promise<PutResult> {
    checkKey(key);
    checkValue(key, value);
    if (options.lease) checkLeaseId(options.lease);
    const res = await this.call(
      `put ${key}`,
      () =>
        this.client.kv.put({ key: Buffer.from(key), value: Buffer.from(value), lease: options.lease ?? '0', prev_kv: true }),
      'write',
    );
    const out: PutResult = { revision: Number(res.header.revision) };
    if (res.prev_kv) out.prevKv = toKv(res.prev_kv);
    return out;
  }

  async delete(key: string, options: DeleteOptions = {}): Promise<DeleteResult> {
    const req = { ...rangeEnd(key, options), prev_kv: true };
    const res = await this.call(`delete ${key}`, () => this.client.kv.deleteRange(req), 'write');
    return { revision: Number(res.header.revision), deleted: Number(res.deleted), prevKvs: res.prev_kvs.map(toKv) };
  }

  async txn(request: TxnRequest): Promise<TxnResult> {
    checkTxn(request);
    const toOp = (op: TxnOp): IRequestOp => {
      if (op.type === 'put') {
        checkKey(op.key);
        checkValue(op.key, op.value);
        return { request_put: { key: Buffer.from(op.key), value: Buffer.from(op.value), lease: op.lease ?? '0', prev_kv: true } };
      }
      if (op.type === 'delete') return { request_delete_range: { ...rangeEnd(op.key, op), prev_kv: true } };
      return { request_range: { ...rangeEnd(op.key, op), limit: op.limit ?? 0 } };
    };
    const compare = request.compare.map((c: Compare) => {
      checkKey(c.key);
      const value = c.target === 'value' ? Buffer.from(String(c.value)) : String(c.value);
      return { key: Buffer.from(c.key), target: TARGET[c.target], result: RESULT[c.op], [FIELD[c.target]]: value };
    });
    const success = request.success.map(toOp);
    const failure = (request.failure ?? []).map(toOp);
    const res = await this.call('txn', () => this.client.kv.txn({ compare, success, failure }), 'write');
    const ops = res.succeeded ? request.success : (request.failure ?? []);
    const results = res.responses.map((r: IResponseOp, i: number): TxnOpResult => {
      const op = ops[i];
      if (op?.type === 'put') return r.response_put.prev_kv ? { type: 'put', prevKv: toKv(r.response_put.prev_kv) } : { type: 'put' };
      if (op?.type === 'delete') {
        return { type: 'delete', deleted: Number(r.response_delete_range.deleted), prevKvs: r.response_delete_range.prev_kvs.map(toKv) };
      }
      const rr = r.response_range;
      return { type: 'range', kvs: rr.kvs.map(toKv), count: Number(rr.count), more: rr.more };
    });
    return { succeeded: res.succeeded, revision: Number(res.header.revision), results };
  }

  async watch(key: string, options: WatchOptions = {}): Promise<Watch> {
    if (this.closed) throw closedError(this.description);
    checkRevision('startRevision', options.startRevision);
    const { key: start, range_end } = rangeEnd(key, options);
    let builder = this.client.watch();
    builder = range_end ? builder.inRange({ start, end: range_end }) : builder.key(start);
    // Without a start revision, pin one now so "established" has a precise meaning.
    const startRevision = options.startRevision && options.startRevision > 0 ? options.startRevision : (await this.currentRevision()) + 1;
    builder = builder.startRevision(String(startRevision));
    const watcher: Watcher = await this.call(`watch ${key}`, () => this.withDeadline(`watch ${key}`, () => builder.create()));
    const queue = new WatchQueue(startRevision - 1, () => {
      this.watches.delete(queue);
      void watcher.cancel().catch(() => undefined);
    });
    this.watches.add(queue);
    const resumeFromDelivered = (): void => {
      watcher.request.start_revision = String(queue.lastRevision + 1);
    };
    watcher.on('data', (res) => {
      const events = res.events.map((e) => {
        const kv = toKv(e.kv);
        return e.type === 'Delete'
          ? { type: 'delete' as const, kv: { ...kv, value: '', createRevision: 0, version: 0, lease: '0' } }
          : { type: 'put' as const, kv };
      });
      const last = events[events.length - 1];
      if (last) queue.push({ events, revision: last.kv.modRevision });
      resumeFromDelivered();
    });
    // The client re-establishes the stream itself after a disconnect, but resumes from etcd's
    // header revision + 1, which skips history still being replayed; point it back at the revision
    // after the last one delivered. WatchQueue drops anything delivered twice.
    watcher.on('disconnected', resumeFromDelivered);
    watcher.on('connected', resumeFromDelivered);
    watcher.on('error', (err: Error) => void this.failWatch(queue, key, err));
    return queue;
  }

  /** etcd cancels a watch whose start is compacted; find out whether that is why, and say so. */
  private async failWatch(queue: WatchQueue, key: string, err: Error): Promise<void> {
    const next = queue.lastRevision + 1;
    try {
      await this.client.kv.range({ key: Buffer.from(key), revision: next, limit: 1 });
    } catch (probe) {
      const mapped = this.mapError(probe, `watch ${key} from revision ${next}`);
      if (mapped.code === StoreErrorCode.Compacted) {
        queue.fail(mapped);
        return;
      }
    }
    queue.fail(this.mapError(err, `watch ${key}`));
  }

  async grantLease(ttlSeconds: number): Promise<Lease> {
    checkTtl(ttlSeconds);
    const res = await this.call('grant lease', () => this.client.leaseClient.leaseGrant({ TTL: ttlSeconds }), 'write');
    return { id: String(res.ID), ttl: Number(res.TTL) };
  }

  async keepAliveOnce(leaseId: string): Promise<number> {
    checkLeaseId(leaseId);
    // Streams carry no call deadline, so bound the exchange here: a hung etcd must surface as an
    // error, or a LeaseKeeper would wait forever while its lease expires. Refreshing twice is
    // harmless, so it retries like a read.
    const res = await this.call(`keep-alive lease ${leaseId}`, () =>
      this.withDeadline(`keep-alive lease ${leaseId}`, async () => {
        const stream = await this.client.leaseClient.leaseKeepAlive();
        try {
          return await new Promise<{ TTL: string }>((resolve, reject) => {
            stream.on('data', resolve);
            stream.on('error', reject);
            stream.write({ ID: leaseId });
          });
        } finally {
          stream.end();
        }
      }),
    );
    const ttl = Number(res.TTL);
    if (ttl <= 0) throw new StoreError(StoreErrorCode.LeaseNotFound, `keep-alive lease ${leaseId}: lease not found or expired`);
    return ttl;
  }

  private withDeadline<T>(what: string, fn: () => Promise<T>): Promise<T> {
    const ms = this.options.callTimeoutMs ?? 5000;
    let timer: NodeJS.Timeout | undefined;
    const timeout = new Promise<never>((_, reject) => {
      timer = setTimeout(() => reject(new StoreError(StoreErrorCode.Unavailable, `${what}: etcd at ${this.options.endpoints.join(', ')} did not answer within ${ms} ms (deadline)`, { retryable: true })), ms);
    });
    return Promise.race([fn(), timeout]).finally(() => clearTimeout(timer));
  }

  async revokeLease(leaseId: string): Promise<void> {
    checkLeaseId(leaseId);
    await this.call(`revoke lease ${leaseId}`, () => this.client.leaseClient.leaseRevoke({ ID: leaseId }), 'write');
  }

  async leaseInfo(leaseId: string): Promise<LeaseInfo> {
    const res = await this.call(`lease ${leaseId}`, () => this.client.leaseClient.leaseTimeToLive({ ID: leaseId, keys: true }));
    const remaining = Number(res.TTL);
    return {
      id: leaseId,
      ttl: Number(res.grantedTTL),
      remaining: remaining <= 0 ? -1 : remaining,
      keys: remaining <= 0 ? [] : res.keys.map((k) => k.toString('utf8')).sort(),
    };
  }

  async compact(revision: number): Promise<void> {
    checkRevision('revision', revision);
    await this.call(`compact to ${revision}`, () => this.client.kv.compact({ revision: String(revision), physical: true }), 'write');
  }

  async currentRevision(): Promise<number> {
    const res = await this.call('current revision', () => this.client.kv.range({ key: Buffer.from(REVISION_PROBE_KEY), limit: 1, count_only: true }));
    return Number(res.header.revision);
  }

  async close(): Promise<void> {
    if (this.closed) return;
    this.closed = true;
    for (const w of [...this.watches]) w.fail(closedError(this.description));
    this.client.close();
  }
}
