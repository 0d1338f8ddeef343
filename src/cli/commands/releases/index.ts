import { clientFor } from '../../api-client.js';
import type { Release } from '../../api-types.js';
import { appName } from '../../app-name.js';
import { appFlags, enc, type AppFlags, type Register } from '../../command.js';
import { header, json, table } from '../../output.js';

export const register: Register = (program, ctx) => {
  appFlags(program.command('releases').description('display the releases for an app'))
    .option('-n, --num <n>', 'number of releases to show', '15')
    .option('--json', 'output in json format')
    .action(async (opts: AppFlags & { num: string }) => {
      const name = appName(ctx, opts);
      const list = await clientFor(ctx).get<Release[]>(`/apps/${enc(name)}/releases`, { range: `version ..; max=${Number(opts.num) || 15}, order=desc` });
      if (opts.json) return json(ctx, list);
      if (list.length === 0) return ctx.out(`${name} has no releases.`);
      const current = list.find((r) => r.current);
      const rows = list.map((r) => [`v${r.version}`, r.description + (r.status === 'succeeded' ? '' : ` (${r.status}${r.failure_reason ? `: ${r.failure_reason}` : ''})`), r.user.email, r.created_at]);
      ctx.out(`${header(`${name} Releases${current ? ` - Current: v${current.version}` : ''}`)}\n${table(['v', 'description', 'user', 'created_at'], rows)}`);
    });
};
