import { afterEach, describe, expect, it } from 'vitest';
import { CountingStore } from '../support/counting-store.js';
import { until } from '../support/until.js';
import { Cluster } from './harness.js';

let cluster: Cluster;
afterEach(async () => {
  await cluster?.close();
});

describe('size', () => {
  it('answers 1,000 apps created in a burst with a bounded number of passes, and reads nothing on its timer passes at rest', async () => {
    cluster = await Cluster.start();
    await cluster.agent('m1');
    const counted = new CountingStore(cluster.store);
    // The production debounce and maximum wait; a timer pass every 300 ms.
    const s = await cluster.scheduler('s1', { store: counted, debounceMs: 50, maxWaitMs: 500, reconcileMs: 300 });
    await until('leading', () => s.isLeader);
    await until('the first pass', () => s.passes >= 1);
    const before = s.passes;
    const readsBefore = counted.reads();

    const t0 = Date.now();
    // Ten at a time, so the writes come as a steady stream rather than one commit.
    for (let i = 0; i < 1000; i += 10) {
      await Promise.all(Array.from({ length: 10 }, (_, j) => cluster.apps.create(cluster.owner, `app-${String(i + j).padStart(4, '0')}`)));
    }
    const burstMs = Date.now() - t0;
    // Past the maximum wait: whatever the burst asked for has run.
    await new Promise((r) => setTimeout(r, 600));
    const burstPasses = s.passes - before;
    expect(burstPasses).toBeGreaterThanOrEqual(1);
    // Triggers merge: at most one pass per maximum wait while the burst lasts, plus the timer's
    // passes (every 300 ms) and the last one, however slow the machine makes the burst — not one per app.
    expect(burstPasses, `${burstPasses} passes for a burst of ${burstMs} ms`).toBeLessThanOrEqual(Math.ceil(burstMs / 500) + Math.ceil(burstMs / 300) + 2);
    expect(burstPasses).toBeLessThan(100);
    // The state came from the watch: the burst cost no reads at all.
    expect(counted.reads() - readsBefore).toBe(0);

    // At rest, timer passes plan from memory.
    const passes = s.passes;
    const reads = counted.reads();
    const calls = { ...counted.calls };
    await until('three timer passes', () => s.passes >= passes + 3, 5000);
    expect(counted.reads()).toBe(reads);
    expect(counted.calls.txn).toBe(calls.txn);
  });
});
