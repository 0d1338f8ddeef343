import type { Logger } from './log.js';
import type { Store } from '../store/index.js';
import { decodeAll } from './codec.js';
import { keys } from './keys.js';
import { codecs } from './records.js';

/**
 * The rollout handshake: the routers that have not yet applied `revision`, among the live ones
 * (each reports under its own lease, so dead ones drop out by themselves). With no router at all,
 * nothing routes to the dyno, so nobody lags. A report that cannot be read counts as lagging.
 */
export function routersBehind(reports: Map<string, number>, revision: number): string[] {
  return [...reports].filter(([, applied]) => applied < revision).map(([id]) => id);
}

async function readReports(store: Store): Promise<{ reports: Map<string, number>; revision: number }> {
  const r = await store.range(keys.routers(), { prefix: true });
  const reports = new Map<string, number>();
  for (const kv of r.kvs) reports.set(kv.key, 0);
  for (const e of decodeAll(codecs.router, r.kvs)) reports.set(e.key, e.value.revision);
  return { reports, revision: r.revision };
}

export async function routersCaughtUp(store: Store, revision: number): Promise<boolean> {
  return routersBehind((await readReports(store)).reports, revision).length === 0;
}

/**
 * Waits (bounded) until every live router has applied `revision`, following their reports with a
 * watch rather than polling; a broken watch or a failed read is retried until the deadline. A
 * router that never catches up cannot hold a stop forever: past the timeout this says which
 * ones lagged, and returns false.
 */
export async function waitForRouters(store: Store, revision: number, o: { timeoutMs?: number; log?: Logger } = {}): Promise<boolean> {
  const timeoutMs = o.timeoutMs ?? 10_000;
  const deadline = Date.now() + timeoutMs;
  let reports = new Map<string, number>();
  while (Date.now() < deadline) {
    try {
      const state = await readReports(store);
      reports = state.reports;
      if (routersBehind(reports, revision).length === 0) return true;
      const watch = await store.watch(keys.routers(), { prefix: true, startRevision: state.revision + 1 });
      const timer = setTimeout(() => watch.close(), Math.max(0, deadline - Date.now()));
      try {
        for await (const batch of watch) {
          for (const e of batch.events) {
            if (e.type === 'delete') reports.delete(e.kv.key);
            else reports.set(e.kv.key, decodeAll(codecs.router, [e.kv])[0]?.value.revision ?? 0);
          }
          if (routersBehind(reports, revision).length === 0) return true;
        }
      } finally {
        clearTimeout(timer);
        watch.close();
      }
    } catch {
      // The watch broke or the store did not answer: read again shortly, until the deadline.
      await new Promise((r) => setTimeout(r, Math.min(200, Math.max(0, deadline - Date.now()))));
    }
  }
  o.log?.warn({ revision, lagging: routersBehind(reports, revision).map((k) => k.slice(keys.routers().length)), timeoutMs }, 'gave up waiting for routers to apply a change');
  return false;
}
