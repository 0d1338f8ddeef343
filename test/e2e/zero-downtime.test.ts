import { spawn } from 'node:child_process';
import { chmodSync, mkdtempSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { routersCaughtUp } from '../../src/domain/routers.js';
import { openStore, type Store } from '../../src/store/index.js';
import { startAgent, startBerth, type AgentProcess, type BerthProcess } from '../support/berth-process.js';
import { apiClient } from '../support/api.js';
import { appRepo, git } from '../support/e2e.js';
import { untilWith } from '../support/until.js';
import { removeTestDir } from '../support/cleanup.js';

/**
 * The router issue's promise, end to end: real nginx in front of dynos on two `berth agent`
 * machines, 50 connections of continuous load (wrk, bounded in time), and every change a
 * user makes — scale down and up, config, deploy, rollback — drops nothing. Killing a machine
 * loses at most what was in flight on it.
 */
const ADMIN = 'zdt-admin-token-0123456789abcdef0';
const HOST = 'busy.berth.localhost';
const CONNECTIONS = 50;
let berth: BerthProcess;
let dir: string;
let store: Store;
const agents: AgentProcess[] = [];

const client = apiClient(() => berth.apiUrl, ADMIN);
const api = client.ok;
const waitFor = untilWith({ timeoutMs: 60_000, intervalMs: 100, context: () => berth.stderr().slice(-2000) });

interface Dyno {
  name: string;
  state: string;
  release: { version: number };
}

/**
 * Settled: exactly `n` web dynos, all up, all on `version` (old ones stopped), all published, and
 * every router has applied that: load started before then finds nginx without the app's
 * endpoints (503s for the first few ms after the first dynos come up, which once failed a run).
 */
async function settled(n: number, version: number): Promise<void> {
  const revision = await waitFor(`${n} dynos on v${version}`, async () => {
    const dynos = await api<Dyno[]>('GET', '/apps/busy/dynos');
    const services = await store.range('/berth/services/busy/', { prefix: true });
    // The newest endpoint's write; removed ones were applied before their dynos stopped.
    return dynos.length === n && services.kvs.length === n && dynos.every((d) => d.state === 'up' && d.release.version === version) ? Math.max(...services.kvs.map((kv) => kv.modRevision)) : undefined;
  }, 90_000);
  await waitFor(`the routers at revision ${revision}`, async () => ((await routersCaughtUp(store, revision)) ? true : undefined));
}

const currentVersion = async (): Promise<number> => (await api<{ version: number; current: boolean }[]>('GET', '/apps/busy/releases')).find((r) => r.current)?.version ?? 0;

/** What a load run counted: every socket error and timeout is a request lost. */
interface Load {
  requests: { total: number };
  non2xx: number;
  errors: number;
  timeouts: number;
}

/**
 * Runs `change` under 50 connections of load on the app's hostname; stops the load a moment after.
 * wrk, not autocannon: autocannon now and then counts a keep-alive connection that nginx closes
 * after `keepalive_requests` as an error (platform-notes); wrk reconnects, so each error it counts
 * is a request lost.
 */
async function underLoad(label: string, change: () => Promise<void>): Promise<Load> {
  const wrk = spawn('wrk', ['-t', '2', '-c', String(CONNECTIONS), '-d', '120s', '--timeout', '10s', '-H', `Host: ${HOST}`, `http://127.0.0.1:${String(berth.summary.http_port)}/`], { stdio: ['ignore', 'pipe', 'pipe'] });
  let out = '';
  wrk.stdout.on('data', (d: Buffer) => (out += d.toString()));
  wrk.stderr.on('data', (d: Buffer) => (out += d.toString()));
  const done = new Promise<number | null>((resolve) => wrk.on('exit', resolve));
  try {
    await new Promise((r) => setTimeout(r, 500));
    await change();
    await new Promise((r) => setTimeout(r, 500));
  } finally {
    // SIGINT: wrk stops and prints what it counted.
    wrk.kill('SIGINT');
  }
  await done;
  const num = (re: RegExp): number => Number(re.exec(out)?.[1] ?? 0);
  const total = /(\d+) requests in/.exec(out);
  if (!total) throw new Error(`wrk printed no figures:\n${out}`);
  const sockets = /Socket errors: connect (\d+), read (\d+), write (\d+), timeout (\d+)/.exec(out);
  const r: Load = {
    requests: { total: Number(total[1]) },
    non2xx: num(/Non-2xx or 3xx responses: (\d+)/),
    errors: sockets ? Number(sockets[1]) + Number(sockets[2]) + Number(sockets[3]) : 0,
    timeouts: sockets ? Number(sockets[4]) : 0,
  };
  // The closing figures of a run, on request (tests assert; they do not report by default).
  if (process.env.BERTH_TEST_FIGURES) console.info(label, { requests: r.requests.total, non2xx: r.non2xx, errors: r.errors, timeouts: r.timeouts });
  return r;
}

beforeAll(async () => {
  dir = mkdtempSync(join(tmpdir(), 'berth-zdt-'));
  chmodSync(dir, 0o755);
  berth = await startBerth(['--data-dir', join(dir, 'data'), '--no-agent'], { BERTH_BOOTSTRAP_TOKEN: ADMIN, BERTH_LOG_LEVEL: 'warn' });
  store = openStore(`sqlite://${join(dir, 'data', 'state.db')}`);
  for (const name of ['z1', 'z2']) {
    agents.push(await startAgent(['--controller', berth.apiUrl, '--token-file', join(dir, 'data', 'cluster.token'), '--name', name, '--data-dir', join(dir, name), '--ttl', '2']));
  }
  await api('POST', '/apps', { name: 'busy' });
  await api('PATCH', '/apps/busy/config-vars', { GREETING: 'hello' });
  const repo = join(dir, 'repo');
  await appRepo(repo, berth.apiUrl, ADMIN, 'busy', {
    'server.js': "require('http').createServer((q, s) => s.end(process.env.GREETING + ' from ' + process.env.DYNO)).listen(process.env.PORT);\n",
    Procfile: 'web: node server.js\n',
  });
  const push = await git(repo, 'push', 'berth', 'main');
  if (push.code !== 0) throw new Error(push.out);
  await api('PATCH', '/apps/busy/formation', { updates: [{ type: 'web', quantity: 3 }] });
  await settled(3, await currentVersion());
}, 180_000);
afterAll(async () => {
  await Promise.all(agents.map((a) => a.stop()));
  await store?.close();
  await berth?.stop();
  await removeTestDir(dir);
});

interface Figures {
  requests: number;
  non2xx: number;
  errors: number;
  timeouts: number;
  said?: string[];
}

/**
 * The run's figures; when any request failed, also what the processes said meanwhile (dynos up or
 * stopped, leases lost, router updates retried), so a failure says which step let it through. The
 * app's own log is no help here: the router's lines for the load push everything else out of it.
 */
async function clean(r: Load): Promise<Figures> {
  const figures = { requests: r.requests.total, non2xx: r.non2xx, errors: r.errors, timeouts: r.timeouts };
  if (r.non2xx === 0 && r.errors === 0 && r.timeouts === 0) return figures;
  const notable = (l: string): boolean => /"level":[4-6]0|"msg":"(dyno|lease|re-?regist)/i.test(l);
  const said = [berth.stderr(), ...agents.map((a) => a.stderr())].flatMap((text) => text.split('\n').filter(notable).slice(-12));
  return { ...figures, said };
}

describe('under 50 connections of load, through nginx', () => {
  it('scales 3 → 1 → 3 without a failed request', async () => {
    const version = await currentVersion();
    const r = await underLoad('scale 3-1-3', async () => {
      await api('PATCH', '/apps/busy/formation', { updates: [{ type: 'web', quantity: 1 }] });
      await settled(1, version);
      await api('PATCH', '/apps/busy/formation', { updates: [{ type: 'web', quantity: 3 }] });
      await settled(3, version);
    });
    expect(r.requests.total).toBeGreaterThan(500);
    expect(await clean(r)).toMatchObject({ non2xx: 0, errors: 0, timeouts: 0 });
  }, 180_000);

  it('rolls a config change out without a failed request', async () => {
    const r = await underLoad('config change', async () => {
      await api('PATCH', '/apps/busy/config-vars', { GREETING: 'bonjour' });
      await settled(3, await currentVersion());
    });
    expect(r.requests.total).toBeGreaterThan(500);
    expect(await clean(r)).toMatchObject({ non2xx: 0, errors: 0, timeouts: 0 });
  }, 180_000);

  it('rolls a git push out without a failed request', async () => {
    const repo = join(dir, 'repo');
    writeFileSync(join(repo, 'server.js'), "require('http').createServer((q, s) => s.end('v2 ' + process.env.GREETING + ' from ' + process.env.DYNO)).listen(process.env.PORT);\n");
    await git(repo, '-c', 'user.email=a@b', '-c', 'user.name=a', 'commit', '-qam', 'two');
    const r = await underLoad('git push', async () => {
      const push = await git(repo, 'push', 'berth', 'main');
      expect(push.code, push.out).toBe(0);
      await settled(3, await currentVersion());
    });
    expect(r.requests.total).toBeGreaterThan(500);
    expect(await clean(r)).toMatchObject({ non2xx: 0, errors: 0, timeouts: 0 });
  }, 180_000);

  it('rolls back without a failed request', async () => {
    const releases = await api<{ id: string; version: number; slug: { id: string } | null; current: boolean }[]>('GET', '/apps/busy/releases');
    const current = releases.find((rel) => rel.current)?.version ?? 0;
    // The release before the push: the first build's code with GREETING=bonjour.
    const target = releases.filter((rel) => rel.slug && rel.version < current).pop();
    expect(target).toBeDefined();
    // Before the first build there is nothing to run: refused, not a stopped app.
    const slugless = releases.find((rel) => !rel.slug);
    const refused = await client('POST', '/apps/busy/releases', { release: slugless?.id });
    expect(refused.status).toBe(422);
    const r = await underLoad('rollback', async () => {
      await api('POST', '/apps/busy/releases', { release: target?.id });
      await settled(3, await currentVersion());
    });
    expect(r.requests.total).toBeGreaterThan(500);
    expect(await clean(r)).toMatchObject({ non2xx: 0, errors: 0, timeouts: 0 });
  }, 180_000);

  it('loses at most the requests in flight on a machine that is SIGKILLed, then heals', async () => {
    const version = await currentVersion();
    const r = await underLoad('agent SIGKILL', async () => {
      const dead = String(agents[1]?.summary.machine_id);
      await agents[1]?.kill();
      // Its lease expires (TTL 2 s), then its units start on the survivor.
      await waitFor('the dead machine gone', async () => ((await store.get(`/berth/machines/${dead}`)) ? undefined : true));
      await settled(3, version);
      const statuses = (await store.range('/berth/status/busy.', { prefix: true })).kvs.map((kv) => JSON.parse(kv.value) as { machine: string });
      expect(statuses.filter((st) => st.machine === dead)).toEqual([]);
    });
    const failed = r.non2xx + r.errors + r.timeouts;
    // At most one request per connection can have been on the dead machine when it died.
    expect(failed).toBeLessThanOrEqual(CONNECTIONS);
    expect(r.requests.total).toBeGreaterThan(500);
  }, 180_000);
});
