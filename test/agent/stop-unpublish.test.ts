import { afterEach, describe, expect, it } from 'vitest';
import { keys } from '../../src/domain/keys.js';
import { LoopbackNetwork, type Attachment, type DynoAttachRequest, type Networks } from '../../src/network/index.js';
import type { Store, TxnRequest } from '../../src/store/index.js';
import { until } from '../support/until.js';
import { Cluster } from '../control-loops/harness.js';

/**
 * A stopping dyno's address is freed only once its endpoint is known to be gone from the store:
 * freed earlier, the next dyno (maybe another app's) would get it while routers still send the
 * first app's traffic there. The store is the memory store behind a wrapper that fails endpoint
 * deletes, as an etcd timing out would.
 */

let cluster: Cluster;
afterEach(async () => {
  await cluster?.close();
});

/** Fails the next `fails` txns that delete an endpoint (Infinity: all of them). */
function failingDeletes(inner: Store): { store: Store; fail(n: number): void; failed: () => number } {
  let left = 0;
  let failed = 0;
  const deletesEndpoint = (req: TxnRequest): boolean => req.success.some((op) => op.type === 'delete' && op.key.startsWith(keys.allServices()));
  const store = new Proxy(inner, {
    get(target, prop) {
      if (prop === 'txn') {
        return async (req: TxnRequest) => {
          if (left > 0 && deletesEndpoint(req)) {
            left--;
            failed++;
            throw new Error('etcdserver: request timed out');
          }
          return target.txn(req);
        };
      }
      const v: unknown = Reflect.get(target, prop, target);
      return typeof v === 'function' ? (v as (...a: unknown[]) => unknown).bind(target) : v;
    },
  });
  return { store, fail: (n) => void (left = n), failed: () => failed };
}

/** The loopback network, noting at each release whether the dyno's endpoint was still in the store. */
class CheckedNetwork implements Networks {
  private readonly inner: Networks = new LoopbackNetwork();
  /** Per released unit: the endpoint keys of its app that were in the store at that moment. */
  readonly releases: { owner: string; endpoints: string[] }[] = [];

  constructor(private readonly appName: string) {}

  async attachDyno(request: DynoAttachRequest): Promise<Attachment> {
    const a = await this.inner.attachDyno(request);
    return {
      ...a,
      release: async (o) => {
        this.releases.push({ owner: request.owner, endpoints: [...(await cluster.endpoints(this.appName)).keys()] });
        await a.release(o);
      },
    };
  }

  attachBuild(id: string): Promise<Attachment> {
    return this.inner.attachBuild(id);
  }
}

async function upAndPublished(name: string, agentStore: Store, network: Networks): Promise<string> {
  await cluster.agent('m1', { agent: { store: agentStore, network } });
  await cluster.scheduler('s1');
  await cluster.app(name, { web: 'serve' }, { web: 1 });
  const [unit] = await until('published', async () => {
    const e = await cluster.endpoints(name);
    return e.size === 1 ? [...e.keys()] : undefined;
  });
  return unit as string;
}

describe('stopping a dyno while the store fails its endpoint delete', () => {
  it('tries the delete again until it lands, and frees the address only after', async () => {
    cluster = await Cluster.start();
    const flaky = failingDeletes(cluster.store);
    const network = new CheckedNetwork('shop');
    const unit = await upAndPublished('shop', flaky.store, network);
    flaky.fail(3);
    await cluster.scale('shop', { web: 0 });
    await until('released', () => (network.releases.length > 0 ? true : undefined), 10_000);
    expect(network.releases).toEqual([{ owner: unit, endpoints: [] }]);
    expect(flaky.failed()).toBe(3);
    expect((await cluster.endpoints('shop')).size).toBe(0);
  });

  it('gives up when the agent stops, and frees the address only after the lease took the endpoint', async () => {
    cluster = await Cluster.start();
    const flaky = failingDeletes(cluster.store);
    const network = new CheckedNetwork('cart');
    const unit = await upAndPublished('cart', flaky.store, network);
    flaky.fail(Infinity);
    const started = Date.now();
    await cluster.agents.get('m1')?.stop();
    expect(Date.now() - started).toBeLessThan(10_000);
    expect(flaky.failed()).toBeGreaterThan(0);
    expect(network.releases).toEqual([{ owner: unit, endpoints: [] }]);
  });
});
