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
  /** A failed read's retry, and how many have failed in a row. */
  private retry: NodeJS.Timeout | undefined;
  private failures = 0;
  /** Set while a full read is under way or has failed: the state is not to be acted on. */
  private holding = false;
  /** Full reads so far (start, gaps, repairs): for tests and logs. */
  loads = 0;

  constructor(private readonly o: ControlLoopOptions) {
    // A pass asked for while the state is held runs after the read is in force (reload asks).
    const run = (): Promise<void> => (this.holding ? Promise.resolve() : o.pass());
    this.passes = new Passes({ run, log: o.log, ...(o.debounceMs !== undefined ? { debounceMs: o.debounceMs } : {}), ...(o.maxWaitMs !== undefined ? { maxWaitMs: o.maxWaitMs } : {}) });
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
   * Reads everything, swaps it in, then follows from just after that read. From the moment the
   * read starts until it is in force the state is frozen: watch batches are dropped (the new
   * watch replays everything after the read, and the read holds everything before it) and passes
   * wait, so nothing acts on a state the read is about to replace, and a read never rewinds events
   * applied after it.
   */
  private async subscribe(reason: LoadReason): Promise<void> {
    this.loads++;
    this.holding = true;
    const loaded = await this.o.load(reason);
    if (this.stopped) return;
    const generation = ++this.generation;
    loaded.commit();
    this.holding = false;
    this.following?.close();
    this.following = follow(this.o.store, this.o.prefix, loaded.revision + 1, {
      onBatch: (batch) => {
        if (generation === this.generation && !this.holding && this.o.apply(batch)) this.passes.request();
      },
      onGap: async () => {
        if (generation === this.generation) {
          this.o.log.warn({ prefix: this.o.prefix }, 'watch broke; reading the state again');
          this.reload('gap');
        }
        // The reload replaces this watch (its batches are dropped meanwhile); go on from now.
        return this.o.store.currentRevision();
      },
    });
  }

  /**
   * A full read and a new watch, one at a time: asked for during one, it runs once more after it.
   * A failed read is retried by one timer, backing off to 30 s; requests meanwhile wait for it.
   */
  private reload(reason: LoadReason): void {
    if (this.stopped) return;
    if (this.loading || this.retry) {
      if (this.loading) this.again ??= reason;
      return;
    }
    this.loading = this.subscribe(reason)
      .then(
        () => {
          this.failures = 0;
          void this.passes.now();
        },
        (err: unknown) => {
          const delay = Math.min(30_000, 1000 * 2 ** this.failures++);
          this.o.log.warn({ err: errorMessage(err), reason, retryInMs: delay }, 'full read failed; passes wait until one works');
          this.again = undefined;
          this.retry = setTimeout(() => {
            this.retry = undefined;
            this.reload(reason);
          }, delay);
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
    clearTimeout(this.retry);
    this.following?.close();
    await this.passes.stop();
  }
}
