import { createHash } from 'node:crypto';
import { mkdtempSync, rmSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { afterAll, describe, expect, it } from 'vitest';
import { Apps } from '../../src/controller/services/apps.js';
import { Users } from '../../src/controller/services/users.js';
import { isBerthError } from '../../src/domain/errors.js';
import { keys } from '../../src/domain/keys.js';
import { allocateUid, UID_BASE, UID_COUNT } from '../../src/sandbox/index.js';
import { openStore, type Store } from '../../src/store/index.js';

const dirs: string[] = [];
afterAll(() => {
  for (const d of dirs) rmSync(d, { recursive: true, force: true });
});

/** Two handles on one store: for sqlite two clients of one file, as two nodes on one host are. */
function stores(kind: 'memory' | 'sqlite'): [Store, Store] {
  if (kind === 'memory') {
    const s = openStore('memory://');
    return [s, s];
  }
  const dir = mkdtempSync(join(tmpdir(), 'berth-uids-'));
  dirs.push(dir);
  const url = `sqlite://${join(dir, 'state.db')}`;
  return [openStore(url), openStore(url)];
}

async function close([a, b]: [Store, Store]): Promise<void> {
  await a.close();
  if (b !== a) await b.close();
}

async function makeApp(store: Store, id: string): Promise<string> {
  await store.put(keys.app(id), JSON.stringify({ id, name: id }));
  return id;
}

const appId = (i: number): string => `00000000-0000-4000-8000-${String(i).padStart(12, '0')}`;

describe.each(['memory', 'sqlite'] as const)('allocateUid on the %s store', (kind) => {
  it('gives two apps different uids, in the app uid range', async () => {
    const s = stores(kind);
    const [a, b] = [await makeApp(s[0], appId(1)), await makeApp(s[0], appId(2))];
    const [ua, ub] = [await allocateUid(s[0], a), await allocateUid(s[0], b)];
    expect(ua).not.toBe(ub);
    for (const uid of [ua, ub]) {
      expect(uid).toBeGreaterThanOrEqual(UID_BASE);
      expect(uid).toBeLessThan(UID_BASE + UID_COUNT);
    }
    expect(JSON.parse((await s[0].get(keys.uid(ua)))?.value ?? '{}')).toEqual({ app_id: a });
    expect(JSON.parse((await s[0].get(keys.appUid(a)))?.value ?? '{}')).toEqual({ uid: ua });
    await close(s);
  });

  it('gives the same app the same uid every time, from any node', async () => {
    const s = stores(kind);
    const a = await makeApp(s[0], appId(3));
    const first = await allocateUid(s[0], a);
    expect(await allocateUid(s[0], a)).toBe(first);
    expect(await allocateUid(s[1], a)).toBe(first);
    expect((await s[0].range(keys.uids(), { prefix: true })).kvs).toHaveLength(1);
    await close(s);
  });

  it('gives 50 apps allocating concurrently on two nodes 50 distinct uids, one per app', async () => {
    const s = stores(kind);
    const apps = await Promise.all(Array.from({ length: 50 }, (_, i) => makeApp(s[0], appId(100 + i))));
    // Every app asks on both nodes at once: each pair must agree, and no two apps may share.
    const got = await Promise.all(apps.flatMap((a) => [allocateUid(s[0], a), allocateUid(s[1], a)]));
    const perApp = apps.map((_, i) => got[2 * i]);
    expect(apps.map((_, i) => got[2 * i + 1])).toEqual(perApp);
    expect(new Set(perApp).size).toBe(50);
    const recorded = (await s[0].range(keys.uids(), { prefix: true })).kvs.map((kv) => JSON.parse(kv.value) as { app_id: string });
    expect(recorded.map((r) => r.app_id).sort()).toEqual([...apps].sort());
    await close(s);
  });

  it('keeps the uid an app had as a hash of its id, unless another app holds that uid', async () => {
    const s = stores(kind);
    const [a, b] = [await makeApp(s[0], appId(4)), await makeApp(s[0], appId(5))];
    const hashed = (id: string): number => UID_BASE + (createHash('sha256').update(id).digest().readUInt32BE(0) % UID_COUNT);
    expect(await allocateUid(s[0], a)).toBe(hashed(a));
    // b's old uid is taken (as when two apps' hashes collided): b gets another one.
    await s[0].put(keys.uid(hashed(b)), JSON.stringify({ app_id: 'someone-else' }));
    const ub = await allocateUid(s[0], b);
    expect(ub).not.toBe(hashed(b));
    expect(ub).not.toBe(hashed(a));
    await close(s);
  });

  it('allocates nothing for an app that does not exist', async () => {
    const s = stores(kind);
    const err = await allocateUid(s[0], appId(6)).catch((e: unknown) => e);
    expect(isBerthError(err, 'not_found')).toBe(true);
    expect((await s[0].range(keys.uids(), { prefix: true })).kvs).toEqual([]);
    await close(s);
  });

  it('frees the uid when the app is destroyed', async () => {
    const s = stores(kind);
    const { user } = await new Users(s[0]).create('owner@example.com');
    const apps = new Apps(s[0]);
    const app = await apps.create(user, 'uid-app');
    const uid = await allocateUid(s[1], app.id);
    await apps.destroy(await apps.resolve(user, 'uid-app'));
    expect(await s[0].get(keys.uid(uid))).toBeUndefined();
    expect(await s[0].get(keys.appUid(app.id))).toBeUndefined();
    // And it stays free: a destroyed app cannot take one back.
    expect(isBerthError(await allocateUid(s[1], app.id).catch((e: unknown) => e), 'not_found')).toBe(true);
    await close(s);
  });

  it('refuses a uid that the other record gives to another app, instead of running as it', async () => {
    const s = stores(kind);
    const [a, b] = [await makeApp(s[0], appId(7)), await makeApp(s[0], appId(8))];
    const ub = await allocateUid(s[0], b);
    // Not Berth's writing: app a's record names app b's uid.
    await s[0].put(keys.appUid(a), JSON.stringify({ uid: ub }));
    expect(isBerthError(await allocateUid(s[0], a).catch((e: unknown) => e), 'record_malformed')).toBe(true);
    expect(await allocateUid(s[0], b)).toBe(ub);
    await close(s);
  });

  it('destroys an app whose uid record cannot be read', async () => {
    const s = stores(kind);
    const { user } = await new Users(s[0]).create('owner@example.com');
    const apps = new Apps(s[0]);
    const app = await apps.create(user, 'garbled-uid');
    await s[0].put(keys.appUid(app.id), '{"uid": "root"}');
    await apps.destroy(await apps.resolve(user, 'garbled-uid'));
    expect(await s[0].get(keys.app(app.id))).toBeUndefined();
    expect(await s[0].get(keys.appUid(app.id))).toBeUndefined();
    await close(s);
  });
});
