import { execFileSync } from 'node:child_process';
import { mkdtempSync, rmSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { CommanderError } from 'commander';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { createProgram } from '../../src/cli/program.js';
import type { CliContext } from '../../src/cli/context.js';
import { formatError } from '../../src/cli/output.js';
import { startController, type Controller } from '../../src/controller/index.js';
import { checkCertificate } from '../../src/controller/services/x509.js';
import { createLogger } from '../../src/domain/log.js';
import { openStore, type Store } from '../../src/store/index.js';
import { apiHarness, type Harness } from '../controller/harness.js';
import { selfSigned, type TestCert } from '../support/certs.js';
import { freePort } from '../support/ports.js';

let h: Harness;
let appId: string;
let shopCert: TestCert;
const wildcard = selfSigned(['*.shop.example']);

beforeAll(async () => {
  h = await apiHarness();
  appId = (await h.call(h.tokens.alice, 'POST', '/apps', { name: 'shop' })).body.id as string;
  await h.call(h.tokens.alice, 'POST', '/apps/shop/domains', { hostname: 'www.shop.example' });
  shopCert = selfSigned(['shop.berth.test', 'www.shop.example', 'elsewhere.example']);
}, 30_000);
afterAll(async () => {
  await h?.close();
});

const add = (body: unknown): ReturnType<Harness['call']> => h.call(h.tokens.alice, 'POST', '/apps/shop/sni-endpoints', body);

describe('sni-endpoints API', () => {
  it('refuses what the router could not serve, with 422 invalid_params and what to fix', async () => {
    const other = selfSigned(['shop.berth.test']);
    const cases: [unknown, RegExp][] = [
      [{ certificate_chain: shopCert.cert, private_key: other.key }, /does not match the certificate/],
      [{ certificate_chain: 'hello', private_key: shopCert.key }, /no PEM certificate/],
      [{ certificate_chain: shopCert.cert.split('\n').map((l, i) => (i === 2 ? 'QUJD' : l)).join('\n'), private_key: shopCert.key }, /cannot be read/],
      [{ certificate_chain: shopCert.cert, private_key: 'not a key' }, /not a PEM private key/],
      [{ certificate_chain: shopCert.cert }, /private_key/],
      [{ certificate_chain: other.cert, private_key: execFileSync('openssl', ['pkey', '-aes256', '-passout', 'pass:secret'], { input: other.key }).toString() }, /encrypted; remove its passphrase/],
    ];
    for (const [body, message] of cases) {
      const res = await add(body);
      expect(res.status, String(message)).toBe(422);
      expect(res.body).toMatchObject({ id: 'invalid_params', message: expect.stringMatching(message) as string });
    }
    // openssl 3.0 cannot backdate; the same check, 60 days on.
    expect(() => checkCertificate(shopCert.cert, shopCert.key, new Date(Date.now() + 60 * 86_400_000))).toThrow(/expired/);
    expect((await h.call(h.tokens.alice, 'GET', '/apps/shop/sni-endpoints')).body).toEqual([]);
  });

  it("adds a certificate in Heroku's shape, serving the app's hostnames it names, and keeps the key private", async () => {
    const res = await add({ certificate_chain: shopCert.cert, private_key: shopCert.key });
    expect(res.status).toBe(201);
    expect(res.body).toMatchObject({
      id: expect.any(String) as string,
      name: expect.stringMatching(/^[a-z]+-[a-z]+-\d{4}$/) as string,
      certificate_chain: expect.stringContaining('-----BEGIN CERTIFICATE-----') as string,
      app: { id: appId, name: 'shop' },
      domains: ['shop.berth.test', 'www.shop.example'],
      ssl_cert: { cert_domains: ['shop.berth.test', 'www.shop.example', 'elsewhere.example'], issuer: '/CN=shop.berth.test', subject: '/CN=shop.berth.test', 'ca_signed?': false, 'self_signed?': true },
    });
    expect(JSON.stringify(res.body)).not.toContain('PRIVATE KEY');
    expect(Date.parse(res.body.ssl_cert.expires_at as string)).toBeGreaterThan(Date.now() + 29 * 86_400_000);
    const stored = JSON.parse((await h.store.get(`/berth/certs/${appId}/${res.body.id as string}`))?.value ?? '{}') as { private_key: string };
    expect(stored.private_key).toContain('-----BEGIN PRIVATE KEY-----');
    expect((await h.call(h.tokens.alice, 'GET', `/apps/shop/sni-endpoints/${res.body.name as string}`)).body.id).toBe(res.body.id);
    expect((await h.call(h.tokens.bob, 'GET', '/apps/shop/sni-endpoints')).status).toBe(404);
  });

  it('serves each hostname with one certificate: an exact name beats a wildcard; new domains are picked up', async () => {
    const w = await add({ certificate_chain: wildcard.cert, private_key: wildcard.key });
    expect(w.body.domains).toEqual([]);
    await h.call(h.tokens.alice, 'POST', '/apps/shop/domains', { hostname: 'api.shop.example' });
    const list = (await h.call(h.tokens.alice, 'GET', '/apps/shop/sni-endpoints')).body as { name: string; domains: string[]; ssl_cert: { cert_domains: string[] } }[];
    expect(list).toHaveLength(2);
    const byCn = Object.fromEntries(list.map((c) => [c.ssl_cert.cert_domains[0], c.domains]));
    expect(byCn).toEqual({ 'shop.berth.test': ['shop.berth.test', 'www.shop.example'], '*.shop.example': ['api.shop.example'] });
  });

  it("answers heroku certs:add's domain association: checked, and each domain names the certificate serving it", async () => {
    const list = (await h.call(h.tokens.alice, 'GET', '/apps/shop/sni-endpoints')).body as { name: string; ssl_cert: { cert_domains: string[] } }[];
    const wild = list.find((c) => c.ssl_cert.cert_domains[0] === '*.shop.example')?.name ?? '';
    const exact = list.find((c) => c.ssl_cert.cert_domains[0] === 'shop.berth.test')?.name ?? '';
    const ok = await h.call(h.tokens.alice, 'PATCH', '/apps/shop/domains/api.shop.example', { sni_endpoint: wild });
    expect(ok.status).toBe(200);
    expect(ok.body).toMatchObject({ hostname: 'api.shop.example', sni_endpoint: { name: wild } });
    const domains = (await h.call(h.tokens.alice, 'GET', '/apps/shop/domains')).body as { hostname: string; sni_endpoint: { name: string } | null }[];
    expect(Object.fromEntries(domains.map((d) => [d.hostname, d.sni_endpoint?.name ?? null]))).toEqual({ 'shop.berth.test': exact, 'www.shop.example': exact, 'api.shop.example': wild });
    const wrong = await h.call(h.tokens.alice, 'PATCH', '/apps/shop/domains/shop.berth.test', { sni_endpoint: wild });
    expect(wrong.status).toBe(422);
    expect(wrong.body).toMatchObject({ id: 'invalid_params', message: expect.stringMatching(/does not cover shop\.berth\.test/) as string });
    expect((await h.call(h.tokens.alice, 'PATCH', '/apps/shop/domains/www.shop.example', { sni_endpoint: 'no-such-cert' })).status).toBe(404);
    expect((await h.call(h.tokens.bob, 'PATCH', '/apps/shop/domains/www.shop.example', { sni_endpoint: exact })).status).toBe(404);
  });

  it('renews an endpoint in place (PATCH) and removes it', async () => {
    const [first] = (await h.call(h.tokens.alice, 'GET', '/apps/shop/sni-endpoints')).body as { id: string; name: string; updated_at: string }[];
    const renewed = selfSigned(['*.shop.example', 'shop.example']);
    const res = await h.call(h.tokens.alice, 'PATCH', `/apps/shop/sni-endpoints/${first?.id ?? ''}`, { certificate_chain: renewed.cert, private_key: renewed.key });
    expect(res.status).toBe(200);
    expect(res.body).toMatchObject({ id: first?.id, name: first?.name, ssl_cert: { cert_domains: ['*.shop.example', 'shop.example'] } });
    expect((await h.call(h.tokens.alice, 'PATCH', `/apps/shop/sni-endpoints/${first?.id ?? ''}`, { certificate_chain: renewed.cert, private_key: shopCert.key })).status).toBe(422);
    expect((await h.call(h.tokens.alice, 'DELETE', `/apps/shop/sni-endpoints/${first?.name ?? ''}`)).status).toBe(200);
    expect((await h.call(h.tokens.alice, 'GET', '/apps/shop/sni-endpoints')).body).toHaveLength(1);
    expect((await h.call(h.tokens.alice, 'DELETE', `/apps/shop/sni-endpoints/${first?.name ?? ''}`)).status).toBe(404);
  });

  it('destroying the app removes its certificates and routing options', async () => {
    const id = (await h.call(h.tokens.alice, 'POST', '/apps', { name: 'gone' })).body.id as string;
    const c = selfSigned(['gone.berth.test']);
    expect((await h.call(h.tokens.alice, 'POST', '/apps/gone/sni-endpoints', { certificate_chain: c.cert, private_key: c.key })).status).toBe(201);
    expect((await h.call(h.tokens.alice, 'PATCH', '/apps/gone/router', { redirect_https: true })).body).toEqual({ redirect_https: true });
    expect((await h.call(h.tokens.alice, 'DELETE', '/apps/gone')).status).toBe(200);
    expect((await h.store.range(`/berth/certs/${id}/`, { prefix: true })).kvs).toEqual([]);
    expect(await h.store.get(`/berth/app-routing/${id}`)).toBeUndefined();
  });
});

describe('router settings API', () => {
  it('is for admins, validates nginx syntax, and resets with null', async () => {
    expect((await h.call(h.tokens.alice, 'GET', '/berth/router')).status).toBe(403);
    expect((await h.call(h.tokens.alice, 'PATCH', '/berth/router', { body_size: '1m' })).status).toBe(403);
    const defaults = (await h.call(h.tokens.admin, 'GET', '/berth/router')).body as { name: string; value: string; default: boolean }[];
    expect(defaults.map((s) => [s.name, s.value, s.default])).toEqual([
      ['body_size', '100m', true],
      ['connect_timeout', '5s', true],
      ['read_timeout', '30s', true],
      ['worker_connections', '4096', true],
    ]);
    const set = await h.call(h.tokens.admin, 'PATCH', '/berth/router', { body_size: '1M', read_timeout: '1m30s' });
    expect(set.status).toBe(200);
    expect(set.body).toContainEqual(expect.objectContaining({ name: 'body_size', value: '1m', default: false }));
    expect((await h.store.get('/berth/router/read_timeout'))?.value).toBe('1m30s');
    for (const bad of [{ body_size: 'lots' }, { body_size: '1m;' }, { connect_timeout: '0s' }, { connect_timeout: '5 minutes' }, { read_timeout: '2h' }, { worker_connections: '10' }, { worker_connections: '4k' }, { nope: '1' }, {}]) {
      const res = await h.call(h.tokens.admin, 'PATCH', '/berth/router', bad);
      expect(res.status, JSON.stringify(bad)).toBe(422);
      expect(res.body.id).toBe('invalid_params');
    }
    await h.call(h.tokens.admin, 'PATCH', '/berth/router', { body_size: null, read_timeout: null });
    expect(await h.store.get('/berth/router/body_size')).toBeUndefined();
  });

  it("lets an app's team turn on the HTTPS redirect", async () => {
    expect((await h.call(h.tokens.alice, 'GET', '/apps/shop/router')).body).toEqual({ redirect_https: false });
    expect((await h.call(h.tokens.alice, 'PATCH', '/apps/shop/router', { redirect_https: 'maybe' })).status).toBe(422);
    expect((await h.call(h.tokens.alice, 'PATCH', '/apps/shop/router', { body_size: '1m' })).status).toBe(422);
    expect((await h.call(h.tokens.bob, 'PATCH', '/apps/shop/router', { redirect_https: true })).status).toBe(404);
    expect((await h.call(h.tokens.alice, 'PATCH', '/apps/shop/router', { redirect_https: true })).body).toEqual({ redirect_https: true });
    expect(JSON.parse((await h.store.get(`/berth/app-routing/${appId}`))?.value ?? '{}')).toEqual({ redirect_https: true });
  });
});

describe('berth certs and berth router (CLI)', () => {
  let store: Store;
  let controller: Controller;
  let dir: string;
  let env: Record<string, string>;

  beforeAll(async () => {
    dir = mkdtempSync(join(tmpdir(), 'berth-certs-cli-'));
    store = openStore('memory://');
    const port = await freePort();
    controller = await startController({ store, log: createLogger('test', { level: 'silent' }), host: '127.0.0.1', port, settings: { domain: 'berth.test', apiUrl: `http://127.0.0.1:${port}` } });
    const admin = await controller.services.users.create('root@example.com', { admin: true });
    env = { BERTH_API_URL: controller.url, BERTH_API_KEY: admin.token };
    writeFileSync(join(dir, 'shop.crt'), shopCert.cert);
    writeFileSync(join(dir, 'shop.key'), shopCert.key);
    writeFileSync(join(dir, 'wild.crt'), wildcard.cert);
    writeFileSync(join(dir, 'wild.key'), wildcard.key);
  });
  afterAll(async () => {
    await controller?.close();
    await store?.close();
    rmSync(dir, { recursive: true, force: true });
  });

  async function berth(...args: string[]): Promise<{ code: number; out: string; err: string }> {
    let [out, err] = ['', ''];
    const ctx: CliContext = { env, cwd: dir, home: dir, out: (t) => (out += `${t}\n`), err: (t) => (err += `${t}\n`), interactive: false };
    try {
      await createProgram(ctx).parseAsync(['node', 'berth', ...args]);
      return { code: 0, out, err };
    } catch (e) {
      return { code: e instanceof CommanderError ? e.exitCode : 1, out, err: err + formatError(e) };
    }
  }

  it('adds, lists and removes certificates', async () => {
    await berth('apps:create', 'shop');
    expect((await berth('certs', '-a', 'shop')).out).toContain('shop has no SSL certificates.');
    const added = await berth('certs:add', 'shop.crt', 'shop.key', '-a', 'shop');
    expect(added.code).toBe(0);
    expect(added.err).toContain('Adding SSL certificate to shop... done');
    expect(added.out).toMatch(/Common Name\(s\): shop\.berth\.test, www\.shop\.example, elsewhere\.example/);
    expect(added.out).toMatch(/Domain\(s\): +shop\.berth\.test\n/);
    expect(added.out).toContain('SSL certificate is self signed.');
    const bad = await berth('certs:add', 'shop.crt', 'wild.key', '-a', 'shop');
    expect(bad.code).toBe(1);
    expect(bad.err).toMatch(/does not match the certificate.*\(invalid_params\)/);
    expect((await berth('certs:add', 'missing.crt', 'shop.key', '-a', 'shop')).err).toMatch(/Cannot read the certificate missing\.crt/);
    await berth('certs:add', 'wild.crt', 'wild.key', '-a', 'shop');
    const list = await berth('certs', '-a', 'shop');
    expect(list.out).toMatch(/Name +Common Name\(s\) +Expires +Trusted +Type +Domains/);
    expect(list.out).toMatch(/\*\.shop\.example .* False +SNI +\(none yet\)/);
    const json = JSON.parse((await berth('certs', '-a', 'shop', '--json')).out) as { name: string; ssl_cert: { cert_domains: string[] } }[];
    expect(json).toHaveLength(2);
    expect((await berth('certs:remove', '-a', 'shop')).err).toMatch(/has 2 certificates; pass --name/);
    const wild = json.find((c) => c.ssl_cert.cert_domains[0] === '*.shop.example');
    const removed = await berth('certs:remove', '-a', 'shop', '--name', wild?.name ?? '');
    expect(removed.err).toContain(`Removing SSL certificate ${wild?.name ?? ''} from shop... done`);
    expect(JSON.parse((await berth('certs', '-a', 'shop', '--json')).out)).toHaveLength(1);
  });

  it('shows and sets router settings, and app routing by name', async () => {
    expect((await berth('router')).out).toMatch(/=== Router Settings\nbody_size: +100m \(default\)/);
    const set = await berth('router:set', 'body_size=10m', 'read_timeout=60s');
    expect(set.err).toContain('Setting body_size, read_timeout and reloading the routers... done');
    expect(set.out).toMatch(/body_size: +10m\nread_timeout: +60s/);
    expect((await berth('router:set', 'body_size=huge')).err).toMatch(/body_size must be an nginx size/);
    expect((await berth('router:set', 'colour=blue')).err).toMatch(/Unknown router setting colour/);
    expect((await berth('router:set', 'body_size=1m', 'redirect_https=true', '-a', 'shop')).err).toMatch(/separate commands/);
    const json = JSON.parse((await berth('router', '--json')).out) as { name: string; value: string }[];
    expect(json.find((s) => s.name === 'body_size')?.value).toBe('10m');
    expect((await berth('router:set', 'body_size=')).out).toMatch(/body_size: +100m \(default\)/);
    expect((await berth('router:set', 'redirect_https=true', '-a', 'shop')).out).toMatch(/redirect_https: true/);
    expect((await berth('router', '-a', 'shop')).out).toMatch(/=== shop Routing\nredirect_https: true/);
  });
});
