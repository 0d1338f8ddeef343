import { clientFor } from '../../api-client.js';
import type { Dyno } from '../../api-types.js';
import { appName } from '../../app-name.js';
import { appFlags, enc, type AppFlags, type Register } from '../../command.js';
import { header, json } from '../../output.js';

export const register: Register = (program, ctx) => {
  appFlags(program.command('ps [types...]').description("list an app's dynos"))
    .option('--json', 'output in json format')
    .action(async (types: string[], opts: AppFlags) => {
      const name = appName(ctx, opts);
      const dynos = (await clientFor(ctx).get<Dyno[]>(`/apps/${enc(name)}/dynos`)).filter((d) => types.length === 0 || types.includes(d.type));
      if (opts.json) return json(ctx, dynos);
      if (dynos.length === 0) return ctx.out(`No dynos on ${name}`);
      const groups = new Map<string, Dyno[]>();
      for (const d of dynos) groups.set(`${d.type} (${d.size}): ${d.command}`, [...(groups.get(`${d.type} (${d.size}): ${d.command}`) ?? []), d]);
      for (const [title, list] of groups) {
        ctx.out(`${header(`${title} (${list.length})`)}\n${list.map((d) => `${d.name}: ${d.state} ${d.updated_at}`).join('\n')}\n`);
      }
    });
};
