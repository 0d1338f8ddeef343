import { errorMessage } from '../domain/errors.js';
import type { Logger } from '../domain/log.js';

export interface PassesOptions {
  /** One pass: it reads the state it needs when it runs, so any number of triggers fold into one. */
  run: () => Promise<void>;
  log: Logger;
  /** A burst of triggers is answered once, this long after the last one... */
  debounceMs?: number;
  /** ...but never later than this after the first: steady writes must not starve the loop. */
  maxWaitMs?: number;
}

/**
 * Serialised passes whose triggers merge: one pass runs at a time, and however many triggers
 * arrive meanwhile, at most one pass waits behind it. A pass reads state when it starts, so the
 * waiting one covers every trigger that came before it began. (The loops this replaces chained a
 * pass per trigger: 1,000 app creations queued 44 scheduling passes and 130 nginx renders.)
 */
export class Passes {
  private running: Promise<void> | undefined;
  /** A pass is wanted after the running one. */
  private dirty = false;
  private timer: NodeJS.Timeout | undefined;
  private firstTrigger = 0;
  private stopped = false;
  private readonly waiters: (() => void)[] = [];
  /** Passes run so far (for tests and metrics). */
  count = 0;

  constructor(private readonly o: PassesOptions) {}

  /** Asks for a pass after the debounce (bounded by the maximum wait). */
  request(): void {
    if (this.stopped) return;
    const now = Date.now();
    if (this.timer === undefined) this.firstTrigger = now;
    const debounce = this.o.debounceMs ?? 50;
    const latest = this.firstTrigger + (this.o.maxWaitMs ?? 1000);
    const at = Math.min(now + debounce, latest);
    clearTimeout(this.timer);
    this.timer = setTimeout(() => {
      this.timer = undefined;
      void this.now();
    }, Math.max(0, at - now));
  }

  /**
   * A pass as soon as possible (merged with any already waiting). Resolves once a pass that
   * started after this call has finished, or at once if the loop is stopped.
   */
  now(): Promise<void> {
    if (this.stopped) return Promise.resolve();
    clearTimeout(this.timer);
    this.timer = undefined;
    const done = new Promise<void>((resolve) => this.waiters.push(resolve));
    if (this.running) this.dirty = true;
    else this.running = this.loop();
    return done;
  }

  private async loop(): Promise<void> {
    do {
      this.dirty = false;
      // Everyone waiting now is served by this pass: it starts after they asked.
      const served = this.waiters.splice(0);
      if (this.stopped) {
        for (const w of served) w();
        break;
      }
      this.count++;
      try {
        await this.o.run();
      } catch (err) {
        this.o.log.error({ err: errorMessage(err) }, 'pass failed');
      }
      for (const w of served) w();
    } while (this.dirty && !this.stopped);
    this.running = undefined;
    // Stopped while waiting: nobody will run a pass for them.
    for (const w of this.waiters.splice(0)) w();
  }

  /** Drops whatever is queued and waits only for the pass that is running, if any. */
  async stop(): Promise<void> {
    this.stopped = true;
    clearTimeout(this.timer);
    this.timer = undefined;
    this.dirty = false;
    await this.running;
    for (const w of this.waiters.splice(0)) w();
  }
}
