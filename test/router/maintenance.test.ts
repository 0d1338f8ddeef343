import { readFileSync } from 'node:fs';
import type { Server } from 'node:http';
import { join } from 'node:path';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { keys } from '../../src/domain/keys.js';
import { apiHarness, type Harness } from '../controller/harness.js';
import { selfSigned } from '../support/certs.js';
import { CountingStore } from '../support/counting-store.js';
import { routersAt } from '../support/router.js';
import { until } from '../support/until.js';
import { afterReload, call, dyno, startRouter, workers, type Reply, type SuiteRouter } from './client.js';

/**
 * Maintenance mode through the API (as `heroku maintenance:on` calls it) in front of real nginx:
 * every hostname of the app, over HTTP and HTTPS, answers Heroku's 503 page with an H80 router
 * line, while other apps are served; the toggle reloads nothing and reads nothing.
 */
let h: Harness;
let counted: CountingStore;
let suite: SuiteRouter;
let httpPort: number;
let httpsPort: number;
const servers: Server[] = [];
const ids: Record<string, string> = {};
const lines: { app: string; message: string }[] = [];
const shopCert = selfSigned(['shop.berth.test', 'www.shop.example']);
const secureCert = selfSigned(['secure.berth.test']);

const http = (host: string, path = '/'): Promise<Reply> => call({ port: httpPort, host, path });
const https = (host: string, ca: string, path = '/'): Promise<Reply> => call({ port: httpsPort, host, path, tls: { ca } });
const conf = (): string => readFileSync(join(suite.dir, 'nginx.conf'), 'utf8');

/** Every way to reach the app, as [label, request]. */
const shopHosts = (): [string, () => Promise<Reply>][] => [
  ['http shop.berth.test', () => http('shop.berth.test', '/x?y=1')],
  ['http www.shop.example', () => http('www.shop.example')],
  ['https shop.berth.test', () => https('shop.berth.test', shopCert.cert)],
  ['https www.shop.example', () => https('www.shop.example', shopCert.cert)],
];

/** PATCH /apps/:app {maintenance}, then the revision it was written at (the app record's). */
async function maintenance(app: string, on: boolean): Promise<number> {
  const res = await h.call(h.tokens.alice, 'PATCH', `/apps/${app}`, { maintenance: on });
  expect(res.status).toBe(200);
  expect(res.body.maintenance).toBe(on);
  return (await h.store.get(keys.app(ids[app] ?? '')))?.modRevision ?? 0;
}

beforeAll(async () => {
  h = await apiHarness();
  for (const name of ['shop', 'secure', 'other']) ids[name] = (await h.call(h.tokens.alice, 'POST', '/apps', { name })).body.id as string;
  await h.call(h.tokens.alice, 'POST', '/apps/shop/domains', { hostname: 'www.shop.example' });
  expect((await h.call(h.tokens.alice, 'POST', '/apps/shop/sni-endpoints', { certificate_chain: shopCert.cert, private_key: shopCert.key })).status).toBe(201);
  expect((await h.call(h.tokens.alice, 'POST', '/apps/secure/sni-endpoints', { certificate_chain: secureCert.cert, private_key: secureCert.key })).status).toBe(201);
  // An app whose plain HTTP is redirected: maintenance must win over the redirect.
  expect((await h.call(h.tokens.alice, 'PATCH', '/apps/secure/router', { redirect_https: true })).status).toBe(200);
  for (const app of ['shop', 'secure', 'other']) await h.store.put(keys.service(app, `${app}.web.1@v1`), (await dyno(`${app}-web.1`, servers)).endpoint);
  counted = new CountingStore(h.store);
  suite = await startRouter({ store: counted, id: 'maint', upstreams: servers, https: true, appLog: (app, _source, _dyno, message) => lines.push({ app, message }) });
  httpPort = suite.httpPort;
  httpsPort = suite.httpsPort ?? 0;
  await until('shop served over HTTP and HTTPS', async () => (await http('shop.berth.test')).status === 200 && (await https('shop.berth.test', shopCert.cert).catch(() => undefined))?.status === 200);
  await afterReload(suite.dir, () => true);
}, 30_000);
afterAll(async () => {
  await suite?.stop();
  await h?.close();
});

