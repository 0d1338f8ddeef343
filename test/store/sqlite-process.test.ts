import { spawn } from 'node:child_process';
import { mkdtempSync, rmSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { afterAll, describe, expect, it } from 'vitest';
import { StoreErrorCode, isStoreError, openStore } from '../../src/store/index.js';

const dir = mkdtempSync(join(tmpdir(), 'berth-sqlite-proc-'));
afterAll(() => rmSync(dir, { recursive: true, force: true }));

describe('sqlite backend and its process', () => {
  it('closes cleanly while watches are still catching up (they end with store_closed)', async () => {
    const store = openStore(`sqlite://${join(dir, 'close.db')}`);
    for (let i = 0; i < 50; i++) await store.put(`/k/${i}`, String(i));
    const watch = await store.watch('/', { prefix: true, startRevision: 1 });
    await store.close();
    const it = watch[Symbol.asyncIterator]();
    let err: unknown;
    try {
      for (;;) if ((await it.next()).done) break;
    } catch (e) {
      err = e;
    }
    expect(isStoreError(err, StoreErrorCode.Closed)).toBe(true);
    // A pump scheduled before close must not throw into the event loop.
    await new Promise((r) => setTimeout(r, 50));
  });

  it('serves every read from one snapshot while another process writes the same file', async () => {
    const url = `sqlite://${join(dir, 'shared.db')}`;
    const reader = openStore(url);
    await reader.put('/x/seed', '0');
    const child = spawn(process.execPath, ['--import', 'tsx', join(import.meta.dirname, 'fixtures/loop-writer.ts'), url], { stdio: 'ignore' });
    try {
      while ((await reader.currentRevision()) < 50) await new Promise((r) => setTimeout(r, 10));
      let checked = 0;
      const until = Date.now() + 1500;
      while (Date.now() < until) {
        const now = await reader.range('/x/', { prefix: true });
        // The header revision covers every key returned; a pair written in one txn is never torn.
        expect(Math.max(...now.kvs.map((kv) => kv.modRevision))).toBeLessThanOrEqual(now.revision);
        expect(now.count).toBe(now.kvs.length);
        const at = now.revision - 1;
        const old = await reader.range('/x/', { prefix: true, revision: at });
        for (const kv of old.kvs) expect(kv.modRevision).toBeLessThanOrEqual(at);
        checked++;
      }
      expect(checked).toBeGreaterThan(20);
    } finally {
      child.kill('SIGKILL');
      await reader.close();
    }
  });

  it('gives leases their full TTL again when the store is reopened, as etcd does after a restart', async () => {
    const url = `sqlite://${join(dir, 'leases.db')}`;
    const first = openStore(url);
    const lease = await first.grantLease(2);
    await first.put('/held', 'x', { lease: lease.id });
    await first.close();
    await new Promise((r) => setTimeout(r, 2200));
    const second = openStore(url);
    try {
      expect((await second.get('/held'))?.value).toBe('x');
      expect(await second.keepAliveOnce(lease.id)).toBe(2);
    } finally {
      await second.close();
    }
  });
});
