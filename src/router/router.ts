import { spawn, type ChildProcess } from 'node:child_process';
import { unitNameOf } from '../domain/units.js';
import { randomBytes } from 'node:crypto';
import { chmodSync, existsSync, mkdirSync, readFileSync, writeFileSync } from 'node:fs';
import { join, resolve } from 'node:path';
import { BerthError, errorMessage, invalid } from '../domain/errors.js';
import { decodeAll, put } from '../domain/codec.js';
import { keys } from '../domain/keys.js';
import type { Logger } from '../domain/log.js';
import { codecs } from '../domain/records.js';
import { ControlLoop, Registration, type Loaded, type LoadReason } from '../loop/index.js';
import type { Store, WatchBatch } from '../store/index.js';
import { Templater, type TemplateData } from '../templater/index.js';
import { LOG_FORMAT, RouterLogTail, type AppLog } from './logs.js';
import { NGINX_TEMPLATE } from './nginx-template.js';
import { EndpointGuard } from './endpoint-guard.js';
import { isSafeAppName, isSafeHostname, isSafePath, renderChecks } from './conf-values.js';
import { MaintenanceSet } from './maintenance.js';
import { PemCheck } from './pem-check.js';
import { VhostMirror } from './vhost-mirror.js';
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
  /**
   * Serve an endpoint only if its unit is assigned to a machine whose overlay subnet holds its
   * address (`EndpointGuard`). On wherever machines of different trust publish (a cluster); tests
   * that publish loopback endpoints by hand leave it off.
   */
  verifyEndpoints?: boolean;
}

