import { Writable } from 'node:stream';
import { afterEach, beforeEach, describe, expect, it } from 'vitest';
import type { SlugCommand, SlugRunner } from '../../src/builder/ports.js';
import { createServices, type Services } from '../../src/controller/index.js';
import { Releases } from '../../src/controller/services/releases.js';
import { createLogger } from '../../src/domain/log.js';
import { put } from '../../src/domain/codec.js';
import { BerthError } from '../../src/domain/errors.js';
import { keys } from '../../src/domain/keys.js';
import { codecs, type AppRecord, type ReleaseRecord, type SlugRecord, type UserRecord } from '../../src/domain/records.js';
import { openStore, type Store, type TxnRequest } from '../../src/store/index.js';

/**
 * A tenant looping `config:set` on an app with a `release:` process used to start one release
 * phase per change, all at once (each a loop volume, a namespace and a cgroup): now an app runs
 * one at a time, a newer release replaces one still waiting, and the node runs a few at once.
 */

/** Holds every command until `open()`, counting how many run at once, in all and per app. */
class HeldRunner implements SlugRunner {
  readonly ran: SlugCommand[] = [];
  active = 0;
  most = 0;
  private readonly perApp = new Map<string, number>();
  mostPerApp = 0;
  private opened = false;
  private readonly held: (() => void)[] = [];

  async run(command: SlugCommand): Promise<boolean> {
    this.ran.push(command);
    this.most = Math.max(this.most, ++this.active);
    const n = (this.perApp.get(command.appId) ?? 0) + 1;
    this.perApp.set(command.appId, n);
    this.mostPerApp = Math.max(this.mostPerApp, n);
    if (!this.opened) await new Promise<void>((r) => this.held.push(r));
    this.active--;
    this.perApp.set(command.appId, n - 1);
    return true;
  }

  open(): void {
    this.opened = true;
    for (const r of this.held.splice(0)) r();
  }
}

async function until(what: string, ok: () => Promise<boolean> | boolean, ms = 10_000): Promise<void> {
  for (const deadline = Date.now() + ms; !(await ok()); ) {
    if (Date.now() > deadline) throw new Error(`timed out waiting for ${what}`);
    await new Promise((r) => setTimeout(r, 10));
  }
}

let store: Store;
let services: Services;
let user: UserRecord;

beforeEach(async () => {
  store = openStore('memory://');
  services = createServices(store, createLogger('test', { level: 'silent' }), { domain: 'berth.test', apiUrl: 'http://api.berth.test' });
  user = (await services.users.create('dev@example.com')).user;
});
afterEach(async () => {
  await services.close();
  await store.close();
});

