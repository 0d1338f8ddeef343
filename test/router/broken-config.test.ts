import { readdirSync, readFileSync } from 'node:fs';
import type { Server } from 'node:http';
import { join } from 'node:path';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { openStore, type Store } from '../../src/store/index.js';
import { selfSigned } from '../support/certs.js';
import { until } from '../support/until.js';
import { afterReload, call, dyno, startRouter, workers, type SuiteRouter } from './client.js';

/**
 * A certificate nginx could not load must not hold back the config: nginx refuses its whole
 * config over one file it cannot read, so the router leaves such a record out (like any other
 * value nginx.conf cannot hold) and everything else is rendered and served. The bad records here
 * are written straight into the store (the API would refuse them): PEM markers around garbage,
 * and a real certificate with another certificate's key.
 */
let store: Store;
let suite: SuiteRouter;
let dir: string;
let port: number;
const servers: Server[] = [];

const good = selfSigned(['fresh.berth.test']);
const other = selfSigned(['fresh.berth.test']);
const badCert = {
  id: 'c0ffee00-0000-4000-8000-000000000001',
  name: 'broken',
  app_id: 'id-fresh',
  certificate_chain: '-----BEGIN CERTIFICATE-----\nnot base64 at all\n-----END CERTIFICATE-----\n',
  private_key: '-----BEGIN PRIVATE KEY-----\ngarbage\n-----END PRIVATE KEY-----\n',
  // A well-formed record (the router skips malformed ones) whose PEMs nginx cannot load.
  ssl_cert: { cert_domains: ['fresh.berth.test'], starts_at: '2026-01-01T00:00:00Z', expires_at: '2036-01-01T00:00:00Z', issuer: 'x', subject: 'x', 'ca_signed?': false, 'self_signed?': true },
  created_at: '2026-11-24T00:00:00Z',
  updated_at: '2026-11-24T00:00:00Z',
};

beforeAll(async () => {
  store = openStore('memory://');
  await store.put('/berth/app-names/keep', 'id-keep');
  await store.put('/berth/services/keep/keep.web.1@v1', (await dyno('keep.1', servers)).endpoint);
  suite = await startRouter({ store, id: 'broken', upstreams: servers, https: true });
  ({ dir, httpPort: port } = suite);
}, 30_000);
afterAll(async () => {
  await suite?.stop();
  await store?.close();
});

describe('a certificate nginx could not load', () => {
  const https = (host: string, ca: string): Promise<number> => call({ port: suite.httpsPort ?? 0, host, tls: { ca } }).then((r) => r.status, () => 0);

  it('is left out: the app and everything else are rendered and served, without the bad files', async () => {
    await until('keep.berth.test answering', async () => (await call({ port, host: 'keep.berth.test' })).status === 200);
    const before = workers(dir);
    // One txn: a new app, a certificate with garbage in its PEM markers, and one whose key is another's.
    await store.txn({
      compare: [],
      success: [
        { type: 'put', key: '/berth/app-names/fresh', value: 'id-fresh' },
        { type: 'put', key: '/berth/services/fresh/fresh.web.1@v1', value: (await dyno('fresh.1', servers)).endpoint },
        { type: 'put', key: `/berth/certs/id-fresh/${badCert.id}`, value: JSON.stringify(badCert) },
        { type: 'put', key: '/berth/certs/id-fresh/mismatched', value: JSON.stringify({ ...badCert, id: 'mismatched', certificate_chain: good.cert, private_key: other.key }) },
      ],
    });
    await afterReload(dir, before);
    await until('fresh.berth.test answering', async () => (await call({ port, host: 'fresh.berth.test' })).status === 200, 15_000);
    expect(JSON.parse((await call({ port, host: 'fresh.berth.test' })).body)).toMatchObject({ dyno: 'fresh.1' });
    const answers = await Promise.all(Array.from({ length: 50 }, () => call({ port, host: 'keep.berth.test' })));
    expect(answers.map((a) => a.status)).toEqual(Array(50).fill(200));
    const conf = readFileSync(join(dir, 'nginx.conf'), 'utf8');
    expect(conf).not.toContain(badCert.id);
    expect(conf).not.toContain('mismatched');
    expect(readdirSync(join(dir, 'certs'))).toEqual([]);
    // No certificate for the name: the handshake is refused, not answered with a broken one.
    expect(await https('fresh.berth.test', good.cert)).toBe(0);
  }, 60_000);

  it('does not stop a good certificate for the same app from serving', async () => {
    const before = workers(dir);
    await store.put('/berth/certs/id-fresh/good', JSON.stringify({ ...badCert, id: 'good', certificate_chain: good.cert, private_key: good.key }));
    await afterReload(dir, before);
    await until('fresh.berth.test over HTTPS', async () => (await https('fresh.berth.test', good.cert)) === 200, 15_000);
    expect((await call({ port, host: 'keep.berth.test' })).status).toBe(200);
  }, 60_000);
});