/** Keys the vhosts depend on; a change there re-renders nginx.conf (and only then reloads). */
const VHOST_PREFIXES = [keys.appNames(), keys.hostnames(), keys.routerSettings(), keys.allCerts(), keys.allAppRouting()];

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
  private registration: Registration | undefined;
  private loop: ControlLoop | undefined;
  private stopped = false;
  private reported = 0;
  private readonly controlToken = randomBytes(24).toString('hex');
  private logs: RouterLogTail | undefined;
  /** Published endpoints by service key, fed by the watch: pushing them reads nothing. */
  private endpoints = new Map<string, string>();
  /** What the next pass must apply, and the revision the state has reached. */
  private vhostsDirty = true;
  private endpointsDirty = true;
  /** Apps in maintenance mode, fed by the watch; pushed like the endpoints, never a reload. */
  private readonly maintenance = new MaintenanceSet();
  /** Certificates nginx could not load are left out, not allowed to fail the whole config. */
  private readonly pems = new PemCheck();
  private maintenanceDirty = true;
  private seen = 0;
  /** The revision the last successful pass applied: what a new lease may claim at once. */
  private applied = 0;
  /** What nginx.conf is rendered from, fed by the watch: a vhost change re-renders without reading. */
  private mirror: VhostMirror | undefined;

  /** Which endpoints count (with `verifyEndpoints`). */
  private readonly guard: EndpointGuard | undefined;

  /** DNS names are case-blind; the hostname checks take them lowercase. */
  private readonly domain: string;

  constructor(private readonly o: RouterOptions) {
    this.domain = o.domain.toLowerCase();
    this.guard = o.verifyEndpoints ? new EndpointGuard() : undefined;
  }

  async start(): Promise<void> {
    const bin = this.o.nginxBin ?? '/usr/sbin/nginx';
    const missing = routerUnavailable(bin);
    if (missing) throw new BerthError('router_unavailable', missing);
    const dir = resolve(this.o.dir);
    // Both end up in nginx.conf: a path that needs quoting, or a domain that is no DNS name, is a
    // configuration mistake to refuse here rather than a config nginx cannot parse.
    if (!isSafePath(dir)) throw invalid(`The router's directory ${JSON.stringify(dir)} may hold only letters, digits and ._/+@:- (it is written into nginx.conf).`);
    if (!isSafeHostname(`app.${this.domain}`)) throw invalid(`The router's domain ${JSON.stringify(this.o.domain)} is not a DNS name.`);
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
    const mirror = (this.mirror = new VhostMirror(this.o.store, VHOST_PREFIXES));
    this.templater = new Templater({
      store: mirror,
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
          safe: renderChecks,
          plan: (it: TemplateData) => {
            const plan = planVhosts(it, { domain: this.domain, httpPort: this.o.httpPort, httpsPort: this.o.httpsPort, certDir: this.certDir, pems: this.pems });
            for (const r of plan.refused) this.o.log.warn({ what: r.what, value: r.value.slice(0, 200), key: r.key?.slice(0, 200) }, 'left out of nginx.conf: not a value nginx.conf can hold safely');
            return plan;
          },
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
    // One watch over the platform: every batch holds whole revisions, so once the vhosts and
    // endpoints it touches are applied, the router has applied everything up to its revision.
    this.loop = new ControlLoop({
      store: this.o.store,
      log: this.o.log,
      prefix: keys.all(),
      load: (reason) => this.loadEndpoints(reason),
      apply: (batch) => this.applyBatch(batch),
      pass: () => this.applyPass(),
      // A short debounce turns a rollout's many changes into one update; steady writes still get
      // one at least every 200 ms.
      debounceMs: 10,
      maxWaitMs: 200,
      // A periodic full read repairs anything a missed event or a hand edit left behind.
      repairMs: 60_000,
    });
    await this.loop.start();
    await this.loop.kick();
    // Registered only once the endpoints are in nginx: a report claims they are served.
    this.registration = await Registration.start({
      store: this.o.store,
      log: this.o.log,
      ttl: this.o.ttl ?? 5,
      register: async (lease) => {
        this.reported = 0;
        await this.report(Math.max(this.applied, 1), lease);
      },
    });
    // A pass that finished while the first registration ran could not report yet.
    await this.report(this.applied);
  }

  /** Every endpoint and vhost key, read at one revision: at start, after a watch gap, on the repair timer. */
  private async loadEndpoints(reason: LoadReason): Promise<Loaded> {
    const r = await this.o.store.range(keys.allServices(), { prefix: true });
    // Units and subnets at the endpoints' revision, for the guard.
    const [units, subnets] = this.guard ? await Promise.all([keys.allUnits(), keys.subnets()].map((p) => this.o.store.range(p, { prefix: true, revision: r.revision }))) : [];
    const endpoints = new Map(decodeAll(codecs.endpoint, r.kvs, (key) => this.o.log.warn({ key }, 'ignoring a malformed endpoint')).map((e) => [e.key, e.value]));
    const vhosts = await this.mirror?.read(r.revision);
    const maintenance = await this.o.store.range(keys.allMaintenance(), { prefix: true, revision: r.revision });
    return {
      revision: r.revision,
      commit: () => {
        vhosts?.();
        this.maintenance.load(maintenance.kvs);
        this.maintenanceDirty = true;
        if (units && subnets) this.guard?.load(units.kvs, subnets.kvs);
        const changed = endpoints.size !== this.endpoints.size || [...endpoints].some(([k, v]) => this.endpoints.get(k) !== v);
        this.endpoints = endpoints;
        this.vhostsDirty = this.endpointsDirty = true;
        // A repair of a healthy watch finds nothing new; claiming its revision anyway would turn
        // the router's own last report into a change to report, once a minute, forever.
        if (reason !== 'repair' || changed) this.seen = Math.max(this.seen, r.revision);
      },
    };
  }

  private applyBatch(batch: WatchBatch): boolean {
    let relevant = false;
    for (const e of batch.events) {
      const key = e.kv.key;
      if (key.startsWith(keys.allServices())) {
        const value = e.type === 'put' ? decodeAll(codecs.endpoint, [e.kv])[0]?.value : undefined;
        if (value) this.endpoints.set(key, value);
        else this.endpoints.delete(key);
        this.endpointsDirty = relevant = true;
      } else if (this.maintenance.apply(e)) this.maintenanceDirty = relevant = true;
      else if (this.guard?.apply(e)) this.endpointsDirty = relevant = true;
    }
    if (this.mirror?.apply(batch)) this.vhostsDirty = relevant = true;
    // Only what the router serves starts a pass; its own reports (and everyone's statuses) would
    // otherwise make every report trigger the next.
    if (relevant) this.seen = batch.revision;
    return relevant;
  }

  /** Applies what changed, then reports the revision it covers; a failure is retried shortly. */
  private async applyPass(): Promise<void> {
    const [vhosts, endpoints, maintenance, revision] = [this.vhostsDirty, this.endpointsDirty, this.maintenanceDirty, this.seen];
    this.vhostsDirty = this.endpointsDirty = this.maintenanceDirty = false;
    try {
      if (vhosts) await this.renderVhosts();
      if (maintenance) await this.control('/maintenance', this.maintenance.body());
      if (endpoints) await this.pushEndpoints();
      this.applied = Math.max(this.applied, revision);
      await this.report(revision);
    } catch (err) {
      // Never claim a revision that is not served: keep it pending and try again shortly.
      this.o.log.error({ err: errorMessage(err) }, 'router update failed; retrying');
      this.vhostsDirty ||= vhosts;
      this.endpointsDirty ||= endpoints;
      this.maintenanceDirty ||= maintenance;
      if (!this.stopped) setTimeout(() => this.loop?.request(), 500);
    }
  }

  /**
   * nginx.conf names certificate files, so they are written first, from the same revision the
   * template renders; files no longer named go once the new config is in place.
   */
  private async renderVhosts(at?: number): Promise<void> {
    // From the mirror once the loop has filled it (reads nothing); the first render reads the store.
    const store = this.mirror ?? this.o.store;
    const revision = at ?? (this.mirror?.revision || (await this.o.store.currentRevision()));
    const certs = parseCerts((await store.range(keys.allCerts(), { prefix: true, revision })).kvs, this.pems);
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
    const byApp = new Map<string, string[]>();
    for (const [key, value] of this.endpoints) {
      if (this.guard && !this.guard.allows(key, value)) continue;
      // /berth/services/<app>/<app>.<type>.<n>@v<n>[-<r>]: the dyno is "<type>.<n>".
      const [app = '', unit = ''] = key.slice(keys.allServices().length).split('/');
      // The app name starts a line of the control protocol: a name with a space or a newline in
      // its key could set another app's endpoints.
      if (!isSafeAppName(app)) continue;
      const name = unitNameOf(unit);
      const dyno = name.startsWith(`${app}.`) ? name.slice(app.length + 1) : '';
      const line = /^[\w.-]+$/.test(dyno) ? `${value}|${dyno}` : value;
      const eps = byApp.get(app);
      if (eps) eps.push(line);
      else byApp.set(app, [line]);
    }
    const body = [...byApp].sort(([a], [b]) => (a < b ? -1 : 1)).map(([app, eps]) => `${app} ${eps.sort().join(',')}`).join('\n');
    await this.control('/endpoints', `${body}\n`);
  }

  /** A full snapshot to one of nginx's shared dicts, through the loopback control server. */
  private async control(path: '/endpoints' | '/maintenance', body: string): Promise<void> {
    const res = await fetch(`http://127.0.0.1:${this.o.controlPort}${path}`, { method: 'POST', body, headers: { 'x-berth-control': this.controlToken }, signal: AbortSignal.timeout(5000) });
    if (!res.ok) throw new Error(`nginx refused ${path.slice(1)} (HTTP ${res.status})`);
  }

  /** Tells rollouts, under this router's lease, which store revision it has fully applied. */
  private async report(revision: number, lease = this.registration?.leaseId): Promise<void> {
    if (!lease || revision <= this.reported) return;
    await put(this.o.store, keys.router(this.o.id), codecs.router, { id: this.o.id, revision, http_port: this.o.httpPort, https_port: this.o.httpsPort ?? null, updated_at: new Date().toISOString() }, { lease });
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
        void this.waitForControl().then(
          () => {
            // A new nginx starts with empty dicts: give it every endpoint and maintenance flag again.
            this.endpointsDirty = this.maintenanceDirty = true;
            this.loop?.request();
          },
          (err: unknown) => this.o.log.error({ err: errorMessage(err) }, 'nginx did not come back'),
        );
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
    // Queued updates are dropped; a running one is waited for.
    await this.loop?.stop();
    await this.registration?.stop();
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
