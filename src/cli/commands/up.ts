import { readFileSync } from 'node:fs';
import { isIPv4 } from 'node:net';
import { hostname } from 'node:os';
import { join, resolve } from 'node:path';
import type { Command } from 'commander';
import { errorMessage, invalid } from '../../domain/errors.js';
import { createLogger, logFormat } from '../../domain/log.js';
import { ClusterFiles } from '../../cluster/index.js';
import { startNode, type NetworkRole, type ServerClusterRole } from '../../node/index.js';
import type { ApiTlsRole } from '../../node/api-tls.js';
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
  overlay?: string;
  backend?: string;
  networkName: string;
  publicIp?: string;
  rendezvousPort: string;
  storeInsecure?: boolean;
  clusterInit?: boolean;
  server?: string;
  token?: string;
  tokenFile?: string;
  advertise?: string;
  name?: string;
  etcdClientPort: string;
  etcdPeerPort: string;
  joinPort: string;
  ttl: string;
  etcdVoters: string;
  json?: boolean;
  tlsCert?: string;
  tlsKey?: string;
  tls: boolean;
  rateLimit: string;
  logFormat?: string;
  buildDisk: string;
  toolchainDir?: string;
  npmRegistry?: string;
  buildTimeoutMax: string;
}

/** The cluster token without it showing in `ps`: --token-file or BERTH_TOKEN, beside --token. */
export function tokenFrom(o: { token?: string; tokenFile?: string }, env: NodeJS.ProcessEnv): string | undefined {
  if (o.token) return o.token;
  if (o.tokenFile) {
    try {
      return readFileSync(o.tokenFile, 'utf8').trim();
    } catch (err) {
      throw invalid(`--token-file ${o.tokenFile} cannot be read: ${errorMessage(err)}`);
    }
  }
  return env.BERTH_TOKEN || undefined;
}

/** `--cluster-init` / `--server URL --token T` → the node's cluster role (shapes checked here). */
function clusterFlags(o: UpOptions, dataDir: string): ServerClusterRole | undefined {
  if (!o.clusterInit && !o.server) {
    if (o.advertise || o.token || o.tokenFile) throw invalid('--advertise and --token belong with --cluster-init or --server URL.');
    // A data dir that holds a cluster is that cluster's, flags or not: a second, empty platform
    // on SQLite beside it would answer on the same ports with none of its apps.
    const files = new ClusterFiles(dataDir);
    if (!files.exists()) return undefined;
    const state = files.state();
    if (state.role !== 'server') throw invalid(`${dataDir} belongs to an agent of a cluster; start it with berth agent.`);
    if (o.store) throw invalid(`${dataDir} belongs to a cluster server, whose store is its etcd; leave out --store.`);
    return { mode: { kind: 'init' }, name: state.name, advertise: state.advertise, etcdClientPort: state.member?.client_port ?? port(o.etcdClientPort, '--etcd-client-port'), etcdPeerPort: state.member?.peer_port ?? port(o.etcdPeerPort, '--etcd-peer-port'), joinPort: port(o.joinPort, '--join-port') };
  }
  if (o.clusterInit && o.server) throw invalid('Give --cluster-init (the first server) or --server URL (join one), not both.');
  if (o.store) throw invalid('A cluster server keeps its store in the etcd member Berth runs; leave out --store.');
  if (!o.advertise || !isIPv4(o.advertise)) throw invalid(`--advertise must be this machine's IPv4 address, the one the other machines reach it at${o.advertise ? `, got "${o.advertise}"` : ''}.`);
  const name = o.name ?? hostname();
  if (!/^[A-Za-z0-9][A-Za-z0-9_.-]{0,62}$/.test(name)) throw invalid(`--name must be 1-63 letters, digits, ".", "_" or "-", got "${name}".`);
  const common = { name, advertise: o.advertise, etcdClientPort: port(o.etcdClientPort, '--etcd-client-port'), etcdPeerPort: port(o.etcdPeerPort, '--etcd-peer-port'), joinPort: port(o.joinPort, '--join-port') };
  if (o.etcdVoters !== '3' && o.etcdVoters !== '5') throw invalid(`--etcd-voters must be 3 or 5 (an odd count: 3 keeps working with one machine lost, 5 with two), got "${o.etcdVoters}".`);
  if (o.clusterInit) return { mode: { kind: 'init' }, ...common, etcdVoters: Number(o.etcdVoters) as 3 | 5 };
  if (!URL.canParse(o.server as string)) throw invalid(`--server must be a server's API URL like http://10.0.0.1:5000, got "${o.server}".`);
  const token = tokenFrom(o, process.env);
  if (!token) throw invalid('Joining needs the cluster token: --token, --token-file FILE or BERTH_TOKEN (it is in <data-dir>/cluster.token on any server).');
  return { mode: { kind: 'join', url: o.server as string, token }, ...common };
}

