import { afterEach, describe, expect, it } from 'vitest';
import { keys } from '../../src/domain/keys.js';
import { CountingStore } from '../support/counting-store.js';
import { until } from '../support/until.js';
import { Cluster } from './harness.js';

/**
 * A full read (the scheduler's repair timer, a watch gap) must never let a pass plan from a state
 * half read or half failed: an app not read yet would look absent, and its units would be removed.
 */
let cluster: Cluster;
afterEach(async () => {
  await cluster?.close();
});

const TiB = 1024 ** 4;
const placed = (): number => cluster.timeline.filter((t) => t.what.startsWith('place')).length;
const removed = (): string[] => cluster.timeline.filter((t) => t.what.startsWith('remove')).map((t) => t.what);

async function machine(id: string): Promise<void> {
  await cluster.store.put(keys.machine(id), JSON.stringify({ id, name: id, address: '127.0.0.1', tags: {}, capacity: { memoryBytes: TiB, cpus: 2 }, ports: { from: 20000, to: 29999 }, agent_version: '0.1.0' }));
}

describe('full reads', () => {
  it('repairs on a slow store without removing a unit: the new state is swapped in whole', async () => {
    cluster = await Cluster.start();
    await machine('m1');
    for (let i = 0; i < 40; i++) await cluster.app(`app${i}`, { web: 'serve' }, { web: 1 });
    const store = new CountingStore(cluster.store);
    // Every read a millisecond away, as etcd's are; passes from memory every 20 ms, a repair every 250 ms.
    store.readDelayMs = 1;
    const s = await cluster.scheduler('s1', { store, reconcileMs: 20, repairMs: 250 });
    await until('40 units placed', () => placed() >= 40);
    const loads = s.passes;
    await until('several repairs and many passes', () => s.passes > loads + 30, 10_000);
    await new Promise((r) => setTimeout(r, 600));
    expect(removed()).toEqual([]);
    expect(placed()).toBe(40);
  });

  it('keeps the state it had when a repair fails half-way', async () => {
    cluster = await Cluster.start();
    await machine('m1');
    for (let i = 0; i < 20; i++) await cluster.app(`app${i}`, { web: 'serve' }, { web: 1 });
    const store = new CountingStore(cluster.store);
    const s = await cluster.scheduler('s1', { store, reconcileMs: 50, repairMs: 300 });
    await until('20 units placed', () => placed() >= 20);
    // The 40th get from now fails: half-way through the next repair's per-app reads.
    store.failGetIn = 40;
    await until('the failing read happened', () => store.failGetIn === 0, 5000);
    const passes = s.passes;
    await until('passes after the failed repair', () => s.passes > passes + 5, 5000);
    expect(removed()).toEqual([]);
  });

  it('leaves an app whose formation cannot be read as it is, and plans it again once it can', async () => {
    cluster = await Cluster.start();
    await machine('m1');
    const app = await cluster.app('shop', { web: 'serve' }, { web: 2 });
    await cluster.scheduler('s1', { reconcileMs: 50 });
    await until('2 units placed', () => placed() >= 2);
    const good = (await cluster.store.get(keys.formation(app.id)))?.value ?? '';
    await cluster.store.put(keys.formation(app.id), '{"web": {"quantity": "lots"}}');
    await new Promise((r) => setTimeout(r, 400));
    expect(removed()).toEqual([]);
    // Readable again, and scaled down: now the plan acts on it.
    await cluster.store.put(keys.formation(app.id), good.replace(/"quantity":2/, '"quantity":1'));
    await until('one unit removed', () => removed().length === 1);
  });

  it('reads an app whose name-index entry cannot be read through its units, and keeps them', async () => {
    cluster = await Cluster.start();
    await machine('m1');
    await cluster.app('shop', { web: 'serve' }, { web: 2 });
    await cluster.scheduler('s1', { reconcileMs: 50, repairMs: 300 });
    await until('2 units placed', () => placed() >= 2);
    await cluster.store.put(keys.appName('shop'), 'not/an-id');
    await new Promise((r) => setTimeout(r, 1000));
    expect(removed()).toEqual([]);
  });
});

