import { randomBytes } from 'node:crypto';
import { get, put } from '../../domain/codec.js';
import { keys } from '../../domain/keys.js';
import type { Logger } from '../../domain/log.js';
import type { ClusterPeers } from '../../domain/peers.js';
import { codecs, type LogSession } from '../../domain/records.js';
import type { Store } from '../../store/index.js';
import { LogCatchUp, type CatchUpOptions } from '../logs/catch-up.js';
import { LogFanout, type LogFanoutOptions, type PeerStats } from '../logs/fanout.js';
import { LineIds } from '../logs/ids.js';
import { sanitizeMessage, validTime } from '../logs/sanitize.js';
import { LOGPLEX_DYNO, logBucket, LogRateLimiter, type LogRateOptions } from '../../agent/log-limiter.js';
import { MAX_MESSAGE, type WireBatch } from '../logs/wire.js';
import { SqliteLogStore, type LogFilter, type LogLine, type LogStore, type StoredLine } from './log-store.js';
import { hashToken } from './users.js';

export { matchesFilter, SqliteLogStore, type AppLine, type LogFilter, type LogLine, type LogStore, type StoredLine } from './log-store.js';

/** One line as `logs` shows it; the message made safe again, for lines kept from before that was done at entry. */
export function formatLogLine(l: LogLine): string {
  return `${l.time} ${l.source}[${l.dyno}]: ${sanitizeMessage(l.message)}`;
}

/** The platform's own lines about an app's log stream (L10, L11) are `berth[logplex]`. */
const PLATFORM_SOURCE = 'berth';

const SESSION_TTL = 300;

export type { LogSession };

/**
 * A LogHub among several servers: lines entering here are sent to each other live server, and an
 * app's lines are caught up from one before this server first serves them.
 */
export interface LogClusterOptions {
  peers: ClusterPeers;
  log: Logger;
  /** Lines the `LogStore` keeps per app (what a catch-up asks for; default 1,500). */
  retain?: number;
  fanout?: LogFanoutOptions;
  catchUp?: CatchUpOptions;
}

export interface LogHubOptions {
  /** Without it, one server: its lines are its own. */
  cluster?: LogClusterOptions;
  /**
   * Each app's output entering here, past which it is dropped with an L10 notice (default 500/s,
   * burst 1,000); its router lines have a budget of their own at the same rate (`logBucket`).
   */
  rate?: LogRateOptions;
}

/**
 * An app's recent log lines (kept by a `LogStore`, Heroku's 1,500 per app) and live subscribers.
 * Lines enter at one server — its own events (`app[api]`, the release phase), its agent, router
 * and builder, or a remote agent's batch — which gives each an id (time-ordered), keeps it, taps
 * it to drains (so a drain gets it once) and fans it out to every other live server. Those keep it
 * too and show it to their tails, but neither drain it nor send it on. Log sessions live in the
 * store under a short lease, so any server can serve the URL.
 */
export class LogHub {
  private readonly listeners = new Map<string, Set<(line: LogLine) => void>>();
  private readonly taps = new Set<(appId: string, line: LogLine) => void>();
  private readonly ids = new LineIds();
  private readonly fanout: LogFanout | undefined;
  private readonly catchUps: LogCatchUp | undefined;
  private readonly limiters: Record<'output' | 'router', LogRateLimiter>;

  constructor(
    private readonly store: Store,
    private readonly lines: LogStore = new SqliteLogStore({ path: ':memory:' }),
    options: LogHubOptions = {},
  ) {
    const notice = (appId: string, message: string): void => void this.append(appId, { source: PLATFORM_SOURCE, dyno: LOGPLEX_DYNO, message });
    this.limiters = { output: new LogRateLimiter(options.rate ?? {}, notice), router: new LogRateLimiter(options.rate ?? {}, notice) };
    const c = options.cluster;
    if (c) {
      const fanout = new LogFanout(c.peers, c.log.child({ part: 'fanout' }), c.fanout);
      this.fanout = fanout;
      this.catchUps = new LogCatchUp(
        { peers: c.peers, servers: () => fanout.servers(), merge: (appId, got) => this.lines.merge(got.map((line) => ({ app: appId, line }))), log: c.log.child({ part: 'catch-up' }) },
        { ...(c.retain ? { retain: c.retain } : {}), ...c.catchUp },
      );
    }
  }

