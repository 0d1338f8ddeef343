import { chmodSync, mkdirSync, writeFileSync } from 'node:fs';
import { dirname } from 'node:path';
import password from '@inquirer/password';
import { ApiClient, apiUrl, netrcFor, netrcMachine } from '../../api-client.js';
import type { Account } from '../../api-types.js';
import type { Register } from '../../command.js';
import { configFile } from '../../context.js';
import { credentialUrl, installGitHelper } from '../../credentials.js';
import { invalid } from '../../../domain/errors.js';
import { step } from '../../output.js';

/**
 * `berth login`: checks an API token, keeps it in ~/.netrc under the API's host:port (as the
 * heroku CLI keys its API host), and makes git pushes to that URL use it (credentials.ts).
 */
export const register: Register = (program, ctx) => {
  program
    .command('login')
    .description('log in with an API token (saved to ~/.netrc; git pushes to the platform use it)')
    .option('--api-url <url>', 'the Berth API to log in to')
    .option('--token <token>', 'API token (otherwise prompted for, or read from stdin)')
    .action(async (opts: { apiUrl?: string; token?: string }) => {
      const url = (opts.apiUrl ?? apiUrl(ctx)).replace(/\/+$/, '');
      if (!URL.canParse(url) || !/^https?:$/.test(new URL(url).protocol)) throw invalid(`--api-url must be an http(s) URL like http://10.0.0.1:5000, got "${url}".`);
      let token = opts.token ?? ctx.env.BERTH_LOGIN_TOKEN;
      if (!token) {
        if (!ctx.interactive) throw invalid('No token given: pass --token, or run berth login at a terminal.');
        token = await password({ message: `API token for ${url}`, mask: '*' });
      }
      token = token.trim();
      if (/[\s#]/.test(token)) throw invalid('An API token has no spaces or "#" (it could not be kept in ~/.netrc).');
      const account = await step(ctx, `Logging in to ${url}`, () => new ApiClient(url, token).get<Account>('/account'));
      const netrc = netrcFor(ctx);
      netrc.machines[netrcMachine(url)] = { login: account.email, password: token };
      netrc.saveSync();
      // netrc-parser sets 0600 only on a file it creates; an older, readable one now holds a token.
      chmodSync(netrc.file, 0o600);
      mkdirSync(dirname(configFile(ctx)), { recursive: true });
      writeFileSync(configFile(ctx), `${JSON.stringify({ api_url: url }, null, 2)}\n`);
      ctx.out(`Logged in as ${account.email}`);
      // In-process (tests, embedding) there is no command line for git to call back.
      if (!ctx.self) return;
      const failed = await installGitHelper(ctx, url, ctx.self);
      if (failed) ctx.err(`Git pushes to ${credentialUrl(url)} will ask for a password: the credential helper could not be configured (${failed}).`);
    });
};
