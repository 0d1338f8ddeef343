/**
 * A network lab for multi-machine tests: N "hosts" that are network namespaces on one Linux bridge,
 * plus one more namespace standing in for the internet, so real etcd and `berth` processes can run
 * "on different machines" of one VM (issue 11).
 *
 * Naming, for lab id `n` (0..99: the vitest worker's `VITEST_POOL_ID`, or the next id free when a
 * live process already holds that one — claims are files in /run/berth-netlab, see claimLabId):
 * - prefix `nl<n>` (at most 4 characters); everything the lab makes starts with it;
 * - `nl<n>u`: the underlay namespace holding the bridge `br0` — the real host's network is not touched;
 * - `nl<n>h1`, `nl<n>h2`, …: the hosts; `nl<n>i`: the internet host;
 * - each of them has `eth0`, a veth whose peer sits in the underlay namespace as `<namespace>-<4 hex>`
 *   (≤ 15 characters, new hex per incarnation: names of a just-deleted namespace linger for a while);
 * - underlay `198.18.<n>.0/24` (inside 198.18.0.0/15, the benchmarking block): hosts .1, .2, …,
 *   the internet host .250, which is also every host's default gateway (so "the interface of the
 *   default route" finds the underlay, as on a real machine; beyond it there is nothing);
 * - with `gateway: true`, the test process's own (root) namespace joins the bridge too: a veth
 *   `nl<n>g<4 hex>` in the root namespace holding .254/24 — its link route to the lab's /24 is
 *   the only thing the lab ever adds there (no default route, no forwarding), so a test can call
 *   servers on lab hosts directly while the hosts cannot reach anything else of the real machine's
 *   networks.
 *
 * Hosts are entered with `nsenter --net=/run/netns/<name>` rather than `ip netns exec`, so processes
 * inside stay in the root mount namespace and can create (named) namespaces themselves.
 */
import { spawn, type ChildProcess, type StdioOptions } from 'node:child_process';
import { randomBytes } from 'node:crypto';
import { existsSync, mkdirSync, mkdtempSync, readFileSync, renameSync, rmSync, writeFileSync } from 'node:fs';
import { constants, tmpdir } from 'node:os';
import { join } from 'node:path';

export interface ExecResult {
  code: number;
  stdout: string;
  stderr: string;
}

export interface ExecOptions {
  input?: string;
  /** Default 30 s; on expiry the command's process group is killed and exec rejects. */
  timeoutMs?: number;
  /** Added to (not replacing) this process's environment. */
  env?: Record<string, string>;
}

export interface LabHost {
  /** e.g. `nl3h1` (namespace name); `netns` is `/run/netns/<name>`. */
  name: string;
  netns: string;
  /** Its underlay address on the lab bridge (in 198.18.0.0/15, a /24 block per vitest worker). */
  address: string;
  /** The host's interface on the underlay (always `eth0`, inside its own namespace). */
  iface: string;
  /** Runs a command inside the host: `nsenter --net=<netns> cmd ...args`. Resolves with any exit code. */
  exec(cmd: string, args: string[], opts?: ExecOptions): Promise<ExecResult>;
  /**
   * Spawns a long-running process inside the host (same nsenter wrapping, own process group); the
   * lab kills what it spawned on destroy. Default stdio is pipes: read or ignore what it writes, or a
   * chatty process blocks once the pipe fills.
   */
  spawn(cmd: string, args: string[], opts?: { env?: Record<string, string>; cwd?: string; stdio?: StdioOptions }): ChildProcess;
}

export interface Lab {
  /** Short prefix of everything this lab made, e.g. `nl3` (worker 3): at most 4 characters. */
  prefix: string;
  hosts: LabHost[];
  /** A host standing in for the internet: on the bridge, but not a Berth machine (an "outside server" for egress tests). */
  internet: LabHost;
  /** The underlay CIDR, e.g. `198.18.3.0/24`. */
  underlay: string;
  /**
   * With `createLab({ gateway: true })`: the root namespace's address on the lab bridge (`.254`),
   * the source of whatever the test process sends to a lab host. Undefined without a gateway.
   */
  gateway?: string;
  /**
   * Takes a host's link to the bridge down / up again (partition, heal). Its own routes stay. After a
   * heal, poll: ARP for addresses tried during the partition retries only once a second.
   */
  partition(host: LabHost): Promise<void>;
  heal(host: LabHost): Promise<void>;
  /** Kills every process the lab spawned (SIGKILL after a short grace), removes every namespace, veth and the bridge. Safe to call twice. */
  destroy(): Promise<void>;
}

