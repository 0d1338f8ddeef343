import { mkdtempSync, rmSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import type { FastifyInstance } from 'fastify';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { FakeRuntime } from '../../src/agent/index.js';
import { buildApi, createServices, type Services } from '../../src/controller/index.js';
import { createOneOffDynos, type OneOffDynos } from '../../src/controller/one-off/index.js';
import { createLogger } from '../../src/domain/log.js';
import { LoopbackNetwork } from '../../src/network/loopback.js';
import { openStore, type Store } from '../../src/store/index.js';
import { until } from '../support/until.js';

const GiB = 1024 ** 3;
let dir: string;
let store: Store;
let services: Services;
let api: FastifyInstance;
let oneOff: OneOffDynos;
let token: string;
const runtime = new FakeRuntime();

async function call(method: 'POST' | 'PATCH', url: string, body: unknown): Promise<number> {
  const res = await api.inject({
    method,
    url,
    headers: { accept: 'application/vnd.heroku+json; version=3', authorization: `Bearer ${token}`, 'content-type': 'application/json' },
    payload: JSON.stringify(body),
  });
  return res.statusCode;
}

beforeAll(async () => {
  dir = mkdtempSync(join(tmpdir(), 'berth-one-off-cpu-'));
  store = openStore('memory://');
  const log = createLogger('test', { level: 'silent' });
  services = createServices(store, log, { domain: 'berth.test', apiUrl: 'http://api.berth.test:5000' });
  oneOff = createOneOffDynos({ services, dataDir: dir, node: 'node-1', runtime, network: new LoopbackNetwork(), slugPath: async (id) => `/nonexistent/${id}.tgz` });
  api = buildApi(services, log, [(a) => oneOff.routes(a)]);
  const created = await services.users.create('owner@example.com');
  token = created.token;
  for (const name of ['greedy', 'modest']) {
    await services.apps.create(created.user, name);
    await services.releases.deploy(created.user, await services.apps.resolve(created.user, name), { id: `slug-${name}`, process_types: { worker: 'hang' }, commit: null });
  }
  await oneOff.start();
});
afterAll(async () => {
  await oneOff.close();
  await api.close();
  await services.close();
  await store.close();
  rmSync(dir, { recursive: true, force: true });
});

describe('one-off dynos and the CPU', () => {
  it("weigh at most a default dyno's cpu shares, whatever memory run= asks for; a smaller one weighs less", async () => {
    expect(await call('PATCH', '/apps/greedy/limits', { run: '64G' })).toBe(200);
    expect(await call('PATCH', '/apps/modest/limits', { run: '256M' })).toBe(200);
    expect(await call('POST', '/apps/greedy/dynos', { command: 'hang', attach: false })).toBe(201);
    expect(await call('POST', '/apps/modest/dynos', { command: 'hang', attach: false })).toBe(201);
    const specs = await until('both running', () => {
      const r = runtime.running();
      return r.length === 2 ? r.map((d) => d.spec) : undefined;
    });
    const byMemory = specs.sort((a, b) => b.memoryBytes - a.memoryBytes).map((s) => [s.memoryBytes, s.cpuShares]);
    // Before: no cpuShares, so by memory: 131,072 for run=64G.
    expect(byMemory).toEqual([[64 * GiB, 1024], [256 * 1024 ** 2, 512]]);
  });
});
