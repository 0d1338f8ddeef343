import { ApiError, clientFor } from '../../api-client.js';
import type { Register } from '../../command.js';
import { header, json, table } from '../../output.js';

interface Node {
  id: string;
  name: string;
  address: string;
  state: string;
  /** server: runs the control plane; agent: dynos and a router only. */
  role: 'server' | 'agent';
  /** This machine's etcd member's name, or null. */
  etcd_member: string | null;
  /** The store revision its router has applied (null: no router reports from it). */
  router_revision: number | null;
  tags: Record<string, string>;
  capacity: { memoryBytes: number; cpus: number };
  units: number;
  load: number | null;
  /** Its overlay subnet and the cluster's backend; null for a machine without a network. */
  subnet: string | null;
  backend: string | null;
}

export interface EtcdMember {
  id: string;
  name: string;
  peer_urls: string[];
  learner: boolean;
  reachable: boolean;
  leader: boolean;
  error: string | null;
}

/** etcd's members, from a server of a secured cluster; none on the one-machine default (no such route). */
async function members(ctx: Parameters<Register>[1]): Promise<EtcdMember[] | undefined> {
  try {
    return await clientFor(ctx).get<EtcdMember[]>('/berth/cluster/members');
  } catch (err) {
    if (err instanceof ApiError && err.status === 404) return undefined;
    throw err;
  }
}

function memberState(m: EtcdMember | undefined): string {
  if (!m) return '-';
  const kind = m.leader ? 'leader' : m.learner ? 'learner' : 'voter';
  return m.reachable ? kind : `${kind}, unreachable`;
}

export const register: Register = (program, ctx) => {
  program
    .command('nodes')
    .description('list the machines of the cluster: role, etcd member, router, subnet (admins)')
    .option('--json', 'output in json format')
    .action(async (opts: { json?: boolean }) => {
      const [nodes, etcd] = await Promise.all([clientFor(ctx).get<Node[]>('/berth/machines'), members(ctx)]);
      if (opts.json) return json(ctx, etcd ? nodes.map((n) => ({ ...n, etcd: etcd.find((m) => m.name === n.etcd_member) ?? null })) : nodes);
      const rows = nodes.map((n) => [
        n.name,
        n.role ?? 'agent',
        n.state,
        n.address,
        memberState(etcd?.find((m) => m.name === n.etcd_member)),
        n.router_revision === null || n.router_revision === undefined ? '-' : `@${n.router_revision}`,
        n.subnet ?? '-',
        n.backend ?? '-',
        Object.entries(n.tags).map(([k, v]) => `${k}=${v}`).join(',') || '-',
        `${(n.capacity.memoryBytes / 1024 ** 3).toFixed(1)}G/${n.capacity.cpus}cpu`,
        n.load === null ? '-' : `${Math.round(n.load * 100)}% mem`,
        String(n.units),
      ]);
      ctx.out(`${header('Nodes')}\n${table(['name', 'role', 'state', 'address', 'etcd', 'router', 'subnet', 'backend', 'tags', 'capacity', 'load', 'units'], rows)}`);
      // A member whose machine no longer registers: a dead server, to be removed with nodes:remove.
      const orphans = (etcd ?? []).filter((m) => !nodes.some((n) => n.etcd_member === m.name));
      if (orphans.length > 0) {
        ctx.out(`\n${header('etcd members without a live machine')}\n${table(['name', 'id', 'etcd', 'peer'], orphans.map((m) => [m.name || '(not started)', m.id, memberState(m), m.peer_urls.join(',')]))}`);
      }
    });
};
