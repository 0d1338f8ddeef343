import { execFileSync } from 'node:child_process';
import { mkdtempSync, readFileSync, rmSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { keys } from '../../src/domain/keys.js';
import { apiHarness, type Harness } from './harness.js';

let h: Harness;
let t: string;
const keyDir = mkdtempSync(join(tmpdir(), 'berth-keys-'));
beforeAll(async () => {
  h = await apiHarness();
  t = h.tokens.alice;
  await h.call(t, 'POST', '/apps', { name: 'valid-app' });
});
afterAll(async () => {
  await h.close();
  rmSync(keyDir, { recursive: true, force: true });
});

function keygen(type: string, bits?: number): string {
  const file = join(keyDir, `${type}-${bits ?? 0}-${Math.random().toString(36).slice(2)}`);
  execFileSync('ssh-keygen', ['-q', '-t', type, ...(bits ? ['-b', String(bits)] : []), '-N', '', '-C', `${type}@test`, '-f', file]);
  return readFileSync(`${file}.pub`, 'utf8');
}

async function releaseCount(): Promise<number> {
  return (await h.call(t, 'GET', '/apps/valid-app/releases')).body.length;
}

describe('validation: clear 4xx, nothing written', () => {
  it.each(['Upper', 'ab', '9lives', 'has_underscore', 'a'.repeat(31), 'trailing space '])('refuses the app name %j', async (name) => {
    const r = await h.call(t, 'POST', '/apps', { name });
    expect(r.status).toBe(422);
    expect(r.body.id).toBe('invalid_params');
  });

  it('refuses a taken name with conflict, and a rename onto a taken name', async () => {
    expect((await h.call(h.tokens.bob, 'POST', '/apps', { name: 'valid-app' })).status).toBe(409);
    await h.call(t, 'POST', '/apps', { name: 'other-app' });
    expect((await h.call(t, 'PATCH', '/apps/other-app', { name: 'valid-app' })).status).toBe(409);
    expect((await h.call(t, 'GET', '/apps/other-app')).status).toBe(200);
  });

  it('names the offending field when a body has the wrong shape', async () => {
    const r = await h.call(t, 'POST', '/apps', { name: 42 });
    expect(r.status).toBe(422);
    expect(r.body.message).toContain('body.name');
    const f = await h.call(t, 'PATCH', '/apps/valid-app/formation', { updates: [{ quantity: 1 }] });
    expect(f.status).toBe(422);
    expect(f.body.message).toContain('type');
    const c = await h.call(t, 'PATCH', '/apps/valid-app/config-vars', { PORT_NUMBER: 5 });
    expect(c.status).toBe(422);
    expect(c.body.message).toContain('PORT_NUMBER');
  });

  it('refuses bad config keys and oversize config without creating a release', async () => {
    const before = await releaseCount();
    for (const body of [{ '1BAD': 'x' }, { 'HAS-DASH': 'x' }, { GOOD: 'x', 'BAD KEY': 'y' }, { BIG: 'x'.repeat(65 * 1024) }, {}]) {
      const r = await h.call(t, 'PATCH', '/apps/valid-app/config-vars', body);
      expect(r.status, JSON.stringify(Object.keys(body))).toBe(422);
    }
    expect(await releaseCount()).toBe(before);
    expect((await h.call(t, 'GET', '/apps/valid-app/config-vars')).body).toEqual({});
  });

  it('keeps quantities within 0..100 and applies a batch all or nothing', async () => {
    for (const quantity of [101, -1, '+101', 'lots']) {
      expect((await h.call(t, 'PATCH', '/apps/valid-app/formation', { updates: [{ type: 'web', quantity }] })).status).toBe(422);
    }
    const mixed = await h.call(t, 'PATCH', '/apps/valid-app/formation', { updates: [{ type: 'web', quantity: 3 }, { type: 'clock', quantity: 1 }] });
    expect(mixed.status).toBe(422);
    expect((await h.call(t, 'GET', '/apps/valid-app/formation')).body).toEqual([]);
    expect((await h.call(t, 'PATCH', '/apps/valid-app/formation', { updates: [{ type: 'web', quantity: 0 }] })).status).toBe(200);
  });

  it('validates hostnames and keeps each one on a single app', async () => {
    for (const hostname of ['not a host', 'localhost', '-bad.example.com', 'x.valid-app.berth.test', 'a..b.com']) {
      expect((await h.call(t, 'POST', '/apps/valid-app/domains', { hostname })).status, hostname).toBe(422);
    }
    expect((await h.call(t, 'POST', '/apps/valid-app/domains', { hostname: 'shop.example.org' })).status).toBe(201);
    await h.call(h.tokens.bob, 'POST', '/apps', { name: 'bobs-app' });
    const taken = await h.call(h.tokens.bob, 'POST', '/apps/bobs-app/domains', { hostname: 'SHOP.example.org' });
    expect(taken.status).toBe(422);
    expect(taken.body.id).toBe('invalid_params');
  });

  it('parses SSH keys: ed25519, ecdsa and rsa ≥ 2048 accepted; short rsa, garbage and private keys refused', async () => {
    for (const pub of [keygen('ed25519'), keygen('ecdsa'), keygen('rsa', 2048)]) {
      expect((await h.call(t, 'POST', '/account/keys', { public_key: pub })).status).toBe(201);
    }
    const short = await h.call(t, 'POST', '/account/keys', { public_key: keygen('rsa', 1024) });
    expect(short.status).toBe(422);
    expect(short.body.message).toMatch(/1024 bits/);
    expect((await h.call(t, 'POST', '/account/keys', { public_key: 'ssh-ed25519 AAAAnotbase64' })).status).toBe(422);
    const privateFile = join(keyDir, 'priv');
    execFileSync('ssh-keygen', ['-q', '-t', 'ed25519', '-N', '', '-f', privateFile]);
    expect((await h.call(t, 'POST', '/account/keys', { public_key: readFileSync(privateFile, 'utf8') })).status).toBe(422);
    expect((await h.call(t, 'GET', '/account/keys')).body).toHaveLength(3);
  });

  it('refuses a Range header it cannot read', async () => {
    expect((await h.call(t, 'GET', '/apps', undefined, { range: 'colour ..' })).status).toBe(422);
  });
});

describe('a stored value that does not fit its record', () => {
  it('is a 500 in Heroku\'s error shape that names no key; a list skips it', async () => {
    const app = (await h.call(t, 'POST', '/apps', { name: 'corrupt-app' })).body as { id: string };
    await h.store.put(keys.formation(app.id), '{"web": ');
    const r = await h.call(t, 'GET', '/apps/corrupt-app/formation');
    expect(r.status).toBe(500);
    expect(r.body).toEqual({ id: 'internal_server_error', message: 'Internal server error.' });
    await h.store.put(keys.domain(app.id, 'broken.example.com'), JSON.stringify({ hostname: 'broken.example.com' }));
    const domains = await h.call(t, 'GET', '/apps/corrupt-app/domains');
    expect(domains.status).toBe(200);
    expect(domains.body.map((d: { hostname: string }) => d.hostname)).toEqual(['corrupt-app.berth.test']);
  });
});
