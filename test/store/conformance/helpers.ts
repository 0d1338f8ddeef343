import { expect } from 'vitest';
import { StoreErrorCode, isStoreError, type Store, type Watch, type WatchEvent } from '../../../src/store/index.js';

/** What a backend's test file provides; the suite itself is written once, here. */
export interface StoreHarness {
  /** Opens a client on the backend (a new one per call where the backend allows it). */
  open(): Promise<Store>;
  /**
   * Restarts the backend, keeping its data. Undefined for a backend with nothing to restart
   * (memory): the restart cases are then not part of its contract.
   */
  restart?: () => Promise<void>;
  /** Whether a watch opened before restart() keeps delivering after it (etcd: the client reconnects). */
  liveWatchSurvivesRestart: boolean;
  teardown(): Promise<void>;
}

let seq = 0;
export const unique = (name: string): string => `/conformance/${Date.now().toString(36)}-${seq++}/${name}/`;

export async function take(watch: Watch, count: number, timeoutMs = 10_000): Promise<WatchEvent[]> {
  const events: WatchEvent[] = [];
  const timer = setTimeout(() => watch.close(), timeoutMs);
  try {
    for await (const batch of watch) {
      events.push(...batch.events);
      if (events.length >= count) break;
    }
  } finally {
    clearTimeout(timer);
  }
  return events;
}

/** Reads from one iterator without ever calling return(), so the watch stays open across calls. */
export async function next(it: AsyncIterator<{ events: WatchEvent[] }>, count: number, timeoutMs = 10_000): Promise<WatchEvent[]> {
  const events: WatchEvent[] = [];
  const deadline = Date.now() + timeoutMs;
  while (events.length < count) {
    const left = deadline - Date.now();
    if (left <= 0) break;
    let timer: NodeJS.Timeout | undefined;
    const r = await Promise.race([it.next(), new Promise<undefined>((res) => (timer = setTimeout(() => res(undefined), left)))]);
    clearTimeout(timer);
    if (!r || r.done) break;
    events.push(...r.value.events);
  }
  return events;
}

export async function expectCode(p: Promise<unknown>, code: StoreErrorCode): Promise<void> {
  const err = await p.then(
    () => undefined,
    (e: unknown) => e,
  );
  expect(isStoreError(err) ? err.code : err).toBe(code);
}

/** The harness and client of one backend's suite, filled in by its beforeAll. */
export interface SuiteContext {
  h: StoreHarness;
  store: Store;
}
