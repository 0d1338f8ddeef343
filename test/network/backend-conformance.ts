import { spawn, type ChildProcess } from 'node:child_process';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { BERTH_ROUTE_PROTO, IpRunner } from '../../src/network/backends/ip.js';
import type { BackendDevice, OverlayBackendDriver, Peer } from '../../src/network/backends/types.js';
import { captureLog, type LogLine } from '../support/log.js';
import { createLab, type ExecResult, type Lab, type LabHost } from '../support/netlab.js';
import { until } from '../support/until.js';

/**
 * What every overlay backend must do, on real kernels: three "machines" (network namespaces on one
 * bridge, test/support/netlab.ts), each with a driver running its commands inside the machine and
 * one "dyno" namespace wired as the agent wires one (a routed /32 veth). Cases run in order and
 * build on each other's state.
 */

export type MakeDriver = (o: { netns: string; runner: IpRunner }) => OverlayBackendDriver;

const NAME = 'berth';
const DEVICE = `${NAME}.vx`;
const HOSTS = 3;
const pool = Number(process.env.VITEST_POOL_ID ?? 0) || 0;
/** A /16 per vitest worker, away from test/support/network.ts's 10.100–227. */
const NET = `10.${240 + (pool % 10)}`;
const NETWORK = `${NET}.0.0/16`;
/** The dyno side's gateway: link-local, answered by a permanent neighbour entry (network.md pitfall 6). */
const DYNO_GW = '169.254.1.1';
const HOST_VETH_MAC = 'ee:ee:ee:ee:ee:ee';
const TCP_PORT = 5000;
/**
 * Lab ids are per vitest worker by default, so two test processes running at once (several suites
 * in development) would reap each other's labs: this suite keeps to a block of its own.
 */
const LAB_ID = 60 + (pool % 10);

interface Machine {
  host: LabHost;
  runner: IpRunner;
  driver: OverlayBackendDriver;
  subnet: string;
  device: BackendDevice;
  dyno: { netns: string; ip: string };
  log: LogLine[];
}

interface RouteJson {
  dst: string;
  gateway?: string;
  dev?: string;
  protocol?: string;
}

async function ok(p: Promise<ExecResult>, what: string): Promise<string> {
  const r = await p;
  if (r.code !== 0) throw new Error(`${what} failed (${r.code}): ${r.stderr}${r.stdout}`);
  return r.stdout;
}

function root(cmd: string, args: string[], input?: string): Promise<ExecResult> {
  return new Promise((resolve, reject) => {
    const child = spawn(cmd, args, { stdio: ['pipe', 'pipe', 'pipe'], timeout: 15_000 });
    let stdout = '';
    let stderr = '';
    child.stdout.on('data', (d: Buffer) => (stdout += d.toString()));
    child.stderr.on('data', (d: Buffer) => (stderr += d.toString()));
    child.stdin.on('error', () => undefined);
    child.stdin.end(input ?? '');
    child.on('error', reject);
    child.on('close', (code) => resolve({ code: code ?? 1, stdout, stderr }));
  });
}

/** A command inside a dyno namespace. */
function inDyno(m: Machine, cmd: string, args: string[], timeoutMs = 10_000): Promise<ExecResult> {
  return new Promise((resolve, reject) => {
    const child = spawn('nsenter', [`--net=${m.dyno.netns}`, '--', cmd, ...args], { stdio: ['ignore', 'pipe', 'pipe'], timeout: timeoutMs });
    let stdout = '';
    let stderr = '';
    child.stdout.on('data', (d: Buffer) => (stdout += d.toString()));
    child.stderr.on('data', (d: Buffer) => (stderr += d.toString()));
    child.on('error', reject);
    child.on('close', (code) => resolve({ code: code ?? 1, stdout, stderr }));
  });
}

const ping = (from: Machine, to: string, extra: string[] = []): Promise<ExecResult> => inDyno(from, 'ping', ['-n', '-c', '1', '-W', '1', ...extra, to]);

