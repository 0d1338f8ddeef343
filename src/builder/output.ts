/**
 * Bounds on what a build (or a release phase) prints. A tenant controls every byte of it, so
 * nothing here grows with it: what is kept is a head and a tail, what is streamed stops at a cap
 * and never queues behind a slow reader, and past a hard limit the run is stopped.
 */
import { BerthError } from '../domain/errors.js';

/** Printed bytes past which a build or release phase is stopped. */
export const DEFAULT_OUTPUT_LIMIT = 100 * 1024 * 1024;
/** Bytes streamed to one reader (the pusher, a follower) before only the end is shown. */
export const DEFAULT_STREAM_LIMIT = 16 * 1024 * 1024;
/** Bytes a reader may have queued before more output is skipped for it. */
export const DEFAULT_QUEUE_LIMIT = 1024 * 1024;

export const OUTPUT_EXCEEDED = 'build_output_exceeded';

export function formatBytes(n: number): string {
  if (n >= 1024 * 1024) return `${Math.round(n / 1024 / 1024)} MB`;
  if (n >= 1024) return `${Math.round(n / 1024)} KB`;
  return `${n} bytes`;
}

/** An index moved back off the low half of a surrogate pair, so a cut never splits a character. */
function safeCut(text: string, at: number): number {
  const c = text.charCodeAt(at);
  return at > 0 && c >= 0xdc00 && c <= 0xdfff ? at - 1 : at;
}

/**
 * Counts what a run prints and stops it past `maxBytes`: from then on output is dropped and
 * `signal` is aborted with a coded error (`reason`), which the run reports instead of "canceled".
 * Linked to the caller's own signal, so a cancel still cancels.
 */
export class OutputGuard {
  private readonly abort = new AbortController();
  readonly signal: AbortSignal;
  private printed = 0;
  private error: BerthError | undefined;

  constructor(
    readonly maxBytes: number = DEFAULT_OUTPUT_LIMIT,
    parent?: AbortSignal,
    private readonly what = 'Build',
  ) {
    this.signal = parent ? AbortSignal.any([parent, this.abort.signal]) : this.abort.signal;
  }

  /** The error that stopped the run, once output went past the limit. */
  get exceeded(): BerthError | undefined {
    return this.error;
  }

  /** Passes `text` to `to` while the run is under its limit. */
  pass(text: string, to: (text: string) => void): void {
    if (this.error) return;
    this.printed += Buffer.byteLength(text);
    if (this.printed > this.maxBytes) {
      this.error = new BerthError(OUTPUT_EXCEEDED, `${this.what} output exceeded ${formatBytes(this.maxBytes)}.`);
      this.abort.abort(this.error);
      return;
    }
    to(text);
  }
}

/**
 * Output kept in memory (a build record, a running build's buffer): the first `headChars` and the
 * last `tailChars`, with a line saying how much was left out between them, as Heroku truncates a
 * long build log. Appending costs in proportion to the text appended.
 */
export class KeptOutput {
  private head = '';
  private tail = '';
  private skipped = 0;

  constructor(
    private readonly headChars = 64 * 1024,
    private readonly tailChars = 192 * 1024,
  ) {}

  append(text: string): void {
    if (this.tail === '' && this.skipped === 0 && this.head.length < this.headChars) {
      const room = safeCut(text, Math.min(text.length, this.headChars - this.head.length));
      this.head += text.slice(0, room);
      text = text.slice(room);
      if (text === '') return;
    }
    this.tail += text;
    // Trimmed at twice the size: amortised, each character is copied a bounded number of times.
    if (this.tail.length > 2 * this.tailChars) this.trim();
  }

  /** Characters left out between the head and the tail. */
  get truncated(): number {
    this.trim();
    return this.skipped;
  }

  text(): string {
    const { head, left, tail } = this.parts();
    if (left === 0) return head + tail;
    const sep = head.endsWith('\n') || head === '' ? '' : '\n';
    return `${head}${sep}\n ... output truncated: ${left} characters not kept (the first ${formatBytes(this.headChars)} and the last ${formatBytes(this.tailChars)} are) ...\n\n${tail}`;
  }

  /** The head, how many characters were left out, and the tail (from a line start when one is near). */
  parts(): { head: string; left: number; tail: string } {
    this.trim();
    if (this.skipped === 0) return { head: this.head, left: 0, tail: this.tail };
    const nl = this.tail.indexOf('\n');
    const tail = nl >= 0 && nl < 1024 ? this.tail.slice(nl + 1) : this.tail;
    return { head: this.head, left: this.skipped + (this.tail.length - tail.length), tail };
  }

  private trim(): void {
    if (this.tail.length <= this.tailChars) return;
    const cut = safeCut(this.tail, this.tail.length - this.tailChars);
    this.skipped += cut;
    this.tail = this.tail.slice(cut);
  }
}

