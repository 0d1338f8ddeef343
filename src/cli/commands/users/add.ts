import { clientFor } from '../../api-client.js';
import type { Register } from '../../command.js';
import { json, step } from '../../output.js';

/** `berth users:add EMAIL`: an admin makes an account and hands its token over (shown once). */
export const register: Register = (program, ctx) => {
  program
    .command('users:add <email>')
    .description('add a user and print their API token (admins)')
    .option('--admin', 'make the user an admin')
    .option('--json', 'output in json format')
    .action(async (email: string, opts: { admin?: boolean; json?: boolean }) => {
      const user = await step(ctx, `Adding ${email}`, () => clientFor(ctx).request<{ email: string; token: string }>('POST', '/berth/users', { email, admin: opts.admin ?? false }));
      if (opts.json) return json(ctx, user);
      ctx.out(`API token for ${user.email} (shown once):\n  ${user.token}`);
    });
};
