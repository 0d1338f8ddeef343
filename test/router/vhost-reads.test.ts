import { readFileSync } from 'node:fs';
import type { Server } from 'node:http';
import { join } from 'node:path';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { keys } from '../../src/domain/keys.js';
import { openStore, type Store } from '../../src/store/index.js';
import { CountingStore } from '../support/counting-store.js';
import { until } from '../support/until.js';
import { call, dyno, startRouter, type SuiteRouter } from './client.js';

/** Apps behind one real nginx, the router's store counted: a vhost change must not re-read them all. */
const APPS = 300;
let inner: Store;
let store: CountingStore;
let suite: SuiteRouter;
const servers: Server[] = [];

const conf = (): string => readFileSync(join(suite.dir, 'nginx.conf'), 'utf8');

beforeAll(async () => {
  inner = openStore('memory://');
  for (let i = 0; i < APPS; i += 50) {
    await inner.txn({ compare: [], success: Array.from({ length: 50 }, (_, j) => ({ type: 'put' as const, key: keys.appName(`app-${String(i + j).padStart(3, '0')}`), value: `id-${i + j}` })) });
  }
  store = new CountingStore(inner);
  suite = await startRouter({ store, id: 'reads', upstreams: servers });
}, 60_000);
afterAll(async () => {
  await suite?.stop();
  await store?.close();
});

describe(`a vhost change among ${APPS} apps`, () => {
  it('re-renders nginx.conf from what the watch brought, reading nothing from the store', async () => {
    await until('every app in nginx.conf', () => conf().includes('server_name app-299.berth.test'));
    const reads = store.reads();
    // A new app and its dyno, as the controller and an agent write them.
    const { endpoint } = await dyno('fresh', servers);
    await inner.txn({ compare: [], success: [{ type: 'put', key: keys.appName('fresh'), value: 'id-fresh' }] });
    await inner.put(keys.service('fresh', 'fresh.web.1@v2'), endpoint);
    await until('the new app served', async () => (await call({ port: suite.httpPort, host: 'fresh.berth.test' })).status === 200, 10_000);
    // A custom hostname for it, then an app removed.
    await inner.put(keys.hostname('www.fresh.example'), 'id-fresh');
    await inner.delete(keys.appName('app-000'));
    await until('the hostname and the removal rendered', () => conf().includes('www.fresh.example') && !conf().includes('server_name app-000.berth.test'));
    expect(store.reads() - reads).toBe(0);
    // Unchanged apps are all still there.
    expect(conf().match(/server_name app-\d{3}\.berth\.test/g)).toHaveLength(APPS - 1);
  });
});
