import { mkdirSync, writeFileSync } from 'node:fs';
import { createServer } from 'node:net';
import { join, resolve } from 'node:path';
import type { Command } from 'commander';
import { Agent, ProcessRuntime, localMachine, machineId, parsePorts } from '../../agent/index.js';
import { createBuilder, createBuilderServer } from '../../builder/index.js';
import { Router, routerUnavailable } from '../../router/index.js';
import { Scheduler } from '../../scheduler/index.js';
import { createServices, startController } from '../../controller/index.js';
import { ClusterTokens } from '../../controller/model/cluster.js';
import { createOneOffDynos } from '../../controller/one-off/index.js';
import { Users } from '../../controller/model/users.js';
import { putOp } from '../../domain/codec.js';
import { errorMessage, invalid } from '../../domain/errors.js';
import { keys } from '../../domain/keys.js';
import { createLogger } from '../../domain/log.js';
import { codecs } from '../../domain/records.js';
import { DEFAULT_CGROUP_ROOT, Sandbox } from '../../sandbox/index.js';
import { openStore, type Store } from '../../store/index.js';
import { header, keyValues } from '../output.js';
import { defaultDataDir, defaultStoreUrl } from '../paths.js';

interface UpOptions {
  dataDir: string;
  store?: string;
  apiPort: string;
  apiHost: string;
  apiUrl?: string;
  sshPort: string;
  httpPort?: string;
  httpsPort?: string;
  domain: string;
  adminEmail?: string;
  agent: boolean;
  ports: string;
  rendezvousPort: string;
  json?: boolean;
}

function port(value: string, flag: string): number {
  const n = Number(value);
  if (!Number.isInteger(n) || n < 1 || n > 65535) throw invalid(`${flag} must be a port number (1-65535), got "${value}".`);
  return n;
}

/** A port the kernel hands out on loopback, for the router's private control server. */
function loopbackPort(): Promise<number> {
  return new Promise((resolve, reject) => {
    const srv = createServer();
    srv.on('error', reject);
    srv.listen(0, '127.0.0.1', () => {
      const p = (srv.address() as { port: number }).port;
      srv.close(() => resolve(p));
    });
  });
}

/** Records the platform once, and makes the first admin on an empty store, printing its token once. */
async function bootstrap(store: Store, dataDir: string, email: string): Promise<string | undefined> {
  await store.txn({
    compare: [{ key: keys.platform(), target: 'create', op: '=', value: 0 }],
    success: [putOp(keys.platform(), codecs.platform, { created_at: new Date().toISOString() })],
  });
  const created = await new Users(store).bootstrapAdmin(email, process.env.BERTH_BOOTSTRAP_TOKEN || undefined);
  // Agents on other machines join with this (`berth agent --token`); the store keeps its hash only.
  const cluster = await new ClusterTokens(store).create(process.env.BERTH_CLUSTER_TOKEN || undefined);
  if (cluster) writeFileSync(join(dataDir, 'cluster.token'), `${cluster}\n`, { mode: 0o600 });
  if (!created) return undefined;
  writeFileSync(join(dataDir, 'admin.token'), `${created.token}\n`, { mode: 0o600 });
  return created.token;
}

/**
 * `berth up`: the composition root of a platform node. It opens the store, bootstraps the first
 * admin, and runs the controller's API until SIGINT/SIGTERM. The scheduler, agent and router join
 * here as their issues land.
 */
