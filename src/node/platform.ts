import { mkdirSync } from 'node:fs';
import { join } from 'node:path';
import { Agent, ProcessRuntime, localMachine, machineId } from '../agent/index.js';
import { createBuilder, createBuilderServer, type BuildLimits, type BuilderToolchainOptions } from '../builder/index.js';
import { createServices, startController, type Services } from '../controller/index.js';
import { createOneOffDynos } from '../controller/one-off/index.js';
import type { OverlayNetwork } from '../network/index.js';
import { Router, routerUnavailable } from '../router/index.js';
import { Sandbox } from '../sandbox/index.js';
import { Scheduler } from '../scheduler/index.js';
import { openStore } from '../store/index.js';
import { EtcdMaintenance, SealedStore, bootstrapMachine } from '../cluster/index.js';
import { storePeers } from '../domain/peers.js';
import { BerthError } from '../domain/errors.js';
import { apiTls, startHookRelay } from './api-tls.js';
import { bootstrap } from './bootstrap.js';
import { clusterRoutes } from './cluster-routes.js';
import { joinInfoRoutes, joinUrl, recordClusterSettings, serverBootstrap, serverCredential, startClusterServer } from './server.js';
import { nodeNetwork } from './network.js';
import { loopbackPort } from './ports.js';
import { Parts, startOrUnwind } from './shutdown.js';
import type { BuilderRole, Node, PlatformNodeOptions, PlatformSummary, Role } from './types.js';

function networkSummary(i: ReturnType<OverlayNetwork['info']>): PlatformSummary['network'] {
  return { network: i.network, subnet: i.subnet, backend: i.backend, public_ip: i.publicIp };
}

/** Where this node's own git hook reaches the API: the address it listens on (loopback for a wildcard). */
function hookBase(host: string, port: number): string {
  if (host === '0.0.0.0' || host === '::' || host === '') return `http://127.0.0.1:${port}`;
  return host.includes(':') ? `http://[${host}]:${port}` : `http://${host}:${port}`;
}

/**
 * A platform node: opens the store and bootstraps it, then builds each role with its dependencies
 * passed in, nothing late-bound. The builder first (source → slug, commands in a slug); the
 * controller's services drive it through its ports; its git transports hand pushes to the
 * controller's deploys; one-off dynos run beside the builder's slugs.
 */
