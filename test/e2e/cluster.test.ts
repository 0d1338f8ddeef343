import { chmodSync, mkdtempSync, readdirSync, readFileSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { openStore, type Store } from '../../src/store/index.js';
import { apiClient } from '../support/api.js';
import { runCli } from '../support/cli.js';
import { appRepo, git } from '../support/e2e.js';
import { dialFrom, httpTo, labNetworkName, startAgentIn, startBerthIn, type LabAgentProcess, type LabBerthProcess } from '../support/lab-berth.js';
import { createLab, startEtcdIn, type Lab, type LabHost } from '../support/netlab.js';
import { untilWith } from '../support/until.js';
import { removeTestDir } from '../support/cleanup.js';

/**
 * A cluster of four machines, each a network namespace of a lab (test/support/netlab.ts) with a
 * kernel network of its own: etcd and `berth up --no-agent` (controller, scheduler, router,
 * builder) on the first, a `berth agent` on each of the other three, joined with the cluster token
 * — the way a real cluster joins. Dynos get overlay addresses in their machine's subnet, and the
 * router on the first machine reaches them across machines over VXLAN.
 *
 * The test process talks to the first machine through the lab's gateway (API, router, store); the
 * overlay is routed only inside the lab, so dynos are dialled from the first machine.
 */
const ADMIN = 'cluster-admin-token-0123456789abcdef';
const TTL = 2;
const OVERLAY = '10.244.0.0/16';
const NAMES = ['m1', 'm2', 'm3'] as const;
const APP_HOST = 'spread.berth.localhost';
let lab: Lab;
let etcd: { url: string; stop(): Promise<void> } | undefined;
let berth: LabBerthProcess;
let dir: string;
let store: Store;
const agents = new Map<string, LabAgentProcess>();

const client = apiClient(() => berth.apiUrl, ADMIN);
const api = client.ok;
const waitFor = untilWith({ timeoutMs: 60_000, intervalMs: 100, context: () => `${berth?.stderr().slice(-2000)}\n${[...agents.values()].map((a) => a.stderr().slice(-1500)).join('\n')}` });

/** The first machine: etcd, controller, router, builder. Machine `mN` runs on host N. */
const platformHost = (): LabHost => lab.hosts[0]!;
const hostOf = (name: string): LabHost => lab.hosts[NAMES.indexOf(name as (typeof NAMES)[number]) + 1]!;
const networkOf = (name: string): string => labNetworkName(lab, 'a', NAMES.indexOf(name as (typeof NAMES)[number]) + 1);

function agentArgs(name: string): string[] {
  return ['--controller', berth.apiUrl, '--store-insecure', '--token-file', join(dir, 'data', 'cluster.token'), '--name', name, '--data-dir', join(dir, name), '--ttl', String(TTL), '--network-name', networkOf(name)];
}

async function push(app: string, files: Record<string, string>): Promise<{ code: number; out: string }> {
  const repo = join(dir, `repo-${app}`);
  await appRepo(repo, berth.apiUrl, ADMIN, app, files);
  return git(repo, 'push', 'berth', 'main');
}

/** A request through the router on the first machine, from the test process (through the gateway). */
const routed = (host: string): Promise<{ status: number; body: string }> => httpTo({ address: platformHost().address, port: Number(berth.summary.http_port), host });
/** The status of a request through the router to an app's hostname (0: no answer). */
const viaRouter = (host: string): Promise<number> => routed(host).then((r) => r.status, () => 0);

interface Dyno {
  name: string;
  state: string;
  machine?: string;
}
interface Node {
  id: string;
  name: string;
  address: string;
  subnet: string | null;
  backend: string | null;
}
interface Status {
  name: string;
  state: string;
  machine: string;
  port: number | null;
  address?: string | null;
}
const machineOf = (dynos: Dyno[]): Map<string, string> => new Map(dynos.map((d) => [d.name, String(d.machine)]));

const endpoints = async (app: string): Promise<string[]> => (await store.range(`/berth/services/${app}/`, { prefix: true })).kvs.map((kv) => kv.value);
/** Dyno status records, of one app or (without `app`) of every app. */
const statuses = async (app?: string): Promise<Status[]> => (await store.range(app ? `/berth/status/${app}.` : '/berth/status/', { prefix: true })).kvs.map((kv) => JSON.parse(kv.value) as Status);

function ipv4(a: string): number {
  return a.split('.').reduce((n, o) => n * 256 + Number(o), 0);
}
/** Whether `address` lies in `cidr` (IPv4). */
function within(address: string, cidr: string): boolean {
  const [base, len] = cidr.split('/');
  const size = 2 ** (32 - Number(len));
  return Math.floor(ipv4(address) / size) === Math.floor(ipv4(base ?? '') / size);
}

/** What a dyno's endpoint answers when dialled from the first machine (undefined: nothing did). */
const dial = async (endpoint: string): Promise<string | undefined> => (await dialFrom(platformHost(), endpoint))?.body;

/** Dyno namespaces an agent's network made (`<network name>-d<8 hex>`), by the kernel's list. */
const dynoNamespaces = (network: string): string[] => readdirSync('/run/netns').filter((n) => new RegExp(`^${network}-d[0-9a-f]{8}$`).test(n));

beforeAll(async () => {
  dir = mkdtempSync(join(tmpdir(), 'berth-cluster-'));
  chmodSync(dir, 0o755);
  lab = await createLab({ hosts: 4, gateway: true });
  const h0 = platformHost();
  etcd = await startEtcdIn(h0, { dataDir: join(dir, 'etcd') });
  const storeUrl = etcd.url.replace('http://', 'etcd://');
  berth = await startBerthIn(
    h0,
    ['--store', storeUrl, '--store-insecure', '--data-dir', join(dir, 'data'), '--no-agent', '--overlay', OVERLAY, '--backend', 'vxlan', '--network-name', labNetworkName(lab, 'b', 0), '--public-ip', h0.address],
    { BERTH_BOOTSTRAP_TOKEN: ADMIN },
  );
  store = openStore(storeUrl, { insecure: true });
  for (const name of NAMES) agents.set(name, await startAgentIn(hostOf(name), agentArgs(name)));
}, 240_000);
afterAll(async () => {
  // Agents first (they remove their dynos' namespaces), then the platform and its store; the lab
  // kills whatever is left in its hosts and removes every namespace named with its prefix.
  await Promise.allSettled([...agents.values()].map((a) => a.stop()));
  await berth?.stop().catch(() => undefined);
  await store?.close().catch(() => undefined);
  await etcd?.stop().catch(() => undefined);
  await lab?.destroy();
  await removeTestDir(dir);
}, 120_000);

describe('a cluster of three agents on machines of their own', () => {
  it('joins only with the cluster token, which is kept private', async () => {
    expect(readFileSync(join(dir, 'data', 'cluster.token'), 'utf8')).toMatch(/^berth_[0-9a-f]{48}\n$/);
    const nodes = await api<{ name: string; state: string }[]>('GET', '/berth/machines');
    expect(nodes.map((n) => n.name).sort()).toEqual(['m1', 'm2', 'm3']);
    const intruder = ['--controller', berth.apiUrl, '--token', 'berth_not-the-token-at-all', '--name', 'intruder', '--data-dir', join(dir, 'intruder'), '--network-name', labNetworkName(lab, 'x', 9)];
    await expect(startAgentIn(lab.hosts[3]!, intruder)).rejects.toThrow(/refused to let this agent join: Invalid cluster token/);
    // Nothing a user token can do reaches the agents' routes.
    expect((await client('POST', '/internal/cluster/join', { name: 'x' })).status).toBe(401);
  });

  it('berth nodes shows each machine at its own address with a subnet of its own, on vxlan', async () => {
    const cli = await runCli({ env: { BERTH_API_URL: berth.apiUrl, BERTH_API_KEY: ADMIN }, cwd: dir, home: dir }, ['nodes', '--json']);
    expect(cli.code, cli.err).toBe(0);
    const nodes = (JSON.parse(cli.out) as Node[]).sort((a, b) => a.name.localeCompare(b.name));
    expect(nodes.map((n) => [n.name, n.address, n.backend])).toEqual(NAMES.map((name) => [name, hostOf(name).address, 'vxlan']));
    const subnets = nodes.map((n) => n.subnet ?? '');
    expect(new Set(subnets).size).toBe(3);
    for (const s of subnets) {
      expect(s).toMatch(/^10\.244\.\d{1,3}\.0\/24$/);
      expect(within(s.split('/')[0] ?? '', OVERLAY)).toBe(true);
    }
    // What each agent printed when it joined is what the cluster lists.
    for (const n of nodes) expect([agents.get(n.name)?.summary.subnet, agents.get(n.name)?.summary.backend]).toEqual([n.subnet, 'vxlan']);
    // The platform's own machine (builds, one-off dynos) has a subnet too, apart from theirs.
    const platform = (berth.summary.network as { subnet: string; backend: string } | null) ?? { subnet: '', backend: '' };
    expect(platform.backend).toBe('vxlan');
    expect(subnets).not.toContain(platform.subnet);
  });

  it('spreads web=3 one per machine on overlay addresses, routed across machines, and heals after an agent is SIGKILLed', async () => {
    await api('POST', '/apps', { name: 'spread' });
    const server = `require('http').createServer((q, s) => s.end('hi from ' + process.env.DYNO)).listen(process.env.PORT, () => console.log('listening on', process.env.PORT));\n`;
    const pushed = await push('spread', { 'server.js': server, Procfile: 'web: node server.js\n' });
    expect(pushed.code, pushed.out).toBe(0);
    await api('PATCH', '/apps/spread/formation', { updates: [{ type: 'web', quantity: 3 }] });
    const up = await waitFor('three dynos up', async () => {
      const dynos = await api<Dyno[]>('GET', '/apps/spread/dynos');
      return dynos.length === 3 && dynos.every((d) => d.state === 'up') ? dynos : undefined;
    }, 90_000);
    const placed = machineOf(up);
    expect(new Set(placed.values()).size).toBe(3);

    // Every published endpoint is an overlay address in the subnet of the machine running the dyno.
    const subnetOf = new Map((await api<Node[]>('GET', '/berth/machines')).map((m) => [m.id, m.subnet ?? '']));
    const eps = await waitFor('three endpoints', async () => {
      const list = await endpoints('spread');
      return list.length === 3 ? list : undefined;
    });
    const reports = await statuses('spread');
    for (const ep of eps) {
      const [address, port] = ep.split(':');
      const report = reports.find((st) => st.address === address);
      expect(report, `a status naming ${ep}`).toBeDefined();
      expect(report?.port).toBe(Number(port));
      expect(within(address ?? '', subnetOf.get(report?.machine ?? '') ?? ''), `${ep} in ${subnetOf.get(report?.machine ?? '')}`).toBe(true);
    }

    // The router on the first machine reaches each of them on the other three, over VXLAN: the
    // first machine's route to every endpoint leaves by its network's VXLAN device.
    const vxlan = `${labNetworkName(lab, 'b', 0)}.vx`;
    for (const ep of eps) {
      const route = await platformHost().exec('ip', ['-o', '-4', 'route', 'get', ep.split(':')[0] ?? '']);
      expect(route.stdout, route.stderr).toContain(` dev ${vxlan} `);
    }
    const seen = new Set<string>();
    await waitFor('answers from all three dynos through the router', async () => {
      const r = await routed(APP_HOST).catch(() => undefined);
      if (r?.status === 200) seen.add(r.body);
      return seen.size === 3 ? true : undefined;
    });
    expect([...seen].sort()).toEqual(['hi from web.1', 'hi from web.2', 'hi from web.3']);

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
    // Every published endpoint answers (dialled from the first machine), none on the dead machine's subnet.
    const after = await waitFor('three endpoints again', async () => {
      const list = await endpoints('spread');
      return list.length === 3 ? list : undefined;
    });
    expect(after.filter((ep) => within(ep.split(':')[0] ?? '', subnetOf.get(victim?.id ?? '') ?? ''))).toEqual([]);
    const answers = await Promise.all(after.map(dial));
    expect(answers.sort()).toEqual(['hi from web.1', 'hi from web.2', 'hi from web.3']);
    agents.delete(victim?.name ?? '');
  }, 240_000);

  it('restarts one dyno, then a whole type, new dynos up before old ones stop, under load', async () => {
    const before = await api<(Dyno & { release: { version: number } })[]>('GET', '/apps/spread/dynos');
    expect(before.map((d) => d.state)).toEqual(['up', 'up', 'up']);
    await waitFor('routed', async () => ((await viaRouter(APP_HOST)) === 200 ? true : undefined));
    let loading = true;
    const codes: number[] = [];
    const load = (async () => {
      while (loading && codes.length < 20_000) codes.push(await viaRouter(APP_HOST));
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
    }, 90_000);
    await waitFor('old dynos gone', async () => ((await api<Dyno[]>('GET', '/apps/spread/dynos')).length === 3 ? true : undefined));
    loading = false;
    await load;
    expect(codes.length).toBeGreaterThan(20);
    expect(codes.filter((st) => st !== 200)).toEqual([]);
    // A dyno the formation does not have is not found, as on Heroku.
    expect((await client('DELETE', '/apps/spread/dynos/web.9')).status).toBe(404);
  }, 180_000);

  it('marks a release whose dynos never come up failed, and the previous release keeps serving', async () => {
    const repo = join(dir, 'repo-spread');
    writeFileSync(join(repo, 'server.js'), "console.error('missing DATABASE_URL'); process.exit(1);\n");
    await git(repo, '-c', 'user.email=a@b', '-c', 'user.name=a', 'commit', '-qam', 'broken');
    let loading = true;
    const codes: number[] = [];
    const load = (async () => {
      while (loading && codes.length < 20_000) codes.push(await viaRouter(APP_HOST));
    })();
    expect((await git(repo, 'push', 'berth', 'main')).code).toBe(0);
    const failed = await waitFor('release v3 failed', async () => {
      const releases = await api<{ version: number; status: string; current: boolean; failure_reason: string | null }[]>('GET', '/apps/spread/releases');
      const v3 = releases.find((r) => r.version === 3);
      return v3?.status === 'failed' ? { v3, current: releases.find((r) => r.current)?.version } : undefined;
    }, 120_000);
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
    expect(codes.length).toBeGreaterThan(20);
    expect(codes.filter((st) => st !== 200)).toEqual([]);
  }, 180_000);

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
  }, 120_000);

  it('drops the dynos a frozen agent lost while it was away, when it comes back', async () => {
    const before = await api<(Dyno & { release: { version: number } })[]>('GET', '/apps/spread/dynos');
    const machines = await api<{ id: string; name: string }[]>('GET', '/berth/machines');
    const frozen = machines.find((m) => before.some((d) => d.machine === m.id && d.state === 'up'));
    const agent = agents.get(frozen?.name ?? '');
    expect(agent).toBeDefined();
    const old = (await statuses('spread')).filter((st) => st.machine === frozen?.id).map((st) => `${st.address}:${st.port}`);
    expect(old.length).toBeGreaterThan(0);
    for (const ep of old) expect(await dial(ep)).toMatch(/^hi from web\.\d$/);
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
    // Its old dynos stop: nothing answers as a spread dyno at their addresses any more.
    await waitFor('its old dynos stopped', async () => ((await Promise.all(old.map(dial))).every((a) => !a?.startsWith('hi from')) ? true : undefined), 45_000);
    const after = await api<Dyno[]>('GET', '/apps/spread/dynos');
    expect(after.filter((d) => d.machine === frozen?.id)).toEqual([]);
  }, 120_000);

  it('an agent restarted after SIGKILL (same name and data dir) keeps its subnet, runs its units again and leaves no orphans', async () => {
    const machines = await api<Node[]>('GET', '/berth/machines');
    const dynos = await api<Dyno[]>('GET', '/apps/spread/dynos');
    const host = machines.find((m) => dynos.some((d) => d.machine === m.id));
    const agent = agents.get(host?.name ?? '');
    expect(agent).toBeDefined();
    const network = networkOf(host?.name ?? '');
    const before = (await statuses('spread')).filter((st) => st.machine === host?.id).map((st) => `${st.address}:${st.port}`);
    expect(before.length).toBeGreaterThan(0);
    await agent?.kill();
    // Back within the TTL, as a supervisor (systemd) would bring it: same machine id, same units.
    const again = await startAgentIn(hostOf(host?.name ?? ''), agentArgs(host?.name ?? ''));
    agents.set(host?.name ?? '', again);
    expect(again.summary.machine_id).toBe(host?.id);
    expect(again.summary.subnet).toBe(host?.subnet);
    await waitFor('every web dyno up and answering', async () => {
      const list = await api<Dyno[]>('GET', '/apps/spread/dynos');
      const eps = await endpoints('spread');
      if (list.length !== 3 || !list.every((d) => d.state === 'up') || eps.length !== 3) return undefined;
      const answers = await Promise.all(eps.map(dial));
      return answers.every((a) => a?.startsWith('hi from')) ? true : undefined;
    }, 60_000);
    const listed = await api<Node[]>('GET', '/berth/machines');
    expect(listed.find((m) => m.id === host?.id)?.subnet).toBe(host?.subnet);
    // The killed agent's dynos died with it (bwrap --die-with-parent) and the new agent reaped
    // their namespaces: an old address answers only if a dyno the new agent started holds it, and
    // the agent's network keeps exactly one namespace per dyno it runs.
    const live = (await statuses('spread')).filter((st) => st.machine === host?.id);
    const current = new Set(live.map((st) => `${st.address}:${st.port}`));
    const stray = (await Promise.all(before.filter((ep) => !current.has(ep)).map(async (ep) => ((await dial(ep)) !== undefined ? ep : undefined)))).filter(Boolean);
    expect(stray).toEqual([]);
    const running = (await statuses()).filter((st) => st.machine === host?.id).length;
    await waitFor('one namespace per dyno of the machine', () => (dynoNamespaces(network).length === running ? true : undefined), 30_000);
  }, 150_000);

  it('backs a crash-looping dyno off and says why', async () => {
    await api('POST', '/apps', { name: 'crashy' });
    const pushed = await push('crashy', { 'crash.js': "console.log('boom'); process.exit(3);\n", Procfile: 'web: node crash.js\n' });
    expect(pushed.code, pushed.out).toBe(0);
    const crashed = await waitFor('crashed with restarts', async () => {
      const [d] = await api<(Dyno & { restarts: number; reason: string })[]>('GET', '/apps/crashy/dynos');
      return d?.state === 'crashed' && d.restarts >= 2 ? d : undefined;
    }, 60_000);
    expect(crashed.reason).toBe('Process exited with status 3');
    // Backoff doubles from 1 s: in the next 4 s at most two more attempts, not dozens.
    await new Promise((r) => setTimeout(r, 4000));
    const [later] = await api<{ restarts: number }[]>('GET', '/apps/crashy/dynos');
    expect(later?.restarts).toBeLessThanOrEqual(crashed.restarts + 2);
    const session = await api<{ logplex_url: string }>('POST', '/apps/crashy/log-sessions', { lines: 100 });
    const text = await (await fetch(session.logplex_url)).text();
    expect(text).toMatch(/app\[web\.1\]: boom/);
    expect(text).toMatch(/berth\[web\.1\]: Process exited with status 3/);
  }, 150_000);
});
