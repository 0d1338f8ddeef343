import { mkdtempSync, readFileSync, chmodSync } from 'node:fs';
import { createServer } from 'node:http';
import type { AddressInfo } from 'node:net';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { openStore } from '../../src/store/index.js';
import { apiClient } from '../support/api.js';
import { runCli } from '../support/cli.js';
import { appRepo, git } from '../support/e2e.js';
import { httpTo, killHost, labNetworkName, startAgentIn, startBerthIn, type LabAgentProcess, type LabBerthProcess } from '../support/lab-berth.js';
import { createLab, type Lab, type LabHost } from '../support/netlab.js';
import { untilWith } from '../support/until.js';
import { removeTestDir } from '../support/cleanup.js';

/**
 * Three servers on three machines of a lab (network namespaces with kernels' networks of their
 * own), k3s-style: `berth up --cluster-init` on the first, `--server URL --token-file` on the other
 * two. Each runs an etcd member (TLS, client certificates, auth), the API, the builder, the
 * scheduler, an agent and a router. Then the first machine dies whole, and the other two carry on.
 */
const ADMIN = 'ha-admin-token-0123456789abcdef01';
const TTL = 2;
const NAMES = ['s1', 's2', 's3'] as const;
const APP = 'happ';
const APP_HOST = `${APP}.berth.localhost`;
const SERVER = `const code = require('fs').readFileSync('VERSION', 'utf8').trim();\nrequire('http').createServer((q, s) => s.end((process.env.GREETING || 'hi') + ' from ' + process.env.DYNO + ' v' + code)).listen(process.env.PORT, () => console.log('listening on', process.env.PORT));\n`;

let lab: Lab;
let dir: string;
const servers = new Map<string, LabBerthProcess>();
let agent: LabAgentProcess | undefined;

const host = (name: string): LabHost => lab.hosts[NAMES.indexOf(name as (typeof NAMES)[number])]!;
const dataDir = (name: string): string => join(dir, name);
const urlOf = (name: string): string => `http://${host(name).address}:7000`;
const clients = (name: string) => apiClient(() => urlOf(name), ADMIN);
const waitFor = untilWith({ timeoutMs: 60_000, intervalMs: 200, context: () => [...servers.values()].map((s) => `${s.host.name}:\n${s.stderr().slice(-1500)}`).join('\n') });

function serverArgs(name: string, first: boolean): string[] {
  const i = NAMES.indexOf(name as (typeof NAMES)[number]);
  return [
    ...(first ? ['--cluster-init', '--overlay', '10.244.0.0/16', '--backend', 'vxlan'] : ['--server', urlOf('s1'), '--token-file', join(dataDir('s1'), 'cluster.token')]),
    '--advertise', host(name).address,
    '--name', name,
    '--data-dir', dataDir(name),
    '--network-name', labNetworkName(lab, 's', i),
    '--ttl', String(TTL),
  ];
}

async function start(name: string, first = false): Promise<LabBerthProcess> {
  const p = await startBerthIn(host(name), serverArgs(name, first), first ? { BERTH_BOOTSTRAP_TOKEN: ADMIN } : {});
  servers.set(name, p);
  return p;
}

/** The app through one machine's router, from the test process (through the lab's gateway). */
const routed = (name: string): Promise<{ status: number; body: string }> => httpTo({ address: host(name).address, port: 8080, host: APP_HOST, timeoutMs: 5000 }).catch(() => ({ status: 0, body: '' }));

interface Dyno {
  name: string;
  state: string;
  machine?: string;
}

async function push(via: string, code: string): Promise<{ code: number; out: string }> {
  const repo = join(dir, `repo-${via}-${code}`);
  await appRepo(repo, urlOf(via), ADMIN, APP, { 'server.js': SERVER, Procfile: 'web: node server.js\n', VERSION: `${code}\n` });
  return git(repo, 'push', '--force', 'berth', 'main');
}

