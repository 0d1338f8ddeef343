import { clientFor } from '../../api-client.js';
import type { Release } from '../../api-types.js';
import { appName } from '../../app-name.js';
import { appFlags, enc, type AppFlags, type Register } from '../../command.js';
import { invalid } from '../../../domain/errors.js';
import { step } from '../../output.js';

/** `berth releases:rollback [vN]`: code and config go back together; without vN, to the release before. */
export const register: Register = (program, ctx) => {
  appFlags(program.command('releases:rollback [release]').alias('rollback').description('roll back to an earlier release')).action(async (release: string | undefined, opts: AppFlags) => {
    const name = appName(ctx, opts);
    const api = clientFor(ctx);
    let target: Release | undefined;
    if (release) target = await api.get<Release>(`/apps/${enc(name)}/releases/${enc(release.replace(/^v/, ''))}`);
    else [, target] = await api.get<Release[]>(`/apps/${enc(name)}/releases`, { range: 'version ..; max=2, order=desc' });
    if (!target) throw invalid(`${name} has no earlier release to roll back to.`);
    const id = target.id;
    const made = await step(ctx, `Rolling back ${name} to v${target.version}`, () => api.request<Release>('POST', `/apps/${enc(name)}/releases`, { release: id }), (r) => `done, v${r.version}`);
    ctx.err(`Rollback restores code and config vars. To undo, run: berth rollback v${made.version - 1} -a ${name}`);
  });
};
