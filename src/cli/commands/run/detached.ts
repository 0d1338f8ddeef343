import { clientFor } from '../../api-client.js';
import type { Dyno } from '../../api-types.js';
import { appName } from '../../app-name.js';
import { enc, type Register } from '../../command.js';
import { step } from '../../output.js';
import { invalid } from '../../../domain/errors.js';
import { buildCommand, createBody, runFlags, type RunFlags } from './index.js';

/** `berth run:detached -a app CMD`: a one-off dyno whose output goes only to the app's logs. */
export const register: Register = (program, ctx) => {
  runFlags(program.command('run:detached [command...]').description('run a detached dyno, where output is sent to your logs')).action(async (args: string[], opts: RunFlags) => {
    const name = appName(ctx, opts);
    const command = buildCommand(args);
    if (!command.trim()) throw invalid('Usage: berth run:detached COMMAND\n\nExample: berth run:detached rake db:migrate');
    const api = clientFor(ctx);
    const dyno = await step(ctx, `Running ${command} on ⬢ ${name}`, () => api.request<Dyno>('POST', `/apps/${enc(name)}/dynos`, createBody(command, opts, ctx, false)), (d) => `done, ${d.name}`);
    ctx.out(`Run berth logs --app ${name} --dyno ${dyno.name} to view the output.`);
  });
};
