import { clientFor } from '../../api-client.js';
import type { Collaborator } from '../../api-types.js';
import { appName } from '../../app-name.js';
import { appFlags, enc, type AppFlags, type Register } from '../../command.js';
import { header, json, table } from '../../output.js';

export const register: Register = (program, ctx) => {
  appFlags(program.command('access').description('list who has access to an app'))
    .option('--json', 'output in json format')
    .action(async (opts: AppFlags) => {
      const name = appName(ctx, opts);
      const list = await clientFor(ctx).get<Collaborator[]>(`/apps/${enc(name)}/collaborators`);
      if (opts.json) return json(ctx, list);
      ctx.out(`${header(`${name} Access List`)}\n${table(['Email', 'Role'], list.map((c) => [c.user.email, c.role]))}`);
    });
};
