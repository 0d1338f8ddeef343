import { existsSync, mkdirSync, readFileSync, rmSync, writeFileSync } from 'node:fs';
import { dirname, join } from 'node:path';
import { BerthError, errorMessage } from '../domain/errors.js';
import type { Logger } from '../domain/log.js';
import { enableEtcdAuth } from './etcd-auth.js';
import { EtcdMember, clientUrl } from './etcd-member.js';
import { ClusterFiles, type ClusterState } from './files.js';
import { joinCluster } from './join-client.js';
import type { JoinAnswer, JoinRole } from './join-server.js';
import { EtcdMembers, type ClientTls } from './membership.js';
import { newConfigKey } from './sealing.js';
import { caHash, createCa, generateKeyPair, issueLeaf, type CertKeyPair } from './pki.js';
import { formatToken, newSecret, parseToken } from './token.js';

export interface MachineBootstrapOptions {
  dataDir: string;
  /** The machine id (`<data-dir>/machine-id`) and name. */
  machine: string;
  name: string;
  /** The address other machines reach this one at. */
  advertise: string;
  /** `init`: the first server; `join`: through a running server's API URL with the token. Ignored once the data dir holds a cluster (a restart rejoins by itself). */
  mode: { kind: 'init' } | { kind: 'join'; url: string; token: string };
  role: JoinRole;
  etcd: { clientPort: number; peerPort: number };
  /** Where the builder keeps the git-over-SSH host key (servers share one). */
  sshHostKeyPath?: string;
  log: Logger;
  /** Ends a wait for quorum that would otherwise last as long as the cluster is down (SIGINT, SIGTERM). */
  signal?: AbortSignal;
}

/** What a machine of a secured cluster opens its store with, and what it runs for the cluster. */
export interface MachineCluster {
  files: ClusterFiles;
  state: ClusterState;
  /** CA + this machine's leaf: the etcd client credentials (CN root on servers). */
  tls: ClientTls;
  /** The CA with its key (servers only). */
  ca: CertKeyPair | undefined;
  /** The etcd member this server runs, started. */
  member: EtcdMember | undefined;
  /** The full cluster token (servers). */
  token: string | undefined;
  /** This machine's credential for `/internal/` calls; a fresh first server issues its own once the store is open. */
  credential: string | undefined;
  /** True on the start that made the cluster (`--cluster-init` on an empty data dir). */
  created: boolean;
  /** `host:port` of each etcd voter. */
  endpoints(): string[];
  /** The store URL of those voters (opened with `tls`). */
  storeUrl(): string;
}

export const TOKEN_FILE = 'cluster.token';

function hostPort(url: string): string {
  return new URL(url).host;
}

/** The voters as `MachineCluster` hands them out, read afresh from the state each time. */
function storeOf(state: ClusterState): Pick<MachineCluster, 'endpoints' | 'storeUrl'> {
  const endpoints = (): string[] => state.endpoints.map(hostPort);
  return { endpoints, storeUrl: () => `etcd://${endpoints().join(',')}` };
}

function memberOf(o: MachineBootstrapOptions, files: ClusterFiles, initialCluster: string, state: 'new' | 'existing'): EtcdMember {
  return new EtcdMember({
    name: o.name,
    dataDir: files.etcdDir,
    advertise: o.advertise,
    clientPort: o.etcd.clientPort,
    peerPort: o.etcd.peerPort,
    tls: { caFile: files.path('ca.crt'), certFile: files.path('node.crt'), keyFile: files.path('node.key') },
    initialCluster,
    state,
    log: o.log.child({ component: 'etcd' }),
    logFile: files.path('etcd.log'),
  });
}

/** Runs `f`; if it throws, stops the member it was starting, so no etcd outlives a failed start. */
async function stoppingOnFailure(member: EtcdMember, f: () => Promise<void>): Promise<void> {
  try {
    await f();
  } catch (err) {
    await member.stop().catch(() => undefined);
    throw err;
  }
}

function writeToken(dataDir: string, token: string): void {
  writeFileSync(join(dataDir, TOKEN_FILE), `${token}\n`, { mode: 0o600 });
}

