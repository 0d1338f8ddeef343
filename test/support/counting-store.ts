import { StoreError, StoreErrorCode } from '../../src/store/index.js';
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
  WatchBatch,
  WatchOptions,
} from '../../src/store/index.js';

type Method = 'get' | 'range' | 'put' | 'delete' | 'txn' | 'watch' | 'grantLease' | 'keepAliveOnce' | 'revokeLease' | 'leaseInfo' | 'compact' | 'currentRevision';

/**
 * A real Store that delegates to another and counts what it is asked (a test's way to say "this
 * loop read nothing"), and can break the watches it handed out as a backend restart would. It is
 * an implementation of the contract, not a mock: everything it answers comes from the inner store.
 */
export class CountingStore implements Store {
  readonly calls: Record<Method, number> = { get: 0, range: 0, put: 0, delete: 0, txn: 0, watch: 0, grantLease: 0, keepAliveOnce: 0, revokeLease: 0, leaseInfo: 0, compact: 0, currentRevision: 0 };
  /** Transactions that read (a range op among them): reads as much as `range` is. */
  readingTxns = 0;
  /** Puts, deletes and transactions that succeeded with a put or delete: what changed the store. */
  writes = 0;
  /** The keys (or prefixes) those writes changed, in order. */
  readonly written: string[] = [];
  /** Transactions whose compare failed (a fenced write refused, a lost race). */
  refusedTxns = 0;
  private readonly live = new Set<BreakableWatch>();
  /** Every get and range waits this long first: a store across a network, as etcd is. */
  readDelayMs = 0;
  /** When set to n, the n-th get from now fails once, as an unreachable store would. */
  failGetIn = 0;

  constructor(readonly inner: Store) {}

  private async slow(): Promise<void> {
    if (this.readDelayMs > 0) await new Promise((r) => setTimeout(r, this.readDelayMs));
  }

  get description(): string {
    return `counting(${this.inner.description})`;
  }

  /** get + range + reading txns so far: what "the loop read the store" means. */
  reads(): number {
    return this.calls.get + this.calls.range + this.readingTxns;
  }

  /** Every watch handed out so far that is still open ends with this error (default: the store went away). */
  breakWatches(err: Error = new StoreError(StoreErrorCode.Unavailable, 'the store restarted')): number {
    const n = this.live.size;
    for (const w of [...this.live]) w.break(err);
    return n;
  }

  private wrote(keys: string[]): void {
    this.writes++;
    this.written.push(...keys);
  }

  async get(key: string, options?: { revision?: number }): Promise<KeyValue | undefined> {
    this.calls.get++;
    await this.slow();
    if (this.failGetIn > 0 && --this.failGetIn === 0) throw new StoreError(StoreErrorCode.Unavailable, 'the store did not answer');
    return this.inner.get(key, options);
  }

  async range(key: string, options?: RangeOptions): Promise<RangeResult> {
    this.calls.range++;
    await this.slow();
    return this.inner.range(key, options);
  }

  put(key: string, value: string, options?: PutOptions): Promise<PutResult> {
    this.calls.put++;
    return this.inner.put(key, value, options).then((r) => (this.wrote([key]), r));
  }

  delete(key: string, options?: DeleteOptions): Promise<DeleteResult> {
    this.calls.delete++;
    return this.inner.delete(key, options).then((r) => (this.wrote([key]), r));
  }

  txn(request: TxnRequest): Promise<TxnResult> {
    this.calls.txn++;
    if ([...request.success, ...(request.failure ?? [])].some((op) => op.type === 'range')) this.readingTxns++;
    return this.inner.txn(request).then((r) => {
      if (!r.succeeded) this.refusedTxns++;
      else if (request.success.some((op) => op.type !== 'range')) this.wrote(request.success.filter((op) => op.type !== 'range').map((op) => op.key));
      return r;
    });
  }

  async watch(key: string, options?: WatchOptions): Promise<Watch> {
    this.calls.watch++;
    const w = new BreakableWatch(await this.inner.watch(key, options), () => this.live.delete(w));
    this.live.add(w);
    return w;
  }

  grantLease(ttlSeconds: number): Promise<Lease> {
    this.calls.grantLease++;
    return this.inner.grantLease(ttlSeconds);
  }

  keepAliveOnce(leaseId: string): Promise<number> {
    this.calls.keepAliveOnce++;
    return this.inner.keepAliveOnce(leaseId);
  }

  revokeLease(leaseId: string): Promise<void> {
    this.calls.revokeLease++;
    return this.inner.revokeLease(leaseId);
  }

  leaseInfo(leaseId: string): Promise<LeaseInfo> {
    this.calls.leaseInfo++;
    return this.inner.leaseInfo(leaseId);
  }

  compact(revision: number): Promise<void> {
    this.calls.compact++;
    return this.inner.compact(revision);
  }

  currentRevision(): Promise<number> {
    this.calls.currentRevision++;
    return this.inner.currentRevision();
  }

  /** Closes the inner store too. */
  close(): Promise<void> {
    return this.inner.close();
  }
}

/** A watch that ends with an error when told, as one does when its backend goes away. */
class BreakableWatch implements Watch {
  private fail: (err: Error) => void = () => undefined;
  private readonly failed: Promise<never>;

  constructor(
    private readonly inner: Watch,
    private readonly onEnd: () => void,
  ) {
    this.failed = new Promise<never>((_, reject) => (this.fail = reject));
    // Nobody may be iterating when it breaks.
    this.failed.catch(() => undefined);
  }

  break(err: Error): void {
    this.fail(err);
    this.close();
  }

  close(): void {
    this.onEnd();
    this.inner.close();
  }

  async *[Symbol.asyncIterator](): AsyncIterator<WatchBatch> {
    const it = this.inner[Symbol.asyncIterator]();
    try {
      for (;;) {
        // A break settles `failed` before the inner watch's close settles `next`: the error wins.
        const r = await Promise.race([it.next(), this.failed]);
        if (r.done) return;
        yield r.value;
      }
    } finally {
      this.close();
    }
  }
}
