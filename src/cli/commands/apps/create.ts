import { clientFor } from '../../api-client.js';
import type { App } from '../../api-types.js';
import { DEFAULT_REMOTE, gitRemoteAdd } from '../../app-name.js';
import type { Register } from '../../command.js';
import { json, step } from '../../output.js';

/** `berth apps:create [NAME]`: creates the app and, inside a git checkout, adds the `berth` remote. */
export const register: Register = (program, ctx) => {
  program
    .command('apps:create [name]')
    .alias('create')
    .description('create a new app')
    .option('-r, --remote <remote>', 'the git remote to create', DEFAULT_REMOTE)
    .option('--no-remote', 'do not create a git remote')
    .option('--json', 'output in json format')
    .action(async (name: string | undefined, opts: { remote: string | false; json?: boolean }) => {
      const app = await step(ctx, name ? `Creating ${name}` : 'Creating app', () => clientFor(ctx).request<App>('POST', '/apps', name ? { name } : {}), (a) =>
        name ? 'done' : `done, ${a.name}`,
      );
      if (opts.remote) {
        const r = gitRemoteAdd(ctx, opts.remote, app.git_url);
        if (r !== 'not a git repository') ctx.err(`Git remote ${opts.remote} ${r}`);
      }
      if (opts.json) return json(ctx, app);
      ctx.out(`${app.web_url} | ${app.git_url}`);
    });
};
