import type { Logger } from '../domain/log.js';
import type { OverlayBackend } from '../domain/records.js';
import type { Store } from '../store/index.js';

/**
 * What the agent, the one-off dynos and the builder need of a machine's network: a namespace of
 * its own for each dyno and build. The overlay (`OverlayNetwork`) is the real one; the loopback
 * network (`LoopbackNetwork`) hands out 127.0.0.1 ports for tests on the fake runtime.
 */
export interface Attachment {
  /** What the router and the agent's health check dial: the dyno's overlay address. */
  address: string;
  /** The port a web dyno listens on ($PORT). */
  port: number;
  /** The network namespace the sandbox runs in (`nsenter --net=`); absent on the loopback network. */
  netns?: string;
  /** A host file the sandbox binds at /etc/resolv.conf: a resolver reachable from the namespace. */
  resolvConf?: string;
  /** Environment the platform gives the process (HEROKU_PRIVATE_IP for dynos). */
  env: Record<string, string>;
  /**
   * Removes the namespace and frees the address (the store key last); safe to call twice. `after`:
   * the store revision that removed the dyno's endpoint — the address is not handed out again
   * until every router has applied it (in the background; release returns at once).
   */
  release(o?: { after?: number }): Promise<void>;
}

export interface DynoAttachRequest {
  appId: string;
  /** The app's uid: the group its addresses carry in every machine's policy. */
  group: number;
  /** The unit (`app.web.1@v3`) or one-off dyno (`run.1234`) the address is for. */
  owner: string;
}

export interface Networks {
  /**
   * A dyno's namespace and overlay address. The address is in the store before this returns;
   * every machine's policy (this one's included) follows it by watch within moments. Kept across
   * the dyno's crash restarts.
   */
  attachDyno(request: DynoAttachRequest): Promise<Attachment>;
  /** An egress-only namespace for a build or release phase: the outside world, nothing of ours. */
  attachBuild(id: string): Promise<Attachment>;
}

export type BackendName = OverlayBackend['type'];

/** What the composition root knows and passes in (`berth up` / `berth agent` flags). */
export interface OverlayNetworkOptions {
  store: Store;
  log: Logger;
  /** This machine's id (the store's subnet owner). */
  machine: string;
  /** Where the subnet file and the dynos' resolv.conf live (`<dataDir>/network`). */
  dir: string;
  /**
   * Prefix of every kernel object this node makes: namespaces `<name>-…`, veths `<name>…`, the
   * nftables table `<name>`, the VXLAN device `<name>.vx`. Several platforms can then share one
   * kernel (test suites); at most 6 characters, [a-z][a-z0-9]*. Default `berth`.
   */
  name: string;
  /** The underlay address peers reach this machine at (its subnet lease's public_ip). */
  publicIp: string;
  /** Asked for at `berth up`; used only by the node that writes the config first, checked by the rest. */
  request?: { network?: string; backend?: BackendName };
  /** Ports of this machine a dyno may open (the public router and API); nothing else on it. */
  publicPorts: number[];
  /** Addresses of the store's servers: never reachable from a dyno or build. */
  internalAddresses: string[];
  /** Subnet lease TTL in seconds (default 24 h, renewed by a third). */
  subnetTtl?: number;
  /**
   * How long a previous incarnation's addresses stay out of use after a restart (default 15 s):
   * the endpoints naming them live on until the agent's old lease runs out.
   */
  holdMs?: number;
}
