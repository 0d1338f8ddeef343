import type { FastifyInstance } from 'fastify';
import { buildApi, createServices, type Services } from '../../src/controller/index.js';
import { createLogger } from '../../src/domain/log.js';
import { openStore, type Store } from '../../src/store/index.js';

export interface Response {
  status: number;
  body: any; // eslint-disable-line @typescript-eslint/no-explicit-any -- JSON under test
  headers: Record<string, string | string[] | number | undefined>;
}

export interface Harness {
  store: Store;
  services: Services;
  api: FastifyInstance;
  tokens: { admin: string; alice: string; bob: string };
  call(token: string | undefined, method: string, url: string, body?: unknown, headers?: Record<string, string>): Promise<Response>;
  close(): Promise<void>;
}

/** The API in-process on a memory store, with an admin and two ordinary users. */
export async function apiHarness(storeUrl = 'memory://'): Promise<Harness> {
  const store = openStore(storeUrl);
  const log = createLogger('test', { level: 'silent' });
  const services = createServices(store, log, { domain: 'berth.test', apiUrl: 'http://api.berth.test:5000' });
  const api = buildApi(services, log);
  const admin = await services.users.create('admin@example.com', { admin: true });
  const alice = await services.users.create('alice@example.com');
  const bob = await services.users.create('bob@example.com');
  return {
    store,
    services,
    api,
    tokens: { admin: admin.token, alice: alice.token, bob: bob.token },
    async call(token, method, url, body, headers = {}) {
      const res = await api.inject({
        method: method as 'GET',
        url,
        headers: {
          accept: 'application/vnd.heroku+json; version=3',
          ...(token ? { authorization: `Bearer ${token}` } : {}),
          ...(body !== undefined ? { 'content-type': 'application/json' } : {}),
          ...headers,
        },
        ...(body !== undefined ? { payload: typeof body === 'string' ? body : JSON.stringify(body) } : {}),
      });
      let parsed: unknown = res.body;
      try {
        parsed = JSON.parse(res.body);
      } catch {
        // Not JSON (a log stream): keep the text.
      }
      return { status: res.statusCode, body: parsed, headers: res.headers };
    },
    async close() {
      await api.close();
      await services.close();
      await store.close();
    },
  };
}
