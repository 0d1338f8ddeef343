import { clientFor } from '../../api-client.js';
import type { Release } from '../../api-types.js';
import { appName } from '../../app-name.js';
import { appFlags, enc, type AppFlags, type Register } from '../../command.js';
import { header, json, keyValues } from '../../output.js';

export const register: Register = (program, ctx) => {
  appFlags(program.command('releases:info [release]').description('view detailed information for a release'))
    .option('--json', 'output in json format')
    .action(async (release: string | undefined, opts: AppFlags) => {
      const name = appName(ctx, opts);
      const api = clientFor(ctx);
      const r = release
        ? await api.get<Release>(`/apps/${enc(name)}/releases/${enc(release.replace(/^v/, ''))}`)
        : (await api.get<Release[]>(`/apps/${enc(name)}/releases`, { range: 'version ..; max=1, order=desc' }))[0];
      if (!r) return ctx.out(`${name} has no releases.`);
      if (opts.json) return json(ctx, r);
      const config = await api.get<Record<string, string>>(`/apps/${enc(name)}/releases/${r.version}/config-vars`);
      const entries = Object.entries(config).sort(([a], [b]) => a.localeCompare(b));
      ctx.out(`${header(`Release v${r.version}`)}\n${keyValues([['By', r.user.email], ['Change', r.description], ['Status', r.failure_reason ? `${r.status}: ${r.failure_reason}` : r.status], ['When', r.created_at]])}\n`);
      ctx.out(`${header(`v${r.version} Config vars`)}\n${entries.length ? keyValues(entries) : ''}`);
    });
};
