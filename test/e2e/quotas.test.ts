import { chmodSync, mkdirSync, mkdtempSync, rmSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { apiClient } from '../support/api.js';
import { startBerth, type BerthProcess } from '../support/berth-process.js';
import { runCli, type CliResult } from '../support/cli.js';
import { appRepo, git } from '../support/e2e.js';
import { untilWith } from '../support/until.js';

/**
 * Dyno quotas through a whole node: `berth limits:set` sizes a formation dyno's disk and a one-off
 * dyno's, and caps how many one-off dynos the app runs at once.
 */

const ADMIN = 'quotas-admin-token-0123456789abcdef';
const APP = 'quota-app';
let berth: BerthProcess;
let dir: string;
let home: string;
const api = apiClient(() => berth.apiUrl, ADMIN);
const until = untilWith({ timeoutMs: 60_000, intervalMs: 200, context: () => berth.stderr().slice(-3000) });
const cli = (command: string, ...args: string[]): Promise<CliResult> => runCli({ env: { BERTH_API_URL: berth.apiUrl, BERTH_API_KEY: ADMIN }, cwd: dir, home }, [command, '-a', APP, ...args]);

async function logs(): Promise<string> {
  const session = await api.ok<{ logplex_url: string }>('POST', `/apps/${APP}/log-sessions`, { lines: 1500 });
  return (await fetch(session.logplex_url)).text();
}

beforeAll(async () => {
  dir = mkdtempSync(join(tmpdir(), 'berth-quotas-e2e-'));
  chmodSync(dir, 0o755);
  home = join(dir, 'home');
  mkdirSync(home);
  berth = await startBerth(['--data-dir', join(dir, 'data')], { BERTH_BOOTSTRAP_TOKEN: ADMIN });
  await api.ok('POST', '/apps', { name: APP });
  const repo = join(dir, 'repo');
  // df -P: one line per filesystem, sizes in 1024-byte blocks.
  await appRepo(repo, berth.apiUrl, ADMIN, APP, { Procfile: 'worker: df -P /app /tmp | tail -n +2 | sed "s/^/disk /"; sleep 3600\n' });
  const push = await git(repo, 'push', 'berth', 'main');
  if (push.code !== 0) throw new Error(`push failed:\n${push.out}`);
}, 120_000);
afterAll(async () => {
  await berth?.stop();
  rmSync(dir, { recursive: true, force: true });
});

describe('dyno quotas', () => {
  it("gives a formation dyno the disk limits:set asks for, /app and /tmp on it", async () => {
    const set = await cli('limits:set', 'worker=256M', 'worker.disk=128M');
    expect(set.code, set.err).toBe(0);
    expect(set.out).toMatch(/worker\.disk:\s+128M/);
    expect((await cli('ps:scale', 'worker=1')).code).toBe(0);
    const lines = await until('the worker reports its disk', async () => {
      const found = (await logs()).split('\n').filter((l) => l.includes('app[worker.1]: disk '));
      return found.length >= 2 ? found : undefined;
    });
    // Both lines name one filesystem of about 128 MiB (less ext4's own): the dyno's own disk.
    const fields = lines.slice(-2).map((l) => l.slice(l.indexOf('disk ') + 5).trim().split(/\s+/));
    expect(fields[0]?.[0]).toBe(fields[1]?.[0]);
    const kib = Number(fields[0]?.[1]);
    expect(kib).toBeGreaterThan(100 * 1024);
    expect(kib).toBeLessThanOrEqual(128 * 1024);
    expect(fields.map((f) => f[5])).toEqual(['/app', '/tmp']);
    expect((await cli('ps:scale', 'worker=0')).code).toBe(0);
  }, 90_000);

  it('refuses a one-off dyno past run.max with the reason, sizes one-offs by run.disk, and starts another once one has ended', async () => {
    expect((await cli('limits:set', 'run.max=1', 'run.disk=64M')).code).toBe(0);
    const held = await cli('run:detached', '--', 'sleep 120');
    expect(held.code, held.err).toBe(0);
    const refused = await cli('run', '--', 'echo never');
    expect(refused.code).not.toBe(0);
    expect(refused.err).toMatch(/Cannot run more than 1 one-off dynos at once for quota-app/);
    const name = (await api.ok<{ name: string; type: string }[]>('GET', `/apps/${APP}/dynos`)).find((d) => d.type === 'run')?.name ?? '';
    expect(name).toMatch(/^run\.\d+$/);
    expect((await cli('ps:stop', name)).code).toBe(0);
    await until('the run gone', async () => ((await api.ok<{ type: string }[]>('GET', `/apps/${APP}/dynos`)).some((d) => d.type === 'run') ? undefined : true));
    const filled = await cli('run', '--', 'dd if=/dev/zero of=/tmp/big bs=1M count=200 2>&1 | head -n 1; df -P /app | tail -n 1');
    expect(filled.code, filled.err).toBe(0);
    expect(filled.out).toMatch(/No space left on device/);
    expect(Number(filled.out.trim().split('\n').at(-1)?.split(/\s+/)[1])).toBeLessThanOrEqual(64 * 1024);
  }, 90_000);
});
