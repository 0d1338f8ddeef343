import { afterEach, describe, expect, it } from 'vitest';
import { apiHarness, type Harness } from '../controller/harness.js';
import { createLogger } from '../../src/domain/log.js';
import { keys } from '../../src/domain/keys.js';
import { Compactor } from '../../src/scheduler/compaction.js';
import { Election, openStore, StoreErrorCode, type Store } from '../../src/store/index.js';

const log = createLogger('test', { level: 'silent' });
const until = async (what: () => boolean, ms = 5000): Promise<void> => {
  const end = Date.now() + ms;
  while (!what()) {
    if (Date.now() > end) throw new Error('timed out');
    await new Promise((r) => setTimeout(r, 10));
  }
};

describe('the leader compacts the store', () => {
  let store: Store;
  afterEach(async () => {
    await store.close();
  });

  it('cuts history to the revision noted one interval earlier, and only while leading', async () => {
    store = openStore('memory://');
    const lease = await store.grantLease(30);
    const leadership = await new Election(store, keys.leader('scheduler')).campaign(lease.id, 'me');
    await store.put('/berth/x', 'v1');
    const early = await store.currentRevision();
    await store.put('/berth/x', 'v2');
    const compactor = new Compactor({ store, log, intervalMs: 40 });
    compactor.start(leadership);
    await until(() => compactor.count >= 1);
    compactor.stop();
    await compactor.settled();
    // The first tick only notes; the second compacts to what the first noted, which is past `early`.
    await expect(store.range('/berth/x', { revision: early })).rejects.toMatchObject({ code: StoreErrorCode.Compacted });
    expect((await store.get('/berth/x'))?.value).toBe('v2');

    // Deposed: no more cuts, however long it runs.
    await leadership.resign();
    const before = compactor.count;
    compactor.start(leadership);
    await new Promise((r) => setTimeout(r, 200));
    compactor.stop();
    await compactor.settled();
    expect(compactor.count).toBe(before);
  });
});

describe('old releases drop their config copy once their slug is gone', () => {
  let h: Harness;
  afterEach(async () => {
    await h.close();
  });

  it('keeps the newest releases and any whose slug is live; a pruned release cannot be rolled back to', async () => {
    h = await apiHarness();
    const t = h.tokens.alice;
    expect((await h.call(t, 'POST', '/apps', { name: 'pruned' })).status).toBe(201);
    for (let i = 0; i < 6; i++) expect((await h.call(t, 'PATCH', '/apps/pruned/config-vars', { N: String(i) })).status).toBe(200);
    const app = (await h.call(t, 'GET', '/apps/pruned')).body as { id: string };
    const all = await h.services.releases.list(app.id);
    expect(all.length).toBe(7);
    const pruned = await h.services.releases.pruneConfigs(app.id, new Set(), 3);
    expect(pruned).toBe(4);
    const after = await h.services.releases.list(app.id);
    expect(after.slice(0, 4).every((r) => r.config_pruned === true && Object.keys(r.config).length === 0)).toBe(true);
    expect(after.slice(4).map((r) => r.config.N)).toEqual(['3', '4', '5']);
    const refused = await h.call(t, 'POST', '/apps/pruned/releases', { release: after[1]!.id });
    expect(refused.status).toBe(422);
    expect(refused.body.message).toMatch(/pruned/);
    // A second pass finds nothing more to do.
    expect(await h.services.releases.pruneConfigs(app.id, new Set(), 3)).toBe(0);
  });
});
