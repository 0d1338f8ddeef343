import { execFileSync } from 'node:child_process';
import { chmodSync, mkdirSync, mkdtempSync, rmSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import type { SandboxSpec } from '../../src/sandbox/index.js';
import { scratchNetns } from '../support/network.js';
import { testSandbox } from '../support/sandbox.js';

let dir: string;
let app: string;
let secretDir: string;
let n = 0;
const sandbox = testSandbox();

beforeAll(() => {
  dir = mkdtempSync(join(tmpdir(), 'berth-sandbox-'));
  chmodSync(dir, 0o755);
  app = join(dir, 'app');
  mkdirSync(app);
  chmodSync(app, 0o777);
  // Stands for the platform's data dir: outside the sandbox, readable by the world on the host.
  secretDir = join(dir, 'data');
  mkdirSync(secretDir);
  writeFileSync(join(secretDir, 'admin.token'), 'super-secret');
  chmodSync(join(secretDir, 'admin.token'), 0o644);
});
afterAll(() => rmSync(dir, { recursive: true, force: true }));

function run(script: string, extra: Partial<SandboxSpec> = {}): Promise<{ code: number | null; timedOut: boolean; oomKilled: boolean; output: string }> {
  let output = '';
  return sandbox.run({
    id: `test-${process.pid}-${n++}`,
    argv: ['/bin/bash', '-c', script],
    binds: [{ src: app, dest: '/app', writable: true }],
    env: { PATH: '/usr/bin:/bin', HOME: '/app' },
    cwd: '/app',
    uid: 151_000,
    gid: 151_000,
    memoryBytes: 256 * 1024 * 1024,
    timeoutMs: 20_000,
    onOutput: (c) => (output += c),
    ...extra,
  }).then((r) => ({ ...r, output }));
}

describe('sandbox', () => {
  it('runs as an unprivileged uid in its own pid namespace, writing only where bound', async () => {
    const r = await run('id -u; echo $$; touch /app/made && echo wrote-app; touch /usr/x 2>/dev/null || echo usr-read-only; ls /');
    expect(r.code).toBe(0);
    const lines = r.output.trim().split('\n');
    expect(lines[0]).toBe('151000');
    expect(Number(lines[1])).toBeLessThan(10);
    expect(r.output).toContain('wrote-app');
    expect(r.output).toContain('usr-read-only');
    expect(r.output).not.toMatch(/\bvar\b|\broot\b|\bhome\b/);
  });

  it('cannot see the data dir or the host\'s other files', async () => {
    const r = await run(`cat ${join(secretDir, 'admin.token')} 2>&1; ls ${dir} 2>&1; cat /etc/shadow 2>&1 | head -1`);
    expect(r.output).not.toContain('super-secret');
    expect(r.output).toMatch(/No such file or directory/);
    expect(r.output).toMatch(/Permission denied/);
  });

  it('reports the exit code of a failing command', async () => {
    expect((await run('exit 7')).code).toBe(7);
  });

  it('kills a command over its memory limit and says so', async () => {
    const r = await run('node -e "const a=[]; for(;;) a.push(Buffer.alloc(1<<20, 1))"', { memoryBytes: 96 * 1024 * 1024 });
    expect(r.code).not.toBe(0);
    expect(r.oomKilled).toBe(true);
  });

  it('kills a command past its time limit, children included', async () => {
    const started = Date.now();
    const r = await run('(sleep 60 &); sleep 60', { timeoutMs: 500 });
    expect(r.timedOut).toBe(true);
    expect(Date.now() - started).toBeLessThan(5000);
  });

  it('runs inside the network namespace it is given, unable to reconfigure it', async () => {
    const ns = await scratchNetns();
    try {
      const r = await run('cut -d: -f1 /proc/net/dev | tr -d " " | tail -n +3 | sort | tr "\\n" " "; echo; /usr/sbin/ip addr add 10.9.9.9/32 dev probe0 2>&1; /usr/sbin/ip link set probe0 up 2>&1; echo done', { netns: ns.path });
      expect(r.output.split('\n')[0]?.trim()).toBe('lo probe0 probe1');
      expect(r.output).toMatch(/Operation not permitted/);
      expect(r.output).not.toMatch(/10\.9\.9\.9/);
      // Nothing changed from the outside either.
      expect(execFileSync('ip', ['-n', ns.name, '-o', 'addr', 'show', 'dev', 'probe0']).toString()).not.toContain('10.9.9.9');
    } finally {
      await ns.remove();
    }
  });

  it('refuses a network namespace that is not a /run/netns name', async () => {
    for (const netns of ['/proc/1/ns/net', '/run/netns/../../proc/1/ns/net', '/run/netns/..', 'x']) {
      await expect(run('true', { netns })).rejects.toThrow(/invalid network namespace/);
    }
  });
});
