import { spawn, type ChildProcess } from 'node:child_process';
import { mkdtempSync, readFileSync, rmSync, writeFileSync } from 'node:fs';
import { request as httpRequest, type IncomingMessage } from 'node:http';
import { request as httpsRequest } from 'node:https';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { enableEtcdAuth, ETCD_USERS } from '../../src/cluster/etcd-auth.js';
import { createCa, issueLeaf, type CertKeyPair } from '../../src/cluster/pki.js';
import type { EtcdTls } from '../../src/store/index.js';
import { freePort } from './ports.js';

const ETCD_BIN = process.env.BERTH_ETCD_BIN ?? '/usr/bin/etcd';

/** The secured mode's CA and files: made once per server, kept across restarts. */
interface Pki {
  ca: CertKeyPair;
  /** The root user's client credentials. */
  root: EtcdTls;
  files: { ca: string; cert: string; key: string };
}

/**
 * A real etcd (Debian's etcd-server) on free loopback ports in a temp dir. `restart()` stops and
 * starts it on the same ports and data, which is how tests prove watches survive a server restart.
 *
 * `start({ secure: true })` runs it the way a Berth cluster does: a CA made with pki.ts, TLS for
 * clients and peers, client certificates required (--client-cert-auth) and etcd auth enabled, so
 * the certificate's CN is the user.
 */
export class EtcdServer {
  private child: ChildProcess | undefined;
  private output = '';

  private constructor(
    readonly dataDir: string,
    readonly clientPort: number,
    readonly peerPort: number,
    private readonly pki?: Pki,
  ) {}

  static async start(options: { secure?: boolean } = {}): Promise<EtcdServer> {
    const dir = mkdtempSync(join(tmpdir(), 'berth-etcd-'));
    try {
      const pki = options.secure ? await makePki(dir) : undefined;
      const server = new EtcdServer(dir, await freePort(), await freePort(), pki);
      await server.launch();
      if (pki) await enableEtcdAuth({ endpoints: [server.endpoint], tls: pki.root });
      return server;
    } catch (err) {
      rmSync(dir, { recursive: true, force: true });
      throw err;
    }
  }

  /** The root user's client credentials (secure mode). */
  get tls(): EtcdTls {
    if (!this.pki) throw new Error('this etcd runs without TLS; start it with { secure: true }');
    return this.pki.root;
  }

  /** Client credentials for user `cn`, signed by this server's CA (the user need not exist). */
  async clientCreds(cn: string): Promise<EtcdTls> {
    if (!this.pki) throw new Error('this etcd runs without TLS; start it with { secure: true }');
    const leaf = await issueLeaf(this.pki.ca, { commonName: cn, usages: ['client'], days: 1 });
    return { ca: this.pki.ca.cert, ...leaf };
  }

  get endpoint(): string {
    return `127.0.0.1:${this.clientPort}`;
  }

  get url(): string {
    return `etcd://${this.endpoint}`;
  }

  private async launch(): Promise<void> {
    const scheme = this.pki ? 'https' : 'http';
    const client = `${scheme}://127.0.0.1:${this.clientPort}`;
    const peer = `${scheme}://127.0.0.1:${this.peerPort}`;
    const f = this.pki?.files;
    const tlsFlags = f
      ? [
          '--client-cert-auth', '--trusted-ca-file', f.ca, '--cert-file', f.cert, '--key-file', f.key,
          '--peer-client-cert-auth', '--peer-trusted-ca-file', f.ca, '--peer-cert-file', f.cert, '--peer-key-file', f.key,
        ]
      : [];
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
        ...tlsFlags,
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
      if (await healthy(this.clientPort, this.pki?.root)) return;
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

async function makePki(dir: string): Promise<Pki> {
  const ca = await createCa('berth test etcd CA');
  // One leaf for serving clients and for peer TLS, where the member is both server and client.
  const server = await issueLeaf(ca, { commonName: 'etcd-test', ips: ['127.0.0.1'], dnsNames: ['localhost'], usages: ['server', 'client'], days: 1 });
  const root = await issueLeaf(ca, { commonName: ETCD_USERS.server, usages: ['client'], days: 1 });
  const files = { ca: join(dir, 'ca.pem'), cert: join(dir, 'server.pem'), key: join(dir, 'server-key.pem') };
  writeFileSync(files.ca, ca.cert);
  writeFileSync(files.cert, server.cert);
  writeFileSync(files.key, server.key, { mode: 0o600 });
  return { ca, root: { ca: ca.cert, ...root }, files };
}

function healthy(port: number, tls?: EtcdTls): Promise<boolean> {
  return new Promise((resolve) => {
    const options = { host: '127.0.0.1', port, path: '/health', timeout: 1000 };
    const onResponse = (res: IncomingMessage): void => {
      let body = '';
      res.on('data', (d: Buffer) => (body += d.toString()));
      res.on('end', () => resolve(res.statusCode === 200 && body.includes('true')));
    };
    const req = tls ? httpsRequest({ ...options, ca: tls.ca, cert: tls.cert, key: tls.key }, onResponse) : httpRequest(options, onResponse);
    req.on('error', () => resolve(false));
    req.on('timeout', () => {
      req.destroy();
      resolve(false);
    });
    req.end();
  });
}
