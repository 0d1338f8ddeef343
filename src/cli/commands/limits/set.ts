import { clientFor } from '../../api-client.js';
import { appName } from '../../app-name.js';
import { appFlags, enc, type AppFlags, type Register } from '../../command.js';
import { invalid } from '../../../domain/errors.js';
import { keyValues, step } from '../../output.js';

/**
 * `berth limits:set web=256M web.disk=2G run.max=3`: a process type's memory (`TYPE`) and disk
 * (`TYPE.disk`, 1G by default), and how many one-off dynos may run at once (`run.max`, 5 by
 * default; `run` and `run.disk` size them). Applied from the next release (one-off dynos: the next
 * run) on. `TYPE=` with no value goes back to the default.
 */
export const register: Register = (program, ctx) => {
  appFlags(program.command('limits:set <pairs...>').description('set dyno limits: memory (web=256M), disk (web.disk=2G), concurrent one-off dynos (run.max=3)')).action(async (pairs: string[], opts: AppFlags) => {
    const body: Record<string, string | null> = {};
    for (const p of pairs) {
      const m = /^([A-Za-z0-9_-]+(?:\.(?:disk|max))?)=(\S*)$/.exec(p);
      if (!m?.[1] || m[2] === undefined) throw invalid(`${p} is invalid. Use TYPE=SIZE (web=256M), TYPE.disk=SIZE (web.disk=2G) or run.max=N.`);
      body[m[1]] = m[2] === '' ? null : m[2];
    }
    const name = appName(ctx, opts);
    const limits = await step(ctx, `Setting limits of ${name}`, () => clientFor(ctx).request<Record<string, string>>('PATCH', `/apps/${enc(name)}/limits`, body));
    ctx.out(keyValues(Object.entries(limits)));
  });
};
