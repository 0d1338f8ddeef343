import { clientFor } from '../../api-client.js';
import { appName } from '../../app-name.js';
import { appFlags, enc, type AppFlags, type Register } from '../../command.js';
import { invalid } from '../../../domain/errors.js';
import { step } from '../../output.js';
import type { Build } from './index.js';

export const register: Register = (program, ctx) => {
  appFlags(program.command('builds:cancel [id]').description('stop a running build (the latest by default)')).action(async (id: string | undefined, opts: AppFlags) => {
    const name = appName(ctx, opts);
    const api = clientFor(ctx);
    const build = id ?? (await api.get<Build[]>(`/apps/${enc(name)}/builds`)).find((b) => b.status === 'pending')?.id;
    if (!build) throw invalid(`${name} has no running build.`);
    await step(ctx, `Stopping build ${build.slice(0, 8)}`, () => api.request('POST', `/apps/${enc(name)}/builds/${enc(build)}/cancel`));
  });
};
