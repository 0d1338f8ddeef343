import { StoreError, StoreErrorCode } from './errors.js';
import type { KeyValue, Store } from './types.js';

export interface Leader {
  key: string;
  value: string;
  lease: string;
  /** Create revision of the leader's key: a fencing token that grows with every new leader. */
  revision: number;
}

/**
 * Leader election on leases + transactions, the algorithm of etcd's concurrency package, written
 * against the Store contract so every backend gets the same behaviour: each candidate creates
 * `<prefix>/<lease>` under its own lease; the key with the lowest create revision leads; the rest
 * wait for their predecessor's key to go (resign, revoke or lease expiry).
 */
export class Election {
  constructor(
    private readonly store: Store,
    /** e.g. `/berth/leader/scheduler` */
    readonly prefix: string,
  ) {}

  private keyFor(lease: string): string {
    return `${this.prefix}/${lease}`;
  }

  private async candidates(): Promise<{ kvs: KeyValue[]; revision: number }> {
    const r = await this.store.range(`${this.prefix}/`, { prefix: true });
    return { kvs: [...r.kvs].sort((a, b) => a.createRevision - b.createRevision), revision: r.revision };
  }

  /** Resolves at the first change under the prefix after `revision`, or when the signal aborts. */
  private async changeAfter(revision: number, signal?: AbortSignal): Promise<void> {
    const watch = await this.store.watch(`${this.prefix}/`, { prefix: true, startRevision: revision + 1 });
    const onAbort = (): void => watch.close();
    signal?.addEventListener('abort', onAbort, { once: true });
    if (signal?.aborted) watch.close();
    try {
      for await (const _batch of watch) break;
    } finally {
      signal?.removeEventListener('abort', onAbort);
      watch.close();
    }
  }

  /**
   * Becomes leader, waiting as long as needed. The candidacy lives as long as the lease: when the
   * lease dies the leadership ends, which is how a dead leader is replaced within one TTL.
   */
  async campaign(lease: string, value: string, signal?: AbortSignal): Promise<Leadership> {
    const key = this.keyFor(lease);
    const myRevision = await this.enter(key, lease, value);
    for (;;) {
      if (signal?.aborted) {
        // Only this candidacy's own key: a newer one on the same lease is not ours to remove.
        await this.store.txn({ compare: [{ key, target: 'create', op: '=', value: myRevision }], success: [{ type: 'delete', key }] });
        throw new StoreError(StoreErrorCode.NotLeader, `campaign for ${this.prefix} aborted`);
      }
      const { kvs, revision } = await this.candidates();
      const mine = kvs.find((kv) => kv.key === key && kv.createRevision === myRevision);
      if (!mine) throw new StoreError(StoreErrorCode.NotLeader, `candidacy ${key} ended (resigned, or its lease is gone) before it was elected`);
      if (kvs[0]?.key === key) return new Leadership(this.store, key, lease, myRevision);
      await this.changeAfter(revision, signal);
    }
  }

  /**
   * Joins the line, or keeps this lease's existing place in it (a retried campaign). The value is
   * refreshed only on the same incarnation of the key, so a campaign racing a resign never
   * resurrects a key nobody is campaigning with.
   */
  private async enter(key: string, lease: string, value: string): Promise<number> {
    for (;;) {
      const created = await this.store.txn({
        compare: [{ key, target: 'create', op: '=', value: 0 }],
        success: [{ type: 'put', key, value, lease }],
        failure: [{ type: 'range', key }],
      });
      if (created.succeeded) return created.revision;
      const existing = created.results[0];
      const rev = existing?.type === 'range' ? (existing.kvs[0]?.createRevision ?? 0) : 0;
      if (rev === 0) continue;
      const refreshed = await this.store.txn({
        compare: [{ key, target: 'create', op: '=', value: rev }],
        success: [{ type: 'put', key, value, lease }],
      });
      if (refreshed.succeeded) return rev;
    }
  }

  /** The current leader, if any. */
  async leader(): Promise<Leader | undefined> {
    const first = (await this.candidates()).kvs[0];
    return first ? { key: first.key, value: first.value, lease: first.lease, revision: first.createRevision } : undefined;
  }

  /**
   * Yields the leader now and on every change (undefined while there is none), until the signal
   * aborts. Each value is distinct from the one before.
   */
  async *observe(signal?: AbortSignal): AsyncGenerator<Leader | undefined> {
    let last: string | undefined = 'initial';
    let { kvs, revision } = await this.candidates();
    for (;;) {
      const first = kvs[0];
      const id = first ? `${first.key}@${first.createRevision}:${first.value}` : undefined;
      if (id !== last) {
        last = id;
        yield first ? { key: first.key, value: first.value, lease: first.lease, revision: first.createRevision } : undefined;
      }
      if (signal?.aborted) return;
      await this.changeAfter(revision, signal);
      if (signal?.aborted) return;
      ({ kvs, revision } = await this.candidates());
    }
  }
}

export class Leadership {
  constructor(
    private readonly store: Store,
    readonly key: string,
    readonly lease: string,
    /** Fencing token: compare against it to make a write conditional on still leading. */
    readonly revision: number,
  ) {}

  /** Whether this leadership still holds right now. */
  async isLeader(): Promise<boolean> {
    const kv = await this.store.get(this.key);
    return kv?.createRevision === this.revision;
  }

  /** Publishes a new value for observers, only if still the leader. */
  async proclaim(value: string): Promise<void> {
    const r = await this.store.txn({
      compare: [{ key: this.key, target: 'create', op: '=', value: this.revision }],
      success: [{ type: 'put', key: this.key, value, lease: this.lease }],
    });
    if (!r.succeeded) throw new StoreError(StoreErrorCode.NotLeader, `${this.key} is no longer the leader`);
  }

  /** Steps down; the next candidate takes over at once. */
  async resign(): Promise<void> {
    await this.store.txn({
      compare: [{ key: this.key, target: 'create', op: '=', value: this.revision }],
      success: [{ type: 'delete', key: this.key }],
    });
  }
}