export async function startPlatformNode(o: PlatformNodeOptions): Promise<Node<PlatformSummary>> {
  const { dataDir, log, roles } = o;
  const c = roles.controller;
  mkdirSync(dataDir, { recursive: true, mode: 0o700 });
  const parts = new Parts(log);
  const unavailable: Partial<Record<Role, string>> = {};
  return startOrUnwind(parts, async () => {
    const node = machineId(dataDir, o.cluster?.name);
    // A cluster server brings up (or joins) its etcd member first: that is its store.
    const cluster = o.cluster ? await bootstrapMachine(serverBootstrap(o, o.cluster, node)) : undefined;
    const member = cluster?.member;
    if (member && cluster) {
      // Defragmentation of this server's own member when compaction has left enough slack.
      const upkeep = new EtcdMaintenance({ member: { clientUrl: member.clientUrl }, tls: cluster.tls, log: log.child({ component: 'etcd-maintenance' }) });
      upkeep.start();
      parts.add('etcd', async () => {
        await upkeep.stop();
        await member.stop();
      });
    }
    const storeUrl = cluster ? cluster.storeUrl() : o.store;
    const opened = cluster ? openStore(storeUrl, { etcdTls: cluster.tls }) : openStore(o.store, o.storeInsecure ? { insecure: true } : {});
    // A server reads and writes app configs and releases sealed with the cluster's key.
    const configKey = cluster?.files.configKey();
    // Without it this server would write configs in the clear for every agent to read.
    if (cluster && !configKey) throw new BerthError('cluster_config_key_missing', `${cluster.files.path('config.key')} is missing: this server cannot seal app configs. Copy it from another server (0600), or join again.`);
    const store = configKey ? new SealedStore(opened, configKey) : opened;
    parts.add('store', () => store.close());
    const token = await bootstrap(store, { dataDir, adminEmail: c.adminEmail ?? `admin@${c.domain}`, adminToken: c.bootstrapToken, clusterToken: cluster?.token ?? c.clusterToken });
    // The API over HTTPS (opt-in here; `berth up` decides its default): its URL, the git URLs it
    // hands out and the printed HEROKU_HOST all say https then.
    const urlHost = c.url && URL.canParse(c.url) ? new URL(c.url).hostname.replace(/^\[(.*)\]$/, '$1') : undefined;
    const tls = c.tls ? await apiTls(dataDir, c.tls, [c.host, ...(urlHost ? [urlHost] : []), ...(o.cluster ? [o.cluster.advertise] : [])]) : undefined;
    const apiUrl = c.url?.replace(/\/+$/, '') ?? `${tls ? 'https' : 'http'}://127.0.0.1:${c.port}`;
    // The git hook speaks plain HTTP to loopback: with TLS on, it goes through a relay of its route only.
    const relay = tls && roles.builder ? await startHookRelay('/internal/git-hook') : undefined;
    if (relay) parts.add('controller', () => relay.close());
    // The first server records what the whole cluster keeps (its etcd voters).
    if (cluster?.created && o.cluster) await recordClusterSettings(store, o.cluster);
    // A server's own credential for its calls to other machines' /internal/ routes.
    const credential = cluster ? await serverCredential(store, cluster, node) : undefined;
    // The other servers, for log fan-out and slug copies.
    const peers = credential ? storePeers(store, node, credential) : undefined;
    // Builds, release phases, one-off and formation dynos all run in this node's one sandbox.
    const sandbox = new Sandbox(o.sandbox);
    // Each of them in a namespace of its own: the network is up before any of them starts. A
    // dyno may open this node's API and router ports, nothing else of it.
    const network =
      roles.builder || roles.agent
        ? await nodeNetwork({ store, storeUrl, log, dataDir, machine: node, role: o.network ?? {}, ...(roles.agent?.address ? { address: roles.agent.address } : {}), publicPorts: [c.port, ...(roles.router ? [roles.router.httpPort, roles.router.httpsPort] : [])], ...(roles.agent?.ttl ? { agentTtl: roles.agent.ttl } : {}) })
        : undefined;
    if (network) {
      parts.add('network', () => network.stop());
      await network.start();
    }
    const builder = roles.builder && network && createBuilder({ store, log, dataDir, sandbox, network, buildpackDirs: roles.builder.buildpackDirs ?? [], limits: buildLimits(roles.builder), toolchains: toolchainOptions(roles.builder), ...(peers ? { peers } : { machine: node }) });
    if (builder) {
      // Every server keeps every live slug (copies from its peers) and collects dead ones.
      // A destroyed app's build cache goes too, from every server that built it.
      parts.add('slugs', async () => {
        await builder.caches.stop();
        await builder.replicator.stop();
      });
      await builder.replicator.start();
      await builder.caches.start();
    }
    // A cluster's store takes certificates: the agents' old join (which hands out a URL) has none to give.
    const services: Services = createServices(store, log, { domain: c.domain, apiUrl, ...(cluster ? {} : { storeUrl: o.store }) }, { logDb: join(dataDir, 'logs.db'), ...(builder ? { builder } : {}), ...(peers ? { peers } : {}) });
    parts.add('controller', () => services.close());
    const appLog = (appId: string, source: string, dyno: string, message: string): void => {
      services.logs.append(appId, { source, dyno, message });
    };
    const gitServer =
      builder &&
      createBuilderServer({ builder, access: services.gitAccess, deployer: services.deploys, hookUrl: `${relay ? relay.base : hookBase(c.host, c.port)}/internal/git-hook`, hostKeyPath: join(dataDir, 'ssh', 'host_ed25519'), log, ...(roles.builder?.maxParallel ? { maxParallel: roles.builder.maxParallel } : {}) });
    // One-off dynos run in this process, in a runtime of their own: a ProcessRuntime empties its
    // work dir when made, so it must never share the agent's.
    const oneOff =
      builder &&
      network &&
      createOneOffDynos({
        services,
        dataDir,
        node,
        runtime: new ProcessRuntime({ workDir: join(dataDir, 'run'), sandbox, log: log.child({ component: 'one-off' }) }),
        network,
        slugPath: (id) => builder.slugPath(id),
        ...(c.rendezvousPort !== undefined ? { rendezvous: { host: c.host, port: c.rendezvousPort } } : {}),
      });
    const controller = await startController({ services, host: c.host, port: c.port, routes: [...(gitServer ? [gitServer.routes] : []), ...(oneOff ? [oneOff.routes] : []), ...(cluster && o.cluster ? [joinInfoRoutes(joinUrl(cluster, o.cluster)), clusterRoutes({ store, services, cluster, dataDir })] : [])], api: { ...(c.rateLimit !== undefined ? { rateLimit: c.rateLimit } : {}), ...(tls ? { https: { cert: tls.cert, key: tls.key } } : {}) } });
    parts.add('controller', () => controller.close());
    relay?.attach(controller.api);
    if (cluster && o.cluster && credential) {
      const server = await startClusterServer({ store, services, cluster, role: o.cluster, machine: node, apiUrl, host: c.host, dataDir, log, ttl: roles.scheduler?.ttl ?? roles.agent?.ttl ?? 5, domain: c.domain });
      parts.add('joins', () => server.joins.close());
      parts.add('server', () => server.registration.stop());
    }
    if (oneOff) {
      parts.add('one-off', () => oneOff.close());
      await oneOff.start();
    }
    const ssh = gitServer && roles.builder ? await gitServer.startSsh(c.host, roles.builder.sshPort) : undefined;
    if (ssh) parts.add('ssh', () => ssh.close());
    if (roles.scheduler) {
      const scheduler = new Scheduler({ store, log: log.child({ component: 'scheduler' }), id: node, ...(roles.scheduler.ttl ? { ttl: roles.scheduler.ttl } : {}) });
      parts.add('scheduler', () => scheduler.stop());
      await scheduler.start();
    }
    if (roles.agent && network) {
      const a = roles.agent;
      const agent = new Agent({
        store,
        log: log.child({ component: 'agent' }),
        // Registered at the address its overlay peers reach it at.
        machine: localMachine({ dataDir, address: network.info().publicIp, ...(a.name ? { name: a.name } : {}), ...(a.tags ? { tags: a.tags } : {}) }),
        runtime: new ProcessRuntime({ workDir: join(dataDir, 'dynos'), sandbox, log: log.child({ component: 'runtime' }) }),
        network,
        // The builder's slug store is on this node; without a builder here, no slug is.
        slugPath: (id) => (builder ? builder.slugPath(id) : Promise.reject(new Error(`slug ${id}: this node has no builder`))),
        appLog,
        ...(a.ttl ? { ttl: a.ttl } : {}),
        ...(a.bootTimeoutMs ? { bootTimeoutMs: a.bootTimeoutMs } : {}),
      });
      parts.add('agent', () => agent.stop());
      await agent.start();
    }
    const missing = roles.router && routerUnavailable();
    if (missing) {
      unavailable.router = missing;
      log.warn({ reason: missing }, 'the router is not running');
    }
    const routed = missing ? undefined : roles.router;
    if (routed) {
      const router = new Router({ store, log: log.child({ component: 'router' }), id: node, dir: join(dataDir, 'router'), httpPort: routed.httpPort, httpsPort: routed.httpsPort, controlPort: await loopbackPort(), verifyEndpoints: true, domain: c.domain, appLog });
      parts.add('router', () => router.stop());
      await router.start();
    }
    const rendezvous = oneOff?.rendezvous();
    const summary: PlatformSummary = {
      data_dir: dataDir,
      store: store.description,
      cluster: cluster ? { role: 'server', name: cluster.state.name, advertise: cluster.state.advertise, etcd_member: cluster.member?.clientUrl ?? null, token_file: cluster.token ? join(dataDir, 'cluster.token') : null } : null,
      api_url: apiUrl,
      api_tls: tls ? { cert: tls.certPath, fingerprint_sha256: tls.fingerprint, self_signed: tls.selfSigned } : null,
      ssh_port: ssh?.port ?? null,
      http_port: routed?.httpPort ?? null,
      https_port: routed?.httpsPort ?? null,
      domain: c.domain,
      revision: await store.currentRevision(),
      admin_token: token ?? null,
      rendezvous_port: rendezvous?.port ?? null,
      rendezvous_cert: rendezvous?.certPath ?? null,
      network: network ? networkSummary(network.info()) : null,
    };
    return { summary, store, unavailable, stop: () => parts.stop() };
  });
}

/** The operator's build limits, only those given (the builder has the defaults). */
function toolchainOptions(b: BuilderRole): BuilderToolchainOptions {
  return { ...(b.toolchainDir !== undefined ? { dir: b.toolchainDir } : {}), ...(b.npmRegistry !== undefined ? { registry: b.npmRegistry } : {}), ...(b.extraCaCerts !== undefined ? { extraCaCerts: b.extraCaCerts } : {}) };
}

function buildLimits(b: BuilderRole): BuildLimits {
  return { ...(b.diskBytes !== undefined ? { diskBytes: b.diskBytes } : {}), ...(b.maxTimeoutMs !== undefined ? { maxTimeoutMs: b.maxTimeoutMs } : {}) };
}
