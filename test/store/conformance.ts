import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { Election, LeaseKeeper, MAX_VALUE_BYTES, StoreErrorCode, isStoreError, type Store, type Watch, type WatchEvent } from '../../src/store/index.js';

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
const unique = (name: string): string => `/conformance/${Date.now().toString(36)}-${seq++}/${name}/`;

async function take(watch: Watch, count: number, timeoutMs = 10_000): Promise<WatchEvent[]> {
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
async function next(it: AsyncIterator<{ events: WatchEvent[] }>, count: number, timeoutMs = 10_000): Promise<WatchEvent[]> {
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

async function expectCode(p: Promise<unknown>, code: StoreErrorCode): Promise<void> {
  const err = await p.then(
    () => undefined,
    (e: unknown) => e,
  );
  expect(isStoreError(err) ? err.code : err).toBe(code);
}

async function until(cond: () => Promise<boolean>, timeoutMs: number): Promise<number> {
  const start = Date.now();
  while (Date.now() - start < timeoutMs) {
    if (await cond()) return Date.now() - start;
    await new Promise((r) => setTimeout(r, 50));
  }
  throw new Error(`condition not met within ${timeoutMs}ms`);
}

/**
 * Registers the suite. `capabilities.restart` says whether the backend has a restart to survive;
 * it is known when tests are registered, before the harness exists.
 */
export function describeStoreConformance(
  name: string,
  capabilities: { restart: boolean },
  makeHarness: () => Promise<StoreHarness>,
): void {
  describe(`store conformance: ${name}`, () => {
    let h: StoreHarness;
    let store: Store;
    beforeAll(async () => {
      h = await makeHarness();
      store = await h.open();
    });
    afterAll(async () => {
      await store?.close();
      await h?.teardown();
    });

    it('stamps every write with the next revision and tracks create/mod/version', async () => {
      const p = unique('kv');
      const r0 = await store.currentRevision();
      const a = await store.put(`${p}a`, '1');
      expect(a.revision).toBe(r0 + 1);
      expect(a.prevKv).toBeUndefined();
      const b = await store.put(`${p}a`, '2');
      expect(b.revision).toBe(r0 + 2);
      expect(b.prevKv?.value).toBe('1');
      const kv = await store.get(`${p}a`);
      expect(kv).toMatchObject({ key: `${p}a`, value: '2', createRevision: r0 + 1, modRevision: r0 + 2, version: 2, lease: '0' });
      expect(await store.currentRevision()).toBe(r0 + 2);
      expect(await store.get(`${p}missing`)).toBeUndefined();
      // Unicode round-trips byte for byte.
      await store.put(`${p}ü`, 'snow ☃');
      expect((await store.get(`${p}ü`))?.value).toBe('snow ☃');
    });

    it('ranges by prefix in key order with limit, count, more, and at an old revision', async () => {
      const p = unique('range');
      for (const k of ['c', 'a', 'b', 'd']) await store.put(`${p}${k}`, k);
      await store.put(`${p.slice(0, -1)}x`, 'outside the prefix');
      const all = await store.range(p, { prefix: true });
      expect(all.kvs.map((kv) => kv.value)).toEqual(['a', 'b', 'c', 'd']);
      expect(all.count).toBe(4);
      expect(all.more).toBe(false);
      const two = await store.range(p, { prefix: true, limit: 2 });
      expect(two.kvs.map((kv) => kv.value)).toEqual(['a', 'b']);
      expect(two).toMatchObject({ count: 4, more: true });
      const between = await store.range(`${p}b`, { end: `${p}d` });
      expect(between.kvs.map((kv) => kv.value)).toEqual(['b', 'c']);
      expect((await store.range(p, { prefix: true, countOnly: true })).count).toBe(4);

      const before = await store.currentRevision();
      await store.put(`${p}a`, 'changed');
      await store.delete(`${p}b`);
      const old = await store.range(p, { prefix: true, revision: before });
      expect(old.kvs.map((kv) => kv.value)).toEqual(['a', 'b', 'c', 'd']);
      expect((await store.get(`${p}a`, { revision: before }))?.value).toBe('a');
      expect((await store.range(p, { prefix: true })).kvs.map((kv) => kv.value)).toEqual(['changed', 'c', 'd']);
      await expectCode(store.range(p, { prefix: true, revision: before + 1000 }), StoreErrorCode.FutureRevision);
    });

    it('deletes single keys and prefixes in one revision, and a no-op delete writes nothing', async () => {
      const p = unique('delete');
      await store.put(`${p}a`, '1');
      await store.put(`${p}b`, '2');
      await store.put(`${p}c`, '3');
      const one = await store.delete(`${p}a`);
      expect(one.deleted).toBe(1);
      expect(one.prevKvs.map((kv) => kv.value)).toEqual(['1']);
      const rest = await store.delete(p, { prefix: true });
      expect(rest.deleted).toBe(2);
      expect(rest.revision).toBe(one.revision + 1);
      const none = await store.delete(`${p}a`);
      expect(none).toMatchObject({ deleted: 0, revision: rest.revision });
      expect((await store.range(p, { prefix: true })).count).toBe(0);
      // A re-created key starts a new incarnation.
      await store.put(`${p}a`, 'again');
      expect(await store.get(`${p}a`)).toMatchObject({ version: 1, createRevision: rest.revision + 1 });
    });

    it('runs transactions: compares on value, mod, create and version; then/else; one revision', async () => {
      const p = unique('txn');
      const put = await store.put(`${p}k`, 'v1');
      const ok = await store.txn({
        compare: [
          { key: `${p}k`, target: 'value', op: '=', value: 'v1' },
          { key: `${p}k`, target: 'mod', op: '=', value: put.revision },
          { key: `${p}k`, target: 'version', op: '=', value: 1 },
          { key: `${p}new`, target: 'create', op: '=', value: 0 },
        ],
        success: [
          { type: 'put', key: `${p}k`, value: 'v2' },
          { type: 'put', key: `${p}new`, value: 'n' },
          { type: 'range', key: p, prefix: true },
        ],
        failure: [{ type: 'put', key: `${p}failed`, value: 'x' }],
      });
      expect(ok.succeeded).toBe(true);
      expect(ok.revision).toBe(put.revision + 1);
      const read = ok.results[2];
      expect(read?.type === 'range' ? read.kvs.map((kv) => kv.value) : []).toEqual(['v2', 'n']);
      expect((await store.get(`${p}k`))?.modRevision).toBe((await store.get(`${p}new`))?.modRevision);

      const stale = await store.txn({
        compare: [{ key: `${p}k`, target: 'mod', op: '=', value: put.revision }],
        success: [{ type: 'put', key: `${p}k`, value: 'lost update' }],
        failure: [{ type: 'range', key: `${p}k` }],
      });
      expect(stale.succeeded).toBe(false);
      const cur = stale.results[0];
      expect(cur?.type === 'range' ? cur.kvs[0]?.value : undefined).toBe('v2');
      const gt = await store.txn({
        compare: [
          { key: `${p}k`, target: 'version', op: '>', value: 1 },
          { key: `${p}k`, target: 'create', op: '<', value: ok.revision },
          { key: `${p}k`, target: 'value', op: '!=', value: 'nope' },
        ],
        success: [],
      });
      expect(gt.succeeded).toBe(true);
      expect(gt.revision).toBe(ok.revision);
      // A value compare on a missing key fails.
      expect((await store.txn({ compare: [{ key: `${p}missing`, target: 'value', op: '!=', value: 'x' }], success: [] })).succeeded).toBe(false);
    });

    it('holds every backend to etcd\'s transaction rules and compare semantics', async () => {
      const p = unique('rules');
      const before = await store.currentRevision();
      await expectCode(store.txn({ compare: [], success: [{ type: 'put', key: `${p}a`, value: '1' }, { type: 'delete', key: `${p}a` }] }), StoreErrorCode.InvalidArgument);
      await expectCode(store.txn({ compare: [], success: [{ type: 'delete', key: p, prefix: true }, { type: 'put', key: `${p}b`, value: '1' }] }), StoreErrorCode.InvalidArgument);
      await expectCode(
        store.txn({ compare: [], success: [], failure: [{ type: 'put', key: `${p}c`, value: '1' }, { type: 'put', key: `${p}c`, value: '2' }] }),
        StoreErrorCode.InvalidArgument,
      );
      await expectCode(
        store.txn({ compare: [], success: Array.from({ length: 129 }, (_, i) => ({ type: 'put' as const, key: `${p}many${i}`, value: 'x' })) }),
        StoreErrorCode.InvalidArgument,
      );
      await expectCode(store.put(`${p}d`, 'x', { lease: 'abc' }), StoreErrorCode.LeaseNotFound);
      expect(await store.currentRevision()).toBe(before);
      // Two deletes may overlap; 128 ops is allowed.
      await store.txn({ compare: [], success: Array.from({ length: 128 }, (_, i) => ({ type: 'put' as const, key: `${p}ok${i}`, value: 'x' })) });
      expect((await store.txn({ compare: [], success: [{ type: 'delete', key: p, prefix: true }, { type: 'delete', key: `${p}ok1` }] })).succeeded).toBe(true);
      // Values compare as bytes (UTF-8), not UTF-16 code units; leases compare as integers.
      await store.put(`${p}emoji`, '😀');
      expect((await store.txn({ compare: [{ key: `${p}emoji`, target: 'value', op: '>', value: '\uFFFD' }], success: [] })).succeeded).toBe(true);
      const lease = await store.grantLease(60);
      await store.put(`${p}leased`, 'x', { lease: lease.id });
      const bigger = String(BigInt(lease.id) + 10n);
      expect((await store.txn({ compare: [{ key: `${p}leased`, target: 'lease', op: '<', value: bigger }], success: [] })).succeeded).toBe(true);
      await store.revokeLease(lease.id);
      // An empty prefix is the whole keyspace; an end of "\0" reads to its end; an empty end is one key.
      expect((await store.range('', { prefix: true, countOnly: true })).count).toBeGreaterThan(0);
      expect((await store.range(`${p}emoji`, { end: '\0' })).kvs.map((kv) => kv.key)).toContain(`${p}emoji`);
      expect((await store.range(`${p}emoji`, { end: '' })).kvs.map((kv) => kv.key)).toEqual([`${p}emoji`]);
    });

    it('lets exactly one of many concurrent writers win each compare-and-swap', async () => {
      const p = unique('cas');
      const key = `${p}counter`;
      await store.put(key, '0');
      const writers = 8;
      const perWriter = 15;
      let conflicts = 0;
      const clients = await Promise.all(Array.from({ length: writers }, () => h.open()));
      await Promise.all(
        clients.map(async (c) => {
          for (let done = 0; done < perWriter; ) {
            const cur = await c.get(key);
            const next = String(Number(cur?.value) + 1);
            const r = await c.txn({
              compare: [{ key, target: 'mod', op: '=', value: cur?.modRevision ?? 0 }],
              success: [{ type: 'put', key, value: next }],
            });
            if (r.succeeded) done++;
            else conflicts++;
          }
        }),
      );
      for (const c of clients) if (c !== store) await c.close();
      const final = await store.get(key);
      expect(final?.value).toBe(String(writers * perWriter));
      expect(final?.version).toBe(writers * perWriter + 1);
      expect(conflicts).toBeGreaterThan(0);

      const creators = await Promise.all(
        Array.from({ length: 10 }, (_, i) =>
          store.txn({ compare: [{ key: `${p}once`, target: 'create', op: '=', value: 0 }], success: [{ type: 'put', key: `${p}once`, value: String(i) }] }),
        ),
      );
      expect(creators.filter((r) => r.succeeded)).toHaveLength(1);
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

    it('rejects values over 1.5 MiB with value_too_large and writes nothing', async () => {
      const p = unique('limit');
      const before = await store.currentRevision();
      await expectCode(store.put(`${p}big`, 'x'.repeat(MAX_VALUE_BYTES + 1)), StoreErrorCode.ValueTooLarge);
      await expectCode(
        store.txn({ compare: [], success: [{ type: 'put', key: `${p}ok`, value: 'fine' }, { type: 'put', key: `${p}big`, value: 'é'.repeat(MAX_VALUE_BYTES / 2 + 1) }] }),
        StoreErrorCode.ValueTooLarge,
      );
      expect(await store.currentRevision()).toBe(before);
      expect(await store.get(`${p}ok`)).toBeUndefined();
      await store.put(`${p}max`, 'y'.repeat(MAX_VALUE_BYTES));
      expect((await store.get(`${p}max`))?.value.length).toBe(MAX_VALUE_BYTES);
      await expectCode(store.put('', 'v'), StoreErrorCode.InvalidArgument);
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
      const elapsed = await until(async () => (await store.get(`${p}a`)) === undefined, 15_000);
      expect(elapsed).toBeLessThan(10_000);
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
      await until(async () => seen.includes('node-b'), 5000);
      expect(seen.slice(0, 2)).toEqual(['node-a', 'node-b']);
      // Resigning hands over at once; with no candidates there is no leader.
      await leaderB.resign();
      await until(async () => seen[seen.length - 1] === undefined, 5000);
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
  });
}

