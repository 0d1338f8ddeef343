import { Writable } from 'node:stream';
import pino, { type Logger } from 'pino';
import { invalid } from './errors.js';

export type { Logger };

/** JSON lines for machines (journald, log shippers); one readable line per entry for people. */
export type LogFormat = 'json' | 'pretty';

/**
 * `--log-format`: what the operator asked for, else pretty when a person is watching (the stream
 * is a terminal) and JSON otherwise.
 */
export function logFormat(value: string | undefined, isTerminal: boolean | undefined): LogFormat {
  if (value === undefined) return isTerminal ? 'pretty' : 'json';
  if (value === 'json' || value === 'pretty') return value;
  throw invalid(`--log-format must be pretty or json, got "${value}".`);
}

/**
 * The one way Berth makes a root logger; components receive it (or a child with their context:
 * app, unit, release) from their composition root and never create their own. The level is the
 * root's to pass (the CLI passes BERTH_LOG_LEVEL); info by default.
 */
export function createLogger(name: string, options: { level?: string; destination?: NodeJS.WritableStream; format?: LogFormat } = {}): Logger {
  const level = options.level ?? 'info';
  if (options.format === 'pretty') {
    const out = options.destination ?? process.stdout;
    return pino({ name, level }, prettyStream(out, Boolean((out as { isTTY?: boolean }).isTTY)));
  }
  return options.destination ? pino({ name, level }, options.destination) : pino({ name, level });
}

const LEVELS: Record<number, [string, string]> = {
  10: ['TRACE', '\x1b[90m'],
  20: ['DEBUG', '\x1b[36m'],
  30: ['INFO ', '\x1b[32m'],
  40: ['WARN ', '\x1b[33m'],
  50: ['ERROR', '\x1b[31m'],
  60: ['FATAL', '\x1b[35m'],
};
/** pino's own fields, shown in the line's head or not at all. */
const HEAD = new Set(['level', 'time', 'pid', 'hostname', 'name', 'msg', 'v', 'err']);

function value(v: unknown): string {
  if (typeof v === 'string') return /^[^\s"=]+$/.test(v) ? v : JSON.stringify(v);
  return JSON.stringify(v) ?? String(v);
}

/**
 * Control characters (ESC, CR, newlines...) escaped, as one line of plain text; C1 controls too,
 * since some terminals read U+009B as a whole CSI (cursor moves without an ESC).
 */
function plain(text: string): string {
  // eslint-disable-next-line no-control-regex
  return text.replace(/[\x00-\x1f\x7f-\x9f]/g, (c) => `\\x${c.charCodeAt(0).toString(16).padStart(2, '0')}`);
}

/**
 * One pino JSON line as `12:00:01.123 INFO  berth: message key=value ...`, an error's stack on
 * the lines below. Control characters are escaped, so a value that came from a tenant (an app
 * name, a build line) cannot forge another entry or move the terminal's cursor.
 */
export function prettyLine(json: string, color = false): string {
  let entry: Record<string, unknown>;
  try {
    entry = JSON.parse(json) as Record<string, unknown>;
  } catch {
    return plain(json);
  }
  const [label, tint] = LEVELS[entry.level as number] ?? ['?    ', ''];
  const time = typeof entry.time === 'number' ? new Date(entry.time).toISOString().slice(11, 23) : '';
  const fields = Object.entries(entry).filter(([k]) => !HEAD.has(k)).map(([k, v]) => `${k}=${value(v)}`);
  const err = entry.err as { stack?: unknown; message?: unknown } | string | undefined;
  if (typeof err === 'string') fields.push(`err=${value(err)}`);
  const stack = err && typeof err === 'object' ? String(err.stack ?? err.message).split('\n').map((l) => `\n    ${plain(l)}`).join('') : '';
  const text = plain(`${String(entry.name ?? '')}: ${typeof entry.msg === 'string' ? entry.msg : ''}${fields.length ? ` ${fields.join(' ')}` : ''}`);
  return `${time} ${color ? `${tint}${label}\x1b[0m` : label} ${text}${stack}`;
}

/** pino writes whole lines, one per write, to its destination: each is reformatted on its way. */
function prettyStream(out: NodeJS.WritableStream, color: boolean): Writable {
  return new Writable({
    write(chunk: Buffer | string, _enc, done) {
      const text = String(chunk);
      const lines = text.split('\n').filter((l) => l !== '');
      out.write(`${lines.map((l) => prettyLine(l, color)).join('\n')}\n`);
      done();
    },
  });
}