/** `--overlay`, `--backend`, `--network-name`, `--public-ip` as the node takes them (shapes checked here, the rest by the network). */
function networkFlags(o: Pick<UpOptions, 'overlay' | 'backend' | 'networkName' | 'publicIp'>): NetworkRole {
  if (o.overlay !== undefined && !/^\d{1,3}(\.\d{1,3}){3}\/\d{1,2}$/.test(o.overlay)) throw invalid(`--overlay must be an IPv4 range like 10.244.0.0/16, got "${o.overlay}".`);
  if (o.backend !== undefined && o.backend !== 'vxlan' && o.backend !== 'host-gw') throw invalid(`--backend must be vxlan or host-gw, got "${o.backend}".`);
  if (o.publicIp !== undefined && !isIPv4(o.publicIp)) throw invalid(`--public-ip must be an IPv4 address, got "${o.publicIp}".`);
  // Left out, the cluster's range and backend stand (10.244.0.0/16 over VXLAN for the first node).
  return { name: networkName(o.networkName), ...(o.overlay ? { overlay: o.overlay } : {}), ...(o.backend ? { backend: o.backend as 'vxlan' | 'host-gw' } : {}), ...(o.publicIp ? { publicIp: o.publicIp } : {}) };
}

/** Loopback only: an address no other machine can send to. */
function loopbackOnly(host: string): boolean {
  return host === 'localhost' || host === '::1' || /^127\./.test(host);
}

/**
 * `--tls-cert/--tls-key`, else a self-signed certificate when the API listens beyond loopback on a
 * single machine (tokens and config vars would cross the network in clear), unless `--no-tls` or
 * an `--api-url` that says http:// (a proxy in front that terminates TLS, say).
 */
function tlsFlags(o: Pick<UpOptions, 'tlsCert' | 'tlsKey' | 'tls' | 'apiHost' | 'apiUrl'>, cluster: boolean): ApiTlsRole | undefined {
  if (!o.tlsCert !== !o.tlsKey) throw invalid('--tls-cert and --tls-key go together: the certificate (PEM, its chain after it) and its private key.');
  const plainUrl = o.apiUrl?.toLowerCase().startsWith('http://') === true;
  if (o.tlsCert && (!o.tls || plainUrl)) throw invalid(`--tls-cert contradicts ${o.tls ? `--api-url ${o.apiUrl}` : '--no-tls'}.`);
  // A cluster's servers and agents call each other's APIs and trust only the cluster CA so far.
  if (cluster) {
    if (o.tlsCert || o.apiUrl?.toLowerCase().startsWith('https://')) throw invalid('The API over TLS is not supported on a cluster server yet: its machines call each other over the API URL and trust only the cluster CA.');
    return undefined;
  }
  if (o.tlsCert && o.tlsKey) return { certFile: resolve(o.tlsCert), keyFile: resolve(o.tlsKey) };
  const wanted = o.apiUrl?.toLowerCase().startsWith('https://') === true || !loopbackOnly(o.apiHost);
  return o.tls && !plainUrl && wanted ? { selfSigned: true } : undefined;
}

/** --npm-registry: an http(s) URL without credentials in it (it is printed and passed to builds). */
function registryFlag(raw: string): string {
  let url: URL;
  try {
    url = new URL(raw);
  } catch {
    throw invalid(`--npm-registry must be a URL, got "${raw}".`);
  }
  if (!['http:', 'https:'].includes(url.protocol) || url.username || url.password) throw invalid(`--npm-registry must be an http(s) URL without credentials, got "${raw}".`);
  return url.toString().replace(/\/+$/, '');
}

