import { readFileSync } from 'node:fs';
import type { Server } from 'node:http';
import { join } from 'node:path';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { openStore, type Store } from '../../src/store/index.js';
import { routersAt } from '../support/router.js';
import { until } from '../support/until.js';
import { afterReload, call, dyno, startRouter, type SuiteRouter } from './client.js';

/**
 * A change nginx refuses must not take the router down: the templater checks the staged config
 * with `nginx -t` and keeps the old one, which goes on serving every app it served, until a later
 * change renders a config nginx accepts. The bad change here is a certificate written straight
 * into the store (the API would refuse it), with PEM markers around garbage.
 */
let store: Store;
let suite: SuiteRouter;
let dir: string;
let port: number;
const servers: Server[] = [];

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

describe('a change nginx refuses', () => {
  it('keeps the old config serving, and recovers with the next good change', async () => {
    await until('keep.berth.test answering', async () => (await call({ port, host: 'keep.berth.test' })).status === 200);
    const before = readFileSync(join(dir, 'nginx.conf'), 'utf8');
    // One txn: a new app and a certificate for it that nginx cannot load.
    await store.txn({
      compare: [],
      success: [
        { type: 'put', key: '/berth/app-names/fresh', value: 'id-fresh' },
        { type: 'put', key: '/berth/services/fresh/fresh.web.1@v1', value: (await dyno('fresh.1', servers)).endpoint },
        { type: 'put', key: `/berth/certs/id-fresh/${badCert.id}`, value: JSON.stringify(badCert) },
      ],
    });
    // The router applies the endpoints (no reload needed for them) and reports the revision.
    const revision = await store.currentRevision();
    await routersAt(store, revision, { id: 'broken' });
    expect(readFileSync(join(dir, 'nginx.conf'), 'utf8')).toBe(before);
    // The running nginx never saw the broken config: the old apps answer, a steady stream of them.
    const answers = await Promise.all(Array.from({ length: 50 }, () => call({ port, host: 'keep.berth.test' })));
    expect(answers.map((a) => a.status)).toEqual(Array(50).fill(200));
    expect((await call({ port, host: 'fresh.berth.test' })).status).toBe(404);

    // Fixing it (the bad certificate removed) renders a config nginx accepts, with the new app in it.
    await store.delete(`/berth/certs/id-fresh/${badCert.id}`);
    await afterReload(dir, async () => (await call({ port, host: 'fresh.berth.test' })).status === 200, 15_000);
    expect(JSON.parse((await call({ port, host: 'fresh.berth.test' })).body)).toMatchObject({ dyno: 'fresh.1' });
    expect((await call({ port, host: 'keep.berth.test' })).status).toBe(200);
  }, 60_000);
});