/** A dyno namespace wired to its machine by a routed /32 veth, as the agent does (one batch per side). */
async function wireDyno(lab: Lab, host: LabHost, k: number, ip: string, mtu: number): Promise<{ netns: string; ip: string }> {
  const name = `${lab.prefix}d${k}`; // the lab's prefix: its reaper and destroy remove it too
  const veth = `${lab.prefix}v${k}${Math.random().toString(16).slice(2, 6)}`; // new per incarnation (pitfall 3)
  await ok(root('ip', ['netns', 'add', name]), 'netns add');
  await ok(
    root('ip', ['-n', host.name, '-batch', '-'], [`link add ${veth} address ${HOST_VETH_MAC} type veth peer name eth0 netns ${name}`, `link set ${veth} up`, `route add ${ip}/32 dev ${veth}`].join('\n') + '\n'),
    'machine side of the dyno veth',
  );
  await ok(
    root(
      'ip',
      ['-n', name, '-batch', '-'],
      [
        'link set lo up',
        `addr add ${ip}/32 dev eth0`,
        `link set eth0 mtu ${mtu} up`,
        `route add ${DYNO_GW} dev eth0 scope link`,
        `route add default via ${DYNO_GW} dev eth0`,
        `neigh add ${DYNO_GW} lladdr ${HOST_VETH_MAC} dev eth0 nud permanent`,
      ].join('\n') + '\n',
    ),
    'dyno side of the veth',
  );
  return { netns: `/run/netns/${name}`, ip };
}

/** A TCP server in a dyno that answers each connection with the address it came from. */
function remoteAddressServer(m: Machine): Promise<ChildProcess> {
  const script = "const [ip,port]=process.argv.slice(1);require('net').createServer(s=>s.end(s.remoteAddress)).listen(+port,ip,()=>console.log('ready'))";
  const child = spawn('nsenter', [`--net=${m.dyno.netns}`, '--', process.execPath, '-e', script, m.dyno.ip, String(TCP_PORT)], { stdio: ['ignore', 'pipe', 'pipe'] });
  return new Promise((resolve, reject) => {
    const timer = setTimeout(() => reject(new Error('TCP server did not start')), 10_000);
    child.stdout.once('data', () => {
      clearTimeout(timer);
      resolve(child);
    });
    child.once('exit', (code) => reject(new Error(`TCP server exited with ${code}`)));
  });
}

/** Connects from `from`'s dyno to `to`'s and returns what the server said: the client address it saw. */
async function tcpSourceSeen(from: Machine, to: Machine): Promise<string> {
  const script =
    "const [ip,port]=process.argv.slice(1);const s=require('net').connect(+port,ip);let d='';s.setTimeout(3000,()=>{console.error('timeout');process.exit(2)});s.on('data',b=>d+=b);s.on('end',()=>console.log(d));s.on('error',e=>{console.error(e.message);process.exit(1)})";
  return (await ok(inDyno(from, process.execPath, ['-e', script, to.dyno.ip, String(TCP_PORT)]), `TCP ${from.dyno.ip} → ${to.dyno.ip}`)).trim();
}

async function json<T>(host: LabHost, cmd: 'ip' | 'bridge', args: string[]): Promise<T[]> {
  const out = await ok(host.exec(cmd, ['-j', ...args]), `${cmd} ${args.join(' ')}`);
  return out.trim() ? (JSON.parse(out) as T[]) : [];
}

const ourRoutes = async (h: LabHost): Promise<RouteJson[]> => json<RouteJson>(h, 'ip', ['route', 'show', 'proto', String(BERTH_ROUTE_PROTO)]);
const allRoutes = async (h: LabHost): Promise<RouteJson[]> => json<RouteJson>(h, 'ip', ['route', 'show', 'table', 'main']);

/** Everything a driver may have put in the kernel, as comparable text. */
async function kernelState(m: Machine): Promise<string> {
  const parts = [JSON.stringify(await allRoutes(m.host))];
  if (m.driver.type === 'vxlan') {
    parts.push(JSON.stringify(await json(m.host, 'ip', ['-4', 'neigh', 'show', 'dev', DEVICE])));
    parts.push(JSON.stringify(await json(m.host, 'bridge', ['fdb', 'show', 'dev', DEVICE])));
  }
  return parts.join('\n');
}

function peerOf(m: Machine): Peer {
  return { subnet: m.subnet, publicIp: m.host.address, ...(m.device.vtepMac ? { vtepMac: m.device.vtepMac } : {}) };
}

