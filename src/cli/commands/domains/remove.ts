import { clientFor } from '../../api-client.js';
import { appName } from '../../app-name.js';
import { appFlags, enc, type AppFlags, type Register } from '../../command.js';
import { step } from '../../output.js';

export const register: Register = (program, ctx) => {
  appFlags(program.command('domains:remove <hostname>').description('remove a domain from an app')).action(async (hostname: string, opts: AppFlags) => {
    const name = appName(ctx, opts);
    await step(ctx, `Removing ${hostname} from ${name}`, () => clientFor(ctx).request('DELETE', `/apps/${enc(name)}/domains/${enc(hostname)}`));
  });
};
