import { clientFor } from '../../api-client.js';
import type { RouterSetting } from '../../api-types.js';
import { enc, type AppFlags, type Register } from '../../command.js';
import { header, json, keyValues } from '../../output.js';

/** `berth router`: the routers' platform-wide settings; `-a app`: that app's routing options. */
export const register: Register = (program, ctx) => {
  program
    .command('router')
    .description("show the router's settings (admins), or an app's routing options with -a")
    .option('-a, --app <app>', "show this app's routing options instead")
    .option('--json', 'output in json format')
    .action(async (opts: AppFlags) => {
      const api = clientFor(ctx);
      if (opts.app) {
        const routing = await api.get<Record<string, unknown>>(`/apps/${enc(opts.app)}/router`);
        if (opts.json) return json(ctx, routing);
        return ctx.out(`${header(`${opts.app} Routing`)}\n${keyValues(Object.entries(routing).map(([k, v]) => [k, String(v)]))}`);
      }
      const settings = await api.get<RouterSetting[]>('/berth/router');
      if (opts.json) return json(ctx, settings);
      ctx.out(`${header('Router Settings')}\n${keyValues(settings.map((s) => [s.name, s.default ? `${s.value} (default)` : s.value]))}`);
    });
};
