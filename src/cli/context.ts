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
  /**
   * The process's own streams, for a command that relays bytes as they come (`berth run`);
   * absent where output is captured, and such a command then writes whole lines through `out`.
   */
  terminal?: Terminal;
}

export interface Terminal {
  stdin: NodeJS.ReadStream;
  stdout: NodeJS.WriteStream;
  stderr: NodeJS.WriteStream;
}

export function processContext(): CliContext {
  return {
    env: process.env,
    cwd: process.cwd(),
    home: process.env.HOME ?? homedir(),
    out: (t) => process.stdout.write(t.endsWith('\n') ? t : `${t}\n`),
    err: (t) => process.stderr.write(t.endsWith('\n') ? t : `${t}\n`),
    interactive: Boolean(process.stderr.isTTY && process.stdin.isTTY),
    terminal: { stdin: process.stdin, stdout: process.stdout, stderr: process.stderr },
  };
}

export function configFile(ctx: CliContext): string {
  return join(ctx.env.XDG_CONFIG_HOME ?? join(ctx.home, '.config'), 'berth', 'cli.json');
}
