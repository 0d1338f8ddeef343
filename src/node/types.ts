import type { Logger } from '../domain/log.js';
import type { SandboxConfig } from '../sandbox/index.js';
import type { Store } from '../store/index.js';
import type { ApiTlsRole } from './api-tls.js';

/** The API and what it owns: the store's bootstrap, the app logs, one-off dynos (with a builder). */
export interface ControllerRole {
  /** Address the API listens on. */
  host: string;
  /** Port of the API and git over HTTP (the push hook reaches it on loopback, so not 0). */
  port: number;
  /** URL clients reach the API at (default http://127.0.0.1:<port>). */
  url?: string;
  /** Apps are served at <app>.<domain>. */
  domain: string;
  /** Email of the first admin, made once per store (default admin@<domain>). */
  adminEmail?: string;
  /** The first admin's token, instead of a random one (BERTH_BOOTSTRAP_TOKEN). */
  bootstrapToken?: string;
  /** The cluster join token, instead of a random one, set once per store (BERTH_CLUSTER_TOKEN). */
  clusterToken?: string;
  /** The TLS port `heroku run` attaches to (0: any free one); no rendezvous listener without it. */
  rendezvousPort?: number;
  /** The API over HTTPS: an operator's certificate, or a self-signed one made once under the data dir. Plain HTTP without it. */
  tls?: ApiTlsRole;
  /** Requests one token may make per hour (default Heroku's 4,500; 0: no limit). */
  rateLimit?: number;
}

/** Source → slug: git over HTTP (on the API) and SSH, buildpacks in the sandbox; one-off dynos run beside it. */
export interface BuilderRole {
  /** Port of git over SSH, on the API's address (0: any free one). */
  sshPort: number;
  /** Host directories tenants may name as buildpacks (BERTH_BUILDPACK_DIRS). */
  buildpackDirs?: string[];
  /** Pushes building at once across apps (default: the number of cores). */
  maxParallel?: number;
  /** A build's writable space in bytes (default 2 GiB: `--build-disk`). */
  diskBytes?: number;
  /** The most an app's BUILD_TIMEOUT may ask for, in ms (default 60 min: `--build-timeout-max`). */
  maxTimeoutMs?: number;
  /** This machine's cache of Node releases and package managers (default `<data-dir>/toolchains`). */
  toolchainDir?: string;
  /** The npm registry Node, npm, Yarn and pnpm come from (default https://registry.npmjs.org). */
  npmRegistry?: string;
  /** A CA bundle builds trust besides Node's own (NODE_EXTRA_CA_CERTS of the operator's environment). */
  extraCaCerts?: string;
}

export interface SchedulerRole {
  /** Lease TTL of its registration and election, in seconds. */
  ttl?: number;
}

/** nginx with the Lua module; left out, with the reason in `Node.unavailable`, when it is missing. */
export interface RouterRole {
  httpPort: number;
  httpsPort: number;
}

/**
 * The overlay network of a node that runs tenant code (an agent or a builder): a namespace and an
 * address per dyno and build (src/network/).
 */
export interface NetworkRole {
  /**
   * Prefix of every kernel object the node makes (namespaces, veths, the nftables table), so
   * several platforms can share one kernel; 1-6 lowercase letters and digits (default `berth`).
   */
  name?: string;
  /** The cluster's overlay range, asked for by the first node (default 10.244.0.0/16). */
  overlay?: string;
  /** The cluster's backend, asked for by the first node (default vxlan). */
  backend?: 'vxlan' | 'host-gw';
  /** The underlay address peers reach this machine at (default: an agent's address, else the source of the default route). */
  publicIp?: string;
}

/**
 * A server of a secured cluster (`berth up --cluster-init` / `--server URL --token T`): it runs an
 * etcd member (while the cluster wants voters), a join listener, and registers itself at
 * /berth/servers/<machine>. The store is that etcd, with TLS and this machine's certificate.
 */
export interface ServerClusterRole {
  /** `init`: make the cluster; `join`: through a server's API URL. A data dir that holds a cluster restarts it either way. */
  mode: { kind: 'init' } | { kind: 'join'; url: string; token: string };
  /** This machine's name (also its etcd member's). */
  name: string;
  /** The address other machines reach this one at. */
  advertise: string;
  /** etcd's client and peer ports (default 2379, 2380). */
  etcdClientPort?: number;
  etcdPeerPort?: number;
  /** The TLS join listener's port (default 5443). */
  joinPort?: number;
  /** etcd voters the cluster keeps, 3 or 5 (taken from the first server only; default 3). */
  etcdVoters?: 3 | 5;
}

