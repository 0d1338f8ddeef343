import { mkdtempSync, readdirSync, rmSync, utimesSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { afterAll, describe, expect, it } from 'vitest';
import { pruneCache } from '../../src/agent/remote.js';

const dir = mkdtempSync(join(tmpdir(), 'berth-slug-cache-'));
afterAll(() => rmSync(dir, { recursive: true, force: true }));

describe("an agent's slug cache", () => {
  it('keeps the most recently used slugs and nothing else it made; other files stay', () => {
    const t0 = Date.now() / 1000;
    for (let i = 0; i < 8; i++) {
      const f = join(dir, `${String(i).repeat(64).slice(0, 64)}.tgz`);
      writeFileSync(f, 'slug');
      // Slug i was last used i minutes ago.
      utimesSync(f, t0 - i * 60, t0 - i * 60);
    }
    writeFileSync(join(dir, '.partial.part'), 'in flight');
    pruneCache(dir, 3);
    const left = readdirSync(dir).sort();
    expect(left).toEqual(['.partial.part', ...[0, 1, 2].map((i) => `${String(i).repeat(64)}.tgz`)].sort());
  });
});
