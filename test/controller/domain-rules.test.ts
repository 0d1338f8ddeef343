import type { AddressInfo } from 'node:net';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { buildApi, createServices, type Services } from '../../src/controller/index.js';
import { createLogger } from '../../src/domain/log.js';
import { openStore, type Store } from '../../src/store/index.js';
import type { FastifyInstance } from 'fastify';

// The API's host is deliberately outside the apps' domain, so each rule is seen on its own.
let store: Store;
let services: Services;
let api: FastifyInstance;
let base: string;
let alice: string;
let bob: string;

/** Over a real socket, as clients send them: inject() would not show what Node's HTTP parser and Fastify do with headers. */
async function call(token: string, method: string, path: string, body?: unknown, headers: Record<string, string> = {}): Promise<{ status: number; body: { id?: string; message?: string; hostname?: string } }> {
  const res = await fetch(`${base}${path}`, {
    method,
    headers: { accept: 'application/vnd.heroku+json; version=3', authorization: `Bearer ${token}`, ...(body !== undefined ? { 'content-type': 'application/json' } : {}), ...headers },
    ...(body !== undefined ? { body: JSON.stringify(body) } : {}),
  });
  const text = await res.text();
  return { status: res.status, body: text ? JSON.parse(text) : {} };
}

beforeAll(async () => {
  store = openStore('memory://');
  const log = createLogger('test', { level: 'silent' });
  services = createServices(store, log, { domain: 'apps.example.net', apiUrl: 'https://paas.example.org:5000' });
  api = buildApi(services, log);
  await services.lookups.start();
  await api.listen({ host: '127.0.0.1', port: 0 });
  base = `http://127.0.0.1:${(api.server.address() as AddressInfo).port}`;
  alice = (await services.users.create('alice@example.com')).token;
  bob = (await services.users.create('bob@example.com')).token;
  expect((await call(alice, 'POST', '/apps', { name: 'shop' })).status).toBe(201);
  expect((await call(bob, 'POST', '/apps', { name: 'rival' })).status).toBe(201);
});

afterAll(async () => {
  await api.close();
  await services.close();
  await store.close();
});

describe('custom domains a tenant may not claim', () => {
  const refused: [string, RegExp][] = [
    ['apps.example.net', /platform domain/],
    ['APPS.example.net.', /platform domain/],
    ['*.apps.example.net', /platform domain/],
    ['rival.apps.example.net', /platform domain/],
    ['x.y.apps.example.net', /platform domain/],
    // One label over the platform domain's parent covers the platform domain itself.
    ['*.example.net', /cover the platform domain/],
    ['paas.example.org', /API's hostname/],
    ['Paas.Example.Org.', /API's hostname/],
    ['*.example.org', /API's hostname/],
    ['*.co.uk', /public suffix co\.uk/],
    ['*.github.io', /public suffix github\.io/],
    ['co.uk', /is a public suffix/],
  ];
  for (const [hostname, why] of refused) {
    it(`refuses ${hostname} with 422 invalid_params naming the rule`, async () => {
      const r = await call(alice, 'POST', '/apps/shop/domains', { hostname });
      expect(r.status).toBe(422);
      expect(r.body.id).toBe('invalid_params');
      expect(r.body.message).toMatch(why);
    });
  }

  it('accepts names of its own, wildcards over them, and normalises them', async () => {
    for (const [hostname, stored] of [['WWW.Shop.example.com.', 'www.shop.example.com'], ['*.shop.example.co.uk', '*.shop.example.co.uk'], ['api.example.org', 'api.example.org'], ['shop.example.net', 'shop.example.net']]) {
      const r = await call(alice, 'POST', '/apps/shop/domains', { hostname });
      expect(r.status, hostname).toBe(201);
      expect(r.body.hostname).toBe(stored);
    }
  });

  it("refuses another app's domain with 422, saying it is taken, and the same app's again as a duplicate", async () => {
    const taken = await call(bob, 'POST', '/apps/rival/domains', { hostname: 'www.SHOP.example.com' });
    expect(taken.status).toBe(422);
    expect(taken.body).toMatchObject({ id: 'invalid_params', message: expect.stringMatching(/already in use by another app/) });
    const again = await call(alice, 'POST', '/apps/shop/domains', { hostname: 'www.shop.example.com.' });
    expect(again.status).toBe(422);
    expect(again.body.message).toMatch(/already a domain of shop/);
  });
});

describe('a DELETE with Content-Type: application/json and no body', () => {
  it('is a normal request, whatever JSON type it names', async () => {
    for (const type of ['application/json', 'application/json; charset=utf-8', 'application/vnd.heroku+json; version=3']) {
      expect((await call(alice, 'POST', '/apps/shop/domains', { hostname: 'gone.example.com' })).status).toBe(201);
      const r = await call(alice, 'DELETE', '/apps/shop/domains/gone.example.com', undefined, { 'content-type': type });
      expect(r.status, type).toBe(200);
      expect(r.body.hostname).toBe('gone.example.com');
    }
  });

  it('still refuses a body that is not JSON, and prototype poisoning', async () => {
    const bad = await fetch(`${base}/apps/shop/config-vars`, { method: 'PATCH', headers: { authorization: `Bearer ${alice}`, 'content-type': 'application/json' }, body: '{"A":' });
    expect(bad.status).toBe(400);
    expect(((await bad.json()) as { id: string }).id).toBe('bad_request');
    const poisoned = await fetch(`${base}/apps/shop/config-vars`, { method: 'PATCH', headers: { authorization: `Bearer ${alice}`, 'content-type': 'application/vnd.heroku+json; version=3' }, body: '{"__proto__": {"admin": true}}' });
    expect(poisoned.status).toBe(400);
  });
});

describe('a wildcard two labels or more above the platform domain', () => {
  it('is refused: nginx routes *.example.com to names at any depth, apps.corp.example.com\'s included', async () => {
    const s = openStore('memory://');
    const log = createLogger('test', { level: 'silent' });
    const svc = createServices(s, log, { domain: 'apps.corp.example.com', apiUrl: 'https://api.corp.example.com:5000' });
    try {
      expect(() => svc.domains.check('*.example.com')).toThrow(/cover the platform domain/);
      expect(() => svc.domains.check('*.corp.example.com')).toThrow(/cover the platform domain/);
      expect(svc.domains.check('*.shop.example.com')).toBe('*.shop.example.com');
    } finally {
      await svc.close();
      await s.close();
    }
  });
});
