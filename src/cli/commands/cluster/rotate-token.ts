import { clientFor } from '../../api-client.js';
import type { Register } from '../../command.js';
import { json, step } from '../../output.js';

export const register: Register = (program, ctx) => {
  program
    .command('cluster:rotate-token')
    .description('replace the cluster join token: the old one stops admitting joins; joined machines keep working (admins)')
    .option('--json', 'output in json format')
    .action(async (opts: { json?: boolean }) => {
      const r = await step(ctx, 'Rotating the cluster token', () => clientFor(ctx).request<{ token: string; token_file: string }>('POST', '/berth/cluster/token'));
      if (opts.json) return json(ctx, r);
      ctx.out(`New cluster token (also in ${r.token_file} on the server that answered):\n  ${r.token}`);
    });
};
