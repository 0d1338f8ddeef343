import { describe, expect, it } from 'vitest';
import { FakeRuntime } from '../../src/agent/index.js';
import type { DynoSpec } from '../../src/agent/runtime/types.js';
import { freePort } from '../support/ports.js';
import { describeRuntimeConformance } from './runtime-conformance.js';

describeRuntimeConformance('fake', { tty: false }, async () => ({
  runtime: new FakeRuntime(),
  slugPath: '/nonexistent/slug.tgz',
  commands: {
    output: 'write "one\\ntwo\\r\\n\\npar"; write-err "oops\\n"; sleep 200; write "tial\\nlast"',
    env: (names) => `env ${names.join(' ')}`,
    exit: (code) => `exit ${code}`,
    exitAfter: (ms, code) => `crash-after ${ms} ${code}`,
    serve: 'graceful; serve',
    ignoreSigterm: 'ignore-sigterm; echo up; hang',
    allocate: (bytes) => `alloc ${bytes}; echo allocated`,
    fill: (dir, mib) => `fill ${dir} ${mib}`,
    prompt: 'write "name? "; read; echo hi $REPLY; echo-err bye',
    count: 'count',
    ttyCheck: 'tty',
  },
  teardown: async () => undefined,
}));

// The fake's own test controls, which agent and scheduler tests drive.
describe('fake runtime controls', () => {
  let n = 0;
  const spec = (command: string, extra: Partial<DynoSpec> = {}): DynoSpec => ({
    id: `fake-${n++}`,
    appId: 'app',
    uid: 200_000,
    dyno: 'web.1',
    command,
    slugPath: '/nonexistent',
    env: {},
    memoryBytes: 512 * 1024 * 1024,
    pidsMax: 100,
    onOutput: () => undefined,
    ...extra,
  });

  it('lists running dynos, crashes one on demand and records starts, stops and exits in order', async () => {
    const seen: string[] = [];
    const rt = new FakeRuntime({ onCall: (c) => seen.push(`${c.op} ${c.id}`) });
    const a = await rt.start(spec('hang'));
    const b = await rt.start(spec('graceful; serve', { port: await freePort() }));
    expect(rt.running().map((d) => d.id)).toEqual([a.id, b.id]);
    rt.crash(a.id, 7);
    expect(await a.exited).toEqual({ code: 7, oomKilled: false });
    expect(rt.running().map((d) => d.id)).toEqual([b.id]);
    await b.stop(1000);
    expect(rt.running()).toEqual([]);
    expect(() => rt.crash(a.id)).toThrow(/no running dyno/);
    expect(rt.calls.map((c) => `${c.op} ${c.id}${c.code !== undefined ? ` ${c.code}` : ''}`)).toEqual([`start ${a.id}`, `start ${b.id}`, `exit ${a.id} 7`, `stop ${b.id}`, `exit ${b.id} 0`]);
    expect(rt.calls.find((c) => c.op === 'stop')?.graceMs).toBe(1000);
    expect(seen).toEqual(rt.calls.map((c) => `${c.op} ${c.id}`));
  });

  it('injects boot failures and start delays', async () => {
    const rt = new FakeRuntime({ startDelayMs: 150 });
    rt.failStart = (s) => (s.dyno === 'web.2' ? new Error('slug missing') : undefined);
    await expect(rt.start(spec('hang', { dyno: 'web.2' }))).rejects.toThrow('slug missing');
    const t0 = Date.now();
    const ok = await rt.start(spec('crash-after 50'));
    expect(Date.now() - t0).toBeGreaterThanOrEqual(140);
    expect(await ok.exited).toEqual({ code: 1, oomKilled: false });
    expect(rt.running()).toEqual([]);
  });

  it('joins stderr to stdout when a tty is asked for, though it has no terminal to give', async () => {
    const chunks: string[] = [];
    const d = await new FakeRuntime().start(spec('echo-err oops; tty', { interactive: { tty: { columns: 80, lines: 24 }, onData: (s, c) => chunks.push(`${s}:${c}`) } }));
    expect(await d.exited).toEqual({ code: 0, oomKilled: false });
    expect(chunks).toEqual(['stdout:oops\n', 'stdout:no tty\n']);
  });

  it('says what it cannot interpret, as a shell would, and exits 1', async () => {
    const lines: string[] = [];
    const d = await new FakeRuntime().start(spec('frobnicate', { onOutput: (_s, l) => lines.push(l) }));
    expect(await d.exited).toEqual({ code: 1, oomKilled: false });
    expect(lines).toEqual(["fake runtime: unknown step 'frobnicate'"]);
  });
});
