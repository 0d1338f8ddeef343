import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import type { FakeRuntime } from '../../src/agent/index.js';
import { createRun, deleteRun, sweepRuns } from '../../src/controller/one-off/slots.js';
import { keys } from '../../src/domain/keys.js';
import { openStore, type Store, type TxnRequest } from '../../src/store/index.js';
import { until } from '../support/until.js';
import { oneOffHarness, type OneOffHarness } from './one-off-harness.js';

/**
 * A run whose record could not be deleted when it ended used to keep its run.max slot under the
 * node's lease until a restart; after run.max such failures every `berth run` was refused.
 */

/** The memory store, with the deletes of ended runs failing while `failing` > 0 (one per call). */
let failing = 0;
/** Sweeps begun (each reads the lease's keys first). */
let sweeps = 0;
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
    if (prop === 'leaseInfo') {
      return (id: string) => {
        sweeps++;
        return target.leaseInfo(id);
      };
    }
    const v = Reflect.get(target, prop, receiver) as unknown;
    return typeof v === 'function' ? (v as (...a: unknown[]) => unknown).bind(target) : v;
  },
});

let h: OneOffHarness;
let runtime: FakeRuntime;

const run = async (appName: string): Promise<number> => (await h.call('POST', `/apps/${appName}/dynos`, { command: 'hang', attach: false })).status;

async function app(name: string): Promise<string> {
  const id = await h.app(name, {});
  await store.put(keys.appLimits(id), JSON.stringify({ 'run.max': '1' }));
  return id;
}

const held = async (appId: string): Promise<number> => (await store.range(keys.runSlots(appId), { prefix: true })).kvs.length + (await store.range(keys.runs(appId), { prefix: true })).kvs.length;

beforeAll(async () => {
  h = await oneOffHarness({ store, sweepMs: 500 });
  runtime = h.runtime;
});
afterAll(() => h.close());

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

describe('a sweep and a run ending at the same time', () => {
  it('leaves the record and slot of a run whose delete is still being tried', async () => {
    const id = await app('ending');
    expect(await run('ending')).toBe(201);
    await until('running', () => runtime.running().some((d) => d.spec.appId === id) || undefined);
    // All five tries fail, over 1.5 s (0.1 + 0.2 + 0.4 + 0.8 s of backoff); a sweep then removes them.
    failing = 5;
    const sweepsBefore = sweeps;
    runtime.crash(runtime.running().find((d) => d.spec.appId === id)?.id ?? '', 0);
    let sweptMeanwhile = 0;
    let sweepsMeanwhile = 0;
    for (const deadline = Date.now() + 10_000; failing > 0 && Date.now() < deadline; ) {
      const left = await held(id);
      // Still failing after the read: the last try has not given up yet.
      if (failing > 0) {
        sweepsMeanwhile = sweeps - sweepsBefore;
        if (left < 2) sweptMeanwhile++;
      }
      await new Promise((r) => setTimeout(r, 20));
    }
    expect(failing).toBe(0);
    // The runner sweeps every 0.5 s here: at least one ran while the delete was being tried.
    expect(sweepsMeanwhile).toBeGreaterThan(0);
    expect(sweptMeanwhile).toBe(0);
    await until('record and slot gone', async () => ((await held(id)) === 0 ? true : undefined), 5000);
  }, 20_000);

  it('never deletes a slot a new run took after the sweep read it', async () => {
    const lease = (await real.grantLease(60)).id;
    const appId = 'app-sweep-race';
    const base = { app_id: appId, type: 'run' as const, state: 'starting' as const, command: 'x', size: 'standard-1x', release: { id: 'r', version: 1 }, node: 'n', user_id: 'u', attach: false, created_at: '', updated_at: '' };
    const create = (): ReturnType<typeof createRun> => createRun(real, { appName: 'race', maxRuns: 1, lease: () => lease, record: base });
    const first = await create();
    let second: Awaited<ReturnType<typeof createRun>> | undefined;
    // A slow sweep: by its first delete, the run it read has ended and a new one holds the slot.
    const slow: Store = new Proxy(real, {
      get(target, prop, receiver) {
        if (prop === 'txn') {
          return async (r: TxnRequest) => {
            if (!second && r.success[0]?.type === 'delete' && r.compare.some((c) => c.target === 'lease')) {
              await deleteRun(target, first, first.record.name);
              second = await create();
            }
            return target.txn(r);
          };
        }
        const v = Reflect.get(target, prop, receiver) as unknown;
        return typeof v === 'function' ? (v as (...a: unknown[]) => unknown).bind(target) : v;
      },
    });
    // Asked before the new run existed, `keep` knew neither run (the first had ended).
    await sweepRuns(slow, lease, () => new Set());
    expect(second?.slotKey).toBe(first.slotKey);
    const slot = await real.get(first.slotKey);
    expect(second).toBeDefined();
    expect(slot?.value).toBe(second?.record.name);
    await real.revokeLease(lease);
  });
});
