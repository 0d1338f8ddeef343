import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { decode, deleteOp, get, getMany, list, put, putOp, RecordMalformed, textCodec, tryDecode, untypedJson } from '../../src/domain/codec.js';
import { isBerthError } from '../../src/domain/errors.js';
import { keys } from '../../src/domain/keys.js';
import { codecs, type AppRecord } from '../../src/domain/records.js';
import { openStore, type KeyValue, type Store } from '../../src/store/index.js';

const now = '2026-01-01T00:00:00.000Z';
const app = (id: string, extra: Record<string, unknown> = {}): AppRecord => ({
  id,
  name: `app-${id}`,
  owner_id: 'u1',
  created_at: now,
  updated_at: now,
  release_version: 1,
  current_version: 1,
  released_at: now,
  maintenance: false,
  ...extra,
});
const kv = (key: string, value: string): KeyValue => ({ key, value, createRevision: 1, modRevision: 1, version: 1, lease: '0' });

let store: Store;
beforeAll(() => {
  store = openStore('memory://');
});
afterAll(async () => {
  await store.close();
});

async function malformed(p: Promise<unknown>): Promise<Error> {
  const err = await p.then(
    () => undefined,
    (e: unknown) => e,
  );
  expect(isBerthError(err, RecordMalformed), `expected record_malformed, got ${String(err)}`).toBe(true);
  return err as Error;
}

