import type { KeyValue, RangeOptions, RangeResult, Store, WatchBatch } from '../store/index.js';

/**
 * The keys nginx.conf is rendered from (apps, hostnames, certificates, routing, router settings),
 * kept in memory from the router's watch, so a vhost change costs a render, not a read of every
 * app's keys. It is a Store for the templater to render through: a prefix read at the revision
 * the mirror holds is answered from memory, anything else goes to the real store.
 */
export class VhostMirror implements Store {
  private kvs = new Map<string, KeyValue>();
  /** The revision the mirror reflects; 0 until a full read has filled it. */
  revision = 0;
  /** The revision of the last change under the prefixes: the mirror holds every revision from here to `revision`. */
  private changedAt = 0;

  constructor(
    private readonly store: Store,
    private readonly prefixes: string[],
  ) {}

  get description(): string {
    return this.store.description;
  }

  /** Every key under the prefixes at `revision`, read in full: what a new state starts from. */
  async read(revision: number): Promise<() => void> {
    const reads = await Promise.all(this.prefixes.map((p) => this.store.range(p, { prefix: true, revision })));
    const kvs = new Map(reads.flatMap((r) => r.kvs).map((kv) => [kv.key, kv]));
    return () => {
      this.kvs = kvs;
      this.revision = this.changedAt = revision;
    };
  }

  /** Folds a watch batch in; true when a key under the prefixes changed. */
  apply(batch: WatchBatch): boolean {
    let changed = false;
    for (const e of batch.events) {
      if (!this.prefixes.some((p) => e.kv.key.startsWith(p))) continue;
      if (e.type === 'put') this.kvs.set(e.kv.key, e.kv);
      else this.kvs.delete(e.kv.key);
      changed = true;
    }
    // Batches hold whole revisions: whatever is under the prefixes is now as of this one.
    if (this.revision > 0) {
      this.revision = Math.max(this.revision, batch.revision);
      if (changed) this.changedAt = this.revision;
    }
    return changed;
  }

  async range(key: string, options: RangeOptions = {}): Promise<RangeResult> {
    const at = options.revision ?? 0;
    // Nothing under the prefixes changed between `changedAt` and `revision`: any revision in
    // between reads the same keys.
    const mine = this.revision > 0 && options.prefix && at >= this.changedAt && at <= this.revision && !options.limit && !options.countOnly && this.prefixes.some((p) => key.startsWith(p));
    if (!mine) return this.store.range(key, options);
    const kvs = [...this.kvs.values()].filter((kv) => kv.key.startsWith(key)).sort((a, b) => Buffer.compare(Buffer.from(a.key), Buffer.from(b.key)));
    return { kvs, count: kvs.length, more: false, revision: this.revision };
  }

  get: Store['get'] = (...a) => this.store.get(...a);
  put: Store['put'] = (...a) => this.store.put(...a);
  delete: Store['delete'] = (...a) => this.store.delete(...a);
  txn: Store['txn'] = (...a) => this.store.txn(...a);
  watch: Store['watch'] = (...a) => this.store.watch(...a);
  grantLease: Store['grantLease'] = (...a) => this.store.grantLease(...a);
  keepAliveOnce: Store['keepAliveOnce'] = (...a) => this.store.keepAliveOnce(...a);
  revokeLease: Store['revokeLease'] = (...a) => this.store.revokeLease(...a);
  leaseInfo: Store['leaseInfo'] = (...a) => this.store.leaseInfo(...a);
  compact: Store['compact'] = (...a) => this.store.compact(...a);
  currentRevision: Store['currentRevision'] = () => this.store.currentRevision();
  /** The real store is the router's owner's to close. */
  close = (): Promise<void> => Promise.resolve();
}
