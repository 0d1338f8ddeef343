import { afterEach, beforeEach, describe, expect, it } from 'vitest';
import { Apps } from '../../src/controller/services/apps.js';
import { Formations } from '../../src/controller/services/formation.js';
import { Releases } from '../../src/controller/services/releases.js';
import type { UserRecord } from '../../src/controller/services/types.js';
import { Users } from '../../src/controller/services/users.js';
import { keys } from '../../src/domain/keys.js';
import { plan } from '../../src/scheduler/placement.js';
import type { MachineRecord, UnitSpec } from '../../src/scheduler/types.js';
import { readState } from '../../src/scheduler/state.js';
import { openStore, type Store } from '../../src/store/index.js';

const MiB = 1024 * 1024;
const GiB = 1024 * MiB;

let store: Store;
let user: UserRecord;
let apps: Apps;
let releases: Releases;
let formations: Formations;

beforeEach(async () => {
  store = openStore('memory://');
  user = (await new Users(store).create('owner@example.com')).user;
  apps = new Apps(store);
  releases = new Releases(store, apps);
  formations = new Formations(store, apps, releases);
});
afterEach(async () => {
  await store.close();
});

const machineRecord = (id: string, memoryBytes: number, tags: Record<string, string> = {}): MachineRecord => ({
  id,
  name: `node-${id}`,
  address: `10.0.0.${id.slice(-1)}`,
  tags,
  capacity: { memoryBytes, cpus: 2 },
  ports: { from: 5000, to: 5099 },
  agent_version: '0.1.0',
});

/** An app with a built slug: web, worker and a release phase in its Procfile. */
async function deployedApp(name: string): Promise<string> {
  const app = await apps.create(user, name);
  await releases.deploy(user, await apps.resolve(user, name), { id: `slug-${name}`, process_types: { web: 'npm start', worker: 'node worker.js', release: 'npm run migrate' }, commit: null });
  return app.id;
}

describe('readState', () => {
  it('reads machines, apps with their current release, formation, tags, limits and assignments', async () => {
    const lease = await store.grantLease(60);
    await store.put(keys.machine('m1'), JSON.stringify(machineRecord('m1', 4 * GiB, { region: 'eu' })), { lease: lease.id });
    await store.put(keys.machine('m2'), JSON.stringify(machineRecord('m2', 2 * GiB)), { lease: lease.id });

    const shopId = await deployedApp('shop');
    await formations.update(user, await apps.resolve(user, 'shop'), [
      { type: 'web', quantity: 2, size: 'standard-2x' },
      { type: 'worker', quantity: 1 },
    ]);
    await store.put(`${keys.app(shopId)}/tags`, JSON.stringify({ region: 'eu' }));
    await store.put(`${keys.app(shopId)}/limits`, JSON.stringify({ worker: 256 * MiB, web: '1.5G', bogus: 'lots' }));
    const fresh = await apps.create(user, 'fresh');

    const unit: UnitSpec = { name: 'shop.web.1', appId: shopId, appName: 'shop', type: 'web', index: 1, release: 2, memoryBytes: GiB };
    await store.put(keys.unit('m1', 'shop.web.1@v2'), JSON.stringify(unit));

    const view = await readState(store);
    expect(view.revision).toBe(await store.currentRevision());
    expect(view.machines).toEqual([
      { id: 'm1', address: '10.0.0.1', tags: { region: 'eu' }, capacity: { memoryBytes: 4 * GiB, cpus: 2 }, ports: { from: 5000, to: 5099 } },
      { id: 'm2', address: '10.0.0.2', tags: {}, capacity: { memoryBytes: 2 * GiB, cpus: 2 }, ports: { from: 5000, to: 5099 } },
    ]);
    expect(view.assignments).toEqual([{ machine: 'm1', unit }]);
    expect([...view.apps].sort((a, b) => a.name.localeCompare(b.name))).toEqual([
      { id: fresh.id, name: 'fresh', release: { version: 1, slugId: null, processTypes: {} }, formation: {}, placementTags: {}, memoryLimits: {} },
      {
        id: shopId,
        name: 'shop',
        release: { version: 2, slugId: 'slug-shop', processTypes: { web: 'npm start', worker: 'node worker.js', release: 'npm run migrate' } },
        formation: { web: { quantity: 2, size: 'standard-2x' }, worker: { quantity: 1, size: 'standard-1x' } },
        placementTags: { region: 'eu' },
        memoryLimits: { worker: 256 * MiB, web: 1.5 * GiB },
      },
    ]);
  });

  it('takes the release that should run (current_version), not a newer one still in its release phase', async () => {
    await deployedApp('shop');
    // A release phase that never ends: the release stays pending.
    const phased = new Releases(store, apps, { runner: { run: () => new Promise<boolean>(() => undefined) } });
    const pending = await phased.deploy(user, await apps.resolve(user, 'shop'), { id: 'slug-v3', process_types: { web: 'npm start', release: 'migrate' }, commit: null });
    expect(pending.status).toBe('pending');
    const [app] = (await readState(store)).apps;
    expect(app?.release).toEqual({ version: 2, slugId: 'slug-shop', processTypes: expect.objectContaining({ web: 'npm start' }) });
  });

  it('is empty on an empty store', async () => {
    expect(await readState(store)).toEqual({ machines: [], apps: [], assignments: [], revision: expect.any(Number) });
  });

  it('skips malformed records instead of failing the whole view', async () => {
    await store.put(keys.machine('good'), JSON.stringify(machineRecord('good', GiB)));
    await store.put(keys.machine('garbled'), '{not json');
    await store.put(keys.machine('no-capacity'), JSON.stringify({ id: 'no-capacity', address: 'x' }));
    await store.put(keys.unit('good', 'half@v1'), JSON.stringify({ name: 'half' }));
    await store.put(keys.appName('ghost'), 'no-such-id');
    await store.put(keys.appName('weird'), 'a/b');
    const view = await readState(store);
    expect(view.machines.map((m) => m.id)).toEqual(['good']);
    expect(view.assignments).toEqual([]);
    expect(view.apps).toEqual([]);
  });

  it('feeds plan(): a deployed app is placed by tags and memory', async () => {
    await store.put(keys.machine('eu1'), JSON.stringify(machineRecord('eu1', 2 * GiB, { region: 'eu' })));
    await store.put(keys.machine('us1'), JSON.stringify(machineRecord('us1', 8 * GiB, { region: 'us' })));
    const id = await deployedApp('shop');
    await formations.update(user, await apps.resolve(user, 'shop'), [{ type: 'web', quantity: 3, size: 'standard-2x' }]);
    await store.put(`${keys.app(id)}/tags`, JSON.stringify({ region: 'eu' }));

    const p = plan(await readState(store));
    expect(p.place.map((a) => `${a.machine}:${a.unit.name}@v${a.unit.release}`)).toEqual(['eu1:shop.web.1@v2', 'eu1:shop.web.2@v2']);
    expect(p.pending).toEqual([{ unit: expect.objectContaining({ name: 'shop.web.3' }), reason: 'no machine matching region=eu has 1 GiB free' }]);
  });
});