/** The part of a HTTP response or socket a bounded writer needs. */
export interface Sink {
  write(chunk: string): unknown;
  readonly writableLength: number;
  readonly destroyed: boolean;
  readonly writableEnded: boolean;
}

/**
 * Writes to one reader without ever queueing more than `maxQueued` bytes for it: while that much
 * waits (a stalled `git push`, a follower on a slow link), output is skipped, and a line says how
 * much once the reader catches up. The build never waits for its readers.
 */
export function boundedWriter(sink: Sink, maxQueued = DEFAULT_QUEUE_LIMIT): { write: (text: string) => void; skipped: () => number } {
  let skipped = 0;
  let total = 0;
  const write = (text: string): void => {
    if (sink.destroyed || sink.writableEnded) return;
    if (sink.writableLength > maxQueued) {
      const n = Buffer.byteLength(text);
      skipped += n;
      total += n;
      return;
    }
    if (skipped > 0) {
      sink.write(`\n ... ${formatBytes(skipped)} of output skipped: this client reads more slowly than the build prints ...\n`);
      skipped = 0;
    }
    sink.write(text);
  };
  return { write, skipped: () => total };
}

/**
 * What one reader is streamed of a run's output: the first `maxBytes`, then nothing until `end()`,
 * which shows how much was left out and the last `tailChars` (where a build's verdict is).
 */
export class StreamCap {
  private sent = 0;
  private over = false;
  private readonly rest: KeptOutput;

  constructor(
    private readonly to: (text: string) => void,
    private readonly maxBytes = DEFAULT_STREAM_LIMIT,
    tailChars = 8 * 1024,
  ) {
    this.rest = new KeptOutput(0, tailChars);
  }

  write(text: string): void {
    if (!this.over) {
      const n = Buffer.byteLength(text);
      if (this.sent + n <= this.maxBytes) {
        this.sent += n;
        this.to(text);
        return;
      }
      this.over = true;
      this.to(`\n ... output past ${formatBytes(this.maxBytes)} is not streamed; its end follows when the build is done ...\n`);
    }
    this.rest.append(text);
  }

  /** Flushes the end of what was held back, if anything was. */
  end(): void {
    if (!this.over) return;
    const { left, tail } = this.rest.parts();
    this.over = false;
    this.sent = 0;
    this.to(`${left > 0 ? `\n ... ${left} more characters not streamed (builds:output keeps the start and the end) ...\n` : ''}${tail}`);
  }
}

/** UTF-8 bytes the character at `i` takes in a JSON string, and how many UTF-16 units it spans. */
function jsonCost(text: string, i: number): [bytes: number, units: number] {
  const c = text.charCodeAt(i);
  if (c === 0x22 || c === 0x5c) return [2, 1];
  if (c < 0x20) return [c === 0x08 || c === 0x09 || c === 0x0a || c === 0x0c || c === 0x0d ? 2 : 6, 1];
  if (c < 0x80) return [1, 1];
  if (c < 0x800) return [2, 1];
  if (c >= 0xd800 && c <= 0xdbff) {
    const d = text.charCodeAt(i + 1);
    return d >= 0xdc00 && d <= 0xdfff ? [4, 2] : [6, 1];
  }
  // A lone low surrogate is escaped (\udxxx), like a control character.
  return c >= 0xdc00 && c <= 0xdfff ? [6, 1] : [3, 1];
}

/**
 * `text` cut so that as a JSON string it takes at most `maxBytes` (a quarter for its start, the
 * rest for its end, a line between saying what was left out). A store value has a size limit and
 * a tenant chooses the characters: a control character costs six bytes escaped, so a limit in
 * characters is not one in bytes.
 */
export function fitJson(text: string, maxBytes: number): string {
  if (Buffer.byteLength(JSON.stringify(text)) <= maxBytes) return text;
  const budget = Math.max(0, maxBytes - 256);
  const headBudget = Math.floor(budget / 4);
  let used = 0;
  let h = 0;
  while (h < text.length) {
    const [bytes, units] = jsonCost(text, h);
    if (used + bytes > headBudget) break;
    used += bytes;
    h += units;
  }
  used = 0;
  let t = text.length;
  while (t > h) {
    // Step back over a whole pair, never half of one.
    const low = text.charCodeAt(t - 1);
    const high = t - 2 >= h ? text.charCodeAt(t - 2) : 0;
    const at = low >= 0xdc00 && low <= 0xdfff && high >= 0xd800 && high <= 0xdbff ? t - 2 : t - 1;
    const [bytes] = jsonCost(text, at);
    if (used + bytes > budget - headBudget) break;
    used += bytes;
    t = at;
  }
  return `${text.slice(0, h)}\n ... output truncated: ${t - h} characters not kept (the record keeps ${formatBytes(maxBytes)}) ...\n${text.slice(t)}`;
}
