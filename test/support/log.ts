import { Writable } from 'node:stream';
import { createLogger, type Logger } from '../../src/domain/log.js';

export interface LogLine {
  level: number;
  msg: string;
  [field: string]: unknown;
}

/** A real logger whose lines a test can read back (pino levels: 30 info, 40 warn, 50 error). */
export function captureLog(level = 'info'): { log: Logger; lines: LogLine[] } {
  const lines: LogLine[] = [];
  const destination = new Writable({
    write(chunk: Buffer, _encoding, done) {
      for (const text of chunk.toString().split('\n')) if (text.trim()) lines.push(JSON.parse(text) as LogLine);
      done();
    },
  });
  return { log: createLogger('test', { level, destination }), lines };
}

/** A logger that says nothing. */
export const silentLog = (): Logger => createLogger('test', { level: 'silent' });
