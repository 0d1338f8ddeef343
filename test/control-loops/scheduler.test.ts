import { afterEach, describe, expect, it } from 'vitest';
import { keys } from '../../src/domain/keys.js';
import { CountingStore } from '../support/counting-store.js';
import { until } from '../support/until.js';
import { Cluster } from './harness.js';

const GiB = 1024 * 1024 * 1024;

let cluster: Cluster;
afterEach(async () => {
  await cluster?.close();
});

/** The election's candidates, leader first. */
async function candidates(c: Cluster): Promise<{ key: string; value: string; lease: string }[]> {
  const r = await c.store.range(`${keys.leader('scheduler')}/`, { prefix: true });
  return [...r.kvs].sort((a, b) => a.createRevision - b.createRevision).map((kv) => ({ key: kv.key, value: kv.value, lease: kv.lease }));
}

const placed = async (c: Cluster, app: string, n = 1): Promise<true | undefined> => ((await c.units(app)).length >= n ? true : undefined);

describe('fencing after losing the leadership', () => {
  it('a scheduler whose election key is deleted writes nothing more (its txn is refused); the next candidate takes over and places units', async () => {
    cluster = await Cluster.start();
    await cluster.agent('m1', { memoryBytes: 4 * GiB });
    const aStore = new CountingStore(cluster.store);
    const a = await cluster.scheduler('a', { store: aStore });
    await until('a leads', () => a.isLeader);
    // b reacts slowly, so a (which does not know yet) is the first to try writing after the coup.
    const b = await cluster.scheduler('b', { debounceMs: 1000, maxWaitMs: 1000 });
    await cluster.app('one', { web: 'serve' }, { web: 1 });
    await until('one placed', () => placed(cluster, 'one'));
    expect(b.isLeader).toBe(false);

    const [leader] = await candidates(cluster);
    expect(leader?.value).toBe('a');
    await cluster.store.delete(leader!.key);
    await until('b leads', () => b.isLeader);
    // a does not know yet: it learns at its next write, which the fence refuses.
    const writes = aStore.written.length;
    const refused = aStore.refusedTxns;
    await cluster.app('two', { web: 'serve' }, { web: 1 });
    await until('two placed (by b)', () => placed(cluster, 'two'));
    await until('a refused', () => aStore.refusedTxns > refused);
    expect(a.isLeader).toBe(false);
    await cluster.scale('two', { web: 2 });
    await until('two scaled', () => placed(cluster, 'two', 2));
    await new Promise((r) => setTimeout(r, 200));
    // Nothing but its candidacy: a deposed scheduler gets back in line (and waits there).
    expect(aStore.written.slice(writes).filter((k) => !k.startsWith(`${keys.leader('scheduler')}/`))).toEqual([]);
    expect((await candidates(cluster)).map((c) => c.value)).toEqual(['b', 'a']);
  });

  it('a scheduler whose lease is revoked stops, the other takes over, and it campaigns again under a new lease', async () => {
    cluster = await Cluster.start();
    await cluster.agent('m1', { memoryBytes: 4 * GiB });
    const aStore = new CountingStore(cluster.store);
    const a = await cluster.scheduler('a', { store: aStore });
    await until('a leads', () => a.isLeader);
    const b = await cluster.scheduler('b');
    await until('b waiting in line', async () => ((await candidates(cluster)).length === 2 ? true : undefined));

    const [leader] = await candidates(cluster);
    await cluster.store.revokeLease(leader!.lease);
    await until('b leads', () => b.isLeader);
    await until('a in line again, under a new lease', async () => {
      const c = await candidates(cluster);
      return c.length === 2 && c[1]?.value === 'a' && c[1].lease !== leader!.lease ? true : undefined;
    }, 5000);
    expect(a.isLeader).toBe(false);
    const writes = aStore.written.length;
    await cluster.app('one', { web: 'serve' }, { web: 1 });
    await until('one placed (by b)', () => placed(cluster, 'one'));
    await new Promise((r) => setTimeout(r, 200));
    expect(aStore.written.slice(writes)).toEqual([]);

    // And when b goes, a leads again and schedules.
    await b.stop();
    await until('a leads again', () => a.isLeader, 5000);
    await cluster.scale('one', { web: 2 });
    await until('one scaled (by a)', () => placed(cluster, 'one', 2));
  });

  it('a deposed scheduler (election key deleted) is a candidate again: it takes over when the new leader goes', async () => {
    cluster = await Cluster.start();
    await cluster.agent('m1', { memoryBytes: 4 * GiB });
    const a = await cluster.scheduler('a');
    await until('a leads', () => a.isLeader);
    // b reacts slowly, so a (which does not know yet) is the first to try writing after the coup.
    const b = await cluster.scheduler('b', { debounceMs: 1000, maxWaitMs: 1000 });
    await cluster.app('one', { web: 'serve' }, { web: 1 });
    await until('one placed', () => placed(cluster, 'one'));
    const [leader] = await candidates(cluster);
    await cluster.store.delete(leader!.key);
    await until('b leads', () => b.isLeader);
    // a finds out at its next write.
    await cluster.scale('one', { web: 2 });
    await until('one scaled (by b)', () => placed(cluster, 'one', 2));
    await until('a knows it no longer leads', () => !a.isLeader);

    await b.stop();
    await until('a leads again', () => a.isLeader, 5000);
    await cluster.scale('one', { web: 3 });
    await until('one scaled (by a)', () => placed(cluster, 'one', 3));
  });
});

