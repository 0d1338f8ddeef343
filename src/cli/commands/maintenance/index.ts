import { clientFor } from '../../api-client.js';
import type { App } from '../../api-types.js';
import { appName } from '../../app-name.js';
import { appFlags, enc, type AppFlags, type Register } from '../../command.js';
import { step } from '../../output.js';

/**
 * `berth maintenance`, `maintenance:on`, `maintenance:off`, as heroku's: the router answers every
 * hostname of the app with 503 and a maintenance page while it is on; the dynos keep running.
 */
export const register: Register = (program, ctx) => {
  appFlags(program.command('maintenance').description("show whether the app is in maintenance mode")).action(async (opts: AppFlags) => {
    const app = await clientFor(ctx).request<App & { maintenance: boolean }>('GET', `/apps/${enc(appName(ctx, opts))}`);
    ctx.out(app.maintenance ? 'on' : 'off');
  });
  for (const on of [true, false]) {
    appFlags(program.command(`maintenance:${on ? 'on' : 'off'}`).description(on ? 'put the app into maintenance mode (503 with a maintenance page)' : 'take the app out of maintenance mode')).action(async (opts: AppFlags) => {
      const name = appName(ctx, opts);
      await step(ctx, `${on ? 'Enabling' : 'Disabling'} maintenance mode for ${name}`, () => clientFor(ctx).request<App>('PATCH', `/apps/${enc(name)}`, { maintenance: on }));
    });
  }
};
