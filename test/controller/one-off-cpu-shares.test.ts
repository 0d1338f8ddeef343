import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import type { FakeRuntime } from '../../src/agent/index.js';
import { until } from '../support/until.js';
import { oneOffHarness, type OneOffHarness } from './one-off-harness.js';

const GiB = 1024 ** 3;
let h: OneOffHarness;
let runtime: FakeRuntime;
const call = async (method: 'POST' | 'PATCH', url: string, body: unknown): Promise<number> => (await h.call(method, url, body)).status;

beforeAll(async () => {
  h = await oneOffHarness();
  runtime = h.runtime;
  for (const name of ['greedy', 'modest']) await h.app(name);
});
afterAll(() => h.close());

describe('one-off dynos and the CPU', () => {
  it("weigh at most a default dyno's cpu shares, whatever memory run= asks for; a smaller one weighs less", async () => {
    expect(await call('PATCH', '/apps/greedy/limits', { run: '64G' })).toBe(200);
    expect(await call('PATCH', '/apps/modest/limits', { run: '256M' })).toBe(200);
    expect(await call('POST', '/apps/greedy/dynos', { command: 'hang', attach: false })).toBe(201);
    expect(await call('POST', '/apps/modest/dynos', { command: 'hang', attach: false })).toBe(201);
    const specs = await until('both running', () => {
      const r = runtime.running();
      return r.length === 2 ? r.map((d) => d.spec) : undefined;
    });
    const byMemory = specs.sort((a, b) => b.memoryBytes - a.memoryBytes).map((s) => [s.memoryBytes, s.cpuShares]);
    // Before: no cpuShares, so by memory: 131,072 for run=64G.
    expect(byMemory).toEqual([[64 * GiB, 1024], [256 * 1024 ** 2, 512]]);
  });
});
