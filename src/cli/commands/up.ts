import { isIPv4 } from 'node:net';
import { join, resolve } from 'node:path';
import type { Command } from 'commander';
import { errorMessage, invalid } from '../../domain/errors.js';
import { createLogger } from '../../domain/log.js';
import { startNode, type NetworkRole } from '../../node/index.js';
import { DEFAULT_CGROUP_ROOT } from '../../sandbox/index.js';
import { header, keyValues } from '../output.js';
import { networkName } from '../network-flags.js';
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
  overlay: string;
  backend: string;
  networkName: string;
  publicIp?: string;
  rendezvousPort: string;
  json?: boolean;
}

/** `--overlay`, `--backend`, `--network-name`, `--public-ip` as the node takes them (shapes checked here, the rest by the network). */
function networkFlags(o: Pick<UpOptions, 'overlay' | 'backend' | 'networkName' | 'publicIp'>): NetworkRole {
  if (!/^\d{1,3}(\.\d{1,3}){3}\/\d{1,2}$/.test(o.overlay)) throw invalid(`--overlay must be an IPv4 range like 10.244.0.0/16, got "${o.overlay}".`);
  if (o.backend !== 'vxlan' && o.backend !== 'host-gw') throw invalid(`--backend must be vxlan or host-gw, got "${o.backend}".`);
  if (o.publicIp !== undefined && !isIPv4(o.publicIp)) throw invalid(`--public-ip must be an IPv4 address, got "${o.publicIp}".`);
  return { name: networkName(o.networkName), overlay: o.overlay, backend: o.backend, ...(o.publicIp ? { publicIp: o.publicIp } : {}) };
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
    .option('--overlay <cidr>', "the cluster's overlay range: a /24 of it per machine, an address per dyno (set by the first node)", '10.244.0.0/16')
    .option('--backend <backend>', 'how the overlay crosses machines: vxlan or host-gw (machines on one L2 segment; set by the first node)', 'vxlan')
    .option('--network-name <name>', 'prefix of the network namespaces, veths and nftables table this node makes, so several platforms can share one kernel', 'berth')
    .option('--public-ip <address>', "the address other machines reach this one's overlay at (default: the source of the default route)")
    .option('--rendezvous-port <port>', 'TLS port `heroku run` attaches to (default: any free port)', '0')
    .option('--json', 'print the startup summary as JSON')
    .action(async (opts: UpOptions) => {
      const dataDir = resolve(opts.dataDir);
      const apiPort = port(opts.apiPort, '--api-port');
      const sshPort = port(opts.sshPort, '--ssh-port');
      const httpPort = port(opts.httpPort ?? (process.getuid?.() === 0 ? '80' : '8080'), '--http-port');
      const httpsPort = port(opts.httpsPort ?? (process.getuid?.() === 0 ? '443' : '8443'), '--https-port');
      const rendezvousPort = opts.rendezvousPort === '0' ? 0 : port(opts.rendezvousPort, '--rendezvous-port');
      const network = networkFlags(opts);
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
        network,
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
          ...(opts.agent ? { agent: {} } : {}),
        },
      });
      const { summary } = node;
      log.info({ ...summary, admin_token: summary.admin_token ? '(printed once)' : null }, 'berth is up');
      if (opts.json) console.log(JSON.stringify(summary));
      else {
        console.log(header('Berth is up'));
        console.log(keyValues([['API', summary.api_url], ['Git', `${summary.api_url}/<app>.git  or  ssh://git@<host>:${summary.ssh_port}/<app>.git`], ['Apps', summary.http_port !== null ? `http://<app>.${opts.domain}:${summary.http_port}/` : `not routed: ${node.unavailable.router}`], ['Data dir', dataDir], ['Store', summary.store], ['Network', summary.network ? `${summary.network.network} (${summary.network.backend}), this machine ${summary.network.subnet} at ${summary.network.public_ip}` : 'none'], ['heroku run', summary.rendezvous_cert ? `trust ${summary.rendezvous_cert} (NODE_EXTRA_CA_CERTS); TLS port ${summary.rendezvous_port}` : 'unavailable (no openssl)']]));
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
