import { chmodSync, mkdtempSync, readFileSync, rmSync, writeFileSync } from 'node:fs';
import { execFileSync } from 'node:child_process';
import { request } from 'node:http';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { openStore, type Store } from '../../src/store/index.js';
import { startAgent, startBerth, type AgentProcess, type BerthProcess } from '../support/berth-process.js';
import { apiClient } from '../support/api.js';
import { appRepo, git } from '../support/e2e.js';
import { call } from '../support/router.js';
import { untilWith } from '../support/until.js';

/**
 * A cluster on one host: `berth up --no-agent` and three `berth agent` processes with their own
 * names, port ranges and data dirs, joined with the cluster token — the way a real cluster joins,
 * minus the network.
 */
const ADMIN = 'cluster-admin-token-0123456789abcdef';
const TTL = 2;
let berth: BerthProcess;
let dir: string;
let store: Store;
const agents = new Map<string, AgentProcess>();

const client = apiClient(() => berth.apiUrl, ADMIN);
const api = client.ok;
const waitFor = untilWith({ timeoutMs: 60_000, intervalMs: 100, context: () => `${berth.stderr().slice(-2000)}\n${[...agents.values()].map((a) => a.stderr().slice(-1500)).join('\n')}` });

async function push(app: string, files: Record<string, string>): Promise<{ code: number; out: string }> {
  const repo = join(dir, `repo-${app}`);
  await appRepo(repo, berth.apiUrl, ADMIN, app, files);
  return git(repo, 'push', 'berth', 'main');
}

/** The status of a request through the router to an app's hostname (0: no answer). */
const viaRouter = (host: string): Promise<number> => call({ port: Number(berth.summary.http_port), host }).then((r) => r.status, () => 0);

interface Dyno {
  name: string;
  state: string;
  machine?: string;
}
const machineOf = (dynos: Dyno[]): Map<string, string> => new Map(dynos.map((d) => [d.name, String(d.machine)]));

const ports = (i: number): string => `${21000 + i * 100}-${21000 + i * 100 + 99}`;

beforeAll(async () => {
  dir = mkdtempSync(join(tmpdir(), 'berth-cluster-'));
  chmodSync(dir, 0o755);
  berth = await startBerth(['--data-dir', join(dir, 'data'), '--no-agent'], { BERTH_BOOTSTRAP_TOKEN: ADMIN });
  store = openStore(`sqlite://${join(dir, 'data', 'state.db')}`);
  const tokenFile = join(dir, 'data', 'cluster.token');
  for (const [i, name] of ['m1', 'm2', 'm3'].entries()) {
    agents.set(name, await startAgent(['--controller', berth.apiUrl, '--token-file', tokenFile, '--name', name, '--ports', ports(i), '--data-dir', join(dir, name), '--ttl', String(TTL)]));
  }
}, 120_000);
afterAll(async () => {
  await Promise.all([...agents.values()].map((a) => a.stop()));
  await store?.close();
  await berth?.stop();
  rmSync(dir, { recursive: true, force: true });
});

