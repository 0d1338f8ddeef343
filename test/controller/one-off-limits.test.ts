import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import type { FakeRuntime } from '../../src/agent/index.js';
import { keys } from '../../src/domain/keys.js';
import type { Store } from '../../src/store/index.js';
import { until } from '../support/until.js';
import { oneOffHarness, type OneOffHarness } from './one-off-harness.js';

const MiB = 1024 * 1024;
let h: OneOffHarness;
let store: Store;
let runtime: FakeRuntime;
const call: OneOffHarness['call'] = (...a) => h.call(...a);
const app = (name: string): Promise<string> => h.app(name);
const run = (appName: string, command = 'hang'): Promise<{ status: number; body: any }> => call('POST', `/apps/${appName}/dynos`, { command, attach: false }); // eslint-disable-line @typescript-eslint/no-explicit-any -- JSON under test
const runningOf = (appId: string): ReturnType<FakeRuntime['running']> => runtime.running().filter((d) => d.spec.appId === appId);

beforeAll(async () => {
  h = await oneOffHarness();
  ({ store, runtime } = h);
});
afterAll(() => h.close());

describe('one-off dynos count toward the app', () => {
  it('refuses the run past run.max with 429 {id, message}; another starts once one has exited', async () => {
    const id = await app('capped');
    expect((await call('PATCH', '/apps/capped/limits', { 'run.max': '2' })).status).toBe(200);
    const a = await run('capped');
    const b = await run('capped');
    expect([a.status, b.status]).toEqual([201, 201]);
    const refused = await run('capped');
    expect(refused.status).toBe(429);
    expect(refused.body).toEqual({ id: 'rate_limit', message: expect.stringMatching(/Cannot run more than 2 one-off dynos at once for capped/) });
    await until('both running', () => (runningOf(id).length === 2 ? true : undefined));
    // Another app is not held back by this one's.
    await app('neighbour');
    expect((await run('neighbour')).status).toBe(201);

    runtime.crash(runningOf(id)[0]?.id ?? '', 0);
    await until('its slot free', async () => ((await store.range(keys.runSlots(id), { prefix: true })).kvs.length === 1 ? true : undefined));
    expect((await run('capped')).status).toBe(201);
    expect((await run('capped')).status).toBe(429);
  });

  it('lets exactly run.max of a burst of concurrent requests through (default 5)', async () => {
    const id = await app('burst');
    const answers = await Promise.all(Array.from({ length: 12 }, () => run('burst')));
    expect(answers.filter((r) => r.status === 201)).toHaveLength(5);
    expect(answers.filter((r) => r.status === 429)).toHaveLength(7);
    await until('five running', () => (runningOf(id).length === 5 ? true : undefined));
    expect((await store.range(keys.runs(id), { prefix: true })).kvs).toHaveLength(5);
  });

  it("sizes a one-off dyno by the app's run limits: memory and disk", async () => {
    const id = await app('sized');
    expect((await call('PATCH', '/apps/sized/limits', { run: '256M', 'run.disk': '2G' })).body).toEqual({ run: '256M', 'run.disk': '2G' });
    expect((await run('sized')).status).toBe(201);
    await until('running', () => (runningOf(id).length === 1 ? true : undefined));
    expect(runningOf(id)[0]?.spec).toMatchObject({ memoryBytes: 256 * MiB, diskBytes: 2 * 1024 * MiB });
  });

  it('validates the limits map: TYPE.disk in range, run.max only for run and from 1 to 20', async () => {
    await app('limited');
    const patch = (body: Record<string, string | null>): Promise<{ status: number; body: any }> => call('PATCH', '/apps/limited/limits', body); // eslint-disable-line @typescript-eslint/no-explicit-any -- JSON under test
    expect((await patch({ web: '512M', 'web.disk': '2g', 'run.max': '3' })).body).toEqual({ web: '512M', 'web.disk': '2G', 'run.max': '3' });
    const bads: Record<string, string>[] = [{ 'web.max': '3' }, { 'run.max': '0' }, { 'run.max': '21' }, { 'run.max': 'lots' }, { 'web.disk': '100G' }, { 'web.disk': '1M' }, { 'web.cpu': '2' }, { 'a.b.disk': '1G' }];
    for (const bad of bads) {
      const r = await patch(bad);
      expect(r.status, JSON.stringify(bad)).toBe(422);
      expect(r.body.id).toBe('invalid_params');
    }
    expect((await patch({ 'web.disk': null })).body).toEqual({ web: '512M', 'run.max': '3' });
  });
});
