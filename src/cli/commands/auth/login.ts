import { chmodSync, mkdirSync, writeFileSync } from 'node:fs';
import { dirname } from 'node:path';
import password from '@inquirer/password';
import { ApiClient, apiUrl, netrcFor, netrcMachine } from '../../api-client.js';
import type { Account } from '../../api-types.js';
import type { Register } from '../../command.js';
import { configFile } from '../../context.js';
import { credentialUrl, installGitCa, installGitHelper, removeGitCa } from '../../credentials.js';
import { removePin, savePin, vouchedCertificate } from '../../trust.js';
import { invalid } from '../../../domain/errors.js';
import { step } from '../../output.js';

interface LoginFlags {
  apiUrl?: string;
  token?: string;
  fingerprint?: string;
}

/**
 * `berth login`: checks an API token, keeps it in ~/.netrc under the API's host:port (as the
 * heroku CLI keys its API host), and makes git pushes to that URL use it (credentials.ts). An
 * https API whose certificate no CA vouches for is trusted once the user has (trust.ts): the
 * certificate is pinned for the CLI and for git, for that URL only.
 */
export const register: Register = (program, ctx) => {
  program
    .command('login')
    .description('log in with an API token (saved to ~/.netrc; git pushes to the platform use it)')
    .option('--api-url <url>', 'the Berth API to log in to (default: the last one, else https://127.0.0.1:5000)')
    .option('--token <token>', 'API token (otherwise prompted for, or read from stdin)')
    .option('--fingerprint <sha256>', "SHA-256 fingerprint of the API's certificate, as berth up prints it: trusts a self-signed certificate without asking")
    .action(async (opts: LoginFlags) => {
      const url = (opts.apiUrl ?? apiUrl(ctx)).replace(/\/+$/, '');
      if (!URL.canParse(url) || !/^https?:$/.test(new URL(url).protocol)) throw invalid(`--api-url must be an http(s) URL like https://10.0.0.1:5000, got "${url}".`);
      const secure = new URL(url).protocol === 'https:';
      if (opts.fingerprint !== undefined && !secure) throw invalid(`--fingerprint is for an https API; ${url} is plain HTTP.`);
      let token = opts.token ?? ctx.env.BERTH_LOGIN_TOKEN;
      if (!token) {
        if (!ctx.interactive) throw invalid('No token given: pass --token, or run berth login at a terminal.');
        token = await password({ message: `API token for ${url}`, mask: '*' });
      }
      token = token.trim();
      if (/[\s#]/.test(token)) throw invalid('An API token has no spaces or "#" (it could not be kept in ~/.netrc).');
      // Before the token goes anywhere: the certificate it would be sent under.
      const pem = secure ? await vouchedCertificate(ctx, url, opts.fingerprint) : undefined;
      const account = await step(ctx, `Logging in to ${url}`, () => new ApiClient(url, token, pem).get<Account>('/account'));
      const netrc = netrcFor(ctx);
      netrc.machines[netrcMachine(url)] = { login: account.email, password: token };
      netrc.saveSync();
      // netrc-parser sets 0600 only on a file it creates; an older, readable one now holds a token.
      chmodSync(netrc.file, 0o600);
      // The pin is found by the URL's host:port; ca_file records it beside the URL for a reader.
      const caFile = pem ? savePin(ctx, url, pem) : undefined;
      if (!pem) removePin(ctx, url);
      mkdirSync(dirname(configFile(ctx)), { recursive: true });
      writeFileSync(configFile(ctx), `${JSON.stringify({ api_url: url, ...(caFile ? { ca_file: caFile } : {}) }, null, 2)}\n`);
      ctx.out(`Logged in as ${account.email}`);
      if (caFile) {
        const failed = await installGitCa(ctx, url, caFile);
        if (failed) ctx.err(`Git will not trust ${credentialUrl(url)}: http.sslCAInfo could not be configured (${failed}); use GIT_SSL_CAINFO=${caFile}.`);
      } else await removeGitCa(ctx, url);
      // In-process (tests, embedding) there is no command line for git to call back.
      if (!ctx.self) return;
      const failed = await installGitHelper(ctx, url, ctx.self);
      if (failed) ctx.err(`Git pushes to ${credentialUrl(url)} will ask for a password: the credential helper could not be configured (${failed}).`);
    });
};
