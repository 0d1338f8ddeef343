import { clientFor } from '../../api-client.js';
import type { Domain } from '../../api-types.js';
import { appName } from '../../app-name.js';
import { appFlags, enc, type AppFlags, type Register } from '../../command.js';
import { header, json, table } from '../../output.js';

export const register: Register = (program, ctx) => {
  appFlags(program.command('domains').description('list domains for an app'))
    .option('--json', 'output in json format')
    .action(async (opts: AppFlags) => {
      const name = appName(ctx, opts);
      const domains = await clientFor(ctx).get<Domain[]>(`/apps/${enc(name)}/domains`);
      if (opts.json) return json(ctx, domains);
      const builtIn = domains.filter((d) => d.kind === 'heroku').map((d) => d.hostname);
      const custom = domains.filter((d) => d.kind === 'custom');
      ctx.out(`${header(`${name} Berth Domain`)}\n${builtIn.join('\n')}`);
      if (custom.length) ctx.out(`\n${header(`${name} Custom Domains`)}\n${table(['Domain Name', 'DNS Target'], custom.map((d) => [d.hostname, d.cname ?? '']))}`);
    });
};
