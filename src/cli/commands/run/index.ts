import { CommanderError, type Command } from 'commander';
import { ApiError, apiToken, clientFor, type ApiClient } from '../../api-client.js';
import type { Dyno } from '../../api-types.js';
import { appName } from '../../app-name.js';
import { appFlags, enc, type AppFlags, type Register } from '../../command.js';
import type { CliContext } from '../../context.js';
import { step } from '../../output.js';
import { BerthError, invalid } from '../../../domain/errors.js';

export interface RunFlags extends AppFlags {
  env?: string;
  size?: string;
  type?: string;
  exitCode?: boolean;
  tty?: boolean;
}

/** What `GET /apps/:app/dynos/run.N/attach` streams, one JSON object per line. */
interface AttachEvent {
  state?: string;
  name?: string;
  stream?: 'stdout' | 'stderr';
  data?: string;
  exit?: number;
  error?: string;
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

async function* attach(api: ApiClient, ctx: CliContext, app: string, dyno: string): AsyncGenerator<AttachEvent> {
  const res = await fetch(`${api.baseUrl}/apps/${enc(app)}/dynos/${enc(dyno)}/attach`, {
    headers: { accept: 'application/x-ndjson', authorization: `Bearer ${apiToken(ctx, api.baseUrl) ?? ''}` },
  }).catch((err: unknown) => {
    throw new BerthError('unreachable', `Cannot reach the Berth API at ${api.baseUrl}: ${(err as Error).message}`);
  });
  if (!res.ok || !res.body) {
    const e = (await res.json().catch(() => ({}))) as { id?: string; message?: string };
    throw new ApiError(res.status, e.id ?? `http_${res.status}`, e.message ?? `Attaching to ${dyno} failed with HTTP ${res.status}.`);
  }
  const decoder = new TextDecoder();
  let buffered = '';
  for await (const chunk of res.body) {
    buffered += decoder.decode(chunk as Uint8Array, { stream: true });
    for (let nl = buffered.indexOf('\n'); nl >= 0; nl = buffered.indexOf('\n')) {
      const line = buffered.slice(0, nl);
      buffered = buffered.slice(nl + 1);
      if (line.trim()) yield JSON.parse(line) as AttachEvent;
    }
  }
}

/** Writes the dyno's output as it comes; resolves with its exit status. */
async function relay(ctx: CliContext, events: AsyncGenerator<AttachEvent>, first: AttachEvent | undefined): Promise<number> {
  const handle = (e: AttachEvent): number | undefined => {
    if (e.error) throw new BerthError('run_failed', e.error);
    if (e.data !== undefined) (e.stream === 'stderr' ? ctx.err : ctx.out)(e.data);
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
      let events: AsyncGenerator<AttachEvent> | undefined;
      let first: AttachEvent | undefined;
      await step(
        ctx,
        `Running ${command} on ⬢ ${name}`,
        async () => {
          const dyno = await api.request<Dyno>('POST', `/apps/${enc(name)}/dynos`, createBody(command, opts, ctx, true));
          events = attach(api, ctx, name, dyno.name);
          // The dyno starts once attached; its first event says it is up (or why it is not).
          first = (await events.next()).value ?? undefined;
          if (first?.error) throw new BerthError('run_failed', first.error);
          if (first?.state) first = undefined;
          return dyno;
        },
        (d) => `up, ${d.name}`,
      );
      if (!events) return;
      const code = await relay(ctx, events, first);
      if (code !== 0) throw new CommandExit(code);
    });
};
