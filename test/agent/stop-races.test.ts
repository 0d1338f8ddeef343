import { afterEach, describe, expect, it } from 'vitest';
import { keys } from '../../src/domain/keys.js';
import { LoopbackNetwork, type Attachment, type DynoAttachRequest, type Networks } from '../../src/network/index.js';
import type { Store, TxnRequest } from '../../src/store/index.js';
import { until } from '../support/until.js';
import { Cluster } from '../control-loops/harness.js';

/**
 * A stopping dyno whose endpoint delete the store answers late or ambiguously: its address must
 * not be handed on before routers saw the delete, and its late deletes must not take a new
 * dyno's keys (a unit's endpoint and status are named for the unit, under the same lease).
 */
let cluster: Cluster | undefined;
afterEach(async () => {
  await cluster?.close();
  cluster = undefined;
});

const isEndpointDelete = (req: TxnRequest): boolean => req.success.some((op) => op.type === 'delete' && op.key.startsWith(keys.allServices()));

/** The store with `txn` passed through `intercept` (every other call as it is). */
function intercepted(inner: Store, intercept: (req: TxnRequest, real: (r: TxnRequest) => ReturnType<Store['txn']>) => ReturnType<Store['txn']>): Store {
  return new Proxy(inner, {
    get(t, p) {
      if (p === 'txn') return (req: TxnRequest) => intercept(req, (r) => t.txn(r));
      const v: unknown = Reflect.get(t, p, t);
      return typeof v === 'function' ? (v as (...a: unknown[]) => unknown).bind(t) : v;
    },
  }) as Store;
}

class RecordingNetwork implements Networks {
  private readonly inner: Networks = new LoopbackNetwork();
  readonly releases: { owner: string; after: number | undefined }[] = [];
  async attachDyno(r: DynoAttachRequest): Promise<Attachment> {
    const a = await this.inner.attachDyno(r);
    return {
      ...a,
      release: async (o) => {
        this.releases.push({ owner: r.owner, after: o?.after });
        await a.release(o);
      },
    };
  }
  attachBuild(id: string): Promise<Attachment> {
    return this.inner.attachBuild(id);
  }
}

describe('a dyno stopping while the store answers badly', () => {
  it('holds its address past a delete that landed but was reported as failed', async () => {
    const c = (cluster = await Cluster.start());
    let applyThenThrow = false;
    let deletedAt = 0;
    const store = intercepted(c.store, async (req, real) => {
      if (applyThenThrow && isEndpointDelete(req)) {
        applyThenThrow = false;
        deletedAt = (await real(req)).revision;
        throw new Error('etcdserver: request timed out');
      }
      return real(req);
    });
    const net = new RecordingNetwork();
    await c.agent('m1', { agent: { store, network: net } });
    await c.scheduler('s1');
    await c.app('shop', { web: 'serve' }, { web: 1 });
    await until('published', async () => ((await c.endpoints('shop')).size === 1 ? true : undefined));
    applyThenThrow = true;
    await c.scale('shop', { web: 0 });
    await until('released', () => (net.releases.length > 0 ? true : undefined), 10_000);
    expect(deletedAt).toBeGreaterThan(0);
    // Released only once routers may have applied the delete that did land.
    expect(net.releases[0]?.after ?? 0).toBeGreaterThanOrEqual(deletedAt);
  });

  it("does not take the endpoint of the unit's next dyno with a late delete", async () => {
    const c = (cluster = await Cluster.start());
    let armed = false;
    let failing = false;
    const store = intercepted(c.store, async (req, real) => {
      if (isEndpointDelete(req)) {
        if (failing) throw new Error('etcdserver: request timed out');
        if (armed) {
          armed = false;
          const r = await real(req);
          failing = true;
          return r;
        }
      }
      return real(req);
    });
    await c.agent('m1', { agent: { store } });
    await c.scheduler('s1');
    await c.app('shop', { web: 'serve' }, { web: 1 });
    await until('published', async () => ((await c.endpoints('shop')).size === 1 ? true : undefined));
    armed = true;
    await c.scale('shop', { web: 0 });
    await until('the first delete', () => (failing ? true : undefined), 10_000);
    await until('the unit gone', async () => ((await c.units('shop')).length === 0 ? true : undefined));
    // The same unit comes back while the old stop still retries its second delete.
    await c.scale('shop', { web: 1 });
    await new Promise((r) => setTimeout(r, 1000));
    failing = false;
    await until('published again', async () => ((await c.endpoints('shop')).size === 1 ? true : undefined), 15_000);
    // The old stop's retries have landed by now (backoff tops out at 5 s); the new dyno keeps its keys.
    await new Promise((r) => setTimeout(r, 6000));
    expect((await c.endpoints('shop')).size).toBe(1);
    expect((await c.statuses('shop')).size).toBe(1);
  }, 40_000);
});
