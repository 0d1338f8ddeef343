import { afterEach, beforeEach, describe, expect, it } from 'vitest';
import { Apps } from '../../src/controller/services/apps.js';
import { Lookups } from '../../src/controller/services/lookups.js';
import { Releases } from '../../src/controller/services/releases.js';
import type { UserRecord } from '../../src/controller/services/types.js';
import { hashToken, Users } from '../../src/controller/services/users.js';
import { keys } from '../../src/domain/keys.js';
import { createLogger } from '../../src/domain/log.js';
import { openStore, type Store } from '../../src/store/index.js';
import { CountingStore } from '../support/counting-store.js';
import { until } from '../support/until.js';

const log = createLogger('test', { level: 'silent' });
const APPS = 1000;
const name = (i: number): string => `app-${String(i).padStart(4, '0')}`;

let inner: Store;
let store: CountingStore;
let lookups: Lookups;
let users: Users;
let apps: Apps;
let releases: Releases;
let owner: { user: UserRecord; token: string };

beforeEach(async () => {
  inner = openStore('memory://');
  store = new CountingStore(inner);
  lookups = new Lookups({ store, log });
  users = new Users(store, lookups);
  apps = new Apps(store, lookups);
  releases = new Releases(store, apps);
  owner = await users.create('owner@example.com');
});
afterEach(async () => {
  await lookups.close();
  await store.close();
});

/** Store calls since the last `count`: each one round trip on etcd. */
function count(): { calls: number; reads: number; writes: number; refused: number } {
  const c = store.calls;
  const calls = Object.values(c).reduce((a, b) => a + b, 0);
  const out = { calls, reads: store.reads(), writes: store.writes, refused: store.refusedTxns };
  for (const k of Object.keys(c) as (keyof typeof c)[]) c[k] = 0;
  store.readingTxns = store.writes = store.refusedTxns = 0;
  return out;
}

describe('what one API request costs the store', () => {
  it('PATCH config-vars is three round trips (app, its release and config, the write), however many apps and users there are', async () => {
    for (let i = 0; i < APPS; i += 50) await Promise.all(Array.from({ length: 50 }, (_, j) => apps.create(owner.user, name(i + j))));
    const others = await Promise.all(Array.from({ length: 50 }, (_, i) => users.create(`user-${i}@example.com`)));
    await lookups.start();
    await until('the last app name known', () => lookups.appId(name(APPS - 1)));
    count();

    for (const i of [0, 499, APPS - 1]) {
      const user = await users.authenticate(owner.token);
      expect(user?.id).toBe(owner.user.id);
      const access = await apps.resolve(owner.user, name(i));
      const { release } = await releases.setConfig(owner.user, access, { FOO: String(i) });
      expect(release.version).toBe(2);
      // Authentication from memory; the app and the user's access to it in one read; its latest
      // release and config in one read; one write.
      expect(count()).toEqual({ calls: 3, reads: 2, writes: 1, refused: 0 });
    }
    // Any user's token, not only the first one's.
    expect((await users.authenticate(others[49]!.token))?.email).toBe('user-49@example.com');
    expect(count().calls).toBe(0);
  });

  it('without Lookups every value is read: a token and its user, the name index, then the same as above', async () => {
    const plain = { users: new Users(store), apps: new Apps(store) };
    await apps.create(owner.user, 'shop');
    count();
    expect((await plain.users.authenticate(owner.token))?.id).toBe(owner.user.id);
    const access = await plain.apps.resolve(owner.user, 'shop');
    await new Releases(store, plain.apps).setConfig(owner.user, access, { FOO: 'bar' });
    expect(count()).toEqual({ calls: 6, reads: 5, writes: 1, refused: 0 });
  });
});

