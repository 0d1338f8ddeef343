import { afterEach, describe, expect, it } from 'vitest';
import { ControlLoop } from '../../src/loop/index.js';
import { openStore } from '../../src/store/index.js';
import { CountingStore } from '../support/counting-store.js';
import { silentLog } from '../support/log.js';
import { until } from '../support/until.js';

let loop: ControlLoop | undefined;
afterEach(async () => {
  await loop?.stop();
});

/**
 * A loop whose state mirrors the prefix in a Map; `slowOnce()` makes the next full read's answer
 * arrive 300 ms late (the read itself is taken at once).
 */
function mirror(store: CountingStore, o: { pass?: (state: Map<string, string>) => Promise<void>; repairMs?: number; resyncMs?: number; debounceMs?: number } = {}): { loop: ControlLoop; state: Map<string, string>; slowOnce(): void } {
  const state = new Map<string, string>();
  let slow = false;
  const l = new ControlLoop({
    store,
    log: silentLog(),
    prefix: '/t/',
    load: async () => {
      const r = await store.range('/t/', { prefix: true });
      if (slow) {
        slow = false;
        await new Promise((res) => setTimeout(res, 300));
      }
      return {
        revision: r.revision,
        commit: () => {
          state.clear();
          for (const kv of r.kvs) state.set(kv.key, kv.value);
        },
      };
    },
    apply: (batch) => {
      for (const e of batch.events) {
        if (e.type === 'put') state.set(e.kv.key, e.kv.value);
        else state.delete(e.kv.key);
      }
      return true;
    },
    pass: () => o.pass?.(state) ?? Promise.resolve(),
    ...(o.repairMs !== undefined ? { repairMs: o.repairMs } : {}),
    ...(o.resyncMs !== undefined ? { resyncMs: o.resyncMs } : {}),
    ...(o.debounceMs !== undefined ? { debounceMs: o.debounceMs } : {}),
  });
  return { loop: l, state, slowOnce: () => (slow = true) };
}

describe('full reads overlapping', () => {
  it('a slow read after a watch gap and a repair meanwhile run one after the other; the state ends as the store is', async () => {
    const store = new CountingStore(openStore('memory://'));
    await store.put('/t/a', '1');
    await store.put('/t/b', '1');
    // A slow read: the repair timer fires meanwhile, and a delete lands.
    const m = mirror(store, { repairMs: 100 });
    loop = m.loop;
    const state = m.state;
    await loop.start();
    m.slowOnce();
    store.breakWatches();
    await new Promise((r) => setTimeout(r, 50));
    await store.delete('/t/a');
    await store.put('/t/c', '1');
    await until('the loads to settle on the store as it is', () => !state.has('/t/a') && state.has('/t/c'), 3000);
    // A few repairs later it still is: no older read landed last.
    await new Promise((r) => setTimeout(r, 400));
    expect([...state.keys()].sort()).toEqual(['/t/b', '/t/c']);
  });

  it('never rewinds: an event after a slow read is in the state, and no pass runs on the state the read replaces', async () => {
    const store = new CountingStore(openStore('memory://'));
    await store.put('/t/ep', 'host:1');
    const seenByPasses: boolean[] = [];
    const m = mirror(store, { pass: async (st) => void seenByPasses.push(st.has('/t/ep')), debounceMs: 1, resyncMs: 20 });
    loop = m.loop;
    const state = m.state;
    await loop.start();
    await new Promise((r) => setTimeout(r, 50));
    m.slowOnce();
    store.breakWatches();
    await new Promise((r) => setTimeout(r, 100));
    // The unpublish lands while the slow read (taken before it) is still on its way.
    await store.delete('/t/ep');
    const passesBefore = seenByPasses.length;
    await until('the read in force and the delete applied', () => !state.has('/t/ep') && seenByPasses.length > passesBefore + 2, 3000);
    await new Promise((r) => setTimeout(r, 200));
    expect(state.has('/t/ep')).toBe(false);
    // Once deleted, no later pass ever saw the endpoint again.
    const afterDelete = seenByPasses.slice(seenByPasses.lastIndexOf(true) + 1);
    expect(afterDelete.length).toBeGreaterThan(2);
    expect(seenByPasses.slice(passesBefore).filter((v, i, all) => v && all.slice(0, i).includes(false))).toEqual([]);
  });

  it('retries a read that keeps failing with one timer, backing off, however often gaps and repairs ask', async () => {
    const store = new CountingStore(openStore('memory://'));
    let failing = false;
    let loads = 0;
    loop = new ControlLoop({
      store,
      log: silentLog(),
      prefix: '/t/',
      load: async () => {
        loads++;
        if (failing) throw new Error('the store did not answer');
        return { revision: await store.currentRevision(), commit: () => undefined };
      },
      apply: () => true,
      pass: async () => undefined,
      repairMs: 50,
    });
    await loop.start();
    failing = true;
    store.breakWatches();
    const before = loads;
    await new Promise((r) => setTimeout(r, 3000));
    // Backing off from 1 s: a handful of reads in 3 s, not one per repair tick (60) or more.
    expect(loads - before).toBeGreaterThanOrEqual(2);
    expect(loads - before).toBeLessThanOrEqual(4);
    failing = false;
  });
});

