import { clientFor } from '../../api-client.js';
import { appName } from '../../app-name.js';
import { appFlags, enc, type AppFlags, type Register } from '../../command.js';
import { step } from '../../output.js';

export const register: Register = (program, ctx) => {
  appFlags(program.command('access:add <email>').description('add a collaborator to an app')).action(async (email: string, opts: AppFlags) => {
    const name = appName(ctx, opts);
    await step(ctx, `Adding ${email} access to the app ${name}`, () => clientFor(ctx).request('POST', `/apps/${enc(name)}/collaborators`, { user: email }));
  });
};
