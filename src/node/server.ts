import { existsSync, readFileSync } from 'node:fs';
import { join } from 'node:path';
import type { FastifyInstance } from 'fastify';
import { DEFAULT_VOTERS, JoinServer, clientUrl, type MachineBootstrapOptions, type MachineCluster } from '../cluster/index.js';
import { ClusterTokens } from '../controller/services/cluster.js';
import type { Services } from '../controller/index.js';
import { get, list, put, putOp } from '../domain/codec.js';
import type { Logger } from '../domain/log.js';
import { keys } from '../domain/keys.js';
import { codecs } from '../domain/records.js';
import { Registration } from '../loop/index.js';
import type { Store } from '../store/index.js';
import type { ServerClusterRole } from './types.js';

export const DEFAULT_JOIN_PORT = 5443;

/** Where joiners find this server's TLS join listener: public, no secret (the TLS check against the token's CA hash is what counts). */
export function joinInfoRoutes(joinUrl: string): (api: FastifyInstance) => void {
  return (api) => {
    api.get('/cluster/join-info', { config: { public: true } }, async () => ({ join_url: joinUrl }));
  };
}

/** The join listener's URL, as joiners reach it. */
export function joinUrl(cluster: MachineCluster, role: ServerClusterRole): string {
  return clientUrl(cluster.state.advertise, role.joinPort ?? DEFAULT_JOIN_PORT);
}

/** What `bootstrapMachine` needs for a server. */
export function serverBootstrap(o: { dataDir: string; log: Logger; signal?: AbortSignal }, role: ServerClusterRole, machine: string): MachineBootstrapOptions {
  return {
    ...(o.signal ? { signal: o.signal } : {}),
    dataDir: o.dataDir,
    machine,
    name: role.name,
    advertise: role.advertise,
    mode: role.mode,
    role: 'server',
    etcd: { clientPort: role.etcdClientPort ?? 2379, peerPort: role.etcdPeerPort ?? 2380 },
    sshHostKeyPath: join(o.dataDir, 'ssh', 'host_ed25519'),
    log: o.log.child({ component: 'cluster' }),
  };
}

/** This server's credential: from its join, else (the first server, or one whose file was lost) issued to itself. */
export async function serverCredential(store: Store, cluster: MachineCluster, machine: string): Promise<string> {
  if (cluster.credential) return cluster.credential;
  const credential = await new ClusterTokens(store).issue(machine, cluster.state.name, 'server');
  cluster.files.write('credential', credential);
  return credential;
}

/** The first server records the cluster's settings, once (a later `--etcd-voters` changes nothing). */
export async function recordClusterSettings(store: Store, role: ServerClusterRole): Promise<void> {
  await store.txn({
    compare: [{ key: keys.clusterSettings(), target: 'create', op: '=', value: 0 }],
    success: [putOp(keys.clusterSettings(), codecs.clusterSettings, { etcd_voters: role.etcdVoters ?? DEFAULT_VOTERS, created_at: new Date().toISOString() })],
  });
}

export interface ClusterServerParts {
  joins: JoinServer;
  registration: Registration;
}

/**
 * What a server adds once its controller is up: its own credential (a fresh first server issues
 * it to itself), the TLS join listener, and its `/berth/servers/<machine>` record under a lease
 * of its own, which peers and agents find it by and which vanishes with it.
 */
export async function startClusterServer(o: {
  store: Store;
  services: Services;
  cluster: MachineCluster;
  role: ServerClusterRole;
  machine: string;
  apiUrl: string;
  host: string;
  dataDir: string;
  log: Logger;
  ttl: number;
  domain: string;
}): Promise<ClusterServerParts> {
  const { cluster, services } = o;
  if (!cluster.ca) throw new Error(`${cluster.files.dir} has no CA key: this data dir belongs to an agent`);
  const joinPort = o.role.joinPort ?? DEFAULT_JOIN_PORT;
  const sshKey = join(o.dataDir, 'ssh', 'host_ed25519');
  const joins = new JoinServer({
    host: o.host,
    port: joinPort,
    tls: { cert: cluster.tls.cert, key: cluster.tls.key },
    ca: cluster.ca,
    etcd: { endpoints: () => cluster.state.endpoints, tls: cluster.tls },
    verifyToken: (t) => services.cluster.verify(t),
    issueCredential: (machine, name, role) => services.cluster.issue(machine, name, role),
    servers: async () => (await list(o.store, keys.servers(), codecs.server)).map((s) => s.value.api_url),
    sshHostKey: () => (existsSync(sshKey) ? readFileSync(sshKey, 'utf8') : undefined),
    configKey: () => cluster.files.configKey()?.toString('base64'),
    voters: async () => (await get(o.store, keys.clusterSettings(), codecs.clusterSettings))?.value.etcd_voters ?? DEFAULT_VOTERS,
    domain: o.domain,
    log: o.log.child({ component: 'join' }),
  });
  await joins.start();
  const member = cluster.member;
  const record = {
    id: o.machine,
    name: cluster.state.name,
    address: cluster.state.advertise,
    api_url: o.apiUrl,
    join_url: joinUrl(cluster, o.role),
    etcd: member && cluster.state.member ? { name: cluster.state.member.name, client_url: member.clientUrl, peer_url: member.peerUrl } : null,
    started_at: new Date().toISOString(),
  };
  const registration = await Registration.start({
    store: o.store,
    log: o.log.child({ component: 'server-registration' }),
    ttl: o.ttl,
    register: async (lease) => void (await put(o.store, keys.server(o.machine), codecs.server, record, { lease })),
  });
  return { joins, registration };
}
