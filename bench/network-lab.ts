/**
 * The multi-machine half of `npm run bench:network`: dyno-to-dyno throughput across two lab hosts
 * (network namespaces on one bridge, test/support/netlab.ts) over each overlay backend, against
 * host-to-host on the same underlay, and the time one machine takes to apply 1,000 policy changes
 * against nft's own one-transaction load of the same elements.
 *
 * Each machine runs a real OverlayNetwork in a process of its own inside its host (the test
 * fixture test/network/fixtures/net-node.ts, driven by JSON lines as test/network/overlay.test.ts
 * drives it), on a real etcd inside host 0 — a fresh lab and etcd per backend.
 */
import { mkdtempSync, rmSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { startLineProcess, type LineProcess } from '../test/support/line-process.js';
import { createLab, startEtcdIn, type Lab, type LabHost } from '../test/support/netlab.js';
import { until } from '../test/support/until.js';
import { sleep, step, withTimeout } from './lib.js';

const FIXTURE = join(import.meta.dirname, '../test/network/fixtures/net-node.ts');
const WRITER = join(import.meta.dirname, 'network-writer.ts');
const OVERLAY = '10.244.0.0/16';
/** Stands for the router's public port: nothing listens there, the policy only needs one. */
const PUBLIC_PORT = 18080;
const IPERF_PORT = 5201;
const APP_GROUP = 200_001;
const POLICY_CHANGES = 1000;
const POLICY_POLL_MS = 20;
const CHANGE_TIMEOUT_MS = 20_000;

export interface ThroughputResult {
  backend: 'vxlan' | 'host-gw';
  /** Gbit/s per round, in the order measured. */
  overlay: number[];
  underlay: number[];
  /** TCP retransmits of the median overlay round (a lossy path shows here first). */
  retransmits: number;
}

export interface PolicyResult {
  /** ms from the first store write until the machine's nft map holds all (adds) or none (deletes) of them, per round. */
  add: number[];
  del: number[];
  /** ms the writer's transactions took themselves (part of the above), per round. */
  writeAdd: number[];
  writeDel: number[];
  /** `nft -f` of the same elements in one transaction, in a scratch namespace, per round. */
  floorAdd: number[];
  floorDel: number[];
  /** ms one poll of the nft map took (the resolution of add/del), median. */
  pollMs: number;
}

function startNetNode(lab: Lab, i: number, o: { store: string; dir: string; backend: string }): Promise<LineProcess> {
  const host = lab.hosts[i] as LabHost;
  const config = { store: o.store, machine: `m${i}`, dir: join(o.dir, `m${i}`), name: `${lab.prefix}n${i}`, publicIp: host.address, network: OVERLAY, backend: o.backend, publicPorts: [PUBLIC_PORT], internal: [lab.hosts[0]?.address] };
  return startLineProcess(`net-node ${host.name}`, host, FIXTURE, config);
}

/** Addresses in the node's `owner` map (the policy follows every machine's dynos). */
async function ownerCount(host: LabHost, table: string): Promise<number> {
  const r = await host.exec('nft', ['-j', 'list', 'map', 'inet', table, 'owner'], { timeoutMs: 5000 });
  if (r.code !== 0) throw new Error(`nft list map inet ${table} owner in ${host.name}: ${r.stderr.trim()}`);
  const doc = JSON.parse(r.stdout) as { nftables: { map?: { elem?: unknown[] } }[] };
  return doc.nftables.find((x) => x.map)?.map?.elem?.length ?? 0;
}

/**
 * One iperf3 run: a one-shot server in `server`'s namespace, the client in `client`'s, 1 s of slow
 * start left out of the figure. Gbit/s received, and the sender's retransmits.
 */
async function iperf(server: { host: LabHost; netns: string }, client: { host: LabHost; netns: string }, address: string, seconds: number): Promise<{ gbps: number; retransmits: number }> {
  const srv = server.host.spawn('nsenter', [`--net=${server.netns}`, '--', 'iperf3', '-s', '-1', '-p', String(IPERF_PORT), '--forceflush'], { stdio: ['ignore', 'pipe', 'pipe'] });
  try {
    let out = '';
    await withTimeout(
      'iperf3 server start',
      5000,
      new Promise<void>((resolve, reject) => {
        srv.stdout?.on('data', (d: Buffer) => ((out += d.toString()), out.includes('Server listening') && resolve()));
        srv.once('exit', (code) => reject(new Error(`iperf3 -s exited with ${code}: ${out}`)));
      }),
    );
    const r = await client.host.exec('nsenter', [`--net=${client.netns}`, '--', 'iperf3', '-c', address, '-p', String(IPERF_PORT), '-t', String(seconds), '-O', '1', '-J'], { timeoutMs: (seconds + 15) * 1000 });
    const doc = JSON.parse(r.stdout || '{}') as { error?: string; end?: { sum_received?: { bits_per_second?: number }; sum_sent?: { retransmits?: number } } };
    const bps = doc.end?.sum_received?.bits_per_second;
    if (r.code !== 0 || doc.error || !bps) throw new Error(`iperf3 -c ${address} failed (${r.code}): ${doc.error ?? r.stderr.trim()}`);
    return { gbps: bps / 1e9, retransmits: doc.end?.sum_sent?.retransmits ?? 0 };
  } finally {
    if (srv.exitCode === null && srv.pid !== undefined) {
      try {
        process.kill(-srv.pid, 'SIGKILL');
      } catch {
        // Gone meanwhile.
      }
    }
  }
}

export interface LabRunOptions {
  backend: 'vxlan' | 'host-gw';
  rounds: number;
  seconds: number;
  /** Also measure the policy changes on this lab's machine 0 (once per run is enough). */
  policy?: { rounds: number };
  /** Holds the lab's teardown while it lives, for a Ctrl-C handler. */
  cleanups: Set<() => Promise<void>>;
}

/** One backend's lab: throughput rounds, then (if asked) the policy changes. Removes everything it made, also on failure. */
export async function runLab(o: LabRunOptions): Promise<{ throughput: ThroughputResult; policy?: PolicyResult }> {
  const dir = mkdtempSync(join(tmpdir(), 'berth-bench-network-'));
  let lab: Lab | undefined;
  let etcd: { url: string; stop(): Promise<void> } | undefined;
  const procs: LineProcess[] = [];
  let destroy: (() => Promise<void>) | undefined;
  try {
    lab = await createLab({ hosts: 2 });
    // On Ctrl-C: the lab kills what it spawned (net-nodes, etcd, iperf3) and removes its namespaces.
    const l = lab;
    destroy = () => l.destroy();
    o.cleanups.add(destroy);
    const [h0, h1] = lab.hosts as [LabHost, LabHost];
    step(`${o.backend}: lab ${lab.prefix} (${lab.underlay}), etcd in ${h0.name}, an overlay node in ${h0.name} and ${h1.name}`);
    etcd = await startEtcdIn(h0, { dataDir: join(dir, 'etcd') });
    const store = etcd.url.replace('http://', 'etcd://');
    // One after the other: the first writes the cluster's config, and so chooses the backend.
    for (const i of [0, 1]) procs.push(await startNetNode(lab, i, { store, dir, backend: o.backend }));
    const [n0, n1] = procs as [LineProcess, LineProcess];
    if (n0.first.backend !== o.backend) throw new Error(`the overlay came up as ${n0.first.backend}, not ${o.backend}`);
    const d0 = await n0.send({ op: 'attach', appId: 'bench', group: APP_GROUP, owner: 'bench.web.1@v1' });
    const d1 = await n1.send({ op: 'attach', appId: 'bench', group: APP_GROUP, owner: 'bench.web.2@v1' });
    // Each machine's routes to the other's subnet and the other's dyno in its policy, or the
    // first round would measure the store's watch rather than the path.
    const [tbl0, tbl1] = [`${lab.prefix}n0`, `${lab.prefix}n1`];
    await until('routes and policy on both machines', async () => {
      const r0 = (await h0.exec('ip', ['route', 'show', String(n1.first.subnet)])).stdout.trim();
      const r1 = (await h1.exec('ip', ['route', 'show', String(n0.first.subnet)])).stdout.trim();
      return r0 && r1 && (await ownerCount(h0, tbl0)) >= 2 && (await ownerCount(h1, tbl1)) >= 2;
    }, { timeoutMs: 15_000 });
    const dynoServer = { host: h0, netns: String(d0.netns) };
    const dynoClient = { host: h1, netns: String(d1.netns) };
    const hostServer = { host: h0, netns: h0.netns };
    const hostClient = { host: h1, netns: h1.netns };
    const overlay: { gbps: number; retransmits: number }[] = [];
    const underlay: number[] = [];
    for (let round = 0; round < o.rounds; round++) {
      // Alternating which goes first: neither always meets a fresh (or tired) machine.
      const order = round % 2 === 0 ? ['underlay', 'overlay'] : ['overlay', 'underlay'];
      for (const path of order) {
        step(`${o.backend} round ${round + 1}: ${path === 'overlay' ? `dyno ${d1.address} → dyno ${d0.address}` : `host ${h1.address} → host ${h0.address}`} (${o.seconds} s)`);
        if (path === 'overlay') overlay.push(await iperf(dynoServer, dynoClient, String(d0.address), o.seconds));
        else underlay.push((await iperf(hostServer, hostClient, h0.address, o.seconds)).gbps);
      }
    }
    const sorted = [...overlay].sort((a, b) => a.gbps - b.gbps);
    const throughput: ThroughputResult = { backend: o.backend, overlay: overlay.map((x) => x.gbps), underlay, retransmits: sorted[Math.floor((sorted.length - 1) / 2)]?.retransmits ?? 0 };
    if (!o.policy) return { throughput };
    const policy = await policyChanges(lab, tbl0, [String(n0.first.subnet), String(n1.first.subnet)], store, o.policy.rounds, procs);
    return { throughput, policy };
  } finally {
    for (const p of procs.splice(0).reverse()) await p.stop().catch(() => undefined);
    await etcd?.stop().catch(() => undefined);
    await lab?.destroy();
    if (destroy) o.cleanups.delete(destroy);
    rmSync(dir, { recursive: true, force: true });
  }
}

/** 1,000 addresses of the overlay in /24s no machine holds: other machines' dynos, as far as this one can tell. */
function policyRecords(leased: string[]): [string, number][] {
  const taken = new Set(leased.map((s) => s.split('.')[2]));
  const [a, b] = OVERLAY.split('.');
  const out: [string, number][] = [];
  for (let third = 200; out.length < POLICY_CHANGES && third < 256; third++) {
    if (taken.has(String(third))) continue;
    for (let host = 1; host <= 250 && out.length < POLICY_CHANGES; host++) out.push([`${a}.${b}.${third}.${host}`, 300_000 + out.length]);
  }
  return out;
}

/** Polls the map every POLICY_POLL_MS until it holds `want`; ms from t0 to the end of the poll that saw it. */
async function untilOwners(host: LabHost, table: string, want: number, t0: number, polls: number[]): Promise<number> {
  for (;;) {
    const p0 = performance.now();
    const n = await ownerCount(host, table);
    const p1 = performance.now();
    polls.push(p1 - p0);
    if (n === want) return p1 - t0;
    if (p1 - t0 > CHANGE_TIMEOUT_MS) throw new Error(`${table}: the owner map holds ${n} addresses, not ${want}, ${CHANGE_TIMEOUT_MS} ms after the writes`);
    await sleep(Math.max(0, POLICY_POLL_MS - (p1 - p0)));
  }
}

/**
 * Times the policy side of the pipeline on machine 0: store writes (the writer, inside host 0) →
 * watch → one nft transaction → the kernel's map. The floor is `nft -f` of the same elements (owner
 * map and owned set, one `add element` each) in one transaction, run by a timer process inside a
 * scratch namespace (the lab's idle internet host) so no nsenter start is counted.
 */
async function policyChanges(lab: Lab, table: string, leased: string[], store: string, rounds: number, procs: LineProcess[]): Promise<PolicyResult> {
  const h0 = lab.hosts[0] as LabHost;
  const records = policyRecords(leased);
  if (records.length !== POLICY_CHANGES) throw new Error(`only ${records.length} free overlay addresses for the policy changes`);
  step(`policy: ${POLICY_CHANGES} address records written to etcd from inside ${h0.name}, until ${table}'s owner map holds them; ${rounds} rounds`);
  const writer = await startLineProcess('store writer', h0, WRITER, { store }, { op: 'load', records });
  procs.push(writer);
  const base = await ownerCount(h0, table);
  const r: PolicyResult = { add: [], del: [], writeAdd: [], writeDel: [], floorAdd: [], floorDel: [], pollMs: 0 };
  const polls: number[] = [];
  for (let round = 0; round < rounds; round++) {
    for (const op of ['put', 'del'] as const) {
      const t0 = performance.now();
      const written = writer.send({ op }, CHANGE_TIMEOUT_MS);
      const ms = await untilOwners(h0, table, op === 'put' ? base + POLICY_CHANGES : base, t0, polls);
      const w = (await written).ms ?? NaN;
      (op === 'put' ? r.add : r.del).push(ms);
      (op === 'put' ? r.writeAdd : r.writeDel).push(w);
      // The node settles (its debounce and any trailing pass) before the next batch.
      await sleep(200);
    }
  }
  const floor = await nftFloor(lab.internet, records, rounds);
  r.floorAdd = floor.add;
  r.floorDel = floor.del;
  polls.sort((a, b) => a - b);
  r.pollMs = polls[Math.floor((polls.length - 1) / 2)] ?? NaN;
  return r;
}

// CommonJS under `node -e`: loads the table, then times each script given as `nft -f -`, as
// runNft (src/network/nft.ts) runs it: one execFile, the script on stdin.
const FLOOR_JS = `const { execFile } = require('node:child_process');
const nft = (s) => new Promise((res, rej) => { const c = execFile('nft', ['-f', '-'], (e, o, err) => e ? rej(new Error(err)) : res()); c.stdin.end(s); });
(async () => {
  const [table, add, del, rounds] = JSON.parse(process.argv[1]);
  await nft(table);
  const out = { add: [], del: [] };
  for (let i = 0; i < rounds; i++) for (const k of ['add', 'del']) { const t0 = performance.now(); await nft(k === 'add' ? add : del); out[k].push(performance.now() - t0); }
  console.log(JSON.stringify(out));
})().catch((e) => { console.error(String(e)); process.exit(1); });`;

async function nftFloor(scratch: LabHost, records: [string, number][], rounds: number): Promise<{ add: number[]; del: number[] }> {
  step(`nft floor: ${POLICY_CHANGES} owner + owned elements in one nft -f, in ${scratch.name}`);
  const name = 'bfloor';
  const t = `inet ${name}`;
  // The same element types as the policy's owner map and owned set (src/network/policy.ts).
  const table = `table ${t} {\n  map owner { type ipv4_addr : mark; }\n  set owned { type ipv4_addr . mark; }\n}\n`;
  const add = `add element ${t} owner { ${records.map(([ip, g]) => `${ip} : ${g}`).join(', ')} }\nadd element ${t} owned { ${records.map(([ip, g]) => `${ip} . ${g}`).join(', ')} }\n`;
  const del = `delete element ${t} owner { ${records.map(([ip]) => ip).join(', ')} }\ndelete element ${t} owned { ${records.map(([ip, g]) => `${ip} . ${g}`).join(', ')} }\n`;
  try {
    const r = await scratch.exec(process.execPath, ['-e', FLOOR_JS, JSON.stringify([table, add, del, rounds])], { timeoutMs: 30_000 });
    if (r.code !== 0) throw new Error(`the nft floor failed (${r.code}): ${r.stderr.trim()}`);
    return JSON.parse(r.stdout) as { add: number[]; del: number[] };
  } finally {
    await scratch.exec('nft', ['-f', '-'], { input: `add table ${t}\ndelete table ${t}\n`, timeoutMs: 5000 }).catch(() => undefined);
  }
}
