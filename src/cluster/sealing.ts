import { createCipheriv, createDecipheriv, randomBytes } from 'node:crypto';
import { BerthError } from '../domain/errors.js';
import type { DeleteOptions, DeleteResult, KeyValue, PutOptions, PutResult, RangeOptions, RangeResult, Store, TxnOp, TxnOpResult, TxnRequest, TxnResult, Watch, WatchBatch, WatchOptions } from '../store/index.js';

/** An app's current config and its releases (each carries a full config copy): what agents must not read. */
const SEALED = /^\/berth\/apps\/[^/]+\/(config|releases\/\d+)$/;
const PREFIX = 'b1:';
export const CONFIG_KEY_BYTES = 32;

export function isSealedKey(key: string): boolean {
  return SEALED.test(key);
}

export function newConfigKey(): Buffer {
  return randomBytes(CONFIG_KEY_BYTES);
}

/** AES-256-GCM under the cluster's config key, bound to the key it is stored at (a value moved to another app's key does not open). */
export function seal(configKey: Buffer, key: string, plain: string): string {
  const iv = randomBytes(12);
  const c = createCipheriv('aes-256-gcm', configKey, iv);
  c.setAAD(Buffer.from(key));
  const body = Buffer.concat([c.update(plain, 'utf8'), c.final()]);
  return PREFIX + Buffer.concat([iv, c.getAuthTag(), body]).toString('base64');
}

/** The plain value; a value written before sealing (no prefix) passes as it is. */
export function unseal(configKey: Buffer, key: string, stored: string): string {
  if (!stored.startsWith(PREFIX)) return stored;
  const raw = Buffer.from(stored.slice(PREFIX.length), 'base64');
  try {
    const d = createDecipheriv('aes-256-gcm', configKey, raw.subarray(0, 12));
    d.setAAD(Buffer.from(key));
    d.setAuthTag(raw.subarray(12, 28));
    return Buffer.concat([d.update(raw.subarray(28)), d.final()]).toString('utf8');
  } catch {
    // Not ours, or tampered with: the codec above reports it as malformed, naming the key.
    return stored;
  }
}

/**
 * A store whose app configs and releases are sealed at rest (Kubernetes' encryption of Secrets,
 * in Berth's terms): servers, which hold the cluster's config key, read and write through it and
 * see plain records; an agent machine's certificate reads the same keys as ciphertext, and gets
 * the releases of its own dynos from a server instead (`/internal/releases/...`).
 */
export class SealedStore implements Store {
  readonly description: string;

  constructor(
    private readonly inner: Store,
    private readonly configKey: Buffer,
  ) {
    if (configKey.length !== CONFIG_KEY_BYTES) throw new BerthError('invalid_params', `the config key must be ${CONFIG_KEY_BYTES} bytes`);
    this.description = inner.description;
  }

  private open = (kv: KeyValue): KeyValue => (isSealedKey(kv.key) && kv.value ? { ...kv, value: unseal(this.configKey, kv.key, kv.value) } : kv);
  private openMaybe = (kv: KeyValue | undefined): KeyValue | undefined => (kv ? this.open(kv) : kv);

  private sealOp = (op: TxnOp): TxnOp => (op.type === 'put' && isSealedKey(op.key) ? { ...op, value: seal(this.configKey, op.key, op.value) } : op);

  private openResult = (r: TxnOpResult): TxnOpResult => {
    if (r.type === 'range') return { ...r, kvs: r.kvs.map(this.open) };
    if (r.type === 'delete') return { ...r, prevKvs: r.prevKvs.map(this.open) };
    return r.prevKv ? { ...r, prevKv: this.open(r.prevKv) } : r;
  };

  async get(key: string, options?: { revision?: number }): Promise<KeyValue | undefined> {
    return this.openMaybe(await this.inner.get(key, options));
  }

  async range(key: string, options?: RangeOptions): Promise<RangeResult> {
    const r = await this.inner.range(key, options);
    return { ...r, kvs: r.kvs.map(this.open) };
  }

  async put(key: string, value: string, options?: PutOptions): Promise<PutResult> {
    const r = await this.inner.put(key, isSealedKey(key) ? seal(this.configKey, key, value) : value, options);
    return r.prevKv ? { ...r, prevKv: this.open(r.prevKv) } : r;
  }

  async delete(key: string, options?: DeleteOptions): Promise<DeleteResult> {
    const r = await this.inner.delete(key, options);
    return { ...r, prevKvs: r.prevKvs.map(this.open) };
  }

  async txn(request: TxnRequest): Promise<TxnResult> {
    // Sealing is randomised: a compare on a sealed value could never match.
    if (request.compare.some((c) => c.target === 'value' && isSealedKey(c.key))) throw new BerthError('invalid_params', 'a value compare on a sealed key cannot work');
    const r = await this.inner.txn({ compare: request.compare, success: request.success.map(this.sealOp), ...(request.failure ? { failure: request.failure.map(this.sealOp) } : {}) });
    return { ...r, results: r.results.map(this.openResult) };
  }

  async watch(key: string, options?: WatchOptions): Promise<Watch> {
    const w = await this.inner.watch(key, options);
    const open = this.open;
    return {
      close: () => w.close(),
      async *[Symbol.asyncIterator](): AsyncIterator<WatchBatch> {
        for await (const batch of w) yield { ...batch, events: batch.events.map((e) => ({ ...e, kv: open(e.kv) })) };
      },
    };
  }

  grantLease(ttl: number) {
    return this.inner.grantLease(ttl);
  }
  keepAliveOnce(id: string) {
    return this.inner.keepAliveOnce(id);
  }
  revokeLease(id: string) {
    return this.inner.revokeLease(id);
  }
  leaseInfo(id: string) {
    return this.inner.leaseInfo(id);
  }
  compact(revision: number) {
    return this.inner.compact(revision);
  }
  currentRevision() {
    return this.inner.currentRevision();
  }
  close() {
    return this.inner.close();
  }
}
