import { clientFor } from '../../api-client.js';
import type { Dyno, Release } from '../../api-types.js';
import { appName } from '../../app-name.js';
import { appFlags, enc, type AppFlags, type Register } from '../../command.js';
import { header, json } from '../../output.js';

/** "5m", "2h": how long ago, as Heroku's `ps` says it. */
function ago(iso: string): string {
  const s = Math.max(0, Math.round((Date.now() - Date.parse(iso)) / 1000));
  if (!Number.isFinite(s)) return '?';
  return s < 60 ? `${s}s` : s < 3600 ? `${Math.round(s / 60)}m` : s < 86_400 ? `${Math.round(s / 3600)}h` : `${Math.round(s / 86_400)}d`;
}

/** `web.1: up v5 (~ 3m ago) on m1 at 10.244.3.7`, and why when it is not up. */
function line(d: Dyno): string {
  const release = d.release ? ` v${d.release.version}` : '';
  const where = `${d.machine ? ` on ${d.machine}` : ''}${d.address ? ` at ${d.address}` : ''}`;
  const why = d.state !== 'up' && d.reason ? ` — ${d.reason}${d.restarts ? ` (${d.restarts} restarts)` : ''}` : '';
  return `${d.name}: ${d.state}${release} ${d.updated_at} (~ ${ago(d.updated_at)} ago)${where}${why}`;
}

export const register: Register = (program, ctx) => {
  appFlags(program.command('ps [types...]').description("list an app's dynos"))
    .option('--json', 'output in json format')
    .action(async (types: string[], opts: AppFlags) => {
      const name = appName(ctx, opts);
      const dynos = (await clientFor(ctx).get<Dyno[]>(`/apps/${enc(name)}/dynos`)).filter((d) => types.length === 0 || types.includes(d.type));
      if (opts.json) return json(ctx, dynos);
      // A failed rollout leaves the previous release serving: say so above the dynos that show it.
      const [latest] = await clientFor(ctx).get<Release[]>(`/apps/${enc(name)}/releases`, { range: 'version ..; max=1, order=desc' });
      if (latest?.status === 'failed') ctx.out(`Release v${latest.version} failed${latest.failure_reason ? `: ${latest.failure_reason}` : ''}. The previous release keeps running.\n`);
      if (dynos.length === 0) return ctx.out(`No dynos on ${name}`);
      const groups = new Map<string, Dyno[]>();
      for (const d of dynos) groups.set(`${d.type} (${d.size}): ${d.command}`, [...(groups.get(`${d.type} (${d.size}): ${d.command}`) ?? []), d]);
      for (const [title, list] of groups) {
        ctx.out(`${header(`${title} (${list.length})`)}\n${list.map(line).join('\n')}\n`);
      }
    });
};