export function backendConformance(name: 'vxlan' | 'host-gw', makeDriver: MakeDriver): void {
  describe(`overlay backend conformance: ${name}`, () => {
    let lab: Lab;
    const machines: Machine[] = [];
    const servers: ChildProcess[] = [];
    const peersOf = (m: Machine, except: Machine[] = []): Peer[] => machines.filter((o) => o !== m && !except.includes(o)).map(peerOf);
    // Outside the overlay with our protocol, and inside it with another: never ours to touch.
    const decoys = (m: Machine): string[] => [
      `172.31.7.0/24 via ${machines.find((o) => o !== m)!.host.address} proto ${BERTH_ROUTE_PROTO}`,
      `${NET}.77.0/24 via ${machines.find((o) => o !== m)!.host.address} proto static`,
    ];
    const hasDecoys = async (m: Machine): Promise<boolean> => {
      const dsts = (await allRoutes(m.host)).map((r) => r.dst);
      return dsts.includes('172.31.7.0/24') && dsts.includes(`${NET}.77.0/24`);
    };

    beforeAll(async () => {
      lab = await createLab({ hosts: HOSTS, id: LAB_ID });
      for (const [i, host] of lab.hosts.entries()) {
        const k = i + 1;
        const runner = new IpRunner({ netns: host.netns });
        const { log, lines } = captureLog('debug');
        const driver = makeDriver({ netns: host.netns, runner });
        const subnet = `${NET}.${k}.0/24`;
        const device = await driver.setup({ name: NAME, subnet, network: NETWORK, publicIp: host.address, log });
        const dyno = await wireDyno(lab, host, k, `${NET}.${k}.10`, device.mtu);
        machines.push({ host, runner, driver, subnet, device, dyno, log: lines });
      }
      for (const m of machines) await ok(m.host.exec('ip', ['-batch', '-'], { input: decoys(m).map((d) => `route add ${d}`).join('\n') + '\n' }), 'decoy routes');
      for (const m of machines) await m.driver.sync(peersOf(m));
    });

    afterAll(async () => {
      for (const s of servers) s.kill('SIGKILL');
      await lab?.destroy();
    });

    it('carries dyno-to-dyno ping and TCP across machines both ways, with the dyno overlay addresses as sources (no NAT)', async () => {
      for (const m of machines) servers.push(await remoteAddressServer(m));
      for (const a of machines) {
        for (const b of machines) {
          if (a === b) continue;
          const r = await ping(a, b.dyno.ip, ['-W', '2']);
          expect(r.code, `${a.dyno.ip} → ${b.dyno.ip}: ${r.stdout}${r.stderr}`).toBe(0);
          expect(await tcpSourceSeen(a, b)).toBe(a.dyno.ip);
        }
      }
    });

    it('is idempotent: a second sync with the same peers changes nothing and writes nothing', async () => {
      for (const m of machines) {
        const before = await kernelState(m);
        const n = m.runner.commands;
        await m.driver.sync(peersOf(m));
        // Only the reads: no batch when the kernel already matches.
        expect(m.runner.commands - n).toBeLessThanOrEqual(m.driver.type === 'vxlan' ? 3 : 1);
        expect(await kernelState(m)).toBe(before);
        const ours = (await ourRoutes(m.host)).filter((r) => r.dst.startsWith(`${NET}.`));
        expect(ours.map((r) => r.dst).sort()).toEqual(peersOf(m).map((p) => p.subnet).sort());
      }
    });

    it(`gives the MTU dynos must use (${name === 'vxlan' ? 'underlay − 50' : 'the underlay'}), and a 1400-byte ping with DF set gets through`, async () => {
      const [a, b] = machines as [Machine, Machine];
      const underlay = (await json<{ mtu: number }>(a.host, 'ip', ['link', 'show', 'dev', a.host.iface]))[0]!.mtu;
      for (const m of machines) {
        expect(m.device.mtu).toBe(name === 'vxlan' ? underlay - 50 : underlay);
        if (name === 'vxlan') {
          const [dev] = await json<{ mtu: number; address: string }>(m.host, 'ip', ['link', 'show', 'dev', DEVICE]);
          expect(dev?.mtu).toBe(underlay - 50);
          expect(dev?.address).toBe(m.device.vtepMac);
          expect(m.device.gateway).toBe(m.subnet.replace('/24', ''));
        } else {
          expect(m.device.gateway).toBeUndefined();
          expect(m.device.vtepMac).toBeUndefined();
        }
      }
      const r = await ping(a, b.dyno.ip, ['-M', 'do', '-s', '1400', '-W', '2']);
      expect(r.code, r.stdout + r.stderr).toBe(0);
      // One byte over the device MTU is refused at the dyno, not lost silently on the way.
      const over = await ping(a, b.dyno.ip, ['-M', 'do', '-s', String(a.device.mtu - 28 + 1)]);
      expect(over.code).not.toBe(0);
    });

    it("removes a peer left out of the list (route, and ARP and FDB entries for vxlan), and restores it when it comes back", async () => {
      const [a, , c] = machines as [Machine, Machine, Machine];
      await a.driver.sync(peersOf(a, [c]));
      expect((await ourRoutes(a.host)).map((r) => r.dst)).not.toContain(c.subnet);
      if (name === 'vxlan') {
        const neigh = await json<{ dst: string }>(a.host, 'ip', ['-4', 'neigh', 'show', 'dev', DEVICE]);
        expect(neigh.map((n) => n.dst)).not.toContain(c.device.gateway);
        const fdb = await json<{ mac: string }>(a.host, 'bridge', ['fdb', 'show', 'dev', DEVICE]);
        expect(fdb.map((f) => f.mac)).not.toContain(c.device.vtepMac);
        expect(fdb).toHaveLength(1);
      }
      expect((await ping(a, c.dyno.ip)).code).not.toBe(0);
      // The rest still works.
      expect((await ping(a, machines[1]!.dyno.ip)).code).toBe(0);

      await a.driver.sync(peersOf(a));
      expect((await ourRoutes(a.host)).map((r) => r.dst)).toContain(c.subnet);
      await until(`ping ${a.dyno.ip} → ${c.dyno.ip}`, async () => (await ping(a, c.dyno.ip)).code === 0, 10_000);
      expect(await tcpSourceSeen(a, c)).toBe(a.dyno.ip);
    });

    it('syncs 100 peers in a handful of processes, and back again', async () => {
      const [a] = machines as [Machine];
      const base = Number(a.host.address.split('.')[3]);
      const fakes: Peer[] = Array.from({ length: 100 }, (_, i) => ({
        subnet: `${NET}.${100 + i}.0/24`,
        // On the underlay /24, where nothing answers.
        publicIp: `${a.host.address.split('.').slice(0, 3).join('.')}.${100 + ((base + i) % 100)}`,
        vtepMac: `0e:99:00:00:${(i >> 8).toString(16).padStart(2, '0')}:${(i & 255).toString(16).padStart(2, '0')}`,
      }));
      const peers = [...peersOf(a), ...fakes];

      const time = async (what: string, fn: () => Promise<void>): Promise<{ ms: number; processes: number }> => {
        const n = a.runner.commands;
        const t = performance.now();
        await fn();
        const r = { ms: Math.round((performance.now() - t) * 10) / 10, processes: a.runner.commands - n };
        console.log(`[${name}] ${what}: ${r.ms} ms, ${r.processes} processes`);
        return r;
      };
      const add = await time('sync of 102 peers (100 new)', () => a.driver.sync(peers));
      expect((await ourRoutes(a.host)).filter((r) => r.dst.startsWith(`${NET}.`))).toHaveLength(102);
      if (name === 'vxlan') {
        expect(await json(a.host, 'ip', ['-4', 'neigh', 'show', 'dev', DEVICE, 'nud', 'permanent'])).toHaveLength(102);
        expect(await json(a.host, 'bridge', ['fdb', 'show', 'dev', DEVICE])).toHaveLength(102);
      }
      expect(add.processes).toBeLessThanOrEqual(6);

      const before = await kernelState(a);
      const again = await time('re-sync of the same 102 peers', () => a.driver.sync(peers));
      expect(await kernelState(a)).toBe(before);
      expect(again.processes).toBeLessThanOrEqual(3);

      const back = await time('sync back to 2 peers (100 removed)', () => a.driver.sync(peersOf(a)));
      expect(back.processes).toBeLessThanOrEqual(6);
      expect((await ourRoutes(a.host)).filter((r) => r.dst.startsWith(`${NET}.`))).toHaveLength(2);
      if (name === 'vxlan') expect(await json(a.host, 'bridge', ['fdb', 'show', 'dev', DEVICE])).toHaveLength(2);
      expect((await ping(a, machines[1]!.dyno.ip)).code).toBe(0);
    });

    it('skips (and logs once) peers it cannot program, and never its own subnet', async () => {
      const [a] = machines as [Machine];
      const n = a.log.length;
      const bad: Peer[] = [
        { subnet: a.subnet, publicIp: a.host.address, ...(a.device.vtepMac ? { vtepMac: a.device.vtepMac } : {}) },
        { subnet: '172.30.1.0/24', publicIp: '198.18.0.9', vtepMac: '0e:42:00:00:00:01' }, // outside the overlay
        { subnet: `${NET}.90.0/24 dev lo`, publicIp: '198.18.0.9', vtepMac: '0e:42:00:00:00:02' }, // an injection attempt
        ...(name === 'host-gw'
          ? [{ subnet: `${NET}.91.0/24`, publicIp: '203.0.113.9' }] // behind the default gateway: not on our L2
          : [{ subnet: `${NET}.91.0/24`, publicIp: '198.18.0.9' }]), // no VTEP MAC
      ];
      for (let i = 0; i < 2; i++) await a.driver.sync([...peersOf(a), ...bad]);
      const ours = (await ourRoutes(a.host)).map((r) => r.dst).filter((d) => d.startsWith(`${NET}.`)).sort();
      expect(ours).toEqual(peersOf(a).map((p) => p.subnet).sort());
      const errors = a.log.slice(n).filter((l) => l.level >= 50);
      expect(errors).toHaveLength(3); // once each, over two syncs; nothing about its own subnet
      await a.driver.sync(peersOf(a));
    });

    it('never touches routes outside its network or with another protocol', async () => {
      for (const m of machines) expect(await hasDecoys(m)).toBe(true);
    });

    if (name === 'vxlan') {
      it('reuses an identical VXLAN device on setup, re-creates one that differs, and keeps its MAC', async () => {
        const [a] = machines as [Machine];
        const { log } = captureLog();
        const index = async (): Promise<number> => (await json<{ ifindex: number }>(a.host, 'ip', ['link', 'show', 'dev', DEVICE]))[0]!.ifindex;
        const first = await index();
        const again = await a.driver.setup({ name: NAME, subnet: a.subnet, network: NETWORK, publicIp: a.host.address, log });
        expect(again).toEqual(a.device);
        expect(await index()).toBe(first);

        const info = async (): Promise<{ id: number }> =>
          (await json<{ linkinfo: { info_data: { id: number } } }>(a.host, 'ip', ['-d', 'link', 'show', 'dev', DEVICE]))[0]!.linkinfo.info_data;
        const vni = (await info()).id;
        // A driver of another VNI on the same name: the device is re-created (its peers' entries go with it).
        const { VxlanDriver } = await import('../../src/network/backends/vxlan.js');
        const changed = new VxlanDriver({ vni: vni + 1, port: 4789, netns: a.host.netns });
        const d2 = await changed.setup({ name: NAME, subnet: a.subnet, network: NETWORK, publicIp: a.host.address, log });
        expect(d2.vtepMac).toBe(a.device.vtepMac);
        expect((await info()).id).toBe(vni + 1);
        expect(await index()).not.toBe(first);

        // Back as it was: the original setup re-creates it, a sync restores the peers.
        expect(await a.driver.setup({ name: NAME, subnet: a.subnet, network: NETWORK, publicIp: a.host.address, log })).toEqual(a.device);
        expect((await info()).id).toBe(vni);
        await a.driver.sync(peersOf(a));
        await until('traffic through the re-created device', async () => (await ping(a, machines[1]!.dyno.ip)).code === 0, 10_000);
      });
    }

    it('teardown leaves no device or route of its own, and the decoys; a second teardown is harmless', async () => {
      for (const m of machines) {
        await m.driver.teardown();
        await m.driver.teardown();
        const ours = (await ourRoutes(m.host)).filter((r) => r.dst.startsWith(`${NET}.`));
        expect(ours).toEqual([]);
        const links = await json<{ ifname: string }>(m.host, 'ip', ['link', 'show']);
        expect(links.map((l) => l.ifname)).not.toContain(DEVICE);
        expect(await hasDecoys(m)).toBe(true);
      }
      const [a, b] = machines as [Machine, Machine];
      expect((await ping(a, b.dyno.ip)).code).not.toBe(0);
    });
  });
}
