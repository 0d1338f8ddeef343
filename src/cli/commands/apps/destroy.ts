import { clientFor } from '../../api-client.js';
import { appName } from '../../app-name.js';
import { appFlags, enc, type AppFlags, type Register } from '../../command.js';
import { invalid } from '../../../domain/errors.js';
import { step } from '../../output.js';

export const register: Register = (program, ctx) => {
  appFlags(program.command('apps:destroy [app]').alias('destroy').description('permanently destroy an app'))
    .option('-c, --confirm <app>', 'the app name, to confirm')
    .action(async (positional: string | undefined, opts: AppFlags & { confirm?: string }) => {
      const name = positional ?? appName(ctx, opts);
      if (opts.confirm !== name) throw invalid(`This destroys ${name} and its releases permanently. To proceed, run again with --confirm ${name}.`);
      await step(ctx, `Destroying ${name}`, () => clientFor(ctx).request('DELETE', `/apps/${enc(name)}`));
    });
};