describe('failover', () => {
  it('a rollout the old leader began is finished by the new one', async () => {
    cluster = await Cluster.start();
    await cluster.router('r1', { delayMs: 300 });
    const m1 = await cluster.agent('m1', { memoryBytes: 4 * GiB });
    const a = await cluster.scheduler('a');
    await until('a leads', () => a.isLeader);
    const b = await cluster.scheduler('b');
    await cluster.app('shop', { web: 'serve' }, { web: 2 });
    await until('v2 published', async () => ((await cluster.endpoints('shop')).size === 2 ? true : undefined));
    await cluster.deploy('shop', { web: 'serve' });
    // a places the new units; it goes before the handshake lets it remove the old ones.
    await until('a v3 unit placed', async () => ((await cluster.units('shop')).some((u) => u.unit.release === 3) ? true : undefined));
    await a.stop();
    await until('b leads', () => b.isLeader, 5000);
    await until('only v3 units', async () => {
      const units = await cluster.units('shop');
      return units.length === 2 && units.every((u) => u.unit.release === 3) ? true : undefined;
    });
    await until('two processes', () => m1.runtime.running().length === 2);
    expect([...(await cluster.endpoints('shop')).keys()].sort()).toEqual(['shop.web.1@v3', 'shop.web.2@v3']);
  });
});

describe('failed rollouts', () => {
  it('marks a release whose web dynos crash 3 times each failed, with the reason, and the old release keeps running', async () => {
    cluster = await Cluster.start();
    await cluster.router('r1');
    const m1 = await cluster.agent('m1', { memoryBytes: 4 * GiB, agent: { crashBackoffMs: 50 } });
    await cluster.scheduler('s1');
    await cluster.app('shop', { web: 'serve' }, { web: 2 });
    await until('v2 up and published twice', async () => ((await cluster.endpoints('shop')).size === 2 ? true : undefined));
    const oldIds = m1.runtime.running().map((d) => d.id);
    expect(oldIds).toHaveLength(2);

    const v3 = await cluster.deploy('shop', { web: 'echo booting; exit 1' });
    expect(v3.version).toBe(3);
    const failed = await until('v3 failed', async () => {
      const r = await cluster.release('shop', 3);
      return r?.status === 'failed' ? r : undefined;
    });
    expect(failed.failure_reason).toMatch(/^web\.[12] crashed [3-9] times before it was up: Process exited with status 1$/);
    expect((await cluster.appRecord('shop')).current_version).toBe(2);
    // The crashing units go; the old ones were never stopped and still serve.
    await until('only v2 units left', async () => ((await cluster.units('shop')).every((u) => u.unit.release === 2) ? true : undefined));
    expect((await cluster.units('shop')).map((u) => u.key).sort()).toEqual(['shop.web.1@v2', 'shop.web.2@v2']);
    expect([...(await cluster.endpoints('shop')).keys()].sort()).toEqual(['shop.web.1@v2', 'shop.web.2@v2']);
    expect(m1.runtime.calls.filter((c) => c.op === 'stop' && oldIds.includes(c.id))).toEqual([]);
    expect(m1.runtime.running().map((d) => d.id).sort()).toEqual([...oldIds].sort());
    const statuses = await cluster.statuses('shop');
    expect([...statuses.values()].filter((s) => s.release.version === 2).map((s) => s.state)).toEqual(['up', 'up']);
  });
});

describe('pending reasons', () => {
  it('reports a unit no machine has the memory for as pending with the reason; a machine that fits takes it', async () => {
    cluster = await Cluster.start();
    await cluster.agent('small', { memoryBytes: GiB });
    await cluster.scheduler('s1');
    await cluster.app('big', { web: 'serve' }, { web: { quantity: 1, size: 'performance-l' } });
    const pending = await until('a pending report', async () => (await cluster.statuses('big')).get('big.web.1@v2'));
    expect(pending).toMatchObject({ state: 'pending', reason: 'no machine has 14 GiB free', machine: null, name: 'web.1' });
    expect(await cluster.units('big')).toEqual([]);

    await cluster.agent('large', { memoryBytes: 16 * GiB });
    await until('placed on the large machine', async () => ((await cluster.units('big'))[0]?.machine === 'large' ? true : undefined));
    const up = await until('up on it', async () => {
      const st = (await cluster.statuses('big')).get('big.web.1@v2');
      return st?.state === 'up' ? st : undefined;
    });
    expect(up).toMatchObject({ machine: 'large', reason: null });
  });

  it('reports a unit no machine has the tags for as pending with the reason; a machine with them takes it', async () => {
    cluster = await Cluster.start();
    await cluster.agent('eu1', { tags: { region: 'eu' } });
    await cluster.scheduler('s1');
    await cluster.app('tagged', { worker: 'hang' });
    await cluster.setTags('tagged', { region: 'us' });
    await cluster.scale('tagged', { worker: 1 });
    const pending = await until('a pending report', async () => (await cluster.statuses('tagged')).get('tagged.worker.1@v2'));
    expect(pending).toMatchObject({ state: 'pending', reason: 'no machine matches tags region=us' });

    await cluster.agent('us1', { tags: { region: 'us' } });
    const up = await until('up on us1', async () => {
      const st = (await cluster.statuses('tagged')).get('tagged.worker.1@v2');
      return st?.state === 'up' ? st : undefined;
    });
    expect(up.machine).toBe('us1');
    expect((await cluster.units('tagged')).map((u) => u.machine)).toEqual(['us1']);
  });
});
