import { putOp } from '../domain/codec.js';
import { codecs, type DynoState, type ReleaseRecord } from '../domain/records.js';
import { errorMessage } from '../domain/errors.js';
import { keys } from '../domain/keys.js';
import { dynoStatus, unitKey } from '../domain/units.js';
import type { Logger } from '../domain/log.js';
import type { Store, TxnOp } from '../store/index.js';
import { webPort, type Dyno } from './dyno.js';

export interface DynoRecordsOptions {
  store: Store;
  log: Logger;
  machineId: string;
  /** The agent's current lease, if it holds one: what every record is written under by default. */
  lease: () => string | undefined;
}

/** The first retry of a stopping dyno's endpoint removal the store did not answer; doubled up to 5 s. */
const UNPUBLISH_RETRY_MS = 200;

/**
 * The store side of the agent's dynos: their endpoints (published under the agent's lease, so a
 * dead machine's endpoints vanish with it) and their status reports, written only while the store
 * still assigns the unit here and deleted only while they are still this agent's.
 */
export class DynoRecords {
  private stopped = false;
  /** Ends the waits between a stop's endpoint removal retries: once the agent stops they give up. */
  private readonly wakers = new Set<() => void>();

  constructor(private readonly o: DynoRecordsOptions) {}

  /** The agent is stopping: endpoint removals that wait for a retry give up now. */
  stop(): void {
    this.stopped = true;
    for (const wake of [...this.wakers]) wake();
  }

  /**
   * One endpoint write if the store does not hold what the dyno should be: published while it is
   * up and ready, not otherwise. A stop unpublishes by itself and is left alone. Returns the write
   * under way, if one was begun.
   */
  sync(d: Dyno): Promise<void> | undefined {
    if (d.state === 'stopping' || d.syncing || webPort(d) === undefined) return undefined;
    const want = d.state === 'up' && !d.unready;
    if (d.published === want) return undefined;
    d.syncing = true;
    return (want ? this.publish(d) : this.unpublish(d).then(() => undefined))
      .catch((err: unknown) => this.o.log.warn({ unit: d.unit.name, err: errorMessage(err) }, want ? 'could not publish the dyno' : 'could not unpublish the dyno'))
      .finally(() => (d.syncing = false));
  }

  /**
   * Removes a stopping dyno's endpoint, again and again with backoff until the store answers, or
   * until the agent stops. Returns what `unpublish` does; undefined only if the agent stopped first.
   */
  async unpublishSurely(d: Dyno, log: Logger): Promise<number | undefined> {
    // A call the store did not answer may still have deleted the key: a later "nothing to delete"
    // then means "deleted at some revision up to now", and routers must be waited for up to now.
    let ambiguous = false;
    for (let delay = UNPUBLISH_RETRY_MS; ; delay = Math.min(delay * 2, 5000)) {
      const revision = await this.unpublish(d);
      if (revision === 0 && ambiguous) {
        const now = await this.o.store.currentRevision().catch(() => undefined);
        if (now !== undefined) {
          d.unpublishedAt = Math.max(d.unpublishedAt ?? 0, now);
          return now;
        }
      } else if (revision !== undefined) return revision;
      if (this.stopped) return revision;
      if (revision === undefined) ambiguous = true;
      log.warn({ retryInMs: delay }, 'could not remove the endpoint of a stopping dyno; retrying');
      await new Promise<void>((resolve) => {
        const wake = (): void => {
          clearTimeout(timer);
          this.wakers.delete(wake);
          resolve();
        };
        const timer = setTimeout(wake, delay);
        this.wakers.add(wake);
      });
    }
  }

  /** Endpoint first, report last: what a start raced into the store after a stop began goes too. */
  async forget(d: Dyno, lease = this.o.lease()): Promise<void> {
    await this.unpublish(d, lease);
    await this.deleteOwn(keys.status(unitKey(d.unit)), lease);
  }

  /**
   * Deletes a key only while it is this agent's (written under its lease). A unit's endpoint and
   * status keys are named for the unit, not the machine: after a failover the same keys belong to
   * the machine that took the unit over, and an agent coming back must not delete them.
   */
  async deleteOwn(key: string, lease: string | undefined): Promise<number | undefined> {
    // Without a lease this agent holds no key: whatever it wrote went with the lost one.
    if (!lease) return 0;
    const r = await this.o.store.txn({ compare: [{ key, target: 'lease', op: '=', value: lease }], success: [{ type: 'delete', key }] }).catch(() => undefined);
    // The store did not answer: the key may well still be there.
    if (!r) return undefined;
    const del = r.succeeded ? r.results[0] : undefined;
    return del?.type === 'delete' && del.deleted > 0 ? r.revision : 0;
  }

  async publish(d: Dyno, lease = this.o.lease()): Promise<void> {
    const port = webPort(d);
    if (port === undefined || !d.attachment || !lease) return;
    const op = putOp(keys.service(d.unit.appName, unitKey(d.unit)), codecs.endpoint, `${d.attachment.address}:${port}`, lease);
    await this.inOrder(d, async () => {
      if (await this.writeIfAssigned(d, op)) d.published = true;
    });
  }

  /** Runs a dyno's endpoint writes one after another, so `published` says what the last one left in the store. */
  private inOrder<T>(d: Dyno, write: () => Promise<T>): Promise<T> {
    const next = (d.endpointWrites ?? Promise.resolve()).then(write);
    d.endpointWrites = next.catch(() => undefined);
    return next;
  }

  /**
   * Writes a unit's endpoint or status only while the store still assigns the unit here: the
   * store decides, not this agent's cache of its assignments, which lags after a partition — and
   * by then another machine may own these keys for the same unit.
   */
  private async writeIfAssigned(d: Dyno, op: TxnOp): Promise<boolean> {
    return (await this.o.store.txn({ compare: [{ key: keys.unit(this.o.machineId, unitKey(d.unit)), target: 'version', op: '>', value: 0 }], success: [op] })).succeeded;
  }

  /** Returns the revision of the removal (0 if nothing of ours was published; undefined if the store did not answer). */
  unpublish(d: Dyno, lease = this.o.lease()): Promise<number | undefined> {
    return this.inOrder(d, async () => {
      const revision = await this.deleteOwn(keys.service(d.unit.appName, unitKey(d.unit)), lease);
      if (revision === undefined) return undefined;
      d.published = false;
      d.unpublishedAt = Math.max(d.unpublishedAt ?? 0, revision);
      return revision;
    });
  }

  async status(d: Dyno, state: DynoState, release: ReleaseRecord, reason?: string, lease = this.o.lease()): Promise<void> {
    const u = d.unit;
    const value = dynoStatus(u, { state, reason: reason ?? null, restarts: d.restarts, command: release.process_types[u.type] ?? '', release: { id: release.id, version: release.version }, machine: this.o.machineId, port: webPort(d) ?? null, address: d.attachment?.address ?? null, createdAt: d.createdAt });
    // Never without a lease: such a report would outlive this machine. The next registration
    // writes the reports of the dynos that are up again.
    if (!lease) return;
    await this.writeIfAssigned(d, putOp(keys.status(unitKey(u)), codecs.status, value, lease));
  }
}
