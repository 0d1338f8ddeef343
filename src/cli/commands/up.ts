import { join, resolve } from 'node:path';
import type { Command } from 'commander';
import { parsePorts } from '../../agent/index.js';
import { errorMessage, invalid } from '../../domain/errors.js';
import { createLogger } from '../../domain/log.js';
import { startNode } from '../../node/index.js';
import { DEFAULT_CGROUP_ROOT } from '../../sandbox/index.js';
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

/**
 * `berth up`: a platform node on this machine with every role (controller, builder, scheduler,
 * router and, unless --no-agent, the agent), built by `startNode` (src/node/). This command parses
 * the flags, reads the environment, prints the summary and stops the node on SIGINT/SIGTERM.
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
      const rendezvousPort = opts.rendezvousPort === '0' ? 0 : port(opts.rendezvousPort, '--rendezvous-port');
      const log = createLogger('berth', { level: process.env.BERTH_LOG_LEVEL, destination: process.stderr });
      // One component's unexpected rejection must not take the whole node (and its dynos) down.
      process.on('unhandledRejection', (err) => log.error({ err: errorMessage(err) }, 'unhandled rejection'));
      // Signals are handled from here on, before anything announces that the node is up.
      const stopped = new Promise<string>((done) => {
        process.once('SIGINT', () => done('SIGINT'));
        process.once('SIGTERM', () => done('SIGTERM'));
      });
      const node = await startNode({
        dataDir,
        log,
        store: opts.store ?? defaultStoreUrl(dataDir),
        sandbox: { cgroupRoot: process.env.BERTH_CGROUP_ROOT ?? DEFAULT_CGROUP_ROOT },
        roles: {
          controller: {
            host: opts.apiHost,
            port: apiPort,
            url: opts.apiUrl,
            domain: opts.domain,
            adminEmail: opts.adminEmail,
            bootstrapToken: process.env.BERTH_BOOTSTRAP_TOKEN || undefined,
            clusterToken: process.env.BERTH_CLUSTER_TOKEN || undefined,
            rendezvousPort,
          },
          builder: { sshPort, buildpackDirs: (process.env.BERTH_BUILDPACK_DIRS ?? '').split(':').filter((d) => d.startsWith('/')) },
          scheduler: {},
          router: { httpPort, httpsPort },
          ...(opts.agent ? { agent: { ports: parsePorts(opts.ports) } } : {}),
        },
      });
      const { summary } = node;
      log.info({ ...summary, admin_token: summary.admin_token ? '(printed once)' : null }, 'berth is up');
      if (opts.json) console.log(JSON.stringify(summary));
      else {
        console.log(header('Berth is up'));
        console.log(keyValues([['API', summary.api_url], ['Git', `${summary.api_url}/<app>.git  or  ssh://git@<host>:${summary.ssh_port}/<app>.git`], ['Apps', summary.http_port !== null ? `http://<app>.${opts.domain}:${summary.http_port}/` : `not routed: ${node.unavailable.router}`], ['Data dir', dataDir], ['Store', summary.store], ['heroku run', summary.rendezvous_cert ? `trust ${summary.rendezvous_cert} (NODE_EXTRA_CA_CERTS); TLS port ${summary.rendezvous_port}` : 'unavailable (no openssl)']]));
        if (summary.admin_token) {
          console.log(`\nAdmin API token (shown once, also in ${join(dataDir, 'admin.token')}):\n  ${summary.admin_token}`);
          console.log(`\nUse it with the heroku CLI:  HEROKU_HOST=${summary.api_url} HEROKU_API_KEY=${summary.admin_token} heroku apps`);
        }
        console.log('Press Ctrl-C to stop.');
      }
      log.info({ signal: await stopped }, 'stopping');
      await node.stop();
    });
}
