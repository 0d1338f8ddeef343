import { spawn, type ChildProcess } from 'node:child_process';
import { unitNameOf } from '../domain/units.js';
import { randomBytes } from 'node:crypto';
import { chmodSync, existsSync, mkdirSync, readFileSync, writeFileSync } from 'node:fs';
import { join, resolve } from 'node:path';
import { BerthError, errorMessage } from '../domain/errors.js';
import { keys } from '../domain/keys.js';
import type { Logger } from '../domain/log.js';
import { LeaseKeeper, follow, type Following, type Store } from '../store/index.js';
import { Templater, type TemplateData } from '../templater/index.js';
import { LOG_FORMAT, RouterLogTail, type AppLog } from './logs.js';
import { NGINX_TEMPLATE } from './nginx-template.js';
import { parseCerts, planVhosts, pruneCertFiles, writeCertFiles } from './vhosts.js';

export interface RouterOptions {
  store: Store;
  log: Logger;
  /** This router's id under /berth/routers/. */
  id: string;
  /** Where nginx's config, pid, logs and temp files live. */
  dir: string;
  httpPort: number;
  /** HTTPS (SNI, a certificate per hostname) is served only with a port. */
  httpsPort?: number;
  controlPort: number;
  /** Apps are served at <app>.<domain>. */
  domain: string;
  nginxBin?: string;
  ttl?: number;
  /** Each request's Heroku-style router line goes here; without it nginx logs nothing. */
  appLog?: AppLog;
}

/** Keys the vhosts depend on; a change there re-renders nginx.conf (and only then reloads). */
const VHOST_PREFIXES = [keys.appNames(), '/berth/domains/', keys.routerSettings(), keys.allCerts(), keys.allAppRouting()];

const MODULES = ['/usr/lib/nginx/modules/ndk_http_module.so', '/usr/lib/nginx/modules/ngx_http_lua_module.so'];

/** Says what is missing, rather than letting nginx fail on its first line. */
export function routerUnavailable(nginxBin = '/usr/sbin/nginx'): string | undefined {
  if (!existsSync(nginxBin)) return `nginx is not installed (${nginxBin}); install Debian's nginx and libnginx-mod-http-lua (./berth installs them).`;
  const missing = MODULES.filter((m) => !existsSync(m));
  if (missing.length) return `nginx's Lua module is missing (${missing.join(', ')}); install libnginx-mod-http-lua.`;
  return undefined;
}

/**
 * The router: nginx whose vhosts the templater renders from the store (a reload only when apps,
 * domains, certificates or router settings change) and whose endpoints it sets in place through a
 * loopback control server (never a reload). After each change it reports, under its lease, the
 * store revision it has fully applied, so a rollout can wait until no router still sends traffic
 * to a dyno about to stop. With `appLog`, every request becomes a Heroku router line (logs.ts).
 */
export class Router {
  private nginx: ChildProcess | undefined;
  private certDir = '';
  private templater: Templater | undefined;
  private keeper: LeaseKeeper | undefined;
  private stopped = false;
  private reported = 0;
  private readonly controlToken = randomBytes(24).toString('hex');
  private resync: NodeJS.Timeout | undefined;
  private sync: Promise<void> = Promise.resolve();
  private debounce: NodeJS.Timeout | undefined;
  private following: Following | undefined;
  private logs: RouterLogTail | undefined;

  constructor(private readonly o: RouterOptions) {}

