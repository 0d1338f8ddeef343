import { errorMessage } from '../domain/errors.js';
import type { Logger } from '../domain/log.js';
import { StoreError, StoreErrorCode, type Leadership, type Store } from '../store/index.js';

export interface CompactorOptions {
  store: Store;
  log: Logger;
  /** How often history is cut (default 5 min, kube-apiserver's); 0 turns it off. */
  intervalMs?: number;
}

/**
 * The store's history cut by one node, the scheduler leader, the way kube-apiserver compacts etcd:
 * every interval it notes the current revision and compacts to the one it noted an interval ago.
 * So every watcher has at least one interval of history to resume from, and a backend with a quota
 * (etcd's 2 GiB by default) does not fill with old revisions of keys rewritten all day (status,
 * endpoints, router reports). Releases keep their full config; history of them is what goes.
 * A cluster member's own auto-compaction (src/cluster/) and SQLite's in-process retention may also
 * cut history: compacting below what is already compacted is a no-op here, not an error.
 */
export class Compactor {
  private timer: NodeJS.Timeout | undefined;
  /** The revision noted at the last tick: what the next tick compacts to. */
  private noted = 0;
  private running: Promise<void> = Promise.resolve();
  /** Bumped by start and stop: a tick queued under an earlier run does nothing. */
  private run = 0;
  /** Compactions done since the leadership began (for tests and metrics). */
  count = 0;

  constructor(private readonly o: CompactorOptions) {}

  /** Starts cutting under `leadership`; a previous run stops first. */
  start(leadership: Leadership): void {
    this.stop();
    const every = this.o.intervalMs ?? 300_000;
    if (every <= 0) return;
    // A new leader starts afresh: what an earlier leader noted is not known here.
    this.noted = 0;
    const run = this.run;
    const tick = (): void => {
      this.running = this.running.then(() => (run === this.run ? this.tick(leadership) : undefined));
    };
    this.timer = setInterval(tick, every);
    this.timer.unref();
    tick();
  }

  stop(): void {
    this.run++;
    clearInterval(this.timer);
    this.timer = undefined;
  }

  /** Waits for a tick in progress (so a stopping node does not compact after its store closed). */
  async settled(): Promise<void> {
    await this.running;
  }

  private async tick(leadership: Leadership): Promise<void> {
    try {
      // A deposed leader's timer may fire once more before it is stopped: only the leader cuts.
      if (!(await leadership.isLeader())) return;
      const now = await this.o.store.currentRevision();
      const target = this.noted;
      this.noted = now;
      if (target <= 0) return;
      await this.o.store.compact(target);
      this.count++;
      this.o.log.info({ revision: target }, 'store history compacted');
    } catch (err) {
      if (err instanceof StoreError && err.code === StoreErrorCode.Compacted) return;
      this.o.log.warn({ err: errorMessage(err) }, 'compacting the store failed; trying again next interval');
    }
  }
}
