import { existsSync, readdirSync, readFileSync } from 'node:fs';
import type { Server } from 'node:http';
import { dirname, join } from 'node:path';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import type { CertRecord } from '../../src/domain/certs.js';
import { keys } from '../../src/domain/keys.js';
import { fileUnder, renderChecks } from '../../src/router/conf-values.js';
import { certFiles } from '../../src/router/vhosts.js';
import { openStore, type Store } from '../../src/store/index.js';
import { selfSigned } from '../support/certs.js';
import { captureLog } from '../support/log.js';
import { until } from '../support/until.js';
import { afterReload, call, dyno, startRouter, type SuiteRouter } from './client.js';

/**
 * Records written straight into the store, around the API (another machine, a hand edit, an older
 * version): values that would break out of their nginx.conf token are left out one by one, with a
 * log line, and the real nginx still starts and reloads with everything else.
 */
let store: Store;
let suite: SuiteRouter;
const servers: Server[] = [];
const captured = captureLog('warn');
const cert = selfSigned(['shop.berth.test', 'www.shop.example']);
const INJECTED_HOST = 'evil.com; } server { listen 1; location / { return 200; }';
const conf = (): string => readFileSync(join(suite.dir, 'nginx.conf'), 'utf8');
let attacker = '';

function certRecord(id: string, appId: string): CertRecord {
  const now = new Date().toISOString();
  return {
    id,
    name: id,
    app_id: appId,
    certificate_chain: cert.cert,
    private_key: cert.key,
    ssl_cert: { cert_domains: ['shop.berth.test', 'www.shop.example'], starts_at: now, expires_at: new Date(Date.now() + 86_400_000).toISOString(), issuer: 'CN=shop.berth.test', subject: 'CN=shop.berth.test', 'ca_signed?': false, 'self_signed?': true },
    created_at: now,
    updated_at: now,
  };
}

beforeAll(async () => {
  store = openStore('memory://');
  const put = (key: string, value: string): Promise<unknown> => store.put(key, value);
  // One good app with a custom domain and a certificate...
  await put('/berth/app-names/shop', 'id-shop');
  await put('/berth/domains/www.shop.example', 'id-shop');
  await put('/berth/certs/id-shop/cert-good', JSON.stringify(certRecord('cert-good', 'id-shop')));
  await put(keys.service('shop', 'shop.web.1@v1'), (await dyno('web.1', servers)).endpoint);
  // ...and hostile records beside it, in keys and in values.
  await put(`/berth/domains/${INJECTED_HOST}`, 'id-shop');
  await put('/berth/domains/$host.example', 'id-shop');
  await put('/berth/domains/quote"d.example', 'id-shop');
  await put('/berth/domains/good.example', 'id-shop"; return 200; #');
  await put('/berth/app-names/evil\nname', 'id-evil');
  await put('/berth/app-names/spaced name', 'id-spaced');
  await put('/berth/app-names/ok-app', 'id-ok"; return 200; #');
  await put('/berth/router/body_size', '10m; return 200');
  await put('/berth/router/read_timeout', '30s"');
  await put('/berth/certs/id-shop/traversal', JSON.stringify(certRecord('../../../evil-cert', 'id-shop')));
  await put('/berth/certs/id-shop/bad-app', JSON.stringify(certRecord('cert-bad-app', 'id-shop" x')));
  // An endpoint filed under an app "name" that would start a second line of the control protocol.
  attacker = (await dyno('attacker', servers)).endpoint;
  await put(`/berth/services/zzz\nshop/shop.web.1@v1`, attacker);
  suite = await startRouter({ store, id: 'hostile', upstreams: servers, https: true, log: captured.log });
  await until('shop served', async () => (await call({ port: suite.httpPort, host: 'shop.berth.test' })).status === 200);
}, 30_000);
afterAll(async () => {
  await suite?.stop();
  await store?.close();
});

