import Fastify, { type FastifyInstance } from 'fastify';
import { BerthError, conflict, errorMessage, invalid, unauthorized } from '../domain/errors.js';
import type { Logger } from '../domain/log.js';
import { EtcdMembers, MAX_VOTERS, initialCluster, type ClientTls, type Member } from './membership.js';
import { signLeaf, type CertKeyPair } from './pki.js';

export type JoinRole = 'server' | 'agent';

/** What a joiner sends, over TLS verified against the CA its token pins. */
export interface JoinRequest {
  token: string;
  role: JoinRole;
  /** The machine's id (`<data-dir>/machine-id`) and name. */
  machine: string;
  name: string;
  /** The address other machines reach it at. */
  address: string;
  /** Its own key's public half (SPKI PEM): the private key never leaves the joiner. */
  public_key: string;
  /** Where its etcd member would listen (servers). */
  etcd_peer_port?: number;
}

export interface JoinAnswer {
  ca_cert: string;
  /** Servers sign later joins and serve etcd: they hold the CA key. */
  ca_key?: string;
  /** Servers read app configs and releases: they hold the key those are sealed with (base64). */
  config_key?: string;
  cert: string;
  /** The machine's credential for `/internal/` calls. */
  credential: string;
  etcd: {
    /** Client URLs of the voters. */
    endpoints: string[];
    /** The member this server is to start, added as a learner, or null past the voters wanted. */
    member: { id: string; name: string; initial_cluster: string } | null;
  };
  /** The servers' API URLs (where an agent goes when the one it joined through is gone). */
  servers: string[];
  /** The cluster's git-over-SSH host key, so every server answers with one identity. */
  ssh_host_key?: string;
  /** Apps are served at <app>.<domain>: what a machine's router needs. */
  domain: string;
}

export interface JoinServerOptions {
  host: string;
  port: number;
  /** This server's leaf (its advertise address and 127.0.0.1 as SANs) and the CA to sign with. */
  tls: CertKeyPair;
  ca: CertKeyPair;
  /** The root client credentials for etcd membership changes. */
  etcd: { endpoints: () => string[]; tls: ClientTls };
  verifyToken(token: string): Promise<boolean>;
  issueCredential(machine: string, name: string, role: JoinRole): Promise<string>;
  servers(): Promise<string[]>;
  sshHostKey(): string | undefined;
  /** The cluster's config key (base64), for joining servers. */
  configKey(): string | undefined;
  domain: string;
  log: Logger;
  /** etcd voters the cluster keeps (3 or 5; read at each join). */
  voters(): Promise<number>;
}

const STATUS = { invalid_params: 422, unauthorized: 401, conflict: 409, etcd_busy: 503 };
const ID = /^[A-Za-z0-9][A-Za-z0-9_.-]{0,127}$/;
const NAME = /^[A-Za-z0-9][A-Za-z0-9_.-]{0,62}$/;

function check(body: unknown): JoinRequest {
  const b = (body ?? {}) as Record<string, unknown>;
  if (typeof b.token !== 'string' || b.token.length > 512) throw unauthorized('Invalid cluster token.');
  if (b.role !== 'server' && b.role !== 'agent') throw invalid('role must be server or agent.');
  if (typeof b.machine !== 'string' || !ID.test(b.machine)) throw invalid('machine must be the machine id: 1-128 letters, digits, ".", "_" or "-".');
  if (typeof b.name !== 'string' || !NAME.test(b.name)) throw invalid('name must be 1-63 letters, digits, ".", "_" or "-".');
  if (typeof b.address !== 'string' || !/^\d{1,3}(\.\d{1,3}){3}$/.test(b.address)) throw invalid('address must be an IPv4 address.');
  if (typeof b.public_key !== 'string' || b.public_key.length > 4096 || !b.public_key.includes('PUBLIC KEY')) throw invalid('public_key must be a PEM public key.');
  const peer = b.etcd_peer_port;
  if (peer !== undefined && (typeof peer !== 'number' || !Number.isInteger(peer) || peer < 1 || peer > 65535)) throw invalid('etcd_peer_port must be a port.');
  return b as unknown as JoinRequest;
}

/**
 * The join listener every server runs (k3s's supervisor port): TLS with a leaf of the cluster CA.
 * `GET /cacerts` hands out the CA certificate to anyone (the joiner hashes it and compares with its
 * token before trusting this connection with anything); `POST /join` takes the token and the
 * joiner's public key and answers with its leaf, its credential and, for a server, the CA key and
 * the etcd member it is to start (as a learner; it promotes itself once caught up).
 */
export class JoinServer {
  private app: FastifyInstance | undefined;
  private joining: Promise<unknown> = Promise.resolve();

  constructor(private readonly o: JoinServerOptions) {}

  get url(): string {
    return `https://${this.o.host}:${this.o.port}`;
  }

