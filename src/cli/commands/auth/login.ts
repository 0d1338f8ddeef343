import { mkdirSync, writeFileSync } from 'node:fs';
import { dirname } from 'node:path';
import password from '@inquirer/password';
import { ApiClient, apiUrl, netrcFor, netrcMachine } from '../../api-client.js';
import type { Account } from '../../api-types.js';
import type { Register } from '../../command.js';
import { configFile } from '../../context.js';
import { invalid } from '../../../domain/errors.js';
import { step } from '../../output.js';

/** `berth login`: checks an API token and keeps it in ~/.netrc for the API host, as heroku does. */
export const register: Register = (program, ctx) => {
  program
    .command('login')
    .description('log in with an API token (saved to ~/.netrc)')
    .option('--api-url <url>', 'the Berth API to log in to')
    .option('--token <token>', 'API token (otherwise prompted for, or read from stdin)')
    .action(async (opts: { apiUrl?: string; token?: string }) => {
      const url = (opts.apiUrl ?? apiUrl(ctx)).replace(/\/+$/, '');
      let token = opts.token ?? ctx.env.BERTH_LOGIN_TOKEN;
      if (!token) {
        if (!ctx.interactive) throw invalid('No token given: pass --token, or run berth login at a terminal.');
        token = await password({ message: `API token for ${url}`, mask: '*' });
      }
      const account = await step(ctx, `Logging in to ${url}`, () => new ApiClient(url, token.trim()).get<Account>('/account'));
      const netrc = netrcFor(ctx);
      netrc.machines[netrcMachine(url)] = { login: account.email, password: token.trim() };
      netrc.saveSync();
      mkdirSync(dirname(configFile(ctx)), { recursive: true });
      writeFileSync(configFile(ctx), `${JSON.stringify({ api_url: url }, null, 2)}\n`);
      ctx.out(`Logged in as ${account.email}`);
    });
};
