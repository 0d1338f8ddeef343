import { errorMessage } from '../domain/errors.js';
import type { Logger } from '../domain/log.js';
import { follow, type Following, type Store, type WatchBatch } from '../store/index.js';
import { Passes } from './passes.js';

export interface ControlLoopOptions {
  store: Store;
  log: Logger;
  /** The prefix the loop follows (one watch). */
  prefix: string;
  /**
   * A full read of what the loop derives from the store, replacing its state; returns the
   * revision the read covers. Runs at start, after a watch gap and on the repair timer — never
   * per change.
   */
  load(): Promise<number>;
  /** Folds one watch batch into the state; true when a pass is needed. */
  apply(batch: WatchBatch): boolean;
  /** Acts on the state (idempotently); passes never overlap and their triggers merge. */
  pass(): Promise<void>;
  debounceMs?: number;
  maxWaitMs?: number;
  /** A pass from memory this often, for what time alone changes (backoffs, timeouts). 0: none. */
  resyncMs?: number;
  /** A full re-read this often, repairing anything a missed event or a hand edit left. 0: none. */
  repairMs?: number;
}

/**
 * fleet's reconcile loop, once: list, then watch from the list's revision (no gap, no duplicate),
 * state fed from the watch, a serialised pass where triggers merge (`Passes`), a timer pass, and
 * a slow repair that reads everything again. A pass costs work in proportion to what changed;
 * the store is read in full only at start, on a watch gap and on the repair timer.
 */
export class ControlLoop {
  readonly passes: Passes;
  private following: Following | undefined;
  /** Bumped by each full read; a watch from an older one no longer feeds the state. */
  private generation = 0;
  private resync: NodeJS.Timeout | undefined;
  private repair: NodeJS.Timeout | undefined;
  private stopped = false;
  /** Full reads so far (start, gaps, repairs): for tests and logs. */
  loads = 0;

  constructor(private readonly o: ControlLoopOptions) {
    this.passes = new Passes({ run: o.pass, log: o.log, ...(o.debounceMs !== undefined ? { debounceMs: o.debounceMs } : {}), ...(o.maxWaitMs !== undefined ? { maxWaitMs: o.maxWaitMs } : {}) });
  }

  /** Reads the state, follows the prefix, and asks for a first pass (not waited for). */
  async start(): Promise<void> {
    await this.resubscribe();
    if (this.stopped) return;
    if (this.o.resyncMs) this.resync = setInterval(() => void this.passes.now(), this.o.resyncMs);
    if (this.o.repairMs) this.repair = setInterval(() => void this.repairNow(), this.o.repairMs);
    void this.passes.now();
  }

  /** A pass soon (after the debounce). */
  request(): void {
    this.passes.request();
  }

  /** A pass now, merged with any waiting; resolves once one that started after the call is done. */
  kick(): Promise<void> {
    return this.passes.now();
  }

  /**
   * Reads everything, then follows from just after that read. Batches of the watch being replaced
   * are ignored from the moment the read starts: the new watch replays whatever came after it.
   */
  private async resubscribe(): Promise<void> {
    const generation = ++this.generation;
    const revision = await this.load();
    if (this.stopped || generation !== this.generation) return;
    this.following?.close();
    this.following = follow(this.o.store, this.o.prefix, revision + 1, {
      onBatch: (batch) => {
        if (generation === this.generation && this.o.apply(batch)) this.passes.request();
      },
      onGap: async () => {
        if (generation !== this.generation) return this.o.store.currentRevision();
        this.o.log.warn({ prefix: this.o.prefix }, 'watch broke; reading the state again');
        const r = await this.load();
        void this.passes.now();
        return r;
      },
    });
  }

  private async load(): Promise<number> {
    this.loads++;
    return this.o.load();
  }

  /** The watch is restarted from the re-read's revision, so no event lands on a stale state. */
  private async repairNow(): Promise<void> {
    if (this.stopped) return;
    try {
      await this.resubscribe();
      void this.passes.now();
    } catch (err) {
      // The old watch no longer feeds the state: read again soon rather than drift.
      this.o.log.warn({ err: errorMessage(err) }, 'repair read failed; trying again in a second');
      setTimeout(() => void this.repairNow(), 1000);
    }
  }

  /** Stops following; queued passes are dropped, only a running one is waited for. */
  async stop(): Promise<void> {
    this.stopped = true;
    clearInterval(this.resync);
    clearInterval(this.repair);
    this.following?.close();
    await this.passes.stop();
  }
}
