import { homedir } from 'node:os';
import { join } from 'node:path';

/**
 * Everything a command touches outside itself. main.ts builds it from the process; tests build
 * their own, so commands run in-process with captured output and a scratch HOME.
 */
export interface CliContext {
  env: NodeJS.ProcessEnv;
  cwd: string;
  home: string;
  out(text: string): void;
  err(text: string): void;
  /** Spinners and prompts only when a person is at a terminal. */
  interactive: boolean;
}

export function processContext(): CliContext {
  return {
    env: process.env,
    cwd: process.cwd(),
    home: process.env.HOME ?? homedir(),
    out: (t) => process.stdout.write(t.endsWith('\n') ? t : `${t}\n`),
    err: (t) => process.stderr.write(t.endsWith('\n') ? t : `${t}\n`),
    interactive: Boolean(process.stderr.isTTY && process.stdin.isTTY),
  };
}

export function configFile(ctx: CliContext): string {
  return join(ctx.env.XDG_CONFIG_HOME ?? join(ctx.home, '.config'), 'berth', 'cli.json');
}