describe('release phases', () => {
  it('run one per app and two per node at once; a newer release replaces one still waiting, and the newest becomes current', async () => {
    const runner = new HeldRunner();
    const outputs = new Map<string, string>();
    // Config changes run their phase in the background, into the app's logs.
    const onPhaseOutput = (app: { name: string }, text: string): void => void outputs.set(app.name, (outputs.get(app.name) ?? '') + text);
    const releases = new Releases(store, services.apps, { runner, maxPhases: 2, onPhaseOutput });
    const names = ['ph-a', 'ph-b', 'ph-c', 'ph-d'];
    // Two owners: one owner's apps hold at most half the node's slots.
    const other = (await services.users.create('other@example.com')).user;
    const ownerOf = (name: string): UserRecord => (name < 'ph-c' ? user : other);
    for (const name of names) {
      const owner = ownerOf(name);
      await services.apps.create(owner, name);
      // A deploy whose slug has a release process; its phase runs (held) like any other.
      const access = await services.apps.resolve(owner, name);
      const deployed = await releases.deploy(owner, access, { id: `slug-${name}`, process_types: { web: 'x', release: 'migrate' }, commit: null });
      void releases.runPhase(access.app, deployed, () => undefined);
    }
    // Twenty config changes per app, as fast as the API takes them.
    for (let i = 0; i < 20; i++) {
      for (const name of names) await releases.setConfig(ownerOf(name), await services.apps.resolve(ownerOf(name), name), { N: String(i) });
    }
    await new Promise((r) => setTimeout(r, 50));
    expect(runner.active).toBe(2);
    expect(releases.phasesRunning).toBe(2);
    runner.open();
    const newest = 22; // v1 initial, v2 the deploy, v3..v22 the config changes
    await until('every phase to end', async () => {
      for (const name of names) {
        const access = await services.apps.resolve(ownerOf(name), name);
        if ((await releases.list(access.app.id)).some((r) => r.status === 'pending')) return false;
      }
      return true;
    });
    expect(runner.most).toBe(2);
    expect(runner.mostPerApp).toBe(1);
    // Per app: the deploy's phase if it started before the changes came, and the newest; the
    // eighty changes in between never ran.
    expect(runner.ran.length).toBeLessThanOrEqual(names.length * 2);
    for (const name of names) {
      const access = await services.apps.resolve(ownerOf(name), name);
      const ran = runner.ran.filter((c) => c.appId === access.app.id).map((c) => c.config.N);
      expect(ran.at(-1)).toBe('19');
      expect(access.app.current_version).toBe(newest);
      const list = await releases.list(access.app.id);
      expect(list.at(-1)).toMatchObject({ version: newest, status: 'succeeded', config: { N: '19' } });
      const replaced = list.filter((r) => r.version > 2 && r.version < newest);
      expect(replaced.every((r) => r.status === 'failed')).toBe(true);
      expect(outputs.get(name)).toMatch(/ ! {5}v10 was superseded by v\d+ before its release phase ran/);
    }
  });

  it('a release with nothing to run succeeds at once and replaces an older phase still waiting', async () => {
    const runner = new HeldRunner();
    const releases = new Releases(store, services.apps, { runner, maxPhases: 1 });
    await services.apps.create(user, 'ph-e');
    let access = await services.apps.resolve(user, 'ph-e');
    const v2 = await releases.deploy(user, access, { id: 'slug-1', process_types: { release: 'migrate' }, commit: null });
    const first = releases.runPhase(access.app, v2, () => undefined);
    access = await services.apps.resolve(user, 'ph-e');
    const v3 = await releases.deploy(user, access, { id: 'slug-1b', process_types: { release: 'migrate' }, commit: null });
    let said = '';
    const waiting = releases.runPhase(access.app, v3, (t) => (said += t));
    access = await services.apps.resolve(user, 'ph-e');
    const v4 = await releases.deploy(user, access, { id: 'slug-2', process_types: { web: 'x' }, commit: null });
    expect((await releases.runPhase(access.app, v4, () => undefined)).status).toBe('succeeded');
    expect(await waiting).toMatchObject({ version: 3, status: 'failed', superseded_by: 4 });
    expect(said).toBe('-----> Waiting for an earlier release phase of ph-e to finish...\n !     v3 was superseded by v4 before its release phase ran; v4 runs instead.\n');
    runner.open();
    expect((await first).status).toBe('succeeded');
    expect(runner.ran.map((c) => c.slugId)).toEqual(['slug-1']);
    expect((await services.apps.resolve(user, 'ph-e')).app.current_version).toBe(4);
  });
});

/** Holds each app's command until `release(appId)`, recording the order they started in. */
class GatedRunner implements SlugRunner {
  readonly started: string[] = [];
  private readonly gates = new Map<string, () => void>();

  async run(command: SlugCommand): Promise<boolean> {
    this.started.push(command.appId);
    await new Promise<void>((r) => this.gates.set(command.appId, r));
    return true;
  }

  release(appId: string): void {
    this.gates.get(appId)?.();
    this.gates.delete(appId);
  }
}

/** An app of `owner` with a pending release whose slug has a release process. */
async function pendingApp(releases: Releases, owner: UserRecord, name: string): Promise<{ app: AppRecord; release: ReleaseRecord }> {
  await services.apps.create(owner, name);
  const access = await services.apps.resolve(owner, name);
  const release = await releases.deploy(owner, access, { id: `slug-${name}`, process_types: { release: 'sleep 900' }, commit: null });
  return { app: access.app, release };
}

