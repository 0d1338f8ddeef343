import { overflowNotice } from '../../agent/log-limiter.js';

/** What a tail writes to: an HTTP response (or any writable stream). */
export interface TailSink {
  write(chunk: string): boolean;
  end(): void;
  readonly writableLength: number;
  readonly writableEnded: boolean;
  once(event: 'drain' | 'close', fn: () => void): unknown;
  /** Lets go of a client that stopped reading altogether. */
  destroy(): void;
}

function size(bytes: number): string {
  return bytes % (1024 * 1024) === 0 ? `${bytes / (1024 * 1024)} MiB` : `${Math.round(bytes / 1024)} KiB`;
}

export interface TailWriterOptions {
  /**
   * About how many bytes are held for a client that does not read, queued behind the response's
   * buffer (default 1 MiB). The initial lines count too: only the newest that fit are sent.
   */
  maxBytes?: number;
  /** A response that has not drained for this long is destroyed (ms; default 30 s). */
  stallMs?: number;
  /** The notice line as the client sees it, framed (`formatLogLine` of a `berth[logplex]` line). */
  notice: (message: string) => string;
  now?: () => number;
}

/**
 * One log tail's writes, bounded: a client that reads slower than its app logs (or not at all)
 * holds at most `maxBytes` in this server, in the response's buffer and a queue behind it. Past
 * that, live lines are dropped and counted; once the client has caught up, an L11 line (Heroku's
 * "Tail buffer overflow") says how many and since when. The initial lines (`backlog`) wait for
 * room rather than being dropped, but only the newest that fit in `maxBytes` are kept (1,500 lines
 * of 64 KiB would be 96 MB per request), after a line saying how many older ones were left out.
 * A client that reads nothing at all for `stallMs` is let go.
 */
export class TailWriter {
  private readonly maxBytes: number;
  private backlog: string[] = [];
  private backlogAt = 0;
  private backlogBytes = 0;
  private stall: NodeJS.Timeout | undefined;
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
      clearTimeout(this.stall);
      this.backlog = [];
      this.backlogBytes = 0;
      this.queue = [];
      this.queueAt = 0;
      this.queuedBytes = 0;
    });
  }

  /**
   * The initial lines (oldest first), written in order before any live one as the client takes
   * them: the newest that fit in `maxBytes`, after a notice of how many did not.
   */
  start(frames: string[]): void {
    let first = frames.length;
    let bytes = 0;
    while (first > 0 && bytes + (frames[first - 1] as string).length <= this.maxBytes) bytes += (frames[--first] as string).length;
    this.backlog = first > 0 ? [this.o.notice(`${first} older lines left out: a log session sends at most ${size(this.maxBytes)} of recent lines.`), ...frames.slice(first)] : frames;
    this.backlogAt = 0;
    this.backlogBytes = bytes;
    this.pump();
  }

  /** A live line: written, queued, or dropped (counted) when the client is too far behind. */
  push(frame: string): void {
    if (this.closed || this.ending) return;
    if (!this.waiting && this.queueAt >= this.queue.length && this.backlogAt >= this.backlog.length && this.sink.writableLength < this.maxBytes) {
      this.write(frame);
      return;
    }
    if (this.sink.writableLength + this.backlogBytes + this.queuedBytes + frame.length > this.maxBytes) {
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
    return { held: this.sink.writableLength + this.backlogBytes + this.queuedBytes, dropped: this.dropped };
  }

  private write(frame: string): void {
    if (!this.sink.write(frame)) this.wait();
  }

  private wait(): void {
    if (this.waiting || this.closed) return;
    this.waiting = true;
    // Whatever it holds stays held while the client reads nothing: past a while, the client goes.
    this.stall = setTimeout(() => this.sink.destroy(), this.o.stallMs ?? 30_000);
    this.stall.unref();
    this.sink.once('drain', () => {
      clearTimeout(this.stall);
      this.waiting = false;
      this.pump();
    });
  }

  /** Writes what is held until the response pushes back; then waits for it to drain. */
  private pump(): void {
    if (this.closed || this.waiting) return;
    while (this.backlogAt < this.backlog.length) {
      const frame = this.backlog[this.backlogAt++] as string;
      this.backlogBytes = Math.max(0, this.backlogBytes - frame.length);
      if (!this.sink.write(frame)) return this.wait();
    }
    this.backlog = [];
    this.backlogBytes = 0;
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
