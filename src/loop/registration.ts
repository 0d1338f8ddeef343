import { errorMessage } from '../domain/errors.js';
import type { Logger } from '../domain/log.js';
import { LeaseKeeper, type Store } from '../store/index.js';

export interface RegistrationOptions {
  store: Store;
  log: Logger;
  /** Seconds: a holder silent this long is dead, and everything under its lease goes. */
  ttl: number;
  /** Writes what lives under the lease (a machine record, endpoints, a router report). */
  register(leaseId: string): Promise<void>;
  /** The lease expired: what was under it is gone; a new lease is being taken. */
  onLost?(): void;
}

const MAX_BACKOFF_MS = 5000;

/**
 * A lease kept alive, and taken again when lost: fleet's machine registration, the shape every
 * Berth loop that publishes under a lease shares (agent, scheduler, router, one-off runner). The
 * first registration's failure is the caller's (a node that cannot register should not start);
 * later ones retry with backoff until they work or the holder stops.
 */
export class Registration {
  private keeper: LeaseKeeper | undefined;
  private stopped = false;
  private retrying: Promise<void> | undefined;
  private started = false;

  private constructor(private readonly o: RegistrationOptions) {}

  static async start(o: RegistrationOptions): Promise<Registration> {
    const r = new Registration(o);
    await r.acquire();
    r.started = true;
    return r;
  }

  /** The lease in force, or undefined while one is being taken again. */
  get leaseId(): string | undefined {
    return this.keeper?.id;
  }

  private async acquire(): Promise<void> {
    const keeper = await LeaseKeeper.start(this.o.store, { ttl: this.o.ttl, onLost: () => this.lost(keeper) });
    if (this.stopped) return void (await keeper.revoke().catch(() => undefined));
    // In force while registering: what comes up meanwhile (a dyno, a router report) is written
    // under it too, instead of being skipped for want of a lease and never written at all.
    this.keeper = keeper;
    try {
      await this.o.register(keeper.id);
      // Lost before registering was done: what register wrote went with it, and nobody would notice.
      if (this.keeper !== keeper) throw new Error('the lease was lost while registering');
    } catch (err) {
      if (this.keeper === keeper) this.keeper = undefined;
      await keeper.revoke().catch(() => undefined);
      throw err;
    }
    if (this.stopped) await keeper.revoke().catch(() => undefined);
  }

  private lost(keeper: LeaseKeeper): void {
    if (this.stopped || this.keeper !== keeper) return;
    this.keeper = undefined;
    // The first registration's failure is the caller's (start() throws): no retry behind its back.
    if (!this.started) return;
    this.o.log.warn('lease lost; registering again');
    this.o.onLost?.();
    this.retrying ??= this.retry().finally(() => (this.retrying = undefined));
  }

  private async retry(): Promise<void> {
    for (let delay = 200; !this.stopped; delay = Math.min(delay * 2, MAX_BACKOFF_MS)) {
      try {
        await this.acquire();
        this.o.log.info('registered again');
        return;
      } catch (err) {
        this.o.log.warn({ err: errorMessage(err), retryInMs: delay }, 'registration failed; retrying');
        await new Promise((r) => setTimeout(r, delay));
      }
    }
  }

  /** Stops keeping the lease and revokes it: everything under it goes at once. */
  async stop(): Promise<void> {
    this.stopped = true;
    const keeper = this.keeper;
    this.keeper = undefined;
    await keeper?.revoke().catch(() => undefined);
  }
}
