import { errorMessage, isBerthError } from '../domain/errors.js';

/** Heroku-style CLI output: `=== Title`, aligned `Key: value` lines, ` ▸` errors on stderr. */
export function header(title: string): string {
  return `=== ${title}`;
}

export function keyValues(pairs: [string, string | number][]): string {
  const width = Math.max(...pairs.map(([k]) => k.length)) + 1;
  return pairs.map(([k, v]) => `${`${k}:`.padEnd(width)} ${v}`).join('\n');
}

export function formatError(err: unknown): string {
  const code = isBerthError(err) ? ` (${err.code})` : '';
  return ` ▸    ${errorMessage(err)}${code}`;
}
