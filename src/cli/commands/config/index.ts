import { clientFor } from '../../api-client.js';
import { appName } from '../../app-name.js';
import { appFlags, enc, type AppFlags, type Register } from '../../command.js';
import { header, json, keyValues } from '../../output.js';

export const register: Register = (program, ctx) => {
  appFlags(program.command('config').description('display the config vars for an app'))
    .option('-s, --shell', 'output config vars in shell format')
    .option('--json', 'output config vars in json format')
    .action(async (opts: AppFlags & { shell?: boolean }) => {
      const name = appName(ctx, opts);
      const config = await clientFor(ctx).get<Record<string, string>>(`/apps/${enc(name)}/config-vars`);
      if (opts.json) return json(ctx, config);
      if (opts.shell) return ctx.out(Object.entries(config).map(([k, v]) => `${k}=${shellQuote(v)}`).join('\n'));
      const entries = Object.entries(config).sort(([a], [b]) => a.localeCompare(b));
      ctx.out(`${header(`${name} Config Vars`)}\n${entries.length ? keyValues(entries) : ''}`);
    });
};

export function shellQuote(v: string): string {
  return /^[A-Za-z0-9_./:@%+-]*$/.test(v) ? v : `'${v.replace(/'/g, `'\\''`)}'`;
}
