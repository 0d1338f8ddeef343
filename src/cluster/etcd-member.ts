import { spawn, type ChildProcess } from 'node:child_process';
import { closeSync, existsSync, mkdirSync, openSync, statSync, truncateSync } from 'node:fs';
import { request } from 'node:https';
import { join } from 'node:path';
import { BerthError, errorMessage } from '../domain/errors.js';
import type { Logger } from '../domain/log.js';

/** Where a member's TLS material lives: one CA for clients and peers, this machine's leaf for both. */
export interface MemberTls {
  caFile: string;
  certFile: string;
  keyFile: string;
}

export interface EtcdMemberOptions {
  /** The member's name in the cluster (the machine's name). */
  name: string;
  /** etcd's data dir (`<data-dir>/etcd`). */
  dataDir: string;
  /** The address other machines reach this one at. */
  advertise: string;
  clientPort: number;
  peerPort: number;
  tls: MemberTls;
  /** `name=https://ip:port,...` of every member including this one, when the data dir is new. */
  initialCluster: string;
  /** `new` for the first member, `existing` for one added to a running cluster. */
  state: 'new' | 'existing';
  log: Logger;
  /** etcd's own log, appended to (reset past 64 MiB at start). */
  logFile: string;
  binary?: string;
}

const LOG_RESET_BYTES = 64 * 1024 * 1024;
const STOP_GRACE_MS = 10_000;

/** `https://address:port`, an IPv6 address in brackets. */
export function clientUrl(address: string, port: number): string {
  return `https://${address.includes(':') ? `[${address}]` : address}:${port}`;
}

/**
 * One etcd member that Berth runs on this machine (Debian's etcd, k3s's embedded-etcd role): TLS
 * for clients and peers from the cluster CA, client certificates required (etcd takes the CN as
 * the user once auth is on), history compacted hourly, the 2 GiB quota. It is restarted with
 * backoff when it exits on its own, and dies with this process (`setpriv --pdeathsig`), so a
 * Berth that is killed never leaves a member holding the ports its successor needs.
 */
export class EtcdMember {
  private child: ChildProcess | undefined;
  private stopping = false;
  private restartTimer: NodeJS.Timeout | undefined;
  private backoffMs = 1000;
  private startedAt = 0;

  constructor(private readonly o: EtcdMemberOptions) {}

  get clientUrl(): string {
    return clientUrl(this.o.advertise, this.o.clientPort);
  }

  get peerUrl(): string {
    return clientUrl(this.o.advertise, this.o.peerPort);
  }

  /** Whether etcd's data dir already holds a member (a restart: the initial-cluster flags are ignored). */
  get initialised(): boolean {
    return existsSync(join(this.o.dataDir, 'member'));
  }

  private args(): string[] {
    const o = this.o;
    return [
      '--name', o.name,
      '--data-dir', o.dataDir,
      // The advertised address only: servers reach their own member there like any other, and
      // several members can share one host's loopback (tests, and a cramped lab).
      '--listen-client-urls', this.clientUrl,
      '--advertise-client-urls', this.clientUrl,
      '--listen-peer-urls', this.peerUrl,
      '--initial-advertise-peer-urls', this.peerUrl,
      '--initial-cluster', o.initialCluster,
      '--initial-cluster-state', o.state,
      '--initial-cluster-token', 'berth',
      '--client-cert-auth',
      '--trusted-ca-file', o.tls.caFile,
      '--cert-file', o.tls.certFile,
      '--key-file', o.tls.keyFile,
      '--peer-client-cert-auth',
      // Peers are servers: an agent's leaf (same CA, CN berth-agent) must not reach raft or the
      // peer API, which etcd's user auth does not cover.
      '--peer-cert-allowed-cn', 'root',
      '--peer-trusted-ca-file', o.tls.caFile,
      '--peer-cert-file', o.tls.certFile,
      '--peer-key-file', o.tls.keyFile,
      // Old revisions go after an hour; watchers that fall further behind re-read (ControlLoop).
      '--auto-compaction-mode', 'periodic',
      '--auto-compaction-retention', '1h',
      '--quota-backend-bytes', String(2 * 1024 * 1024 * 1024),
      // Room above the store's own 1.5 MiB value limit, so the store's check is the one that speaks.
      '--max-request-bytes', String(2 * 1024 * 1024),
      '--logger', 'zap',
      '--log-outputs', 'stderr',
    ];
  }

