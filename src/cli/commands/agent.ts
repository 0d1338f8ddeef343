import { readFileSync } from 'node:fs';
import { isIPv4 } from 'node:net';
import { hostname } from 'node:os';
import { join, resolve } from 'node:path';
import type { Command } from 'commander';
import { parseTags } from '../../agent/index.js';
import { errorMessage, invalid } from '../../domain/errors.js';
import { createLogger } from '../../domain/log.js';
import { startNode } from '../../node/index.js';
import { DEFAULT_CGROUP_ROOT } from '../../sandbox/index.js';
import { networkName } from '../network-flags.js';
import { header, keyValues } from '../output.js';
import { defaultDataDir } from '../paths.js';

interface AgentCliOptions {
  controller: string;
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
}

function clusterToken(o: AgentCliOptions): string {
  const token = o.token ?? process.env.BERTH_CLUSTER_TOKEN ?? (o.tokenFile ? readFileSync(o.tokenFile, 'utf8').trim() : undefined);
  if (!token) throw invalid('The cluster token is missing: pass --token (it is in the first node\'s <data-dir>/cluster.token), --token-file or BERTH_CLUSTER_TOKEN.');
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
    .requiredOption('--controller <url>', 'the API of a `berth up` node, e.g. http://10.0.0.1:5000')
    .option('--token <token>', 'the cluster join token (<data-dir>/cluster.token on the first node)')
    .option('--token-file <file>', 'read the cluster token from this file')
    .option('--name <name>', 'this machine\'s name (several agents on one host need distinct names)')
    .option('--network-name <name>', 'prefix of the network namespaces, veths and nftables table this agent makes (distinct per agent sharing a kernel)', 'berth')
    .option('--data-dir <dir>', 'where this agent keeps its slug cache and dyno dirs', join(defaultDataDir(), 'agent'))
    .option('--tags <k=v,...>', 'placement tags this machine carries')
    .option('--address <ip>', 'this machine\'s public IP: other machines reach its overlay there (default: the source of the default route)')
    .option('--ttl <s>', 'lease TTL: a machine silent this long is dead and its dynos move', '5')
    .option('--boot-timeout <s>', 'how long a web dyno has to bind $PORT', '60')
    .option('--json', 'print the startup summary as JSON')
    .action(async (opts: AgentCliOptions) => {
      const dataDir = resolve(opts.dataDir);
      const ttl = Number(opts.ttl);
      if (!Number.isInteger(ttl) || ttl < 1 || ttl > 300) throw invalid(`--ttl must be whole seconds between 1 and 300, got "${opts.ttl}".`);
      const bootTimeout = Number(opts.bootTimeout);
      if (!(bootTimeout > 0)) throw invalid(`--boot-timeout must be a number of seconds, got "${opts.bootTimeout}".`);
      if (!URL.canParse(opts.controller)) throw invalid(`--controller must be a URL like http://10.0.0.1:5000, got "${opts.controller}".`);
      if (opts.address !== undefined && !isIPv4(opts.address)) throw invalid(`--address must be an IPv4 address, got "${opts.address}".`);
      const tags = parseTags(opts.tags);
      const name = opts.name ?? hostname();
      const token = clusterToken(opts);
      const log = createLogger('berth-agent', { level: process.env.BERTH_LOG_LEVEL, destination: process.stderr }).child({ machine: name });
      process.on('unhandledRejection', (err) => log.error({ err: errorMessage(err) }, 'unhandled rejection'));
      const stopped = new Promise<string>((done) => {
        process.once('SIGINT', () => done('SIGINT'));
        process.once('SIGTERM', () => done('SIGTERM'));
      });
      const node = await startNode({
        dataDir,
        log,
        sandbox: { cgroupRoot: process.env.BERTH_CGROUP_ROOT ?? DEFAULT_CGROUP_ROOT },
        join: { controller: opts.controller, token },
        // The overlay's range and backend are the cluster's, read from the store.
        network: { name: networkName(opts.networkName) },
        roles: { agent: { tags, name, ...(opts.address ? { address: opts.address } : {}), ttl, bootTimeoutMs: bootTimeout * 1000 } },
      });
      const { summary } = node;
      log.info(summary, 'agent is up');
      if (opts.json) console.log(JSON.stringify(summary));
      else {
        console.log(header(`Agent ${summary.name} joined`));
        console.log(keyValues([['Machine', summary.machine_id], ['Controller', summary.controller], ['Store', summary.store], ['Subnet', `${summary.subnet} (${summary.backend})`], ['TTL', `${summary.ttl}s`]]));
        console.log('Press Ctrl-C to stop.');
      }
      log.info({ signal: await stopped }, 'stopping');
      await node.stop();
    });
}
