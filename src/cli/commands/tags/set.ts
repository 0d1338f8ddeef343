import { clientFor } from '../../api-client.js';
import { appName } from '../../app-name.js';
import { appFlags, enc, type AppFlags, type Register } from '../../command.js';
import { invalid } from '../../../domain/errors.js';
import { keyValues, step } from '../../output.js';

/** `berth tags:set -a app region=eu disk=ssd`: the app's dynos run only on machines with these tags. */
export const register: Register = (program, ctx) => {
  appFlags(program.command('tags:set <pairs...>').description('place the app only on machines with these tags (KEY=value, KEY= to remove)')).action(async (pairs: string[], opts: AppFlags) => {
    const body: Record<string, string | null> = {};
    for (const p of pairs) {
      const i = p.indexOf('=');
      if (i <= 0) throw invalid(`${p} is invalid. Use KEY=value, or KEY= to remove a tag.`);
      body[p.slice(0, i)] = p.slice(i + 1) === '' ? null : p.slice(i + 1);
    }
    const name = appName(ctx, opts);
    const tags = await step(ctx, `Setting placement tags of ${name}`, () => clientFor(ctx).request<Record<string, string>>('PATCH', `/apps/${enc(name)}/tags`, body));
    if (Object.keys(tags).length) ctx.out(keyValues(Object.entries(tags)));
  });
};
