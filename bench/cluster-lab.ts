/**
 * The three-server cluster `npm run bench:cluster` kills machines of: three network-namespace
 * hosts (test/support/netlab.ts) each running `berth up` — `--cluster-init` on s1, `--server URL
 * --token-file` on s2 and s3 — as test/e2e/ha.test.ts builds it, plus what the benchmark reads of it
 * from outside: each etcd member's own view of its leader (maintenance status, one client per
 * member so a dead one never stalls the others' answers), the scheduler's leader key, moving etcd's
 * leadership (`etcdctl move-leader`), and the waits between rounds.
 */
import { execFile } from 'node:child_process';
import { chmodSync, mkdtempSync, readFileSync, rmSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { promisify } from 'node:util';
import { Etcd3 } from 'etcd3';
import { keys } from '../src/domain/keys.js';
import { Election, openStore, type EtcdTls, type Store } from '../src/store/index.js';
import { apiClient, type Api } from '../test/support/api.js';
import { appRepo, git } from '../test/support/e2e.js';
import { removeTestDir } from '../test/support/cleanup.js';
import { killHost, labNetworkName, startBerthIn, type LabBerthProcess } from '../test/support/lab-berth.js';
import { createLab, type Lab, type LabHost } from '../test/support/netlab.js';
import { until } from '../test/support/until.js';
import { step } from './lib.js';

const execFileP = promisify(execFile);

export const NAMES = ['s1', 's2', 's3'] as const;
export type Name = (typeof NAMES)[number];
const ADMIN = 'bench-cluster-admin-0123456789abcdef';
const ETCD_CLIENT_PORT = 2379;
/** The app whose dynos are lost and placed again. */
export const APP = 'bapp';
/**
 * The app the write probe patches: a config change to APP would be a new release, and its rollout
 * would restart the very dynos whose replacement is being timed.
 */
export const WRITE_APP = 'bwrite';
export const WEB_DYNOS = 3;
const SERVER_JS = `require('http').createServer((q, s) => s.end('hi from ' + process.env.DYNO)).listen(process.env.PORT, () => console.log('listening on', process.env.PORT));\n`;

export interface Dyno {
  name: string;
  state: string;
  machine: string | null;
}

export interface MemberView {
  id: string;
  name: string;
  learner: boolean;
  reachable: boolean;
  leader: boolean;
}

/** One member's own answer: whom it takes for the leader ('0': nobody), in which term. */
export interface EtcdStatus {
  leader: string;
  term: number;
}

export class BenchCluster {
  private readonly servers = new Map<Name, LabBerthProcess>();

  private constructor(
    private readonly lab: Lab,
    private readonly dir: string,
    readonly ttl: number,
  ) {}

  /** A lab of three hosts and a server on each; `onLab` gets the teardown as soon as there is one (Ctrl-C). */
  static async create(o: { ttl: number; onTeardown: (f: () => Promise<void>) => void }): Promise<BenchCluster> {
    const dir = mkdtempSync(join(tmpdir(), 'berth-bench-cluster-'));
    // Dyno uids must traverse the temp root to reach their work dirs inside it.
    chmodSync(dir, 0o755);
    let lab: Lab;
    try {
      lab = await createLab({ hosts: NAMES.length, gateway: true });
    } catch (err) {
      rmSync(dir, { recursive: true, force: true });
      throw err;
    }
    const c = new BenchCluster(lab, dir, o.ttl);
    o.onTeardown(() => c.destroy());
    for (const name of NAMES) {
      step(`starting ${name}`);
      await c.start(name);
    }
    return c;
  }

  host(name: Name): LabHost {
    return this.lab.hosts[NAMES.indexOf(name)] as LabHost;
  }

  urlOf(name: Name): string {
    return `http://${this.host(name).address}:7000`;
  }

  api(name: Name): Api {
    return apiClient(this.urlOf(name), ADMIN);
  }

  private dataDir(name: Name): string {
    return join(this.dir, name);
  }

  /** Starts (or restarts, with its data dir: it rejoins by itself) a server; s1 made the cluster. */
  async start(name: Name): Promise<void> {
    const first = name === 's1';
    const args = [
      ...(first ? ['--cluster-init', '--overlay', '10.244.0.0/16', '--backend', 'vxlan'] : ['--server', this.urlOf('s1'), '--token-file', join(this.dataDir('s1'), 'cluster.token')]),
      '--advertise', this.host(name).address,
      '--name', name,
      '--data-dir', this.dataDir(name),
      '--network-name', labNetworkName(this.lab, 's', NAMES.indexOf(name)),
      '--ttl', String(this.ttl),
    ];
    this.servers.set(name, await startBerthIn(this.host(name), args, first ? { BERTH_BOOTSTRAP_TOKEN: ADMIN } : {}));
  }

  /** Every process of the machine gets SIGKILL at once (berth, its etcd member, nginx; dynos die with their sandboxes). */
  async kill(name: Name): Promise<void> {
    await killHost(this.host(name));
    this.servers.delete(name);
  }

  /** The stderr tails of the live servers, for a failure's message. */
  stderr(): string {
    return [...this.servers.entries()].map(([n, s]) => `--- ${n}:\n${s.stderr().slice(-1500)}`).join('\n');
  }

  /** etcd client credentials (CN root) from a server's data dir. */
  tls(from: Name): EtcdTls {
    const f = (n: string): string => readFileSync(join(this.dataDir(from), 'cluster', n), 'utf8');
    return { ca: f('ca.crt'), cert: f('node.crt'), key: f('node.key') };
  }

  etcdEndpoint(name: Name): string {
    return `${this.host(name).address}:${ETCD_CLIENT_PORT}`;
  }

  /** A store client on these members only (a killed member in the list would only add failed dials). */
  openStore(names: Name[], tlsFrom: Name): Store {
    return openStore(`etcd://${names.map((n) => this.etcdEndpoint(n)).join(',')}`, { etcdTls: this.tls(tlsFrom) });
  }

  /** The app at web=3 and the write probe's app; waits until the three dynos are up. */
  async deploy(): Promise<void> {
    const api = this.api('s1').ok;
    await api('POST', '/apps', { name: APP });
    await api('POST', '/apps', { name: WRITE_APP });
    const repo = join(this.dir, 'repo');
    await appRepo(repo, this.urlOf('s1'), ADMIN, APP, { 'server.js': SERVER_JS, Procfile: 'web: node server.js\n' });
    step('git push');
    const pushed = await git(repo, 'push', 'berth', 'main');
    if (pushed.code !== 0) throw new Error(`git push failed:\n${pushed.out.slice(-3000)}`);
    await api('PATCH', `/apps/${APP}/formation`, { updates: [{ type: 'web', quantity: WEB_DYNOS }] });
    await until('three dynos up', async () => allUp(await this.dynos('s1')), { timeoutMs: 120_000, intervalMs: 300, context: () => this.stderr() });
  }

  async dynos(via: Name, signal?: AbortSignal): Promise<Dyno[]> {
    const res = await fetch(`${this.urlOf(via)}/apps/${APP}/dynos`, { headers: { authorization: `Bearer ${ADMIN}` }, ...(signal ? { signal } : {}) });
    if (res.status !== 200) throw new Error(`GET dynos through ${via}: ${res.status} ${await res.text()}`);
    const body = (await res.json()) as unknown;
    if (!Array.isArray(body)) throw new Error(`GET dynos through ${via}: not a list`);
    return body.map((d: Record<string, unknown>) => ({ name: String(d.name), state: String(d.state), machine: typeof d.machine === 'string' ? d.machine : null }));
  }

  /** A config change of WRITE_APP through `via`: its status (0 when nothing answered in time). */
  async write(via: Name, value: string, timeoutMs: number): Promise<number> {
    try {
      const res = await fetch(`${this.urlOf(via)}/apps/${WRITE_APP}/config-vars`, {
        method: 'PATCH',
        headers: { authorization: `Bearer ${ADMIN}`, 'content-type': 'application/json' },
        body: JSON.stringify({ BENCH: value }),
        signal: AbortSignal.timeout(timeoutMs),
      });
      await res.arrayBuffer();
      return res.status;
    } catch {
      return 0;
    }
  }

  /** Machine id → name, of the live machines. */
  async machines(via: Name): Promise<Map<string, string>> {
    const list = await this.api(via).ok<{ id: string; name: string }[]>('GET', '/berth/machines');
    return new Map(list.map((m) => [m.id, m.name]));
  }

  async members(via: Name): Promise<MemberView[]> {
    return this.api(via).ok<MemberView[]>('GET', '/berth/cluster/members');
  }

  /** Moves etcd's leadership to `toId` (decimal member id), as an operator would with etcdctl. */
  async moveEtcdLeader(toId: string, tlsFrom: Name): Promise<void> {
    const d = join(this.dataDir(tlsFrom), 'cluster');
    const args = [
      '--endpoints', NAMES.filter((n) => this.servers.has(n)).map((n) => `https://${this.etcdEndpoint(n)}`).join(','),
      '--cacert', join(d, 'ca.crt'), '--cert', join(d, 'node.crt'), '--key', join(d, 'node.key'),
      '--command-timeout', '10s',
      'move-leader', BigInt(toId).toString(16),
    ];
    await execFileP('etcdctl', args, { env: { ...process.env, ETCDCTL_API: '3' }, timeout: 20_000 });
  }

  /**
   * Until the cluster is whole again: three servers registered, three reachable etcd voters with a
   * leader, and every web dyno up.
   */
  async untilWhole(via: Name, timeoutMs: number): Promise<void> {
    const o = { timeoutMs, intervalMs: 500, context: () => this.stderr() };
    await until('three servers registered', async () => (await this.machines(via)).size === NAMES.length, o);
    await until('three reachable etcd voters with a leader', async () => {
      const m = await this.members(via);
      return m.length === NAMES.length && m.every((x) => x.reachable && !x.learner) && m.some((x) => x.leader);
    }, o);
    await until(`${WEB_DYNOS} dynos up`, async () => allUp(await this.dynos(via)), o);
  }

  async destroy(): Promise<void> {
    await Promise.allSettled([...this.servers.values()].map((s) => s.stop()));
    this.servers.clear();
    await this.lab.destroy();
    // A killed machine's dynos leave their disks mounted under the dir.
    await removeTestDir(this.dir);
  }
}

export function allUp(dynos: Dyno[]): boolean {
  return dynos.length === WEB_DYNOS && dynos.every((d) => d.state === 'up' && d.machine !== null);
}

/** The scheduler's leader (a node id = machine id), as every scheduler decides it: the oldest candidacy. */
export async function schedulerLeader(store: Store): Promise<string | undefined> {
  return (await new Election(store, keys.leader('scheduler')).leader())?.value;
}

/** One etcd client per member: a member's status is its own view, and a dead member stalls no other's. */
export class EtcdViews {
  private readonly clients = new Map<string, Etcd3>();

  constructor(endpoints: Map<string, string>, tls: EtcdTls) {
    for (const [name, endpoint] of endpoints) {
      this.clients.set(
        name,
        new Etcd3({
          hosts: [`https://${endpoint}`],
          credentials: { rootCertificate: Buffer.from(tls.ca), certChain: Buffer.from(tls.cert), privateKey: Buffer.from(tls.key) },
          dialTimeout: 1000,
        }),
      );
    }
  }

  async status(name: string, timeoutMs: number): Promise<EtcdStatus> {
    const c = this.clients.get(name);
    if (!c) throw new Error(`no etcd client for ${name}`);
    const s = await c.maintenance.status({ deadline: Date.now() + timeoutMs });
    return { leader: String(s.leader), term: Number(s.raftTerm) };
  }

  close(): void {
    for (const c of this.clients.values()) c.close();
  }
}
