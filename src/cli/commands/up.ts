import { randomBytes } from 'node:crypto';
import { existsSync, mkdirSync, readFileSync, writeFileSync } from 'node:fs';
import { createServer } from 'node:net';
import { availableParallelism, hostname, totalmem } from 'node:os';
import { join, resolve } from 'node:path';
import type { Command } from 'commander';
import { Agent, ProcessRuntime, type MachineInfo } from '../../agent/index.js';
import { createBuilder } from '../../builder/index.js';
import { Router, routerUnavailable } from '../../router/index.js';
import { Scheduler } from '../../scheduler/index.js';
import { startController } from '../../controller/index.js';
import { Users } from '../../controller/model/users.js';
import { errorMessage, invalid } from '../../domain/errors.js';
import { keys } from '../../domain/keys.js';
import { createLogger } from '../../domain/log.js';
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
  domain: string;
  adminEmail?: string;
  agent: boolean;
  ports: string;
  json?: boolean;
}

function port(value: string, flag: string): number {
  const n = Number(value);
  if (!Number.isInteger(n) || n < 1 || n > 65535) throw invalid(`${flag} must be a port number (1-65535), got "${value}".`);
  return n;
}

function ports(range: string): { from: number; to: number } {
  const m = /^(\d+)-(\d+)$/.exec(range);
  const from = Number(m?.[1]);
  const to = Number(m?.[2]);
  if (!m || from < 1 || to > 65535 || from > to) throw invalid(`--ports must be a range like 20000-20999, got "${range}".`);
  return { from, to };
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

/** This node's stable id, kept in the data dir so a restart is the same machine. */
function machineId(dataDir: string): string {
  const file = join(dataDir, 'machine-id');
  if (!existsSync(file)) writeFileSync(file, `${hostname().replace(/[^A-Za-z0-9-]/g, '-')}-${randomBytes(3).toString('hex')}\n`, { mode: 0o600 });
  return readFileSync(file, 'utf8').trim();
}

function localMachine(dataDir: string, portRange: { from: number; to: number }): MachineInfo {
  return {
    id: machineId(dataDir),
    name: hostname(),
    address: '127.0.0.1',
    tags: {},
    capacity: { memoryBytes: totalmem(), cpus: availableParallelism() },
    ports: portRange,
  };
}

/** Records the platform once, and makes the first admin on an empty store, printing its token once. */
async function bootstrap(store: Store, dataDir: string, email: string): Promise<string | undefined> {
  await store.txn({
    compare: [{ key: keys.platform(), target: 'create', op: '=', value: 0 }],
    success: [{ type: 'put', key: keys.platform(), value: JSON.stringify({ created_at: new Date().toISOString() }) }],
  });
  const created = await new Users(store).bootstrapAdmin(email, process.env.BERTH_BOOTSTRAP_TOKEN || undefined);
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
    .option('--domain <domain>', 'apps are served at <app>.<domain>', 'berth.localhost')
    .option('--admin-email <email>', 'email of the first admin (default admin@<domain>)')
    .option('--no-agent', 'do not run dynos on this machine')
    .option('--ports <range>', 'ports for web dynos on this machine', '20000-20999')
    .option('--json', 'print the startup summary as JSON')
    .action(async (opts: UpOptions) => {
      const dataDir = resolve(opts.dataDir);
      const apiPort = port(opts.apiPort, '--api-port');
      const sshPort = port(opts.sshPort, '--ssh-port');
      const httpPort = port(opts.httpPort ?? (process.getuid?.() === 0 ? '80' : '8080'), '--http-port');
      mkdirSync(dataDir, { recursive: true, mode: 0o700 });
      const log = createLogger('berth', { destination: process.stderr });
      // One component's unexpected rejection must not take the whole node (and its dynos) down.
      process.on('unhandledRejection', (err) => log.error({ err: errorMessage(err) }, 'unhandled rejection'));
      const store = openStore(opts.store ?? defaultStoreUrl(dataDir));
      // Signals are handled from here on, before anything announces that the node is up.
      const stopped = new Promise<string>((done) => {
        process.once('SIGINT', () => done('SIGINT'));
        process.once('SIGTERM', () => done('SIGTERM'));
      });
      const token = await bootstrap(store, dataDir, opts.adminEmail ?? `admin@${opts.domain}`);
      const apiUrl = opts.apiUrl?.replace(/\/+$/, '') ?? `http://127.0.0.1:${apiPort}`;
      const builder = createBuilder({ dataDir, hookUrl: `http://127.0.0.1:${apiPort}/internal/git-hook` });
      const controller = await startController({ store, log, host: opts.apiHost, port: apiPort, settings: { domain: opts.domain, apiUrl }, routes: [builder.routes] });
      const ssh = await builder.startSsh(opts.apiHost, sshPort);
      const scheduler = new Scheduler({ store, log: log.child({ component: 'scheduler' }), id: machineId(dataDir) });
      await scheduler.start();
      const agent = opts.agent
        ? new Agent({
            store,
            log: log.child({ component: 'agent' }),
            machine: localMachine(dataDir, ports(opts.ports)),
            runtime: new ProcessRuntime({ workDir: join(dataDir, 'dynos') }),
            slugPath: (id) => builder.slugPath(id),
            appLog: (appId, source, dyno, message) => controller.services.logs.append(appId, { source, dyno, message }),
          })
        : undefined;
      await agent?.start();
      const missing = routerUnavailable();
      const router = missing
        ? undefined
        : new Router({ store, log: log.child({ component: 'router' }), id: machineId(dataDir), dir: join(dataDir, 'router'), httpPort, controlPort: await loopbackPort(), domain: opts.domain });
      if (missing) log.warn({ reason: missing }, 'the router is not running');
      await router?.start();
      const summary = { data_dir: dataDir, store: store.description, api_url: apiUrl, ssh_port: ssh.port, http_port: router ? httpPort : null, domain: opts.domain, revision: await store.currentRevision(), admin_token: token ?? null };
      log.info({ ...summary, admin_token: token ? '(printed once)' : null }, 'berth is up');
      if (opts.json) console.log(JSON.stringify(summary));
      else {
        console.log(header('Berth is up'));
        console.log(keyValues([['API', apiUrl], ['Git', `${apiUrl}/<app>.git  or  ssh://git@<host>:${ssh.port}/<app>.git`], ['Apps', router ? `http://<app>.${opts.domain}:${httpPort}/` : `not routed: ${missing}`], ['Data dir', dataDir], ['Store', store.description]]));
        if (token) {
          console.log(`\nAdmin API token (shown once, also in ${join(dataDir, 'admin.token')}):\n  ${token}`);
          console.log(`\nUse it with the heroku CLI:  HEROKU_HOST=${apiUrl} HEROKU_API_KEY=${token} heroku apps`);
        }
        console.log('Press Ctrl-C to stop.');
      }
      log.info({ signal: await stopped }, 'stopping');
      // Dynos first, then SSH (its running pushes still need the API's hook endpoint).
      await agent?.stop();
      await router?.stop();
      await scheduler.stop();
      await ssh.close();
      await controller.close();
      await store.close();
    });
}
