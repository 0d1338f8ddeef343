import { execFileSync } from 'node:child_process';
import { createServer, type Server } from 'node:http';
import { readFileSync, statSync } from 'node:fs';
import { join } from 'node:path';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { openStore, type Store } from '../../src/store/index.js';
import { freePort } from '../support/ports.js';
import { call, routersAt, type Reply } from '../support/router.js';
import { until } from '../support/until.js';
import { afterReload, startRouter, workers, type SuiteRouter } from './client.js';

let store: Store;
let suite: SuiteRouter;
let dir: string;
let port: number;
const upstreams: Server[] = [];
const seenIds: string[] = [];

/** A dyno stand-in: answers with its name and what the router told it. */
async function dyno(name: string): Promise<string> {
  const p = await freePort();
  const srv = createServer((req, res) => {
    seenIds.push(String(req.headers['x-request-id']));
    res.end(`${name} ${req.headers['x-forwarded-for']} ${req.headers.host}`);
  });
  await new Promise<void>((r) => srv.listen(p, '127.0.0.1', r));
  upstreams.push(srv);
  return `127.0.0.1:${p}`;
}

const get = (host: string, path = '/', headers: Record<string, string> = {}): Promise<Reply> => call({ port, host, path, headers });

const workerPids = (): string => execFileSync('pgrep', ['-P', readFileSync(join(dir, 'nginx.pid'), 'utf8').trim()]).toString().trim();

beforeAll(async () => {
  store = openStore('memory://');
  await store.put('/berth/app-names/shop', 'id-shop');
  await store.put('/berth/app-names/idle', 'id-idle');
  await store.put('/berth/domains/www.shop.example', 'id-shop');
  suite = await startRouter({ store, id: 'r1', upstreams });
  ({ dir, httpPort: port } = suite);
}, 30_000);
afterAll(async () => {
  await suite?.stop();
  await store?.close();
});

describe('router (real nginx)', () => {
  it('answers /health, 404s unknown hosts and 503s an app with no web dynos', async () => {
    expect(await get('anything')).toMatchObject({ status: 404 });
    expect((await get('nope.berth.test')).body).toContain('No such app');
    expect((await get('x', '/health')).body).toBe('ok\n');
    const idle = await get('idle.berth.test');
    expect(idle.status).toBe(503);
    expect(idle.body).toContain('Application not running');
  });

  it('routes by host to published endpoints, spreading load, without reloading nginx', async () => {
    const workers = workerPids();
    const a = await dyno('web.1');
    const b = await dyno('web.2');
    const put = await store.put('/berth/services/shop/shop.web.1@v2', a);
    await store.put('/berth/services/shop/shop.web.2@v2', b);
    await until('shop.berth.test answering', async () => (await get('shop.berth.test')).status === 200);
    const bodies = new Set<string>();
    for (let i = 0; i < 30; i++) bodies.add((await get('shop.berth.test')).body.split(' ')[0] ?? '');
    expect([...bodies].sort()).toEqual(['web.1', 'web.2']);
    expect((await get('www.shop.example')).body).toMatch(/^web\.\d 127\.0\.0\.1 www\.shop\.example$/);
    // Endpoint changes never reload nginx: the same workers serve.
    expect(workerPids()).toBe(workers);
    // The router reports having applied the change.
    await routersAt(store, put.revision, { id: 'r1' });
  });

  it('passes X-Request-Id through, or makes one', async () => {
    seenIds.length = 0;
    const given = await get('shop.berth.test', '/', { 'x-request-id': 'req-123' });
    expect(given.headers['x-request-id']).toBe('req-123');
    await get('shop.berth.test');
    expect(seenIds[0]).toBe('req-123');
    expect(seenIds[1]).toMatch(/^[0-9a-f]{32}$/);
  });

  it('retries an idempotent request on another endpoint when one is down, and drops removed ones', async () => {
    const dead = `127.0.0.1:${await freePort()}`;
    await store.put('/berth/services/shop/shop.web.3@v2', dead);
    await new Promise((r) => setTimeout(r, 100));
    for (let i = 0; i < 20; i++) expect((await get('shop.berth.test')).status).toBe(200);
    await store.delete('/berth/services/shop/', { prefix: true });
    await until('503 with no endpoints', async () => (await get('shop.berth.test')).status === 503);
  });

  it('refuses endpoint changes from anyone without the router\'s secret (dynos share the network)', async () => {
    const conf = readFileSync(join(dir, 'nginx.conf'), 'utf8');
    const controlPort = /listen 127\.0\.0\.1:(\d+);/.exec(conf)?.[1];
    const res = await fetch(`http://127.0.0.1:${controlPort}/endpoints`, { method: 'POST', body: 'shop 127.0.0.1:1\n' });
    expect(res.status).toBe(403);
    expect(statSync(join(dir, 'nginx.conf')).mode & 0o777).toBe(0o600);
  });

  it('writes nothing to the store while nothing changes (its own reports do not feed back)', async () => {
    await new Promise((r) => setTimeout(r, 200));
    const before = await store.currentRevision();
    await new Promise((r) => setTimeout(r, 600));
    expect(await store.currentRevision()).toBe(before);
  });

  it('starts nginx again if it dies, and routes as before', async () => {
    const a = await dyno('web.9');
    await store.put('/berth/services/shop/shop.web.9@v3', a);
    await until('shop.berth.test answering', async () => (await get('shop.berth.test')).status === 200);
    const oldMaster = readFileSync(join(dir, 'nginx.pid'), 'utf8').trim();
    process.kill(Number(oldMaster), 'SIGKILL');
    await until('a new nginx master, routing', async () => {
      const now = readFileSync(join(dir, 'nginx.pid'), 'utf8').trim();
      return now !== oldMaster && (await get('shop.berth.test').catch(() => ({ status: 0 }))).status === 200;
    }, 10_000);
    expect((await get('shop.berth.test')).body.split(' ')[0]).toBe('web.9');
  });

  it('reloads gracefully for a new app, and serves it', async () => {
    const c = await dyno('new.1');
    const before = workers(dir);
    await store.put('/berth/app-names/fresh', 'id-fresh');
    await store.put('/berth/services/fresh/fresh.web.1@v1', c);
    await until('fresh.berth.test answering', async () => (await get('fresh.berth.test')).status === 200, 10_000);
    // For a few ms after a graceful reload the old worker still accepts, with the old config.
    await afterReload(dir, before);
    expect((await get('fresh.berth.test')).body.split(' ')[0]).toBe('new.1');
  });
});
