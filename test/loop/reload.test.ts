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

describe('full reads overlapping', () => {
  it('a slow read after a watch gap and a repair meanwhile run one after the other; the state ends as the store is', async () => {
    const store = new CountingStore(openStore('memory://'));
    await store.put('/t/a', '1');
    await store.put('/t/b', '1');
    const state = new Map<string, string>();
    let slowNext = false;
    loop = new ControlLoop({
      store,
      log: silentLog(),
      prefix: '/t/',
      load: async () => {
        const slow = slowNext;
        slowNext = false;
        const r = await store.range('/t/', { prefix: true });
        // The answer is slow to arrive: the repair timer fires meanwhile, and a delete lands.
        if (slow) await new Promise((res) => setTimeout(res, 300));
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
      pass: async () => undefined,
      repairMs: 100,
    });
    await loop.start();
    slowNext = true;
    store.breakWatches();
    await new Promise((r) => setTimeout(r, 50));
    await store.delete('/t/a');
    await store.put('/t/c', '1');
    await until('the loads to settle on the store as it is', () => !state.has('/t/a') && state.has('/t/c'), 3000);
    // A few repairs later it still is: no older read landed last.
    await new Promise((r) => setTimeout(r, 400));
    expect([...state.keys()].sort()).toEqual(['/t/b', '/t/c']);
  });
});
