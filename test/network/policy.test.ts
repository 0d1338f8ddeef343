import { execFile, spawn, type ChildProcess } from 'node:child_process';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { isBerthError } from '../../src/domain/errors.js';
import { NFT_FAILED, runNft } from '../../src/network/nft.js';
import { NftPolicy, PolicyErrorCode, renderTable } from '../../src/network/policy.js';
import type { PolicySnapshot } from '../../src/network/policy-types.js';
import { silentLog } from '../support/log.js';
import { until } from '../support/until.js';

/**
 * The policy table in real namespaces: a "host" namespace with routed /32 veths to dyno and build
 * namespaces, the way the overlay wires a machine, and an "outside" namespace on another veth. Every
 * verdict is checked with real TCP (or UDP) from where the traffic would start, and each negative one
 * is first shown to pass without the table, so a timeout means the policy and not the wiring.
 */

const POOL = Number.parseInt(process.env.VITEST_POOL_ID ?? '0', 10) % 250;
/** Every namespace of this file and worker: `pt<pool>-…` (the dash keeps pt1 off pt10's). */
const PREFIX = `pt${POOL}-`;
const netns = (name: string): string => `/run/netns/${PREFIX}${name}`;

interface Result {
  code: number | null;
  stdout: string;
  stderr: string;
}

function run(file: string, args: string[], o: { input?: string; timeoutMs?: number } = {}): Promise<Result> {
  return new Promise((resolve) => {
    const child = execFile(file, args, { timeout: o.timeoutMs ?? 15_000, maxBuffer: 64 * 1024 * 1024 }, (err, stdout, stderr) => {
      resolve({ code: err ? (typeof err.code === 'number' ? err.code : null) : 0, stdout, stderr: err && typeof err.code !== 'number' ? `${err.message} ${stderr}` : stderr });
    });
    child.stdin?.on('error', () => undefined);
    child.stdin?.end(o.input ?? '');
  });
}

async function must(file: string, args: string[], input?: string): Promise<string> {
  const r = await run(file, args, input === undefined ? {} : { input });
  if (r.code !== 0) throw new Error(`${file} ${args.join(' ')} failed (${r.code}): ${r.stderr}`);
  return r.stdout;
}

const inNs = (ns: string, args: string[], input?: string): Promise<string> => must('nsenter', [`--net=${netns(ns)}`, '--', ...args], input);
const ipBatch = (ns: string, lines: string[]): Promise<string> => must('ip', ['-n', `${PREFIX}${ns}`, '-batch', '-'], lines.join('\n') + '\n');

/** Kills what a crashed earlier run left in our namespaces (by pid), then deletes them. */
async function reap(): Promise<void> {
  const names = (await must('ip', ['netns', 'list'])).split('\n').map((l) => l.split(' ')[0] ?? '').filter((n) => n.startsWith(PREFIX));
  for (const name of names) {
    const pids = (await run('ip', ['netns', 'pids', name])).stdout.split('\n').filter((p) => /^\d+$/.test(p));
    for (const pid of pids) {
      try {
        process.kill(Number(pid), 'SIGKILL');
      } catch {
        // already gone
      }
    }
    await run('ip', ['netns', 'del', name]);
  }
}

async function addNs(name: string): Promise<void> {
  await must('ip', ['netns', 'add', `${PREFIX}${name}`]);
  // DAD off, so link-local IPv6 is usable at once (the v6 check needs it); the host does the
  // routing; rp_filter off, so that only our table stands between a spoofer and its target.
  await inNs(name, ['sysctl', '-q', '-w', 'net.ipv6.conf.all.accept_dad=0', 'net.ipv6.conf.default.accept_dad=0', 'net.ipv4.conf.all.rp_filter=0', 'net.ipv4.conf.default.rp_filter=0', 'net.ipv4.ip_forward=1']);
  await ipBatch(name, ['link set lo up']);
}

