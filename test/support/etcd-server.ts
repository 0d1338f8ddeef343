import { spawn, type ChildProcess } from 'node:child_process';
import { mkdtempSync, readFileSync, rmSync } from 'node:fs';
import { request } from 'node:http';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { freePort } from './ports.js';

const ETCD_BIN = process.env.BERTH_ETCD_BIN ?? '/usr/bin/etcd';

/**
 * A real etcd (Debian's etcd-server) on free loopback ports in a temp dir. `restart()` stops and
 * starts it on the same ports and data, which is how tests prove watches survive a server restart.
 */
export class EtcdServer {
  private child: ChildProcess | undefined;
  private output = '';

  private constructor(
    readonly dataDir: string,
    readonly clientPort: number,
    readonly peerPort: number,
  ) {}

  static async start(): Promise<EtcdServer> {
    const dir = mkdtempSync(join(tmpdir(), 'berth-etcd-'));
    const server = new EtcdServer(dir, await freePort(), await freePort());
    await server.launch();
    return server;
  }

  get endpoint(): string {
    return `127.0.0.1:${this.clientPort}`;
  }

  get url(): string {
    return `etcd://${this.endpoint}`;
  }

  private async launch(): Promise<void> {
    const client = `http://127.0.0.1:${this.clientPort}`;
    const peer = `http://127.0.0.1:${this.peerPort}`;
    this.output = '';
    const child = spawn(
      ETCD_BIN,
      [
        '--name', 'berth-test',
        '--data-dir', join(this.dataDir, 'data'),
        '--listen-client-urls', client,
        '--advertise-client-urls', client,
        '--listen-peer-urls', peer,
        '--initial-advertise-peer-urls', peer,
        '--initial-cluster', `berth-test=${peer}`,
        // Room above the store's own 1.5 MiB value limit, so the store's check is the one that speaks.
        '--max-request-bytes', String(2 * 1024 * 1024),
        '--logger', 'zap',
        '--log-outputs', 'stderr',
      ],
      { stdio: ['ignore', 'ignore', 'pipe'] },
    );
    this.child = child;
    let spawnError: Error | undefined;
    child.on('error', (err) => (spawnError = err));
    child.stderr?.on('data', (d: Buffer) => {
      this.output = (this.output + d.toString()).slice(-8000);
    });
    const deadline = Date.now() + 15_000;
    while (Date.now() < deadline) {
      if (spawnError) throw new Error(`cannot start ${ETCD_BIN}: ${spawnError.message} (install etcd-server, or set BERTH_ETCD_BIN)`);
      if (child.exitCode !== null) throw new Error(`etcd exited with ${child.exitCode}:\n${this.output}`);
      if (await healthy(this.clientPort)) return;
      await new Promise((r) => setTimeout(r, 100));
    }
    throw new Error(`etcd did not become healthy on ${client} within 15s:\n${this.output}`);
  }

  async stopProcess(): Promise<void> {
    const child = this.child;
    this.child = undefined;
    if (!child || child.exitCode !== null) return;
    await new Promise<void>((resolve) => {
      const kill = setTimeout(() => child.kill('SIGKILL'), 5000);
      child.once('exit', () => {
        clearTimeout(kill);
        resolve();
      });
      child.kill('SIGTERM');
    });
  }

  /**
   * Freezes the process (SIGSTOP): connections stay open but nothing answers, like a hung node.
   * Resolves once the kernel reports it stopped: on a loaded machine the signal can land after a
   * request already in flight has been answered.
   */
  async pause(): Promise<void> {
    const pid = this.child?.pid;
    this.child?.kill('SIGSTOP');
    for (let i = 0; pid && i < 200; i++) {
      const stat = readFileSync(`/proc/${pid}/stat`, 'utf8');
      if (/^\d+ \(.*\) [Tt] /.test(stat)) return;
      await new Promise((r) => setTimeout(r, 5));
    }
  }

  resume(): void {
    this.child?.kill('SIGCONT');
  }

  async restart(): Promise<void> {
    await this.stopProcess();
    await this.launch();
  }

  async stop(): Promise<void> {
    await this.stopProcess();
    rmSync(this.dataDir, { recursive: true, force: true });
  }
}

function healthy(port: number): Promise<boolean> {
  return new Promise((resolve) => {
    const req = request({ host: '127.0.0.1', port, path: '/health', timeout: 1000 }, (res) => {
      let body = '';
      res.on('data', (d: Buffer) => (body += d.toString()));
      res.on('end', () => resolve(res.statusCode === 200 && body.includes('true')));
    });
    req.on('error', () => resolve(false));
    req.on('timeout', () => {
      req.destroy();
      resolve(false);
    });
    req.end();
  });
}
