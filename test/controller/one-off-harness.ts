import { mkdtempSync, rmSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import type { FastifyInstance } from 'fastify';
import { FakeRuntime } from '../../src/agent/index.js';
import { buildApi, createServices, type Services } from '../../src/controller/index.js';
import { createOneOffDynos, type OneOffDynos } from '../../src/controller/one-off/index.js';
import type { UserRecord } from '../../src/controller/services/types.js';
import { createLogger } from '../../src/domain/log.js';
import { LoopbackNetwork } from '../../src/network/loopback.js';
import { openStore, type Store } from '../../src/store/index.js';

/** The API with one-off dynos on the fake runtime and the loopback network, and one user. */
export interface OneOffHarness {
  dir: string;
  store: Store;
  services: Services;
  api: FastifyInstance;
  oneOff: OneOffDynos;
  runtime: FakeRuntime;
  owner: UserRecord;
  token: string;
  /** The API as the owner (Heroku's Accept header), JSON in and out. */
  call(method: 'GET' | 'POST' | 'PATCH' | 'DELETE', url: string, body?: unknown): Promise<{ status: number; body: any }>; // eslint-disable-line @typescript-eslint/no-explicit-any -- JSON under test
  /** An app of the owner's with a released slug of these process types; returns its id. */
  app(name: string, processTypes?: Record<string, string>): Promise<string>;
  close(): Promise<void>;
}

export async function oneOffHarness(o: { store?: Store; sweepMs?: number } = {}): Promise<OneOffHarness> {
  const dir = mkdtempSync(join(tmpdir(), 'berth-one-off-'));
  const store = o.store ?? openStore('memory://');
  const log = createLogger('test', { level: 'silent' });
  const runtime = new FakeRuntime();
  const services = createServices(store, log, { domain: 'berth.test', apiUrl: 'http://api.berth.test:5000' });
  const oneOff = createOneOffDynos({ services, dataDir: dir, node: 'node-1', runtime, network: new LoopbackNetwork(), slugPath: async (id) => `/nonexistent/${id}.tgz`, ...(o.sweepMs !== undefined ? { sweepMs: o.sweepMs } : {}) });
  const api = buildApi(services, log, [(a) => oneOff.routes(a)]);
  const { user: owner, token } = await services.users.create('owner@example.com');
  await oneOff.start();
  return {
    dir,
    store,
    services,
    api,
    oneOff,
    runtime,
    owner,
    token,
    async call(method, url, body) {
      const res = await api.inject({
        method,
        url,
        headers: { accept: 'application/vnd.heroku+json; version=3', authorization: `Bearer ${token}`, ...(body !== undefined ? { 'content-type': 'application/json' } : {}) },
        ...(body !== undefined ? { payload: JSON.stringify(body) } : {}),
      });
      return { status: res.statusCode, body: JSON.parse(res.body) as unknown };
    },
    async app(name, processTypes = { worker: 'hang' }) {
      const created = await services.apps.create(owner, name);
      await services.releases.deploy(owner, await services.apps.resolve(owner, name), { id: `slug-${name}`, process_types: processTypes, commit: null });
      return created.id;
    },
    async close() {
      await oneOff.close();
      await api.close();
      await services.close();
      await store.close();
      rmSync(dir, { recursive: true, force: true });
    },
  };
}
