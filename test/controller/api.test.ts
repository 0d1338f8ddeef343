import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { apiHarness, type Harness } from './harness.js';

let h: Harness;
let t: string;
beforeAll(async () => {
  h = await apiHarness();
  t = h.tokens.alice;
});
afterAll(() => h.close());

describe('API conventions', () => {
  it('requires a token everywhere but /health, answering {id, message}', async () => {
    expect((await h.call(undefined, 'GET', '/health')).status).toBe(200);
    for (const [method, url] of [['GET', '/apps'], ['GET', '/account'], ['POST', '/apps'], ['GET', '/apps/x/config-vars'], ['GET', '/berth/users']]) {
      const r = await h.call(undefined, method!, url!);
      expect(r.status).toBe(401);
      expect(r.body).toEqual({ id: 'unauthorized', message: 'Invalid credentials provided.' });
    }
    expect((await h.call('berth_not-a-real-token-0000', 'GET', '/apps')).status).toBe(401);
  });

  it('accepts HTTP basic with the token as password, as git and old clients send it', async () => {
    const basic = Buffer.from(`anyone:${t}`).toString('base64');
    const r = await h.call(undefined, 'GET', '/account', undefined, { authorization: `Basic ${basic}` });
    expect(r.status).toBe(200);
    expect(r.body.email).toBe('alice@example.com');
  });

  it('echoes Request-Id, or makes one', async () => {
    expect((await h.call(t, 'GET', '/account', undefined, { 'request-id': 'abc-123' })).headers['request-id']).toBe('abc-123');
    expect(String((await h.call(t, 'GET', '/account')).headers['request-id'])).toMatch(/^[0-9a-f-]{36}$/);
  });

  it('answers unknown endpoints and malformed JSON with Heroku-shaped errors', async () => {
    expect((await h.call(t, 'GET', '/nope')).body.id).toBe('not_found');
    const bad = await h.call(t, 'POST', '/apps', '{"name": ');
    expect(bad.status).toBe(400);
    expect(bad.body.id).toBe('bad_request');
  });
});

describe('apps', () => {
  it('creates, shows, lists, renames and destroys apps by name or id', async () => {
    const created = await h.call(t, 'POST', '/apps', { name: 'shop' });
    expect(created.status).toBe(201);
    expect(created.body).toMatchObject({
      name: 'shop',
      owner: { email: 'alice@example.com' },
      web_url: 'http://shop.berth.test/',
      git_url: 'http://api.berth.test:5000/shop.git',
      stack: { name: 'heroku-22' },
      region: { name: 'local' },
    });
    const id = created.body.id as string;
    expect((await h.call(t, 'GET', `/apps/${id}`)).body.name).toBe('shop');
    expect((await h.call(t, 'GET', '/apps')).body.map((a: { name: string }) => a.name)).toContain('shop');
    expect((await h.call(t, 'GET', '/users/~/apps')).body.map((a: { name: string }) => a.name)).toContain('shop');
    const renamed = await h.call(t, 'PATCH', '/apps/shop', { name: 'store' });
    expect(renamed.body).toMatchObject({ id, name: 'store', web_url: 'http://store.berth.test/' });
    expect((await h.call(t, 'GET', '/apps/shop')).status).toBe(404);
    expect((await h.call(t, 'GET', '/apps/store/releases')).body).toHaveLength(1);
    // The old name is free again.
    expect((await h.call(t, 'POST', '/apps', { name: 'shop' })).status).toBe(201);
    expect((await h.call(t, 'DELETE', '/apps/store')).body.name).toBe('store');
    expect((await h.call(t, 'GET', `/apps/${id}`)).status).toBe(404);
    expect((await h.store.range(`/berth/apps/${id}`, { prefix: true })).count).toBe(0);
  });

  it('generates a name when none is given', async () => {
    const r = await h.call(t, 'POST', '/apps', {});
    expect(r.status).toBe(201);
    expect(r.body.name).toMatch(/^[a-z]+-[a-z]+-\d{4}$/);
  });

  it('pages with Range and Next-Range (206 while more remain)', async () => {
    const names = ['page-a', 'page-b', 'page-c'];
    for (const n of names) await h.call(h.tokens.bob, 'POST', '/apps', { name: n });
    const first = await h.call(h.tokens.bob, 'GET', '/apps', undefined, { range: 'name ..; max=2' });
    expect(first.status).toBe(206);
    expect(first.body.map((a: { name: string }) => a.name)).toEqual(['page-a', 'page-b']);
    expect(first.headers['next-range']).toBe('name ]page-b..; max=2');
    const rest = await h.call(h.tokens.bob, 'GET', '/apps', undefined, { range: String(first.headers['next-range']) });
    expect(rest.status).toBe(200);
    expect(rest.body.map((a: { name: string }) => a.name)).toEqual(['page-c']);
    const desc = await h.call(h.tokens.bob, 'GET', '/apps', undefined, { range: 'name ..; max=1, order=desc' });
    expect(desc.body[0].name).toBe('page-c');
  });
});

