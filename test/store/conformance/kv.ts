import { beforeAll, expect, it } from 'vitest';
import { MAX_VALUE_BYTES, StoreErrorCode, type Store } from '../../../src/store/index.js';
import { expectCode, unique, type StoreHarness, type SuiteContext } from './helpers.js';

/** Keys, ranges, deletes, transactions, concurrent compare-and-swap, the value limit. */
export function kvCases(ctx: SuiteContext): void {
  let h: StoreHarness;
  let store: Store;
  // Runs after the suite's own beforeAll (registered first), which opened the store.
  beforeAll(() => {
    h = ctx.h;
    store = ctx.store;
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
}
