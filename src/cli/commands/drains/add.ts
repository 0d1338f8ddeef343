import { clientFor } from '../../api-client.js';
import { appName } from '../../app-name.js';
import { appFlags, enc, type AppFlags, type Register } from '../../command.js';
import type { LogDrain } from './index.js';

export const register: Register = (program, ctx) => {
  appFlags(program.command('drains:add <url>').description('adds a log drain to an app (syslog://host:port)')).action(async (url: string, opts: AppFlags) => {
    const name = appName(ctx, opts);
    const drain = await clientFor(ctx).request<LogDrain>('POST', `/apps/${enc(name)}/log-drains`, { url });
    ctx.out(`Successfully added drain ${drain.url}`);
  });
};
