import { clientFor } from '../../api-client.js';
import type { Account, SshKey } from '../../api-types.js';
import type { Register } from '../../command.js';
import { header, json } from '../../output.js';

export const register: Register = (program, ctx) => {
  program
    .command('keys')
    .description('display your SSH keys')
    .option('-l, --long', 'display full SSH keys')
    .option('--json', 'output in json format')
    .action(async (opts: { long?: boolean; json?: boolean }) => {
      const api = clientFor(ctx);
      const [keys, account] = await Promise.all([api.get<SshKey[]>('/account/keys'), api.get<Account>('/account')]);
      if (opts.json) return json(ctx, keys);
      if (keys.length === 0) return ctx.err('You have no SSH keys.');
      const short = (k: SshKey): string => {
        const [type, body = '', comment = ''] = k.public_key.split(/\s+/);
        return `${type} ${body.slice(0, 10)}...${body.slice(-10)} ${comment}`.trim();
      };
      ctx.out(`${header(`${account.email} keys`)}\n${keys.map((k) => (opts.long ? k.public_key : short(k))).join('\n')}`);
    });
};
