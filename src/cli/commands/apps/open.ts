import { spawn } from 'node:child_process';
import { clientFor } from '../../api-client.js';
import type { App } from '../../api-types.js';
import { appName } from '../../app-name.js';
import { appFlags, enc, type AppFlags, type Register } from '../../command.js';

export const register: Register = (program, ctx) => {
  appFlags(program.command('open [path]').description("open the app's web URL in a browser")).action(async (path: string | undefined, opts: AppFlags) => {
    const app = await clientFor(ctx).get<App>(`/apps/${enc(appName(ctx, opts))}`);
    const url = new URL(path ?? '', app.web_url).toString();
    ctx.out(url);
    // A server has no browser; printing the URL is the useful part there.
    if (ctx.interactive) spawn('xdg-open', [url], { stdio: 'ignore', detached: true }).on('error', () => undefined).unref();
  });
};
