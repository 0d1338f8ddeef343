import type { ClusterPeers, PeerServer } from '../../domain/peers.js';
import { errorMessage } from '../../domain/errors.js';
import type { Logger } from '../../domain/log.js';
import type { StoredLine } from '../services/log-store.js';
import { BATCH_BYTES, MAX_BATCH_LINES, toWire, travels } from './wire.js';

export interface LogFanoutOptions {
  /** Lines are sent to each peer at most once per interval, one batch (ms; default 100). */
  intervalMs?: number;
  /** Lines held per peer while it is unreachable; the oldest go first, counted (default 20,000). */
  queueMax?: number;
  /** Bytes of lines held per peer, whatever their number (default 32 MiB): a line may be 64 KiB. */
  queueBytes?: number;
  /** How often the list of live servers is re-read (ms; default 5 s). */
  refreshMs?: number;
  minBackoffMs?: number;
  maxBackoffMs?: number;
  /** One request's limit (ms; default 10 s). */
  timeoutMs?: number;
}

/** A line serialised once, whatever the number of peers it goes to. */
interface Entry {
  json: string;
  bytes: number;
}

export interface PeerStats {
  name: string;
  url: string;
  queued: number;
  sent: number;
  dropped: number;
  failures: number;
}

type Shared = Required<LogFanoutOptions> & {
  peers: ClusterPeers;
  log: Logger;
  signal: AbortSignal;
  /** Asks for another tick: lines put back after a failure wait for one. */
  wake: () => void;
};

/** Statuses a peer answers a batch it will never take (malformed, too large, no such route): retrying cannot help. */
const REFUSED = new Set([400, 404, 413, 422]);

/** How often a peer's drops are logged at most. */
const DROP_LOG_MS = 10_000;

/**
 * One peer's queue: lines wait here until the next interval, then go as one batch. While the peer
 * is unreachable, the queue keeps the newest `queueMax` lines and retries with backoff.
 */
class PeerQueue {
  private queue: Entry[] = [];
  private queuedBytes = 0;
  private forgets: string[] = [];
  private sending = false;
  private retryAt = 0;
  failures = 0;
  private sent = 0;
  private dropped = 0;
  private droppedUnlogged = 0;
  private droppedLoggedAt = 0;

  constructor(
    public peer: PeerServer,
    private readonly o: Shared,
  ) {}

  push(entries: readonly Entry[]): void {
    for (const e of entries) {
      this.queue.push(e);
      this.queuedBytes += e.bytes;
    }
    this.trim();
  }

  forget(appId: string): void {
    if (this.forgets.length < 1000) this.forgets.push(appId);
  }

  busy(): boolean {
    return this.queue.length > 0 || this.forgets.length > 0;
  }

  /** Sends one batch if one is due; a backlog of whole batches goes on without waiting for the tick. */
  async maybeSend(now: number): Promise<void> {
    if (this.sending || !this.busy() || now < this.retryAt) return;
    this.sending = true;
    try {
      do await this.sendOne();
      while (this.retryAt === 0 && this.queue.length >= MAX_BATCH_LINES && !this.o.signal.aborted);
    } catch (err) {
      this.o.log.error({ peer: this.peer.name, err: errorMessage(err) }, 'sending log lines failed unexpectedly');
    } finally {
      this.sending = false;
      if (this.busy()) this.o.wake();
    }
  }

  stats(): PeerStats {
    return { name: this.peer.name, url: this.peer.url, queued: this.queue.length, sent: this.sent, dropped: this.dropped, failures: this.failures };
  }

