import { clientFor } from '../../api-client.js';
import { appName } from '../../app-name.js';
import { appFlags, enc, type AppFlags, type Register } from '../../command.js';
import { step } from '../../output.js';
import { showHealthChecks, type HealthCheckRow } from './index.js';

/** `berth healthchecks:unset web [startup|liveness|readiness]`: app.json's checks apply again. */
export const register: Register = (program, ctx) => {
  appFlags(program.command('healthchecks:unset <process-type> [check-type]').description("remove a process type's health checks set with healthchecks:set (app.json's apply again)")).action(
    async (type: string, checkType: string | undefined, opts: AppFlags) => {
      const name = appName(ctx, opts);
      const path = `/apps/${enc(name)}/healthchecks/${enc(type)}${checkType ? `/${enc(checkType)}` : ''}`;
      const rows = await step(ctx, `Removing health checks of ${name}'s ${type} dynos and restarting them`, () => clientFor(ctx).request<HealthCheckRow[]>('DELETE', path));
      ctx.out(showHealthChecks(name, rows));
    },
  );
};
