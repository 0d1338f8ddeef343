import { afterEach, beforeEach, describe, expect, it } from 'vitest';
import { get, put } from '../../src/domain/codec.js';
import { keys } from '../../src/domain/keys.js';
import { codecs } from '../../src/domain/records.js';
import { normalizeHealthCheck } from '../../src/domain/records/health.js';
import { apiHarness, type Harness } from './harness.js';

let h: Harness;
beforeEach(async () => {
  h = await apiHarness();
});
afterEach(async () => {
  await h.close();
});

const DEFAULTS = { attempts: 3, timeout: 5, wait: 5, initialDelay: 0 };

describe('healthchecks API (berth healthchecks, healthchecks:set, healthchecks:unset)', () => {
  it('sets, lists and unsets a check; each change bumps the type\'s restart counter with it', async () => {
    const t = h.tokens.alice;
    const app = (await h.call(t, 'POST', '/apps', { name: 'shop' })).body as { id: string };
    expect((await h.call(t, 'GET', '/apps/shop/healthchecks')).body).toEqual([]);

    const set = await h.call(t, 'PUT', '/apps/shop/healthchecks/web', { path: '/health', attempts: 4 });
    expect(set.status).toBe(200);
    expect(set.body).toEqual([{ process_type: 'web', type: 'startup', path: '/health', ...DEFAULTS, attempts: 4, source: 'healthchecks:set' }]);
    expect((await get(h.store, keys.restarts(app.id), codecs.restarts))?.value).toEqual({ web: 1 });

    // Another check type is added beside it; the same type replaces it.
    await h.call(t, 'PUT', '/apps/shop/healthchecks/web', { type: 'liveness', path: '/live', wait: 10 });
    const replaced = await h.call(t, 'PUT', '/apps/shop/healthchecks/web', { path: '/ready', content: 'ok' });
    expect((replaced.body as { type: string; path: string }[]).map((c) => `${c.type} ${c.path}`)).toEqual(['liveness /live', 'startup /ready']);
    expect((await get(h.store, keys.restarts(app.id), codecs.restarts))?.value).toEqual({ web: 3 });

    expect((await h.call(t, 'DELETE', '/apps/shop/healthchecks/web/readiness')).status).toBe(404);
    const one = await h.call(t, 'DELETE', '/apps/shop/healthchecks/web/liveness');
    expect((one.body as { type: string }[]).map((c) => c.type)).toEqual(['startup']);
    const none = await h.call(t, 'DELETE', '/apps/shop/healthchecks/web', undefined, { 'content-type': 'application/json' });
    expect(none.body).toEqual([]);
    expect(await h.store.get(keys.healthchecks(app.id))).toBeUndefined();
  });

  it.each([
    [{ path: 'health' }, 422, 'path must start with /'],
    [{ path: '/a b' }, 422, 'path must start with /'],
    [{ path: '/', attempts: 1000 }, 422, 'attempts must be a whole number from 1 to 60'],
    [{ path: '/', timeout: 0 }, 422, 'timeout must be a whole number from 1 to 60'],
    [{ path: '/', type: 'eventually' }, 422, 'type must be one of'],
    [{ path: '/', content: 'x\r\nforged' }, 422, 'content must be text'],
    [{ path: '/', port: 8080 }, 422, ''],
    [{ path: '/', attempts: '3' }, 422, ''],
  ])('refuses %j', async (body, status, message) => {
    await h.call(h.tokens.alice, 'POST', '/apps', { name: 'shop' });
    const r = await h.call(h.tokens.alice, 'PUT', '/apps/shop/healthchecks/web', body);
    expect(r.status).toBe(status);
    expect((r.body as { id: string; message: string }).message).toContain(message);
  });

  it('refuses checks of a type without $PORT, bad type names, and apps the user cannot see', async () => {
    await h.call(h.tokens.alice, 'POST', '/apps', { name: 'shop' });
    const worker = await h.call(h.tokens.alice, 'PUT', '/apps/shop/healthchecks/worker', { path: '/' });
    expect(worker.status).toBe(422);
    expect(worker.body.message).toContain('web dynos only');
    expect((await h.call(h.tokens.alice, 'PUT', '/apps/shop/healthchecks/we%20b', { path: '/' })).status).toBe(422);
    expect((await h.call(h.tokens.bob, 'PUT', '/apps/shop/healthchecks/web', { path: '/' })).status).toBe(404);
    expect((await h.call(h.tokens.bob, 'GET', '/apps/shop/healthchecks')).status).toBe(404);
  });

  it("lists app.json's checks from the current release's slug, an override replacing only its own check type; apps:destroy removes the override", async () => {
    const t = h.tokens.alice;
    const app = (await h.call(t, 'POST', '/apps', { name: 'shop' })).body as { id: string };
    const user = (await h.services.users.authenticate(t))!;
    const slug = { id: 'slug-1', app_id: app.id, checksum: `SHA256:${'a'.repeat(64)}`, size: 1, process_types: { web: 'serve' }, commit: null, commit_description: null, buildpack_provided_description: null, stack: { name: 'heroku-22' }, created_at: 'now', updated_at: 'now' };
    await put(h.store, keys.slug(slug.id), codecs.slug, { ...slug, healthchecks: { web: [normalizeHealthCheck({ path: '/boot' }), normalizeHealthCheck({ type: 'liveness', path: '/live' })] } });
    await h.services.releases.deploy(user, await h.services.apps.resolve(user, 'shop'), { id: slug.id, process_types: slug.process_types, commit: null });

    const listed = (await h.call(t, 'GET', '/apps/shop/healthchecks')).body as { type: string; path: string; source: string }[];
    expect(listed.map((c) => `${c.type} ${c.path} ${c.source}`)).toEqual(['startup /boot app.json', 'liveness /live app.json']);
    const after = (await h.call(t, 'PUT', '/apps/shop/healthchecks/web', { path: '/mine' })).body as { type: string; path: string; source: string }[];
    expect(after.map((c) => `${c.type} ${c.path} ${c.source}`)).toEqual(['liveness /live app.json', 'startup /mine healthchecks:set']);

    expect((await h.call(t, 'DELETE', '/apps/shop')).status).toBe(200);
    expect(await h.store.get(keys.healthchecks(app.id))).toBeUndefined();
  });
});
