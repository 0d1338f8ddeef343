import { overflowNotice } from '../../agent/log-limiter.js';

/** What a tail writes to: an HTTP response (or any writable stream). */
export interface TailSink {
  write(chunk: string): boolean;
  end(): void;
  readonly writableLength: number;
  readonly writableEnded: boolean;
  once(event: 'drain' | 'close', fn: () => void): unknown;
}

export interface TailWriterOptions {
  /** About how many bytes are held for a client that does not read, queued behind the response's buffer (default 1 MiB). */
  maxBytes?: number;
  /** The notice line as the client sees it, framed (`formatLogLine` of a `berth[logplex]` line). */
  notice: (message: string) => string;
  now?: () => number;
}

/**
 * One log tail's writes, bounded: a client that reads slower than its app logs (or not at all)
 * holds at most `maxBytes` in this server, in the response's buffer and a queue behind it. Past
 * that, live lines are dropped and counted; once the client has caught up, an L11 line (Heroku's
 * "Tail buffer overflow") says how many and since when. The initial lines (`backlog`) are already
 * in memory and few (1,500 at most): they wait for room rather than being dropped.
 */
export class TailWriter {
  private readonly maxBytes: number;
  private backlog: string[] = [];
  private backlogAt = 0;
  private queue: string[] = [];
  private queueAt = 0;
  private queuedBytes = 0;
  private dropped = 0;
  private since = 0;
  private waiting = false;
  private ending = false;
  private closed = false;

  constructor(
    private readonly sink: TailSink,
    private readonly o: TailWriterOptions,
  ) {
    this.maxBytes = o.maxBytes ?? 1024 * 1024;
    sink.once('close', () => {
      this.closed = true;
      this.backlog = [];
      this.queue = [];
      this.queueAt = 0;
      this.queuedBytes = 0;
    });
  }

  /** The initial lines, written in order before any live one as the client takes them. */
  start(frames: string[]): void {
    this.backlog = frames;
    this.backlogAt = 0;
    this.pump();
  }

  /** A live line: written, queued, or dropped (counted) when the client is too far behind. */
  push(frame: string): void {
    if (this.closed || this.ending) return;
    if (!this.waiting && this.queueAt >= this.queue.length && this.backlogAt >= this.backlog.length && this.sink.writableLength < this.maxBytes) {
      this.write(frame);
      return;
    }
    if (this.sink.writableLength + this.queuedBytes + frame.length > this.maxBytes) {
      if (this.dropped++ === 0) this.since = (this.o.now ?? Date.now)();
      return;
    }
    this.queue.push(frame);
    this.queuedBytes += frame.length;
  }

  /** Ends the response once everything held is written. */
  end(): void {
    this.ending = true;
    this.pump();
  }

  /** Bytes held for the client now (buffered in the response and queued), and lines dropped so far. */
  stats(): { held: number; dropped: number } {
    return { held: this.sink.writableLength + this.queuedBytes, dropped: this.dropped };
  }

  private write(frame: string): void {
    if (!this.sink.write(frame)) this.wait();
  }

  private wait(): void {
    if (this.waiting || this.closed) return;
    this.waiting = true;
    this.sink.once('drain', () => {
      this.waiting = false;
      this.pump();
    });
  }

  /** Writes what is held until the response pushes back; then waits for it to drain. */
  private pump(): void {
    if (this.closed || this.waiting) return;
    while (this.backlogAt < this.backlog.length) {
      const frame = this.backlog[this.backlogAt++] as string;
      if (!this.sink.write(frame)) return this.wait();
    }
    this.backlog = [];
    this.backlogAt = 0;
    while (this.queueAt < this.queue.length) {
      const frame = this.queue[this.queueAt++] as string;
      this.queuedBytes -= frame.length;
      if (!this.sink.write(frame)) {
        // Written lines let go of now and then, not moved one by one.
        if (this.queueAt > 1024) {
          this.queue = this.queue.slice(this.queueAt);
          this.queueAt = 0;
        }
        return this.wait();
      }
    }
    this.queue = [];
    this.queueAt = 0;
    if (this.dropped > 0) {
      // Caught up: the client learns what it missed before the next live line.
      const notice = this.o.notice(overflowNotice('L11', this.dropped, this.since));
      this.dropped = 0;
      if (!this.sink.write(notice)) return this.wait();
    }
    if (this.ending && !this.sink.writableEnded) this.sink.end();
  }
}