describe('config vars and releases', () => {
  it('creates an immutable release per change and rolls back code and config together', async () => {
    await h.call(t, 'POST', '/apps', { name: 'relapp' });
    expect((await h.call(t, 'PATCH', '/apps/relapp/config-vars', { A: '1', B: '2' })).body).toEqual({ A: '1', B: '2' });
    expect((await h.call(t, 'PATCH', '/apps/relapp/config-vars', { A: null, C: '3' })).body).toEqual({ B: '2', C: '3' });
    const list = (await h.call(t, 'GET', '/apps/relapp/releases')).body as { version: number; description: string; current: boolean }[];
    expect(list.map((r) => [r.version, r.description, r.current])).toEqual([
      [1, 'Initial release', false],
      [2, 'Set A, B config vars', false],
      [3, 'Set C config var and Remove A config var', true],
    ]);
    const v2 = await h.call(t, 'GET', '/apps/relapp/releases/2');
    expect(v2.body).toMatchObject({ version: 2, user: { email: 'alice@example.com' }, status: 'succeeded' });
    expect((await h.call(t, 'GET', `/apps/relapp/releases/${v2.body.id}`)).body.version).toBe(2);
    const rb = await h.call(t, 'POST', '/apps/relapp/releases', { release: v2.body.id });
    expect(rb.status).toBe(201);
    expect(rb.body).toMatchObject({ version: 4, description: 'Rollback to v2', current: true });
    expect((await h.call(t, 'GET', '/apps/relapp/config-vars')).body).toEqual({ A: '1', B: '2' });
    const desc = await h.call(t, 'GET', '/apps/relapp/releases', undefined, { range: 'version ..; max=2, order=desc' });
    expect(desc.body.map((r: { version: number }) => r.version)).toEqual([4, 3]);
    expect(desc.status).toBe(206);
  });

  it('serialises concurrent config changes: every one gets its own version, none is lost', async () => {
    await h.call(t, 'POST', '/apps', { name: 'raceapp' });
    const results = await Promise.all(Array.from({ length: 10 }, (_, i) => h.call(t, 'PATCH', '/apps/raceapp/config-vars', { [`K${i}`]: String(i) })));
    expect(results.every((r) => r.status === 200)).toBe(true);
    const config = (await h.call(t, 'GET', '/apps/raceapp/config-vars')).body;
    expect(Object.keys(config).sort()).toEqual(Array.from({ length: 10 }, (_, i) => `K${i}`).sort());
    const versions = (await h.call(t, 'GET', '/apps/raceapp/releases')).body.map((r: { version: number }) => r.version);
    expect(versions).toEqual(Array.from({ length: 11 }, (_, i) => i + 1));
  });
});

describe('formation, dynos, builds', () => {
  it('scales web before any build, absolutely and relatively, and refuses other types', async () => {
    await h.call(t, 'POST', '/apps', { name: 'scaler' });
    const r = await h.call(t, 'PATCH', '/apps/scaler/formation', { updates: [{ type: 'web', quantity: 2 }] });
    expect(r.status).toBe(200);
    expect(r.body[0]).toMatchObject({ type: 'web', quantity: 2, size: 'standard-1x', app: { name: 'scaler' } });
    expect((await h.call(t, 'PATCH', '/apps/scaler/formation', { updates: [{ type: 'web', quantity: '+3' }] })).body[0].quantity).toBe(5);
    expect((await h.call(t, 'PATCH', '/apps/scaler/formation/web', { quantity: '-1' })).body.quantity).toBe(4);
    expect((await h.call(t, 'GET', '/apps/scaler/formation')).body.map((f: { type: string; quantity: number }) => [f.type, f.quantity])).toEqual([['web', 4]]);
    expect((await h.call(t, 'GET', '/apps/scaler/formation/web')).body.quantity).toBe(4);
    const worker = await h.call(t, 'PATCH', '/apps/scaler/formation', { updates: [{ type: 'worker', quantity: 1 }] });
    expect(worker.status).toBe(422);
    expect(worker.body.message).toMatch(/worker/);
  });

  it('lists dynos, builds (empty until something runs) and answers 404 for unknown builds and slugs', async () => {
    await h.call(t, 'POST', '/apps', { name: 'quiet' });
    expect((await h.call(t, 'GET', '/apps/quiet/dynos')).body).toEqual([]);
    expect((await h.call(t, 'GET', '/apps/quiet/builds')).body).toEqual([]);
    expect((await h.call(t, 'GET', '/apps/quiet/builds/00000000-0000-4000-8000-000000000000')).status).toBe(404);
    expect((await h.call(t, 'GET', '/apps/quiet/slugs/00000000-0000-4000-8000-000000000000')).status).toBe(404);
  });
});