  private spawnOnce(): void {
    const o = this.o;
    mkdirSync(o.dataDir, { recursive: true, mode: 0o700 });
    if (existsSync(o.logFile) && statSync(o.logFile).size > LOG_RESET_BYTES) truncateSync(o.logFile, 0);
    const fd = openSync(o.logFile, 'a', 0o600);
    const child = spawn('setpriv', ['--pdeathsig', 'SIGKILL', '--', o.binary ?? '/usr/bin/etcd', ...this.args()], {
      stdio: ['ignore', fd, fd],
      env: { PATH: '/usr/sbin:/usr/bin:/sbin:/bin', ETCD_UNSUPPORTED_ARCH: process.env.ETCD_UNSUPPORTED_ARCH ?? '' },
    });
    closeSync(fd);
    this.child = child;
    this.startedAt = Date.now();
    child.once('error', (err) => o.log.error({ err: errorMessage(err) }, 'etcd could not start'));
    child.once('exit', (code, signal) => {
      if (this.child === child) this.child = undefined;
      if (this.stopping) return;
      // A member that ran a while had a real fault, not a crash loop: start again quickly.
      if (Date.now() - this.startedAt > 60_000) this.backoffMs = 1000;
      o.log.error({ code, signal, retry_ms: this.backoffMs, log: o.logFile }, 'etcd exited; restarting it');
      this.restartTimer = setTimeout(() => {
        this.restartTimer = undefined;
        if (!this.stopping) this.spawnOnce();
      }, this.backoffMs);
      this.backoffMs = Math.min(this.backoffMs * 2, 30_000);
    });
  }

  /**
   * Starts etcd and waits until its client port answers over TLS (not until it has a leader: a
   * member restarting alone waits for its peers, and a learner never reports healthy).
   */
  async start(client: { ca: string; cert: string; key: string }, timeoutMs = 30_000): Promise<void> {
    this.launch();
    const deadline = Date.now() + timeoutMs;
    for (;;) {
      if (await this.answers(client)) return;
      if (Date.now() > deadline) throw new BerthError('etcd_unavailable', `etcd did not start within ${timeoutMs / 1000} s; see ${this.o.logFile}.`);
      await new Promise((r) => setTimeout(r, 200));
    }
  }

  /**
   * Starts etcd without waiting for it: a member restarting while most of its peers are down
   * serves no client until they are back, however long that takes.
   */
  launch(): void {
    this.stopping = false;
    this.spawnOnce();
  }

  /** Whether the member's /health answers (any status) over TLS with this client certificate. */
  answers(client: { ca: string; cert: string; key: string }): Promise<boolean> {
    return new Promise((resolve) => {
      const req = request(`${this.clientUrl}/health`, { ...client, timeout: 2000 }, (res) => {
        res.resume();
        resolve(true);
      });
      req.on('timeout', () => req.destroy());
      req.on('error', () => resolve(false));
      req.end();
    });
  }

  async stop(): Promise<void> {
    this.stopping = true;
    if (this.restartTimer) clearTimeout(this.restartTimer);
    const child = this.child;
    if (!child || child.exitCode !== null) return;
    const exited = new Promise<void>((r) => child.once('exit', () => r()));
    child.kill('SIGTERM');
    const timer = setTimeout(() => child.kill('SIGKILL'), STOP_GRACE_MS);
    await exited;
    clearTimeout(timer);
  }
}
