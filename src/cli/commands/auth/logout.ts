import { existsSync, readFileSync, writeFileSync } from 'node:fs';
import { apiUrl, netrcFor, netrcMachine } from '../../api-client.js';
import type { Register } from '../../command.js';
import { configFile } from '../../context.js';
import { removeGitCa, removeGitHelper } from '../../credentials.js';
import { removePin } from '../../trust.js';

export const register: Register = (program, ctx) => {
  program
    .command('logout')
    .description('forget the API token saved for the current API (and its git credential helper and pinned certificate)')
    .action(async () => {
      const url = apiUrl(ctx);
      const netrc = netrcFor(ctx);
      delete netrc.machines[netrcMachine(url)];
      netrc.saveSync();
      await removeGitHelper(ctx, url);
      await removeGitCa(ctx, url);
      removePin(ctx, url);
      const file = configFile(ctx);
      if (existsSync(file)) {
        const saved = JSON.parse(readFileSync(file, 'utf8')) as { api_url?: string; ca_file?: string };
        delete saved.ca_file;
        writeFileSync(file, `${JSON.stringify(saved, null, 2)}\n`);
      }
      ctx.err('Logging out... done');
    });
};
