import { existsSync, readFileSync } from 'node:fs';
import { join } from 'node:path';
import { clientFor } from '../../api-client.js';
import type { Register } from '../../command.js';
import { invalid } from '../../../domain/errors.js';
import { step } from '../../output.js';

/** `berth keys:add [FILE]`: without FILE, the usual ~/.ssh public key. */
export const register: Register = (program, ctx) => {
  program
    .command('keys:add [file]')
    .description('add an SSH key for a user')
    .action(async (file: string | undefined) => {
      const candidates = file ? [file] : ['id_ed25519.pub', 'id_ecdsa.pub', 'id_rsa.pub'].map((f) => join(ctx.home, '.ssh', f));
      const path = candidates.map((c) => (c.startsWith('/') ? c : join(ctx.cwd, c))).find((c) => existsSync(c));
      if (!path) throw invalid(file ? `No such file: ${file}` : 'No SSH public key found in ~/.ssh; give the file: berth keys:add PATH.pub');
      await step(ctx, `Uploading ${path} SSH key`, () => clientFor(ctx).request('POST', '/account/keys', { public_key: readFileSync(path, 'utf8') }));
    });
};
