import { errorMessage } from '../domain/errors.js';
import type { Logger } from '../domain/log.js';
import { follow, type Following, type Store, type WatchBatch } from '../store/index.js';
import { Passes } from './passes.js';

/** Why a full read runs: at start, after the watch broke, or on the slow repair timer. */
export type LoadReason = 'start' | 'gap' | 'repair';

/**
 * A full read, not yet in force: `commit` swaps it in synchronously, so no pass ever sees a state
 * half read, and a read that fails leaves the state it would have replaced untouched.
 */
export interface Loaded {
  revision: number;
  commit(): void;
}

export interface ControlLoopOptions {
  store: Store;
  log: Logger;
  /** The prefix the loop follows (one watch). */
  prefix: string;
  /**
   * A full read of what the loop derives from the store, into new state that `commit` puts in
   * place of the old. Runs at start, after a watch gap and on the repair timer — never per change.
   */
  load(reason: LoadReason): Promise<Loaded>;
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
  /** Bumped when a full read is committed; a watch from before it no longer feeds the state. */
  private generation = 0;
  private resync: NodeJS.Timeout | undefined;
  private repair: NodeJS.Timeout | undefined;
  private stopped = false;
  /** The full read in progress (one at a time), and whether another was asked for meanwhile. */
  private loading: Promise<void> | undefined;
  private again: LoadReason | undefined;
  /** Full reads so far (start, gaps, repairs): for tests and logs. */
  loads = 0;

  constructor(private readonly o: ControlLoopOptions) {
    this.passes = new Passes({ run: o.pass, log: o.log, ...(o.debounceMs !== undefined ? { debounceMs: o.debounceMs } : {}), ...(o.maxWaitMs !== undefined ? { maxWaitMs: o.maxWaitMs } : {}) });
  }

  /** Reads the state, follows the prefix, and asks for a first pass (not waited for). */
  async start(): Promise<void> {
    await this.subscribe('start');
    if (this.stopped) return;
    if (this.o.resyncMs) this.resync = setInterval(() => void this.passes.now(), this.o.resyncMs);
    if (this.o.repairMs) this.repair = setInterval(() => this.reload('repair'), this.o.repairMs);
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
   * Reads everything, swaps it in, then follows from just after that read. Until the swap the old
   * watch keeps feeding the old state; from the swap on, only the new watch counts, and it
   * replays whatever came after the read.
   */
  private async subscribe(reason: LoadReason): Promise<void> {
    this.loads++;
    const loaded = await this.o.load(reason);
    if (this.stopped) return;
    const generation = ++this.generation;
    loaded.commit();
    this.following?.close();
    this.following = follow(this.o.store, this.o.prefix, loaded.revision + 1, {
      onBatch: (batch) => {
        if (generation === this.generation && this.o.apply(batch)) this.passes.request();
      },
      onGap: async () => {
        if (generation === this.generation) {
          this.o.log.warn({ prefix: this.o.prefix }, 'watch broke; reading the state again');
          this.reload('gap');
        }
        // The reload replaces this watch; until it does, go on from now.
        return this.o.store.currentRevision();
      },
    });
  }

  /** A full read and a new watch, one at a time; asked for during one, it runs again after it. */
  private reload(reason: LoadReason): void {
    if (this.stopped) return;
    if (this.loading) {
      this.again ??= reason;
      return;
    }
    this.loading = this.subscribe(reason)
      .then(
        () => void this.passes.now(),
        (err: unknown) => {
          this.o.log.warn({ err: errorMessage(err), reason }, 'full read failed; trying again in a second');
          setTimeout(() => this.reload(reason), 1000);
        },
      )
      .finally(() => {
        this.loading = undefined;
        const next = this.again;
        this.again = undefined;
        if (next) this.reload(next);
      });
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
