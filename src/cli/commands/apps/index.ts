import { clientFor } from '../../api-client.js';
import type { Account, App } from '../../api-types.js';
import type { Register } from '../../command.js';
import { header, json } from '../../output.js';

export const register: Register = (program, ctx) => {
  program
    .command('apps')
    .description('list your apps')
    .option('-A, --all', 'every app on the platform (admins)')
    .option('--json', 'output in json format')
    .action(async (opts: { all?: boolean; json?: boolean }) => {
      const api = clientFor(ctx);
      const [apps, account] = await Promise.all([api.get<App[]>(opts.all ? '/apps' : '/users/~/apps', { range: 'name ..; max=1000' }), api.get<Account>('/account')]);
      if (opts.json) return json(ctx, apps);
      if (apps.length === 0) return ctx.out('You have no apps.');
      const mine = apps.filter((a) => a.owner.email === account.email);
      const others = apps.filter((a) => a.owner.email !== account.email);
      if (mine.length) ctx.out(`${header(`${account.email} Apps`)}\n${mine.map((a) => a.name).join('\n')}\n`);
      if (others.length) ctx.out(`${header('Collaborated Apps')}\n${others.map((a) => `${a.name}  ${a.owner.email}`).join('\n')}`);
    });
};
