import { readdirSync, readFileSync, mkdirSync, mkdtempSync, rmSync, chmodSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { apiClient } from '../support/api.js';
import { startBerth, type BerthProcess } from '../support/berth-process.js';
import { git } from '../support/e2e.js';
import { untilWith } from '../support/until.js';

const ADMIN = 'log-flood-admin-token-0123456789abcdef';
const APP = 'log-flood';
let berth: BerthProcess;
let dir: string;
let dataDir: string;
const api = apiClient(() => berth.apiUrl, ADMIN);
const until = untilWith({ timeoutMs: 30_000, intervalMs: 150, context: () => berth.stderr().slice(-3000) });

/** The `berth up` process of this suite: the one whose command line names its data dir. */
function berthPid(): number {
  for (const entry of readdirSync('/proc')) {
    if (!/^\d+$/.test(entry)) continue;
    try {
      const argv = readFileSync(`/proc/${entry}/cmdline`, 'utf8').split('\0');
      if (argv.includes('up') && argv.includes(dataDir)) return Number(entry);
    } catch {
      // gone meanwhile
    }
  }
  throw new Error('no berth up process found');
}

/** CPU seconds the process has used (user + system). */
function cpuSeconds(pid: number): number {
  const f = readFileSync(`/proc/${pid}/stat`, 'utf8').split(') ')[1]?.split(' ') ?? [];
  return (Number(f[11]) + Number(f[12])) / 100;
}

const sleep = (ms: number): Promise<void> => new Promise((r) => setTimeout(r, ms));

const rssMiB = (pid: number): number => Number(/VmRSS:\s+(\d+)/.exec(readFileSync(`/proc/${pid}/status`, 'utf8'))?.[1] ?? 0) / 1024;

beforeAll(async () => {
  dir = mkdtempSync(join(tmpdir(), 'berth-log-flood-'));
  chmodSync(dir, 0o755);
  dataDir = join(dir, 'data');
  berth = await startBerth(['--data-dir', dataDir], { BERTH_BOOTSTRAP_TOKEN: ADMIN });
  await api.ok('POST', '/apps', { name: APP });
  const repo = join(dir, 'repo');
  mkdirSync(repo);
  writeFileSync(join(repo, 'Procfile'), 'flood: yes flood\n');
  for (const args of [['init', '-q', '-b', 'main'], ['add', '.'], ['-c', 'user.email=a@b', '-c', 'user.name=a', 'commit', '-qm', 'one'], ['remote', 'add', 'berth', `${berth.apiUrl.replace('http://', `http://git:${ADMIN}@`)}/${APP}.git`]]) {
    await git(repo, ...args);
  }
  const push = await git(repo, 'push', 'berth', 'main');
  if (push.code !== 0) throw new Error(`push failed:\n${push.out}`);
}, 120_000);

afterAll(async () => {
  await berth?.stop();
  rmSync(dir, { recursive: true, force: true });
});

/** Up to `n` sequential GET /apps/:app timings (ms, sorted), or fewer if `budgetMs` runs out first. */
async function timings(n: number, budgetMs: number): Promise<number[]> {
  const out: number[] = [];
  const deadline = performance.now() + budgetMs;
  while (out.length < n && performance.now() < deadline) {
    const t = performance.now();
    await api.ok('GET', `/apps/${APP}`);
    out.push(performance.now() - t);
  }
  return out.sort((a, b) => a - b);
}
const pct = (sorted: number[], p: number): number => sorted[Math.min(sorted.length - 1, Math.ceil((p / 100) * sorted.length) - 1)] ?? NaN;

describe('a dyno flooding its output (yes)', () => {
  it('leaves GET /apps/:app p99 under 100 ms and the node RSS flat; the app gets its rate and an L10 line', async () => {
    const pid = berthPid();
    const idle = await timings(50, 20_000);
    await api.ok('PATCH', `/apps/${APP}/formation`, { updates: [{ type: 'flood', quantity: 1 }] });
    await until('the flood dyno up', async () => ((await api.ok<{ type: string; state: string }[]>('GET', `/apps/${APP}/dynos`)).some((d) => d.type === 'flood' && d.state === 'up') ? true : undefined));
    await sleep(2000);
    const rss0 = rssMiB(pid);
    const cpu0 = cpuSeconds(pid);
    const t0 = performance.now();
    // Before the rate limit, each request took 300-1,200 ms here: bounded, so a regression fails, not hangs.
    const during = await timings(200, 40_000);
    const cpu = (cpuSeconds(pid) - cpu0) / ((performance.now() - t0) / 1000);
    await sleep(5000);
    const rss1 = rssMiB(pid);
    const figures = { idle: { p50: pct(idle, 50), p99: pct(idle, 99) }, flood: { n: during.length, p50: pct(during, 50), p99: pct(during, 99), max: during.at(-1) }, rssMiB: { start: rss0, after: rss1 }, cpuCores: cpu };
    console.log(`log flood: ${JSON.stringify(figures)}`);
    expect(during).toHaveLength(200);
    expect(pct(during, 99)).toBeLessThan(100);
    expect(rss1 - rss0).toBeLessThan(64);
    const session = await api.ok<{ logplex_url: string }>('POST', `/apps/${APP}/log-sessions`, { lines: 1500 });
    const shown = (await (await fetch(session.logplex_url)).text()).split('\n');
    expect(shown.filter((l) => / app\[flood\.1\]: flood$/.test(l)).length).toBeGreaterThan(1000);
    expect(shown.some((l) => / berth\[logplex\]: Error L10 \(output buffer overflow\): \d+ messages dropped since \S+\.$/.test(l))).toBe(true);
    await api.ok('PATCH', `/apps/${APP}/formation`, { updates: [{ type: 'flood', quantity: 0 }] });
  }, 120_000);
});
