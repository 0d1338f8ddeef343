import { clientFor } from '../../api-client.js';
import type { SshKey } from '../../api-types.js';
import type { Register } from '../../command.js';
import { notFound } from '../../../domain/errors.js';
import { step } from '../../output.js';

export const register: Register = (program, ctx) => {
  program
    .command('keys:remove <key>')
    .description('remove an SSH key (by comment, fingerprint or id)')
    .action(async (key: string) => {
      const api = clientFor(ctx);
      const match = (await api.get<SshKey[]>('/account/keys')).filter((k) => k.comment === key || k.fingerprint === key || k.id === key);
      if (match.length === 0) throw notFound(`SSH key ${key}`);
      await step(ctx, `Removing ${key} SSH key`, async () => {
        for (const k of match) await api.request('DELETE', `/account/keys/${encodeURIComponent(k.id)}`);
      });
    });
};