// One listener per spec (`tcp:HOST:PORT` answers the peer's address and closes; `udp:HOST:PORT`
// prints `peer payload` per datagram); "ready" once every socket is bound.
const SERVER = `
import socket, sys, threading
def serve_tcp(s):
    while True:
        c, a = s.accept()
        try: c.sendall(a[0].encode())
        except OSError: pass
        c.close()
def serve_udp(s):
    while True:
        d, a = s.recvfrom(200)
        print(a[0], d.decode(), flush=True)
for spec in sys.argv[1:]:
    proto, rest = spec.split(':', 1)
    host, port = rest.rsplit(':', 1)
    host = host.strip('[]')
    fam = socket.AF_INET6 if ':' in host else socket.AF_INET
    s = socket.socket(fam, socket.SOCK_STREAM if proto == 'tcp' else socket.SOCK_DGRAM)
    s.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
    if fam == socket.AF_INET6: s.setsockopt(socket.IPPROTO_IPV6, socket.IPV6_V6ONLY, 0)
    s.bind((host, int(port)))
    if proto == 'tcp': s.listen(64)
    threading.Thread(target=serve_tcp if proto == 'tcp' else serve_udp, args=(s,), daemon=True).start()
print('ready', flush=True)
threading.Event().wait()
`;

// connect(host, port) from an optional source address; prints what the server answered.
const CONNECT = `
import socket, sys
host, port, src, t = sys.argv[1], int(sys.argv[2]), sys.argv[3], float(sys.argv[4])
fam = socket.AF_INET6 if ':' in host else socket.AF_INET
s = socket.socket(fam, socket.SOCK_STREAM)
s.settimeout(t)
try:
    if src: s.bind((src, 0))
    s.connect(socket.getaddrinfo(host, port, fam, socket.SOCK_STREAM)[0][4])
    print(s.recv(200).decode())
except Exception as e:
    print(type(e).__name__)
    sys.exit(1)
`;

const SEND_UDP = `
import socket, sys
s = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)
s.bind((sys.argv[3], 0))
s.sendto(sys.argv[4].encode(), (sys.argv[1], int(sys.argv[2])))
`;

/** What the server at host:port saw as our address, or null when the connection did not happen. */
async function tcp(from: string, host: string, port: number, src = ''): Promise<string | null> {
  const r = await run('nsenter', [`--net=${netns(from)}`, '--', 'python3', '-c', CONNECT, host, String(port), src, '1.5'], { timeoutMs: 10_000 });
  return r.code === 0 ? r.stdout.trim() : null;
}

const udp = (from: string, host: string, port: number, src: string, msg: string): Promise<string> => inNs(from, ['python3', '-c', SEND_UDP, host, String(port), src, msg]);

