import { clientFor } from '../../api-client.js';
import { appName } from '../../app-name.js';
import { appFlags, enc, type AppFlags, type Register } from '../../command.js';
import { step } from '../../output.js';

export const register: Register = (program, ctx) => {
  appFlags(program.command('access:remove <email>').description('remove a collaborator from an app')).action(async (email: string, opts: AppFlags) => {
    const name = appName(ctx, opts);
    await step(ctx, `Removing ${email} access from the app ${name}`, () => clientFor(ctx).request('DELETE', `/apps/${enc(name)}/collaborators/${enc(email)}`));
  });
};
