import { clientFor } from '../../api-client.js';
import { appName } from '../../app-name.js';
import { appFlags, enc, type AppFlags, type Register } from '../../command.js';
import { invalid } from '../../../domain/errors.js';
import { keyValues, step } from '../../output.js';

/** `berth limits:set web=256M worker=1G`: each dyno's memory limit, applied from the next release on. */
export const register: Register = (program, ctx) => {
  appFlags(program.command('limits:set <pairs...>').description('set dyno memory limits per process type (TYPE=256M)')).action(async (pairs: string[], opts: AppFlags) => {
    const body: Record<string, string> = {};
    for (const p of pairs) {
      const m = /^([A-Za-z0-9_-]+)=(\S+)$/.exec(p);
      if (!m?.[1] || !m[2]) throw invalid(`${p} is invalid. Use TYPE=SIZE, e.g. web=256M.`);
      body[m[1]] = m[2];
    }
    const name = appName(ctx, opts);
    const limits = await step(ctx, `Setting memory limits of ${name}`, () => clientFor(ctx).request<Record<string, string>>('PATCH', `/apps/${enc(name)}/limits`, body));
    ctx.out(keyValues(Object.entries(limits)));
  });
};
