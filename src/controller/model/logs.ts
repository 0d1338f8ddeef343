import { randomBytes } from 'node:crypto';
import { keys } from '../../domain/keys.js';
import type { Store } from '../../store/index.js';

/** One line of an app's log stream, Heroku style: `<time> <source>[<dyno>]: <message>`. */
export interface LogLine {
  time: string;
  source: string;
  dyno: string;
  message: string;
}

export function formatLogLine(l: LogLine): string {
  return `${l.time} ${l.source}[${l.dyno}]: ${l.message}`;
}

const RETAIN = 1500;
const SESSION_TTL = 300;

export interface LogSession {
  app_id: string;
  /** Who opened it: the stream re-checks that this user can still see the app. */
  user_id: string;
  lines: number;
  tail: boolean;
  source?: string;
  dyno?: string;
}

/**
 * An app's recent log lines (Heroku keeps 1,500) and live subscribers. Lines come from this
 * controller's own events (`app[api]`) today; agents and routers add theirs in later issues.
 * Log sessions live in the store under a short lease, so any controller can serve the URL.
 */
export class LogHub {
  private readonly buffers = new Map<string, LogLine[]>();
  private readonly listeners = new Map<string, Set<(line: LogLine) => void>>();

  constructor(private readonly store: Store) {}

  append(appId: string, line: Omit<LogLine, 'time'> & { time?: string }): void {
    const full: LogLine = { time: line.time ?? new Date().toISOString(), source: line.source, dyno: line.dyno, message: line.message };
    const buf = this.buffers.get(appId) ?? [];
    buf.push(full);
    if (buf.length > RETAIN) buf.splice(0, buf.length - RETAIN);
    this.buffers.set(appId, buf);
    for (const l of this.listeners.get(appId) ?? []) l(full);
  }

  recent(appId: string, n: number, filter: (l: LogLine) => boolean = () => true): LogLine[] {
    if (n <= 0) return [];
    return (this.buffers.get(appId) ?? []).filter(filter).slice(-n);
  }

  subscribe(appId: string, fn: (line: LogLine) => void): () => void {
    const set = this.listeners.get(appId) ?? new Set();
    set.add(fn);
    this.listeners.set(appId, set);
    return () => set.delete(fn);
  }

  forget(appId: string): void {
    this.buffers.delete(appId);
  }

  async createSession(session: LogSession): Promise<string> {
    const id = randomBytes(24).toString('hex');
    const lease = await this.store.grantLease(SESSION_TTL);
    await this.store.put(keys.logSession(id), JSON.stringify(session), { lease: lease.id });
    return id;
  }

  async session(id: string): Promise<LogSession | undefined> {
    if (!/^[0-9a-f]{48}$/.test(id)) return undefined;
    const kv = await this.store.get(keys.logSession(id));
    return kv ? (JSON.parse(kv.value) as LogSession) : undefined;
  }
}