describe('hostile store records and nginx.conf', () => {
  it('renders only the safe values: the injected hostname, app names, ids and settings stay out, nginx runs', () => {
    const text = conf();
    expect(text).toContain('server_name shop.berth.test www.shop.example;');
    for (const bad of ['evil.com', 'listen 1;', 'return 200;', '$host.example', 'quote"d', 'good.example', 'evil\nname', 'spaced name', 'id-evil', 'id-ok', 'ok-app', '10m; return', '30s"', 'evil-cert', 'cert-bad-app']) {
      expect(text, bad).not.toContain(bad);
    }
    // The settings fell back to their defaults; the good certificate serves.
    expect(text).toContain('client_max_body_size 100m;');
    expect(text).toMatch(/ssl_certificate "[^"]+\/certs\/cert-good-[0-9a-f]{16}\.crt";/);
  });

  it('serves the good vhosts over HTTP and HTTPS, and nothing for the refused ones', async () => {
    expect((await call({ port: suite.httpPort, host: 'www.shop.example' })).status).toBe(200);
    expect((await call({ port: suite.httpsPort ?? 0, host: 'shop.berth.test', tls: { ca: cert.cert } })).status).toBe(200);
    expect((await call({ port: suite.httpPort, host: 'ok-app.berth.test' })).status).toBe(404);
    expect((await call({ port: suite.httpPort, host: 'good.example' })).status).toBe(404);
  });

  it('logs each value it left out', () => {
    const refused = captured.lines.filter((l) => l.msg.startsWith('left out of nginx.conf'));
    const values = refused.map((l) => String(l.value));
    expect(values).toContain(INJECTED_HOST);
    expect(values).toContain('$host.example');
    expect(values).toContain('good.example');
    expect(values.some((v) => v.startsWith('evil\nname'))).toBe(true);
    expect(values.some((v) => v.startsWith('ok-app'))).toBe(true);
    expect(values).toContain('10m; return 200');
  });

  it('writes certificate files only inside its certs dir, named from safe ids', () => {
    const certDir = join(suite.dir, 'certs');
    expect(readdirSync(certDir).sort()).toEqual(expect.arrayContaining([expect.stringMatching(/^cert-good-[0-9a-f]{16}\.crt$/), expect.stringMatching(/^cert-good-[0-9a-f]{16}\.key$/)]));
    expect(readdirSync(certDir)).toHaveLength(2);
    for (const up of [dirname(suite.dir), dirname(dirname(suite.dir)), suite.dir]) expect(readdirSync(up).filter((f) => f.includes('evil-cert'))).toEqual([]);
    expect(certFiles(certDir, certRecord('../../../evil-cert', 'id-shop'))).toBeUndefined();
    expect(fileUnder(certDir, '../x.crt')).toBeUndefined();
    expect(fileUnder(certDir, 'a/b.crt')).toBeUndefined();
    expect(fileUnder(certDir, 'cert-1.crt')).toBe(join(certDir, 'cert-1.crt'));
  });

  it("keeps another app's endpoints out of the control protocol (no app name with a newline)", async () => {
    for (let i = 0; i < 10; i++) expect(JSON.parse((await call({ port: suite.httpPort, host: 'shop.berth.test' })).body).dyno).toBe('web.1');
    expect(attacker).not.toBe('');
  });

  it('reloads with a hostile hostname added later, serving the good one added with it', async () => {
    await store.put(`/berth/domains/later.example;} server{listen ${suite.httpPort + 1}`, 'id-shop');
    await store.put('/berth/domains/new.shop.example', 'id-shop');
    await afterReload(suite.dir, async () => (await call({ port: suite.httpPort, host: 'new.shop.example' })).status === 200);
    expect(conf()).not.toContain('later.example');
    expect(conf()).toContain('server_name shop.berth.test new.shop.example www.shop.example;');
  });

  it('refuses to render a value that slipped past the plan (the template check throws)', () => {
    expect(() => renderChecks.host(INJECTED_HOST)).toThrow(/refusing to render hostname/);
    expect(() => renderChecks.name('a\nb')).toThrow();
    expect(() => renderChecks.id('x"')).toThrow();
    expect(() => renderChecks.path('/tmp/a b')).toThrow();
    expect(() => renderChecks.path('/tmp/../etc/x')).toThrow();
    expect(() => renderChecks.setting('1m;')).toThrow();
    expect(renderChecks.host('*.shop.example')).toBe('*.shop.example');
    expect(existsSync(suite.dir)).toBe(true);
  });
});
