import { spawn } from 'node:child_process';
import { mkdtempSync, rmSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { afterAll, expect, it } from 'vitest';
import { openStore } from '../../src/store/index.js';

const dir = mkdtempSync(join(tmpdir(), 'berth-durability-'));
afterAll(() => rmSync(dir, { recursive: true, force: true }));

it('keeps every acknowledged write when the writing process is killed with SIGKILL mid-storm', async () => {
  const url = `sqlite://${join(dir, 'state.db')}`;
  const child = spawn(process.execPath, ['--import', 'tsx', join(import.meta.dirname, 'fixtures/storm-writer.ts'), url], {
    stdio: ['ignore', 'pipe', 'inherit'],
  });
  const acked = new Map<string, number>();
  let buffer = '';
  child.stdout.on('data', (d: Buffer) => {
    buffer += d.toString();
    const lines = buffer.split('\n');
    buffer = lines.pop() ?? '';
    for (const line of lines) {
      const [, key, rev] = line.split(' ');
      if (key && rev) acked.set(key, Number(rev));
    }
  });
  const exited = new Promise<NodeJS.Signals | null>((resolve) => child.on('exit', (_code, signal) => resolve(signal)));
  // Kill once the storm is well under way, at a moment the writer does not choose.
  const deadline = Date.now() + 30_000;
  while (acked.size < 3000 && Date.now() < deadline) await new Promise((r) => setTimeout(r, 20));
  await new Promise((r) => setTimeout(r, Math.floor(Math.random() * 50)));
  child.kill('SIGKILL');
  expect(await exited).toBe('SIGKILL');
  expect(acked.size).toBeGreaterThanOrEqual(3000);

  const store = openStore(url);
  try {
    const all = await store.range('/storm/', { prefix: true });
    const found = new Map(all.kvs.map((kv) => [kv.key, kv]));
    const lost = [...acked.keys()].filter((k) => found.get(k)?.value !== `v-${k}`);
    expect(lost).toEqual([]);
    for (const [key, rev] of acked) expect(found.get(key)?.modRevision).toBe(rev);
    expect(await store.currentRevision()).toBeGreaterThanOrEqual(Math.max(...acked.values()));
    // The reopened store is fully usable: history replays and new writes get new revisions.
    const w = await store.watch('/storm/', { prefix: true, startRevision: 1 });
    const it = w[Symbol.asyncIterator]();
    const first = await it.next();
    expect(first.done).toBe(false);
    w.close();
    const r = await store.put('/after-crash', 'ok');
    expect(r.revision).toBeGreaterThan(Math.max(...acked.values()));
  } finally {
    await store.close();
  }
}, 60_000);
