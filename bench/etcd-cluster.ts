import { spawn, type ChildProcess } from 'node:child_process';
import { mkdtempSync, rmSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { freePort } from '../test/support/ports.js';

const ETCD_BIN = '/usr/bin/etcd';
const START_TIMEOUT_MS = 20_000;

interface Member {
  name: string;
  clientPort: number;
  peerPort: number;
  child?: ChildProcess;
  output: string;
}

/**
 * A real multi-member etcd on loopback for benchmarks: every member its own data dir and ports,
 * all named in one `--initial-cluster`, so writes pay raft replication to a quorum and reads the
 * leader's read index, as on three machines (minus the network).
 */
export class EtcdCluster {
  private constructor(
    private readonly dir: string,
    private readonly members: Member[],
  ) {}

  static async start(size: number): Promise<EtcdCluster> {
    const dir = mkdtempSync(join(tmpdir(), 'berth-etcd-cluster-'));
    const members: Member[] = [];
    for (let i = 0; i < size; i++) members.push({ name: `m${i}`, clientPort: await freePort(), peerPort: await freePort(), output: '' });
    const cluster = new EtcdCluster(dir, members);
    try {
      await cluster.launch();
    } catch (err) {
      await cluster.stop();
      throw err;
    }
    return cluster;
  }

  /** host:port of every member's client URL. */
  get endpoints(): string[] {
    return this.members.map((m) => `127.0.0.1:${m.clientPort}`);
  }

  get url(): string {
    return `etcd://${this.endpoints.join(',')}`;
  }

  private async launch(): Promise<void> {
    const initial = this.members.map((m) => `${m.name}=http://127.0.0.1:${m.peerPort}`).join(',');
    for (const m of this.members) {
      const client = `http://127.0.0.1:${m.clientPort}`;
      const peer = `http://127.0.0.1:${m.peerPort}`;
      const child = spawn(
        ETCD_BIN,
        [
          '--name', m.name,
          '--data-dir', join(this.dir, m.name),
          '--listen-client-urls', client,
          '--advertise-client-urls', client,
          '--listen-peer-urls', peer,
          '--initial-advertise-peer-urls', peer,
          '--initial-cluster', initial,
          '--initial-cluster-state', 'new',
          '--initial-cluster-token', `berth-bench-${process.pid}`,
          '--max-request-bytes', String(2 * 1024 * 1024),
          '--logger', 'zap',
          '--log-outputs', 'stderr',
        ],
        { stdio: ['ignore', 'ignore', 'pipe'] },
      );
      m.child = child;
      child.stderr?.on('data', (d: Buffer) => (m.output = (m.output + d.toString()).slice(-4000)));
    }
    // A member reports healthy only once the cluster has a leader and it can serve a quorum read.
    const deadline = Date.now() + START_TIMEOUT_MS;
    for (const m of this.members) {
      for (;;) {
        if (m.child?.exitCode !== null && m.child?.exitCode !== undefined) throw new Error(`etcd member ${m.name} exited with ${m.child.exitCode}:\n${m.output}`);
        if (await healthy(m.clientPort)) break;
        if (Date.now() > deadline) throw new Error(`etcd member ${m.name} not healthy within ${START_TIMEOUT_MS} ms:\n${m.output}`);
        await new Promise((r) => setTimeout(r, 100));
      }
    }
  }

  /**
   * gRPC calls every member has finished since it started (`grpc_server_handled_total`, all
   * methods and codes), summed: what Berth asked of the cluster. Each lease keep-alive and watch
   * is one stream, counted when it ends.
   */
  async handledCalls(): Promise<number> {
    const counts = await Promise.all(this.endpoints.map((e) => handledCalls(e)));
    return counts.reduce((a, b) => a + b, 0);
  }

  async stop(): Promise<void> {
    await Promise.all(
      this.members.map(async (m) => {
        const child = m.child;
        m.child = undefined;
        if (!child || child.exitCode !== null || child.signalCode !== null) return;
        await new Promise<void>((resolve) => {
          const kill = setTimeout(() => child.kill('SIGKILL'), 5000);
          child.once('exit', () => {
            clearTimeout(kill);
            resolve();
          });
          child.kill('SIGTERM');
        });
      }),
    );
    rmSync(this.dir, { recursive: true, force: true });
  }
}

/** The sum of `grpc_server_handled_total` on one member's client URL. */
export async function handledCalls(endpoint: string): Promise<number> {
  const text = await (await fetch(`http://${endpoint}/metrics`)).text();
  let sum = 0;
  for (const line of text.split('\n')) {
    if (!line.startsWith('grpc_server_handled_total{')) continue;
    const n = Number(line.slice(line.lastIndexOf(' ') + 1));
    if (Number.isFinite(n)) sum += n;
  }
  return sum;
}

async function healthy(port: number): Promise<boolean> {
  try {
    const res = await fetch(`http://127.0.0.1:${port}/health`, { signal: AbortSignal.timeout(1000) });
    return res.status === 200 && (await res.text()).includes('true');
  } catch {
    return false;
  }
}
