import { afterEach, describe, expect, it } from 'vitest';
import { SealedStore, isSealedKey } from '../../src/cluster/index.js';
import { newConfigKey, seal, unseal } from '../../src/cluster/sealing.js';
import { openStore, type Store } from '../../src/store/index.js';

const CONFIG = '/berth/apps/a1/config';
const RELEASE = '/berth/apps/a1/releases/0000000003';

describe('sealed app configs and releases', () => {
  let raw: Store;
  afterEach(async () => raw?.close());

  it('seals only configs and releases, bound to their key', () => {
    expect([CONFIG, RELEASE].map(isSealedKey)).toEqual([true, true]);
    expect(['/berth/apps/a1', '/berth/apps/a1/formation', '/berth/apps/a1/releases/', '/berth/services/a/x'].map(isSealedKey)).toEqual([false, false, false, false]);
    const key = newConfigKey();
    const sealed = seal(key, CONFIG, '{"SECRET":"s3cr3t"}');
    expect(sealed).toMatch(/^b1:/);
    expect(sealed).not.toContain('s3cr3t');
    expect(unseal(key, CONFIG, sealed)).toBe('{"SECRET":"s3cr3t"}');
    // Moved to another app's key, or opened with another cluster's key: stays sealed (the codec then calls it malformed).
    expect(unseal(key, '/berth/apps/a2/config', sealed)).toBe(sealed);
    expect(unseal(newConfigKey(), CONFIG, sealed)).toBe(sealed);
    // Written before sealing: read as it is.
    expect(unseal(key, CONFIG, '{"A":"1"}')).toBe('{"A":"1"}');
  });

  it('a server sees plain records through every call; the raw store holds ciphertext', async () => {
    raw = openStore('memory://');
    const server = new SealedStore(raw, newConfigKey());
    const watch = await server.watch('/berth/apps/', { prefix: true });
    await server.put(CONFIG, '{"SECRET":"one"}');
    const t = await server.txn({ compare: [{ key: CONFIG, target: 'version', op: '=', value: 1 }], success: [{ type: 'put', key: RELEASE, value: '{"config":{"SECRET":"one"}}' }, { type: 'range', key: '/berth/apps/a1/', prefix: true }] });
    expect(t.succeeded).toBe(true);
    const listed = t.results[1];
    expect(listed?.type === 'range' ? listed.kvs.map((kv) => kv.value) : []).toEqual(['{"SECRET":"one"}', '{"config":{"SECRET":"one"}}']);
    expect((await server.get(RELEASE))?.value).toBe('{"config":{"SECRET":"one"}}');
    expect((await server.range('/berth/apps/a1/', { prefix: true })).kvs.map((kv) => kv.value)).toEqual(['{"SECRET":"one"}', '{"config":{"SECRET":"one"}}']);
    for (const kv of (await raw.range('/berth/apps/a1/', { prefix: true })).kvs) {
      expect(kv.value).toMatch(/^b1:/);
      expect(kv.value).not.toContain('one');
    }
    const seen: string[] = [];
    for await (const batch of watch) {
      seen.push(...batch.events.map((e) => e.kv.value));
      if (seen.length >= 2) break;
    }
    watch.close();
    expect(seen).toEqual(['{"SECRET":"one"}', '{"config":{"SECRET":"one"}}']);
    const prev = await server.delete(CONFIG);
    expect(prev.prevKvs.map((kv) => kv.value)).toEqual(['{"SECRET":"one"}']);
    // A value compare on a sealed key could never match (sealing is randomised): refused, not silently false.
    await expect(server.txn({ compare: [{ key: RELEASE, target: 'value', op: '=', value: 'x' }], success: [] })).rejects.toThrow(/sealed/);
  });
});