const tick = (): Promise<void> => new Promise((r) => setTimeout(r, 20));

describe('release phases across tenants', () => {
  it("one owner's two apps with long phases cannot keep another owner's phase from starting", async () => {
    const runner = new GatedRunner();
    const releases = new Releases(store, services.apps, { runner, maxPhases: 2 });
    const mallory = (await services.users.create('mallory@example.com')).user;
    const a1 = await pendingApp(releases, mallory, 'mal-1');
    const a2 = await pendingApp(releases, mallory, 'mal-2');
    const b = await pendingApp(releases, user, 'victim');
    let a2Said = '';
    let bSaid = '';
    const p1 = releases.runPhase(a1.app, a1.release, () => undefined, true);
    const p2 = releases.runPhase(a2.app, a2.release, (t) => (a2Said += t), true);
    await tick();
    const pb = releases.runPhase(b.app, b.release, (t) => (bSaid += t));
    await tick();
    expect(runner.started).toEqual([a1.app.id, b.app.id]);
    expect(bSaid).not.toMatch(/Waiting/);
    expect(a2Said).toBe('-----> Waiting for a release phase of another app with the same owner to finish (1 at a time per owner on this server)...\n');
    runner.release(b.app.id);
    expect((await pb).status).toBe('succeeded');
    runner.release(a1.app.id);
    await p1;
    await until('mal-2 to start', () => runner.started.includes(a2.app.id));
    runner.release(a2.app.id);
    expect((await p2).status).toBe('succeeded');
  });

  it("a push's phase goes ahead of background ones; the wait says the server is full", async () => {
    const runner = new GatedRunner();
    const releases = new Releases(store, services.apps, { runner, maxPhases: 2 });
    const owners = await Promise.all(['o1', 'o2', 'o3', 'o4'].map(async (n) => (await services.users.create(`${n}@example.com`)).user));
    const [o1, o2, o3, o4] = owners as [UserRecord, UserRecord, UserRecord, UserRecord];
    const r1 = await pendingApp(releases, o1, 'busy-1');
    const r2 = await pendingApp(releases, o2, 'busy-2');
    const bg = await pendingApp(releases, o3, 'background');
    const push = await pendingApp(releases, o4, 'pushed');
    const p1 = releases.runPhase(r1.app, r1.release, () => undefined);
    const p2 = releases.runPhase(r2.app, r2.release, () => undefined);
    await tick();
    const pBg = releases.runPhase(bg.app, bg.release, () => undefined, true);
    let pushSaid = '';
    const pPush = releases.runPhase(push.app, push.release, (t) => (pushSaid += t));
    await tick();
    expect(pushSaid).toBe('-----> Waiting for a free release phase slot on this server (other apps are running theirs)...\n');
    runner.release(r1.app.id);
    await p1;
    await until('a slot to be handed on', () => runner.started.length === 3);
    expect(runner.started[2]).toBe(push.app.id);
    for (const id of [r2.app.id, push.app.id]) runner.release(id);
    await Promise.all([p2, pPush]);
    await until('the background phase to start', () => runner.started.length === 4);
    runner.release(bg.app.id);
    expect((await pBg).status).toBe('succeeded');
  });

  it('an app destroyed while its background phase waits leaves no unhandled rejection', async () => {
    const unhandled: unknown[] = [];
    const onUnhandled = (err: unknown): void => void unhandled.push(err);
    process.on('unhandledRejection', onUnhandled);
    try {
      const runner = new GatedRunner();
      const logged: string[] = [];
      const log = createLogger('test', { level: 'warn', destination: new Writable({ write: (chunk: Buffer, _e, cb) => (logged.push(chunk.toString()), cb()) }) });
      const releases = new Releases(store, services.apps, { runner, maxPhases: 1, log });
      const busy = await pendingApp(releases, user, 'holds-slot');
      const first = releases.runPhase(busy.app, busy.release, () => undefined);
      await tick();
      await services.apps.create(user, 'doomed');
      await releases.deploy(user, await services.apps.resolve(user, 'doomed'), { id: 'slug-doomed', process_types: { release: 'migrate' }, commit: null });
      // A config change's phase runs in the background: it waits for the node's one slot.
      await releases.setConfig(user, await services.apps.resolve(user, 'doomed'), { A: '1' });
      await services.apps.destroy(await services.apps.resolve(user, 'doomed'));
      runner.release(busy.app.id);
      await first;
      await until('the doomed phase to run', () => runner.started.length === 2);
      runner.release(runner.started[1] ?? '');
      const logLine = (): boolean => logged.some((l) => l.includes('could not record a release phase'));
      await until('the failure to be logged or left unhandled', () => unhandled.length > 0 || logLine());
      await new Promise((r) => setTimeout(r, 20));
      expect(unhandled).toEqual([]);
      expect(logLine()).toBe(true);
    } finally {
      process.off('unhandledRejection', onUnhandled);
    }
  });
});

