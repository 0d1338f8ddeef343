import { clientFor } from '../../api-client.js';
import type { RouterSetting } from '../../api-types.js';
import { appName } from '../../app-name.js';
import { appFlags, enc, type AppFlags, type Register } from '../../command.js';
import { invalid } from '../../../domain/errors.js';
import { APP_ROUTING_NAMES, ROUTER_SETTING_NAMES, isAppRoutingSetting, isRouterSetting } from '../../../domain/router-settings.js';
import { keyValues, step } from '../../output.js';

/**
 * `berth router:set body_size=10m read_timeout=60s` (admins): every router re-renders and reloads
 * gracefully. App options (`redirect_https=true`) go to the app given by -a, the git remote or
 * BERTH_APP. `KEY=` resets a setting.
 */
export const register: Register = (program, ctx) => {
  appFlags(program.command('router:set <pairs...>').description(`set router settings (admins: ${ROUTER_SETTING_NAMES.join(', ')}) or an app's routing (${APP_ROUTING_NAMES.join(', ')}); KEY= resets`)).action(
    async (pairs: string[], opts: AppFlags) => {
      const changes: Record<string, string | null> = {};
      for (const pair of pairs) {
        const i = pair.indexOf('=');
        if (i <= 0) throw invalid(`${pair} is invalid. Must be in the format KEY=value (KEY= resets it).`);
        changes[pair.slice(0, i)] = pair.slice(i + 1) === '' ? null : pair.slice(i + 1);
      }
      const names = Object.keys(changes);
      const unknown = names.filter((n) => !isRouterSetting(n) && !isAppRoutingSetting(n));
      if (unknown.length) throw invalid(`Unknown router setting ${unknown.join(', ')}. Router: ${ROUTER_SETTING_NAMES.join(', ')}; per app: ${APP_ROUTING_NAMES.join(', ')}.`);
      const api = clientFor(ctx);
      if (names.every(isAppRoutingSetting)) {
        const app = appName(ctx, opts);
        const body = Object.fromEntries(Object.entries(changes).map(([k, v]) => [k, v ?? false]));
        const routing = await step(ctx, `Setting ${names.join(', ')} for ${app}`, () => api.request<Record<string, unknown>>('PATCH', `/apps/${enc(app)}/router`, body));
        return ctx.out(keyValues(Object.entries(routing).map(([k, v]) => [k, String(v)])));
      }
      if (!names.every(isRouterSetting)) throw invalid(`Set the router's settings and an app's routing (${APP_ROUTING_NAMES.join(', ')}) in separate commands.`);
      if (opts.app) throw invalid(`${names.join(', ')} apply to every app on the platform; drop -a.`);
      const settings = await step(ctx, `Setting ${names.join(', ')} and reloading the routers`, () => api.request<RouterSetting[]>('PATCH', '/berth/router', changes));
      ctx.out(keyValues(settings.filter((s) => (names as string[]).includes(s.name)).map((s) => [s.name, s.default ? `${s.value} (default)` : s.value])));
    },
  );
};
