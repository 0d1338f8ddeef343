import { clientFor } from '../../api-client.js';
import type { Account } from '../../api-types.js';
import type { Register } from '../../command.js';

export const register: Register = (program, ctx) => {
  program
    .command('whoami')
    .alias('auth:whoami')
    .description('display the current logged in user')
    .action(async () => {
      ctx.out((await clientFor(ctx).get<Account>('/account')).email);
    });
};
