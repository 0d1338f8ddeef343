import { clientFor } from '../../api-client.js';
import type { Register } from '../../command.js';
import { header, json, table } from '../../output.js';

interface Node {
  id: string;
  name: string;
  address: string;
  state: string;
  tags: Record<string, string>;
  capacity: { memoryBytes: number; cpus: number };
  units: number;
  load: number | null;
  /** Its overlay subnet and the cluster's backend; null for a machine without a network. */
  subnet: string | null;
  backend: string | null;
}

export const register: Register = (program, ctx) => {
  program
    .command('nodes')
    .description('list the machines running dynos (admins)')
    .option('--json', 'output in json format')
    .action(async (opts: { json?: boolean }) => {
      const nodes = await clientFor(ctx).get<Node[]>('/berth/machines');
      if (opts.json) return json(ctx, nodes);
      const rows = nodes.map((n) => [n.name, n.id, n.state, n.address, n.subnet ?? '-', n.backend ?? '-', Object.entries(n.tags).map(([k, v]) => `${k}=${v}`).join(',') || '-', `${(n.capacity.memoryBytes / 1024 ** 3).toFixed(1)}G/${n.capacity.cpus}cpu`, n.load === null ? '-' : `${Math.round(n.load * 100)}% mem`, String(n.units)]);
      ctx.out(`${header('Nodes')}\n${table(['name', 'id', 'state', 'address', 'subnet', 'backend', 'tags', 'capacity', 'load', 'units'], rows)}`);
    });
};