describe('rollback', () => {
  it("is refused with a clear 422 when the release's build is no longer kept", async () => {
    const releases = new Releases(store, services.apps);
    await services.apps.create(user, 'rb-app');
    const slug = (id: string): SlugRecord => ({
      id,
      app_id: 'x',
      checksum: `SHA256:${'0'.repeat(64)}`,
      size: 1,
      process_types: { web: 'x' },
      commit: null,
      commit_description: null,
      buildpack_provided_description: null,
      stack: { name: 'heroku-22' },
      created_at: new Date().toISOString(),
      updated_at: new Date().toISOString(),
    });
    for (const id of ['slug-old', 'slug-new']) {
      await put(store, keys.slug(id), codecs.slug, slug(id));
      await releases.deploy(user, await services.apps.resolve(user, 'rb-app'), { id, process_types: { web: 'x' }, commit: null });
    }
    // Collection took v2's slug (as it does past the newest 10 releases); v3's is kept.
    await store.delete(keys.slug('slug-old'));
    const refused = await releases.rollback(user, await services.apps.resolve(user, 'rb-app'), 'v2').catch((e: unknown) => e);
    expect(refused).toBeInstanceOf(BerthError);
    expect(refused).toMatchObject({ code: 'invalid_params', message: "Release v2's build is no longer kept; roll back to one of the newest 10 releases or push again." });
    expect((await releases.list((await services.apps.resolve(user, 'rb-app')).app.id)).length).toBe(3);
    expect(await releases.rollback(user, await services.apps.resolve(user, 'rb-app'), 'v3')).toMatchObject({ version: 4, slug_id: 'slug-new' });
  });

  it('is refused when collection takes the build between the check and the write', async () => {
    await services.apps.create(user, 'rb-race');
    const slugKey = keys.slug('slug-raced');
    await store.put(slugKey, JSON.stringify({ id: 'slug-raced' }));
    // Collection's delete lands just before the rollback's write.
    const racing: Store = new Proxy(store, {
      get(target, prop, receiver) {
        if (prop === 'txn') {
          return async (r: TxnRequest) => {
            if (r.compare.some((c) => c.key === slugKey)) await target.delete(slugKey);
            return target.txn(r);
          };
        }
        const v = Reflect.get(target, prop, receiver) as unknown;
        return typeof v === 'function' ? (v as (...a: unknown[]) => unknown).bind(target) : v;
      },
    });
    const releases = new Releases(racing, services.apps);
    await releases.deploy(user, await services.apps.resolve(user, 'rb-race'), { id: 'slug-raced', process_types: { web: 'x' }, commit: null });
    await releases.setConfig(user, await services.apps.resolve(user, 'rb-race'), { A: '1' });
    await expect(releases.rollback(user, await services.apps.resolve(user, 'rb-race'), 'v2')).rejects.toThrow("Release v2's build is no longer kept");
    expect((await releases.list((await services.apps.resolve(user, 'rb-race')).app.id)).length).toBe(3);
  });
});
