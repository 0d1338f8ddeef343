import { afterEach, beforeEach, describe, expect, it } from 'vitest';
import type { SlugCommand, SlugRunner } from '../../src/builder/ports.js';
import { createServices, type Services } from '../../src/controller/index.js';
import { Releases } from '../../src/controller/services/releases.js';
import { createLogger } from '../../src/domain/log.js';
import type { UserRecord } from '../../src/domain/records.js';
import { openStore, type Store } from '../../src/store/index.js';

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
    for (const name of names) {
      await services.apps.create(user, name);
      // A deploy whose slug has a release process; its phase runs (held) like any other.
      const access = await services.apps.resolve(user, name);
      const deployed = await releases.deploy(user, access, { id: `slug-${name}`, process_types: { web: 'x', release: 'migrate' }, commit: null });
      void releases.runPhase(access.app, deployed, () => undefined);
    }
    // Twenty config changes per app, as fast as the API takes them.
    for (let i = 0; i < 20; i++) {
      for (const name of names) await releases.setConfig(user, await services.apps.resolve(user, name), { N: String(i) });
    }
    await new Promise((r) => setTimeout(r, 50));
    expect(runner.active).toBe(2);
    expect(releases.phasesRunning).toBe(2);
    runner.open();
    const newest = 22; // v1 initial, v2 the deploy, v3..v22 the config changes
    await until('every phase to end', async () => {
      for (const name of names) {
        const access = await services.apps.resolve(user, name);
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
      const access = await services.apps.resolve(user, name);
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
