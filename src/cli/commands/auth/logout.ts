import { apiUrl, netrcFor, netrcMachine } from '../../api-client.js';
import type { Register } from '../../command.js';

export const register: Register = (program, ctx) => {
  program
    .command('logout')
    .description('forget the API token saved for the current API')
    .action(() => {
      const netrc = netrcFor(ctx);
      delete netrc.machines[netrcMachine(apiUrl(ctx))];
      netrc.saveSync();
      ctx.err('Logging out... done');
    });
};