describe('codec', () => {
  it('round-trips a record unchanged, unknown fields included', async () => {
    const record = app('a1', { added_by_a_newer_node: { nested: [1, 2] } });
    const revision = await put(store, keys.app('a1'), codecs.app, record);
    const read = await get(store, keys.app('a1'), codecs.app);
    expect(read?.value).toEqual(record);
    expect(read).toMatchObject({ key: keys.app('a1'), mod: revision, create: revision, lease: '0' });
    // What a read-modify-write puts back is what was there, byte for byte.
    expect(codecs.app.encode(read!.value)).toBe((await store.get(keys.app('a1')))?.value);
  });

  it('gives undefined for a key that is not there', async () => {
    expect(await get(store, keys.app('missing'), codecs.app)).toBeUndefined();
  });

  it('refuses a value that is not JSON, or not the record, on a single read', async () => {
    await store.put(keys.app('bad-json'), '{"id": ');
    const notJson = await malformed(get(store, keys.app('bad-json'), codecs.app));
    expect(notJson.message).toBe(`${keys.app('bad-json')} is not a valid AppRecord: not JSON`);

    await store.put(keys.app('bad-shape'), JSON.stringify({ ...app('bad-shape'), release_version: 'one' }));
    expect((await malformed(get(store, keys.app('bad-shape'), codecs.app))).message).toMatch(/is not a valid AppRecord: release_version: /);

    const { maintenance: _, ...missing } = app('missing-field');
    await store.put(keys.app('missing-field'), JSON.stringify(missing));
    expect((await malformed(get(store, keys.app('missing-field'), codecs.app))).message).toMatch(/maintenance/);

    await store.put(keys.app('not-object'), '[]');
    await malformed(get(store, keys.app('not-object'), codecs.app));
  });

  it('skips malformed values in a list, and says which', async () => {
    const prefix = keys.drains('listed');
    const drain = { id: 'd1', url: 'syslog://logs.example.com:514', token: 'd.1', created_at: now, updated_at: now };
    await put(store, keys.drain('listed', 'd1'), codecs.drain, drain);
    await store.put(keys.drain('listed', 'd2'), 'not json');
    await store.put(keys.drain('listed', 'd3'), JSON.stringify({ id: 'd3' }));
    await put(store, keys.drain('listed', 'd4'), codecs.drain, { ...drain, id: 'd4', internal: true });
    const skipped: string[] = [];
    const entries = await list(store, prefix, codecs.drain, { onMalformed: (key) => skipped.push(key) });
    expect(entries.map((e) => e.value.id)).toEqual(['d1', 'd4']);
    expect(entries[1]?.value).toEqual({ ...drain, id: 'd4', internal: true });
    expect(skipped).toEqual([keys.drain('listed', 'd2'), keys.drain('listed', 'd3')]);
    expect(await list(store, prefix, codecs.drain, { limit: 1 })).toHaveLength(1);
  });

  it('decodes by hand strictly (decode) or leniently (tryDecode)', () => {
    const good = kv(keys.app('x'), JSON.stringify(app('x')));
    const bad = kv(keys.app('y'), '{');
    expect(decode(codecs.app, good)).toEqual(app('x'));
    expect(() => decode(codecs.app, bad)).toThrow(`${keys.app('y')} is not a valid AppRecord: not JSON`);
    expect(tryDecode(codecs.app, good)).toEqual(app('x'));
    expect(tryDecode(codecs.app, bad)).toBeUndefined();
    expect(tryDecode(codecs.app, undefined)).toBeUndefined();
  });

  it('reads many keys in order, a missing or malformed one as undefined, past one txn', async () => {
    const ids = Array.from({ length: 130 }, (_, i) => `many-${i}`);
    await Promise.all(ids.map((id) => put(store, keys.app(id), codecs.app, app(id))));
    await store.put(keys.app('many-7'), 'garbage');
    const read = await getMany(store, [...ids, 'absent'].map((id) => keys.app(id)), codecs.app);
    expect(read).toHaveLength(131);
    expect(read[0]).toEqual(app('many-0'));
    expect(read[129]).toEqual(app('many-129'));
    expect(read[7]).toBeUndefined();
    expect(read[130]).toBeUndefined();
  });

  it('checks plain-text values when the codec has a check', async () => {
    expect(codecs.registration.decode('open')).toBe('open');
    expect(codecs.registration.encode('closed')).toBe('closed');
    expect(() => codecs.registration.decode('maybe')).toThrow(/not a valid Registration: unexpected value "maybe"/);
    expect(codecs.endpoint.decode('10.0.0.1:5000')).toBe('10.0.0.1:5000');
    expect(() => codecs.endpoint.decode('10.0.0.1')).toThrow(/Endpoint/);
    expect(() => codecs.appId.decode('a/b')).toThrow(/AppId/);
    // Without a check anything goes, verbatim: nginx syntax is checked where it is rendered.
    const free = textCodec('Free');
    expect(free.decode(' any { thing ')).toBe(' any { thing ');
    await store.put(keys.registration(), 'perhaps');
    await malformed(get(store, keys.registration(), codecs.registration));
    // The message quotes at most 80 characters of a bad value.
    expect(() => codecs.registration.decode('x'.repeat(500))).toThrow(/"x{80}"$/);
  });

  it('makes puts for a transaction, with a lease only when there is one', async () => {
    const marker = { user_id: 'u1', at: now };
    expect(putOp(keys.bootstrapped(), codecs.bootstrapped, marker)).toEqual({ type: 'put', key: keys.bootstrapped(), value: JSON.stringify(marker) });
    expect(putOp(keys.bootstrapped(), codecs.bootstrapped, marker, '0')).not.toHaveProperty('lease');
    expect(putOp(keys.bootstrapped(), codecs.bootstrapped, marker, '')).not.toHaveProperty('lease');
    expect(putOp(keys.service('shop', 'shop.web.1@v1'), codecs.endpoint, '10.0.0.1:5000', '42')).toEqual({ type: 'put', key: keys.service('shop', 'shop.web.1@v1'), value: '10.0.0.1:5000', lease: '42' });

    const lease = await store.grantLease(60);
    await store.txn({ compare: [], success: [putOp(keys.service('shop', 'shop.web.2@v1'), codecs.endpoint, '10.0.0.2:5000', lease.id)] });
    expect((await get(store, keys.service('shop', 'shop.web.2@v1'), codecs.endpoint))?.lease).toBe(lease.id);
    await put(store, keys.service('shop', 'shop.web.3@v1'), codecs.endpoint, '10.0.0.3:5000', { lease: lease.id });
    await store.revokeLease(lease.id);
    expect(await list(store, keys.services('shop'), codecs.endpoint)).toEqual([]);
  });

  it('deletes one key or a prefix in a transaction', async () => {
    expect(deleteOp(keys.app('z'))).toEqual({ type: 'delete', key: keys.app('z'), prefix: false });
    await put(store, keys.config('gone'), codecs.config, { A: '1' });
    await put(store, keys.formation('gone'), codecs.formation, {});
    await store.txn({ compare: [], success: [deleteOp(keys.appKeys('gone'), true)] });
    expect((await store.range(keys.appKeys('gone'), { prefix: true })).kvs).toEqual([]);
  });

  it('reads any JSON, unchecked, for generic readers such as templates', () => {
    expect(decode(untypedJson, kv('/t', '{"a":[1,"b"]}'))).toEqual({ a: [1, 'b'] });
    expect(decode(untypedJson, kv('/t', '3'))).toBe(3);
    expect(() => decode(untypedJson, kv('/t', 'nope'))).toThrow('/t is not a valid JSON: not JSON');
  });
});