  private async sendOne(): Promise<void> {
    let bytes = 0;
    let n = 0;
    // At least one line, whatever its size: a line that fits the wire fits the peer's body limit.
    while (n < this.queue.length && n < MAX_BATCH_LINES && (n === 0 || bytes + (this.queue[n]?.bytes ?? 0) <= BATCH_BYTES)) bytes += this.queue[n++]?.bytes ?? 0;
    // Off the queue while in flight, so trimming meanwhile cannot drop the wrong lines.
    const batch = this.queue.splice(0, n);
    this.queuedBytes -= bytes;
    const forgets = this.forgets.splice(0);
    const body = `{"lines":[${batch.map((e) => e.json).join(',')}]${forgets.length ? `,"forget":${JSON.stringify(forgets)}` : ''}}`;
    let status = 0;
    let error = '';
    try {
      const res = await fetch(`${this.peer.url}/internal/log-lines`, {
        method: 'POST',
        headers: { ...this.o.peers.headers(), 'content-type': 'application/json' },
        body,
        signal: AbortSignal.any([this.o.signal, AbortSignal.timeout(this.o.timeoutMs)]),
      });
      status = res.status;
      // Read to the end either way: a body left unread costs the pooled connection.
      const text = await res.text().catch(() => '');
      if (!res.ok) error = text.slice(0, 300);
    } catch (err) {
      error = errorMessage(err);
    }
    if (status >= 200 && status < 300) {
      this.sent += batch.length;
      this.failures = 0;
      this.retryAt = 0;
      return;
    }
    if (this.o.signal.aborted) return;
    if (REFUSED.has(status)) {
      // Refused as such, it would be refused forever: dropped, counted, rather than stall the queue.
      this.o.log.error({ peer: this.peer.name, status, error, lines: batch.length }, 'a server refused a batch of log lines; dropped');
      this.drop(batch.length);
      return;
    }
    this.failures++;
    const backoff = Math.min(this.o.maxBackoffMs, this.o.minBackoffMs * 2 ** Math.min(this.failures - 1, 20));
    this.retryAt = Date.now() + backoff * (0.5 + Math.random() / 2);
    if (this.failures === 1 || this.failures % 10 === 0) this.o.log.warn({ peer: this.peer.name, status, error, failures: this.failures, queued: this.queue.length + batch.length }, 'sending log lines to a server failed; retrying');
    this.queue = batch.concat(this.queue);
    this.queuedBytes += bytes;
    this.forgets = forgets.concat(this.forgets).slice(0, 1000);
    this.trim();
  }

  private trim(): void {
    let n = Math.max(0, this.queue.length - this.o.queueMax);
    let bytes = 0;
    for (let i = 0; i < n; i++) bytes += this.queue[i]?.bytes ?? 0;
    while (n < this.queue.length - 1 && this.queuedBytes - bytes > this.o.queueBytes) bytes += this.queue[n++]?.bytes ?? 0;
    if (n > 0) {
      this.queue.splice(0, n);
      this.queuedBytes -= bytes;
      this.drop(n);
    }
  }

  private drop(n: number): void {
    this.dropped += n;
    this.droppedUnlogged += n;
    const now = Date.now();
    if (now - this.droppedLoggedAt < DROP_LOG_MS) return;
    this.o.log.warn({ peer: this.peer.name, dropped: this.droppedUnlogged, droppedTotal: this.dropped }, 'log lines for a server dropped (unreachable too long, or it refused them)');
    this.droppedLoggedAt = now;
    this.droppedUnlogged = 0;
  }
}

/**
 * Sends the lines that enter this server (its own, its agent's, remote agents' batches) to every
 * other live server, so an app's newest lines survive the loss of any one machine and `logs`
 * through any server shows them all. One batch per peer per interval; the peer list is re-read on
 * a timer (a range over the few `/berth/servers/` records), never per line. Receivers store and
 * tail what they get and send nothing on: only the origin fans out.
 */
export class LogFanout {
  private readonly o: Shared;
  private readonly queues = new Map<string, PeerQueue>();
  private outbox: Entry[] = [];
  private outboxDropped = 0;
  private known = false;
  private loading: Promise<void> | undefined;
  private tickTimer: NodeJS.Timeout | undefined;
  private readonly refreshTimer: NodeJS.Timeout;
  private readonly abort = new AbortController();
  private skipped = 0;

  constructor(peers: ClusterPeers, log: Logger, options: LogFanoutOptions = {}) {
    this.o = {
      intervalMs: options.intervalMs ?? 100,
      queueMax: options.queueMax ?? 20_000,
      queueBytes: options.queueBytes ?? 32 * 1024 * 1024,
      refreshMs: options.refreshMs ?? 5000,
      minBackoffMs: options.minBackoffMs ?? 200,
      maxBackoffMs: options.maxBackoffMs ?? 10_000,
      timeoutMs: options.timeoutMs ?? 10_000,
      peers,
      log,
      signal: this.abort.signal,
      wake: () => this.arm(),
    };
    void this.refresh();
    this.refreshTimer = setInterval(() => void this.refresh(), this.o.refreshMs);
    this.refreshTimer.unref();
  }