/** Runs the dynos the scheduler assigns to this machine. */
export interface AgentRole {
  /** This machine's name (default the host name). */
  name?: string;
  /** Placement tags. */
  tags?: Record<string, string>;
  /** This machine's public address: what peers and `berth nodes` know it by (default: the source of the default route). */
  address?: string;
  /** Lease TTL in seconds: a machine silent this long is dead (default 5). */
  ttl?: number;
  /** How long a web dyno has to bind $PORT. */
  bootTimeoutMs?: number;
}

interface NodeBase {
  /** Where the node keeps its state; made if missing. */
  dataDir: string;
  log: Logger;
  /** The host's sandbox settings: builds, release phases and dynos all run in one sandbox. */
  sandbox: SandboxConfig;
  /** The overlay, made when the node runs an agent or a builder (defaults when absent). */
  network?: NetworkRole;
}

/** A node of the platform (`berth up`): the controller, and whichever other roles are given. */
export interface PlatformNodeOptions extends NodeBase {
  /** The store's URL (sqlite://…, etcd://…, memory://); the node opens it, and closes it last. Ignored for a cluster server (its store is the cluster's etcd). */
  store: string;
  /** Open a plain `etcd://` without TLS or authentication (`--store-insecure`). */
  storeInsecure?: boolean;
  /** Run as a server of a secured cluster. */
  cluster?: ServerClusterRole;
  /** Aborts a start that waits (for an etcd quorum) on SIGINT/SIGTERM. */
  signal?: AbortSignal;
  roles: { controller: ControllerRole; builder?: BuilderRole; scheduler?: SchedulerRole; router?: RouterRole; agent?: AgentRole };
}

/**
 * A machine that only runs dynos and a router (`berth agent`), no control plane. It joins a
 * secured cluster through a server (`server`: the TLS join, which gives it a certificate for the
 * store and a credential) or, the older way, through a controller that names an open store.
 */
export interface AgentNodeOptions extends NodeBase {
  join: ControllerJoin | ServerJoin;
  roles: { agent: AgentRole; router?: RouterRole };
}

export interface ControllerJoin {
  /** The API of a platform node, e.g. http://10.0.0.1:5000. */
  controller: string;
  /** The cluster join token. */
  token: string;
  /** Open the store the controller names even without TLS or authentication. */
  storeInsecure?: boolean;
}

export interface ServerJoin {
  /** Any server's API URL, e.g. http://10.0.0.1:5000 (ignored once the data dir holds a cluster). */
  server: string;
  token: string;
  /** The address other machines reach this one at. */
  advertise: string;
}

export type NodeOptions = PlatformNodeOptions | AgentNodeOptions;

export type Role = keyof PlatformNodeOptions['roles'];

/** What `berth up` prints (`--json`: exactly this object). */
export interface PlatformSummary {
  data_dir: string;
  store: string;
  /** This server's place in a secured cluster (null on the one-machine default). */
  cluster: { role: 'server'; name: string; advertise: string; etcd_member: string | null; token_file: string | null } | null;
  api_url: string;
  /** The API's certificate when it speaks HTTPS: the file clients trust and its SHA-256 fingerprint. */
  api_tls: { cert: string; fingerprint_sha256: string; self_signed: boolean } | null;
  /** Null without the builder role. */
  ssh_port: number | null;
  /** Null when the router does not run. */
  http_port: number | null;
  https_port: number | null;
  domain: string;
  revision: number;
  /** The first admin's token, on the start that made it only. */
  admin_token: string | null;
  rendezvous_port: number | null;
  rendezvous_cert: string | null;
  /** The overlay on this node (null without an agent or builder). */
  network: { network: string; subnet: string; backend: 'vxlan' | 'host-gw'; public_ip: string } | null;
}

/** What `berth agent` prints (`--json`: exactly this object). */
export interface AgentSummary {
  machine_id: string;
  name: string;
  /** The server (or controller) it joined through. */
  controller: string;
  /** Null when the router does not run here (nginx missing, or not asked for). */
  http_port: number | null;
  store: string;
  tags: Record<string, string>;
  ttl: number;
  /** This machine's overlay subnet and the cluster's backend. */
  subnet: string;
  backend: 'vxlan' | 'host-gw';
}

export interface Node<S> {
  summary: S;
  /** The node's store (closed by `stop`). */
  store: Store;
  /** Roles asked for that do not run, and why (the router without nginx). */
  unavailable: Partial<Record<Role, string>>;
  /** Stops every part in the one shutdown order; a second call is harmless. */
  stop(): Promise<void>;
}
