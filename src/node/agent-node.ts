import { chmodSync, mkdirSync } from 'node:fs';
import { join } from 'node:path';
import { Agent, ControllerLink, ProcessRuntime, localMachine } from '../agent/index.js';
import { bootstrapMachine } from '../cluster/index.js';
import { invalid } from '../domain/errors.js';
import { keys } from '../domain/keys.js';
import type { Logger } from '../domain/log.js';
import { Router, routerUnavailable } from '../router/index.js';
import { Sandbox } from '../sandbox/index.js';
import { openStore, type Store } from '../store/index.js';
import { nodeNetwork } from './network.js';
import { loopbackPort } from './ports.js';
import { Parts, startOrUnwind } from './shutdown.js';
import type { AgentNodeOptions, AgentSummary, ControllerJoin, Node, ServerJoin } from './types.js';

/** The Agent's own default lease TTL, for the summary when none is given. */
const AGENT_TTL = 5;

interface Joined {
  store: Store;
  storeUrl: string;
  link: ControllerLink;
  domain: string;
  via: string;
}

/**
 * Into a secured cluster through a server: the TLS join (or, with a data dir that holds the
 * cluster, a restart) gives this machine a certificate the store takes (CN berth-agent) and a
 * credential for the servers' /internal/ routes.
 */
async function joinServer(o: AgentNodeOptions & { join: ServerJoin }, id: string, name: string, log: Logger, parts: Parts): Promise<Joined> {
  const cluster = await bootstrapMachine({
    dataDir: o.dataDir,
    machine: id,
    name,
    advertise: o.join.advertise,
    mode: { kind: 'join', url: o.join.server, token: o.join.token },
    role: 'agent',
    etcd: { clientPort: 2379, peerPort: 2380 },
    log: log.child({ component: 'cluster' }),
  });
  if (!cluster.credential) throw invalid(`${cluster.files.dir} holds no credential; delete it and join again.`);
  const storeUrl = cluster.storeUrl();
  const store = openStore(storeUrl, { etcdTls: cluster.tls });
  parts.add('store', () => store.close());
  // The server it joined through first; any live one once the store says which.
  const via = cluster.state.servers[0] ?? o.join.server;
  const link = new ControllerLink(via, cluster.credential, log);
  parts.add('link', () => link.close());
  link.attach(store);
  return { store, storeUrl, link, domain: cluster.state.domain ?? 'berth.localhost', via };
}

/** The older way: a controller hands out the store URL for the cluster token. */
async function joinController(o: AgentNodeOptions & { join: ControllerJoin }, id: string, name: string, log: Logger, parts: Parts): Promise<Joined> {
  const link = new ControllerLink(o.join.controller, o.join.token, log);
  parts.add('link', () => link.close());
  const joined = await link.join(name, id);
  const store = openStore(joined.store_url, o.join.storeInsecure ? { insecure: true } : {});
  parts.add('store', () => store.close());
  // A sqlite:// URL from a controller on another host opens (and creates) an empty file here.
  if (!(await store.get(keys.platform()))) {
    throw invalid(`The store the controller named (${joined.store_url}) holds no Berth platform from this machine. A sqlite store only reaches agents on the controller's own host; run a secured cluster (berth up --cluster-init, then berth agent --server URL) for agents on other hosts.`);
  }
  link.attach(store);
  return { store, storeUrl: joined.store_url, link, domain: joined.domain, via: o.join.controller };
}

/**
 * A machine that runs dynos and a router, no control plane: it joins (through a server of a
 * secured cluster, or a controller that names an open store), then runs the same Agent as a
 * server, registered under its own lease, so losing this node is a machine failure the scheduler
 * heals, and a router, so any machine's ports serve every app. What it cannot share with a server
 * (slugs, log lines) goes over the servers' API (`ControllerLink`).
 */
export async function startAgentNode(o: AgentNodeOptions): Promise<Node<AgentSummary>> {
  const { dataDir, log } = o;
  const a = o.roles.agent;
  mkdirSync(dataDir, { recursive: true, mode: 0o700 });
  // Dyno uids must pass through to their own dirs under dynos/ (by name only: no listing).
  chmodSync(dataDir, 0o711);
  const named = localMachine({ dataDir, ...(a.name ? { name: a.name } : {}), ...(a.tags ? { tags: a.tags } : {}) });
  const parts = new Parts(log);
  return startOrUnwind(parts, async () => {
    const j = 'server' in o.join ? await joinServer({ ...o, join: o.join }, named.id, named.name, log, parts) : await joinController({ ...o, join: o.join }, named.id, named.name, log, parts);
    const { store, link } = j;
    const ttl = a.ttl ?? AGENT_TTL;
    const routed = o.roles.router && !routerUnavailable() ? o.roles.router : undefined;
    if (o.roles.router && !routed) log.warn({ reason: routerUnavailable() }, 'the router is not running');
    // The range and backend are the cluster's (in the store); only the kernel names are this node's.
    const advertise = 'server' in o.join ? o.join.advertise : a.address;
    const role = { ...(o.network?.name ? { name: o.network.name } : {}), ...(o.network?.publicIp ? { publicIp: o.network.publicIp } : {}) };
    // Its dynos may open this machine's router ports, nothing else of it.
    const network = await nodeNetwork({ store, storeUrl: j.storeUrl, log, dataDir, machine: named.id, role, ...(advertise ? { address: advertise } : {}), publicPorts: routed ? [routed.httpPort, routed.httpsPort] : [], ...(a.ttl ? { agentTtl: a.ttl } : {}) });
    parts.add('network', () => network.stop());
    await network.start();
    const info = { ...named, address: network.info().publicIp };
    const appLog = (appId: string, source: string, dyno: string, message: string): void => link.appLog(appId, source, dyno, message);
    const agent = new Agent({
      store,
      log,
      machine: info,
      runtime: new ProcessRuntime({ workDir: join(dataDir, 'dynos'), sandbox: new Sandbox(o.sandbox), log: log.child({ component: 'runtime' }) }),
      network,
      slugPath: link.slugPath(store, join(dataDir, 'slugs')),
      appLog,
      // Releases are sealed to agent certificates: a server hands over those of this machine's units.
      ...('server' in o.join ? { release: (appId: string, version: number) => link.release(appId, version), uidOf: (appId: string) => link.uidOf(appId) } : {}),
      ttl,
      ...(a.bootTimeoutMs ? { bootTimeoutMs: a.bootTimeoutMs } : {}),
    });
    parts.add('agent', () => agent.stop());
    await agent.start();
    if (routed) {
      const router = new Router({ store, log: log.child({ component: 'router' }), id: info.id, dir: join(dataDir, 'router'), httpPort: routed.httpPort, httpsPort: routed.httpsPort, controlPort: await loopbackPort(), verifyEndpoints: true, domain: j.domain, appLog });
      parts.add('router', () => router.stop());
      await router.start();
    }
    const { subnet, backend } = network.info();
    const summary: AgentSummary = { machine_id: info.id, name: info.name, controller: j.via, http_port: routed?.httpPort ?? null, store: store.description, tags: info.tags, ttl, subnet, backend };
    return { summary, store, unavailable: {}, stop: () => parts.stop() };
  });
}