export function register(program: Command): void {
  program
    .command('up')
    .description('start the platform on this machine')
    .option('--data-dir <dir>', 'where Berth keeps its state', defaultDataDir())
    .option('--store <url>', 'store URL: sqlite:///path/state.db (default, in the data dir) or etcd://host:port[,host:port]')
    .option('--api-port <port>', 'port of the API (and git over HTTP)', '5000')
    .option('--api-host <address>', 'address the API listens on', '0.0.0.0')
    .option('--api-url <url>', 'URL clients reach the API at (default http://127.0.0.1:<api-port>)')
    .option('--ssh-port <port>', 'port of git over SSH (ssh://git@<host>:<port>/<app>.git)', '2222')
    .option('--http-port <port>', 'port the router serves apps on (default 80 as root, else 8080)')
    .option('--https-port <port>', 'port the router serves HTTPS on, for hostnames with a certificate (default 443 as root, else 8443)')
    .option('--domain <domain>', 'apps are served at <app>.<domain>', 'berth.localhost')
    .option('--admin-email <email>', 'email of the first admin (default admin@<domain>)')
    .option('--no-agent', 'do not run dynos on this machine')
    .option('--ports <range>', 'ports for web dynos on this machine', '20000-20999')
    .option('--rendezvous-port <port>', 'TLS port `heroku run` attaches to (default: any free port)', '0')
    .option('--json', 'print the startup summary as JSON')
    .action(async (opts: UpOptions) => {
      const dataDir = resolve(opts.dataDir);
      const apiPort = port(opts.apiPort, '--api-port');
      const sshPort = port(opts.sshPort, '--ssh-port');
      const httpPort = port(opts.httpPort ?? (process.getuid?.() === 0 ? '80' : '8080'), '--http-port');
      const httpsPort = port(opts.httpsPort ?? (process.getuid?.() === 0 ? '443' : '8443'), '--https-port');
      mkdirSync(dataDir, { recursive: true, mode: 0o700 });
      const log = createLogger('berth', { level: process.env.BERTH_LOG_LEVEL, destination: process.stderr });
      // One component's unexpected rejection must not take the whole node (and its dynos) down.
      process.on('unhandledRejection', (err) => log.error({ err: errorMessage(err) }, 'unhandled rejection'));
      const storeUrl = opts.store ?? defaultStoreUrl(dataDir);
      const store = openStore(storeUrl);
      // Signals are handled from here on, before anything announces that the node is up.
      const stopped = new Promise<string>((done) => {
        process.once('SIGINT', () => done('SIGINT'));
        process.once('SIGTERM', () => done('SIGTERM'));
      });
      const token = await bootstrap(store, dataDir, opts.adminEmail ?? `admin@${opts.domain}`);
      const apiUrl = opts.apiUrl?.replace(/\/+$/, '') ?? `http://127.0.0.1:${apiPort}`;
      // Builds, release phases, one-off and formation dynos all run in this node's one sandbox.
      const sandbox = new Sandbox({ cgroupRoot: process.env.BERTH_CGROUP_ROOT ?? DEFAULT_CGROUP_ROOT });
      const buildpackDirs = (process.env.BERTH_BUILDPACK_DIRS ?? '').split(':').filter((d) => d.startsWith('/'));
      // The builder first (source → slug, commands in a slug); the controller's services drive it
      // through its ports; its git transports hand pushes to the controller's deploys.
      const builder = createBuilder({ store, log, dataDir, sandbox, buildpackDirs });
      const services = createServices(store, log, { domain: opts.domain, apiUrl, storeUrl }, { logDb: join(dataDir, 'logs.db'), builder });
      const gitServer = createBuilderServer({ builder, access: services.gitAccess, deployer: services.deploys, hookUrl: `http://127.0.0.1:${apiPort}/internal/git-hook`, hostKeyPath: join(dataDir, 'ssh', 'host_ed25519'), log });
      // One-off dynos run in this process, in a runtime of their own: a ProcessRuntime empties its
      // work dir when made, so it must never share the agent's.
      const rendezvousPort = opts.rendezvousPort === '0' ? 0 : port(opts.rendezvousPort, '--rendezvous-port');
      const oneOff = createOneOffDynos({ dataDir, node: machineId(dataDir), runtime: new ProcessRuntime({ workDir: join(dataDir, 'run'), sandbox }), slugPath: (id) => builder.slugPath(id), rendezvous: { host: opts.apiHost, port: rendezvousPort } });
      const controller = await startController({ services, host: opts.apiHost, port: apiPort, routes: [gitServer.routes, oneOff.routes] });
      await oneOff.start();
      const ssh = await gitServer.startSsh(opts.apiHost, sshPort);
      const scheduler = new Scheduler({ store, log: log.child({ component: 'scheduler' }), id: machineId(dataDir) });
      await scheduler.start();
      const agent = opts.agent
        ? new Agent({
            store,
            log: log.child({ component: 'agent' }),
            machine: localMachine({ dataDir, ports: parsePorts(opts.ports) }),
            runtime: new ProcessRuntime({ workDir: join(dataDir, 'dynos'), sandbox }),
            slugPath: (id) => builder.slugPath(id),
            appLog: (appId, source, dyno, message) => controller.services.logs.append(appId, { source, dyno, message }),
          })
        : undefined;
      await agent?.start();
      const missing = routerUnavailable();
      const router = missing
        ? undefined
        : new Router({ store, log: log.child({ component: 'router' }), id: machineId(dataDir), dir: join(dataDir, 'router'), httpPort, httpsPort, controlPort: await loopbackPort(), domain: opts.domain, appLog: (appId, source, dyno, message) => controller.services.logs.append(appId, { source, dyno, message }) });
      if (missing) log.warn({ reason: missing }, 'the router is not running');
      await router?.start();
      const summary = { data_dir: dataDir, store: store.description, api_url: apiUrl, ssh_port: ssh.port, http_port: router ? httpPort : null, https_port: router ? httpsPort : null, domain: opts.domain, revision: await store.currentRevision(), admin_token: token ?? null, rendezvous_port: oneOff.rendezvous()?.port ?? null, rendezvous_cert: oneOff.rendezvous()?.certPath ?? null };
      log.info({ ...summary, admin_token: token ? '(printed once)' : null }, 'berth is up');
      if (opts.json) console.log(JSON.stringify(summary));
      else {
        console.log(header('Berth is up'));
        console.log(keyValues([['API', apiUrl], ['Git', `${apiUrl}/<app>.git  or  ssh://git@<host>:${ssh.port}/<app>.git`], ['Apps', router ? `http://<app>.${opts.domain}:${httpPort}/` : `not routed: ${missing}`], ['Data dir', dataDir], ['Store', store.description], ['heroku run', summary.rendezvous_cert ? `trust ${summary.rendezvous_cert} (NODE_EXTRA_CA_CERTS); TLS port ${summary.rendezvous_port}` : 'unavailable (no openssl)']]));
        if (token) {
          console.log(`\nAdmin API token (shown once, also in ${join(dataDir, 'admin.token')}):\n  ${token}`);
          console.log(`\nUse it with the heroku CLI:  HEROKU_HOST=${apiUrl} HEROKU_API_KEY=${token} heroku apps`);
        }
        console.log('Press Ctrl-C to stop.');
      }
      log.info({ signal: await stopped }, 'stopping');
      // Dynos first, then SSH (its running pushes still need the API's hook endpoint).
      await oneOff.close();
      await agent?.stop();
      await router?.stop();
      await scheduler.stop();
      await ssh.close();
      await controller.close();
      await store.close();
    });
}
