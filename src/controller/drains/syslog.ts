import { connect, isIP, type LookupFunction, type Socket } from 'node:net';
import { overflowNotice } from '../../agent/log-limiter.js';
import { guardedLookup } from './targets.js';
import { errorMessage } from '../../domain/errors.js';
import type { Logger } from '../../domain/log.js';
import type { LogLine } from '../services/log-store.js';

/** local7.info, what Heroku's logplex sends for every line. */
const PRI = 190;

/** RFC 5424 header fields are printable US-ASCII without spaces, each with a maximum length. */
function field(value: string, max: number): string {
  const clean = value.replace(/[^\x21-\x7e]/g, '_').slice(0, max);
  return clean === '' ? '-' : clean;
}

/**
 * One line as an octet-counted RFC 5424 frame (RFC 6587 §3.4.1), the shape Heroku drains send:
 * `<len> <190>1 TIMESTAMP d.<token> app web.1 - - message`.
 */
export function syslogFrame(token: string, line: LogLine): string {
  const msg = `<${PRI}>1 ${field(line.time, 64)} ${field(token, 255)} ${field(line.source, 48)} ${field(line.dyno, 128)} - - ${line.message.replace(/\r?\n$/, '')}`;
  return `${Buffer.byteLength(msg)} ${msg}`;
}

export interface SyslogSenderOptions {
  host: string;
  port: number;
  log: Logger;
  /** Frames held while the drain is unreachable or slow; beyond it the oldest are dropped. */
  queueMax?: number;
  /** Bytes of frames held at most, whatever their number (default 4 MiB): lines may be 64 KiB each. */
  queueBytes?: number;
  /**
   * The frame of a line telling the drain how many lines it lost (Heroku's L10), sent once it
   * takes lines again; without it, drops are only logged here.
   */
  notice?: (message: string) => string;
  /** Reconnect backoff, doubling from min to max (ms). */
  minBackoffMs?: number;
  maxBackoffMs?: number;
  /** An admin's drain to an internal address; a tenant's is refused at every connect. */
  allowInternal?: boolean;
  /**
   * What a tenant's drain may connect to, checked at every connect (addresses change): a lookup
   * that refuses a name resolving to a refused address (IP literals go through it too). Without
   * it, special ranges only.
   */
  guard?: { lookup: LookupFunction };
}

/**
 * One TCP connection to one drain, kept open and re-made with exponential backoff. `send` never
 * blocks and never throws: frames wait in a bounded queue while the drain is away or pushing back,
 * and the oldest are dropped (and counted) when it is full. Delivery is best effort, as Heroku's
 * is: a frame already written when the connection breaks is not sent again.
 */
export class SyslogSender {
  private queue: string[] = [];
  private queuedBytes = 0;
  /** Drops not yet told to the drain, and when the first of them happened. */
  private untold = 0;
  private untoldSince = 0;
  private socket: Socket | undefined;
  private connected = false;
  private writable = false;
  private backoff: number;
  private retry: NodeJS.Timeout | undefined;
  private closed = false;
  private dropped = 0;
  private reportedDrops = 0;
  private connections = 0;
  /** Set from the first failure of an outage until the next connect: one warning per outage. */
  private failing = false;

  constructor(private readonly o: SyslogSenderOptions) {
    this.backoff = o.minBackoffMs ?? 250;
    this.connect();
  }

  send(frame: string): void {
    if (this.closed) return;
    this.queue.push(frame);
    this.queuedBytes += frame.length;
    const max = this.o.queueMax ?? 1000;
    const maxBytes = this.o.queueBytes ?? 4 * 1024 * 1024;
    let n = 0;
    let bytes = this.queuedBytes;
    while (this.queue.length - n > 1 && (this.queue.length - n > max || bytes > maxBytes)) bytes -= (this.queue[n++] as string).length;
    if (n > 0) {
      this.queue.splice(0, n);
      this.queuedBytes = bytes;
      this.dropped += n;
      if (this.untold === 0) this.untoldSince = Date.now();
      this.untold += n;
    }
    this.pump();
  }

  stats(): { connected: boolean; queued: number; dropped: number; connections: number } {
    return { connected: this.connected, queued: this.queue.length, dropped: this.dropped, connections: this.connections };
  }

  close(): void {
    this.closed = true;
    if (this.retry) clearTimeout(this.retry);
    this.socket?.destroy();
    this.socket = undefined;
    this.queue = [];
    this.queuedBytes = 0;
  }

  private connect(): void {
    if (this.closed) return;
    const guard = this.o.allowInternal ? undefined : (this.o.guard ?? { lookup: guardedLookup });
    // net.connect never looks an IP address up, so its lookup guard would not see one: the
    // literal goes through the guard's lookup here (which answers an address with itself).
    if (guard && isIP(this.o.host) !== 0) guard.lookup(this.o.host, {}, (err) => this.open(guard, err ?? undefined));
    else this.open(guard);
  }

  private open(guard: SyslogSenderOptions['guard'], refused?: Error): void {
    if (this.closed) return;
    const socket = connect({ host: this.o.host, port: this.o.port, ...(guard ? { lookup: guard.lookup } : {}) });
    this.socket = socket;
    socket.setNoDelay(true);
    socket.setKeepAlive(true, 60_000);
    // A drain host that drops SYNs would otherwise hold the attempt for the kernel's minutes.
    socket.setTimeout(10_000, () => {
      if (!this.connected) socket.destroy(new Error('connect timed out'));
    });
    socket.on('connect', () => {
      socket.setTimeout(0);
      this.failing = false;
      this.connected = true;
      this.writable = true;
      this.connections++;
      this.backoff = this.o.minBackoffMs ?? 250;
      this.o.log.info({ host: this.o.host, port: this.o.port }, 'log drain connected');
      this.pump();
    });
    socket.on('drain', () => {
      this.writable = true;
      this.pump();
    });
    // A syslog receiver sends nothing back; reading keeps a peer's close visible as 'end'.
    socket.on('data', () => undefined);
    socket.on('error', (err) => {
      if (!this.failing) this.o.log.warn({ host: this.o.host, port: this.o.port, err: errorMessage(err) }, 'log drain unreachable; retrying with backoff');
      this.failing = true;
    });
    socket.on('close', () => {
      if (this.socket !== socket) return;
      this.socket = undefined;
      this.connected = false;
      this.writable = false;
      if (this.closed) return;
      const wait = this.backoff;
      this.backoff = Math.min(this.backoff * 2, this.o.maxBackoffMs ?? 30_000);
      this.retry = setTimeout(() => this.connect(), wait);
      this.retry.unref();
    });
    // Destroyed before its connect (queued for the next tick) starts: no packet leaves, and the
    // close above retries with backoff, in case the address stops being the cluster's.
    if (refused) socket.destroy(refused);
  }

  private pump(): void {
    if (this.dropped > this.reportedDrops && this.connected) {
      this.o.log.warn({ host: this.o.host, port: this.o.port, dropped: this.dropped - this.reportedDrops, total: this.dropped }, 'log drain fell behind; dropped the oldest lines');
      this.reportedDrops = this.dropped;
    }
    if (this.untold > 0 && this.o.notice && this.socket && this.connected && this.writable) {
      // Before the lines that are left: where the gap is, as Heroku's logplex tells a drain.
      this.writable = this.socket.write(this.o.notice(overflowNotice('L10', this.untold, this.untoldSince)));
      this.untold = 0;
    }
    while (this.socket && this.connected && this.writable && this.queue.length > 0) {
      const frame = this.queue.shift()!;
      this.queuedBytes -= frame.length;
      this.writable = this.socket.write(frame);
    }
  }
}
