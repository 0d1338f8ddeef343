import { clientFor } from '../../api-client.js';
import type { Account } from '../../api-types.js';
import type { Register } from '../../command.js';
import { header, json, table } from '../../output.js';

export const register: Register = (program, ctx) => {
  program
    .command('users')
    .description('list the users of this platform (admins)')
    .option('--json', 'output in json format')
    .action(async (opts: { json?: boolean }) => {
      const users = await clientFor(ctx).get<(Account & { created_at: string })[]>('/berth/users');
      if (opts.json) return json(ctx, users);
      ctx.out(`${header('Users')}\n${table(['Email', 'Role', 'Created'], users.map((u) => [u.email, u.berth_admin ? 'admin' : 'user', u.created_at]))}`);
    });
};
