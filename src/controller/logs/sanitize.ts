/**
 * A dyno's line is shown after a prefix only the platform writes (`<time> app[web.1]: `). Control
 * characters in it could forge or hide that prefix: a carriage return sends a terminal back to the
 * line's start (and ends a Server-Sent Events line), a newline makes a second line, and escape
 * sequences move the cursor or erase. Each is replaced with its visible Control Pictures symbol
 * (CR becomes ␍, ESC ␛, DEL ␡), so the line stays one line and shows what was printed.
 *
 * Kept as Heroku keeps them: tabs, and ANSI colours and text styles (SGR, `ESC [ … m`), which many
 * apps print and which cannot move the cursor. A style still outlives its line, though (`ESC [8m`
 * hides the text after it, platform lines included), so a line that holds one ends with a reset.
 * Any other escape sequence is made visible. C1 controls (U+0080–U+009F, which some terminals read
 * as 8-bit CSI) become U+FFFD.
 */

// Fast path: most lines hold none of these. (Matching control characters is the point here.)
// eslint-disable-next-line no-control-regex
const UNSAFE = /[\x00-\x08\x0a-\x1f\x7f-\x9f]/;
// An SGR sequence is kept whole; any other control character on its own is replaced.
// eslint-disable-next-line no-control-regex
const CONTROL = /\x1b\[[0-9;:]{0,64}m|[\x00-\x08\x0a-\x1f\x7f-\x9f]/g;

const RESET = '\x1b[0m';

function picture(c: string): string {
  const code = c.charCodeAt(0);
  if (code < 0x20) return String.fromCharCode(0x2400 + code);
  if (code === 0x7f) return '\u2421';
  return '\ufffd';
}

/**
 * The message with every control character but tab and SGR sequences made visible, and a line
 * with a style ending in a reset. With `max`, a message no longer than it stays so (the reset
 * takes the place of the last characters): lines that travel between servers have a cap.
 */
export function sanitizeMessage(message: string, max = Infinity): string {
  if (!UNSAFE.test(message)) return message;
  let styled = false;
  const safe = message.replace(CONTROL, (c) => {
    if (c.length === 1) return picture(c);
    styled = true;
    return c;
  });
  // Already ending in a reset: shown again (formatLogLine), a kept line gains nothing.
  if (!styled || safe.endsWith(RESET)) return safe;
  return `${safe.length + RESET.length > max ? safe.slice(0, Math.max(0, max - RESET.length)) : safe}${RESET}`;
}

// What a line's time must look like: RFC 3339, as the platform and Heroku write it.
const TIME = /^\d{4}-\d\d-\d\dT\d\d:\d\d:\d\d(\.\d{1,9})?(Z|[+-]\d\d:\d\d)$/;

/** A time from elsewhere (an agent's batch) if it is one; otherwise undefined. */
export function validTime(time: string | undefined): string | undefined {
  return time !== undefined && TIME.test(time) ? time : undefined;
}
