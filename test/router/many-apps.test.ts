import { readFileSync } from 'node:fs';
import type { Server } from 'node:http';
import { join } from 'node:path';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { openStore, type Store } from '../../src/store/index.js';
import { afterReload, call, dyno, startRouter, type SuiteRouter } from './client.js';

/** 200 apps, each with its own dyno stand-in, behind one real nginx: every Host reaches its own app. */
const APPS = 200;
let store: Store;
let suite: SuiteRouter;
let dir: string;
let port: number;
const servers: Server[] = [];

beforeAll(async () => {
  store = openStore('memory://');
  suite = await startRouter({ store, id: 'many', upstreams: servers });
  ({ dir, httpPort: port } = suite);
  for (let i = 0; i < APPS; i++) {
    const name = `app-${String(i).padStart(3, '0')}`;
    const { endpoint } = await dyno(name, servers);
    // One txn per app, as the controller and an agent would write them.
    await store.txn({ compare: [], success: [{ type: 'put', key: `/berth/app-names/${name}`, value: `id-${name}` }, { type: 'put', key: `/berth/services/${name}/${name}.web.1@v2`, value: endpoint }] });
  }
}, 120_000);
afterAll(async () => {
  await suite?.stop();
  await store?.close();
});

describe('200 apps on one router', () => {
  it('routes every hostname to its own app, and nginx.conf names each once', async () => {
    const last = `app-${String(APPS - 1).padStart(3, '0')}`;
    await afterReload(dir, async () => (await call({ port, host: `${last}.berth.test` })).status === 200, 20_000);
    const wrong: string[] = [];
    for (let i = 0; i < APPS; i += 10) {
      // Ten at a time: every app is asked, in parallel batches, as a busy router would be.
      const batch = Array.from({ length: 10 }, (_, j) => `app-${String(i + j).padStart(3, '0')}`);
      const answers = await Promise.all(batch.map(async (name) => ({ name, r: await call({ port, host: `${name}.berth.test` }) })));
      for (const { name, r } of answers) if (r.status !== 200 || (JSON.parse(r.body) as { dyno: string }).dyno !== name) wrong.push(`${name}: ${r.status} ${r.body.slice(0, 80)}`);
    }
    expect(wrong).toEqual([]);
    const conf = readFileSync(join(dir, 'nginx.conf'), 'utf8');
    expect(conf.match(/server_name app-\d{3}\.berth\.test/g)).toHaveLength(APPS);
    expect((await call({ port, host: 'app-999.berth.test' })).status).toBe(404);
  }, 120_000);
});
