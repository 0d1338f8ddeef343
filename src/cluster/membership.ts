import { Etcd3 } from 'etcd3';
import { BerthError, errorMessage } from '../domain/errors.js';

export interface ClientTls {
  ca: string;
  cert: string;
  key: string;
}

export interface Member {
  /** etcd's member id, as a decimal string (a uint64). */
  id: string;
  /** Empty until the member has started. */
  name: string;
  peerUrls: string[];
  clientUrls: string[];
  learner: boolean;
}

export interface MemberHealth {
  id: string;
  reachable: boolean;
  leader: boolean;
  dbSize?: number;
  dbSizeInUse?: number;
  error?: string;
}

/** Voters by default, and at most (odd counts: 3 tolerates one lost member, 5 two). */
export const DEFAULT_VOTERS = 3;
export const MAX_VOTERS = 5;

function client(endpoints: string[], tls: ClientTls): Etcd3 {
  return new Etcd3({
    hosts: endpoints,
    credentials: { rootCertificate: Buffer.from(tls.ca), certChain: Buffer.from(tls.cert), privateKey: Buffer.from(tls.key) },
    dialTimeout: 3000,
    defaultCallOptions: () => ({ deadline: Date.now() + 5000 }),
  });
}

/**
 * etcd's membership through its cluster and maintenance RPCs, as a server with the root client
 * certificate calls them: list, add as learner, promote, remove, and each member's status.
 */
export class EtcdMembers {
  private readonly etcd: Etcd3;

  constructor(
    endpoints: string[],
    private readonly tls: ClientTls,
  ) {
    this.etcd = client(endpoints, tls);
  }

  async list(): Promise<Member[]> {
    const r = await this.etcd.cluster.memberList({ linearizable: true } as never);
    return (r.members ?? []).map((m) => ({ id: String(m.ID), name: m.name, peerUrls: m.peerURLs, clientUrls: m.clientURLs, learner: Boolean(m.isLearner) }));
  }

  /**
   * A read only a quorum can answer (etcd 3.4's member list answers from the local member, quorum
   * or not): a linearizable range of one key.
   */
  async quorumRead(): Promise<void> {
    await this.etcd.get('\0').string();
  }

  /** Adds a learner at this peer URL; etcd 3.4 takes one learner at a time (`too many learner members`). */
  async addLearner(peerUrl: string): Promise<{ id: string; members: Member[] }> {
    const r = await this.etcd.cluster.memberAdd({ peerURLs: [peerUrl], isLearner: true });
    return { id: String(r.member.ID), members: (r.members ?? []).map((m) => ({ id: String(m.ID), name: m.name, peerUrls: m.peerURLs, clientUrls: m.clientURLs, learner: Boolean(m.isLearner) })) };
  }

  /**
   * Promotes a learner to voter once it has caught up with the leader: etcd refuses until then,
   * so this retries for up to `timeoutMs`.
   */
  async promote(id: string, timeoutMs = 60_000): Promise<void> {
    const deadline = Date.now() + timeoutMs;
    for (let wait = 200; ; wait = Math.min(wait * 2, 2000)) {
      try {
        await this.etcd.cluster.memberPromote({ ID: id });
        return;
      } catch (err) {
        const msg = errorMessage(err);
        // Already a voter (a retried promote that had in fact gone through).
        if (/not a learner/i.test(msg)) return;
        if (Date.now() > deadline) throw new BerthError('etcd_promote_failed', `etcd member ${id} was not promoted to voter within ${timeoutMs / 1000} s: ${msg}`, { cause: err });
      }
      await new Promise((r) => setTimeout(r, wait));
    }
  }

  async remove(id: string): Promise<void> {
    await this.etcd.cluster.memberRemove({ ID: id });
  }

  /** Each member's status from its own client URL (a member that does not answer is unreachable). */
  async health(members: Member[]): Promise<MemberHealth[]> {
    return Promise.all(
      members.map(async (m): Promise<MemberHealth> => {
        if (m.clientUrls.length === 0) return { id: m.id, reachable: false, leader: false, error: 'not started' };
        const one = client(m.clientUrls, this.tls);
        try {
          const s = await one.maintenance.status();
          return { id: m.id, reachable: true, leader: String(s.leader) === m.id, dbSize: Number(s.dbSize), dbSizeInUse: Number(s.dbSizeInUse) };
        } catch (err) {
          return { id: m.id, reachable: false, leader: false, error: errorMessage(err) };
        } finally {
          one.close();
        }
      }),
    );
  }

  /** Defragments one member (blocking it while it runs), by its client URL. */
  async defragment(clientUrl: string): Promise<void> {
    const one = client([clientUrl], this.tls);
    try {
      await one.maintenance.defragment({ deadline: Date.now() + 60_000 } as never);
    } finally {
      one.close();
    }
  }

  close(): void {
    this.etcd.close();
  }
}

/** Whether removing this member keeps a quorum of the voters that answer now. */
export function removalKeepsQuorum(members: Member[], health: MemberHealth[], id: string): boolean {
  const voters = members.filter((m) => !m.learner);
  const target = members.find((m) => m.id === id);
  if (!target || target.learner) return true;
  const live = (list: Member[]): number => list.filter((m) => health.find((h) => h.id === m.id)?.reachable).length;
  // etcd must commit the removal with the voters it has now, and run with those left after.
  const now = live(voters) >= Math.floor(voters.length / 2) + 1;
  const after = voters.filter((m) => m.id !== id);
  return now && live(after) >= Math.floor(after.length / 2) + 1;
}

/** `name=peer,...` for a member starting with `--initial-cluster-state existing`. */
export function initialCluster(members: Member[], self: { id: string; name: string; peerUrl: string }): string {
  return members
    .flatMap((m) => (m.id === self.id ? [`${self.name}=${self.peerUrl}`] : m.name ? m.peerUrls.map((u) => `${m.name}=${u}`) : []))
    .join(',');
}
