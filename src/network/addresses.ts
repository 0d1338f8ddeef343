import { deleteOp, get, putOp } from '../domain/codec.js';
import { BerthError, errorMessage } from '../domain/errors.js';
import { keys } from '../domain/keys.js';
import type { Logger } from '../domain/log.js';
import { codecs, type IpRecord } from '../domain/records.js';
import { routersCaughtUp } from '../domain/routers.js';
import type { Store } from '../store/index.js';
import { addressAt, formatCidr, size, type Range } from './cidr.js';

export interface AddressesOptions {
  store: Store;
  log: Logger;
  machine: string;
  /** How long a previous incarnation's addresses stay out of use (its endpoints' lease). */
  holdMs: number;
  /** The subnet lease now: its range and the lease records go under. */
  lease(): { subnet: Range; leaseId: string } | undefined;
  /** Whether the store (as the network's watch has it) names the address already. */
  known(address: string): boolean;
}

/** A freed address waits for every router this long at most before it is freed anyway. */
const RETIRE_GIVE_UP_MS = 10 * 60_000;

/**
 * The machine's addresses: round-robin over its subnet (a freed one is the last to come back),
 * dynos' records create-only in the store, builds' local only. A dyno's address is freed only
 * once no router can still send it another app's traffic: after every router has applied the
 * removal of its endpoint, retried in the background until the store takes the delete.
 */
export class Addresses {
  /** In use here, or held (a predecessor's, or one being retired). */
  private readonly used = new Set<string>();
  private cursor = 2;
  /** This machine's dynos' records, by address: what a retaken subnet lease writes again. */
  private readonly live = new Map<string, IpRecord>();
  private readonly timers = new Set<NodeJS.Timeout>();
  private stopped = false;

  constructor(private readonly o: AddressesOptions) {}

  /** A free address, held until `drop` (builds) or `retire` (dynos). */
  take(): string {
    const lease = this.o.lease();
    if (!lease) throw new BerthError('network_not_started', 'the overlay network is not running on this machine', { retryable: true });
    const span = size(lease.subnet) - 3;
    for (let i = 0; i < span; i++) {
      const offset = 2 + ((this.cursor - 2 + i) % span);
      const ip = addressAt(lease.subnet, offset);
      if (!this.used.has(ip) && !this.o.known(ip)) {
        this.cursor = offset + 1;
        this.used.add(ip);
        return ip;
      }
    }
    throw new BerthError('addresses_exhausted', `No free overlay address left in ${formatCidr(lease.subnet)} on this machine.`, { retryable: true });
  }

  drop(address: string): void {
    this.used.delete(address);
  }

  /** An address with its record in the store (create-only: one another node names is skipped). */
  async claim(record: IpRecord): Promise<string> {
    for (let attempt = 0; attempt < 10; attempt++) {
      const candidate = this.take();
      const key = keys.ip(candidate);
      const leaseId = this.o.lease()?.leaseId ?? '';
      const done = await this.o.store.txn({ compare: [{ key, target: 'version', op: '=', value: 0 }], success: [putOp(key, codecs.ip, record, leaseId)] }).catch((err: unknown) => {
        // The write may have happened: hold the address and retire it like any other.
        this.retire(candidate, 0);
        throw err;
      });
      if (done.succeeded) {
        this.live.set(candidate, record);
        return candidate;
      }
      this.used.delete(candidate); // taken meanwhile: the watch brings its record
    }
    throw new BerthError('addresses_exhausted', 'No free overlay address could be taken for the dyno.', { retryable: true });
  }

  /**
   * Frees a dyno's address once every router has applied `after` (the revision that removed its
   * endpoint: routers report the revisions of what they serve, so no later one), deleting its
   * record only while it is ours; retried in the background until the store takes it. 0: never
   * published (one-off dynos, failed starts), nothing to wait for.
   */
  retire(address: string, after: number): void {
    this.live.delete(address);
    const started = Date.now();
    const attempt = async (delay: number): Promise<void> => {
      if (this.stopped) return;
      try {
        const caught = after <= 0 || (await routersCaughtUp(this.o.store, after));
        if (!caught && Date.now() - started < RETIRE_GIVE_UP_MS) return this.later(() => attempt(Math.min(delay * 2, 5000)), delay);
        if (!caught) this.o.log.warn({ address }, 'freeing an address although a router is still behind (10 min)');
        const key = keys.ip(address);
        await this.o.store.txn({ compare: [{ key, target: 'lease', op: '=', value: this.o.lease()?.leaseId ?? '' }], success: [deleteOp(key)] });
        this.used.delete(address);
      } catch (err) {
        this.o.log.warn({ err: errorMessage(err), address }, 'freeing an overlay address failed; retrying');
        this.later(() => attempt(Math.min(delay * 2, 30_000)), delay);
      }
    };
    void attempt(250);
  }

  /**
   * Addresses a previous incarnation of this machine left in the store: their dynos are gone, but
   * endpoints naming them live until that incarnation's lease runs out. Held that long (the
   * lease TTL and some: routers apply a removal within milliseconds), then freed.
   */
  reclaim(stale: string[]): void {
    if (stale.length === 0) return;
    for (const ip of stale) this.used.add(ip);
    this.later(async () => {
      for (const ip of stale) {
        const cur = await get(this.o.store, keys.ip(ip), codecs.ip).catch(() => undefined);
        if (cur && cur.value.machine !== this.o.machine) this.used.delete(ip);
        else this.retire(ip, 0);
      }
      this.o.log.info({ addresses: stale.length }, 'retiring the addresses a previous incarnation left');
    }, this.o.holdMs);
  }

  /**
   * The subnet lease was lost and taken again: our dynos' records went with the old lease and
   * every machine's policy dropped them. Put back — only if the subnet is the same one; another
   * subnet's addresses may be someone else's by now.
   */
  async rewrite(sameSubnet: boolean): Promise<void> {
    const leaseId = this.o.lease()?.leaseId;
    if (!leaseId) return;
    if (!sameSubnet) {
      this.o.log.error({ dynos: this.live.size }, "this machine's subnet changed under its running dynos: their addresses are not rewritten and they stay unreachable until restarted");
      return;
    }
    for (const [address, record] of this.live) {
      await this.o.store.put(keys.ip(address), codecs.ip.encode(record), { lease: leaseId }).catch((err: unknown) => this.o.log.warn({ err: errorMessage(err), address }, 'rewriting an address record failed'));
    }
    this.o.log.warn({ addresses: this.live.size }, 'address records written again under the new subnet lease');
  }

  private later(fn: () => Promise<void>, ms: number): void {
    if (this.stopped) return;
    const t = setTimeout(() => {
      this.timers.delete(t);
      void fn().catch((err: unknown) => this.o.log.warn({ err: errorMessage(err) }, 'address housekeeping failed'));
    }, ms);
    this.timers.add(t);
  }

  /** Stops retiring: what is left keeps its record under the subnet lease, and the next start reclaims it. */
  stop(): void {
    this.stopped = true;
    for (const t of this.timers) clearTimeout(t);
    this.timers.clear();
  }
}
