import { chmodSync, mkdirSync } from 'node:fs';
import { join } from 'node:path';
import { Agent, ControllerLink, ProcessRuntime, localMachine } from '../agent/index.js';
import { invalid } from '../domain/errors.js';
import { keys } from '../domain/keys.js';
import { Sandbox } from '../sandbox/index.js';
import { openStore } from '../store/index.js';
import { nodeNetwork } from './network.js';
import { Parts, startOrUnwind } from './shutdown.js';
import type { AgentNodeOptions, AgentSummary, Node } from './types.js';

/** The Agent's own default lease TTL, for the summary when none is given. */
const AGENT_TTL = 5;

/**
 * A machine that only runs dynos: it joins through the controller with the cluster token (which
 * hands it the store URL), then runs the same Agent as a platform node, registered under its own
 * lease, so losing this node is a machine failure the scheduler heals. What it cannot share with
 * the controller's host (slugs, log lines) goes over the API (`ControllerLink`).
 */
export async function startAgentNode(o: AgentNodeOptions): Promise<Node<AgentSummary>> {
  const { dataDir, log } = o;
  const a = o.roles.agent;
  mkdirSync(dataDir, { recursive: true, mode: 0o700 });
  // Dyno uids must pass through to their own dirs under dynos/ (by name only: no listing).
  chmodSync(dataDir, 0o711);
  const named = localMachine({ dataDir, ...(a.name ? { name: a.name } : {}), ...(a.tags ? { tags: a.tags } : {}) });
  const parts = new Parts(log);
  const link = new ControllerLink(o.join.controller, o.join.token, log);
  parts.add('link', () => link.close());
  return startOrUnwind(parts, async () => {
    const joined = await link.join(named.name, named.id);
    const store = openStore(joined.store_url);
    parts.add('store', () => store.close());
    // A sqlite:// URL from a controller on another host opens (and creates) an empty file here.
    if (!(await store.get(keys.platform()))) {
      throw invalid(`The store the controller named (${joined.store_url}) holds no Berth platform from this machine. A sqlite store only reaches agents on the controller's own host; run the platform on etcd (berth up --store etcd://…) for agents on other hosts.`);
    }
    const ttl = a.ttl ?? AGENT_TTL;
    // The range and backend are the cluster's (in the store); only the kernel names are this node's.
    const role = { ...(o.network?.name ? { name: o.network.name } : {}), ...(o.network?.publicIp ? { publicIp: o.network.publicIp } : {}) };
    // Its dynos may open no port of this machine: it serves neither the API nor a router.
    const network = await nodeNetwork({ store, storeUrl: joined.store_url, log, dataDir, machine: named.id, role, ...(a.address ? { address: a.address } : {}), publicPorts: [], ...(a.ttl ? { agentTtl: a.ttl } : {}) });
    parts.add('network', () => network.stop());
    await network.start();
    const info = { ...named, address: network.info().publicIp };
    const agent = new Agent({
      store,
      log,
      machine: info,
      runtime: new ProcessRuntime({ workDir: join(dataDir, 'dynos'), sandbox: new Sandbox(o.sandbox) }),
      network,
      slugPath: link.slugPath(store, join(dataDir, 'slugs')),
      appLog: (appId, source, dyno, message) => link.appLog(appId, source, dyno, message),
      ttl,
      ...(a.bootTimeoutMs ? { bootTimeoutMs: a.bootTimeoutMs } : {}),
    });
    parts.add('agent', () => agent.stop());
    await agent.start();
    const { subnet, backend } = network.info();
    const summary: AgentSummary = { machine_id: info.id, name: info.name, controller: o.join.controller, store: store.description, tags: info.tags, ttl, subnet, backend };
    return { summary, store, unavailable: {}, stop: () => parts.stop() };
  });
}
