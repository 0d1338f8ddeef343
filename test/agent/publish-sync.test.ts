import { createServer, type Server } from 'node:http';
import { afterEach, describe, expect, it } from 'vitest';
import { HealthCheckSettings } from '../../src/controller/services/healthchecks.js';
import { keys } from '../../src/domain/keys.js';
import type { Store, TxnRequest } from '../../src/store/index.js';
import { until } from '../support/until.js';
import { Cluster } from '../control-loops/harness.js';

/**
 * A readiness change whose endpoint write fails is made again by the agent's timer pass, and a
 * pass that finds the store in sync writes nothing. The store is the memory store behind a
 * wrapper that can fail the next endpoint write of one kind, as an etcd timing out would.
 */

let cluster: Cluster;
let app: Server | undefined;
afterEach(async () => {
  await cluster?.close();
  await new Promise((r) => (app ? app.close(r) : r(undefined)));
  app = undefined;
});

const RECONCILE_MS = 300;

interface Flaky {
  store: Store;
  /** Fails the next txn that puts (or deletes) an endpoint, once. */
  failNext(op: 'put' | 'delete'): void;
  failed: number;
  /** Txns that wrote or deleted an endpoint, failed ones included. */
  endpointWrites: number;
}

function flaky(inner: Store): Flaky {
  const f: Flaky = { store: inner, failNext: (op) => void (armed = op), failed: 0, endpointWrites: 0 };
  let armed: 'put' | 'delete' | undefined;
  const touches = (req: TxnRequest): 'put' | 'delete' | undefined => req.success.find((op) => op.key.startsWith(keys.allServices()) && op.type !== 'range')?.type as 'put' | 'delete' | undefined;
  f.store = new Proxy(inner, {
    get(target, prop) {
      if (prop === 'txn') {
        return async (req: TxnRequest) => {
          const op = touches(req);
          if (op) f.endpointWrites++;
          if (op && op === armed) {
            armed = undefined;
            f.failed++;
            throw new Error('etcdserver: request timed out');
          }
          return target.txn(req);
        };
      }
      const v: unknown = Reflect.get(target, prop, target);
      return typeof v === 'function' ? (v as (...a: unknown[]) => unknown).bind(target) : v;
    },
  });
  return f;
}

async function serve(unitPrefix: string, answers: Record<string, number>): Promise<void> {
  const port = await until(`${unitPrefix} attached`, () => {
    const e = cluster.timeline.find((t) => t.what.startsWith(`m1 attach ${unitPrefix}`));
    return e ? Number(e.what.split(':').pop()) : undefined;
  });
  app = createServer((req, res) => res.writeHead(answers[req.url ?? ''] ?? 404, { connection: 'close' }).end());
  await new Promise<void>((r) => app?.listen(port, '127.0.0.1', r));
}

const published = async (name: string): Promise<number> => (await cluster.endpoints(name)).size;

describe('endpoint writes that fail', () => {
  it('a dyno ready again is published by the next timer pass though that write failed; in sync, a pass writes nothing', async () => {
    cluster = await Cluster.start();
    const store = flaky(cluster.store);
    await cluster.agent('m1', { agent: { store: store.store, reconcileMs: RECONCILE_MS } });
    await cluster.scheduler('s1');
    await cluster.app('blip', { web: 'hang' });
    const access = await cluster.apps.resolve(cluster.owner, 'blip');
    await new HealthCheckSettings(cluster.store, cluster.apps).set(cluster.owner, access, 'web', { type: 'readiness', path: '/ready', attempts: 1, wait: 1, timeout: 1 });
    await cluster.scale('blip', { web: 1 });
    const answers = { '/ready': 200 };
    await serve('blip.web.1', answers);
    await until('published', async () => ((await published('blip')) === 1 ? true : undefined));

    // In sync: passes every 300 ms, not one endpoint write among them.
    const before = store.endpointWrites;
    await new Promise((r) => setTimeout(r, RECONCILE_MS * 5));
    expect(store.endpointWrites).toBe(before);

    answers['/ready'] = 503;
    await until('unpublished', async () => ((await published('blip')) === 0 ? true : undefined), 5000);
    // The one write a readiness change makes fails: only a pass can publish it again.
    store.failNext('put');
    answers['/ready'] = 200;
    await until('the publish failed', () => store.failed === 1, 5000);
    await until('published by a pass', async () => ((await published('blip')) === 1 ? true : undefined), 5000);
  });

  it('a dyno that became unready is unpublished by the next timer pass though that delete failed', async () => {
    cluster = await Cluster.start();
    const store = flaky(cluster.store);
    await cluster.agent('m1', { agent: { store: store.store, reconcileMs: RECONCILE_MS } });
    await cluster.scheduler('s1');
    await cluster.app('stuck', { web: 'hang' });
    const access = await cluster.apps.resolve(cluster.owner, 'stuck');
    await new HealthCheckSettings(cluster.store, cluster.apps).set(cluster.owner, access, 'web', { type: 'readiness', path: '/ready', attempts: 1, wait: 1, timeout: 1 });
    await cluster.scale('stuck', { web: 1 });
    const answers = { '/ready': 200 };
    await serve('stuck.web.1', answers);
    await until('published', async () => ((await published('stuck')) === 1 ? true : undefined));

    store.failNext('delete');
    answers['/ready'] = 503;
    await until('the unpublish failed', () => store.failed === 1, 5000);
    await until('unpublished by a pass', async () => ((await published('stuck')) === 0 ? true : undefined), 5000);
    // Still unready: it stays out.
    await new Promise((r) => setTimeout(r, RECONCILE_MS * 3));
    expect(await published('stuck')).toBe(0);
  });
});