const IFACE = 'eth0';
const BRIDGE = 'br0';
const INTERNET_OCTET = 250;
const GATEWAY_OCTET = 254;
/** The gateway's end inside the underlay namespace (goes with that namespace). */
const GATEWAY_PORT = 'gw0';
const KILL_GRACE_MS = 1000;
const IP_TIMEOUT_MS = 10_000;
const ETCD_BIN = process.env.BERTH_ETCD_BIN ?? '/usr/bin/etcd';

/** Runs a command with argument arrays (no shell), in its own process group so a timeout kills all of it. */
function run(cmd: string, args: string[], opts: ExecOptions = {}): Promise<ExecResult> {
  const timeoutMs = opts.timeoutMs ?? 30_000;
  return new Promise((resolve, reject) => {
    const child = spawn(cmd, args, { detached: true, env: opts.env ? { ...process.env, ...opts.env } : process.env, stdio: ['pipe', 'pipe', 'pipe'] });
    let stdout = '';
    let stderr = '';
    let timedOut = false;
    child.stdout.on('data', (d: Buffer) => (stdout += d.toString()));
    child.stderr.on('data', (d: Buffer) => (stderr += d.toString()));
    // A command that exits without reading its input must not crash the test with EPIPE.
    child.stdin.on('error', () => {});
    child.stdin.end(opts.input ?? '');
    const timer = setTimeout(() => {
      timedOut = true;
      killGroup(child, 'SIGKILL');
    }, timeoutMs);
    child.on('error', (err) => {
      clearTimeout(timer);
      reject(new Error(`cannot run ${cmd}: ${err.message}`));
    });
    child.on('close', (code, signal) => {
      clearTimeout(timer);
      if (timedOut) reject(new Error(`${cmd} ${args.join(' ')} did not finish within ${timeoutMs} ms:\n${stdout}${stderr}`));
      else resolve({ code: code ?? 128 + signalNumber(signal), stdout, stderr });
    });
  });
}

function signalNumber(signal: NodeJS.Signals | null): number {
  return signal ? constants.signals[signal] : 0;
}

function killGroup(child: ChildProcess, signal: NodeJS.Signals): void {
  if (child.pid === undefined || child.exitCode !== null || child.signalCode !== null) return;
  try {
    process.kill(-child.pid, signal);
  } catch {
    // Already gone (or never became a group leader): the child alone then.
    child.kill(signal);
  }
}

/** Feeds lines to `ip [-n ns] -batch -`: one process for many kernel changes. */
async function ipBatch(lines: string[], o: { netns?: string; force?: boolean } = {}): Promise<ExecResult> {
  const args = [...(o.netns ? ['-n', o.netns] : []), ...(o.force ? ['-force'] : []), '-batch', '-'];
  const r = await run('ip', args, { input: lines.join('\n') + '\n', timeoutMs: IP_TIMEOUT_MS });
  if (r.code !== 0 && !o.force) throw new Error(`ip ${args.join(' ')} failed (${r.code}): ${r.stderr.trim()}\n${lines.join('\n')}`);
  return r;
}

/** This worker's lab id: a valid octet for the address block and at most two digits for a 4-character prefix. */
function workerLabId(): number {
  const n = Number.parseInt(process.env.VITEST_POOL_ID ?? '0', 10);
  return Number.isFinite(n) && n >= 0 ? n % 100 : 0;
}

/** `nl1` must not claim `nl10h1` (worker 10's): the prefix has to be followed by a non-digit. */
function belongsTo(prefix: string, name: string): boolean {
  return name.startsWith(prefix) && name.length > prefix.length && !/^\d/.test(name.slice(prefix.length));
}

