import { chmodSync, mkdirSync, readFileSync } from 'node:fs';
import { join, resolve } from 'node:path';
import type { Command } from 'commander';
import { Agent, ControllerLink, ProcessRuntime, localMachine, parsePorts, parseTags } from '../../agent/index.js';
import { errorMessage, invalid } from '../../domain/errors.js';
import { keys } from '../../domain/keys.js';
import { createLogger } from '../../domain/log.js';
import { DEFAULT_CGROUP_ROOT, Sandbox } from '../../sandbox/index.js';
import { openStore } from '../../store/index.js';
import { header, keyValues } from '../output.js';
import { defaultDataDir } from '../paths.js';

interface AgentCliOptions {
  controller: string;
  token?: string;
  tokenFile?: string;
  name?: string;
  ports: string;
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
 * `berth agent`: the composition root of a machine that only runs dynos. It joins through the
 * controller with the cluster token (which hands it the store URL), then runs the same Agent as
 * `berth up` — registered under its own lease, so killing this process is a machine failure the
 * scheduler heals.
 */
export function register(program: Command): void {
  program
    .command('agent')
    .description('run dynos on this machine as part of a cluster')
    .requiredOption('--controller <url>', 'the API of a `berth up` node, e.g. http://10.0.0.1:5000')
    .option('--token <token>', 'the cluster join token (<data-dir>/cluster.token on the first node)')
    .option('--token-file <file>', 'read the cluster token from this file')
    .option('--name <name>', 'this machine\'s name (several agents on one host need distinct names)')
    .option('--ports <range>', 'ports for web dynos on this machine', '20000-20999')
    .option('--data-dir <dir>', 'where this agent keeps its slug cache and dyno dirs', join(defaultDataDir(), 'agent'))
    .option('--tags <k=v,...>', 'placement tags this machine carries')
    .option('--address <ip>', 'address routers reach this machine\'s dynos at (default 127.0.0.1 when the controller is on this host)')
    .option('--ttl <s>', 'lease TTL: a machine silent this long is dead and its dynos move', '5')
    .option('--boot-timeout <s>', 'how long a web dyno has to bind $PORT', '60')
    .option('--json', 'print the startup summary as JSON')
    .action(async (opts: AgentCliOptions) => {
      const dataDir = resolve(opts.dataDir);
      const ttl = Number(opts.ttl);
      if (!Number.isInteger(ttl) || ttl < 1 || ttl > 300) throw invalid(`--ttl must be whole seconds between 1 and 300, got "${opts.ttl}".`);
      const bootTimeout = Number(opts.bootTimeout);
      if (!(bootTimeout > 0)) throw invalid(`--boot-timeout must be a number of seconds, got "${opts.bootTimeout}".`);
      let controllerHost: string;
      try {
        controllerHost = new URL(opts.controller).hostname;
      } catch {
        throw invalid(`--controller must be a URL like http://10.0.0.1:5000, got "${opts.controller}".`);
      }
      const remote = !/^(127\.|localhost$|\[?::1\]?$)/.test(controllerHost);
      // Routers on other machines would send this machine's traffic to their own loopback.
      if (remote && !opts.address) throw invalid('--address is required when the controller is on another host: the IP routers reach this machine\'s dynos at.');
      const machine = { ports: parsePorts(opts.ports), tags: parseTags(opts.tags), address: opts.address ?? '127.0.0.1' };
      mkdirSync(dataDir, { recursive: true, mode: 0o700 });
      // Dyno uids must pass through to their own dirs under dynos/ (by name only: no listing).
      chmodSync(dataDir, 0o711);
      const info = localMachine({ dataDir, ...machine, ...(opts.name ? { name: opts.name } : {}) });
      const log = createLogger('berth-agent', { level: process.env.BERTH_LOG_LEVEL, destination: process.stderr }).child({ machine: info.name });
      process.on('unhandledRejection', (err) => log.error({ err: errorMessage(err) }, 'unhandled rejection'));
      const stopped = new Promise<string>((done) => {
        process.once('SIGINT', () => done('SIGINT'));
        process.once('SIGTERM', () => done('SIGTERM'));
      });
      const link = new ControllerLink(opts.controller, clusterToken(opts), log);
      const joined = await link.join(info.name);
      const store = openStore(joined.store_url);
      // A sqlite:// URL from a controller on another host opens (and creates) an empty file here.
      if (!(await store.get(keys.platform()))) {
        await store.close();
        throw invalid(`The store the controller named (${joined.store_url}) holds no Berth platform from this machine. A sqlite store only reaches agents on the controller's own host; run the platform on etcd (berth up --store etcd://…) for agents on other hosts.`);
      }
      const agent = new Agent({
        store,
        log,
        machine: info,
        runtime: new ProcessRuntime({ workDir: join(dataDir, 'dynos'), sandbox: new Sandbox({ cgroupRoot: process.env.BERTH_CGROUP_ROOT ?? DEFAULT_CGROUP_ROOT }) }),
        slugPath: link.slugPath(store, join(dataDir, 'slugs')),
        appLog: (appId, source, dyno, message) => link.appLog(appId, source, dyno, message),
        ttl,
        bootTimeoutMs: bootTimeout * 1000,
      });
      await agent.start();
      const summary = { machine_id: info.id, name: info.name, controller: opts.controller, store: store.description, ports: `${machine.ports.from}-${machine.ports.to}`, tags: info.tags, ttl };
      log.info(summary, 'agent is up');
      if (opts.json) console.log(JSON.stringify(summary));
      else {
        console.log(header(`Agent ${info.name} joined`));
        console.log(keyValues([['Machine', info.id], ['Controller', opts.controller], ['Store', store.description], ['Ports', summary.ports], ['TTL', `${ttl}s`]]));
        console.log('Press Ctrl-C to stop.');
      }
      log.info({ signal: await stopped }, 'stopping');
      await agent.stop();
      await link.close();
      await store.close();
    });
}
