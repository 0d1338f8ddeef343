import { apiUrl, netrcFor, netrcMachine } from '../../api-client.js';
import type { Register } from '../../command.js';
import { removeGitHelper } from '../../credentials.js';

export const register: Register = (program, ctx) => {
  program
    .command('logout')
    .description('forget the API token saved for the current API (and its git credential helper)')
    .action(async () => {
      const url = apiUrl(ctx);
      const netrc = netrcFor(ctx);
      delete netrc.machines[netrcMachine(url)];
      netrc.saveSync();
      await removeGitHelper(ctx, url);
      ctx.err('Logging out... done');
    });
};
