import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { apiHarness, type Harness } from './harness.js';

let h: Harness;
beforeAll(async () => {
  h = await apiHarness();
  await h.call(h.tokens.alice, 'POST', '/apps', { name: 'alices-app' });
  await h.call(h.tokens.alice, 'PATCH', '/apps/alices-app/config-vars', { SECRET: 's3cr3t' });
});
afterAll(() => h.close());

describe('tenancy: another user\'s app does not exist for you', () => {
  it.each([
    ['GET', '/apps/alices-app', undefined],
    ['PATCH', '/apps/alices-app', { name: 'stolen' }],
    ['DELETE', '/apps/alices-app', undefined],
    ['GET', '/apps/alices-app/config-vars', undefined],
    ['PATCH', '/apps/alices-app/config-vars', { X: '1' }],
    ['GET', '/apps/alices-app/releases', undefined],
    ['POST', '/apps/alices-app/releases', { release: 1 }],
    ['PATCH', '/apps/alices-app/formation', { updates: [{ type: 'web', quantity: 1 }] }],
    ['GET', '/apps/alices-app/domains', undefined],
    ['POST', '/apps/alices-app/domains', { hostname: 'evil.example.com' }],
    ['GET', '/apps/alices-app/collaborators', undefined],
    ['POST', '/apps/alices-app/collaborators', { user: 'bob@example.com' }],
    ['POST', '/apps/alices-app/log-sessions', {}],
    ['GET', '/apps/alices-app/dynos', undefined],
  ])('%s %s → 404 for bob', async (method, url, body) => {
    const r = await h.call(h.tokens.bob, method, url, body);
    expect(r.status).toBe(404);
    expect(r.body).toEqual({ id: 'not_found', message: "Couldn't find that app." });
  });

  it('also by id, and the app is missing from bob\'s list', async () => {
    const id = (await h.call(h.tokens.alice, 'GET', '/apps/alices-app')).body.id;
    expect((await h.call(h.tokens.bob, 'GET', `/apps/${id}`)).status).toBe(404);
    expect((await h.call(h.tokens.bob, 'GET', '/apps')).body.map((a: { name: string }) => a.name)).not.toContain('alices-app');
  });

  it('left everything as it was', async () => {
    expect((await h.call(h.tokens.alice, 'GET', '/apps/alices-app/config-vars')).body).toEqual({ SECRET: 's3cr3t' });
    expect((await h.call(h.tokens.alice, 'GET', '/apps/alices-app/releases')).body).toHaveLength(2);
    expect((await h.call(h.tokens.alice, 'GET', '/apps/alices-app/domains')).body).toHaveLength(1);
  });

  it('admins see every app; only admins manage users', async () => {
    expect((await h.call(h.tokens.admin, 'GET', '/apps/alices-app')).status).toBe(200);
    expect((await h.call(h.tokens.admin, 'GET', '/apps')).body.map((a: { name: string }) => a.name)).toContain('alices-app');
    expect((await h.call(h.tokens.bob, 'GET', '/berth/users')).status).toBe(403);
    const created = await h.call(h.tokens.admin, 'POST', '/berth/users', { email: 'carol@example.com' });
    expect(created.status).toBe(201);
    expect(created.body.token).toMatch(/^berth_[0-9a-f]{48}$/);
    expect((await h.call(created.body.token, 'GET', '/account')).body.email).toBe('carol@example.com');
    expect((await h.call(h.tokens.admin, 'POST', '/berth/users', { email: 'carol@example.com' })).status).toBe(409);
  });

  it('stores tokens hashed: no token appears in the store', async () => {
    const all = await h.store.range('/', { prefix: true });
    const dump = all.kvs.map((kv) => `${kv.key}=${kv.value}`).join('\n');
    for (const token of Object.values(h.tokens)) expect(dump).not.toContain(token);
  });

  it('lets strangers sign up only while an admin has opened registration', async () => {
    expect((await h.call(undefined, 'POST', '/berth/signup', { email: 'dave@example.com' })).status).toBe(403);
    expect((await h.call(h.tokens.admin, 'PATCH', '/berth/settings', { open_registration: true })).body).toEqual({ open_registration: true });
    const r = await h.call(undefined, 'POST', '/berth/signup', { email: 'dave@example.com' });
    expect(r.status).toBe(201);
    expect((await h.call(r.body.token, 'GET', '/apps')).body).toEqual([]);
  });
});
