import { execFileSync } from 'node:child_process';
import { invalid } from '../domain/errors.js';
import type { CliContext } from './context.js';

export const DEFAULT_REMOTE = 'berth';

/** The app a command is about: -a, then BERTH_APP, then the git remote (`berth`, or -r). */
export function appName(ctx: CliContext, flags: { app?: string; remote?: string }): string {
  if (flags.app) return flags.app;
  if (ctx.env.BERTH_APP) return ctx.env.BERTH_APP;
  const remote = flags.remote ?? DEFAULT_REMOTE;
  let url = '';
  try {
    url = execFileSync('git', ['remote', 'get-url', remote], { cwd: ctx.cwd, stdio: ['ignore', 'pipe', 'ignore'] }).toString().trim();
  } catch {
    // Not a git repository, or no such remote: say what to do below.
  }
  const m = /[/:]([a-z][a-z0-9-]{2,29})\.git$/.exec(url);
  if (m?.[1]) return m[1];
  throw invalid(`No app specified. Use -a APP, or run this inside a git checkout with a "${remote}" remote (berth git:remote -a APP adds one).`);
}

export function gitRemoteAdd(ctx: CliContext, remote: string, url: string): 'added' | 'updated' | 'not a git repository' {
  const git = (...args: string[]): string => execFileSync('git', args, { cwd: ctx.cwd, stdio: ['ignore', 'pipe', 'ignore'] }).toString().trim();
  try {
    git('rev-parse', '--git-dir');
  } catch {
    return 'not a git repository';
  }
  try {
    git('remote', 'get-url', remote);
    git('remote', 'set-url', remote, url);
    return 'updated';
  } catch {
    git('remote', 'add', remote, url);
    return 'added';
  }
}
