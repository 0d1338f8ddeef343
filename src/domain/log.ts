import pino, { type Logger } from 'pino';

export type { Logger };

/**
 * The one way Berth makes a root logger; components receive it (or a child with their context:
 * app, unit, release) from their composition root and never create their own. The level is the
 * root's to pass (the CLI passes BERTH_LOG_LEVEL); info by default.
 */
export function createLogger(name: string, options: { level?: string; destination?: NodeJS.WritableStream } = {}): Logger {
  const level = options.level ?? 'info';
  return options.destination ? pino({ name, level }, options.destination) : pino({ name, level });
}