describe('domains, collaborators, keys, log sessions', () => {
  it('adds, lists and removes custom domains; the built-in one stays', async () => {
    await h.call(t, 'POST', '/apps', { name: 'domapp' });
    const added = await h.call(t, 'POST', '/apps/domapp/domains', { hostname: 'www.Example.com' });
    expect(added.status).toBe(201);
    expect(added.body).toMatchObject({ hostname: 'www.example.com', kind: 'custom', cname: 'domapp.berth.test', status: 'succeeded' });
    const list = (await h.call(t, 'GET', '/apps/domapp/domains')).body.map((d: { hostname: string; kind: string }) => `${d.kind}:${d.hostname}`);
    expect(list).toEqual(['heroku:domapp.berth.test', 'custom:www.example.com']);
    expect((await h.call(t, 'DELETE', '/apps/domapp/domains/www.example.com')).status).toBe(200);
    expect((await h.call(t, 'DELETE', '/apps/domapp/domains/domapp.berth.test')).status).toBe(422);
  });

  it('manages collaborators, who then see and change the app but cannot delete it', async () => {
    await h.call(t, 'POST', '/apps', { name: 'team-app' });
    const added = await h.call(t, 'POST', '/apps/team-app/collaborators', { user: 'bob@example.com' });
    expect(added.status).toBe(201);
    expect(added.body).toMatchObject({ role: 'collaborator', user: { email: 'bob@example.com' }, app: { name: 'team-app' } });
    const list = (await h.call(t, 'GET', '/apps/team-app/collaborators')).body.map((c: { user: { email: string }; role: string }) => `${c.role}:${c.user.email}`);
    expect(list).toEqual(['owner:alice@example.com', 'collaborator:bob@example.com']);
    const b = h.tokens.bob;
    expect((await h.call(b, 'PATCH', '/apps/team-app/config-vars', { FROM_BOB: '1' })).status).toBe(200);
    expect((await h.call(b, 'DELETE', '/apps/team-app')).status).toBe(403);
    expect((await h.call(t, 'POST', '/apps/team-app/collaborators', { user: 'nobody@example.com' })).status).toBe(404);
    expect((await h.call(t, 'DELETE', '/apps/team-app/collaborators/bob@example.com')).status).toBe(200);
    expect((await h.call(b, 'GET', '/apps/team-app')).status).toBe(404);
  });

  it('adds, lists and removes SSH keys on the account', async () => {
    const pub = 'ssh-ed25519 AAAAC3NzaC1lZDI1NTE5AAAAIGq3bJqZ3k6w0b0b9gS3mC8Zl8mZQnV1xZpN9y2r4s5t alice@laptop';
    const added = await h.call(t, 'POST', '/account/keys', { public_key: pub });
    expect(added.status).toBe(201);
    expect(added.body).toMatchObject({ comment: 'alice@laptop', email: 'alice@example.com' });
    expect(added.body.fingerprint).toMatch(/^SHA256:/);
    expect((await h.call(t, 'GET', '/account/keys')).body).toHaveLength(1);
    expect((await h.call(h.tokens.bob, 'POST', '/account/keys', { public_key: pub })).status).toBe(409);
    expect((await h.call(t, 'DELETE', `/account/keys/${added.body.id}`)).status).toBe(200);
    expect((await h.call(t, 'GET', '/account/keys')).body).toEqual([]);
  });

  it('opens a log session whose URL streams the app\'s recent lines without a token', async () => {
    await h.call(t, 'POST', '/apps', { name: 'logapp' });
    await h.call(t, 'PATCH', '/apps/logapp/config-vars', { X: '1' });
    const session = await h.call(t, 'POST', '/apps/logapp/log-sessions', { lines: 10, tail: false });
    expect(session.status).toBe(201);
    const url = new URL(session.body.logplex_url as string);
    const stream = await h.call(undefined, 'GET', url.pathname);
    expect(stream.status).toBe(200);
    expect(String(stream.body)).toMatch(/app\[api\]: Set X config var by user alice@example.com/);
    expect((await h.call(undefined, 'GET', '/log-sessions/0123/stream')).status).toBe(404);
  });
});