  async start(): Promise<void> {
    const bin = this.o.nginxBin ?? '/usr/sbin/nginx';
    const missing = routerUnavailable(bin);
    if (missing) throw new BerthError('router_unavailable', missing);
    const dir = resolve(this.o.dir);
    for (const sub of ['', 'logs', 'tmp', 'templates']) mkdirSync(join(dir, sub), { recursive: true });
    chmodSync(dir, 0o711);
    // Every app's requests are logged there; nginx's master opens the files, its workers never do.
    chmodSync(join(dir, 'logs'), 0o700);
    this.certDir = join(dir, 'certs');
    const logFile = join(dir, 'logs', 'router.log');
    if (this.o.appLog) this.logs = new RouterLogTail({ file: logFile, appLog: this.o.appLog, log: this.o.log });
    writeFileSync(join(dir, 'templates', 'nginx.conf.eta'), NGINX_TEMPLATE);
    const conf = join(dir, 'nginx.conf');
    const pid = join(dir, 'nginx.pid');
    this.templater = new Templater({
      store: this.o.store,
      log: this.o.log.child({ component: 'router-templater' }),
      resources: [
        {
          name: 'nginx.conf',
          src: join(dir, 'templates', 'nginx.conf.eta'),
          dest: conf,
          keys: VHOST_PREFIXES,
          // It holds the control secret: owner-only (nginx's master reads it as root).
          mode: 0o600,
          checkCmd: `${bin} -t -q -p ${dir} -c {{src}}`,
          // Graceful: old workers finish their requests; only vhost changes get here.
          reloadCmd: `[ -f ${pid} ] && kill -HUP "$(cat ${pid})" || true`,
        },
      ],
      extra: {
        router: {
          httpPort: this.o.httpPort,
          httpsPort: this.o.httpsPort,
          controlPort: this.o.controlPort,
          controlToken: this.controlToken,
          logFile: this.logs ? logFile : undefined,
          logFormat: LOG_FORMAT,
          plan: (it: TemplateData) => planVhosts(it, { domain: this.o.domain, httpPort: this.o.httpPort, httpsPort: this.o.httpsPort, certDir: this.certDir }),
        },
      },
    });
    this.killStale(dir);
    const initial = await this.o.store.currentRevision();
    await this.renderVhosts(initial);
    this.logs?.start();
    this.spawnNginx(bin, dir, conf);
    this.superviseNginx(bin, dir, conf);
    await this.waitForControl();
    await this.pushEndpoints();
    await this.register(initial);
    // One watch over the platform: every batch holds whole revisions, so once the vhosts and
    // endpoints it touches are applied, the router has applied everything up to its revision.
    this.following = follow(this.o.store, '/berth/', initial + 1, {
      onBatch: (batch) => {
        const vhosts = batch.events.some((e) => VHOST_PREFIXES.some((p) => e.kv.key.startsWith(p)));
        const endpoints = batch.events.some((e) => e.kv.key.startsWith(keys.allServices()));
        // Only what the router serves counts; its own reports (and everyone's statuses) would
        // otherwise make every report trigger the next.
        if (vhosts || endpoints) this.schedule(vhosts, endpoints, batch.revision);
      },
      onGap: async () => {
        const revision = await this.o.store.currentRevision();
        this.schedule(true, true, revision);
        return revision;
      },
    });
    // A periodic full pass repairs anything a missed event or a hand edit left behind.
    this.resync = setInterval(() => void this.apply(true, true, 0), 60_000);
  }

  /**
   * Takes a fresh lease and reports again. Retried until it works: a router missing from
   * /berth/routers would let rollouts stop dynos it still sends traffic to.
   */
  private async register(revision = this.reported): Promise<void> {
    for (let delay = 200; !this.stopped; delay = Math.min(delay * 2, 5000)) {
      try {
        this.keeper = await LeaseKeeper.start(this.o.store, { ttl: this.o.ttl ?? 5, onLost: () => void this.register() });
        this.reported = 0;
        await this.report(Math.max(revision, 1));
        return;
      } catch (err) {
        this.o.log.warn({ err: errorMessage(err) }, 'router registration failed; retrying');
        await new Promise((r) => setTimeout(r, delay));
      }
    }
  }

  /**
   * nginx.conf names certificate files, so they are written first, from the same revision the
   * template renders; files no longer named go once the new config is in place.
   */
  private async renderVhosts(at?: number): Promise<void> {
    const revision = at ?? (await this.o.store.currentRevision());
    const certs = parseCerts((await this.o.store.range(keys.allCerts(), { prefix: true, revision })).kvs);
    const wanted = writeCertFiles(this.certDir, certs);
    await this.templater?.renderAll(revision);
    // A config nginx refuses (check failed) leaves the old one serving and is logged by the
    // templater; the revision is still reported as applied, because what a rollout waits on — the
    // endpoints — is applied, and holding the report back would stall every rollout on one bad key.
    const outcome = this.templater?.outcomes.get('nginx.conf');
    if (outcome === 'updated' || outcome === 'unchanged' || outcome === 'reload_failed') pruneCertFiles(this.certDir, wanted);
  }

  /** Endpoints as the agents published them, one line per app ("host:port|web.1,…"), sorted. */
  private async pushEndpoints(): Promise<void> {
    const r = await this.o.store.range(keys.allServices(), { prefix: true });
    const byApp = new Map<string, string[]>();
    for (const kv of r.kvs) {
      // /berth/services/<app>/<app>.<type>.<n>@v<n>[-<r>]: the dyno is "<type>.<n>".
      const [, , , app = '', unit = ''] = kv.key.split('/');
      const name = unitNameOf(unit);
      const dyno = name.startsWith(`${app}.`) ? name.slice(app.length + 1) : '';
      byApp.set(app, [...(byApp.get(app) ?? []), /^[\w.-]+$/.test(dyno) ? `${kv.value}|${dyno}` : kv.value]);
    }
    const body = [...byApp].sort(([a], [b]) => (a < b ? -1 : 1)).map(([app, eps]) => `${app} ${eps.sort().join(',')}`).join('\n');
    const res = await fetch(`http://127.0.0.1:${this.o.controlPort}/endpoints`, { method: 'POST', body: `${body}\n`, headers: { 'x-berth-control': this.controlToken }, signal: AbortSignal.timeout(5000) });
    if (!res.ok) throw new Error(`nginx refused the endpoints (HTTP ${res.status})`);
  }

  private pendingVhosts = false;
  private pendingEndpoints = false;
  private pendingRevision = 0;