/** "2G", "512M", "1.5G": bytes, for --build-disk. */
export function sizeFlag(value: string, flag: string, min: number): number {
  const m = /^(\d+(?:\.\d+)?)([MG])$/i.exec(value.trim());
  const bytes = m ? Math.floor(Number(m[1]) * (m[2]!.toUpperCase() === 'G' ? 1024 ** 3 : 1024 ** 2)) : NaN;
  if (!Number.isFinite(bytes) || bytes < min) throw invalid(`${flag} must be a size like 2G or 512M, at least ${min / 1024 ** 2}M, got "${value}".`);
  return bytes;
}

export function port(value: string, flag: string): number {
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
    .option('--api-url <url>', 'URL clients reach the API at (default https://127.0.0.1:<api-port>, or http:// with --no-tls or --api-host on loopback)')
    .option('--ssh-port <port>', 'port of git over SSH (ssh://git@<host>:<port>/<app>.git)', '2222')
    .option('--http-port <port>', 'port the router serves apps on (default 80 as root, else 8080)')
    .option('--https-port <port>', 'port the router serves HTTPS on, for hostnames with a certificate (default 443 as root, else 8443)')
    .option('--domain <domain>', 'apps are served at <app>.<domain>', 'berth.localhost')
    .option('--admin-email <email>', 'email of the first admin (default admin@<domain>)')
    .option('--no-agent', 'do not run dynos on this machine')
    .option('--overlay <cidr>', "the cluster's overlay range: a /24 of it per machine, an address per dyno (set by the first node; default 10.244.0.0/16)")
    .option('--backend <backend>', 'how the overlay crosses machines: vxlan or host-gw (machines on one L2 segment; set by the first node; default vxlan)')
    .option('--network-name <name>', 'prefix of the network namespaces, veths and nftables table this node makes, so several platforms can share one kernel', 'berth')
    .option('--public-ip <address>', "the address other machines reach this one's overlay at (default: the source of the default route)")
    .option('--rendezvous-port <port>', 'TLS port `heroku run` attaches to (default: any free port)', '0')
    .option('--store-insecure', 'accept an etcd --store without TLS or authentication (anyone who reaches it owns the platform)')
    .option('--cluster-init', 'start the first server of a cluster: an etcd member with TLS and auth, a CA, <data-dir>/cluster.token')
    .option('--server <url>', "join the cluster of this server (its API URL, e.g. http://10.0.0.1:5000) as another server")
    .option('--token <token>', 'the cluster token, to join (shows in ps: prefer --token-file or BERTH_TOKEN)')
    .option('--token-file <file>', 'read the cluster token from this file')
    .option('--advertise <ip>', "this machine's address, the one the other machines reach it at (with --cluster-init / --server)")
    .option('--name <name>', "this machine's name in the cluster (default: the host name)")
    .option('--etcd-client-port <port>', "the etcd member's client port", '2379')
    .option('--etcd-peer-port <port>', "the etcd member's peer port", '2380')
    .option('--join-port <port>', 'TLS port other machines join through', '5443')
    .option('--etcd-voters <n>', 'with --cluster-init: etcd voters the cluster keeps, 3 (one machine may fail) or 5 (two)', '3')
    .option('--ttl <s>', "lease TTL of this machine's agent, scheduler and server record: silent this long, it is dead and its work moves", '5')
    .option('--json', 'print the startup summary as JSON')
    .option('--tls-cert <file>', "the API's certificate (PEM): the API, git over HTTP and HEROKU_HOST use https")
    .option('--tls-key <file>', "the API certificate's private key (PEM)")
    .option('--no-tls', 'serve the API over plain HTTP even beyond loopback (by default a self-signed certificate is made under the data dir when --api-host is not loopback)')
    .option('--rate-limit <n>', 'API requests one token may make per hour (0: no limit)', '4500')
    .option('--build-disk <size>', "a build's writable space: its app dir, /tmp and cache (past it: ENOSPC)", '2G')
    .option('--build-timeout-max <minutes>', "the most an app's BUILD_TIMEOUT may ask for", '60')
    .option('--toolchain-dir <dir>', "this machine's cache of Node releases and package managers for builds (default: <data-dir>/toolchains)")
    .option('--npm-registry <url>', 'the npm registry Node, npm, Yarn and pnpm come from, and builds install from unless an app sets its own (default: https://registry.npmjs.org)')
    .option('--log-format <format>', 'pretty (the default on a terminal) or json (the default otherwise: one JSON object per line)')
    .action(async (opts: UpOptions) => {
      const dataDir = resolve(opts.dataDir);
      const apiPort = port(opts.apiPort, '--api-port');
      const sshPort = port(opts.sshPort, '--ssh-port');
      const httpPort = port(opts.httpPort ?? (process.getuid?.() === 0 ? '80' : '8080'), '--http-port');
      const httpsPort = port(opts.httpsPort ?? (process.getuid?.() === 0 ? '443' : '8443'), '--https-port');
      const rendezvousPort = opts.rendezvousPort === '0' ? 0 : port(opts.rendezvousPort, '--rendezvous-port');
      const network = networkFlags(opts);
      const cluster = clusterFlags(opts, dataDir);
      const tls = tlsFlags(opts, cluster !== undefined);
      const rateLimit = Number(opts.rateLimit);
      if (!Number.isInteger(rateLimit) || rateLimit < 0) throw invalid(`--rate-limit must be a whole number of requests per hour (0: no limit), got "${opts.rateLimit}".`);
      const buildDisk = sizeFlag(opts.buildDisk, '--build-disk', 256 * 1024 ** 2);
      const buildTimeoutMax = Number(opts.buildTimeoutMax);
      if (!Number.isInteger(buildTimeoutMax) || buildTimeoutMax < 1 || buildTimeoutMax > 24 * 60) throw invalid(`--build-timeout-max must be whole minutes between 1 and 1440, got "${opts.buildTimeoutMax}".`);
      const ttl = Number(opts.ttl);
      if (!Number.isInteger(ttl) || ttl < 1 || ttl > 300) throw invalid(`--ttl must be whole seconds between 1 and 300, got "${opts.ttl}".`);
      // Other machines reach this one's overlay, dynos and API at the address it advertises.
      if (cluster && !network.publicIp) network.publicIp = cluster.advertise;
      const log = createLogger('berth', { level: process.env.BERTH_LOG_LEVEL, destination: process.stderr, format: logFormat(opts.logFormat, process.stderr.isTTY) });
      // One component's unexpected rejection must not take the whole node (and its dynos) down.
      process.on('unhandledRejection', (err) => log.error({ err: errorMessage(err) }, 'unhandled rejection'));
      // Signals are handled from here on, before anything announces that the node is up.
      // A signal during the start ends a wait that could last (a server waiting for its etcd quorum).
      const interrupt = new AbortController();
      const stopped = new Promise<string>((done) => {
        process.once('SIGINT', () => (interrupt.abort(), done('SIGINT')));
        process.once('SIGTERM', () => (interrupt.abort(), done('SIGTERM')));
      });
      const node = await startNode({
        dataDir,
        log,
        store: opts.store ?? defaultStoreUrl(dataDir),
        ...(opts.storeInsecure ? { storeInsecure: true } : {}),
        ...(cluster ? { cluster, signal: interrupt.signal } : {}),
        sandbox: { cgroupRoot: process.env.BERTH_CGROUP_ROOT ?? DEFAULT_CGROUP_ROOT },
        network,
        roles: {
          controller: {
            host: opts.apiHost,
            port: apiPort,
            // Other machines (agents, peers) need an address they can reach, not loopback.
            url: opts.apiUrl ?? (cluster ? `http://${cluster.advertise}:${apiPort}` : undefined),
            domain: opts.domain,
            adminEmail: opts.adminEmail,
            bootstrapToken: process.env.BERTH_BOOTSTRAP_TOKEN || undefined,
            clusterToken: process.env.BERTH_CLUSTER_TOKEN || undefined,
            rendezvousPort,
            ...(tls ? { tls } : {}),
            rateLimit,
          },
          builder: {
            sshPort,
            buildpackDirs: (process.env.BERTH_BUILDPACK_DIRS ?? '').split(':').filter((d) => d.startsWith('/')),
            diskBytes: buildDisk,
            maxTimeoutMs: buildTimeoutMax * 60_000,
            ...(opts.toolchainDir !== undefined ? { toolchainDir: resolve(opts.toolchainDir) } : {}),
            ...(opts.npmRegistry !== undefined ? { npmRegistry: registryFlag(opts.npmRegistry) } : {}),
            // A TLS-inspecting proxy's CA, say: what the operator's own Node trusts, builds trust too.
            ...(process.env.NODE_EXTRA_CA_CERTS?.startsWith('/') ? { extraCaCerts: process.env.NODE_EXTRA_CA_CERTS } : {}),
          },
          scheduler: { ttl },
          router: { httpPort, httpsPort },
          ...(opts.agent ? { agent: { ttl, ...(cluster ? { name: cluster.name, address: cluster.advertise } : {}) } } : {}),
        },
      });
      const { summary } = node;
      log.info({ ...summary, admin_token: summary.admin_token ? '(printed once)' : null }, 'berth is up');
      if (opts.json) console.log(JSON.stringify(summary));
      else {
        // berth login pins the certificate for the CLI and git once the fingerprint matches.
        const login = (token: string): string => `berth login --api-url ${summary.api_url}${summary.api_tls ? ` --fingerprint ${summary.api_tls.fingerprint_sha256}` : ''} --token ${token}`;
        console.log(header('Berth is up'));
        console.log(keyValues([['API', summary.api_url], ...(summary.api_tls ? ([['API TLS', `${summary.api_tls.self_signed ? 'self-signed ' : ''}certificate ${summary.api_tls.cert}, SHA-256 ${summary.api_tls.fingerprint_sha256}; berth login --fingerprint trusts it for berth and git, NODE_EXTRA_CA_CERTS for the heroku CLI`]] as [string, string][]) : []), ...(summary.admin_token ? [] : ([['Log in', login('<your API token>')]] as [string, string][])), ['Git', `${summary.api_url}/<app>.git  or  ssh://git@<host>:${summary.ssh_port}/<app>.git`], ['Apps', summary.http_port !== null ? `http://<app>.${opts.domain}:${summary.http_port}/` : `not routed: ${node.unavailable.router}`], ['Data dir', dataDir], ['Store', summary.store], ...(summary.cluster ? ([['Cluster', `server ${summary.cluster.name} at ${summary.cluster.advertise}; etcd member ${summary.cluster.etcd_member ?? 'none (the cluster has its voters)'}`], ['Join token', summary.cluster.token_file ? `${summary.cluster.token_file} (berth up --server ${summary.api_url} --token-file FILE --advertise IP)` : 'none here']] as [string, string][]) : []), ['Network', summary.network ? `${summary.network.network} (${summary.network.backend}), this machine ${summary.network.subnet} at ${summary.network.public_ip}` : 'none'], ['heroku run', summary.rendezvous_cert ? `trust ${summary.rendezvous_cert} (NODE_EXTRA_CA_CERTS); TLS port ${summary.rendezvous_port}` : 'unavailable (no openssl)']]));
        if (summary.admin_token) {
          console.log(`\nAdmin API token (shown once, also in ${join(dataDir, 'admin.token')}):\n  ${summary.admin_token}`);
          console.log(`\nLog in (berth and git push):  ${login(summary.admin_token)}`);
          const trust = summary.api_tls ? `NODE_EXTRA_CA_CERTS=${summary.api_tls.cert} ` : '';
          console.log(`\nUse it with the heroku CLI:  ${trust}HEROKU_HOST=${summary.api_url} HEROKU_API_KEY=${summary.admin_token} heroku apps`);
        }
        console.log('Press Ctrl-C to stop.');
      }
      log.info({ signal: await stopped }, 'stopping');
      await node.stop();
    });
}
