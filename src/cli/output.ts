import ora from 'ora';
import { errorMessage, isBerthError } from '../domain/errors.js';
import type { CliContext } from './context.js';

/** Heroku-style CLI output: `=== Title`, aligned `Key: value` lines, tables, ` ▸` errors on stderr. */
export function header(title: string): string {
  return `=== ${title}`;
}

export function keyValues(pairs: [string, string | number][]): string {
  const width = Math.max(...pairs.map(([k]) => k.length)) + 1;
  return pairs.map(([k, v]) => `${`${k}:`.padEnd(width)} ${v}`).join('\n');
}

export function table(columns: string[], rows: string[][]): string {
  const widths = columns.map((c, i) => Math.max(c.length, ...rows.map((r) => (r[i] ?? '').length)));
  const line = (cells: string[]): string => cells.map((c, i) => c.padEnd(widths[i] ?? 0)).join('  ').trimEnd();
  return [line(columns), widths.map((w) => '─'.repeat(w)).join('  '), ...rows.map(line)].join('\n');
}

export function formatError(err: unknown): string {
  const code = isBerthError(err) ? ` (${err.code})` : '';
  return ` ▸    ${errorMessage(err)}${code}`;
}

/**
 * "Doing something... done", as the heroku CLI prints it: a spinner at a terminal, plain text
 * otherwise. `done` may say more than "done" ("done, v4").
 */
export async function step<T>(ctx: CliContext, text: string, fn: () => Promise<T>, done: (v: T) => string = () => 'done'): Promise<T> {
  // ora's stdin discarding would swallow Ctrl-C (it re-emits SIGINT to no listener): keep the tty's.
  const spinner = ctx.interactive ? ora({ text: `${text}...`, stream: process.stderr, discardStdin: false }).start() : undefined;
  try {
    const value = await fn();
    if (spinner) spinner.stopAndPersist({ symbol: '', text: `${text}... ${done(value)}` });
    else ctx.err(`${text}... ${done(value)}`);
    return value;
  } catch (err) {
    if (spinner) spinner.stopAndPersist({ symbol: '', text: `${text}... !` });
    else ctx.err(`${text}... !`);
    throw err;
  }
}

export function json(ctx: CliContext, value: unknown): void {
  ctx.out(JSON.stringify(value, null, 2));
}