  /** A short debounce turns a rollout's many changes into one update; failures are retried. */
  private schedule(vhosts: boolean, endpoints: boolean, revision: number, delayMs = 10): void {
    this.pendingVhosts ||= vhosts;
    this.pendingEndpoints ||= endpoints;
    this.pendingRevision = Math.max(this.pendingRevision, revision);
    clearTimeout(this.debounce);
    this.debounce = setTimeout(() => {
      const [v, e, r] = [this.pendingVhosts, this.pendingEndpoints, this.pendingRevision];
      this.pendingVhosts = this.pendingEndpoints = false;
      void this.apply(v, e, r);
    }, delayMs);
  }

  private apply(vhosts: boolean, endpoints: boolean, revision: number): Promise<void> {
    this.sync = this.sync.then(async () => {
      try {
        if (vhosts) await this.renderVhosts();
        if (endpoints) await this.pushEndpoints();
        if (revision > 0) await this.report(revision);
      } catch (err) {
        // Never claim a revision that is not served: keep it pending and try again shortly.
        this.o.log.error({ err: errorMessage(err) }, 'router update failed; retrying');
        if (!this.stopped) this.schedule(vhosts, endpoints, revision, 500);
      }
    });
    return this.sync;
  }

  /** Tells rollouts, under this router's lease, which store revision it has fully applied. */
  private async report(revision: number): Promise<void> {
    if (!this.keeper || revision <= this.reported) return;
    const report = { id: this.o.id, revision, http_port: this.o.httpPort, https_port: this.o.httpsPort ?? null, updated_at: new Date().toISOString() };
    await this.o.store.put(keys.router(this.o.id), JSON.stringify(report), { lease: this.keeper.id });
    this.reported = revision;
  }

  /** In its own process group, so its workers can be reaped with it if the master dies. */
  private spawnNginx(bin: string, dir: string, conf: string): void {
    this.nginx = spawn(bin, ['-p', dir, '-c', conf, '-g', 'daemon off;'], { stdio: ['ignore', 'ignore', 'pipe'], detached: true });
    this.nginx.stderr?.on('data', (d: Buffer) => this.o.log.warn({ nginx: d.toString().trim() }, 'nginx'));
  }

  /** An nginx left by a Berth that was killed would hold the port and route stale endpoints. */
  private killStale(dir: string): void {
    const pidFile = join(dir, 'nginx.pid');
    if (!existsSync(pidFile)) return;
    const pid = Number(readFileSync(pidFile, 'utf8').trim());
    try {
      if (pid > 1 && readFileSync(`/proc/${pid}/cmdline`, 'utf8').includes('nginx')) process.kill(-pid, 'SIGKILL');
    } catch {
      // Gone already, or not a group leader: nothing of ours is left.
    }
  }

  /** nginx dying is not the end of routing: start it again and give it the endpoints again. */
  private superviseNginx(bin: string, dir: string, conf: string): void {
    const pid = this.nginx?.pid;
    this.nginx?.once('exit', (code) => {
      if (this.stopped) return;
      this.o.log.error({ code }, 'nginx exited; restarting it');
      // Its workers outlive a killed master and keep the port: take the whole group down first.
      try {
        if (pid) process.kill(-pid, 'SIGKILL');
      } catch {
        // Nothing left in the group.
      }
      setTimeout(() => {
        if (this.stopped) return;
        this.spawnNginx(bin, dir, conf);
        this.superviseNginx(bin, dir, conf);
        void this.waitForControl().then(() => this.schedule(false, true, this.reported), (err: unknown) => this.o.log.error({ err: errorMessage(err) }, 'nginx did not come back'));
      }, 500);
    });
  }

  private async waitForControl(): Promise<void> {
    const deadline = Date.now() + 10_000;
    while (Date.now() < deadline) {
      if (this.nginx?.exitCode !== null && this.nginx?.exitCode !== undefined) throw new BerthError('router_unavailable', `nginx exited with ${this.nginx.exitCode}; see ${this.o.dir}/logs/error.log`);
      const ok = await fetch(`http://127.0.0.1:${this.o.controlPort}/endpoints`, { method: 'POST', body: '', headers: { 'x-berth-control': this.controlToken } }).then((r) => r.ok, () => false);
      if (ok) return;
      await new Promise((r) => setTimeout(r, 50));
    }
    throw new BerthError('router_unavailable', `nginx did not start within 10 s; see ${this.o.dir}/logs/error.log`);
  }

  async stop(): Promise<void> {
    this.stopped = true;
    clearTimeout(this.debounce);
    clearInterval(this.resync);
    this.following?.close();
    await this.sync;
    await this.keeper?.revoke().catch(() => undefined);
    const nginx = this.nginx;
    if (nginx && nginx.exitCode === null) {
      // SIGQUIT: graceful shutdown, workers finish what they are serving.
      const exited = new Promise((r) => nginx.once('exit', r));
      nginx.kill('SIGQUIT');
      const timer = setTimeout(() => {
        if (nginx.pid) process.kill(-nginx.pid, 'SIGKILL');
      }, 10_000);
      await exited;
      clearTimeout(timer);
    }
    await this.logs?.close();
  }
}