async function waitExit(child: ChildProcess, ms: number): Promise<boolean> {
  if (child.exitCode !== null || child.signalCode !== null) return true;
  return new Promise((resolve) => {
    const timer = setTimeout(() => resolve(false), ms);
    child.once('exit', () => {
      clearTimeout(timer);
      resolve(true);
    });
  });
}

class Host implements LabHost {
  readonly netns: string;
  readonly iface = IFACE;

  constructor(
    readonly name: string,
    readonly address: string,
    /** The bridge-side end of its veth, in the underlay namespace. */
    readonly port: string,
    private readonly children: Set<ChildProcess>,
  ) {
    this.netns = `/run/netns/${name}`;
  }

  exec(cmd: string, args: string[], opts?: ExecOptions): Promise<ExecResult> {
    return run('nsenter', [`--net=${this.netns}`, '--', cmd, ...args], opts);
  }

  spawn(cmd: string, args: string[], opts: { env?: Record<string, string>; cwd?: string; stdio?: StdioOptions } = {}): ChildProcess {
    const child = spawn('nsenter', [`--net=${this.netns}`, '--', cmd, ...args], {
      detached: true,
      cwd: opts.cwd,
      env: opts.env ? { ...process.env, ...opts.env } : process.env,
      stdio: opts.stdio ?? 'pipe',
    });
    this.children.add(child);
    child.once('exit', () => this.children.delete(child));
    // Without a listener a failed spawn would throw from the event loop; the exit handler sees it too.
    child.on('error', () => this.children.delete(child));
    return child;
  }
}

class NetLab implements Lab {
  readonly hosts: Host[];
  readonly internet: Host;
  readonly gateway: string | undefined;
  /** The root namespace's end of the gateway veth, named with the prefix so reapLab removes it. */
  private readonly gatewayLink: string | undefined;
  private readonly children = new Set<ChildProcess>();
  private destroying: Promise<void> | undefined;

  constructor(
    readonly prefix: string,
    readonly underlay: string,
    readonly underlayNetns: string,
    hostCount: number,
    net: string,
    tag: string,
    gateway: boolean,
    private readonly release: () => void,
  ) {
    const make = (name: string, octet: number): Host => new Host(name, `${net}.${octet}`, `${name}-${tag}`, this.children);
    this.hosts = Array.from({ length: hostCount }, (_, i) => make(`${prefix}h${i + 1}`, i + 1));
    this.internet = make(`${prefix}i`, INTERNET_OCTET);
    this.gateway = gateway ? `${net}.${GATEWAY_OCTET}` : undefined;
    this.gatewayLink = gateway ? `${prefix}g${tag}` : undefined;
  }

  get machines(): Host[] {
    return [...this.hosts, this.internet];
  }

