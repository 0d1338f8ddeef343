import { clientFor } from '../../api-client.js';
import { appName } from '../../app-name.js';
import { appFlags, enc, type AppFlags, type Register } from '../../command.js';
import type { LogDrain } from './index.js';

export const register: Register = (program, ctx) => {
  appFlags(program.command('drains:remove <url_or_id>').description('removes a log drain from an app (by URL, id or token)')).action(async (urlOrId: string, opts: AppFlags) => {
    const name = appName(ctx, opts);
    const drain = await clientFor(ctx).request<LogDrain>('DELETE', `/apps/${enc(name)}/log-drains/${enc(urlOrId)}`);
    ctx.out(`Successfully removed drain ${drain.url}`);
  });
};
