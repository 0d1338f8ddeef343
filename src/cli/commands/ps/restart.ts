import { clientFor } from '../../api-client.js';
import { appName } from '../../app-name.js';
import { appFlags, enc, type AppFlags, type Register } from '../../command.js';
import { step } from '../../output.js';

/** `berth ps:restart [web|web.1]` and `berth ps:stop web.1`: a rolling replacement of the dynos. */
export const register: Register = (program, ctx) => {
  for (const verb of ['restart', 'stop'] as const) {
    appFlags(
      program
        .command(`ps:${verb} ${verb === 'stop' ? '<dyno>' : '[dyno]'}`)
        .description(verb === 'restart' ? 'restart dynos (all, a process type, or one dyno), new ones up before old ones stop' : 'stop a dyno or process type (the formation starts fresh ones)'),
    ).action(async (target: string | undefined, opts: AppFlags) => {
      const name = appName(ctx, opts);
      const api = clientFor(ctx);
      // A name with a dot is a dyno, as in the heroku CLI; without, a process type.
      const path = target === undefined ? `/apps/${enc(name)}/dynos` : target.includes('.') ? `/apps/${enc(name)}/dynos/${enc(target)}` : `/apps/${enc(name)}/formations/${enc(target)}`;
      const what = target === undefined ? 'all dynos' : target.includes('.') ? `dyno ${target}` : `${target} dynos`;
      if (verb === 'restart') await step(ctx, `Restarting ${what} on ⬢ ${name}`, () => api.request('DELETE', path), () => 'done');
      else await step(ctx, `Stopping ${what} on ⬢ ${name}`, () => api.request('POST', `${path}/actions/stop`), () => 'done');
    });
  }
};
