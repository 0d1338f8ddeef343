import type { AddressInfo } from 'node:net';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import type { FastifyInstance } from 'fastify';
import { buildApi, createServices, type Services } from '../../src/controller/index.js';
import { createLogger } from '../../src/domain/log.js';
import { openStore, type Store } from '../../src/store/index.js';

const log = createLogger('test', { level: 'silent' });

interface Api {
  store: Store;
  services: Services;
  api: FastifyInstance;
  base: string;
  close(): Promise<void>;
}

async function startApi(rateLimit?: number): Promise<Api> {
  const store = openStore('memory://');
  const services = createServices(store, log, { domain: 'berth.test', apiUrl: 'http://127.0.0.1:5000' });
  const api = buildApi(services, log, [], rateLimit === undefined ? {} : { rateLimit });
  await services.lookups.start();
  await api.listen({ host: '127.0.0.1', port: 0 });
  return {
    store,
    services,
    api,
    base: `http://127.0.0.1:${(api.server.address() as AddressInfo).port}`,
    close: async () => {
      await api.close();
      await services.close();
      await store.close();
    },
  };
}

const get = (a: Api, path: string, token?: string): Promise<Response> =>
  fetch(`${a.base}${path}`, { headers: { accept: 'application/vnd.heroku+json; version=3', ...(token ? { authorization: `Bearer ${token}` } : {}) } });

describe('the per-token rate limit', () => {
  let a: Api;
  let alice: string;
  let bob: string;
  beforeAll(async () => {
    a = await startApi(5);
    alice = (await a.services.users.create('alice@example.com')).token;
    bob = (await a.services.users.create('bob@example.com')).token;
  });
  afterAll(() => a.close());

  it('counts down RateLimit-Remaining, then answers 429 {id: rate_limit}; other tokens keep theirs', async () => {
    const remaining: (string | null)[] = [];
    for (let i = 0; i < 5; i++) {
      const r = await get(a, '/account', alice);
      expect(r.status).toBe(200);
      remaining.push(r.headers.get('ratelimit-remaining'));
    }
    expect(remaining).toEqual(['4', '3', '2', '1', '0']);
    const over = await get(a, '/account', alice);
    expect(over.status).toBe(429);
    expect(over.headers.get('ratelimit-remaining')).toBe('0');
    expect(Number(over.headers.get('retry-after'))).toBeGreaterThan(0);
    expect(await over.json()).toEqual({ id: 'rate_limit', message: expect.stringMatching(/^Your account reached the API rate limit/) });
    // A failing request of a counted token still says where it stands.
    expect((await get(a, '/apps/nope', alice)).status).toBe(429);
    const other = await get(a, '/account', bob);
    expect(other.status).toBe(200);
    expect(other.headers.get('ratelimit-remaining')).toBe('4');
  });

  it('does not count the public health route, nor requests without a valid token', async () => {
    const carol = (await a.services.users.create('carol@example.com')).token;
    for (let i = 0; i < 8; i++) {
      const h = await get(a, '/health');
      expect(h.status).toBe(200);
      expect(h.headers.get('ratelimit-remaining')).toBeNull();
      expect((await get(a, '/account', 'not-a-token')).status).toBe(401);
      // Machine routes take machine credentials, never counted against a user's budget.
      expect((await get(a, '/internal/releases/x/1', 'not-a-credential')).status).toBe(401);
    }
    const r = await get(a, '/account', carol);
    expect(r.headers.get('ratelimit-remaining')).toBe('4');
  });
});

describe('the default', () => {
  it("is Heroku's 4,500 an hour", async () => {
    const a = await startApi();
    try {
      const token = (await a.services.users.create('dave@example.com')).token;
      const r = await get(a, '/account', token);
      expect(r.status).toBe(200);
      expect(r.headers.get('ratelimit-remaining')).toBe('4499');
    } finally {
      await a.close();
    }
  });

  it('is off with 0', async () => {
    const a = await startApi(0);
    try {
      const token = (await a.services.users.create('erin@example.com')).token;
      const r = await get(a, '/account', token);
      expect(r.status).toBe(200);
      expect(r.headers.get('ratelimit-remaining')).toBeNull();
    } finally {
      await a.close();
    }
  });
});