describe('a cluster of three agents', () => {
  it('joins only with the cluster token, which is kept private', async () => {
    expect(readFileSync(join(dir, 'data', 'cluster.token'), 'utf8')).toMatch(/^berth_[0-9a-f]{48}\n$/);
    const nodes = await api<{ name: string; state: string }[]>('GET', '/berth/machines');
    expect(nodes.map((n) => n.name).sort()).toEqual(['m1', 'm2', 'm3']);
    await expect(startAgent(['--controller', berth.apiUrl, '--token', 'berth_not-the-token-at-all', '--name', 'intruder', '--ports', ports(5), '--data-dir', join(dir, 'intruder')])).rejects.toThrow(/refused to let this agent join: Invalid cluster token/);
    // Nothing a user token can do reaches the agents' routes.
    expect((await client('POST', '/internal/cluster/join', { name: 'x' })).status).toBe(401);
  });

  it('spreads web=3 one per machine, and heals after an agent is SIGKILLed', async () => {
    await api('POST', '/apps', { name: 'spread' });
    const server = `require('http').createServer((q, s) => s.end('hi from ' + process.env.DYNO)).listen(process.env.PORT, () => console.log('listening on', process.env.PORT));\n`;
    const pushed = await push('spread', { 'server.js': server, Procfile: 'web: node server.js\n' });
    expect(pushed.code, pushed.out).toBe(0);
    await api('PATCH', '/apps/spread/formation', { updates: [{ type: 'web', quantity: 3 }] });
    const up = await waitFor('three dynos up', async () => {
      const dynos = await api<Dyno[]>('GET', '/apps/spread/dynos');
      return dynos.length === 3 && dynos.every((d) => d.state === 'up') ? dynos : undefined;
    });
    const placed = machineOf(up);
    expect(new Set(placed.values()).size).toBe(3);

    // Lines from dynos on other machines reach the app's log stream through the controller.
    const session = await api<{ logplex_url: string }>('POST', '/apps/spread/log-sessions', { lines: 200 });
    expect(await waitFor('remote log lines', async () => {
      const text = await (await fetch(session.logplex_url)).text();
      // Sent in batches, a few hundred ms apart: wait for both kinds of line.
      return /app\[web\.\d\]: listening on \d+/.test(text) && /berth\[web\.\d\]: State changed from starting to up/.test(text) ? text : undefined;
    })).toMatch(/berth\[web\.\d\]: Starting process with command `node server.js`/);

    // Kill the machine running web.2; its dyno dies with it (die-with-parent) and its lease expires.
    const machines = await api<{ id: string; name: string }[]>('GET', '/berth/machines');
    const victim = machines.find((m) => m.id === placed.get('web.2'));
    expect(victim).toBeDefined();
    const killedAt = Date.now();
    await agents.get(victim?.name ?? '')?.kill();
    const healed = await waitFor('web.2 up elsewhere', async () => {
      const dynos = await api<Dyno[]>('GET', '/apps/spread/dynos');
      const moved = dynos.find((d) => d.name === 'web.2');
      return dynos.length === 3 && moved?.state === 'up' && moved.machine !== victim?.id ? dynos : undefined;
    }, 60_000);
    const took = Date.now() - killedAt;
    // The bound: 2×TTL plus the boot time (a Node.js hello world boots in well under 10 s).
    expect(took).toBeLessThan(2 * TTL * 1000 + 10_000);
    expect(machineOf(healed).get('web.1')).toBe(placed.get('web.1'));
    // Every published endpoint answers, and none points at the dead machine's ports.
    const eps = (await store.range('/berth/services/spread/', { prefix: true })).kvs.map((kv) => kv.value);
    expect(eps).toHaveLength(3);
    const answers = await Promise.all(eps.map(async (ep) => (await fetch(`http://${ep}/`)).text()));
    expect(answers.sort()).toEqual(['hi from web.1', 'hi from web.2', 'hi from web.3']);
    agents.delete(victim?.name ?? '');
  }, 180_000);

  it('restarts one dyno, then a whole type, new dynos up before old ones stop, under load', async () => {
    const before = await api<(Dyno & { release: { version: number } })[]>('GET', '/apps/spread/dynos');
    expect(before.map((d) => d.state)).toEqual(['up', 'up', 'up']);
    await waitFor('routed', async () => ((await viaRouter('spread.berth.localhost')) === 200 ? true : undefined));
    let loading = true;
    const statuses: number[] = [];
    const load = (async () => {
      while (loading && statuses.length < 20_000) statuses.push(await viaRouter('spread.berth.localhost'));
    })();
    const unitsOf = async (): Promise<string[]> => (await store.range('/berth/services/spread/', { prefix: true })).kvs.map((kv) => kv.key.split('/').pop() ?? '').sort();
    expect((await client('DELETE', '/apps/spread/dynos/web.2')).status).toBe(202);
    await waitFor('web.2 replaced', async () => {
      const units = await unitsOf();
      return units.length === 3 && units.includes('spread.web.2@v2-1') ? units : undefined;
    });
    expect(await unitsOf()).toEqual(['spread.web.1@v2', 'spread.web.2@v2-1', 'spread.web.3@v2']);
    expect((await client('POST', '/apps/spread/formations/web/actions/stop')).status).toBe(202);
    await waitFor('every web dyno replaced', async () => {
      const units = await unitsOf();
      return units.join() === 'spread.web.1@v2-1,spread.web.2@v2-2,spread.web.3@v2-1' ? units : undefined;
    });
    await waitFor('old dynos gone', async () => ((await api<Dyno[]>('GET', '/apps/spread/dynos')).length === 3 ? true : undefined));
    loading = false;
    await load;
    expect(statuses.length).toBeGreaterThan(20);
    expect(statuses.filter((st) => st !== 200)).toEqual([]);
    // A dyno the formation does not have is not found, as on Heroku.
    expect((await client('DELETE', '/apps/spread/dynos/web.9')).status).toBe(404);
  }, 120_000);

  it('marks a release whose dynos never come up failed, and the previous release keeps serving', async () => {
    const repo = join(dir, 'repo-spread');
    writeFileSync(join(repo, 'server.js'), "console.error('missing DATABASE_URL'); process.exit(1);\n");
    await git(repo, '-c', 'user.email=a@b', '-c', 'user.name=a', 'commit', '-qam', 'broken');
    let loading = true;
    const statuses: number[] = [];
    const load = (async () => {
      while (loading && statuses.length < 20_000) statuses.push(await viaRouter('spread.berth.localhost'));
    })();
    expect((await git(repo, 'push', 'berth', 'main')).code).toBe(0);
    const failed = await waitFor('release v3 failed', async () => {
      const releases = await api<{ version: number; status: string; current: boolean; failure_reason: string | null }[]>('GET', '/apps/spread/releases');
      const v3 = releases.find((r) => r.version === 3);
      return v3?.status === 'failed' ? { v3, current: releases.find((r) => r.current)?.version } : undefined;
    }, 90_000);
    expect(failed.v3.failure_reason).toMatch(/^web\.\d crashed \d+ times before it was up: Process exited with status 1$/);
    expect(failed.current).toBe(2);
    // The crashing dynos go; the v2 ones never stopped.
    const dynos = await waitFor('only v2 dynos', async () => {
      const list = await api<(Dyno & { release: { version: number } })[]>('GET', '/apps/spread/dynos');
      return list.length === 3 && list.every((d) => d.release.version === 2 && d.state === 'up') ? list : undefined;
    });
    expect(dynos).toHaveLength(3);
    loading = false;
    await load;
    expect(statuses.length).toBeGreaterThan(20);
    expect(statuses.filter((st) => st !== 200)).toEqual([]);
  }, 150_000);

  it('shows a unit no machine can take as pending, with the reason, until one can', async () => {
    await api('POST', '/apps', { name: 'martian' });
    await api('PATCH', '/apps/martian/tags', { region: 'mars' });
    const server = `require('http').createServer((q, s) => s.end('ok')).listen(process.env.PORT);\n`;
    expect((await push('martian', { 'server.js': server, Procfile: 'web: node server.js\n' })).code).toBe(0);
    const [pending] = await waitFor('pending', async () => {
      const list = await api<(Dyno & { reason: string })[]>('GET', '/apps/martian/dynos');
      return list[0]?.state === 'pending' ? list : undefined;
    });
    expect(pending?.reason).toBe('no machine matches tags region=mars');
    await api('PATCH', '/apps/martian/tags', { region: null });
    await waitFor('up once the tag is gone', async () => {
      const list = await api<Dyno[]>('GET', '/apps/martian/dynos');
      return list.length === 1 && list[0]?.state === 'up' ? list : undefined;
    });
  }, 60_000);

  it('drops the dynos a frozen agent lost while it was away, when it comes back', async () => {
    const before = await api<(Dyno & { release: { version: number } })[]>('GET', '/apps/spread/dynos');
    const machines = await api<{ id: string; name: string }[]>('GET', '/berth/machines');
    const frozen = machines.find((m) => before.some((d) => d.machine === m.id && d.state === 'up'));
    const agent = agents.get(frozen?.name ?? '');
    expect(agent).toBeDefined();
    const ports = (await store.range('/berth/status/spread.', { prefix: true })).kvs
      .map((kv) => JSON.parse(kv.value) as { machine: string; port: number })
      .filter((st) => st.machine === frozen?.id)
      .map((st) => st.port);
    expect(ports.length).toBeGreaterThan(0);
    process.kill(agent?.pid ?? 0, 'SIGSTOP');
    try {
      // Its lease expires; its units move; its dynos still run, unpublished, on the frozen machine.
      await waitFor('units moved away', async () => {
        const list = await api<Dyno[]>('GET', '/apps/spread/dynos');
        return list.length === 3 && list.every((d) => d.state === 'up' && d.machine !== frozen?.id) ? list : undefined;
      });
    } finally {
      process.kill(agent?.pid ?? 0, 'SIGCONT');
    }
    await waitFor('registered again', async () => ((await api<{ id: string }[]>('GET', '/berth/machines')).some((m) => m.id === frozen?.id) ? true : undefined));
    const open = (port: number): Promise<boolean> =>
      new Promise((resolve) => {
        const req = request({ host: '127.0.0.1', port, path: '/', agent: false }, (res) => (res.resume(), resolve(true)));
        req.on('error', () => resolve(false));
        req.end();
      });
    await waitFor('its old dynos stopped', async () => ((await Promise.all(ports.map(open))).every((o) => !o) ? true : undefined), 45_000);
    const after = await api<Dyno[]>('GET', '/apps/spread/dynos');
    expect(after.filter((d) => d.machine === frozen?.id)).toEqual([]);
  }, 90_000);

  it('an agent restarted after SIGKILL (same name and data dir) runs its units again and leaves no orphans', async () => {
    const machines = await api<{ id: string; name: string }[]>('GET', '/berth/machines');
    const dynos = await api<Dyno[]>('GET', '/apps/spread/dynos');
    const host = machines.find((m) => dynos.some((d) => d.machine === m.id));
    const agent = agents.get(host?.name ?? '');
    expect(agent).toBeDefined();
    const index = ['m1', 'm2', 'm3'].indexOf(host?.name ?? '');
    const before = (await store.range('/berth/status/spread.', { prefix: true })).kvs.map((kv) => JSON.parse(kv.value) as { machine: string; port: number }).filter((st) => st.machine === host?.id);
    await agent?.kill();
    // Back within the TTL, as a supervisor (systemd) would bring it: same machine id, same units.
    const again = await startAgent(['--controller', berth.apiUrl, '--token-file', join(dir, 'data', 'cluster.token'), '--name', host?.name ?? '', '--ports', ports(index), '--data-dir', join(dir, host?.name ?? ''), '--ttl', String(TTL)]);
    agents.set(host?.name ?? '', again);
    expect(again.summary.machine_id).toBe(host?.id);
    await waitFor('every web dyno up, old ports gone or reused by the new ones', async () => {
      const list = await api<Dyno[]>('GET', '/apps/spread/dynos');
      const eps = (await store.range('/berth/services/spread/', { prefix: true })).kvs.map((kv) => kv.value);
      if (list.length !== 3 || !list.every((d) => d.state === 'up') || eps.length !== 3) return undefined;
      const answers = await Promise.all(eps.map(async (ep) => (await fetch(`http://${ep}/`)).text()));
      return answers.every((a) => a.startsWith('hi from')) ? true : undefined;
    }, 30_000);
    // The killed agent's dynos died with it (bwrap --die-with-parent): a port they held is closed,
    // or belongs to a dyno the new agent started.
    const live = new Set((await store.range('/berth/status/', { prefix: true })).kvs.map((kv) => JSON.parse(kv.value) as { machine: string; port: number | null }).filter((st) => st.machine === host?.id).map((st) => st.port));
    const listening = execFileSync('ss', ['-Hltn']).toString();
    const stray = before.map((st) => st.port).filter((p) => !live.has(p) && listening.includes(`:${p} `));
    expect(stray).toEqual([]);
  }, 90_000);

  it('backs a crash-looping dyno off and says why', async () => {
    await api('POST', '/apps', { name: 'crashy' });
    const pushed = await push('crashy', { 'crash.js': "console.log('boom'); process.exit(3);\n", Procfile: 'web: node crash.js\n' });
    expect(pushed.code, pushed.out).toBe(0);
    const crashed = await waitFor('crashed with restarts', async () => {
      const [d] = await api<(Dyno & { restarts: number; reason: string })[]>('GET', '/apps/crashy/dynos');
      return d?.state === 'crashed' && d.restarts >= 2 ? d : undefined;
    }, 30_000);
    expect(crashed.reason).toBe('Process exited with status 3');
    // Backoff doubles from 1 s: in the next 4 s at most two more attempts, not dozens.
    await new Promise((r) => setTimeout(r, 4000));
    const [later] = await api<{ restarts: number }[]>('GET', '/apps/crashy/dynos');
    expect(later?.restarts).toBeLessThanOrEqual(crashed.restarts + 2);
    const session = await api<{ logplex_url: string }>('POST', '/apps/crashy/log-sessions', { lines: 100 });
    const text = await (await fetch(session.logplex_url)).text();
    expect(text).toMatch(/app\[web\.1\]: boom/);
    expect(text).toMatch(/berth\[web\.1\]: Process exited with status 3/);
  }, 120_000);
});