describe('maintenance mode (real nginx)', () => {
  it('answers every hostname of the app, HTTP and HTTPS, with the 503 maintenance page, without a reload or a store read', async () => {
    const before = { workers: workers(suite.dir), conf: conf(), reads: counted.calls.range + counted.calls.get + counted.readingTxns };
    await routersAt(h.store, await maintenance('shop', true), { id: 'maint' });
    for (const [label, request] of shopHosts()) {
      const res = await request();
      expect(res.status, label).toBe(503);
      expect(res.body, label).toContain('Offline for maintenance');
      expect(res.headers['content-type'], label).toMatch(/^text\/html/);
      expect(res.headers['retry-after'], label).toBe('60');
    }
    // Other apps are served as before.
    expect((await http('other.berth.test')).status).toBe(200);
    expect((await https('secure.berth.test', secureCert.cert)).status).toBe(200);
    // The toggle went through the shared dict: same workers, same nginx.conf, nothing read.
    expect(workers(suite.dir)).toEqual(before.workers);
    expect(conf()).toBe(before.conf);
    expect(counted.calls.range + counted.calls.get + counted.readingTxns - before.reads).toBe(0);
  });

  it('wins over the HTTPS redirect: plain HTTP gets the page, not a 301', async () => {
    expect((await http('secure.berth.test')).status).toBe(301);
    await routersAt(h.store, await maintenance('secure', true), { id: 'maint' });
    const plain = await http('secure.berth.test');
    expect(plain.status).toBe(503);
    expect(plain.body).toContain('Offline for maintenance');
    expect(plain.headers.location).toBeUndefined();
    expect((await https('secure.berth.test', secureCert.cert)).status).toBe(503);
  });

  it("logs Heroku's H80 router line for each request answered with the page", async () => {
    const h80 = (): string[] => lines.filter((l) => l.app === ids.shop && l.message.includes('path="/x?y=1"')).map((l) => l.message);
    await until('the H80 line', () => h80().length >= 1);
    expect(h80()[0]).toMatch(/^at=info code=H80 desc="Maintenance mode" method=GET path="\/x\?y=1" host=shop\.berth\.test request_id=[0-9a-f]{32} fwd="127\.0\.0\.1" dyno= connect= service= status=503 bytes=\d+ protocol=http$/);
    // The redirected app's plain HTTP answer (nginx's own `return`, no Lua) is logged the same way.
    await until('H80 for the redirected app over plain HTTP', () => lines.some((l) => l.app === ids.secure && /^at=info code=H80 desc="Maintenance mode" .* status=503 bytes=\d+ protocol=http$/.test(l.message)));
  });

  it('maintenance:off serves the very next request once the router has applied it, within moments', async () => {
    const workersBefore = workers(suite.dir);
    const started = Date.now();
    const off = await maintenance('shop', false);
    // Polled without a pause: how long users see the page after the toggle.
    await until('shop served again', async () => (await http('shop.berth.test')).status === 200, { timeoutMs: 5000, intervalMs: 5 });
    const restoredMs = Date.now() - started;
    expect(restoredMs).toBeLessThan(1000);
    await routersAt(h.store, off, { id: 'maint' });
    // Once the router reports the toggle applied, every hostname serves at once: no retry.
    for (const [label, request] of shopHosts()) expect((await request()).status, label).toBe(200);
    expect(workers(suite.dir)).toEqual(workersBefore);
    await routersAt(h.store, await maintenance('secure', false), { id: 'maint' });
    expect((await http('secure.berth.test')).status).toBe(301);
    expect((await https('secure.berth.test', secureCert.cert)).status).toBe(200);
  });

  it('keeps the flag as a key the router watches, gone with maintenance:off, a rename and apps:destroy', async () => {
    expect(await h.store.get(keys.maintenance(ids.shop ?? ''))).toBeUndefined();
    await maintenance('shop', true);
    expect(await h.store.get(keys.maintenance(ids.shop ?? ''))).toBeDefined();
    // A rename keeps it (the key is the app id) and the page follows the new name.
    expect((await h.call(h.tokens.alice, 'PATCH', '/apps/shop', { name: 'shop2' })).status).toBe(200);
    await until('shop2 in maintenance', async () => (await http('shop2.berth.test').catch(() => undefined))?.status === 503, 10_000);
    expect((await h.call(h.tokens.alice, 'DELETE', '/apps/shop2')).status).toBe(200);
    expect(await h.store.get(keys.maintenance(ids.shop ?? ''))).toBeUndefined();
  });
});
