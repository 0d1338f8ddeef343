import { errorMessage } from '../domain/errors.js';
import type { Logger } from '../domain/log.js';

/**
 * The one shutdown order of a node. Dynos first (one-off, then formation, then the agent's line to
 * a remote controller, which flushes their last log lines); the router and the scheduler; then
 * SSH (its running pushes still need the API's hook endpoint), the API with the controller's
 * services; the network once nothing runs in a namespace any more (dynos released theirs, builds
 * ended with the API); and the store last, since everything above writes to it on the way down.
 * A server's record goes first, so peers and agents stop choosing it; its etcd member goes after
 * the store, which is its client.
 */
export const SHUTDOWN_ORDER = ['server', 'one-off', 'agent', 'link', 'router', 'scheduler', 'ssh', 'joins', 'controller', 'slugs', 'network', 'store', 'etcd'] as const;

export type Part = (typeof SHUTDOWN_ORDER)[number];

/**
 * What a node has started, each part's stop registered as soon as it exists (before its own start
 * finishes), so a start that fails half way takes down exactly what it made.
 */
export class Parts {
  private readonly stops = new Map<Part, () => Promise<void>>();
  private stopping: Promise<void> | undefined;

  constructor(private readonly log: Logger) {}

  /** Registers (or replaces) how a part stops. */
  add(part: Part, stop: () => Promise<void>): void {
    this.stops.set(part, stop);
  }

  /**
   * Stops every part in `SHUTDOWN_ORDER`, once: a second call waits for the first. A part that
   * fails to stop does not keep the others running; the first such error is thrown at the end.
   */
  stop(): Promise<void> {
    this.stopping ??= this.stopAll();
    return this.stopping;
  }

  private async stopAll(): Promise<void> {
    let failure: unknown;
    for (const part of SHUTDOWN_ORDER) {
      const stop = this.stops.get(part);
      if (!stop) continue;
      try {
        await stop();
        this.log.debug({ part }, 'stopped');
      } catch (err) {
        this.log.error({ part, err: errorMessage(err) }, 'failed to stop');
        failure ??= err;
      }
    }
    if (failure !== undefined) throw failure;
  }
}

/** Runs `start`; if it throws, stops what it had made and rethrows. */
export async function startOrUnwind<T>(parts: Parts, start: () => Promise<T>): Promise<T> {
  try {
    return await start();
  } catch (err) {
    await parts.stop().catch(() => undefined);
    throw err;
  }
}
