import { spawn, type ChildProcess } from 'node:child_process';
import { join } from 'node:path';
import { mkdtempSync, rmSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { keys } from '../../src/domain/keys.js';
import { startLineProcess, type Answer } from '../support/line-process.js';
import { createLab, startEtcdIn, type Lab, type LabHost } from '../support/netlab.js';
import { until } from '../support/until.js';

/**
 * The overlay across machines: each lab host (a network namespace on one bridge) runs a real
 * OverlayNetwork in a process of its own (fixtures/net-node.ts) against a real etcd in host 0.
 */

const FIXTURE = join(import.meta.dirname, 'fixtures/net-node.ts');
const PUBLIC = 18080;
const PRIVATE = 9999;
const OUTSIDE = 8080;
const TTL = 8;
const APP_A = 200_001;
const APP_B = 200_002;

interface NetNode {
  name: string;
  host: LabHost;
  child: ChildProcess;
  info: Answer;
  send(cmd: Record<string, unknown>): Promise<Answer>;
  stop(): Promise<void>;
}

async function startNetNode(lab: Lab, host: LabHost, i: number, o: { store: string; dir: string; backend: string; internal: string[]; publicPorts?: number[]; name?: string }): Promise<NetNode> {
  const name = o.name ?? `${lab.prefix}n${i}`;
  const config = { store: o.store, machine: `m${i}`, dir: join(o.dir, `m${i}`), name, publicIp: host.address, network: '10.244.0.0/16', backend: o.backend, publicPorts: o.publicPorts ?? [PUBLIC], internal: o.internal, subnetTtl: TTL };
  const p = await startLineProcess(`net-node ${host.name}`, host, FIXTURE, config);
  return { name, host, child: p.child, info: p.first, send: (cmd) => p.send(cmd, 30_000), stop: () => p.stop() };
}

/** A TCP server in a namespace that answers each connection with the address it came from. */
const SERVER = 'import socket,sys\ns=socket.socket();s.setsockopt(socket.SOL_SOCKET,socket.SO_REUSEADDR,1);s.bind(("0.0.0.0",int(sys.argv[1])));s.listen(64)\nwhile True:\n  c,a=s.accept();c.sendall((a[0]+"\\n").encode());c.close()';
const CLIENT = 'import socket,sys\ns=socket.create_connection((sys.argv[1],int(sys.argv[2])),timeout=1.5);print(s.recv(100).decode().strip())';
const servers: ChildProcess[] = [];

function serve(netns: string, port: number): void {
  const p = spawn('nsenter', [`--net=${netns}`, 'python3', '-c', SERVER, String(port)], { stdio: 'ignore' });
  servers.push(p);
}

/** The peer address the server saw, or null if no connection could be made. */
function dial(netns: string, host: string, port: number): Promise<string | null> {
  return new Promise((resolve) => {
    const p = spawn('nsenter', [`--net=${netns}`, 'python3', '-c', CLIENT, host, String(port)], { stdio: ['ignore', 'pipe', 'ignore'] });
    let out = '';
    p.stdout.on('data', (d: Buffer) => (out += d.toString()));
    p.on('exit', (code) => resolve(code === 0 ? out.trim() : null));
  });
}

/** Machine 2's second address, in the lab's underlay. */
const alias = (lab: Lab): string => lab.underlay.replace(/\.0\/24$/, '.122');

const reaches = (netns: string, host: string, port: number): Promise<string> => until(`${netns} → ${host}:${port}`, async () => (await dial(netns, host, port)) ?? undefined, { timeoutMs: 10_000 });

describe.each(['vxlan', 'host-gw'] as const)('the overlay on three machines (%s)', (backend) => {
  let lab: Lab;
  let etcd: { url: string; stop(): Promise<void> };
  let dir: string;
  const nodes: NetNode[] = [];

  beforeAll(async () => {
    dir = mkdtempSync(join(tmpdir(), 'berth-overlay-'));
    // Ids of its own (see backends.test.ts): labs of concurrently running files never meet.
    lab = await createLab({ hosts: 3, id: 70 + (Number(process.env.VITEST_POOL_ID ?? 0) % 10) });
    etcd = await startEtcdIn(lab.hosts[0]!, { dataDir: join(dir, 'etcd') });
    // A second address on machine 2 (a private NIC, say): published, so no dyno reaches it either.
    await lab.hosts[2]!.exec('ip', ['addr', 'add', `${alias(lab)}/24`, 'dev', lab.hosts[2]!.iface]);
    for (const [i, host] of lab.hosts.entries()) nodes.push(await startNetNode(lab, host, i, { store: etcd.url.replace('http://', 'etcd://'), dir, backend, internal: [lab.hosts[0]!.address] }));
    // Servers standing in for a host's public port, a private one (an agent, SSH…) and the internet.
    for (const h of lab.hosts) {
      serve(h.netns, PUBLIC);
      serve(h.netns, PRIVATE);
    }
    serve(lab.internet.netns, OUTSIDE);
  }, 60_000);

  afterAll(async () => {
    for (const s of servers.splice(0)) s.kill('SIGKILL');
    for (const n of nodes.splice(0)) await n.stop().catch(() => undefined);
    await etcd?.stop();
    await lab?.destroy();
    rmSync(dir, { recursive: true, force: true });
  }, 60_000);

  it('gives each machine its own /24 and routes it everywhere', async () => {
    const subnets = nodes.map((n) => n.info.subnet);
    expect(new Set(subnets).size).toBe(3);
    for (const n of nodes) expect(n.info.backend).toBe(backend);
    for (const n of nodes) {
      for (const other of nodes.filter((o) => o !== n)) {
        await until(`${n.name} routes ${other.info.subnet}`, async () => ((await n.host.exec('ip', ['route', 'show', String(other.info.subnet)])).stdout.trim() ? true : undefined));
      }
    }
  });

  it('lets a dyno reach its own app on another machine and the same one, with its own address, and nothing of another app', async () => {
    const a1 = await nodes[1]!.send({ op: 'attach', appId: 'app-a', group: APP_A, owner: 'a.web.1' });
    const a2 = await nodes[2]!.send({ op: 'attach', appId: 'app-a', group: APP_A, owner: 'a.web.2' });
    const a3 = await nodes[1]!.send({ op: 'attach', appId: 'app-a', group: APP_A, owner: 'a.worker.1' });
    const b1 = await nodes[1]!.send({ op: 'attach', appId: 'app-b', group: APP_B, owner: 'b.web.1' });
    const b2 = await nodes[2]!.send({ op: 'attach', appId: 'app-b', group: APP_B, owner: 'b.web.2' });
    expect(a1.env?.HEROKU_PRIVATE_IP).toBe(a1.address);
    for (const d of [a1, a2, a3, b1, b2]) serve(d.netns!, 5000);
    expect(await reaches(a1.netns!, a2.address!, 5000)).toBe(a1.address);
    expect(await reaches(a2.netns!, a1.address!, 5000)).toBe(a2.address);
    expect(await reaches(a1.netns!, a3.address!, 5000)).toBe(a1.address);
    expect(await reaches(b1.netns!, b2.address!, 5000)).toBe(b1.address);
    // The same rules that let those through are in force: another app's dynos stay shut.
    expect(await dial(a1.netns!, b1.address!, 5000)).toBeNull();
    expect(await dial(a1.netns!, b2.address!, 5000)).toBeNull();
    expect(await dial(b2.netns!, a2.address!, 5000)).toBeNull();
    // Every machine reaches every dyno (routers and health checks are host processes).
    for (const n of nodes) expect(await reaches(n.host.netns, b2.address!, 5000)).toBeTruthy();
  });

  it('keeps a dyno away from the store, the machines and their private ports, and lets it out to the world through NAT', async () => {
    const d = await nodes[1]!.send({ op: 'attach', appId: 'app-c', group: 200_003, owner: 'c.web.1' });
    const [h0, h1, h2] = lab.hosts as [LabHost, LabHost, LabHost];
    expect(await reaches(d.netns!, lab.internet.address, OUTSIDE)).toBe(h1.address);
    expect(await reaches(d.netns!, h1.address, PUBLIC)).toBeTruthy();
    expect(await reaches(d.netns!, h2.address, PUBLIC)).toBeTruthy();
    expect(await dial(d.netns!, h1.address, PRIVATE)).toBeNull();
    expect(await dial(d.netns!, h2.address, PRIVATE)).toBeNull();
    expect(await dial(d.netns!, h0.address, 2379)).toBeNull();
    expect(await dial(d.netns!, alias(lab), PRIVATE)).toBeNull();
    // The other machines' VXLAN/host addresses are theirs too.
    expect(await dial(d.netns!, '169.254.1.1', PRIVATE)).toBeNull();
  });

  it('runs a build with the outside world only', async () => {
    const b = await nodes[1]!.send({ op: 'build' });
    const dyno = await nodes[2]!.send({ op: 'attach', appId: 'app-a', group: APP_A, owner: 'a.web.3' });
    serve(dyno.netns!, 5000);
    expect(await reaches(b.netns!, lab.internet.address, OUTSIDE)).toBe(lab.hosts[1]!.address);
    expect(await dial(b.netns!, lab.hosts[0]!.address, 2379)).toBeNull();
    expect(await dial(b.netns!, lab.hosts[1]!.address, PUBLIC)).toBeNull();
    expect(await dial(b.netns!, dyno.address!, 5000)).toBeNull();
    await nodes[1]!.send({ op: 'release', address: b.address });
  });

  it('leaves no namespace, veth, address or policy element behind after 50 dynos come and go', async () => {
    const n = nodes[2]!;
    const count = async (): Promise<{ netns: number; veths: number; keys: number; elements: number }> => {
      const netns = (await n.host.exec('ip', ['netns', 'list'])).stdout.split('\n').filter((l) => l.startsWith(`${n.name}-`)).length;
      const veths = (await n.host.exec('ip', ['-o', 'link', 'show'])).stdout.split('\n').filter((l) => new RegExp(`^\\d+: ${n.name}[0-9a-f]{8}@`).test(l)).length;
      // The test process is outside the lab's underlay: ask etcd from a lab host.
      const r = await lab.hosts[0]!.exec('etcdctl', ['--endpoints', etcd.url, 'get', '--prefix', keys.ips(), '--print-value-only'], { env: { ETCDCTL_API: '3' } });
      const mine = r.stdout.split('\n').filter((l) => l.trim() && (JSON.parse(l) as { machine: string }).machine === 'm2').length;
      const list = (await n.host.exec('nft', ['-j', 'list', 'map', 'inet', n.name, 'owner'])).stdout;
      const elements = (list.match(/"elem"/g) ?? []).length ? ((JSON.parse(list) as { nftables: { map?: { elem?: unknown[] } }[] }).nftables.find((x) => x.map)?.map?.elem?.length ?? 0) : 0;
      return { netns, veths, keys: mine, elements };
    };
    const before = await count();
    const attached = await Promise.all(Array.from({ length: 50 }, (_, i) => n.send({ op: 'attach', appId: 'app-z', group: 200_050, owner: `z.web.${i}` })));
    expect(new Set(attached.map((a) => a.address)).size).toBe(50);
    await until('50 more of everything', async () => {
      const c = await count();
      return c.netns === before.netns + 50 && c.veths === before.veths + 50 && c.keys === before.keys + 50 && c.elements === before.elements + 50 ? true : undefined;
    });
    for (const a of attached) await n.send({ op: 'release', address: a.address });
    await until('everything back as it was', async () => {
      const c = await count();
      return JSON.stringify(c) === JSON.stringify(before) ? true : undefined;
    });
  }, 60_000);

  it('refuses to start without its policy, and a second node under the same name on one kernel', async () => {
    const store = etcd.url.replace('http://', 'etcd://');
    // A port nft cannot take: the table cannot load, and the node must not run dynos without it.
    // (On the internet host: no other node's VXLAN device there to clash with.)
    await expect(startNetNode(lab, lab.internet, 9, { store, dir: join(dir, 'bad'), backend, internal: [], publicPorts: [70_000] })).rejects.toThrow(/nftables policy could not be loaded/);
    await expect(startNetNode(lab, lab.hosts[2]!, 8, { store, dir: join(dir, 'twin'), backend, internal: [], name: nodes[2]!.name })).rejects.toThrow(/Another berth node \(pid \d+\) runs the network/);
  }, 30_000);

  it('takes the same subnet again after a restart', async () => {
    const was = nodes[1]!.info.subnet;
    await nodes[1]!.stop();
    nodes[1] = await startNetNode(lab, lab.hosts[1]!, 1, { store: etcd.url.replace('http://', 'etcd://'), dir, backend, internal: [lab.hosts[0]!.address] });
    expect(nodes[1].info.subnet).toBe(was);
  }, 30_000);

  it('keeps routes to a SIGKILLed machine until its subnet lease runs out, not a moment after', async () => {
    const victim = nodes[2]!;
    const subnet = String(victim.info.subnet);
    const routed = async (): Promise<boolean> => (await nodes[0]!.host.exec('ip', ['route', 'show', subnet])).stdout.trim() !== '';
    expect(await routed()).toBe(true);
    const killedAt = Date.now();
    victim.child.kill('SIGKILL');
    // Several machine-lease TTLs later the route is still there…
    await new Promise((r) => setTimeout(r, 4000));
    expect(await routed()).toBe(true);
    // …and it goes once the subnet's own lease expires.
    await until('the route withdrawn', async () => ((await routed()) ? undefined : true), { timeoutMs: TTL * 1000 + 10_000 });
    expect(Date.now() - killedAt).toBeGreaterThan(4000);
    nodes.splice(2, 1);
  }, 40_000);
});
