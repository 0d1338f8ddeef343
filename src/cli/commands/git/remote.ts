import { clientFor } from '../../api-client.js';
import type { App } from '../../api-types.js';
import { DEFAULT_REMOTE, gitRemoteAdd } from '../../app-name.js';
import type { Register } from '../../command.js';
import { invalid } from '../../../domain/errors.js';

export const register: Register = (program, ctx) => {
  program
    .command('git:remote')
    .description("add a git remote for an app's repository")
    .requiredOption('-a, --app <app>', 'the app')
    .option('-r, --remote <remote>', 'the git remote to create', DEFAULT_REMOTE)
    .action(async (opts: { app: string; remote: string }) => {
      const app = await clientFor(ctx).get<App>(`/apps/${encodeURIComponent(opts.app)}`);
      const r = gitRemoteAdd(ctx, opts.remote, app.git_url);
      if (r === 'not a git repository') throw invalid('Not inside a git repository; run `git init` first.');
      ctx.out(`set git remote ${opts.remote} to ${app.git_url}`);
    });
};
