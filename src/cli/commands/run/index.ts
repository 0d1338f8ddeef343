import { CommanderError, type Command } from 'commander';
import { clientFor } from '../../api-client.js';
import type { Dyno } from '../../api-types.js';
import { appName } from '../../app-name.js';
import { appFlags, enc, type AppFlags, type Register } from '../../command.js';
import type { CliContext } from '../../context.js';
import { step } from '../../output.js';
import { attachDyno, type AttachEvent, type Attached } from './attach.js';
import { BerthError, invalid } from '../../../domain/errors.js';

export interface RunFlags extends AppFlags {
  env?: string;
  size?: string;
  type?: string;
  exitCode?: boolean;
  tty?: boolean;
}

/**
 * The command's exit status as the process's. main.ts sets a CommanderError's exit code without
 * printing anything, which is exactly what a command that failed on the dyno needs.
 */
class CommandExit extends CommanderError {
  constructor(code: number) {
    super(code, 'berth.run.exit', '');
  }
}

/** The flags `run` and `run:detached` share, as the heroku CLI spells them. */
export function runFlags(cmd: Command): Command {
  return appFlags(cmd)
    .option('-e, --env <vars>', "environment variables to set (use ';' to split multiple vars)")
    .option('-s, --size <size>', 'dyno size')
    .option('--type <type>', 'process type')
    // `berth run ls -la`: options Berth does not know are the command's own.
    .allowUnknownOption();
}

/** Heroku's `--env "KEY=VALUE;KEY2=VALUE2"`. */
export function parseEnv(ctx: CliContext, flag: string | undefined): Record<string, string> {
  const env: Record<string, string> = {};
  for (const v of (flag ?? '').split(';')) {
    if (!v.trim()) continue;
    const m = /^\s*([\w.-]+)\s*=\s*(.*?)\s*$/.exec(v);
    if (m?.[1]) env[m[1]] = m[2] ?? '';
    else ctx.err(` ▸    env flag ${v} appears invalid. Avoid using ';' in values.`);
  }
  return env;
}

/**
 * Joins arguments as the heroku CLI does, so a command means the same to both: one argument as it
 * is (`berth run "rake db:migrate && echo ok"`), else each argument holding a space or a quote
 * double-quoted. `$VARS` stay unquoted on purpose: they expand in the dyno.
 */
export function buildCommand(args: string[]): string {
  if (args.length === 1) return args[0] ?? '';
  return args.map((a) => (a.includes(' ') || a.includes('"') ? `"${a.replaceAll('"', '\\"')}"` : a)).join(' ').trim();
}

export function createBody(command: string, opts: RunFlags, ctx: CliContext, attach: boolean): Record<string, unknown> {
  return {
    command,
    attach,
    env: parseEnv(ctx, opts.env),
    ...(opts.size ? { size: opts.size } : {}),
    ...(opts.type ? { type: opts.type } : {}),
    ...(opts.tty === false ? { force_no_tty: true } : {}),
  };
}

/**
 * Writes the dyno's output as it comes; resolves with its exit status. Through `out`/`err` (no
 * terminal) only whole lines can be written, so a partial one waits for its end.
 */
async function relay(ctx: CliContext, events: AsyncGenerator<AttachEvent>, first: AttachEvent | undefined): Promise<number> {
  const partial = { stdout: '', stderr: '' };
  const write = (stream: 'stdout' | 'stderr', data: string): void => {
    if (ctx.terminal) {
      ctx.terminal[stream].write(data);
      return;
    }
    const text = partial[stream] + data;
    const cut = text.lastIndexOf('\n') + 1;
    partial[stream] = text.slice(cut);
    if (cut > 0) (stream === 'stderr' ? ctx.err : ctx.out)(text.slice(0, cut));
  };
  const handle = (e: AttachEvent): number | undefined => {
    if (e.error) throw new BerthError('run_failed', e.error);
    if (e.data !== undefined) write(e.stream === 'stderr' ? 'stderr' : 'stdout', e.data);
    if (e.exit !== undefined) for (const stream of ['stdout', 'stderr'] as const) if (partial[stream]) (stream === 'stderr' ? ctx.err : ctx.out)(partial[stream]);
    return e.exit;
  };
  if (first) {
    const code = handle(first);
    if (code !== undefined) return code;
  }
  for await (const e of events) {
    const code = handle(e);
    if (code !== undefined) return code;
  }
  throw new BerthError('run_disconnected', 'The connection to the dyno closed before it exited.');
}

/**
 * `berth run -a app -- CMD ARGS...`: a one-off dyno of the app's current release, its output
 * live, and its exit status as this command's (heroku's `--exit-code` is always on).
 */
export const register: Register = (program, ctx) => {
  runFlags(program.command('run [command...]').description('run a one-off process inside a dyno'))
    .option('-x, --exit-code', 'passthrough the exit code of the remote command (always on)')
    .option('--no-tty', 'force the command to not run in a tty')
    .action(async (args: string[], opts: RunFlags) => {
      const name = appName(ctx, opts);
      const command = buildCommand(args);
      if (!command.trim()) throw invalid('Usage: berth run COMMAND\n\nExample: berth run bash');
      const api = clientFor(ctx);
      const terminal = ctx.terminal;
      // A pseudo-terminal in the dyno when this side is one, as `heroku run bash` gets.
      const tty = opts.tty !== false && terminal?.stdin.isTTY === true && terminal.stdout.isTTY === true;
      const body = createBody(command, opts, ctx, true);
      body.env = { ...(tty ? { TERM: ctx.env.TERM ?? 'xterm', COLUMNS: terminal.stdout.columns, LINES: terminal.stdout.rows } : {}), ...(body.env as object) };
      if (!tty) body.force_no_tty = true;
      let attached: Attached | undefined;
      let first: AttachEvent | undefined;
      try {
        await step(
          ctx,
          `Running ${command} on ⬢ ${name}`,
          async () => {
            const dyno = await api.request<Dyno>('POST', `/apps/${enc(name)}/dynos`, body);
            attached = await attachDyno(api, ctx, name, dyno.name, terminal !== undefined);
            // The dyno starts once attached; its first event says it is up (or why it is not).
            first = (await attached.events.next()).value ?? undefined;
            if (first?.error) throw new BerthError('run_failed', first.error);
            if (first?.state) first = undefined;
            return dyno;
          },
          (d) => `up, ${d.name}`,
        );
      } catch (err) {
        // The attach request's body is still open: ended here, or it would keep the CLI running.
        attached?.close();
        throw err;
      }
      if (!attached) return;
      const restore = terminal ? attached.relayInput(terminal, tty) : () => undefined;
      let code: number;
      try {
        code = await relay(ctx, attached.events, first);
      } catch (err) {
        throw attached.forced() ? new BerthError('run_disconnected', 'Forced the dyno to disconnect (Ctrl-C four times).') : err;
      } finally {
        restore();
        attached.close();
      }
      if (code !== 0) throw new CommandExit(code);
    });
};
