import { homedir } from 'node:os';
import { join, resolve } from 'node:path';
import { fileURLToPath } from 'node:url';

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
  /**
   * The command line that runs this CLI again (node, its loader flags, the entry script), for
   * programs that call back into it (git's credential helper); absent when commands run in-process.
   */
  self?: string[];
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
    ...(process.argv[1] ? { self: [process.execPath, ...loaderFlags(process.execArgv), resolve(process.argv[1])] } : {}),
  };
}

const LOADER_FLAGS = new Set(['--import', '--require', '-r', '--loader', '--experimental-loader']);

/**
 * The flags that make node able to run the entry at all (`--import tsx` when run from the
 * sources), with bare specifiers made absolute: whoever runs the command line again (git) does so
 * from another directory, where `tsx` would not resolve. Other flags (--inspect...) are dropped.
 */
function loaderFlags(execArgv: string[]): string[] {
  const flags: string[] = [];
  for (let i = 0; i < execArgv.length; i++) {
    const arg = execArgv[i] as string;
    const eq = arg.indexOf('=');
    const [flag, value] = eq > 0 ? [arg.slice(0, eq), arg.slice(eq + 1)] : [arg, execArgv[i + 1]];
    if (!LOADER_FLAGS.has(flag) || value === undefined) continue;
    if (eq <= 0) i++;
    const abs = absoluteSpecifier(value);
    // --require takes a path, not a URL.
    flags.push(flag, (flag === '--require' || flag === '-r') && abs.startsWith('file:') ? fileURLToPath(abs) : abs);
  }
  return flags;
}

function absoluteSpecifier(spec: string): string {
  if (spec.startsWith('.') || spec.startsWith('/')) return resolve(spec);
  if (/^[a-z]+:/.test(spec)) return spec;
  try {
    return import.meta.resolve(spec);
  } catch {
    return spec;
  }
}

export function configFile(ctx: CliContext): string {
  return join(ctx.env.XDG_CONFIG_HOME ?? join(ctx.home, '.config'), 'berth', 'cli.json');
}
