import { clientFor } from '../../api-client.js';
import type { FormationEntry } from '../../api-types.js';
import { appName } from '../../app-name.js';
import { appFlags, enc, type AppFlags, type Register } from '../../command.js';
import { invalid } from '../../../domain/errors.js';
import { step } from '../../output.js';

const ARG = /^([\w-]+)([=+-]\d+)(?::([\w-]+))?$/;

/** `berth ps:scale web=3 worker+1:standard-2x`, the heroku CLI's argument shapes. */
export const register: Register = (program, ctx) => {
  appFlags(program.command('ps:scale [changes...]').alias('scale').description('scale dyno quantity up or down')).action(async (changes: string[], opts: AppFlags) => {
    const name = appName(ctx, opts);
    const api = clientFor(ctx);
    const show = (list: FormationEntry[]): string => list.map((f) => `${f.type}=${f.quantity}:${f.size}`).sort().join(' ');
    if (changes.length === 0) {
      const formation = await api.get<FormationEntry[]>(`/apps/${enc(name)}/formation`);
      if (formation.length === 0) throw invalid(`No process types on ${name}. Deploy with git push first.`);
      return ctx.out(show(formation));
    }
    const updates = changes.map((c) => {
      const m = ARG.exec(c);
      if (!m) throw invalid(`Usage: berth ps:scale TYPE1=N1 TYPE2+N2 (got "${c}")`);
      const [, type, q = '', size] = m;
      return { type, quantity: q.startsWith('=') ? q.slice(1) : q, ...(size ? { size } : {}) };
    });
    await step(ctx, 'Scaling dynos', () => api.request<FormationEntry[]>('PATCH', `/apps/${enc(name)}/formation`, { updates }), (r) =>
      `done, now running ${r.map((f) => `${f.type} at ${f.quantity}:${f.size}`).join(', ')}`,
    );
  });
};
