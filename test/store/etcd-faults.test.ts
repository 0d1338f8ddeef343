import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { EtcdStore, StoreErrorCode, isStoreError } from '../../src/store/index.js';
import { EtcdServer } from '../support/etcd-server.js';

describe('etcd backend under faults', () => {
  let server: EtcdServer;
  beforeAll(async () => {
    server = await EtcdServer.start();
  });
  afterAll(async () => {
    server.resume();
    await server.stop();
  });

  it('does not resend a write that timed out on a hung etcd, and recovers when it answers again', async () => {
    const store = new EtcdStore({ endpoints: [server.endpoint], retryForMs: 1500, callTimeoutMs: 400 });
    try {
      await store.put('/faults/k', 'before');
      await server.pause();
      const write = await store.put('/faults/k', 'during').catch((e: unknown) => e);
      expect(isStoreError(write, StoreErrorCode.Unavailable)).toBe(true);
      expect(isStoreError(write) && write.retryable).toBe(false);
      expect((write as Error).message).toMatch(/may or may not have been applied/);
      const read = await store.get('/faults/k').catch((e: unknown) => e);
      expect(isStoreError(read, StoreErrorCode.Unavailable)).toBe(true);
      expect((read as Error).message).toContain(server.endpoint);
      server.resume();
      // The timed-out put was applied at most once: the key's version tells.
      let kv = await store.get('/faults/k').catch(() => undefined);
      for (let i = 0; !kv && i < 50; i++) {
        await new Promise((r) => setTimeout(r, 100));
        kv = await store.get('/faults/k').catch(() => undefined);
      }
      expect(kv?.version).toBeLessThanOrEqual(2);
      const after = await store.put('/faults/k', 'after');
      expect(after.revision).toBeGreaterThan(0);
    } finally {
      server.resume();
      await store.close();
    }
  });

  it('bounds a keep-alive on a hung etcd by the call deadline, so a lease holder learns in time', async () => {
    const store = new EtcdStore({ endpoints: [server.endpoint], retryForMs: 300, callTimeoutMs: 300 });
    try {
      const lease = await store.grantLease(5);
      await server.pause();
      const started = Date.now();
      const err = await store.keepAliveOnce(lease.id).catch((e: unknown) => e);
      expect(isStoreError(err, StoreErrorCode.Unavailable), String(err)).toBe(true);
      expect(Date.now() - started).toBeLessThan(3000);
    } finally {
      server.resume();
      await store.close();
    }
  });

  it('resumes a catching-up watch from the last delivered revision after etcd restarts, with no gap', async () => {
    const store = new EtcdStore({ endpoints: [server.endpoint] });
    try {
      const start = (await store.currentRevision()) + 1;
      for (let i = 0; i < 2500; i++) await store.put(`/gap/${i % 10}`, String(i));
      const watch = await store.watch('/gap/', { prefix: true, startRevision: start });
      const it = watch[Symbol.asyncIterator]();
      const seen: number[] = [];
      const first = await it.next();
      seen.push(...(first.done ? [] : first.value.events).map((e) => e.kv.modRevision));
      expect(seen.length).toBeLessThan(2500);
      await server.restart();
      const deadline = Date.now() + 30_000;
      while (seen.length < 2500 && Date.now() < deadline) {
        const r = await it.next();
        if (r.done) break;
        seen.push(...r.value.events.map((e) => e.kv.modRevision));
      }
      watch.close();
      expect(seen).toEqual(Array.from({ length: 2500 }, (_, i) => start + i));
    } finally {
      await store.close();
    }
  }, 60_000);
});
