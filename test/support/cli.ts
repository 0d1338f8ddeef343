import { CommanderError } from 'commander';
import type { CliContext } from '../../src/cli/context.js';
import { formatError } from '../../src/cli/output.js';
import { createProgram } from '../../src/cli/program.js';

export interface CliResult {
  code: number;
  out: string;
  err: string;
}

/** Runs `berth ARGS` in-process, as the user whose HOME is `home`, from `cwd`, with `env`. */
export async function runCli(o: { env: Record<string, string>; cwd: string; home: string }, args: string[]): Promise<CliResult> {
  let out = '';
  let err = '';
  const ctx: CliContext = {
    env: o.env,
    cwd: o.cwd,
    home: o.home,
    out: (t) => (out += t.endsWith('\n') ? t : `${t}\n`),
    err: (t) => (err += t.endsWith('\n') ? t : `${t}\n`),
    interactive: false,
  };
  try {
    await createProgram(ctx).parseAsync(['node', 'berth', ...args]);
    return { code: 0, out, err };
  } catch (e) {
    if (e instanceof CommanderError) return { code: e.exitCode, out, err };
    return { code: 1, out, err: err + formatError(e) };
  }
}