/** Waits until etcd lists its members (it has a leader and takes our certificate). */
async function untilServing(endpoints: string[], tls: ClientTls, timeoutMs = 30_000, log?: Logger, signal?: AbortSignal): Promise<void> {
  const started = Date.now();
  const deadline = started + timeoutMs;
  let said = started;
  for (;;) {
    const members = new EtcdMembers(endpoints, tls);
    try {
      await members.list();
      await members.quorumRead();
      return;
    } catch (err) {
      if (signal?.aborted) throw new BerthError('start_interrupted', 'Stopped while waiting for a quorum of etcd members.');
      if (Date.now() > deadline) throw new BerthError('etcd_unavailable', `etcd at ${endpoints.join(', ')} does not answer: ${errorMessage(err)}`);
      if (log && Date.now() - said > 10_000) {
        said = Date.now();
        log.warn({ endpoints, waited_s: Math.round((said - started) / 1000), err: errorMessage(err) }, 'waiting for a quorum of etcd members');
      }
    } finally {
      members.close();
    }
    await new Promise((r) => setTimeout(r, 300));
  }
}

/**
 * The first server of a cluster (`berth up --cluster-init`): a CA, this server's leaf (CN root:
 * etcd's admin, which member changes, compaction and defragmentation need), a one-member etcd
 * with TLS and authentication on, and the token that pins the CA.
 */
async function init(o: MachineBootstrapOptions, files: ClusterFiles): Promise<MachineCluster> {
  const ca = await createCa('berth-cluster-ca');
  const leaf = await issueLeaf(ca, { commonName: 'root', organization: 'berth-servers', ips: [...new Set([o.advertise, '127.0.0.1'])], usages: ['server', 'client'] });
  files.write('ca.key', ca.key);
  files.write('ca.crt', ca.cert);
  files.write('node.key', leaf.key);
  files.write('node.crt', leaf.cert);
  files.write('config.key', newConfigKey().toString('base64'));
  const tls = files.tls();
  // No cluster.json yet: whatever an earlier, failed init left in the etcd dir is not a cluster.
  rmSync(files.etcdDir, { recursive: true, force: true });
  const member = memberOf(o, files, `${o.name}=${clientUrl(o.advertise, o.etcd.peerPort)}`, 'new');
  await stoppingOnFailure(member, async () => {
    await member.start(tls);
    await untilServing([member.clientUrl], tls);
    await enableEtcdAuth({ endpoints: [member.clientUrl], tls });
  });
  const token = formatToken({ caHash: caHash(ca.cert), secret: newSecret() });
  writeToken(o.dataDir, token);
  const state: ClusterState = { role: 'server', name: o.name, advertise: o.advertise, member: { name: o.name, client_port: o.etcd.clientPort, peer_port: o.etcd.peerPort }, endpoints: [member.clientUrl], servers: [] };
  files.saveState(state);
  o.log.info({ member: member.clientUrl }, 'cluster created');
  return { files, state, tls, ca, member, token, credential: undefined, created: true, ...storeOf(state) };
}

/** A server or an agent joining through a running server (`--server URL --token T`). */
async function joinAs(o: MachineBootstrapOptions & { mode: { kind: 'join'; url: string; token: string } }, files: ClusterFiles): Promise<MachineCluster> {
  const token = parseToken(o.mode.token);
  const keys = await generateKeyPair();
  const server = o.role === 'server';
  const answer: JoinAnswer = await joinCluster({
    apiUrl: o.mode.url,
    token,
    request: { role: o.role, machine: o.machine, name: o.name, address: o.advertise, public_key: keys.publicKey, ...(server ? { etcd_peer_port: o.etcd.peerPort } : {}) },
    log: o.log,
  });
  files.write('ca.crt', answer.ca_cert);
  if (answer.ca_key) files.write('ca.key', answer.ca_key);
  if (answer.config_key) files.write('config.key', answer.config_key);
  files.write('node.key', keys.privateKey);
  files.write('node.crt', answer.cert);
  files.write('credential', answer.credential);
  // A server admits later joins with the token it joined with (the cluster's, since it was taken).
  if (server) writeToken(o.dataDir, formatToken(token));
  if (answer.ssh_host_key && o.sshHostKeyPath) {
    mkdirSync(dirname(o.sshHostKeyPath), { recursive: true, mode: 0o700 });
    writeFileSync(o.sshHostKeyPath, answer.ssh_host_key, { mode: 0o600 });
  }
  const tls = files.tls();
  let member: EtcdMember | undefined;
  const endpoints = [...answer.etcd.endpoints];
  if (answer.etcd.member) {
    // A join starts from an empty member: whatever an earlier, abandoned join left is not ours.
    rmSync(files.etcdDir, { recursive: true, force: true });
    const m = memberOf(o, files, answer.etcd.member.initial_cluster, 'existing');
    const id = answer.etcd.member.id;
    member = m;
    await stoppingOnFailure(m, async () => {
      await m.start(tls);
      const members = new EtcdMembers(answer.etcd.endpoints, tls);
      try {
        await members.promote(id);
      } finally {
        members.close();
      }
    });
    endpoints.push(member.clientUrl);
    o.log.info({ member: answer.etcd.member.id }, 'etcd member promoted to voter');
  }
  const state: ClusterState = {
    role: o.role,
    name: o.name,
    advertise: o.advertise,
    member: member ? { name: o.name, client_port: o.etcd.clientPort, peer_port: o.etcd.peerPort } : null,
    endpoints,
    servers: answer.servers,
    domain: answer.domain,
  };
  files.saveState(state);
  const ca = answer.ca_key ? { cert: answer.ca_cert, key: answer.ca_key } : undefined;
  return { files, state, tls, ca, member, token: server ? formatToken(token) : undefined, credential: answer.credential, created: false, ...storeOf(state) };
}

