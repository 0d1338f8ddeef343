import { clientFor } from '../../api-client.js';
import type { Register } from '../../command.js';

export const register: Register = (program, ctx) => {
  program
    .command('users:registration [state]')
    .description('show, open or close self-service sign-up (admins): open | closed')
    .action(async (state: string | undefined) => {
      const api = clientFor(ctx);
      const body = state === undefined ? undefined : { open_registration: state === 'open' };
      if (state !== undefined && state !== 'open' && state !== 'closed') throw new Error('State must be "open" or "closed".');
      const r = body ? await api.request<{ open_registration: boolean }>('PATCH', '/berth/settings', body) : await api.get<{ open_registration: boolean }>('/berth/settings');
      ctx.out(`Registration is ${r.open_registration ? 'open' : 'closed'}.`);
    });
};
