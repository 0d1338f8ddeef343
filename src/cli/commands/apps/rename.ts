import { clientFor } from '../../api-client.js';
import type { App } from '../../api-types.js';
import { appName, gitRemoteAdd } from '../../app-name.js';
import { appFlags, enc, type AppFlags, type Register } from '../../command.js';
import { step } from '../../output.js';

export const register: Register = (program, ctx) => {
  appFlags(program.command('apps:rename <newname>').alias('rename').description('rename an app')).action(async (newname: string, opts: AppFlags) => {
    const old = appName(ctx, opts);
    const app = await step(ctx, `Renaming ${old} to ${newname}`, () => clientFor(ctx).request<App>('PATCH', `/apps/${enc(old)}`, { name: newname }));
    ctx.out(`${app.web_url} | ${app.git_url}`);
    if (!opts.app && gitRemoteAdd(ctx, opts.remote ?? 'berth', app.git_url) === 'updated') ctx.err(`Git remote ${opts.remote ?? 'berth'} updated`);
  });
};
