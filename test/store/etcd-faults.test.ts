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
      server.pause();
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
});