  /**
   * A line entering the platform here: this server is its origin. The app's output past its rate
   * (and its router lines past theirs) is dropped, counted for the app's next L10 line; the
   * platform's other lines are never dropped (`logBucket`). Returns whether the line was kept, so
   * a dyno's reader can slow down.
   */
  append(appId: string, line: Omit<LogLine, 'time'> & { time?: string }): boolean {
    const bucket = logBucket(line.source, line.dyno);
    if (bucket && !this.limiters[bucket].admit(appId)) return false;
    // Cut where it enters, so every server keeps the same line and a peer never refuses a batch
    // over one; made safe here, so no line kept or sent on can forge another's prefix.
    const message = sanitizeMessage(line.message.length > MAX_MESSAGE ? line.message.slice(0, MAX_MESSAGE) : line.message, MAX_MESSAGE);
    const full: StoredLine = { id: this.ids.next(), time: validTime(line.time) ?? new Date().toISOString(), source: line.source, dyno: line.dyno, message };
    this.lines.append(appId, full);
    for (const l of this.listeners.get(appId) ?? []) l(full);
    for (const t of this.taps) t(appId, full);
    this.fanout?.send(appId, full);
    return true;
  }

  /**
   * A batch another server fanned out: kept (each id once) and shown to this server's tails;
   * never tapped to drains (the origin did) nor sent on. Returns how many lines were new.
   */
  receive(batch: WireBatch): number {
    const fresh = this.lines.merge(batch.lines.map((l) => ({ app: l.app_id, line: { id: l.id, time: l.time, source: l.source, dyno: l.dyno, message: l.message } })));
    for (const { app, line } of fresh) for (const l of this.listeners.get(app) ?? []) l(line);
    for (const appId of batch.forget ?? []) this.forgetHere(appId);
    return fresh.length;
  }

  /**
   * Before this server first serves an app's log since it started: the app's newest lines from
   * one live peer, merged. Never rejects; a no-op on one server.
   */
  catchUp(appId: string): Promise<void> {
    return this.catchUps?.ensure(appId) ?? Promise.resolve();
  }

  recent(appId: string, n: number, filter: LogFilter = {}): LogLine[] {
    return this.lines.recent(appId, n, filter);
  }

  /** The newest `n` lines below `before`, ids included (what a catching-up server asks for). */
  page(appId: string, n: number, before?: string): StoredLine[] {
    return this.lines.page(appId, n, before);
  }

  /** Per peer server: lines queued, sent, dropped. Empty on one server. */
  fanoutStats(): Record<string, PeerStats> {
    return this.fanout?.stats() ?? {};
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

  /** An app destroyed through this server: its lines go here and on the other servers. */
  forget(appId: string): void {
    this.forgetHere(appId);
    this.fanout?.forget(appId);
  }

  close(): void {
    this.limiters.output.close();
    this.limiters.router.close();
    this.fanout?.close();
    this.catchUps?.close();
    this.lines.close();
  }

  private forgetHere(appId: string): void {
    this.lines.forget(appId);
    this.catchUps?.forget(appId);
  }

  async createSession(session: LogSession): Promise<string> {
    const id = randomBytes(24).toString('hex');
    const lease = await this.store.grantLease(SESSION_TTL);
    // Stored under the id's hash, as API tokens are: whoever reads the store (an agent machine
    // reads /berth/) learns no URL that streams an app's logs.
    await put(this.store, keys.logSession(hashToken(id)), codecs.logSession, session, { lease: lease.id });
    return id;
  }

  async session(id: string): Promise<LogSession | undefined> {
    if (!/^[0-9a-f]{48}$/.test(id)) return undefined;
    return (await get(this.store, keys.logSession(hashToken(id)), codecs.logSession))?.value;
  }
}
