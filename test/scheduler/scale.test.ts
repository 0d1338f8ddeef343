import { afterEach, describe, expect, it } from 'vitest';
import { keys } from '../../src/domain/keys.js';
import type { KeyValue } from '../../src/store/index.js';
import { Cluster } from '../control-loops/harness.js';
import { CountingStore } from '../support/counting-store.js';
import { until } from '../support/until.js';

const APPS = 1000;
/** Reads an agent makes to start one dyno (3 today), with room for one retry. */
const PER_DYNO = 4;

let cluster: Cluster;
afterEach(async () => {
  await cluster?.close();
});

/** Counts the reads in flight at once, besides how many: a full read must not flood the store. */
class PeakStore extends CountingStore {
  inFlight = 0;
  peak = 0;

  override async get(key: string, options?: { revision?: number }): Promise<KeyValue | undefined> {
    this.peak = Math.max(this.peak, ++this.inFlight);
    try {
      return await super.get(key, options);
    } finally {
      this.inFlight--;
    }
  }
}

/** Every counter back to zero; returns reads and writes since the last call. */
function take(s: CountingStore): { reads: number; writes: number } {
  const out = { reads: s.reads(), writes: s.writes };
  for (const k of Object.keys(s.calls) as (keyof typeof s.calls)[]) s.calls[k] = 0;
  s.readingTxns = s.writes = s.refusedTxns = 0;
  return out;
}

async function unitsOf(name: string): Promise<string[]> {
  return (await cluster.units(name)).map((u) => u.key).sort();
}

describe(`the scheduler and agents among ${APPS} apps`, () => {
  it('react to one app\'s config change, scale and deploy with reads in proportion to that app, none for the other apps; a new leader reads the apps a few at a time', async () => {
    cluster = await Cluster.start();
    for (let i = 0; i < APPS; i += 50) await Promise.all(Array.from({ length: 50 }, (_, j) => cluster.apps.create(cluster.owner, `app-${String(i + j).padStart(4, '0')}`)));
    const agentStore = new CountingStore(cluster.store);
    await cluster.agent('m1', { memoryBytes: 64 * 1024 ** 3, agent: { store: agentStore } });
    await cluster.app('shop', { worker: 'hang' }, { worker: 2 });
    // A store across a network: reads take a while, so those of a full read overlap.
    const schedStore = new PeakStore(cluster.store);
    schedStore.readDelayMs = 2;
    const s = await cluster.scheduler('s1', { store: schedStore, debounceMs: 20, maxWaitMs: 200 });
    await until('leading', () => s.isLeader);
    const up = async (version: number, n: number): Promise<boolean> => {
      const st = [...(await cluster.statuses('shop')).values()];
      return st.filter((x) => x.state === 'up' && x.release.version === version).length === n && st.length === n;
    };
    await until('shop up at v2', () => up(2, 2), 20_000);
    // The election's full read: every app, but never more than a few dozen reads at once.
    expect(schedStore.peak).toBeGreaterThan(1);
    expect(schedStore.peak).toBeLessThanOrEqual(50);
    take(schedStore);
    take(agentStore);

    // A config change: a release the scheduler gets from its watch with the app record; two new
    // dynos replace two old ones.
    const access = await cluster.apps.resolve(cluster.owner, 'shop');
    await cluster.releases.setConfig(cluster.owner, access, { FOO: 'bar' });
    await until('shop up at v3', () => up(3, 2), 20_000);
    const change = { scheduler: take(schedStore), agent: take(agentStore) };
    expect(change.scheduler.reads).toBe(0);
    // Two placements and two removals, in one or a few fenced txns, and the pending markers (none).
    expect(change.scheduler.writes).toBeGreaterThanOrEqual(1);
    expect(change.scheduler.writes).toBeLessThanOrEqual(4);
    // The agent reads what each new dyno needs (its release, the app's uid): a few reads per dyno.
    expect(change.agent.reads).toBeGreaterThanOrEqual(2);
    expect(change.agent.reads).toBeLessThanOrEqual(2 * PER_DYNO);

    // Scaling one app: the formation comes with the watch too.
    await cluster.scale('shop', { worker: 3 });
    await until('three workers', async () => (await unitsOf('shop')).length === 3 && up(3, 3), 20_000);
    expect(take(schedStore).reads).toBe(0);
    expect(take(agentStore).reads).toBeLessThanOrEqual(PER_DYNO);

    // A deploy of one app among them: the same.
    await cluster.deploy('shop', { worker: 'hang' });
    await until('shop up at v4', () => up(4, 3), 20_000);
    expect(take(schedStore).reads).toBe(0);
    expect(take(agentStore).reads).toBeLessThanOrEqual(3 * PER_DYNO);

    // And another app's config change, which runs no dynos: nothing read, nothing written.
    const other = await cluster.apps.resolve(cluster.owner, 'app-0500');
    await cluster.releases.setConfig(cluster.owner, other, { FOO: 'bar' });
    const passes = s.passes;
    await until('a pass after it', () => s.passes > passes, 5000);
    expect(take(schedStore)).toEqual({ reads: 0, writes: 0 });
    expect(take(agentStore)).toEqual({ reads: 0, writes: 0 });
    expect(await cluster.store.get(keys.release(other.app.id, 2))).toBeDefined();
  });
});
