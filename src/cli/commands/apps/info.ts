import { clientFor } from '../../api-client.js';
import type { App, Collaborator, Dyno } from '../../api-types.js';
import { appName } from '../../app-name.js';
import { appFlags, enc, type AppFlags, type Register } from '../../command.js';
import { header, json, keyValues } from '../../output.js';

export const register: Register = (program, ctx) => {
  appFlags(program.command('apps:info [app]').alias('info').description('show detailed app information'))
    .option('--json', 'output in json format')
    .action(async (positional: string | undefined, opts: AppFlags) => {
      const name = positional ?? appName(ctx, opts);
      const api = clientFor(ctx);
      const [app, dynos, collaborators] = await Promise.all([
        api.get<App>(`/apps/${enc(name)}`),
        api.get<Dyno[]>(`/apps/${enc(name)}/dynos`),
        api.get<Collaborator[]>(`/apps/${enc(name)}/collaborators`),
      ]);
      if (opts.json) return json(ctx, { app, dynos, collaborators });
      const counts = new Map<string, number>();
      for (const d of dynos) counts.set(d.type, (counts.get(d.type) ?? 0) + 1);
      const pairs: [string, string][] = [
        ['Git URL', app.git_url],
        ['Web URL', app.web_url],
        ['Owner', app.owner.email ?? ''],
        ['Region', app.region.name],
        ['Stack', app.stack.name],
        ['Dynos', [...counts].map(([t, n]) => `${t}: ${n}`).join(', ')],
      ];
      const collab = collaborators.filter((c) => c.role !== 'owner').map((c) => c.user.email);
      if (collab.length) pairs.push(['Collaborators', collab.join(', ')]);
      ctx.out(`${header(app.name)}\n${keyValues(pairs)}`);
    });
};