  /** The other live servers as last read (read now if never yet). */
  async servers(): Promise<PeerServer[]> {
    if (!this.known) await this.refresh();
    return [...this.queues.values()].sort((a, b) => a.failures - b.failures).map((q) => q.peer);
  }

  send(appId: string, line: StoredLine): void {
    if (this.abort.signal.aborted) return;
    if (!travels(appId, line)) {
      // Only this server's own code can make such a line (agents' batches are checked by schema).
      if (this.skipped++ % 1000 === 0) this.o.log.warn({ app: appId, dyno: line.dyno, skipped: this.skipped }, 'a log line that cannot travel stays on this server');
      return;
    }
    const json = JSON.stringify(toWire(appId, line));
    this.outbox.push({ json, bytes: Buffer.byteLength(json) });
    // Before the first peer list, hold what a queue would hold; after it, each tick empties the
    // outbox into the peers' queues, which bound (and count) what they drop.
    if (!this.known && this.outbox.length > this.o.queueMax) this.outboxDropped += this.outbox.splice(0, this.outbox.length - this.o.queueMax).length;
    this.arm();
  }

  forget(appId: string): void {
    for (const q of this.queues.values()) q.forget(appId);
    this.arm();
  }

  stats(): Record<string, PeerStats> {
    return Object.fromEntries([...this.queues].map(([id, q]) => [id, q.stats()]));
  }

  close(): void {
    this.abort.abort();
    clearInterval(this.refreshTimer);
    clearTimeout(this.tickTimer);
  }

  private arm(): void {
    if (this.tickTimer || this.abort.signal.aborted) return;
    this.tickTimer = setTimeout(() => this.tick(), this.o.intervalMs);
    this.tickTimer.unref();
  }

  private tick(): void {
    this.tickTimer = undefined;
    if (this.known && this.outbox.length > 0) {
      const entries = this.outbox;
      this.outbox = [];
      for (const q of this.queues.values()) q.push(entries);
    }
    if (this.outboxDropped > 0) {
      this.o.log.warn({ dropped: this.outboxDropped }, 'log lines dropped before the list of servers was known');
      this.outboxDropped = 0;
    }
    const now = Date.now();
    for (const q of this.queues.values()) void q.maybeSend(now);
    if (this.outbox.length > 0 || [...this.queues.values()].some((q) => q.busy())) this.arm();
  }

  private refresh(): Promise<void> {
    this.loading ??= this.load().finally(() => (this.loading = undefined));
    return this.loading;
  }

  private async load(): Promise<void> {
    let list: PeerServer[];
    try {
      list = await this.o.peers.servers();
    } catch (err) {
      this.o.log.warn({ err: errorMessage(err) }, 'could not read the list of servers; log lines wait');
      return;
    }
    if (this.abort.signal.aborted) return;
    const seen = new Set<string>();
    for (const p of list) {
      if (p.id === this.o.peers.self || !usableUrl(p.url)) continue;
      seen.add(p.id);
      const q = this.queues.get(p.id);
      if (q) q.peer = p;
      else {
        this.queues.set(p.id, new PeerQueue(p, this.o));
        this.o.log.info({ peer: p.name, url: p.url }, 'sending log lines to a server');
      }
    }
    for (const [id, q] of this.queues) {
      if (seen.has(id)) continue;
      this.queues.delete(id);
      this.o.log.info({ peer: q.peer.name, queued: q.stats().queued }, 'a server left; its log lines are no longer sent');
    }
    this.known = true;
    if (this.outbox.length > 0) this.arm();
  }
}

/** A server record is another machine's word: only an http(s) URL with no credentials in it is dialled. */
function usableUrl(url: string): boolean {
  try {
    const u = new URL(url);
    return (u.protocol === 'http:' || u.protocol === 'https:') && !u.username && !u.password;
  } catch {
    return false;
  }
}