  async build(mtu: number): Promise<void> {
    const u = this.underlayNetns;
    // From the root namespace, never from inside another one (pitfall 1).
    await ipBatch([`netns add ${u}`, ...this.machines.map((h) => `netns add ${h.name}`)]);
    // Each veth is created inside the underlay namespace with its other end sent straight into the
    // host: nothing ever appears in the root namespace.
    await ipBatch(
      [
        'link set lo up',
        `link add ${BRIDGE} mtu ${mtu} type bridge`,
        `link set ${BRIDGE} up`,
        ...this.machines.flatMap((h) => [`link add ${h.port} mtu ${mtu} type veth peer name ${IFACE} mtu ${mtu} netns ${h.name}`, `link set ${h.port} master ${BRIDGE} up`]),
      ],
      { netns: u },
    );
    const prefixLen = this.underlay.split('/')[1];
    await Promise.all(
      this.machines.map(async (h) => {
        const lines = ['link set lo up', `addr add ${h.address}/${prefixLen} dev ${IFACE}`, `link set ${IFACE} up`];
        if (h !== this.internet) lines.push(`route add default via ${this.internet.address} dev ${IFACE}`);
        // One process chain per host: ip_forward is a per-namespace sysctl, written from inside, then
        // `ip` (already inside) applies the batch. The script is constant; nothing is interpolated.
        const r = await h.exec('sh', ['-c', 'echo 1 > /proc/sys/net/ipv4/ip_forward && exec ip -batch -'], { input: lines.join('\n') + '\n', timeoutMs: IP_TIMEOUT_MS });
        if (r.code !== 0) throw new Error(`setting up ${h.name} failed (${r.code}): ${r.stderr.trim()}`);
      }),
    );
    if (this.gateway && this.gatewayLink) {
      // Made in the root namespace with its peer sent straight into the underlay namespace. The
      // address's prefix brings the kernel's link route to the lab's /24 and nothing else.
      await ipBatch([`link add ${this.gatewayLink} mtu ${mtu} type veth peer name ${GATEWAY_PORT} mtu ${mtu} netns ${u}`]);
      // No IPv6 on it (set before it is up): a link-local address would add an fe80::/64 route to
      // the root namespace, and the lab speaks only IPv4.
      const v6 = `/proc/sys/net/ipv6/conf/${this.gatewayLink}/disable_ipv6`;
      if (existsSync(v6)) writeFileSync(v6, '1');
      await ipBatch([`addr add ${this.gateway}/${prefixLen} dev ${this.gatewayLink}`, `link set ${this.gatewayLink} up`]);
      await ipBatch([`link set ${GATEWAY_PORT} master ${BRIDGE} up`], { netns: u });
    }
  }

  private host(host: LabHost): Host {
    const h = this.machines.find((m) => m.name === host.name);
    if (!h) throw new Error(`${host.name} is not a host of lab ${this.prefix}`);
    return h;
  }

  // The bridge side goes down, not the host's eth0: an admin-down eth0 would drop the host's own
  // routes through it (the agent's host-gw routes), which a pulled cable does not.
  async partition(host: LabHost): Promise<void> {
    await ipBatch([`link set ${this.host(host).port} down`], { netns: this.underlayNetns });
  }

  async heal(host: LabHost): Promise<void> {
    await ipBatch([`link set ${this.host(host).port} up`], { netns: this.underlayNetns });
  }

  destroy(): Promise<void> {
    this.destroying ??= this.teardown();
    return this.destroying;
  }

  private async teardown(): Promise<void> {
    const alive = [...this.children];
    for (const c of alive) killGroup(c, 'SIGTERM');
    const exited = await Promise.all(alive.map((c) => waitExit(c, KILL_GRACE_MS)));
    const stubborn = alive.filter((_, i) => !exited[i]);
    for (const c of stubborn) killGroup(c, 'SIGKILL');
    await Promise.all(stubborn.map((c) => waitExit(c, KILL_GRACE_MS)));
    // Whatever else runs in the namespaces (grandchildren that left the group) and the namespaces.
    try {
      await reapLab(this.prefix);
    } finally {
      // Released even when reaping failed: the next lab with this id reaps again first.
      this.release();
    }
  }
}

/**
 * Builds a lab of `hosts` hosts plus the internet host; see the file's comment for names and
 * addresses. `id` pins the lab id (0..99; throws if a live process holds it); by default the worker's
 * id, or the next one free when another live process holds it. `gateway`: the test process's
 * namespace joins the bridge at `lab.gateway`, so it can reach servers on the hosts.
 */