describe.skipIf(process.getuid?.() !== 0)('NftPolicy', () => {
  beforeAll(async () => {
    await reap();
    await addNs('c');
  }, 60_000);
  afterAll(reap, 60_000);

  const owners = (n: number, groups: number, base = 0): Map<string, number> => new Map(Array.from({ length: n }, (_, i) => [`10.251.${(base + i) >> 8}.${(base + i) & 255}`, 300_000 + (i % groups)]));
  const snapshot = (o: Partial<PolicySnapshot> = {}): PolicySnapshot => ({ overlay: '10.250.0.0/16', publicPorts: [], internal: [], trusted: [], owners: new Map(), builds: [], publicEndpoints: [], resolvers: [], ...o });

  it('renders a table nft accepts, empty or with 1,000 owners, and nft -c does catch mistakes', async () => {
    const empty = renderTable('berth', snapshot({ overlay: '10.244.0.0/16' }));
    await runNft(empty, { netns: netns('c'), check: true });
    const vxlan = renderTable('berth', snapshot({ vxlanPort: 8472, resolvers: ['10.255.255.53'], publicEndpoints: [['198.18.0.1', 80], ['198.18.0.1', 443]] }));
    await runNft(vxlan, { netns: netns('c'), check: true });
    expect(vxlan).toContain('udp dport 8472 ip saddr != @trusted drop');
    expect(vxlan).toMatch(/chain overlay_out \{\n\s+udp dport 8472 drop/);
    expect(empty).toMatch(/^add table inet berth\ndelete table inet berth\ntable inet berth \{/);
    expect(empty).toContain('169.254.0.0/16'); // link-local is always internal

    const full = renderTable('berth', snapshot({
      overlay: '10.251.0.0/16',
      publicPorts: [80, 443, 5000],
      internal: ['198.18.0.1', '198.18.0.2', '198.18.0.0/24', '169.254.169.254'], // overlapping: merged
      trusted: ['198.18.0.1', '198.18.0.2', '10.251.0.0', '10.251.1.0'],
      owners: owners(1000, 100),
      builds: ['10.251.200.1', '10.251.200.2'],
    }));
    await runNft(full, { netns: netns('c'), check: true });
    expect(full).toContain('10.251.3.231 : 300099');
    expect(full).toContain('10.251.3.231 . 300099');

    const broken = full.replace('masquerade', 'masquerad');
    await expect(runNft(broken, { netns: netns('c'), check: true })).rejects.toMatchObject({ code: NFT_FAILED, message: expect.stringContaining('masquerad') });
  });

  it('refuses input that is not an address, port, group or name before nft sees it', async () => {
    const cases: Partial<PolicySnapshot>[] = [
      { owners: new Map([['10.250.0.1 }; flush ruleset; #', 1]]) },
      { owners: new Map([['10.250.0.1', -1]]) },
      { internal: ['10.0.0.5/24'] }, // host bits set
      { trusted: ['10.0.0.0/33'] },
      { builds: ['10.250.0.1/32'] },
      { publicPorts: [70_000] },
    ];
    for (const c of cases) expect(() => renderTable('berth', snapshot(c)), JSON.stringify([...Object.entries(c)])).toThrow(expect.objectContaining({ code: PolicyErrorCode.Invalid }));
    expect(() => renderTable('Berth', snapshot())).toThrow(expect.objectContaining({ code: PolicyErrorCode.Invalid }));
    expect(() => renderTable('berth12', snapshot())).toThrow(expect.objectContaining({ code: PolicyErrorCode.Invalid }));
    await expect(new NftPolicy({ name: 'pe', log: silentLog(), netns: netns('c') }).apply({ builds: { add: ['10.250.0.1'], del: [] } })).rejects.toMatchObject({ code: PolicyErrorCode.NotLoaded });
  });

  it("surfaces nft's error with a stable code, and tolerates deleting what is not there", async () => {
    const p = new NftPolicy({ name: 'pe', log: silentLog(), netns: netns('c') });
    await p.load(snapshot({ owners: new Map([['10.250.0.1', 7]]) }));
    // Nothing to do: no nft process at all (a missing table would make any nft call fail).
    await inNs('c', ['nft', 'delete', 'table', 'inet', 'pe']);
    await p.apply({});
    await p.apply({ owners: { set: [['10.250.0.1', 7]], del: ['10.250.0.99'] }, builds: { add: [], del: ['10.250.0.98'] }, internal: { add: [], del: ['10.9.9.9'] } });
    const err: unknown = await p.apply({ owners: { set: [['10.250.0.2', 7]], del: [] } }).catch((e: unknown) => e);
    expect(isBerthError(err, NFT_FAILED)).toBe(true);
    expect((err as Error).message).toContain('No such file or directory');

    await p.load(snapshot({ owners: new Map([['10.250.0.1', 7]]), internal: ['10.0.0.0/24'] }));
    // A missing delete beside real changes: the batch still goes through.
    await p.apply({
      owners: { set: [['10.250.0.1', 8], ['10.250.0.2', 8]], del: ['10.250.0.3'] },
      builds: { add: ['10.250.0.9'], del: ['10.250.0.10'] },
      internal: { add: ['10.0.0.7', '10.0.1.0/24'], del: ['10.0.0.0/24', '172.16.0.1'] },
      trusted: { add: ['198.18.0.1'], del: ['198.18.0.2'] },
    });
    const listed = await inNs('c', ['nft', 'list', 'table', 'inet', 'pe']);
    expect(squash(listed)).toContain('map owner { type ipv4_addr : mark elements = { 10.250.0.1 : 0x00000008, 10.250.0.2 : 0x00000008 } }');
    expect(squash(listed)).toContain('set owned { type ipv4_addr . mark elements = { 10.250.0.1 . 0x00000008, 10.250.0.2 . 0x00000008 } }');
    expect(squash(listed)).toContain('elements = { 10.0.0.7, 10.0.1.0/24, 169.254.0.0/16 }');
    expect(squash(listed)).toContain('set builds { type ipv4_addr elements = { 10.250.0.9 } }');
    // Deleting link-local from internal is not possible; deleting what is absent is nothing.
    await p.apply({ internal: { add: [], del: ['169.254.0.0/16', '10.0.0.7'] }, owners: { set: [], del: ['10.250.0.1'] } });
    const after = squash(await inNs('c', ['nft', 'list', 'table', 'inet', 'pe']));
    expect(after).toContain('elements = { 10.0.1.0/24, 169.254.0.0/16 }');
    expect(after).toContain('map owner { type ipv4_addr : mark elements = { 10.250.0.2 : 0x00000008 } }');
    await p.remove();
    await p.remove(); // absent: still fine
    expect(await inNs('c', ['nft', 'list', 'tables'])).not.toContain('inet pe');
  });

  it('loads 5,000 owners and applies 1,000 owner changes in one batch quickly', async () => {
    const p = new NftPolicy({ name: 'sc', log: silentLog(), netns: netns('c') });
    const base = owners(5000, 1000);
    let t = performance.now();
    await p.load(snapshot({ overlay: '10.251.0.0/16', owners: base, internal: ['198.18.0.0/24'], trusted: ['198.18.0.1'] }));
    const load5k = performance.now() - t;

    // 1,000 changes: 400 owners move to another app, 300 leave, 300 new ones arrive.
    const keys = [...base.keys()];
    const set: [string, number][] = [...keys.slice(0, 400).map((ip): [string, number] => [ip, 299_999]), ...[...owners(300, 10, 6000)]];
    const del = keys.slice(400, 700);
    t = performance.now();
    await p.apply({ owners: { set, del } });
    const apply1k = performance.now() - t;

    t = performance.now();
    await p.apply({ owners: { set: [['10.251.100.1', 1]], del: [] } });
    const apply1 = performance.now() - t;

    const listed = JSON.parse(await inNs('c', ['nft', '-j', 'list', 'map', 'inet', 'sc', 'owner'])) as { nftables: { map?: { elem?: [string, number][] } }[] };
    const elems = listed.nftables.find((x) => x.map)?.map?.elem ?? [];
    expect(elems.length).toBe(5001);
    expect(new Map(elems).get(keys[0]!)).toBe(299_999);
    expect(new Map(elems).has(keys[400]!)).toBe(false);
    const owned = await inNs('c', ['nft', '-j', 'list', 'set', 'inet', 'sc', 'owned']);
    expect(owned.match(/"concat"/g)?.length).toBe(5001);

    t = performance.now();
    await p.load(snapshot({ overlay: '10.251.0.0/16', owners: owners(10_000, 1000) }));
    const load10k = performance.now() - t;
    await p.remove();

    console.log(`policy timings: load 5,000 owners ${load5k.toFixed(0)} ms; apply 1,000 owner changes ${apply1k.toFixed(0)} ms; apply 1 change ${apply1.toFixed(0)} ms; load 10,000 owners ${load10k.toFixed(0)} ms`);
    expect(load5k).toBeLessThan(5000);
    expect(apply1k).toBeLessThan(5000);
    expect(load10k).toBeLessThan(5000);
  }, 60_000);

  describe('on a machine of routed /32 veths', () => {
    const HOST = `198.19.${POOL}.1`; // the machine's underlay address
    const OUT = `198.19.${POOL}.2`; // the outside world
    const PEER = `198.19.${POOL}.3`; // another machine (trusted), on the same link for brevity
    const A1 = '10.250.0.1';
    const A2 = '10.250.0.2';
    const B1 = '10.250.0.3';
    const BUILD = '10.250.0.9';
    const REMOTE_B = '10.250.0.20'; // a dyno of app B on another machine
    const APP_A = 200_001;
    const APP_B = 200_002;
    const dynos = { a1: A1, a2: A2, b1: B1, bd: BUILD } as const;
    const veths: Record<string, string> = {};
    const servers: ChildProcess[] = [];
    const udpSeen: string[] = [];
    let hostLinkLocal = '';
    const policy = new NftPolicy({ name: 'bt', log: silentLog(), netns: netns('h') });
    const state = (): PolicySnapshot => ({
      overlay: '10.250.0.0/16',
      publicPorts: [8080],
      internal: [HOST],
      trusted: [PEER],
      owners: new Map([[A1, APP_A], [A2, APP_A], [B1, APP_B], [REMOTE_B, APP_B]]),
      builds: [BUILD],
      publicEndpoints: [],
      resolvers: [],
    });

    async function serve(ns: string, specs: string[], onLine?: (l: string) => void): Promise<void> {
      const child = spawn('nsenter', [`--net=${netns(ns)}`, '--', 'python3', '-c', SERVER, ...specs], { stdio: ['ignore', 'pipe', 'pipe'] });
      servers.push(child);
      let out = '';
      let err = '';
      child.stderr.on('data', (d: Buffer) => (err += d.toString()));
      let ready = false;
      child.stdout.on('data', (d: Buffer) => {
        out += d.toString();
        const lines = out.split('\n');
        out = lines.pop() ?? '';
        for (const l of lines) {
          if (l === 'ready') ready = true;
          else onLine?.(l);
        }
      });
      await until(`servers in ${ns}`, () => ready || child.exitCode !== null, { timeoutMs: 10_000, context: () => err });
      if (child.exitCode !== null) throw new Error(`server in ${ns} exited: ${err}`);
    }

    beforeAll(async () => {
      for (const ns of ['h', 'o', ...Object.keys(dynos)]) await addNs(ns);
      const hostLines = [`link add up0 type veth peer name eth0 netns ${PREFIX}o`, `addr add ${HOST}/29 dev up0`, 'link set up0 up'];
      for (const [i, [ns, addr]] of Object.entries(dynos).entries()) {
        // Unique per run (pitfall 3: a deleted namespace's veth names linger for a moment).
        veths[ns] = `bt${Math.floor(Math.random() * 2 ** 32).toString(16).padStart(8, '0')}`;
        const mac = `02:00:00:00:00:${(i + 1).toString(16).padStart(2, '0')}`;
        hostLines.push(`link add ${veths[ns]} address ${mac} type veth peer name eth0 netns ${PREFIX}${ns}`, `link set ${veths[ns]} up`, `route add ${addr}/32 dev ${veths[ns]} src ${HOST}`);
      }
      await ipBatch('h', hostLines);
      for (const [i, [ns, addr]] of Object.entries(dynos).entries()) {
        const mac = `02:00:00:00:00:${(i + 1).toString(16).padStart(2, '0')}`;
        await ipBatch(ns, [`addr add ${addr}/32 dev eth0`, 'link set eth0 up', 'route add 169.254.1.1 dev eth0', 'route add default via 169.254.1.1', `neigh replace 169.254.1.1 lladdr ${mac} dev eth0 nud permanent`]);
      }
      // The outside world knows a way into the overlay (it must still not get in).
      await ipBatch('o', [`addr add ${OUT}/29 dev eth0`, `addr add ${PEER}/29 dev eth0`, 'link set eth0 up', `route add 10.250.0.0/16 via ${HOST}`]);

      const addrs = JSON.parse(await must('ip', ['-n', `${PREFIX}h`, '-j', 'addr', 'show', 'dev', veths.a1!])) as { addr_info: { family: string; local: string }[] }[];
      hostLinkLocal = addrs[0]?.addr_info.find((a) => a.family === 'inet6')?.local ?? '';
      expect(hostLinkLocal).toMatch(/^fe80:/);

      await serve('h', ['tcp:0.0.0.0:8080', 'tcp:[::]:2379']); // the router, and a stand-in for etcd on every address
      await serve('o', ['tcp:0.0.0.0:9000', 'tcp:0.0.0.0:8080']);
      for (const ns of ['a1', 'a2']) await serve(ns, ['tcp:0.0.0.0:5000', 'tcp:0.0.0.0:6000']);
      await serve('b1', ['tcp:0.0.0.0:5000', 'udp:0.0.0.0:7000'], (l) => udpSeen.push(l));
    }, 60_000);

    afterAll(async () => {
      for (const s of servers) s.kill('SIGKILL');
      await policy.remove().catch(() => undefined);
    });

    /** Runs every probe at once (a refused one costs a 1.5 s timeout) and names each result. */
    async function probe(checks: Record<string, () => Promise<string | null>>): Promise<Record<string, string | null>> {
      const names = Object.keys(checks);
      const results = await Promise.all(names.map((n) => checks[n]!()));
      return Object.fromEntries(names.map((n, i) => [n, results[i] ?? null]));
    }

    const DENIED = {
      'A1 -> B1': () => tcp('a1', B1, 5000),
      'B1 -> A1': () => tcp('b1', A1, 5000),
      'A1 -> host:2379': () => tcp('a1', HOST, 2379),
      'A1 -> host v6 link-local:2379': () => tcp('a1', `${hostLinkLocal}%eth0`, 2379),
      'build -> A1': () => tcp('bd', A1, 5000),
      'build -> host:8080': () => tcp('bd', HOST, 8080),
      'outside -> A1': () => tcp('o', A1, 5000, OUT),
    };

    it('without the table everything reaches everything (so each refusal below is the policy)', async () => {
      const r = await probe(DENIED);
      expect(Object.entries(r).filter(([, v]) => v === null)).toEqual([]);
      expect(await tcp('a1', OUT, 9000)).toBe(A1); // not masqueraded yet
    }, 30_000);

    it('lets a dyno reach its own app, the public ports and the outside world, and nothing else', async () => {
      await policy.load(state());
      const allowed = await probe({
        'A1 -> A2:5000': () => tcp('a1', A2, 5000),
        'A1 -> A2:6000': () => tcp('a1', A2, 6000),
        'A2 -> A1:5000': () => tcp('a2', A1, 5000),
        'host -> A1': () => tcp('h', A1, 5000),
        'host -> A2': () => tcp('h', A2, 6000),
        'host -> B1': () => tcp('h', B1, 5000),
        'A1 -> host:8080': () => tcp('a1', HOST, 8080),
        'A1 -> outside': () => tcp('a1', OUT, 9000),
        'build -> outside': () => tcp('bd', OUT, 9000),
        'peer machine -> A1': () => tcp('o', A1, 5000, PEER),
      });
      expect(allowed).toEqual({
        'A1 -> A2:5000': A1,
        'A1 -> A2:6000': A1,
        'A2 -> A1:5000': A2,
        'host -> A1': HOST,
        'host -> A2': HOST,
        'host -> B1': HOST,
        'A1 -> host:8080': A1,
        'A1 -> outside': HOST, // masqueraded
        'build -> outside': HOST,
        'peer machine -> A1': PEER,
      });
      const denied = await probe(DENIED);
      expect(Object.entries(denied).filter(([, v]) => v !== null)).toEqual([]);
    }, 30_000);

    it('applies owner, internal and trusted changes to live traffic', async () => {
      // A2 moves to app B: A1 loses it, B1 gains it.
      await policy.apply({ owners: { set: [[A2, APP_B]], del: [] } });
      expect(await probe({ 'A1 -> A2': () => tcp('a1', A2, 5000), 'B1 -> A2': () => tcp('b1', A2, 5000) })).toEqual({ 'A1 -> A2': null, 'B1 -> A2': B1 });
      await policy.apply({ owners: { set: [[A2, APP_A]], del: ['10.250.0.77'] } });
      expect(await tcp('a1', A2, 5000)).toBe(A1);

      // The outside address becomes a machine's: a dyno reaches only its public ports, a build nothing.
      await policy.apply({ internal: { add: [OUT], del: [] } });
      expect(await probe({ '9000': () => tcp('a1', OUT, 9000), '8080': () => tcp('a1', OUT, 8080), build: () => tcp('bd', OUT, 8080) })).toEqual({ '9000': null, '8080': null, build: null });
      // …which it publishes (each machine its own public ports).
      await policy.load({ ...state(), internal: [HOST, OUT], publicEndpoints: [[OUT, 8080]] });
      expect(await probe({ '9000': () => tcp('a1', OUT, 9000), '8080': () => tcp('a1', OUT, 8080), build: () => tcp('bd', OUT, 8080) })).toEqual({ '9000': null, '8080': HOST, build: null });
      await policy.load(state());
      expect(await tcp('a1', OUT, 9000)).toBe(HOST);

      // Trusted: the outside address may open connections to dynos while it is in the set.
      await policy.apply({ trusted: { add: [OUT], del: [] } });
      expect(await tcp('o', A1, 5000, OUT)).toBe(OUT);
      await policy.apply({ trusted: { add: [], del: [OUT] } });
      expect(await tcp('o', A1, 5000, OUT)).toBeNull();
    }, 60_000);

    it('drops a dyno that sends from an address that is not routed to it', async () => {
      const chain = await inNs('h', ['nft', 'list', 'chain', 'inet', 'bt', 'prerouting']);
      expect(chain).toContain('iifname "bt*" iifname != "bt.vx" fib saddr . iif oif missing drop');
      // A1 (root in its namespace here, as a compromised dyno could not be) takes the address of a
      // remote app-B dyno and of a trusted machine, and sends to B1, which both may reach.
      await ipBatch('a1', [`addr add ${REMOTE_B}/32 dev eth0`, `addr add ${PEER}/32 dev eth0`]);
      const spoofAll = async (tag: string): Promise<void> => {
        await udp('a1', B1, 7000, REMOTE_B, `${tag}-as-b`);
        await udp('a1', B1, 7000, PEER, `${tag}-as-peer`);
        await udp('h', B1, 7000, HOST, `${tag}-marker`); // the host may: tells us the earlier ones had their chance
        await until(`${tag} marker`, () => udpSeen.some((l) => l.endsWith(`${tag}-marker`)), 5000);
        await new Promise((r) => setTimeout(r, 200)); // packets of two paths may cross: give the earlier ones time
      };
      await spoofAll('with');
      expect(udpSeen.filter((l) => l.includes('with-as'))).toEqual([]);

      // The same without the rule arrives: the check above is not vacuous.
      await inNs('h', ['nft', 'flush', 'chain', 'inet', 'bt', 'prerouting']);
      await spoofAll('without');
      expect(udpSeen.filter((l) => l.includes('without-as')).sort()).toEqual([`${REMOTE_B} without-as-b`, `${PEER} without-as-peer`]);

      await policy.load(state());
      await spoofAll('again');
      expect(udpSeen.filter((l) => l.includes('again-as'))).toEqual([]);
      // ...and honest traffic still flows with the rule in place.
      expect(await probe({ 'A1 -> A2': () => tcp('a1', A2, 5000), 'A1 -> host:8080': () => tcp('a1', HOST, 8080), 'A1 -> outside': () => tcp('a1', OUT, 9000) })).toEqual({ 'A1 -> A2': A1, 'A1 -> host:8080': A1, 'A1 -> outside': HOST });
    }, 60_000);
  });
});

/** nft's listing on one line with single spaces, for contains-checks. */
function squash(listing: string): string {
  return listing.replace(/\s+/g, ' ');
}
