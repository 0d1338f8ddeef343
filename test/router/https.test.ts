import { readdirSync, statSync } from 'node:fs';
import type { Server } from 'node:http';
import { join } from 'node:path';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { apiHarness, type Harness } from '../controller/harness.js';
import { selfSigned } from '../support/certs.js';
import { until } from '../support/until.js';
import { afterReload, call, dyno, type Reply, startRouter, type SuiteRouter } from './client.js';

let h: Harness;
let suite: SuiteRouter;
let dir: string;
let httpPort: number;
let httpsPort: number;
const servers: Server[] = [];
const cert = selfSigned(['shop.berth.test', 'www.shop.example']);

const https = (host: string, ca = cert.cert, path = '/'): Promise<Reply> => call({ port: httpsPort, host, path, tls: { ca } });
const http = (host: string, path = '/', method = 'GET'): Promise<Reply> => call({ port: httpPort, host, path, method });
const refused = (p: Promise<Reply>): Promise<boolean> => p.then(() => false, (err: Error) => /alert|unrecognized name|ECONNRESET|socket hang up/i.test(err.message));

beforeAll(async () => {
  h = await apiHarness();
  await h.call(h.tokens.alice, 'POST', '/apps', { name: 'shop' });
  await h.call(h.tokens.alice, 'POST', '/apps', { name: 'idle' });
  await h.call(h.tokens.alice, 'POST', '/apps/shop/domains', { hostname: 'www.shop.example' });
  await h.call(h.tokens.alice, 'POST', '/apps/shop/domains', { hostname: 'api.other.example' });
  await h.store.put('/berth/services/shop/shop.web.1@v1', (await dyno('web.1', servers)).endpoint);
  suite = await startRouter({ store: h.store, id: 'tls', upstreams: servers, https: true });
  dir = suite.dir;
  httpPort = suite.httpPort;
  httpsPort = suite.httpsPort ?? 0;
}, 30_000);
afterAll(async () => {
  await suite?.stop();
  await h?.close();
});

describe('router HTTPS (real nginx, SNI)', () => {
  it('refuses a TLS handshake for a name no certificate serves', async () => {
    await until('shop.berth.test answering', async () => (await http('shop.berth.test')).status === 200);
    expect(await refused(https('shop.berth.test'))).toBe(true);
  });

  it("serves HTTPS for the app's hostnames once their certificate is added, with X-Forwarded-Proto/Port", async () => {
    const added = await h.call(h.tokens.alice, 'POST', '/apps/shop/sni-endpoints', { certificate_chain: cert.cert, private_key: cert.key });
    expect(added.status).toBe(201);
    await afterReload(dir, async () => (await https('shop.berth.test').catch(() => undefined))?.status === 200);
    // Verified against the certificate as CA, for the name sent as SNI.
    const res = await https('shop.berth.test', cert.cert, '/path?q=1');
    expect(res.cert?.subject.CN).toBe('shop.berth.test');
    const seen = JSON.parse(res.body) as { dyno: string; headers: Record<string, string> };
    expect(seen.dyno).toBe('web.1');
    expect(seen.headers).toMatchObject({ host: 'shop.berth.test', 'x-forwarded-proto': 'https', 'x-forwarded-port': String(httpsPort), 'x-forwarded-for': '127.0.0.1' });
    expect(seen.headers['x-request-id']).toMatch(/^[0-9a-f]{32}$/);
    expect((await https('www.shop.example')).status).toBe(200);
    // Plain HTTP still serves, and says so.
    expect(JSON.parse((await http('shop.berth.test')).body).headers).toMatchObject({ 'x-forwarded-proto': 'http', 'x-forwarded-port': String(httpPort) });
    // Names the certificate does not cover, and other apps, get no certificate.
    expect(await refused(https('api.other.example'))).toBe(true);
    expect(await refused(https('idle.berth.test'))).toBe(true);
  });

  it('keeps private keys owner-only in its certs dir', () => {
    const certDir = join(dir, 'certs');
    expect(statSync(certDir).mode & 0o777).toBe(0o700);
    const files = readdirSync(certDir);
    expect(files.filter((f) => f.endsWith('.key'))).toHaveLength(1);
    for (const f of files) expect(statSync(join(certDir, f)).mode & 0o777).toBe(0o600);
  });

  it('redirects plain HTTP to HTTPS for hosts with a certificate when the app asks', async () => {
    expect((await h.call(h.tokens.alice, 'PATCH', '/apps/shop/router', { redirect_https: true })).status).toBe(200);
    await afterReload(dir, async () => (await http('shop.berth.test')).status === 301);
    expect((await http('shop.berth.test', '/a/b?c=1')).headers.location).toBe(`https://shop.berth.test:${httpsPort}/a/b?c=1`);
    const post = await http('www.shop.example', '/form', 'POST');
    expect(post.status).toBe(308);
    expect(post.headers.location).toBe(`https://www.shop.example:${httpsPort}/form`);
    // No certificate for this host: nothing to redirect to.
    expect((await http('api.other.example')).status).toBe(200);
    await h.call(h.tokens.alice, 'PATCH', '/apps/shop/router', { redirect_https: false });
    await afterReload(dir, async () => (await http('shop.berth.test')).status === 200);
  });

  it('serves a renewed certificate after a graceful reload, and stops HTTPS when it is removed', async () => {
    const renewed = selfSigned(['shop.berth.test', 'www.shop.example'], { rsa: true });
    const [endpoint] = (await h.call(h.tokens.alice, 'GET', '/apps/shop/sni-endpoints')).body as { id: string }[];
    expect((await h.call(h.tokens.alice, 'PATCH', `/apps/shop/sni-endpoints/${endpoint?.id ?? ''}`, { certificate_chain: renewed.cert, private_key: renewed.key })).status).toBe(200);
    await afterReload(dir, async () => (await https('shop.berth.test', renewed.cert).catch(() => undefined))?.status === 200);
    // The old files go once nginx.conf no longer names them.
    await until('two certificate files', () => readdirSync(join(dir, 'certs')).length === 2);
    expect((await h.call(h.tokens.alice, 'DELETE', `/apps/shop/sni-endpoints/${endpoint?.id ?? ''}`)).status).toBe(200);
    await afterReload(dir, () => refused(https('shop.berth.test', renewed.cert)));
    await until('no certificate files', () => readdirSync(join(dir, 'certs')).length === 0);
    expect((await http('shop.berth.test')).status).toBe(200);
  });
});
