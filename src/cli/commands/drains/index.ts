import { clientFor } from '../../api-client.js';
import { appName } from '../../app-name.js';
import { appFlags, enc, type AppFlags, type Register } from '../../command.js';
import { header, json } from '../../output.js';

/** Heroku's log-drain object. */
export interface LogDrain {
  id: string;
  url: string;
  token: string;
  created_at: string;
  updated_at: string;
  addon: null | { id: string; name: string };
  app: { id: string; name: string };
}

export const register: Register = (program, ctx) => {
  appFlags(program.command('drains').description('display the log drains of an app'))
    .option('--json', 'output in json format')
    .action(async (opts: AppFlags) => {
      const name = appName(ctx, opts);
      const drains = await clientFor(ctx).get<LogDrain[]>(`/apps/${enc(name)}/log-drains`);
      if (opts.json) return json(ctx, drains);
      if (drains.length === 0) return ctx.out(`${name} has no drains.`);
      ctx.out(`${header('Drains')}\n${drains.map((d) => `${d.url} (${d.token})`).join('\n')}`);
    });
};
