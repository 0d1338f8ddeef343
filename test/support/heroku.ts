import { execFile } from 'node:child_process';
import { join } from 'node:path';

/** The official heroku CLI, from this project's devDependencies. */
const HEROKU = join(import.meta.dirname, '../../node_modules/.bin/heroku');

export interface HerokuRun {
  code: number;
  out: string;
  err: string;
}

/**
 * Runs the unmodified heroku CLI against a Berth API as one user, from `home` (its scratch HOME),
 * kept on loopback and quiet: no telemetry, update checks or billing look-ups.
 */
export function runHeroku(o: { apiUrl: string; token: string; home: string; timeoutMs: number; env?: Record<string, string>; input?: string }, args: string[]): Promise<HerokuRun> {
  return new Promise((resolve) => {
    const child = execFile(
      HEROKU,
      args,
      {
        cwd: o.home,
        timeout: o.timeoutMs,
        env: {
          PATH: process.env.PATH ?? '/usr/bin:/bin',
          HOME: o.home,
          HEROKU_HOST: o.apiUrl,
          HEROKU_API_KEY: o.token,
          HEROKU_PARTICLEBOARD_URL: o.apiUrl,
          DISABLE_TELEMETRY: 'true',
          HEROKU_SKIP_NEW_VERSION_CHECK: 'true',
          HEROKU_DISABLE_AUTOUPDATE: '1',
          NO_COLOR: '1',
          FORCE_COLOR: '0',
          ...o.env,
        },
      },
      (error, stdout, stderr) => resolve({ code: error ? Number((error as { code?: number }).code ?? 1) : 0, out: stdout, err: stderr }),
    );
    // Its stdin, piped (the CLI forwards it to `heroku run`'s dyno); otherwise it stays open.
    if (o.input !== undefined) child.stdin?.end(o.input);
  });
}
