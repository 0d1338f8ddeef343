import { mkdtempSync, rmSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import type { FastifyInstance } from 'fastify';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { FakeRuntime } from '../../src/agent/index.js';
import { buildApi, createServices, type Services } from '../../src/controller/index.js';
import type { UserRecord } from '../../src/controller/services/types.js';
import { createOneOffDynos, type OneOffDynos } from '../../src/controller/one-off/index.js';
import { keys } from '../../src/domain/keys.js';
import { createLogger } from '../../src/domain/log.js';
import { LoopbackNetwork } from '../../src/network/loopback.js';
import { openStore, type Store, type TxnRequest } from '../../src/store/index.js';
import { until } from '../support/until.js';

/**
 * A run whose record could not be deleted when it ended used to keep its run.max slot under the
 * node's lease until a restart; after run.max such failures every `berth run` was refused.
 */

/** The memory store, with the deletes of ended runs failing while `failing` > 0 (one per call). */
let failing = 0;
const real = openStore('memory://');
const isRunDelete = (r: TxnRequest): boolean => r.success.length === 2 && r.success.every((op) => op.type === 'delete') && r.compare[0]?.target === 'value';
const store: Store = new Proxy(real, {
  get(target, prop, receiver) {
    if (prop === 'txn') {
      return async (r: TxnRequest) => {
        if (failing > 0 && isRunDelete(r)) {
          failing--;
          throw new Error('etcdserver: request timed out');
        }
        return target.txn(r);
      };
    }
    const v = Reflect.get(target, prop, receiver) as unknown;
    return typeof v === 'function' ? (v as (...a: unknown[]) => unknown).bind(target) : v;
  },
});

let dir: string;
let services: Services;
let api: FastifyInstance;
let oneOff: OneOffDynos;
let token: string;
let owner: UserRecord;
const runtime = new FakeRuntime();

async function run(appName: string): Promise<number> {
  const res = await api.inject({
    method: 'POST',
    url: `/apps/${appName}/dynos`,
    headers: { accept: 'application/vnd.heroku+json; version=3', authorization: `Bearer ${token}`, 'content-type': 'application/json' },
    payload: JSON.stringify({ command: 'hang', attach: false }),
  });
  return res.statusCode;
}

async function app(name: string): Promise<string> {
  const created = await services.apps.create(owner, name);
  await services.releases.deploy(owner, await services.apps.resolve(owner, name), { id: `slug-${name}`, process_types: {}, commit: null });
  await services.apps.resolve(owner, name);
  await store.put(keys.appLimits(created.id), JSON.stringify({ 'run.max': '1' }));
  return created.id;
}

const held = async (appId: string): Promise<number> => (await store.range(keys.runSlots(appId), { prefix: true })).kvs.length + (await store.range(keys.runs(appId), { prefix: true })).kvs.length;

beforeAll(async () => {
  dir = mkdtempSync(join(tmpdir(), 'berth-one-off-sweep-'));
  const log = createLogger('test', { level: 'silent' });
  services = createServices(store, log, { domain: 'berth.test', apiUrl: 'http://api.berth.test:5000' });
  oneOff = createOneOffDynos({ services, dataDir: dir, node: 'node-1', runtime, network: new LoopbackNetwork(), slugPath: async (id) => `/nonexistent/${id}.tgz`, sweepMs: 500 });
  api = buildApi(services, log, [(a) => oneOff.routes(a)]);
  ({ user: owner, token } = await services.users.create('owner@example.com'));
  await oneOff.start();
});
afterAll(async () => {
  await oneOff.close();
  await api.close();
  await services.close();
  await real.close();
  rmSync(dir, { recursive: true, force: true });
});

describe("a run's slot after its record could not be deleted", () => {
  it('is freed by trying the delete again', async () => {
    const id = await app('retried');
    expect(await run('retried')).toBe(201);
    await until('running', () => runtime.running().some((d) => d.spec.appId === id) || undefined);
    failing = 2;
    runtime.crash(runtime.running().find((d) => d.spec.appId === id)?.id ?? '', 0);
    await until('record and slot gone', async () => ((await held(id)) === 0 ? true : undefined), 5000);
    expect(failing).toBe(0);
    expect(await run('retried')).toBe(201);
  });

  it('is swept by the runner when every try of the delete failed', async () => {
    const id = await app('swept');
    expect(await run('swept')).toBe(201);
    await until('running', () => runtime.running().some((d) => d.spec.appId === id) || undefined);
    failing = 1000;
    runtime.crash(runtime.running().find((d) => d.spec.appId === id)?.id ?? '', 0);
    await until('the tries given up', () => (failing <= 995 ? true : undefined), 10_000);
    await until('record and slot swept', async () => ((await held(id)) === 0 ? true : undefined), 10_000);
    failing = 0;
    expect(await run('swept')).toBe(201);
  }, 30_000);
});
