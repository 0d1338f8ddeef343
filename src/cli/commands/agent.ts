import { isIPv4 } from 'node:net';
import { hostname } from 'node:os';
import { join, resolve } from 'node:path';
import type { Command } from 'commander';
import { parseTags } from '../../agent/index.js';
import { errorMessage, invalid } from '../../domain/errors.js';
import { createLogger, logFormat } from '../../domain/log.js';
import { startNode } from '../../node/index.js';
import { DEFAULT_CGROUP_ROOT } from '../../sandbox/index.js';
import { networkName } from '../network-flags.js';
import { header, keyValues } from '../output.js';
import { port, tokenFrom } from './up.js';
import { defaultDataDir } from '../paths.js';

interface AgentCliOptions {
  controller?: string;
  server?: string;
  advertise?: string;
  storeInsecure?: boolean;
  router?: boolean;
  httpPort?: string;
  httpsPort?: string;
  token?: string;
  tokenFile?: string;
  name?: string;
  networkName: string;
  dataDir: string;
  tags?: string;
  address?: string;
  ttl: string;
  bootTimeout: string;
  json?: boolean;
  logFormat?: string;
}

function clusterToken(o: AgentCliOptions): string {
  const token = tokenFrom(o, process.env) ?? (process.env.BERTH_CLUSTER_TOKEN || undefined);
  if (!token) throw invalid('The cluster token is missing: pass --token-file FILE, BERTH_TOKEN or --token (it is in <data-dir>/cluster.token on a server).');
  return token;
}


/**
 * `berth agent`: a node of a cluster that only runs dynos, built by `startNode` (src/node/): it
 * joins through the controller with the cluster token (which hands it the store URL), then runs
 * the same Agent as `berth up` — registered under its own lease, so killing this process is a
 * machine failure the scheduler heals. This command parses the flags, reads the environment,
 * prints the summary and stops the node on SIGINT/SIGTERM.
 */
export function register(program: Command): void {
  program
    .command('agent')
    .description('run dynos on this machine as part of a cluster')
    .option('--server <url>', 'join a secured cluster through this server (its API URL, e.g. http://10.0.0.1:5000)')
    .option('--advertise <ip>', "this machine's address, the one the other machines reach it at (with --server)")
    .option('--controller <url>', 'the older join: the API of a `berth up` node on an open store, e.g. http://10.0.0.1:5000')
    .option('--store-insecure', 'with --controller: accept a store without TLS or authentication')
    .option('--token <token>', 'the cluster token (shows in ps: prefer --token-file or BERTH_TOKEN)')
    .option('--token-file <file>', 'read the cluster token from this file')
    .option('--name <name>', 'this machine\'s name (several agents on one host need distinct names)')
    .option('--network-name <name>', 'prefix of the network namespaces, veths and nftables table this agent makes (distinct per agent sharing a kernel)', 'berth')
    .option('--data-dir <dir>', 'where this agent keeps its slug cache and dyno dirs', join(defaultDataDir(), 'agent'))
    .option('--tags <k=v,...>', 'placement tags this machine carries')
    .option('--address <ip>', 'this machine\'s public IP: other machines reach its overlay there (default: the source of the default route)')
    .option('--ttl <s>', 'lease TTL: a machine silent this long is dead and its dynos move', '5')
    .option('--boot-timeout <s>', 'how long a web dyno has to bind $PORT', '60')
    .option('--router', 'run a router on this machine (the default with --server)')
    .option('--no-router', 'run no router on this machine (the default with --controller)')
    .option('--http-port <port>', 'port the router serves apps on (default 80 as root, else 8080)')
    .option('--https-port <port>', 'port the router serves HTTPS on (default 443 as root, else 8443)')
    .option('--json', 'print the startup summary as JSON')
    .option('--log-format <format>', 'pretty (the default on a terminal) or json (the default otherwise: one JSON object per line)')
    .action(async (opts: AgentCliOptions) => {
      const dataDir = resolve(opts.dataDir);
      const ttl = Number(opts.ttl);
      if (!Number.isInteger(ttl) || ttl < 1 || ttl > 300) throw invalid(`--ttl must be whole seconds between 1 and 300, got "${opts.ttl}".`);
      const bootTimeout = Number(opts.bootTimeout);
      if (!(bootTimeout > 0)) throw invalid(`--boot-timeout must be a number of seconds, got "${opts.bootTimeout}".`);
      if ((opts.server === undefined) === (opts.controller === undefined)) throw invalid('Give --server URL (a secured cluster) or --controller URL (an open store), one of them.');
      const via = (opts.server ?? opts.controller) as string;
      if (!URL.canParse(via)) throw invalid(`${opts.server ? '--server' : '--controller'} must be a URL like http://10.0.0.1:5000, got "${via}".`);
      if (opts.address !== undefined && !isIPv4(opts.address)) throw invalid(`--address must be an IPv4 address, got "${opts.address}".`);
      const advertise = opts.advertise ?? opts.address;
      if (opts.server && (!advertise || !isIPv4(advertise))) throw invalid(`--advertise must be this machine's IPv4 address, the one the other machines reach it at${advertise ? `, got "${advertise}"` : ''}.`);
      const root = process.getuid?.() === 0;
      // A secured cluster's machines each route every app; the older --controller agents did not.
      const router = (opts.router ?? Boolean(opts.server)) ? { httpPort: port(opts.httpPort ?? (root ? '80' : '8080'), '--http-port'), httpsPort: port(opts.httpsPort ?? (root ? '443' : '8443'), '--https-port') } : undefined;
      const tags = parseTags(opts.tags);
      const name = opts.name ?? hostname();
      const token = clusterToken(opts);
      const log = createLogger('berth-agent', { level: process.env.BERTH_LOG_LEVEL, destination: process.stderr, format: logFormat(opts.logFormat, process.stderr.isTTY) }).child({ machine: name });
      process.on('unhandledRejection', (err) => log.error({ err: errorMessage(err) }, 'unhandled rejection'));
      const stopped = new Promise<string>((done) => {
        process.once('SIGINT', () => done('SIGINT'));
        process.once('SIGTERM', () => done('SIGTERM'));
      });
      const node = await startNode({
        dataDir,
        log,
        sandbox: { cgroupRoot: process.env.BERTH_CGROUP_ROOT ?? DEFAULT_CGROUP_ROOT },
        join: opts.server ? { server: opts.server, token, advertise: advertise as string } : { controller: via, token, ...(opts.storeInsecure ? { storeInsecure: true } : {}) },
        // The overlay's range and backend are the cluster's, read from the store.
        network: { name: networkName(opts.networkName) },
        roles: { agent: { tags, name, ...(advertise ? { address: advertise } : {}), ttl, bootTimeoutMs: bootTimeout * 1000 }, ...(router ? { router } : {}) },
      });
      const { summary } = node;
      log.info(summary, 'agent is up');
      if (opts.json) console.log(JSON.stringify(summary));
      else {
        console.log(header(`Agent ${summary.name} joined`));
        console.log(keyValues([['Machine', summary.machine_id], ['Joined via', summary.controller], ['Router', summary.http_port !== null ? `port ${summary.http_port}` : 'not running'], ['Store', summary.store], ['Subnet', `${summary.subnet} (${summary.backend})`], ['TTL', `${summary.ttl}s`]]));
        console.log('Press Ctrl-C to stop.');
      }
      log.info({ signal: await stopped }, 'stopping');
      await node.stop();
    });
}