describe('Lookups', () => {
  it('knows a token, user and app made after it started, once the watch brings them; a token made elsewhere works at once', async () => {
    await lookups.start();
    // Another server (its own services on the same store) makes a user and an app.
    const elsewhere = { users: new Users(inner), apps: new Apps(inner) };
    const alice = await elsewhere.users.create('alice@example.com');
    // Not in memory yet, or already: either way the token works at once.
    expect((await users.authenticate(alice.token))?.email).toBe('alice@example.com');
    await until('the token known', () => lookups.tokenUser(hashToken(alice.token)));
    expect(lookups.user(alice.user.id)?.email).toBe('alice@example.com');
    const app = await elsewhere.apps.create(alice.user, 'alices-app');
    await until('the name known', () => lookups.appId('alices-app') === app.id);
    count();
    expect((await users.authenticate(alice.token))?.id).toBe(alice.user.id);
    expect((await apps.resolve(alice.user, 'alices-app')).app.id).toBe(app.id);
    expect(count().calls).toBe(1);
    // Unknown tokens are read, and refused.
    expect(await users.authenticate('berth_not-a-token-at-all')).toBeUndefined();
    expect(count().calls).toBe(1);
  });

  it('stops accepting a token deleted on another server once the delete arrives, and answers nothing after close', async () => {
    await lookups.start();
    await until('the token known', () => lookups.tokenUser(hashToken(owner.token)));
    await inner.delete(keys.token(hashToken(owner.token)));
    await until('the token refused', async () => (await users.authenticate(owner.token)) === undefined, 5000);
    expect(lookups.tokenUser(hashToken(owner.token))).toBeUndefined();
    expect(lookups.user(owner.user.id)).toBeDefined();
    await lookups.close();
    expect(lookups.user(owner.user.id)).toBeUndefined();
  });
});

describe('Apps.resolve with name hints', () => {
  it('a hint that names another app costs the reads made without one, never a wrong answer', async () => {
    const shop = await apps.create(owner.user, 'shop');
    const blog = await apps.create(owner.user, 'blog');
    // Hints as stale as they can be: every name points at the shop.
    const lying = new Apps(store, { appId: () => shop.id });
    count();
    expect((await lying.resolve(owner.user, 'blog')).app.id).toBe(blog.id);
    // The hinted record (not blog), then the name index and blog's record.
    expect(count().calls).toBe(3);
    expect((await lying.resolve(owner.user, 'shop')).app.id).toBe(shop.id);
    expect(count().calls).toBe(1);
    await expect(lying.resolve(owner.user, 'gone')).rejects.toMatchObject({ code: 'not_found' });
    // A renamed app: its old name no longer finds it, even though the hint still says so.
    await apps.rename(await apps.resolve(owner.user, 'shop'), 'store');
    await expect(lying.resolve(owner.user, 'shop')).rejects.toMatchObject({ code: 'not_found' });
    const newShop = await apps.create(owner.user, 'shop');
    expect((await lying.resolve(owner.user, 'shop')).app.id).toBe(newShop.id);
  });

  it('an app the user neither owns nor collaborates on is not found through a hint either', async () => {
    const bob = await users.create('bob@example.com');
    const shop = await apps.create(owner.user, 'shop');
    const hinted = new Apps(store, { appId: () => shop.id });
    await expect(hinted.resolve(bob.user, 'shop')).rejects.toMatchObject({ code: 'not_found' });
    await expect(hinted.resolve(bob.user, shop.id)).rejects.toMatchObject({ code: 'not_found' });
  });
});

describe('concurrent config changes to one app', () => {
  it('on one server are queued, not raced: twenty at once all succeed without a retry', async () => {
    await apps.create(owner.user, 'shop');
    const access = await apps.resolve(owner.user, 'shop');
    count();
    const results = await Promise.all(Array.from({ length: 20 }, (_, i) => releases.setConfig(owner.user, access, { [`K${i}`]: String(i) })));
    expect(results.map((r) => r.release.version).sort((a, b) => a - b)).toEqual(Array.from({ length: 20 }, (_, i) => i + 2));
    expect(Object.keys(await releases.config(await apps.resolve(owner.user, 'shop')))).toHaveLength(20);
    // Each waited for the one before it and read after it: no compare failed, one read and one write each.
    expect(count()).toMatchObject({ refused: 0, writes: 20 });
  });

  it('across servers they retry after a random pause: two servers, ten each at once, all succeed', async () => {
    await apps.create(owner.user, 'shop');
    // Two servers: services of their own on one store.
    const other = new Releases(store, new Apps(store));
    const access = await apps.resolve(owner.user, 'shop');
    const attempts = await Promise.allSettled(
      Array.from({ length: 20 }, (_, i) => (i % 2 ? other : releases).setConfig(owner.user, access, { [`K${i}`]: String(i) })),
    );
    expect(attempts.filter((a) => a.status === 'rejected')).toEqual([]);
    expect(Object.keys(await releases.config(await apps.resolve(owner.user, 'shop')))).toHaveLength(20);
    expect((await apps.resolve(owner.user, 'shop')).app.release_version).toBe(21);
  });
});
