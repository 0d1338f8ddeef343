import { clientFor } from '../../api-client.js';
import type { Domain } from '../../api-types.js';
import { appName } from '../../app-name.js';
import { appFlags, enc, type AppFlags, type Register } from '../../command.js';
import { step } from '../../output.js';

export const register: Register = (program, ctx) => {
  appFlags(program.command('domains:add <hostname>').description('add a domain to an app')).action(async (hostname: string, opts: AppFlags) => {
    const name = appName(ctx, opts);
    const d = await step(ctx, `Adding ${hostname} to ${name}`, () => clientFor(ctx).request<Domain>('POST', `/apps/${enc(name)}/domains`, { hostname }));
    ctx.out(`Configure your app's DNS provider to point to the DNS Target ${d.cname ?? ''}`);
  });
};
