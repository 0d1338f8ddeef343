import { StoreError, StoreErrorCode } from './errors.js';
import type { Watch, WatchBatch } from './types.js';

/**
 * The consumer side of a watch, shared by every backend: an async iterator over batches with an
 * unbounded buffer, a terminal error, and de-duplication by revision so that a backend's internal
 * reconnect can never hand the consumer the same revision twice.
 */
export class WatchQueue implements Watch {
  private readonly buffer: WatchBatch[] = [];
  private waiter: ((r: IteratorResult<WatchBatch>) => void) | undefined;
  private failWaiter: ((err: unknown) => void) | undefined;
  private error: unknown;
  private ended = false;
  /** Highest revision handed to the consumer (or skipped as already seen). */
  lastRevision: number;

  constructor(
    startAfter: number,
    private readonly onClose: () => void,
  ) {
    this.lastRevision = startAfter;
  }

  push(batch: WatchBatch): void {
    if (this.ended) return;
    const events = batch.events.filter((e) => e.kv.modRevision > this.lastRevision);
    if (events.length === 0) return;
    const last = events[events.length - 1];
    if (last === undefined) return;
    this.lastRevision = last.kv.modRevision;
    const fresh: WatchBatch = { events, revision: this.lastRevision };
    if (this.waiter) {
      const w = this.waiter;
      this.waiter = this.failWaiter = undefined;
      w({ value: fresh, done: false });
    } else {
      this.buffer.push(fresh);
    }
  }

  /** Ends the watch with an error; batches already buffered are still delivered first. */
  fail(err: unknown): void {
    if (this.ended) return;
    this.ended = true;
    this.error = err;
    this.onClose();
    if (this.failWaiter) {
      const f = this.failWaiter;
      this.waiter = this.failWaiter = undefined;
      f(err);
    }
  }

  close(): void {
    if (this.ended) return;
    this.ended = true;
    this.onClose();
    if (this.waiter) {
      const w = this.waiter;
      this.waiter = this.failWaiter = undefined;
      w({ value: undefined, done: true });
    }
  }

  get closed(): boolean {
    return this.ended;
  }

  [Symbol.asyncIterator](): AsyncIterator<WatchBatch> {
    return {
      next: () => {
        const batch = this.buffer.shift();
        if (batch) return Promise.resolve({ value: batch, done: false });
        if (this.ended) {
          return this.error === undefined
            ? Promise.resolve({ value: undefined, done: true })
            : Promise.reject(this.error);
        }
        return new Promise((resolve, reject) => {
          this.waiter = resolve;
          this.failWaiter = reject;
        });
      },
      return: () => {
        this.close();
        return Promise.resolve({ value: undefined, done: true });
      },
    };
  }
}

export function closedError(description: string): StoreError {
  return new StoreError(StoreErrorCode.Closed, `store ${description} is closed`);
}
