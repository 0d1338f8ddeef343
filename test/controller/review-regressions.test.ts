import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { Users } from '../../src/controller/services/users.js';
import { openStore } from '../../src/store/index.js';
import { apiHarness, type Harness } from './harness.js';

let h: Harness;
let t: string;
beforeAll(async () => {
  h = await apiHarness();
  t = h.tokens.alice;
  await h.call(t, 'POST', '/apps', { name: 'edge-app' });
});
afterAll(() => h.close());

describe('edge cases found in review', () => {
  it('follows its own Next-Range through values with dots, and pages an empty list', async () => {
    for (const host of ['a.example.com', 'b.example.com', 'c.example.com']) await h.call(t, 'POST', '/apps/edge-app/domains', { hostname: host });
    const seen: string[] = [];
    let range = 'hostname ..; max=2';
    for (let i = 0; i < 5; i++) {
      const page = await h.call(t, 'GET', '/apps/edge-app/domains', undefined, { range });
      expect([200, 206]).toContain(page.status);
      seen.push(...page.body.map((d: { hostname: string }) => d.hostname));
      if (page.status === 200) break;
      range = String(page.headers['next-range']);
    }
    expect(seen).toEqual(['a.example.com', 'b.example.com', 'c.example.com', 'edge-app.berth.test']);
    const empty = await h.call(t, 'GET', '/account/keys', undefined, { range: 'id ]abc..; max=10' });
    expect(empty).toMatchObject({ status: 200, body: [] });
  });

  it('addresses long hostnames in paths and answers odd URLs with {id, message}', async () => {
    const long = `${'x'.repeat(60)}.${'y'.repeat(60)}.example.com`;
    expect((await h.call(t, 'POST', '/apps/edge-app/domains', { hostname: long })).status).toBe(201);
    expect((await h.call(t, 'DELETE', `/apps/edge-app/domains/${long}`)).status).toBe(200);
    const pct = await h.call(t, 'DELETE', '/apps/edge-app/collaborators/%25');
    expect(pct.status).toBe(404);
    expect(pct.body.id).toBe('not_found');
    const bad = await h.call(t, 'GET', '/apps/%E0%A4%A');
    expect(bad.status).toBeGreaterThanOrEqual(400);
    expect(bad.status).toBeLessThan(500);
    expect(Object.keys(bad.body).sort()).toEqual(['id', 'message']);
  });

  it('bootstraps exactly one admin when nodes start together', async () => {
    const store = openStore('memory://');
    const [a, b] = await Promise.all([new Users(store).bootstrapAdmin('root@example.com'), new Users(store).bootstrapAdmin('root@example.com')]);
    expect([a, b].filter(Boolean)).toHaveLength(1);
    expect(await new Users(store).bootstrapAdmin('root@example.com')).toBeUndefined();
    expect((await new Users(store).list()).map((u) => u.email)).toEqual(['root@example.com']);
    await store.close();
  });

  it('lets a collaborator leave, and closes their log access with their app access', async () => {
    await h.call(t, 'POST', '/apps/edge-app/collaborators', { user: 'bob@example.com' });
    const session = await h.call(h.tokens.bob, 'POST', '/apps/edge-app/log-sessions', { tail: false });
    const url = new URL(session.body.logplex_url as string).pathname;
    expect((await h.call(undefined, 'GET', url)).status).toBe(200);
    expect((await h.call(h.tokens.bob, 'DELETE', '/apps/edge-app/collaborators/bob@example.com')).status).toBe(200);
    expect((await h.call(h.tokens.bob, 'GET', '/apps/edge-app')).status).toBe(404);
    expect((await h.call(undefined, 'GET', url)).status).toBe(404);
  });

  it('stores maintenance mode, refuses __proto__ as a config name, and honours lines: 0', async () => {
    expect((await h.call(t, 'PATCH', '/apps/edge-app', { maintenance: true })).body.maintenance).toBe(true);
    expect((await h.call(t, 'GET', '/apps/edge-app')).body.maintenance).toBe(true);
    const proto = await h.call(t, 'PATCH', '/apps/edge-app/config-vars', '{"__proto__": "x"}', { 'content-type': 'application/vnd.heroku+json; version=3' });
    // Refused as prototype poisoning by the JSON parser, before it could be a config name.
    expect(proto.status).toBe(400);
    const session = await h.call(t, 'POST', '/apps/edge-app/log-sessions', { lines: 0 });
    expect((await h.call(undefined, 'GET', new URL(session.body.logplex_url as string).pathname)).body).toBe('');
  });

  it('takes the process type from the URL, not the body', async () => {
    const r = await h.call(t, 'PATCH', '/apps/edge-app/formation/worker', { type: 'web', quantity: 1 });
    expect(r.status).toBe(422);
    expect(r.body.message).toMatch(/worker/);
  });
});
