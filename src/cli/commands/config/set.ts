import { clientFor } from '../../api-client.js';
import type { Release } from '../../api-types.js';
import { appName } from '../../app-name.js';
import { appFlags, enc, type AppFlags, type Register } from '../../command.js';
import { invalid } from '../../../domain/errors.js';
import { keyValues, step } from '../../output.js';

/** Applies a config change and reports the release it made, as `heroku config:set` does. */
export async function changeConfig(ctx: Parameters<Register>[1], app: string, verb: string, changes: Record<string, string | null>): Promise<Record<string, string>> {
  const api = clientFor(ctx);
  const keys = Object.keys(changes).join(', ');
  return step(
    ctx,
    `${verb} ${keys} and restarting ${app}`,
    async () => {
      const config = await api.request<Record<string, string>>('PATCH', `/apps/${enc(app)}/config-vars`, changes);
      const [latest] = await api.get<Release[]>(`/apps/${enc(app)}/releases`, { range: 'version ..; max=1, order=desc' });
      return { config, version: latest?.version };
    },
    (r) => `done, v${r.version}`,
  ).then((r) => r.config);
}

export const register: Register = (program, ctx) => {
  appFlags(program.command('config:set <pairs...>').description('set one or more config vars (KEY=value)')).action(async (pairs: string[], opts: AppFlags) => {
    const changes: Record<string, string> = {};
    for (const pair of pairs) {
      const i = pair.indexOf('=');
      if (i <= 0) throw invalid(`${pair} is invalid. Must be in the format KEY=value.`);
      changes[pair.slice(0, i)] = pair.slice(i + 1);
    }
    const app = appName(ctx, opts);
    const config = await changeConfig(ctx, app, 'Setting', changes);
    ctx.out(keyValues(Object.keys(changes).map((k) => [k, config[k] ?? ''])));
  });
};
