import { clientFor } from '../../api-client.js';
import { appName } from '../../app-name.js';
import { appFlags, enc, type AppFlags, type Register } from '../../command.js';
import { shellQuote } from './index.js';

export const register: Register = (program, ctx) => {
  appFlags(program.command('config:get <key>').description('display a single config value for an app'))
    .option('-s, --shell', 'output config var in shell format')
    .action(async (key: string, opts: AppFlags & { shell?: boolean }) => {
      const config = await clientFor(ctx).get<Record<string, string>>(`/apps/${enc(appName(ctx, opts))}/config-vars`);
      const value = config[key] ?? '';
      ctx.out(opts.shell ? `${key}=${shellQuote(value)}` : value);
    });
};
