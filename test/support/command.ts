import { execFile } from 'node:child_process';

export interface CommandResult {
  code: number;
  /** stdout then stderr. */
  out: string;
}

/**
 * Runs a command to its end with only the environment given (and a PATH), as a user's shell
 * would with a clean environment: nothing of the test runner's own leaks in.
 */
export function runCommand(cmd: string, args: string[], o: { cwd: string; env?: Record<string, string>; timeoutMs?: number }): Promise<CommandResult> {
  return new Promise((resolve) => {
    execFile(cmd, args, { cwd: o.cwd, timeout: o.timeoutMs ?? 60_000, env: { PATH: process.env.PATH ?? '/usr/bin:/bin', ...o.env } }, (err, stdout, stderr) =>
      resolve({ code: err ? Number((err as { code?: number }).code ?? 1) : 0, out: stdout + stderr }),
    );
  });
}