export async function createLab(o: { hosts: number; mtu?: number; id?: number; gateway?: boolean }): Promise<Lab> {
  if (!Number.isInteger(o.hosts) || o.hosts < 1 || o.hosts >= INTERNET_OCTET) throw new Error(`a lab has 1..${INTERNET_OCTET - 1} hosts, not ${o.hosts}`);
  if (o.id !== undefined && (!Number.isInteger(o.id) || o.id < 0 || o.id > 99)) throw new Error(`lab id must be 0..99, not ${o.id}`);
  const first = o.id ?? workerLabId();
  const candidates = o.id !== undefined ? [o.id] : Array.from({ length: 100 }, (_, i) => (first + i) % 100);
  let id: number | undefined;
  let claim: string | undefined;
  for (const c of candidates) {
    claim = claimLabId(c);
    if (claim !== undefined) {
      id = c;
      break;
    }
  }
  if (id === undefined || claim === undefined) throw new Error(o.id !== undefined ? `lab id ${o.id} is held by a live process (${claimFile(o.id)})` : 'every lab id 0..99 is held by a live process');
  const prefix = `nl${id}`;
  const lab = new NetLab(prefix, `198.18.${id}.0/24`, `${prefix}u`, o.hosts, `198.18.${id}`, randomBytes(2).toString('hex'), o.gateway ?? false, () => releaseLabId(id, claim));
  try {
    await reapLab(prefix);
    await lab.build(o.mtu ?? 1500);
  } catch (err) {
    await lab.destroy();
    throw err;
  }
  return lab;
}

/*
 * Lab ids are claimed with a file holding the owner's pid: every vitest process numbers its workers
 * from 1, so two suites run side by side on one machine (helpers, a developer and CI) would
 * otherwise tear down each other's labs. A claim whose process is gone is stale: its leftovers are
 * reaped and the id reused. /run is a tmpfs, so claims do not outlive a reboot.
 */
const CLAIMS = '/run/berth-netlab';

function claimFile(id: number): string {
  return join(CLAIMS, `nl${id}`);
}

function pidAlive(pid: number): boolean {
  if (!Number.isInteger(pid) || pid <= 0) return false;
  try {
    process.kill(pid, 0);
    return true;
  } catch (err) {
    return (err as NodeJS.ErrnoException).code === 'EPERM';
  }
}

/** The claim's content when this process now holds `id`, undefined when a live process does. */
function claimLabId(id: number): string | undefined {
  mkdirSync(CLAIMS, { recursive: true });
  const file = claimFile(id);
  const mine = `${process.pid} ${randomBytes(4).toString('hex')}`;
  for (let attempt = 0; attempt < 3; attempt++) {
    try {
      writeFileSync(file, mine, { flag: 'wx' });
      return mine;
    } catch (err) {
      if ((err as NodeJS.ErrnoException).code !== 'EEXIST') throw err;
    }
    let held: string;
    try {
      held = readFileSync(file, 'utf8');
    } catch {
      continue;
    }
    // This process's own other lab counts as live too: a file may run two labs at once.
    if (pidAlive(Number(held.split(' ')[0]))) return undefined;
    // Stale: move it aside (a rename moves exactly one file, so of two takers only one gets it), then
    // make sure what moved was the stale claim and not a fresh one written meanwhile.
    const aside = `${file}.${mine.split(' ')[1]}`;
    try {
      renameSync(file, aside);
    } catch {
      continue;
    }
    const moved = readFileSync(aside, 'utf8');
    rmSync(aside, { force: true });
    if (moved !== held) {
      try {
        writeFileSync(file, moved, { flag: 'wx' });
      } catch {
        // Someone claimed it again meanwhile; either way it is not ours.
      }
      return undefined;
    }
  }
  return undefined;
}

function releaseLabId(id: number, claim: string): void {
  try {
    if (readFileSync(claimFile(id), 'utf8') === claim) rmSync(claimFile(id), { force: true });
  } catch {
    // Already gone.
  }
}

/**
 * Removes whatever a crashed earlier run with this prefix left: kills the processes still inside its
 * namespaces, deletes the namespaces and any root-namespace link named with the prefix. A name
 * belongs to the prefix when it starts with it and the next character is not a digit.
 */
