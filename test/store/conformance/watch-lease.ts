import { beforeAll, expect, it } from 'vitest';
import { Election, LeaseKeeper, StoreErrorCode, isStoreError, type Store, type WatchEvent } from '../../../src/store/index.js';
import { until } from '../../support/until.js';
import { expectCode, next, take, unique, type StoreHarness, type SuiteContext } from './helpers.js';

/** Watches, leases, election, compaction and surviving a restart. */
export function watchLeaseCases(ctx: SuiteContext, capabilities: { restart: boolean }): void {
  let h: StoreHarness;
  let store: Store;
  // Runs after the suite's own beforeAll (registered first), which opened the store.
  beforeAll(() => {
    h = ctx.h;
    store = ctx.store;
  });

  it('watches a prefix from a revision: every event in order, no gaps, whole transactions together', async () => {
    const p = unique('watch');
    const start = (await store.currentRevision()) + 1;
    await store.put(`${p}a`, '1');
    await store.put(`${p}b`, '2');
    await store.put(`${p.slice(0, -1)}-elsewhere`, 'ignored');
    const watch = await store.watch(p, { prefix: true, startRevision: start });
    await store.txn({ compare: [], success: [{ type: 'put', key: `${p}c`, value: '3' }, { type: 'delete', key: `${p}a` }] });
    await store.delete(p, { prefix: true });
    const batches: { revision: number; events: WatchEvent[] }[] = [];
    for await (const b of watch) {
      batches.push(b);
      if (batches.flatMap((x) => x.events).length >= 6) break;
    }
    const events = batches.flatMap((b) => b.events);
    expect(events.map((e) => `${e.type} ${e.kv.key.slice(p.length)}`)).toEqual(['put a', 'put b', 'put c', 'delete a', 'delete b', 'delete c']);
    const revs = events.map((e) => e.kv.modRevision);
    expect(revs).toEqual([...revs].sort((x, y) => x - y));
    expect(events[2]?.kv.modRevision).toBe(events[3]?.kv.modRevision);
    // The txn's two events never straddle batches.
    const txnRev = events[2]?.kv.modRevision;
    expect(batches.filter((b) => b.events.some((e) => e.kv.modRevision === txnRev))).toHaveLength(1);
    expect(events[3]).toMatchObject({ type: 'delete', kv: { value: '' } });

    // A single-key watch without a start revision sees only later changes to that key.
    const single = await store.watch(`${p}x`);
    await store.put(`${p}y`, 'no');
    await store.put(`${p}x`, 'yes');
    const [only] = await take(single, 1);
    expect(only).toMatchObject({ type: 'put', kv: { key: `${p}x`, value: 'yes', version: 1 } });
  });

  it('resumes a watch from the last revision seen, with no gap and no duplicate', async () => {
    const p = unique('resume');
    const start = (await store.currentRevision()) + 1;
    const first = await store.watch(p, { prefix: true, startRevision: start });
    for (let i = 0; i < 5; i++) await store.put(`${p}k${i}`, String(i));
    const seen = await take(first, 3);
    first.close();
    const last = seen[2]!.kv.modRevision;
    for (let i = 5; i < 8; i++) await store.put(`${p}k${i}`, String(i));
    const other = await h.open();
    const resumed = await other.watch(p, { prefix: true, startRevision: last + 1 });
    const rest = await take(resumed, 5);
    if (other !== store) await other.close();
    expect([...seen.slice(0, 3), ...rest].map((e) => e.kv.value)).toEqual(['0', '1', '2', '3', '4', '5', '6', '7']);
  });

  it('deletes a lease\'s keys with delete events when it expires, and refuses to keep it alive after', async () => {
    const p = unique('lease');
    const lease = await store.grantLease(2);
    expect(lease.ttl).toBeGreaterThanOrEqual(2);
    await store.put(`${p}a`, '1', { lease: lease.id });
    await store.put(`${p}b`, '2', { lease: lease.id });
    await store.put(`${p}keep`, '3');
    expect((await store.get(`${p}a`))?.lease).toBe(lease.id);
    const info = await store.leaseInfo(lease.id);
    expect(info.keys).toEqual([`${p}a`, `${p}b`]);
    expect(info.remaining).toBeGreaterThan(0);
    const watch = await store.watch(p, { prefix: true });
    const started = Date.now();
    await until('the lease to expire', async () => (await store.get(`${p}a`)) === undefined, 15_000);
    expect(Date.now() - started).toBeLessThan(10_000);
    const events = await take(watch, 2);
    expect(events.map((e) => `${e.type} ${e.kv.key.slice(p.length)}`).sort()).toEqual(['delete a', 'delete b']);
    expect(await store.get(`${p}b`)).toBeUndefined();
    expect((await store.get(`${p}keep`))?.value).toBe('3');
    await expectCode(store.keepAliveOnce(lease.id), StoreErrorCode.LeaseNotFound);
    expect((await store.leaseInfo(lease.id)).remaining).toBe(-1);
    await expectCode(store.put(`${p}c`, 'x', { lease: lease.id }), StoreErrorCode.LeaseNotFound);
  });

  it('keeps a refreshed lease alive and deletes its keys at once on revoke', async () => {
    const p = unique('revoke');
    const keeper = await LeaseKeeper.start(store, { ttl: 2 });
    await store.put(`${p}a`, '1', { lease: keeper.id });
    // A put without a lease detaches the key from its lease, as in etcd.
    await store.put(`${p}detached`, '1', { lease: keeper.id });
    await store.put(`${p}detached`, '2');
    const onLease = await store.txn({ compare: [{ key: `${p}a`, target: 'lease', op: '=', value: keeper.id }], success: [] });
    expect(onLease.succeeded).toBe(true);
    await new Promise((r) => setTimeout(r, 3500));
    expect((await store.get(`${p}a`))?.value).toBe('1');
    expect(await store.keepAliveOnce(keeper.id)).toBeGreaterThanOrEqual(2);
    const watch = await store.watch(`${p}a`);
    await keeper.revoke();
    expect(await store.get(`${p}a`)).toBeUndefined();
    expect((await take(watch, 1))[0]?.type).toBe('delete');
    expect((await store.get(`${p}detached`))?.value).toBe('2');
    await expectCode(store.revokeLease(keeper.id), StoreErrorCode.LeaseNotFound);
  });

  it('elects one leader among two contenders and fails over when the leader\'s lease dies', async () => {
    const prefix = unique('election').slice(0, -1);
    const other = await h.open();
    const a = new Election(store, prefix);
    const b = new Election(other, prefix);
    const leaseA = await store.grantLease(2);
    const keeperB = await LeaseKeeper.start(other, { ttl: 2 });
    const leaderA = await a.campaign(leaseA.id, 'node-a');
    expect((await b.leader())?.value).toBe('node-a');
    const abort = new AbortController();
    const seen: (string | undefined)[] = [];
    const observing = (async () => {
      for await (const l of b.observe(abort.signal)) seen.push(l?.value);
    })();
    let bElected = false;
    const campaignB = b.campaign(keeperB.id, 'node-b').then((l) => {
      bElected = true;
      return l;
    });
    // A keeps its leadership while its lease is refreshed.
    await store.keepAliveOnce(leaseA.id);
    await new Promise((r) => setTimeout(r, 1000));
    expect(bElected).toBe(false);
    expect(await leaderA.isLeader()).toBe(true);
    // A stops refreshing (a crashed leader): B takes over within the TTL plus the backend's expiry tick.
    const t0 = Date.now();
    const leaderB = await campaignB;
    expect(Date.now() - t0).toBeLessThan(8000);
    expect(leaderB.revision).toBeGreaterThan(leaderA.revision);
    expect(await leaderA.isLeader()).toBe(false);
    await expectCode(leaderA.proclaim('still me?'), StoreErrorCode.NotLeader);
    expect((await a.leader())?.value).toBe('node-b');
    await until('node-b observed', () => seen.includes('node-b'), 5000);
    expect(seen.slice(0, 2)).toEqual(['node-a', 'node-b']);
    // Resigning hands over at once; with no candidates there is no leader.
    await leaderB.resign();
    await until('no leader observed', () => seen[seen.length - 1] === undefined, 5000);
    expect(await a.leader()).toBeUndefined();
    abort.abort();
    await observing;
    await keeperB.revoke();
    if (other !== store) await other.close();
  });

  it('never leaves a ghost candidate when a retried campaign races a resign', async () => {
    const prefix = unique('ghost').slice(0, -1);
    const election = new Election(store, prefix);
    for (let round = 0; round < 5; round++) {
      const lease = await store.grantLease(30);
      const first = await election.campaign(lease.id, 'v1');
      const [retry] = await Promise.allSettled([election.campaign(lease.id, 'v2'), first.resign()]);
      const left = (await store.range(`${prefix}/`, { prefix: true })).kvs;
      if (retry.status === 'fulfilled') {
        expect(left.map((kv) => kv.createRevision)).toEqual([retry.value.revision]);
        await retry.value.resign();
      } else {
        expect(isStoreError(retry.reason, StoreErrorCode.NotLeader)).toBe(true);
        expect(left).toEqual([]);
      }
      await store.revokeLease(lease.id);
    }
    expect(await election.leader()).toBeUndefined();
  });

  it('compacts history: reads and watches below the compacted revision fail with compacted', async () => {
    const p = unique('compact');
    const r1 = (await store.put(`${p}k`, 'old')).revision;
    await store.put(`${p}k`, 'mid');
    const r3 = (await store.put(`${p}k`, 'new')).revision;
    await store.compact(r3);
    await expectCode(store.range(`${p}k`, { revision: r1 }), StoreErrorCode.Compacted);
    expect((await store.get(`${p}k`, { revision: r3 }))?.value).toBe('new');
    const stale = await store.watch(`${p}k`, { startRevision: r1 });
    await expectCode(take(stale, 1), StoreErrorCode.Compacted);
    const fresh = await store.watch(`${p}k`, { startRevision: r3 });
    expect((await take(fresh, 1))[0]?.kv.value).toBe('new');
    await expectCode(store.compact(r1), StoreErrorCode.Compacted);
  });

  if (capabilities.restart) {
    it('keeps every write across a backend restart and resumes a watch from an old revision', async () => {
      const p = unique('restart');
      const start = (await store.currentRevision()) + 1;
      for (let i = 0; i < 5; i++) await store.put(`${p}k${i}`, String(i));
      const live = await store.watch(p, { prefix: true, startRevision: start });
      const liveIt = live[Symbol.asyncIterator]();
      const early = await next(liveIt, 5);
      await h.restart!();
      if (!h.liveWatchSurvivesRestart) {
        live.close();
        await store.close();
        store = await h.open();
        ctx.store = store;
      }
      for (let i = 5; i < 8; i++) await store.put(`${p}k${i}`, String(i));
      if (h.liveWatchSurvivesRestart) {
        const late = await next(liveIt, 3, 20_000);
        live.close();
        expect([...early, ...late].map((e) => e.kv.value)).toEqual(['0', '1', '2', '3', '4', '5', '6', '7']);
      }
      const replay = await store.watch(p, { prefix: true, startRevision: start });
      expect((await take(replay, 8)).map((e) => e.kv.value)).toEqual(['0', '1', '2', '3', '4', '5', '6', '7']);
      expect((await store.range(p, { prefix: true })).count).toBe(8);
    });
  }
}
