import { randomBytes } from 'node:crypto';

/**
 * A log line's id: 12 hex digits of the origin's clock (ms), 6 of a counter, 8 random. Fixed width
 * and lowercase, so ids compare as strings in time order; every copy of a line keeps the id it got
 * where it entered, which is how servers merge and de-duplicate each other's lines.
 */
export const LINE_ID = /^[0-9a-f]{26}$/;
export const LINE_ID_SOURCE = '^[0-9a-f]{26}$';

const COUNTER_MAX = 0xffffff;

/**
 * Ids from one origin, strictly increasing even when the clock stands still or steps back (NTP):
 * lines from one origin keep the order they were appended in, as they did before ids.
 */
export class LineIds {
  private lastMs = 0;
  private counter = 0;

  constructor(private readonly now: () => number = Date.now) {}

  next(): string {
    let ms = Math.max(this.now(), this.lastMs);
    if (ms === this.lastMs) {
      this.counter++;
      // Sixteen million lines in one millisecond cannot happen, but never wrap into an older id.
      if (this.counter > COUNTER_MAX) {
        ms++;
        this.counter = 0;
      }
    } else this.counter = 0;
    this.lastMs = ms;
    return `${ms.toString(16).padStart(12, '0')}${this.counter.toString(16).padStart(6, '0')}${randomBytes(4).toString('hex')}`;
  }
}
