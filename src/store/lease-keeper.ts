import { StoreErrorCode, isStoreError } from './errors.js';
import type { Lease, Store } from './types.js';

export interface LeaseKeeperOptions {
  ttl: number;
  /** Called once if the lease is lost (expired before a keep-alive reached the store). */
  onLost?: (err: unknown) => void;
}

/**
 * Holds a lease alive by refreshing it at a third of its TTL, the rhythm etcd's own clients use,
 * so one missed refresh does not lose it. Built on the contract, so it works on every backend.
 */
export class LeaseKeeper {
  private timer: NodeJS.Timeout | undefined;
  private stopped = false;
  private lastRefreshed = Date.now();

  private constructor(
    private readonly store: Store,
    readonly lease: Lease,
    private readonly options: LeaseKeeperOptions,
  ) {}

  static async start(store: Store, options: LeaseKeeperOptions): Promise<LeaseKeeper> {
    const lease = await store.grantLease(options.ttl);
    const keeper = new LeaseKeeper(store, lease, options);
    keeper.schedule();
    return keeper;
  }

  get id(): string {
    return this.lease.id;
  }

  private schedule(): void {
    if (this.stopped) return;
    this.timer = setTimeout(() => void this.refresh(), Math.max(100, (this.lease.ttl * 1000) / 3));
  }

  private async refresh(): Promise<void> {
    try {
      await this.store.keepAliveOnce(this.lease.id);
      this.lastRefreshed = Date.now();
      this.schedule();
    } catch (err) {
      if (this.stopped) return;
      // Past its TTL since the last refresh the store has expired the lease, even if it has not
      // been able to say so: holders must stop acting on it now, not when the store is back.
      const expired = Date.now() - this.lastRefreshed >= this.lease.ttl * 1000;
      if (expired || isStoreError(err, StoreErrorCode.LeaseNotFound) || isStoreError(err, StoreErrorCode.Closed)) {
        this.stopped = true;
        this.options.onLost?.(err);
        return;
      }
      // Transient (store unreachable): keep trying; the lease may still be alive.
      this.schedule();
    }
  }

  /** Stops refreshing; the lease then expires on its own unless revoked. */
  stop(): void {
    this.stopped = true;
    if (this.timer) clearTimeout(this.timer);
  }

  async revoke(): Promise<void> {
    this.stop();
    await this.store.revokeLease(this.lease.id).catch((err: unknown) => {
      if (!isStoreError(err, StoreErrorCode.LeaseNotFound)) throw err;
    });
  }
}