/** `node -e` inside a host: a PATCH of the app's config there, printing the status (or `error`). */
const PATCH_FROM_INSIDE = `
fetch(process.argv[1], { method: 'PATCH', headers: { authorization: 'Bearer ' + process.argv[2], 'content-type': 'application/json', accept: 'application/vnd.heroku+json; version=3' }, body: JSON.stringify({ PARTITIONED: '1' }), signal: AbortSignal.timeout(20000) })
  .then((r) => console.log(r.status), (e) => console.log('error', e.name));
`;

beforeAll(async () => {
  dir = mkdtempSync(join(tmpdir(), 'berth-ha-'));
  chmodSync(dir, 0o755);
  lab = await createLab({ hosts: 4, gateway: true });
  await start('s1', true);
  await start('s2');
  await start('s3');
}, 300_000);

afterAll(async () => {
  await agent?.stop().catch(() => undefined);
  await Promise.allSettled([...servers.values()].map((s) => s.stop()));
  await lab?.destroy();
  await removeTestDir(dir);
}, 180_000);

describe('three servers and no single point of failure', () => {
  it('joins two servers to the first over verified TLS: three etcd voters, a store only certificates open', async () => {
    const token = readFileSync(join(dataDir('s1'), 'cluster.token'), 'utf8').trim();
    expect(token).toMatch(/^B10[0-9a-f]{64}::berth_[0-9a-f]{48}$/);
    // Every server answers the API, and lists all three machines as servers with a member each.
    for (const name of NAMES) {
      const cli = await runCli({ env: { BERTH_API_URL: urlOf(name), BERTH_API_KEY: ADMIN }, cwd: dir, home: dir }, ['nodes', '--json']);
      expect(cli.code, cli.err).toBe(0);
      const nodes = JSON.parse(cli.out) as { name: string; role: string; etcd: { learner: boolean; reachable: boolean } | null; router_revision: number | null }[];
      expect(nodes.map((n) => [n.name, n.role, n.etcd?.learner, n.etcd?.reachable]).sort()).toEqual(NAMES.map((n) => [n, 'server', false, true]));
      expect(nodes.every((n) => n.router_revision !== null)).toBe(true);
    }
    // The store takes no client without the cluster's certificates.
    const s1 = host('s1').address;
    expect(() => openStore(`etcd://${s1}:2379`)).toThrow(/store_insecure|without TLS/);
    const plain = openStore(`etcd://${s1}:2379`, { insecure: true });
    try {
      await expect(plain.get('/berth/platform')).rejects.toThrow();
    } finally {
      await plain.close();
    }
    // A wrong secret with the right CA hash is refused; a token for another CA is never sent.
    const bad = token.replace(/::.*$/, '::berth_00000000000000000000000000000000000000000000dead');
    await expect(startAgentIn(host('s3'), ['--server', urlOf('s1'), '--token', bad, '--name', 'intruder', '--data-dir', join(dir, 'intruder'), '--network-name', labNetworkName(lab, 'x', 1)])).rejects.toThrow(/Invalid cluster token/);
  }, 120_000);

  it('deploys an app scaled to 3 that every machine routes', async () => {
    const api = clients('s1').ok;
    await api('POST', '/apps', { name: APP });
    const pushed = await push('s1', 'one');
    expect(pushed.code, pushed.out).toBe(0);
    expect(pushed.out).toMatch(/Launching|Released|v\d/);
    console.log(`ha: first push\n${pushed.out.slice(-600)}`);
    await api('PATCH', `/apps/${APP}/formation`, { updates: [{ type: 'web', quantity: 3 }] });
    await waitFor('three dynos up', async () => {
      const dynos = await api<Dyno[]>('GET', `/apps/${APP}/dynos`);
      return dynos.length === 3 && dynos.every((d) => d.state === 'up') ? dynos : undefined;
    }, 120_000);
    for (const name of NAMES) await waitFor(`routed by ${name}`, async () => ((await routed(name)).status === 200 ? true : undefined));
  }, 240_000);

  it('loses the first machine whole: the others take writes within 10 s, release, build and run the app', async () => {
    const dead = (await clients('s2').ok<{ id: string; name: string }[]>('GET', '/berth/machines')).find((m) => m.name === 's1')?.id;
    expect(dead).toMatch(/^s1-/);
    const killedAt = Date.now();
    await killHost(host('s1'));
    servers.delete('s1');
    const s2 = clients('s2');
    // (1) API writes accepted on a survivor.
    await waitFor('a write through s2', async () => ((await s2('PATCH', `/apps/${APP}/config-vars`, { GREETING: 'hello' }).catch(() => ({ status: 0 }))).status === 200 ? true : undefined), 30_000);
    const writable = Date.now() - killedAt;
    console.log(`ha: writes through s2 accepted ${writable} ms after s1 died`);
    expect(writable).toBeLessThan(10_000);
    // (2) That config change is a release both remaining routers serve.
    for (const name of ['s2', 's3']) await waitFor(`the new release through ${name}`, async () => ((await routed(name)).body.startsWith('hello from') ? true : undefined), 60_000);
    // (3) The app's three web dynos run on the survivors (slugs built on s1 come from their copies).
    await waitFor('three dynos up on the survivors', async () => {
      const dynos = await s2.ok<Dyno[]>('GET', `/apps/${APP}/dynos`);
      return dynos.length === 3 && dynos.every((d) => d.state === 'up' && d.machine && d.machine !== dead) ? dynos : undefined;
    }, 90_000);
    // (4) A fresh push through s2 builds and runs.
    const pushed = await push('s2', 'two');
    expect(pushed.code, pushed.out).toBe(0);
    for (const name of ['s2', 's3']) await waitFor(`v two through ${name}`, async () => ((await routed(name)).body.endsWith('vtwo') ? true : undefined), 90_000);
    // (5) Logs through s3 show lines of dynos on s2.
    const onS2 = (await s2.ok<Dyno[]>('GET', `/apps/${APP}/dynos`)).filter((d) => d.machine && d.machine.startsWith('s2')).map((d) => d.name);
    expect(onS2.length).toBeGreaterThan(0);
    const session = await clients('s3').ok<{ logplex_url: string }>('POST', `/apps/${APP}/log-sessions`, { lines: 500 });
    const text = await waitFor('s2 dyno lines through s3', async () => {
      const t = await (await fetch(session.logplex_url)).text();
      return onS2.some((d) => t.includes(`app[${d}]: listening on`)) ? t : undefined;
    });
    expect(text).toMatch(/Release v\d+ created|Deploy/);
  }, 300_000);

  it('the dead machine comes back with its data dir and rejoins by itself', async () => {
    await start('s1', true);
    await waitFor('s1 a voter again', async () => {
      const cli = await runCli({ env: { BERTH_API_URL: urlOf('s2'), BERTH_API_KEY: ADMIN }, cwd: dir, home: dir }, ['nodes', '--json']);
      const nodes = cli.code === 0 ? (JSON.parse(cli.out) as { name: string; etcd: { reachable: boolean; learner: boolean } | null }[]) : [];
      return nodes.length === 3 && nodes.every((n) => n.etcd?.reachable && !n.etcd.learner) ? nodes : undefined;
    }, 90_000);
    await waitFor('routed by s1 again', async () => ((await routed('s1')).body.endsWith('vtwo') ? true : undefined), 60_000);
  }, 180_000);

  it('routes no traffic to an endpoint published for a unit no machine runs (what a hostile agent could write)', async () => {
    const hijacker = createServer((_q, r) => r.end('hijacked'));
    await new Promise<void>((r) => hijacker.listen(0, lab.gateway, r));
    const port = (hijacker.address() as AddressInfo).port;
    const c = join(dataDir('s2'), 'cluster');
    const store = openStore(`etcd://${host('s2').address}:2379`, { etcdTls: { ca: readFileSync(join(c, 'ca.crt'), 'utf8'), cert: readFileSync(join(c, 'node.crt'), 'utf8'), key: readFileSync(join(c, 'node.key'), 'utf8') } });
    const forged = `/berth/services/${APP}/${APP}.web.1@v99`;
    try {
      await store.put(forged, `${lab.gateway}:${port}`);
      await new Promise((r) => setTimeout(r, 1500));
      const bodies = await Promise.all(Array.from({ length: 30 }, () => routed('s2').then((r) => r.body)));
      expect(bodies.filter((b) => b === 'hijacked')).toEqual([]);
      expect(bodies.filter((b) => b.startsWith('hello from')).length).toBeGreaterThan(0);
    } finally {
      await store.delete(forged);
      await store.close();
      hijacker.close();
    }
  }, 60_000);

  it('a machine cut off from the others refuses writes, and takes them again once healed', async () => {
    const h3 = host('s3');
    await lab.partition(h3);
    try {
      const r = await h3.exec(process.execPath, ['-e', PATCH_FROM_INSIDE, `${urlOf('s3')}/apps/${APP}/config-vars`, ADMIN], { timeoutMs: 40_000 });
      expect(r.stdout.trim()).not.toBe('200');
    } finally {
      await lab.heal(h3);
    }
    await waitFor('s3 takes writes again', async () => ((await clients('s3')('PATCH', `/apps/${APP}/config-vars`, { HEALED: '1' }).catch(() => ({ status: 0 }))).status === 200 ? true : undefined), 60_000);
    const config = await clients('s1').ok<Record<string, string>>('GET', `/apps/${APP}/config-vars`);
    expect(config.HEALED).toBe('1');
    expect(config.PARTITIONED).toBeUndefined();
  }, 180_000);

  it('an agent machine joins with --server: runs a dyno of a release a server hands it, routes every app, reads configs only sealed', async () => {
    const h4 = lab.hosts[3]!;
    agent = await startAgentIn(h4, ['--server', urlOf('s2'), '--token-file', join(dataDir('s1'), 'cluster.token'), '--name', 'a4', '--data-dir', join(dir, 'a4'), '--network-name', labNetworkName(lab, 'a', 4), '--ttl', String(TTL), '--http-port', '8080', '--https-port', '8443']);
    const api = clients('s2').ok;
    const a4 = String(agent.summary.machine_id);
    await api('PATCH', `/apps/${APP}/formation`, { updates: [{ type: 'web', quantity: 4 }] });
    await waitFor('a dyno up on the agent machine', async () => {
      const dynos = await api<Dyno[]>('GET', `/apps/${APP}/dynos`);
      return dynos.length === 4 && dynos.every((d) => d.state === 'up') && dynos.some((d) => d.machine === a4) ? dynos : undefined;
    }, 90_000);
    await waitFor('routed by the agent machine', async () => ((await httpTo({ address: h4.address, port: 8080, host: APP_HOST, timeoutMs: 5000 }).catch(() => ({ status: 0, body: '' }))).body.startsWith('hello from') ? true : undefined));
    // Its certificate reads the app's config and releases only as ciphertext, and writes none of them.
    const c = join(dir, 'a4', 'cluster');
    const store = openStore(`etcd://${host('s2').address}:2379`, { etcdTls: { ca: readFileSync(join(c, 'ca.crt'), 'utf8'), cert: readFileSync(join(c, 'node.crt'), 'utf8'), key: readFileSync(join(c, 'node.key'), 'utf8') } });
    try {
      const id = (await api<{ id: string }>('GET', `/apps/${APP}`)).id;
      const config = await store.get(`/berth/apps/${id}/config`);
      expect(config?.value).toMatch(/^b1:/);
      expect(config?.value).not.toContain('hello');
      const releases = await store.range(`/berth/apps/${id}/releases/`, { prefix: true });
      expect(releases.kvs.length).toBeGreaterThan(0);
      for (const kv of releases.kvs) expect(kv.value).toMatch(/^b1:/);
      await expect(store.put(`/berth/apps/${id}/config`, '{"GREETING":"pwned"}')).rejects.toThrow(/permission denied/);
    } finally {
      await store.close();
    }
    // The API still shows the config in the clear to its users.
    expect((await api<Record<string, string>>('GET', `/apps/${APP}/config-vars`)).GREETING).toBe('hello');
  }, 180_000);
});