/** A restart with the same data dir: the member starts on its own data, the voters are listed afresh. */
async function restart(o: MachineBootstrapOptions, files: ClusterFiles): Promise<MachineCluster> {
  const state = files.state();
  if (state.role !== o.role) throw new BerthError('cluster_role_mismatch', `${files.dir} belongs to a ${state.role}; start it as one (or use another --data-dir).`);
  const tls = files.tls();
  let member: EtcdMember | undefined;
  if (state.member) {
    member = memberOf({ ...o, name: state.member.name, advertise: state.advertise, etcd: { clientPort: state.member.client_port, peerPort: state.member.peer_port } }, files, '', 'existing');
    if (!member.initialised) throw new BerthError('etcd_data_missing', `This server's etcd data (${files.etcdDir}) is gone. Remove the machine from the cluster (berth nodes:remove ${state.name} on another server), delete ${files.dir} and join again.`);
    member.launch();
  }
  const known = [...new Set([...(member ? [member.clientUrl] : []), ...state.endpoints])];
  // A whole cluster starting again (power came back) has no quorum until most members are up:
  // wait for it as long as it takes, saying so, rather than give up and leave a member behind.
  const waiting = untilServing(known, tls, Number.POSITIVE_INFINITY, o.log, o.signal);
  if (member) await stoppingOnFailure(member, () => waiting);
  else await waiting;
  // The voters as they are now; when no quorum answers yet (a whole cluster restarting) the
  // endpoints known from last time serve, and the store client retries them.
  const members = new EtcdMembers(known, tls);
  try {
    const list = await members.list();
    const voters = list.filter((m) => !m.learner).flatMap((m) => m.clientUrls);
    if (voters.length > 0) state.endpoints = voters;
    files.saveState(state);
  } catch (err) {
    o.log.warn({ err: errorMessage(err) }, 'etcd members not listed yet; using the endpoints known from the last start');
  } finally {
    members.close();
  }
  const caKey = files.has('ca.key') ? files.read('ca.key') : undefined;
  const ca = caKey ? { cert: tls.ca, key: caKey } : undefined;
  const tokenPath = join(o.dataDir, TOKEN_FILE);
  const token = existsSync(tokenPath) ? readFileSync(tokenPath, 'utf8').trim() : undefined;
  const credential = existsSync(files.path('credential')) ? files.read('credential').trim() : undefined;
  o.log.info({ role: state.role, member: member?.clientUrl ?? null, endpoints: state.endpoints }, 'rejoined the cluster');
  return { files, state, tls, ca, member, token, credential, created: false, ...storeOf(state) };
}

/**
 * Brings this machine into its cluster: makes the cluster (`init`), joins it (`join`), or — when
 * the data dir already holds one — rejoins by itself. Returns with the etcd member (servers with
 * one) running and promoted; the caller opens the store with `tls` on `endpoints()` and stops
 * `member` after the store.
 */
export async function bootstrapMachine(o: MachineBootstrapOptions): Promise<MachineCluster> {
  const files = new ClusterFiles(o.dataDir);
  if (files.exists()) return restart(o, files);
  if (o.mode.kind === 'init') {
    if (o.role !== 'server') throw new BerthError('invalid_params', 'Only a server can start a cluster.');
    return init(o, files);
  }
  return joinAs({ ...o, mode: o.mode }, files);
}
