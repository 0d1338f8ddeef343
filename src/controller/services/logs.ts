import { randomBytes } from 'node:crypto';
import { get, put } from '../../domain/codec.js';
import { keys } from '../../domain/keys.js';
import { codecs, type LogSession } from '../../domain/records.js';
import type { Store } from '../../store/index.js';
import { SqliteLogStore, type LogFilter, type LogLine, type LogStore } from './log-store.js';

export { matchesFilter, SqliteLogStore, type LogFilter, type LogLine, type LogStore } from './log-store.js';

export function formatLogLine(l: LogLine): string {
  return `${l.time} ${l.source}[${l.dyno}]: ${l.message}`;
}

const SESSION_TTL = 300;

export type { LogSession };

/**
 * An app's recent log lines (kept by a `LogStore`, Heroku's 1,500 per app) and live subscribers.
 * Lines come from this controller (`app[api]`, the release phase) and from agents (this node's, or
 * remote ones posting batches); each line reaches one controller only, so drains get it once.
 * Log sessions live in the store under a short lease, so any controller can serve the URL.
 */
export class LogHub {
  private readonly listeners = new Map<string, Set<(line: LogLine) => void>>();
  private readonly taps = new Set<(appId: string, line: LogLine) => void>();

  constructor(
    private readonly store: Store,
    private readonly lines: LogStore = new SqliteLogStore({ path: ':memory:' }),
  ) {}

  append(appId: string, line: Omit<LogLine, 'time'> & { time?: string }): void {
    const full: LogLine = { time: line.time ?? new Date().toISOString(), source: line.source, dyno: line.dyno, message: line.message };
    this.lines.append(appId, full);
    for (const l of this.listeners.get(appId) ?? []) l(full);
    for (const t of this.taps) t(appId, full);
  }

  recent(appId: string, n: number, filter: LogFilter = {}): LogLine[] {
    return this.lines.recent(appId, n, filter);
  }

  subscribe(appId: string, fn: (line: LogLine) => void): () => void {
    const set = this.listeners.get(appId) ?? new Set();
    set.add(fn);
    this.listeners.set(appId, set);
    return () => {
      set.delete(fn);
      if (set.size === 0 && this.listeners.get(appId) === set) this.listeners.delete(appId);
    };
  }

  /** Every line of every app as it is appended (log drains). */
  tap(fn: (appId: string, line: LogLine) => void): () => void {
    this.taps.add(fn);
    return () => this.taps.delete(fn);
  }

  forget(appId: string): void {
    this.lines.forget(appId);
  }

  close(): void {
    this.lines.close();
  }

  async createSession(session: LogSession): Promise<string> {
    const id = randomBytes(24).toString('hex');
    const lease = await this.store.grantLease(SESSION_TTL);
    await put(this.store, keys.logSession(id), codecs.logSession, session, { lease: lease.id });
    return id;
  }

  async session(id: string): Promise<LogSession | undefined> {
    if (!/^[0-9a-f]{48}$/.test(id)) return undefined;
    return (await get(this.store, keys.logSession(id), codecs.logSession))?.value;
  }
}