export async function reapLab(prefix: string): Promise<void> {
  if (prefix.length < 2) throw new Error(`refusing to reap with a prefix as short as "${prefix}"`);
  const netnsList = await run('ip', ['netns', 'list'], { timeoutMs: IP_TIMEOUT_MS });
  const namespaces = netnsList.stdout
    .split('\n')
    .map((l) => l.split(' ')[0] ?? '')
    .filter((n) => belongsTo(prefix, n));
  const linkList = await run('ip', ['-o', 'link', 'show'], { timeoutMs: IP_TIMEOUT_MS });
  const links = linkList.stdout
    .split('\n')
    .map((l) => /^\d+: ([^:@\s]+)/.exec(l)?.[1] ?? '')
    .filter((n) => belongsTo(prefix, n));
  if (namespaces.length > 0) {
    const pids = await ipBatch(
      namespaces.map((n) => `netns pids ${n}`),
      { force: true },
    );
    for (const pid of pids.stdout.split(/\s+/).map(Number)) {
      if (!Number.isInteger(pid) || pid <= 1 || pid === process.pid) continue;
      try {
        process.kill(pid, 'SIGKILL');
      } catch {
        // Exited meanwhile.
      }
    }
  }
  const lines = [...namespaces.map((n) => `netns del ${n}`), ...links.map((l) => `link del ${l}`)];
  if (lines.length === 0) return;
  await ipBatch(lines, { force: true });
  const left = (await run('ip', ['netns', 'list'], { timeoutMs: IP_TIMEOUT_MS })).stdout.split('\n').map((l) => l.split(' ')[0] ?? '');
  const stuck = left.filter((n) => belongsTo(prefix, n));
  if (stuck.length > 0) throw new Error(`could not remove namespaces ${stuck.join(', ')}`);
}

/**
 * Starts a real single-member etcd (Debian etcd-server, 3.4) inside a host, listening on its underlay
 * address only (client 2379, peer 2380), data in a temp dir unless `dataDir` is given (then it is
 * kept on stop). Ready once `etcdctl endpoint health` succeeds inside the host (15 s bound).
 */
export async function startEtcdIn(host: LabHost, o: { dataDir?: string } = {}): Promise<{ url: string; stop(): Promise<void> }> {
  const ownDir = o.dataDir === undefined;
  const dir = o.dataDir ?? mkdtempSync(join(tmpdir(), 'berth-netlab-etcd-'));
  const url = `http://${host.address}:2379`;
  const peer = `http://${host.address}:2380`;
  const child = host.spawn(
    ETCD_BIN,
    [
      '--name', host.name,
      '--data-dir', join(dir, 'data'),
      '--listen-client-urls', url,
      '--advertise-client-urls', url,
      '--listen-peer-urls', peer,
      '--initial-advertise-peer-urls', peer,
      '--initial-cluster', `${host.name}=${peer}`,
      // As test/support/etcd-server.ts: room above the store's own 1.5 MiB value limit.
      '--max-request-bytes', String(2 * 1024 * 1024),
      '--logger', 'zap',
      '--log-outputs', 'stderr',
    ],
    { stdio: ['ignore', 'ignore', 'pipe'] },
  );
  let output = '';
  let spawnError: Error | undefined;
  child.on('error', (err) => (spawnError = err));
  child.stderr?.on('data', (d: Buffer) => (output = (output + d.toString()).slice(-8000)));
  const stop = async (): Promise<void> => {
    killGroup(child, 'SIGTERM');
    if (!(await waitExit(child, 5000))) {
      killGroup(child, 'SIGKILL');
      await waitExit(child, 5000);
    }
    if (ownDir) rmSync(dir, { recursive: true, force: true });
  };
  const deadline = Date.now() + 15_000;
  for (;;) {
    if (spawnError || child.exitCode !== null) {
      await stop();
      throw new Error(`etcd in ${host.name} ${spawnError ? `could not start: ${spawnError.message}` : `exited with ${child.exitCode}`}:\n${output}`);
    }
    const health = await host.exec('etcdctl', ['--endpoints', url, '--dial-timeout', '1s', '--command-timeout', '1s', 'endpoint', 'health'], { env: { ETCDCTL_API: '3' }, timeoutMs: 5000 }).catch(() => undefined);
    if (health?.code === 0) return { url, stop };
    if (Date.now() > deadline) {
      await stop();
      throw new Error(`etcd in ${host.name} did not become healthy on ${url} within 15 s:\n${health?.stderr ?? ''}\n${output}`);
    }
    await new Promise((r) => setTimeout(r, 100));
  }
}