  async start(): Promise<void> {
    const o = this.o;
    const app = Fastify({ https: { key: o.tls.key, cert: o.tls.cert }, bodyLimit: 64 * 1024 });
    this.app = app;
    app.setErrorHandler((err, _req, reply) => {
      const code = err instanceof BerthError ? err.code : (err as { statusCode?: number }).statusCode === 400 ? 'invalid_params' : 'internal_server_error';
      const status = (STATUS as Record<string, number>)[code] ?? 500;
      if (status === 500) o.log.error({ err: errorMessage(err) }, 'join failed');
      // The joiner holds the token: what went wrong (etcd's words) helps it more than a log it cannot read.
      void reply.code(status).send({ id: code, message: status === 500 ? `The join failed on this server: ${errorMessage(err)}` : errorMessage(err) });
    });
    app.get('/cacerts', async (_req, reply) => reply.type('application/x-pem-file').send(o.ca.cert));
    app.post('/join', async (req) => {
      const r = check(req.body);
      if (!(await o.verifyToken(r.token))) throw unauthorized('Invalid cluster token.');
      // One join at a time on this server: member changes are read-decide-write.
      const answer = this.joining.then(() => this.answer(r));
      this.joining = answer.catch(() => undefined);
      return answer;
    });
    await app.listen({ host: o.host, port: o.port });
  }

  private async answer(r: JoinRequest): Promise<JoinAnswer> {
    const o = this.o;
    const server = r.role === 'server';
    const cert = await signLeaf(o.ca, r.public_key, {
      commonName: server ? 'root' : 'berth-agent',
      organization: server ? 'berth-servers' : 'berth-agents',
      ips: [r.address, ...(server ? ['127.0.0.1'] : [])],
      usages: server ? ['server', 'client'] : ['client'],
    });
    const credential = await o.issueCredential(r.machine, r.name, r.role);
    const members = new EtcdMembers(o.etcd.endpoints(), o.etcd.tls);
    try {
      const member = server && r.etcd_peer_port ? await this.addMember(members, r) : null;
      const list = await members.list();
      const endpoints = list.filter((m) => !m.learner).flatMap((m) => m.clientUrls);
      o.log.info({ machine: r.machine, name: r.name, role: r.role, etcd_member: member?.id ?? null }, 'machine joined');
      const ssh = server ? o.sshHostKey() : undefined;
      return {
        ca_cert: o.ca.cert,
        ...(server ? { ca_key: o.ca.key, ...(o.configKey() ? { config_key: o.configKey() } : {}) } : {}),
        cert,
        credential,
        etcd: { endpoints, member },
        servers: await o.servers(),
        domain: o.domain,
        ...(ssh ? { ssh_host_key: ssh } : {}),
      };
    } finally {
      members.close();
    }
  }

  /**
   * A learner for the joining server while the cluster has fewer voters than it wants. A member
   * already at this peer URL (the same machine back with an empty data dir, or its own join that
   * died half way) is removed first; another machine's name is refused, and another machine's
   * join under way (a learner not started yet) makes this one wait.
   */
  private async addMember(members: EtcdMembers, r: JoinRequest): Promise<JoinAnswer['etcd']['member']> {
    const peerUrl = `https://${r.address}:${r.etcd_peer_port}`;
    let list = await members.list();
    const clash = list.find((m) => m.name === r.name && !m.peerUrls.includes(peerUrl));
    if (clash) throw conflict(`An etcd member named ${r.name} already runs at ${clash.peerUrls.join(', ')}; give this server another --name, or remove that one with berth nodes:remove ${r.name}.`);
    // A nameless learner elsewhere is another join under way (its member starts seconds after its
    // answer): leave it, and ask this joiner to come back.
    if (list.some((m) => m.name === '' && !m.peerUrls.includes(peerUrl))) throw new BerthError('etcd_busy', 'Another server is joining etcd right now; try again in a few seconds.');
    for (const m of list) {
      if (m.peerUrls.includes(peerUrl)) {
        this.o.log.warn({ member: m.id, name: m.name, peer: m.peerUrls }, 'removing a stale etcd member before a join');
        await members.remove(m.id);
      }
    }
    list = await members.list();
    if (list.length >= Math.min(await this.o.voters(), MAX_VOTERS)) return null;
    let added: { id: string; members: Member[] };
    try {
      added = await members.addLearner(peerUrl);
    } catch (err) {
      // One learner at a time; and etcd refuses a change while not every voter is connected yet
      // (the previous joiner just promoted): both pass in seconds.
      if (/too many learner|unhealthy cluster|not enough started members/i.test(errorMessage(err))) throw new BerthError('etcd_busy', `etcd cannot take another member right now (${errorMessage(err)}); try again in a few seconds.`);
      throw err;
    }
    return { id: added.id, name: r.name, initial_cluster: initialCluster(added.members, { id: added.id, name: r.name, peerUrl }) };
  }

  async close(): Promise<void> {
    await this.app?.close();
  }
}
