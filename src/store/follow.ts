import type { Store, WatchBatch } from './types.js';

export interface Following {
  close(): void;
}

export interface FollowHandlers {
  onBatch(batch: WatchBatch): void;
  /**
   * The watch broke (history compacted, backend restarted, store closed): re-read whatever the
   * follower derives from the store and return the revision that now covers, to go on after.
   */
  onGap(): Promise<number>;
  /** Pause before re-watching after a break (ms). */
  retryMs?: number;
}

/**
 * Follows a prefix from a revision for as long as it runs, resuming after every break without a
 * gap: the one loop every watcher in Berth (agent, scheduler, router, templater) needs.
 */
export function follow(store: Store, prefix: string, from: number, h: FollowHandlers): Following {
  let closed = false;
  let current: { close(): void } | undefined;
  void (async () => {
    let start = from;
    while (!closed) {
      try {
        const watch = await store.watch(prefix, { prefix: true, startRevision: start });
        current = watch;
        if (closed) watch.close();
        for await (const batch of watch) {
          start = batch.revision + 1;
          h.onBatch(batch);
        }
      } catch {
        if (closed) return;
        start = (await h.onGap().catch(() => start - 1)) + 1;
        await new Promise((r) => setTimeout(r, h.retryMs ?? 200));
      }
    }
  })();
  return {
    close() {
      closed = true;
      current?.close();
    },
  };
}
